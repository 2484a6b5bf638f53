//! The kinds Mizzen reads, with the API groups and versions that serve them.

use std::fmt;
use std::str::FromStr;

/// Declares [`Kind`] with each kind's group, served versions (the first is the one we
/// write) and whether its `spec` is required.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $kind:ident: $group:literal [$($version:literal),+] $(, $flag:ident)* ;)+) => {
        /// A kind of object Mizzen understands.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $( $(#[$doc])* $kind, )+
        }

        impl Kind {
            /// Every kind, Istio's first, then Kubernetes'.
            pub const ALL: &'static [Kind] = &[$(Kind::$kind),+];

            /// The kind's name, as written in `kind:`.
            pub const fn name(self) -> &'static str {
                match self { $(Kind::$kind => stringify!($kind)),+ }
            }

            /// The API group; empty for Kubernetes' core group.
            pub const fn group(self) -> &'static str {
                match self { $(Kind::$kind => $group),+ }
            }

            /// The versions served for this kind, preferred first.
            pub const fn versions(self) -> &'static [&'static str] {
                match self { $(Kind::$kind => &[$($version),+]),+ }
            }

            /// True when objects of this kind must carry a `spec`.
            pub const fn spec_required(self) -> bool {
                match self { $(Kind::$kind => kinds!(@has spec_required $($flag)*)),+ }
            }

            /// True for kinds that live outside any namespace.
            pub const fn cluster_scoped(self) -> bool {
                match self { $(Kind::$kind => kinds!(@has cluster_scoped $($flag)*)),+ }
            }

            /// True for kinds the proxy does not implement; they load, validate and
            /// are reported by analysis, but have no effect on traffic.
            pub const fn unsupported(self) -> bool {
                match self { $(Kind::$kind => kinds!(@has unsupported $($flag)*)),+ }
            }
        }

        impl FromStr for Kind {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s {
                    $(stringify!($kind) => Ok(Kind::$kind),)+
                    _ => Err(()),
                }
            }
        }
    };
    (@has $want:ident) => { false };
    (@has $want:ident $first:ident $($rest:ident)*) => {
        kinds!(@eq $want $first) || kinds!(@has $want $($rest)*)
    };
    (@eq spec_required spec_required) => { true };
    (@eq cluster_scoped cluster_scoped) => { true };
    (@eq unsupported unsupported) => { true };
    (@eq $a:ident $b:ident) => { false };
}

kinds! {
    /// `networking.istio.io` VirtualService: HTTP/TCP/TLS routing rules.
    VirtualService: "networking.istio.io" ["v1", "v1beta1", "v1alpha3"];
    /// `networking.istio.io` DestinationRule: policies after routing, and subsets.
    DestinationRule: "networking.istio.io" ["v1", "v1beta1", "v1alpha3"];
    /// `networking.istio.io` Gateway: a load balancer at the edge of the mesh.
    Gateway: "networking.istio.io" ["v1", "v1beta1", "v1alpha3"];
    /// `networking.istio.io` ServiceEntry: services added to the registry by hand.
    ServiceEntry: "networking.istio.io" ["v1", "v1beta1", "v1alpha3"], spec_required;
    /// `networking.istio.io` WorkloadEntry: a non-Kubernetes workload.
    WorkloadEntry: "networking.istio.io" ["v1", "v1beta1", "v1alpha3"], spec_required;
    /// `networking.istio.io` WorkloadGroup: a template for WorkloadEntries.
    WorkloadGroup: "networking.istio.io" ["v1", "v1beta1", "v1alpha3"], spec_required;
    /// `networking.istio.io` Sidecar: what a sidecar proxy sees and accepts.
    Sidecar: "networking.istio.io" ["v1", "v1beta1", "v1alpha3"];
    /// `networking.istio.io` ProxyConfig: per-workload proxy settings.
    ProxyConfig: "networking.istio.io" ["v1beta1"];
    /// `networking.istio.io` EnvoyFilter: raw Envoy patches (not applied by Mizzen's proxy).
    EnvoyFilter: "networking.istio.io" ["v1alpha3"], unsupported;
    /// `security.istio.io` PeerAuthentication: mTLS mode.
    PeerAuthentication: "security.istio.io" ["v1", "v1beta1"];
    /// `security.istio.io` RequestAuthentication: JWT validation.
    RequestAuthentication: "security.istio.io" ["v1", "v1beta1"];
    /// `security.istio.io` AuthorizationPolicy: access control.
    AuthorizationPolicy: "security.istio.io" ["v1", "v1beta1"];
    /// `telemetry.istio.io` Telemetry: metrics, access logs and tracing settings.
    Telemetry: "telemetry.istio.io" ["v1", "v1alpha1"];
    /// `extensions.istio.io` WasmPlugin: Wasm extensions (not run by Mizzen's proxy).
    WasmPlugin: "extensions.istio.io" ["v1alpha1"], spec_required, unsupported;
    /// Kubernetes Service.
    Service: "" ["v1"];
    /// Kubernetes Namespace.
    Namespace: "" ["v1"], cluster_scoped;
    /// Kubernetes ServiceAccount.
    ServiceAccount: "" ["v1"];
    /// Kubernetes Pod.
    Pod: "" ["v1"];
    /// Kubernetes Secret.
    Secret: "" ["v1"];
    /// Kubernetes Deployment.
    Deployment: "apps" ["v1"];
    /// Kubernetes EndpointSlice.
    EndpointSlice: "discovery.k8s.io" ["v1"];
}

