//! Checks of a remote cluster's webhooks that point at an external control plane.

use std::net::IpAddr;

use super::webhook::{Webhook, WebhookConfiguration};
use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};

/// `externalcontrolplane.ExternalControlPlaneAnalyzer`: Istio's validating and injecting
/// webhooks must reach the control plane by a Service or by a URL naming a host; a
/// blank or malformed URL is an error, an IP address a warning sign.
///
/// Istio also looks the host up in DNS; an analysis reads configuration only (and runs
/// offline), so hosts are checked for form, not resolved.
pub struct ExternalControlPlane;

/// The default validating webhook configuration; revisioned ones start `istio-validator`.
const DEFAULT_VALIDATOR: &str = "istiod-default-validator";

/// The host of a URL (`scheme://[user@]host[:port][/…]`); `None` when it has none.
fn url_host(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => host_port.split(':').next().unwrap_or_default(),
    };
    let valid =
        |s: &str| !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c.is_control());
    (valid(scheme) && valid(host)).then_some(host)
}

/// The message for one webhook's client config, if it has a problem.
fn check(entry: &Entry, hook: &Webhook) -> Option<Message> {
    let config = &hook.client_config;
    let Some(url) = &config.url else {
        return config.service.is_none().then(|| {
            entry.message(
                catalogue::INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
                args!["", hook.name, "is blank"],
            )
        });
    };
    match url_host(url) {
        None => Some(entry.message(
            catalogue::INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
            args![url, hook.name, "was provided in an invalid format"],
        )),
        Some(host) if host.parse::<IpAddr>().is_ok() => Some(entry.message(
            catalogue::EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME,
            args![url, hook.name],
        )),
        Some(_) => None,
    }
}

impl Analyzer for ExternalControlPlane {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "externalcontrolplane.ExternalControlPlaneAnalyzer".into(),
            description: "Checks that the remote IstioOperator resources reference an external control plane",
            inputs: vec![Collection::VALIDATING_WEBHOOK, Collection::MUTATING_WEBHOOK],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let istio_validators = ctx
            .decoded::<WebhookConfiguration>(Collection::VALIDATING_WEBHOOK)
            .filter(|(e, _)| {
                e.name() == DEFAULT_VALIDATOR || e.name().starts_with("istio-validator")
            });
        let istio_injectors = ctx
            .decoded::<WebhookConfiguration>(Collection::MUTATING_WEBHOOK)
            .filter(|(e, _)| e.name().starts_with("istio-sidecar-injector"));
        for (entry, config) in istio_validators.chain(istio_injectors) {
            out.extend(config.webhooks.iter().filter_map(|hook| check(entry, hook)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts_are_read_as_go_reads_them() {
        assert_eq!(
            url_host("https://test.com:15017/validate"),
            Some("test.com")
        );
        assert_eq!(url_host("https://1.1.1.1:5100/inject"), Some("1.1.1.1"));
        assert_eq!(url_host("https://u@[::1]:443/x"), Some("::1"));
        assert_eq!(url_host("test.com/validate"), None);
        assert_eq!(url_host("https:///validate"), None);
    }
}
