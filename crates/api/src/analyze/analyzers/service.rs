//! Service checks: port names from which Istio cannot tell the protocol.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::util::{is_control_plane, is_gateway_managed, port_protocol};
use crate::Kind;
use crate::analyze::{Analyzer, Collection, Context, Message, Metadata, args, catalogue};

/// `service.PortNameAnalyzer`: Service ports whose name (or `appProtocol`) names no
/// protocol, so traffic to them is sniffed; on ExternalName Services, which cannot be
/// sniffed, also ports named plain `tcp`.
pub struct PortName;

impl Analyzer for PortName {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "service.PortNameAnalyzer".into(),
            description: "Checks the port names associated with each service",
            inputs: vec![Collection::of(Kind::Service)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        for (entry, svc) in ctx.each::<Service>() {
            // Istio's own and the gateway controllers' Services are not the user's to name.
            if is_control_plane(entry) || is_gateway_managed(entry) {
                continue;
            }
            let Some(spec) = &svc.spec else { continue };
            let external_name = spec.type_.as_deref() == Some("ExternalName");
            for (i, port) in spec.ports.iter().flatten().enumerate() {
                let name = port.name.as_deref().unwrap_or_default();
                if port_protocol(port).is_some() && !(external_name && name == "tcp") {
                    continue;
                }
                let path = format!("spec.ports[{i}]");
                out.push(if external_name {
                    entry.message_at(
                        &path,
                        catalogue::EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME,
                        args![],
                    )
                } else {
                    let target = match &port.target_port {
                        Some(IntOrString::Int(n)) => n.to_string(),
                        Some(IntOrString::String(s)) => s.clone(),
                        None => "0".into(),
                    };
                    entry.message_at(
                        &path,
                        catalogue::PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
                        args![name, port.port, target],
                    )
                });
            }
        }
    }
}
