//! DestinationRule checks: TLS origination that does not verify the server, hosts that
//! are no service, and subsets no pod belongs to.

use k8s_openapi::api::core::v1::Pod;

use super::util::{ScopedHosts, selects};
use crate::analyze::{Analyzer, Collection, Context, Message, Metadata, args, catalogue};
use crate::networking::{ClientTlsMode, ClientTlsSettings, DestinationRule};
use crate::types::Labels;
use crate::{Kind, Resource};

/// `destinationrule.CaCertificateAnalyzer`: SIMPLE or MUTUAL TLS without `caCertificates`
/// does not verify the server's certificate.
pub struct CaCertificate;

/// True when `tls` originates TLS without saying which CAs to trust. A credential
/// named for selected workloads (a waypoint's) carries its own CA, so that is fine.
fn unverified(tls: &ClientTlsSettings, dr: &DestinationRule) -> bool {
    matches!(tls.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
        && tls.ca_certificates.is_empty()
        && (tls.credential_name.is_empty() || dr.workload_selector.is_none())
}

impl Analyzer for CaCertificate {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "destinationrule.CaCertificateAnalyzer".into(),
            description: "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL",
            inputs: vec![Collection::of(Kind::DestinationRule)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        for (entry, dr) in ctx.each::<Resource<DestinationRule>>() {
            let spec = &dr.spec;
            let Some(policy) = &spec.traffic_policy else {
                continue;
            };
            let full_name = format!("{}/{}", entry.namespace(), entry.name());
            if let Some(tls) = policy.tls.as_ref().filter(|tls| unverified(tls, spec)) {
                out.push(entry.message_at(
                    "spec.trafficPolicy.tls.caCertificates",
                    catalogue::NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
                    args![full_name, entry.namespace(), tls.mode, spec.host],
                ));
            }
            for (i, port) in policy.port_level_settings.iter().enumerate() {
                let Some(tls) = &port.tls else { continue };
                if unverified(tls, spec) {
                    let number = port.port.as_ref().map_or(0, |p| p.number);
                    out.push(entry.message_at(
                        &format!("spec.trafficPolicy.portLevelSettings[{i}].tls"),
                        catalogue::NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
                        args![
                            full_name,
                            entry.namespace(),
                            tls.mode,
                            spec.host,
                            format!("number:{number}")
                        ],
                    ));
                }
            }
        }
    }
}

/// `destinationrule.SubsetSelectPodAnalyzer`: the host must be a known service, and each
/// subset (the service's selector plus the subset's labels) must select some pod.
pub struct SubsetSelectsPods;

/// The node labels Istio adds to an endpoint's labels (`AugmentLabels`), so subsets may
/// select by topology.
const NODE_TOPOLOGY_LABELS: &[&str] = &[
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

/// A pod's labels as Istio sees its endpoint: with its node's region, zone, subzone and
/// hostname.
fn endpoint_labels(ctx: &Context, pod: &Pod) -> Labels {
    let mut labels = pod.metadata.labels.clone().unwrap_or_default();
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    let Some(node_name) = node_name.filter(|n| !n.is_empty()) else {
        return labels;
    };
    let Some(node) = ctx.find(Collection::NODE, "", node_name) else {
        return labels;
    };
    for &key in NODE_TOPOLOGY_LABELS {
        if let Some(value) = node.label(key) {
            labels.insert(key.to_owned(), value.to_owned());
        }
    }
    labels.insert("kubernetes.io/hostname".to_owned(), node_name.to_owned());
    labels
}

impl Analyzer for SubsetSelectsPods {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "destinationrule.SubsetSelectPodAnalyzer".into(),
            description: "Checks if pods are selected by subsets in destination rules.",
            inputs: vec![
                Collection::of(Kind::DestinationRule),
                Collection::of(Kind::Pod),
                Collection::of(Kind::Service),
                Collection::of(Kind::ServiceEntry),
                Collection::NODE,
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let hosts = ScopedHosts::new(ctx);
        let pods: Vec<Labels> = ctx
            .each::<Pod>()
            .map(|(_, pod)| endpoint_labels(ctx, pod))
            .collect();
        for (entry, dr) in ctx.each::<Resource<DestinationRule>>() {
            let spec = &dr.spec;
            let Some(service) = hosts.service(entry.namespace(), &spec.export_to, &spec.host)
            else {
                out.push(entry.message_at(
                    "spec.host",
                    catalogue::UNKNOWN_DESTINATION_RULE_HOST,
                    args![spec.host],
                ));
                continue;
            };
            for (i, subset) in spec.subsets.iter().enumerate() {
                let mut selector = service.selector.clone();
                selector.extend(subset.labels.clone());
                if !pods.iter().any(|labels| selects(&selector, Some(labels))) {
                    out.push(entry.message_at(
                        &format!("spec.subsets[{i}].name"),
                        catalogue::DESTINATION_RULE_SUBSET_NOT_SELECT_PODS,
                        args![subset.name],
                    ));
                }
            }
        }
    }
}
