//! `mizzen proxy-config KIND`: what a proxy holds — clusters, listeners, routes,
//! endpoints, secrets, bootstrap, ECDS filters — printed as `istioctl proxy-config` prints it, from a
//! saved `/config_dump` (ours or a real Envoy's) or live from a proxy's admin port.

mod bootstrap;
mod cluster;
mod dump;
mod ecds;
mod endpoint;
mod listener;
pub mod log;
mod output;
mod route;
mod secret;
mod x509;

#[cfg(test)]
mod tests;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use serde_json::Value;

use dump::{Dump, Section};

/// What to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Clusters: SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE.
    Cluster,
    /// Listeners: ADDRESSES, PORT, MATCH, DESTINATION.
    Listener,
    /// Routes: NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE.
    Route,
    /// Endpoints: from `/clusters` (ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER) or a
    /// dump's EDS section (NAME, STATUS, LOCALITY, CLUSTER).
    Endpoint,
    /// SDS secrets: RESOURCE NAME, TYPE, STATUS, VALID CERT, SERIAL NUMBER, NOT AFTER,
    /// NOT BEFORE.
    Secret,
    /// The bootstrap; its versions with `-o short`.
    Bootstrap,
    /// Filter configurations from ECDS: ECDS NAME, TYPE.
    Ecds,
    /// Every section one after another.
    All,
}

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A saved `/config_dump` (or, for endpoints, `/clusters`); `-` is stdin.
    File(PathBuf),
    /// A running proxy's admin address.
    Admin(SocketAddr),
}

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// istioctl's tables.
    Short,
    /// The selected resources themselves.
    Raw(Encoding),
}

/// How resources are written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON, indented by four spaces.
    Json,
    /// YAML, as Go's `sigs.k8s.io/yaml` writes it.
    Yaml,
}

impl Encoding {
    fn write(self, value: &Value) -> String {
        match self {
            Encoding::Json => output::json(value),
            Encoding::Yaml => output::yaml(value),
        }
    }
}

/// istioctl's filters; each narrows the kinds it applies to and is ignored by others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Clusters whose name contains this.
    pub fqdn: Option<String>,
    /// Clusters (`|PORT|` in the name), listeners and endpoints on this port.
    pub port: Option<u32>,
    /// Clusters whose name contains this subset.
    pub subset: Option<String>,
    /// Clusters whose name contains this direction (`inbound`, `outbound`).
    pub direction: Option<String>,
    /// Listeners and endpoints with this address.
    pub address: Option<String>,
    /// Listeners of this type (`HTTP`, `TCP`, `HTTP+TCP`).
    pub listener_type: Option<String>,
    /// The route configuration with this name.
    pub name: Option<String>,
    /// Endpoints of this cluster.
    pub cluster: Option<String>,
    /// Endpoints with this health status (`HEALTHY`, `UNHEALTHY`…).
    pub status: Option<String>,
}

/// One `proxy-config` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to show.
    pub kind: Kind,
    /// Where from.
    pub source: Source,
    /// How.
    pub format: Format,
    /// Which resources.
    pub filters: Filters,
    /// Listeners per filter chain and routes per route (istioctl's `--verbose`, on by
    /// default), rather than one line each.
    pub verbose: bool,
    /// With `all`, a `------ KIND INFO ------` title over each section.
    pub with_headers: bool,
}

/// Whether names carry their kind (`cluster/NAME`), as in istioctl's `all`; there,
/// clusters and listeners also gain a leading NAME column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// Names as they are.
    Off,
    /// `KIND/NAME`.
    Kind,
}

impl Prefix {
    /// The extra leading header cell, if any.
    pub(crate) fn header(self) -> Vec<&'static str> {
        match self {
            Prefix::Off => Vec::new(),
            Prefix::Kind => vec!["NAME"],
        }
    }

    /// A resource's name as shown.
    pub(crate) fn name(self, kind: &str, name: &str) -> String {
        match self {
            Prefix::Off => name.to_owned(),
            Prefix::Kind => format!("{kind}/{name}"),
        }
    }

    /// The extra leading cell of a row, holding the shown name.
    pub(crate) fn cells(self, shown: &str) -> Vec<String> {
        match self {
            Prefix::Off => Vec::new(),
            Prefix::Kind => vec![shown.to_owned()],
        }
    }
}

/// Runs `request` and returns what to print.
pub fn run(request: &Request) -> anyhow::Result<String> {
    if request.kind == Kind::Endpoint {
        return endpoints(request);
    }
    let path = if request.kind == Kind::All {
        // Envoy leaves endpoints out of the dump unless asked.
        "/config_dump?include_eds=true"
    } else {
        "/config_dump"
    };
    let (text, origin) = fetch(&request.source, path)?;
    let dump = Dump::parse(&text, &origin)?;
    render(&dump, request, SystemTime::now())
}

/// The text at `path` of an admin, or of the file; and how to name it in errors.
fn fetch(source: &Source, path: &str) -> anyhow::Result<(String, String)> {
    match source {
        Source::Admin(addr) => {
            let origin = format!("http://{addr}{path}");
            let text = crate::http::get(*addr, path)
                .with_context(|| format!("reading the proxy's admin at {addr}"))?;
            Ok((text, origin))
        }
        Source::File(file) if file.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading a config dump from stdin")?;
            Ok((text, "<stdin>".into()))
        }
        Source::File(file) => {
            let origin = file.display().to_string();
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading config dump {origin}"))?;
            Ok((text, origin))
        }
    }
}

