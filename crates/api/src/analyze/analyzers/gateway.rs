//! Gateway checks: selectors no workload matches, ports no Service exposes, gateways
//! claiming the same host and port, secrets that do not exist, certificates shared.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::util::{first_label_path, selector_string, selects, short_or_full_name};
use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};
use crate::networking::{Gateway, Server, ServerTlsSettings};
use crate::{Kind, Resource};

type IstioGateway = Resource<Gateway>;

/// The field path of a selector label, where selector messages point.
fn selector_path(selector: &BTreeMap<String, String>) -> String {
    first_label_path("spec.selector", selector)
}

/// The message for a selector no pod matches.
fn selector_not_found(entry: &Entry, gateway: &Gateway) -> Message {
    entry.message_at(
        &selector_path(&gateway.selector),
        catalogue::REFERENCED_RESOURCE_NOT_FOUND,
        args!["selector", selector_string(&gateway.selector)],
    )
}

fn pod_labels(pod: &Pod) -> Option<&crate::types::Labels> {
    pod.metadata.labels.as_ref()
}

/// `gateway.IngressGatewayPortAnalyzer`: every server port must be a (target) port of a
/// Service in front of the gateway's pods.
pub struct IngressGatewayPort;

impl Analyzer for IngressGatewayPort {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "gateway.IngressGatewayPortAnalyzer".into(),
            description: "Checks a gateway's ports against the gateway's Kubernetes service ports",
            inputs: vec![
                Collection::of(Kind::Gateway),
                Collection::of(Kind::Pod),
                Collection::of(Kind::Service),
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let services: Vec<(&Entry, &Service)> = ctx.each::<Service>().collect();
        for (entry, gw) in ctx.each::<IstioGateway>() {
            let gateway = &gw.spec;
            let mut matched = false;
            let mut ports = std::collections::HashSet::new();
            for (pod_entry, pod) in ctx.each::<Pod>() {
                let labels = pod_labels(pod);
                if !selects(&gateway.selector, labels) {
                    continue;
                }
                matched = true;
                let selecting = services.iter().filter(|(svc_entry, svc)| {
                    svc_entry.namespace() == pod_entry.namespace()
                        && selects(
                            svc.spec
                                .as_ref()
                                .and_then(|s| s.selector.as_ref())
                                .unwrap_or(&BTreeMap::new()),
                            labels,
                        )
                });
                for (_, svc) in selecting {
                    let svc_ports = svc.spec.as_ref().and_then(|s| s.ports.as_deref());
                    for port in svc_ports.unwrap_or_default() {
                        if port.protocol.as_deref() != Some("TCP") {
                            continue;
                        }
                        // The gateway listens on the port the Service forwards to
                        // (which is the Service's own port when no target is given).
                        ports.insert(port.port as u32);
                        if let Some(IntOrString::Int(target)) = &port.target_port {
                            ports.insert(*target as u32);
                        }
                    }
                }
            }
            if !matched {
                out.push(selector_not_found(entry, gateway));
                continue;
            }
            for server in &gateway.servers {
                let Some(port) = &server.port else { continue };
                if !ports.contains(&port.number) {
                    out.push(entry.message_at(
                        &selector_path(&gateway.selector),
                        catalogue::GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
                        args![port.number, selector_string(&gateway.selector)],
                    ));
                }
            }
        }
    }
}

/// `gateway.ConflictingGatewayAnalyzer`: two gateways for the same workloads and port
/// claiming the same host (with the same bind address).
pub struct ConflictingGateway;

/// Hosts of one gateway's server, each with its bind address.
type HostBinds = HashMap<String, String>;

/// For one (selector, port): each gateway's (by full name) hosts, in first-seen order.
type GatewaysOnPort = Vec<(String, HostBinds)>;

fn port_number(server: &Server) -> u32 {
    server.port.as_ref().map_or(0, |p| p.number)
}

