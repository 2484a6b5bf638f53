//! The checks Mizzen makes on the Kubernetes objects it reads, and how Istio reads them. The API server's own
//! validation is far wider; these are the rules the mesh relies on.

use k8s_openapi::api::{apps, core, discovery};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::types::Protocol;
use crate::validate::{Validate, Validator, check_port, is_dns1123_label};

impl Validate for core::v1::Service {
    fn validate(&self, v: &mut Validator<'_>) {
        let Some(spec) = &self.spec else { return };
        v.field("spec", |v| {
            let ports = spec.ports.as_deref().unwrap_or_default();
            v.each("ports", ports, |v, p| {
                v.field("port", |v| check_port(v, p.port as u32));
                match &p.target_port {
                    Some(IntOrString::Int(n)) => v.field("targetPort", |v| check_port(v, *n as u32)),
                    Some(IntOrString::String(name)) if !is_dns1123_label(name) || name.len() > 15 => {
                        v.error_at("targetPort", format!("Invalid value: {name:?}: a port name must be a lowercase RFC 1123 label of at most 15 characters"))
                    }
                    _ => {}
                }
                match p.name.as_deref() {
                    None | Some("") if ports.len() > 1 => v.required("name"),
                    Some(name) if !name.is_empty() && !is_dns1123_label(name) => v.error_at(
                        "name",
                        format!("Invalid value: {name:?}: a port name must be a lowercase RFC 1123 label"),
                    ),
                    _ => {}
                }
            });
            let mut names: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
            names.sort_unstable();
            if let Some(dup) = names.windows(2).find(|w| w[0] == w[1]) {
                v.error_at("ports", format!("Duplicate value: port name {:?}", dup[0]));
            }
        });
    }
}

impl Validate for apps::v1::Deployment {
    fn validate(&self, v: &mut Validator<'_>) {
        let spec = &self.spec;
        let selector = spec.selector.match_labels.as_ref();
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        let selected = selector.is_none_or(|sel| {
            sel.iter()
                .all(|(k, want)| labels.and_then(|l| l.get(k)) == Some(want))
        });
        if !selected {
            v.error_at(
                "spec.template.metadata.labels",
                "Invalid value: `selector` does not match template `labels`",
            );
        }
    }
}

/// Kinds the mesh reads only by reference; nothing of theirs can break it.
macro_rules! no_mesh_rules {
    ($($ty:ty),+) => {
        $(impl Validate for $ty {
            fn validate(&self, _: &mut Validator<'_>) {}
        })+
    };
}

no_mesh_rules!(
    core::v1::Namespace,
    core::v1::ServiceAccount,
    core::v1::Pod,
    core::v1::Secret,
    discovery::v1::EndpointSlice
);

/// Ports whose protocol Istio does not sniff (the server speaks first): SMTP, DNS,
/// MySQL, MongoDB. An unnamed one of these is TCP.
const SERVER_FIRST_PORTS: [i32; 4] = [25, 53, 3306, 27017];

/// The protocol of a Service port as Istio reads it (`kube.ConvertProtocol`): UDP as
/// declared; otherwise `appProtocol`, else the port name's prefix (`http-web` → HTTP,
/// `grpc-web…` → gRPC-Web); unknown is sniffed (`None`), except on server-first ports
/// where it is TCP.
pub fn service_port_protocol(port: &core::v1::ServicePort) -> Option<Protocol> {
    if port.protocol.as_deref() == Some("UDP") {
        return Some(Protocol::Udp);
    }
    let name = port
        .app_protocol
        .as_deref()
        .or(port.name.as_deref())
        .unwrap_or_default();
    const GRPC_WEB: &str = "grpc-web";
    if name
        .get(..GRPC_WEB.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(GRPC_WEB))
    {
        return Some(Protocol::GrpcWeb);
    }
    let prefix = name.split('-').next().unwrap_or_default();
    match prefix.parse::<Protocol>() {
        Ok(protocol) => Some(protocol),
        Err(_) => SERVER_FIRST_PORTS
            .contains(&port.port)
            .then_some(Protocol::Tcp),
    }
}