impl Kind {
    /// True for Istio's own kinds (as opposed to Kubernetes' built-in ones).
    pub fn is_istio(self) -> bool {
        self.group().ends_with(".istio.io")
    }

    /// The `apiVersion` this kind is written with by default (`group/version`).
    pub fn api_version(self) -> String {
        api_version(self.group(), self.versions()[0])
    }

    /// Resolves `apiVersion` + `kind`; `Ok(None)` for a kind Mizzen does not model
    /// (such objects load as opaque), an error for a known kind at an unserved version.
    pub fn resolve(api_version: &str, kind: &str) -> Result<Option<Kind>, String> {
        let Ok(known) = kind.parse::<Kind>() else {
            return Ok(None);
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        if group != known.group() {
            // A same-named kind of another group (e.g. Gateway API's Gateway) is not ours.
            return Ok(None);
        }
        if known.versions().contains(&version) {
            Ok(Some(known))
        } else {
            let served: Vec<String> = known
                .versions()
                .iter()
                .map(|v| api_version_of(known, v))
                .collect();
            Err(format!(
                "apiVersion {api_version:?} is not served for kind {kind}; use one of {}",
                served.join(", ")
            ))
        }
    }
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn api_version_of(kind: Kind, version: &str) -> String {
    api_version(kind.group(), version)
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_version_resolves_to_one_kind() {
        for v in [
            "networking.istio.io/v1",
            "networking.istio.io/v1beta1",
            "networking.istio.io/v1alpha3",
        ] {
            assert_eq!(
                Kind::resolve(v, "VirtualService"),
                Ok(Some(Kind::VirtualService))
            );
        }
        assert_eq!(
            Kind::resolve("security.istio.io/v1beta1", "PeerAuthentication"),
            Ok(Some(Kind::PeerAuthentication))
        );
        assert_eq!(
            Kind::resolve("telemetry.istio.io/v1alpha1", "Telemetry"),
            Ok(Some(Kind::Telemetry))
        );
        assert_eq!(Kind::resolve("v1", "Service"), Ok(Some(Kind::Service)));
        assert_eq!(
            Kind::resolve("gateway.networking.k8s.io/v1", "Gateway"),
            Ok(None)
        );
        assert!(Kind::resolve("networking.istio.io/v2", "VirtualService").is_err());
        assert!(Kind::Namespace.cluster_scoped() && Kind::ServiceEntry.spec_required());
        assert!(Kind::EnvoyFilter.unsupported() && !Kind::Sidecar.unsupported());
    }
}