/// Parses `a=1,b=2` back into a selector.
fn parse_selector(selector: &str) -> BTreeMap<String, String> {
    selector
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(_, v)| !v.contains('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Istio's `model.CheckDuplicates`: the hosts of `server` already known with the same
/// bind; when there are none, they become known (Istio's map is shared, and so is this).
fn conflicts(server: &Server, known: &mut HostBinds) -> bool {
    let duplicate = server
        .hosts
        .iter()
        .any(|h| known.get(h).is_some_and(|bind| *bind == server.bind));
    if !duplicate {
        for host in &server.hosts {
            known.insert(host.clone(), server.bind.clone());
        }
    }
    duplicate
}

impl Analyzer for ConflictingGateway {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "gateway.ConflictingGatewayAnalyzer".into(),
            description: "Checks a gateway's selector, port number and hosts",
            inputs: vec![Collection::of(Kind::Gateway), Collection::of(Kind::Pod)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        // (selector, port) -> gateway full name -> hosts and binds, in first-seen order.
        let mut by_key: Vec<((String, u32), GatewaysOnPort)> = Vec::new();
        for (entry, gw) in ctx.each::<IstioGateway>() {
            let selector = selector_string(&gw.spec.selector);
            let full_name = format!("{}/{}", entry.namespace(), entry.name());
            for server in &gw.spec.servers {
                let key = (selector.clone(), port_number(server));
                let binds: HostBinds = server
                    .hosts
                    .iter()
                    .map(|h| (h.clone(), server.bind.clone()))
                    .collect();
                let index = match by_key.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        by_key.push((key, Vec::new()));
                        by_key.len() - 1
                    }
                };
                let gateways = &mut by_key[index].1;
                match gateways.iter_mut().find(|(name, _)| *name == full_name) {
                    Some((_, known)) => *known = binds,
                    None => gateways.push((full_name.clone(), binds)),
                }
            }
        }
        let pods: Vec<&Pod> = ctx.each::<Pod>().map(|(_, p)| p).collect();
        for (entry, gw) in ctx.each::<IstioGateway>() {
            let gateway = &gw.spec;
            let selector = selector_string(&gateway.selector);
            let full_name = format!("{}/{}", entry.namespace(), entry.name());
            let same_workloads: Vec<usize> = (0..by_key.len())
                .filter(|&i| {
                    let other = &by_key[i].0.0;
                    if *other == selector {
                        return true;
                    }
                    if !(other.contains(&selector) || selector.contains(other.as_str())) {
                        return false;
                    }
                    let other = parse_selector(other);
                    pods.iter().any(|pod| {
                        selects(&gateway.selector, pod_labels(pod))
                            && selects(&other, pod_labels(pod))
                    })
                })
                .collect();
            if !selector.is_empty() && same_workloads.is_empty() {
                out.push(selector_not_found(entry, gateway));
                continue;
            }
            for server in &gateway.servers {
                let mut conflicting = Vec::new();
                for &i in &same_workloads {
                    let ((_, port), gateways) = &mut by_key[i];
                    if *port != port_number(server) {
                        continue;
                    }
                    for (name, known) in gateways.iter_mut() {
                        if *name != full_name && conflicts(server, known) {
                            conflicting.push(name.clone());
                        }
                    }
                }
                if !conflicting.is_empty() {
                    conflicting.sort();
                    out.push(entry.message(
                        catalogue::CONFLICTING_GATEWAYS,
                        args![
                            conflicting.join(","),
                            selector,
                            port_number(server),
                            server.hosts.join(",")
                        ],
                    ));
                }
            }
        }
    }
}

/// The namespace of the first pod `gateway` selects: where its secrets must be.
fn workload_namespace<'c>(ctx: &'c Context, gateway: &Gateway) -> Option<&'c str> {
    ctx.each::<Pod>()
        .find(|(_, pod)| selects(&gateway.selector, pod_labels(pod)))
        .map(|(entry, _)| entry.namespace())
}

/// `gateway.SecretAnalyzer`: every `credentialName` must name a Secret in the
/// namespace of the gateway's workload.
pub struct SecretRefs;