/// Endpoints come from `/clusters` (what the proxy sees) when asking a proxy, and
/// from whatever the file holds: a dump's EDS section or a saved `/clusters`.
fn endpoints(request: &Request) -> anyhow::Result<String> {
    let (text, origin) = fetch(&request.source, "/clusters?format=json")?;
    let value: Option<Value> = serde_json::from_str(&text).ok();
    if let Some(value) = value.filter(|v| v.get("configs").is_some()) {
        let dump = Dump::from_value(value, &origin)?;
        return render(&dump, request, SystemTime::now());
    }
    let statuses = endpoint::host_statuses(&text, &origin)?;
    Ok(match request.format {
        Format::Short => endpoint::hosts_summary(&statuses, &request.filters),
        Format::Raw(encoding) => {
            let selected = endpoint::selected_statuses(&statuses, &request.filters);
            encoding.write(&Value::Array(selected.into_iter().cloned().collect()))
        }
    })
}

/// `request` applied to a config dump, certificates judged valid at `now`.
fn render(dump: &Dump, request: &Request, now: SystemTime) -> anyhow::Result<String> {
    let Format::Raw(encoding) = request.format else {
        return summary(dump, request, now);
    };
    let filters = &request.filters;
    let listed = |items: Vec<&Value>| Value::Array(items.into_iter().map(without_type).collect());
    let value = match request.kind {
        // istioctl prints the dump as it came.
        Kind::All => return Ok(encoding.write(dump.value())),
        Kind::Cluster => listed(cluster::selected(dump, filters)?),
        Kind::Listener => listed(listener::selected(dump, filters)?),
        Kind::Route => listed(route::selected(dump, filters)?),
        Kind::Endpoint => Value::Array(eds(dump, filters)?.iter().map(without_type).collect()),
        Kind::Secret => without_type(dump.require(Section::Secrets)?),
        Kind::Bootstrap => without_type(dump.require(Section::Bootstrap)?),
        Kind::Ecds => ecds::merged(&ecds::entries(dump)),
    };
    Ok(encoding.write(&value))
}

/// `request`'s table (or, for `all`, tables).
fn summary(dump: &Dump, request: &Request, now: SystemTime) -> anyhow::Result<String> {
    let filters = &request.filters;
    Ok(match request.kind {
        Kind::All => all(dump, request, now),
        Kind::Cluster => cluster::summary(&cluster::selected(dump, filters)?, Prefix::Off),
        Kind::Listener => listener::summary(
            &listener::selected(dump, filters)?,
            request.verbose,
            Prefix::Off,
        ),
        Kind::Route => route::summary(
            &route::selected(dump, filters)?,
            request.verbose,
            Prefix::Off,
        ),
        Kind::Endpoint => endpoint::eds_summary(&eds(dump, filters)?, Prefix::Off),
        Kind::Secret => secret::summary(dump, Prefix::Off, now),
        Kind::Bootstrap => bootstrap::summary(dump.require(Section::Bootstrap)?),
        Kind::Ecds => ecds::summary(&ecds::entries(dump)),
    })
}

/// The dump's EDS assignments passing the filters, or why the dump has none.
fn eds(dump: &Dump, filters: &Filters) -> anyhow::Result<Vec<Value>> {
    anyhow::ensure!(
        dump.section(Section::Endpoints).is_some(),
        "{}: config dump has no EndpointsConfigDump section \
         (Envoy includes one with /config_dump?include_eds)",
        dump.origin()
    );
    Ok(endpoint::assignments(dump, filters))
}

/// A resource or dump section as its own message, as istioctl prints it: without the
/// `@type` it carries only because the dump wraps it in an `Any`.
fn without_type(section: &Value) -> Value {
    let mut section = section.clone();
    if let Some(map) = section.as_object_mut() {
        map.remove("@type");
    }
    section
}

/// istioctl's `all`: bootstrap, clusters, listeners, routes, secrets and endpoints,
/// names prefixed with their kind, sections a blank line apart. A section the dump
/// lacks prints its header alone rather than failing the rest.
fn all(dump: &Dump, request: &Request, now: SystemTime) -> String {
    let filters = &request.filters;
    let sections = [
        (
            "BOOTSTRAP",
            dump.section(Section::Bootstrap)
                .map(bootstrap::summary)
                .unwrap_or_default(),
        ),
        (
            "CLUSTER",
            cluster::summary(
                &cluster::selected(dump, filters).unwrap_or_default(),
                Prefix::Kind,
            ),
        ),
        (
            "LISTENER",
            listener::summary(
                &listener::selected(dump, filters).unwrap_or_default(),
                request.verbose,
                Prefix::Kind,
            ),
        ),
        (
            "ROUTE",
            route::summary(
                &route::selected(dump, filters).unwrap_or_default(),
                request.verbose,
                Prefix::Kind,
            ),
        ),
        ("SECRET", secret::summary(dump, Prefix::Kind, now)),
        (
            "ENDPOINTS",
            endpoint::eds_summary(&endpoint::assignments(dump, filters), Prefix::Kind),
        ),
    ];
    let parts: Vec<String> = sections
        .into_iter()
        .map(|(title, body)| {
            if request.with_headers {
                format!("------ {title} INFO ------\n\n{body}")
            } else {
                body
            }
        })
        .collect();
    parts.join("\n")
}
