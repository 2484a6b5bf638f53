//! A proxy started without an identity (no CA to get a certificate from) whose config
//! asks its agent for `default` or `ROOTCA` says so, once: otherwise the TLS that needs
//! them would wait for secrets that never come, without a word.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::config::{ConfigStore, Snapshot};
use crate::tls::{AGENT_SDS_CLUSTER, SecretSource};

/// The agent's secrets a config asks for while the proxy has no identity to serve them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingIdentity {
    /// The secrets' names (`ROOTCA`, `default`), never empty.
    secrets: BTreeSet<String>,
}

impl MissingIdentity {
    /// What `snapshot` asks of the proxy's agent, if anything.
    pub(crate) fn of(snapshot: &Snapshot) -> Option<MissingIdentity> {
        let secrets: BTreeSet<String> = snapshot
            .secret_slots()
            .filter(|slot| slot.source() == Some(SecretSource::Agent))
            .map(|slot| slot.name().to_owned())
            .collect();
        (!secrets.is_empty()).then_some(MissingIdentity { secrets })
    }
}

impl fmt::Display for MissingIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.secrets.iter().map(|s| format!("{s:?}")).collect();
        write!(
            f,
            "the config asks the proxy's agent ({AGENT_SDS_CLUSTER}) for secret {}, but no CA is \
             configured, so this proxy has no workload certificate and the TLS that needs one \
             waits; give a CA with --ca-addr (CA_ADDR) and --ca-root-cert (CA_ROOT_CA), or take \
             config and certificate from pilot over TLS with --xds-root-cert (XDS_ROOT_CA), and \
             a token with --token-file",
            names.join(" and ")
        )
    }
}

/// Waits until the config in `store` asks for the agent's secrets, and says so once.
pub(crate) async fn report(store: Arc<ConfigStore>) {
    let mut changes = store.changes();
    loop {
        if let Some(missing) = MissingIdentity::of(&store.snapshot()) {
            tracing::warn!("{missing}");
            return;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use mizzen_xds::pb::envoy::config::cluster::v3::Cluster;

    use super::*;

    /// A static cluster whose upstream TLS names `secrets` from `sds_config`.
    fn store(secrets: &[&str], sds_config: &str) -> ConfigStore {
        let names: Vec<String> = secrets
            .iter()
            .map(|name| format!("{{name: {name}{sds_config}}}"))
            .collect();
        let tls = match names.split_first() {
            Some((cert, roots)) => format!(
                "transport_socket: {{name: envoy.transport_sockets.tls, typed_config: {{'@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, common_tls_context: {{tls_certificate_sds_secret_configs: [{cert}]{}}}}}}}",
                roots
                    .first()
                    .map(|r| format!(", validation_context_sds_secret_config: {r}"))
                    .unwrap_or_default()
            ),
            None => String::new(),
        };
        let cluster: Cluster = mizzen_xds::json::from_yaml(&format!(
            "name: reviews\ntype: STATIC\nload_assignment: {{cluster_name: reviews, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9080}}}}}}}}]}}]}}\n{tls}\n"
        ))
        .unwrap();
        ConfigStore::new(Vec::new(), Vec::new(), vec![cluster], false).unwrap()
    }

    const AGENT: &str = ", sds_config: {api_config_source: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: sds-grpc}}]}}";

    #[test]
    fn a_config_asking_the_agent_names_the_secrets_and_how_to_configure_a_ca() {
        let store = store(&["default", "ROOTCA"], AGENT);
        let missing = MissingIdentity::of(&store.snapshot()).expect("the config asks");
        let text = missing.to_string();
        assert!(
            text.starts_with(
                "the config asks the proxy's agent (sds-grpc) for secret \"ROOTCA\" and \"default\", but no CA is configured"
            ),
            "{text}"
        );
        for flag in [
            "--ca-addr (CA_ADDR)",
            "--xds-root-cert (XDS_ROOT_CA)",
            "--token-file",
        ] {
            assert!(text.contains(flag), "{flag} in {text}");
        }
    }

    #[test]
    fn secrets_from_elsewhere_or_none_at_all_say_nothing() {
        let ads = store(&["default"], ", sds_config: {ads: {}}");
        assert_eq!(MissingIdentity::of(&ads.snapshot()), None);
        let plain = store(&[], "");
        assert_eq!(MissingIdentity::of(&plain.snapshot()), None);
    }
}
