//! DestinationRule checks: TLS origination that does not verify the server.

use crate::analyze::{Analyzer, Collection, Context, Message, Metadata, args, catalogue};
use crate::networking::{ClientTlsMode, ClientTlsSettings, DestinationRule};
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