impl Analyzer for SecretRefs {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "gateway.SecretAnalyzer".into(),
            description: "Checks a gateway's referenced secrets for correctness",
            inputs: vec![
                Collection::of(Kind::Gateway),
                Collection::of(Kind::Pod),
                Collection::of(Kind::Secret),
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        for (entry, gw) in ctx.each::<IstioGateway>() {
            let Some(namespace) = workload_namespace(ctx, &gw.spec) else {
                out.push(selector_not_found(entry, &gw.spec));
                continue;
            };
            for (i, server) in gw.spec.servers.iter().enumerate() {
                let Some(name) = server.tls.as_ref().map(|t| &t.credential_name) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                let path = format!("spec.servers[{i}].tls.credentialName");
                let (ns, secret) = short_or_full_name(namespace, name);
                match ctx.find_typed::<Secret>(ns, secret) {
                    None => out.push(entry.message_at(
                        &path,
                        catalogue::REFERENCED_RESOURCE_NOT_FOUND,
                        args!["credentialName", name],
                    )),
                    Some((_, secret)) if !valid_server_certificate(secret) => {
                        out.push(entry.message_at(
                            &path,
                            catalogue::INVALID_GATEWAY_CREDENTIAL,
                            args![entry.name(), namespace],
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// True when `secret` holds a certificate and key (as `tls.crt`/`tls.key` or
/// `cert`/`key`) and the certificate parses and is valid now.
fn valid_server_certificate(secret: &Secret) -> bool {
    let value = |key: &str| -> Option<Vec<u8>> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                let text = secret.string_data.as_ref()?.get(key)?;
                Some(text.clone().into_bytes())
            })
    };
    let cert = match (
        value("tls.crt"),
        value("tls.key"),
        value("cert"),
        value("key"),
    ) {
        (Some(cert), Some(_), _, _) | (_, _, Some(cert), Some(_)) => cert,
        _ => return false,
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&cert) else {
        return false;
    };
    pem.label == "CERTIFICATE" && pem.parse_x509().is_ok_and(|c| c.validity().is_valid())
}

/// `gateway.CertificateAnalyzer`: two gateways for the same workloads serving the same
/// certificate.
pub struct Certificate;

fn same_certificate(a: &ServerTlsSettings, b: &ServerTlsSettings) -> bool {
    match (a.credential_name.is_empty(), b.credential_name.is_empty()) {
        (false, false) => a.credential_name == b.credential_name,
        (true, true) => {
            !a.server_certificate.is_empty()
                && a.server_certificate == b.server_certificate
                && !a.private_key.is_empty()
                && a.private_key == b.private_key
        }
        _ => false,
    }
}

/// True when every label of `x` is in `y` with the same value.
fn is_subset(x: &BTreeMap<String, String>, y: &BTreeMap<String, String>) -> bool {
    x.iter().all(|(k, v)| y.get(k) == Some(v))
}

impl Analyzer for Certificate {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "gateway.CertificateAnalyzer".into(),
            description: "Checks a gateway certificate",
            inputs: vec![Collection::of(Kind::Gateway)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let gateways: Vec<(&Entry, &IstioGateway)> = ctx.each::<IstioGateway>().collect();
        for (entry, gw) in &gateways {
            let full_name = format!("{}/{}", entry.namespace(), entry.name());
            let others = gateways.iter().filter(|(other, other_gw)| {
                other.key() != entry.key() && is_subset(&gw.spec.selector, &other_gw.spec.selector)
            });
            for (other, other_gw) in others {
                let other_name = format!("{}/{}", other.namespace(), other.name());
                for server in &gw.spec.servers {
                    for other_server in &other_gw.spec.servers {
                        let (Some(a), Some(b)) = (&server.tls, &other_server.tls) else {
                            continue;
                        };
                        if same_certificate(a, b) {
                            out.push(entry.message_at(
                                "metadata.name",
                                catalogue::GATEWAY_DUPLICATE_CERTIFICATE,
                                args![format!("[{full_name} {other_name}]")],
                            ));
                        }
                    }
                }
            }
        }
    }
}
