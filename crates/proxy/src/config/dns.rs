//! STRICT_DNS and LOGICAL_DNS clusters, resolved in the background as Envoy resolves
//! them: one task per cluster resolves its host names every `dns_refresh_rate` and hands
//! the addresses to the [`ConfigStore`], which compiles them into the cluster's balancer
//! like an EDS update. Requests only pick from that balancer; they never wait on DNS.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mizzen_xds::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use mizzen_xds::pb::envoy::config::cluster::v3::cluster::DnsLookupFamily;
use mizzen_xds::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use mizzen_xds::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use mizzen_xds::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use mizzen_xds::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LbEndpoint};
use tokio::task::JoinHandle;

use super::{Cluster, ConfigStore, Discovery, duration};

/// Envoy's default `dns_refresh_rate`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// Envoy's smallest `dns_refresh_rate`.
const MIN_REFRESH: Duration = Duration::from_millis(1);

/// How a DNS cluster's names become endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsKind {
    /// Every address of every host is an endpoint (`STRICT_DNS`).
    Strict,
    /// The first address of the cluster's one host is its endpoint (`LOGICAL_DNS`).
    Logical,
}

/// Which resolved addresses a cluster uses (`dns_lookup_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFamily {
    /// IPv6 addresses if there are any, else IPv4 (`AUTO`, Envoy's default).
    Auto,
    /// Only IPv4.
    V4Only,
    /// Only IPv6.
    V6Only,
    /// IPv4 addresses if there are any, else IPv6.
    V4Preferred,
    /// Both.
    All,
}

impl LookupFamily {
    /// The addresses of `resolved` this family keeps, in resolver order.
    pub fn select(self, resolved: Vec<IpAddr>) -> Vec<IpAddr> {
        let has = |v4: bool| resolved.iter().any(|ip| ip.is_ipv4() == v4);
        let keep_v4 = match self {
            LookupFamily::All => return resolved,
            LookupFamily::V4Only => true,
            LookupFamily::V6Only => false,
            LookupFamily::Auto => !has(false),
            LookupFamily::V4Preferred => has(true),
        };
        resolved
            .into_iter()
            .filter(|ip| ip.is_ipv4() == keep_v4)
            .collect()
    }
}

/// A DNS cluster's resolution settings. `respect_dns_ttl`, `dns_jitter` and
/// `dns_failure_refresh_rate` are ignored: names are re-resolved every `refresh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Strict or logical.
    pub kind: DnsKind,
    /// How often names are resolved again (`dns_refresh_rate`).
    pub refresh: Duration,
    /// Which addresses are used.
    pub family: LookupFamily,
    /// The distinct host names of the load assignment.
    pub names: Vec<String>,
}

impl Dns {
    /// The settings of `raw`; errors name the field at fault.
    #[allow(deprecated)] // dns_refresh_rate: Istio still sets it; the extension is newer.
    pub(super) fn compile(raw: &PbCluster, kind: DnsKind) -> Result<Dns, (String, String)> {
        let refresh = match &raw.dns_refresh_rate {
            Some(d) => duration(d).map_err(|r| ("dns_refresh_rate".to_owned(), r))?,
            None => DEFAULT_REFRESH,
        };
        if refresh < MIN_REFRESH {
            return Err((
                "dns_refresh_rate".into(),
                format!("{refresh:?} is less than 1ms"),
            ));
        }
        let family = match DnsLookupFamily::try_from(raw.dns_lookup_family) {
            Ok(DnsLookupFamily::Auto) => LookupFamily::Auto,
            Ok(DnsLookupFamily::V4Only) => LookupFamily::V4Only,
            Ok(DnsLookupFamily::V6Only) => LookupFamily::V6Only,
            Ok(DnsLookupFamily::V4Preferred) => LookupFamily::V4Preferred,
            Ok(DnsLookupFamily::All) => LookupFamily::All,
            Err(_) => {
                return Err((
                    "dns_lookup_family".into(),
                    format!("unknown value {}", raw.dns_lookup_family),
                ));
            }
        };
        let mut names = Vec::new();
        let mut count = 0;
        for (i, group) in raw
            .load_assignment
            .iter()
            .flat_map(|a| &a.endpoints)
            .enumerate()
        {
            for (j, lb_endpoint) in group.lb_endpoints.iter().enumerate() {
                let field = format!("load_assignment.endpoints[{i}].lb_endpoints[{j}]");
                let (name, _) = host(lb_endpoint).map_err(|r| (field, r))?;
                count += 1;
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
        }
        match (kind, count) {
            (_, 0) => Err((
                "load_assignment".into(),
                "a DNS cluster needs at least one endpoint".into(),
            )),
            (DnsKind::Logical, 2..) => Err((
                "load_assignment".into(),
                "a LOGICAL_DNS cluster must have exactly one endpoint".into(),
            )),
            _ => Ok(Dns {
                kind,
                refresh,
                family,
                names,
            }),
        }
    }
}

/// The host name and port of a DNS cluster's endpoint.
fn host(lb_endpoint: &LbEndpoint) -> Result<(&str, u32), String> {
    let Some(HostIdentifier::Endpoint(endpoint)) = &lb_endpoint.host_identifier else {
        return Err("a DNS cluster's endpoints must be socket addresses".into());
    };
    match endpoint.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(sa)) => match sa.port_specifier {
            Some(PortSpecifier::PortValue(port)) if port <= u32::from(u16::MAX) => {
                Ok((&sa.address, port))
            }
            Some(PortSpecifier::PortValue(port)) => Err(format!("port {port} is out of range")),
            _ => Err(format!("endpoint {:?} has no port", sa.address)),
        },
        _ => Err("a DNS cluster's endpoints must be socket addresses".into()),
    }
}

