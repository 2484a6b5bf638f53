//! ServiceEntry checks: TCP ports without addresses to tell them apart, and one host and
//! port given different protocols by different ServiceEntries.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};
use crate::networking::ServiceEntry;
use crate::{Kind, Resource};

type IstioServiceEntry = Resource<ServiceEntry>;

/// `serviceentry.Analyzer`: a port serving TCP (or an unset protocol) needs a virtual IP
/// to be told apart from other services on that port, unless the ServiceEntry has one,
/// has been allocated one, or the proxies' DNS capture allocates them.
pub struct AddressesRequired;

/// True when the mesh's proxies capture DNS and allocate addresses for ServiceEntries.
fn addresses_auto_allocated(ctx: &Context) -> bool {
    let mesh = ctx.mesh();
    let set = |name: &str| {
        mesh.default_config
            .proxy_metadata
            .get(name)
            .is_some_and(|v| v == "true")
    };
    set("ISTIO_META_DNS_CAPTURE")
        && (set("ISTIO_META_DNS_AUTO_ALLOCATE") || set("PILOT_ENABLE_IP_AUTOALLOCATE"))
}

/// True when the controller has allocated addresses (`status.addresses`).
fn status_has_addresses(se: &IstioServiceEntry) -> bool {
    se.status
        .as_ref()
        .and_then(|s| s.get("addresses"))
        .and_then(|a| a.as_array())
        .is_some_and(|a| !a.is_empty())
}

impl Analyzer for AddressesRequired {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "serviceentry.Analyzer".into(),
            description: "Checks the validity of ServiceEntry",
            inputs: vec![Collection::of(Kind::ServiceEntry), Collection::MESH_CONFIG],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        if addresses_auto_allocated(ctx) {
            return;
        }
        for (entry, se) in ctx.each::<IstioServiceEntry>() {
            if !se.spec.addresses.is_empty() || status_has_addresses(se) {
                continue;
            }
            for (i, port) in se.spec.ports.iter().enumerate() {
                if port.protocol.is_empty() || port.protocol.eq_ignore_ascii_case("TCP") {
                    out.push(entry.message_at(
                        &format!("spec.ports[{i}]"),
                        catalogue::SERVICE_ENTRY_ADDRESSES_REQUIRED,
                        Vec::new(),
                    ));
                }
            }
        }
    }
}

/// `serviceentry.ConflictingServiceEntryProtocolAnalyzer`: ServiceEntries visible in the
/// same namespaces must agree on the protocol of a host and port.
pub struct ConflictingProtocol;

/// A host and port as seen in a scope (`*` or a namespace).
type HostPort<'a> = (&'a str, &'a str, u32);

/// A protocol a ServiceEntry gives a host and port.
type Definition<'a> = (&'a str, &'a Entry);

/// Where a ServiceEntry is visible: `*` for everywhere, else its namespaces.
fn scopes<'a>(export_to: &'a [String], namespace: &'a str) -> BTreeSet<&'a str> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return BTreeSet::from(["*"]);
    }
    export_to
        .iter()
        .map(|e| if e == "." { namespace } else { e.as_str() })
        .collect()
}

impl Analyzer for ConflictingProtocol {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "serviceentry.ConflictingServiceEntryProtocolAnalyzer".into(),
            description: "Checks if multiple ServiceEntries define the same host and port with different protocols",
            inputs: vec![Collection::of(Kind::ServiceEntry)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let mut index: BTreeMap<HostPort<'_>, Vec<Definition<'_>>> = BTreeMap::new();
        for (entry, se) in ctx.each::<IstioServiceEntry>() {
            for scope in scopes(&se.spec.export_to, entry.namespace()) {
                for host in &se.spec.hosts {
                    for port in &se.spec.ports {
                        index
                            .entry((scope, host, port.number))
                            .or_default()
                            .push((&port.protocol, entry));
                    }
                }
            }
        }
        let mut reported = HashSet::new();
        for (&(scope, host, port), defined) in &index {
            // What is visible everywhere meets what is visible in this namespace.
            let everywhere = match scope {
                "*" => None,
                _ => index.get(&("*", host, port)),
            };
            let defined: Vec<&Definition<'_>> = defined
                .iter()
                .chain(everywhere.into_iter().flatten())
                .collect();
            let protocols: BTreeSet<String> = defined
                .iter()
                .map(|(p, _)| p.to_ascii_uppercase())
                .collect();
            if protocols.len() < 2 {
                continue;
            }
            let names: BTreeSet<String> = defined
                .iter()
                .map(|(_, e)| format!("{}/{}", e.namespace(), e.name()))
                .collect();
            let names = names.into_iter().collect::<Vec<_>>().join(", ");
            let protocols = protocols.into_iter().collect::<Vec<_>>().join(", ");
            for (_, entry) in defined {
                if reported.insert(entry.key()) {
                    out.push(entry.message_at(
                        "metadata.name",
                        catalogue::CONFLICTING_SERVICE_ENTRY_PROTOCOL,
                        args![names, host, port, protocols],
                    ));
                }
            }
        }
    }
}