/// The load assignment of a DNS cluster once its names resolved to `addresses`: each
/// lb_endpoint becomes one endpoint per address of its host (the first only, for
/// LOGICAL_DNS), keeping its weight, health, locality and priority; its hostname is
/// the DNS name unless the endpoint names one. Names with no addresses give no endpoint.
pub fn assignment(
    raw: &PbCluster,
    kind: DnsKind,
    addresses: &BTreeMap<String, Vec<IpAddr>>,
) -> ClusterLoadAssignment {
    let mut out = raw.load_assignment.clone().unwrap_or_default();
    for group in &mut out.endpoints {
        let resolved = std::mem::take(&mut group.lb_endpoints)
            .into_iter()
            .flat_map(|lb_endpoint| {
                let (name, port) = host(&lb_endpoint).unwrap_or_default();
                let ips = addresses.get(name).map_or(&[][..], Vec::as_slice);
                let ips = match kind {
                    DnsKind::Strict => ips,
                    DnsKind::Logical => &ips[..ips.len().min(1)],
                };
                let name = name.to_owned();
                ips.iter()
                    .map(move |ip| with_address(&lb_endpoint, &name, *ip, port))
            })
            .collect();
        group.lb_endpoints = resolved;
    }
    out
}

/// `lb_endpoint` at `ip`, its hostname defaulting to `name`.
fn with_address(lb_endpoint: &LbEndpoint, name: &str, ip: IpAddr, port: u32) -> LbEndpoint {
    let mut out = lb_endpoint.clone();
    if let Some(HostIdentifier::Endpoint(endpoint)) = &mut out.host_identifier {
        endpoint.address = Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_string(),
                port_specifier: Some(PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        });
        if endpoint.hostname.is_empty() {
            endpoint.hostname = name.to_owned();
        }
    }
    out
}

/// The result of one resolution.
pub type Resolution<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Resolves host names; the system's resolver unless a test injects another.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `name`, in the order the resolver gives them.
    fn resolve<'a>(&'a self, name: &'a str) -> Resolution<'a>;
}

/// The system resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, name: &'a str) -> Resolution<'a> {
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name, 0)).await?;
            Ok(resolved.map(|a| a.ip()).collect())
        })
    }
}

/// A cluster's resolver task; aborted when dropped.
struct Task {
    cluster: Arc<Cluster>,
    handle: JoinHandle<()>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Keeps one resolver task per DNS cluster of `store`'s config: started when the
/// cluster arrives, replaced when it changes, stopped when it goes (or this stops).
pub async fn run(store: Arc<ConfigStore>, resolver: Arc<dyn Resolve>) {
    let mut tasks: HashMap<String, Task> = HashMap::new();
    let mut changes = store.changes();
    loop {
        let snapshot = store.snapshot();
        tasks.retain(|name, task| {
            snapshot
                .clusters
                .get(name)
                .is_some_and(|s| Arc::ptr_eq(&s.cluster, &task.cluster))
        });
        for (name, state) in &snapshot.clusters {
            if let Discovery::Dns(dns) = &state.cluster.discovery
                && !tasks.contains_key(name)
            {
                let handle = tokio::spawn(keep_resolved(
                    store.clone(),
                    state.cluster.clone(),
                    dns.clone(),
                    resolver.clone(),
                ));
                let cluster = state.cluster.clone();
                tasks.insert(name.clone(), Task { cluster, handle });
            }
        }
        drop(snapshot);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves `cluster`'s names every refresh and applies the addresses when they change
/// (the first time whatever they are: the cluster then counts as warm). A name that
/// fails to resolve keeps its last addresses, as in Envoy.
async fn keep_resolved(
    store: Arc<ConfigStore>,
    cluster: Arc<Cluster>,
    dns: Dns,
    resolver: Arc<dyn Resolve>,
) {
    let mut known: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let mut applied = None;
    loop {
        for name in &dns.names {
            match resolver.resolve(name).await {
                Ok(ips) => {
                    known.insert(name.clone(), dns.family.select(ips));
                }
                Err(e) => {
                    tracing::warn!(cluster = %cluster.name, name, error = %e, "DNS resolution failed");
                }
            }
        }
        if applied.as_ref() != Some(&known) {
            if let Err(e) = store.apply_resolved(&cluster, &known) {
                tracing::error!(error = %e, "resolved endpoints rejected");
            }
            applied = Some(known.clone());
        }
        tokio::time::sleep(dns.refresh).await;
    }
}

#[cfg(test)]
mod tests;
