//! The SPIFFE identity Istio gives a workload: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.

use std::fmt;
use std::str::FromStr;

/// A workload identity in Istio's SPIFFE form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

/// Why a string or its parts are not an Istio SPIFFE identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// It does not have the `spiffe://TD/ns/NS/sa/SA` shape.
    #[error(
        "{0:?} is not a SPIFFE identity of the form spiffe://<trust domain>/ns/<namespace>/sa/<service account>"
    )]
    Shape(String),
    /// One part is empty or holds a `/`.
    #[error("SPIFFE identity: {part} {value:?} must be non-empty and hold no '/'")]
    Part {
        /// `trust domain`, `namespace` or `service account`.
        part: &'static str,
        /// What it was.
        value: String,
    },
}

impl SpiffeId {
    /// The identity of service account `service_account` in `namespace`.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Result<SpiffeId, SpiffeIdError> {
        let id = SpiffeId {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        };
        for (part, value) in [
            ("trust domain", &id.trust_domain),
            ("namespace", &id.namespace),
            ("service account", &id.service_account),
        ] {
            if value.is_empty() || value.contains('/') {
                return Err(SpiffeIdError::Part {
                    part,
                    value: value.clone(),
                });
            }
        }
        Ok(id)
    }

    /// The trust domain (`cluster.local`).
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The service account.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<SpiffeId, SpiffeIdError> {
        let shape = || SpiffeIdError::Shape(s.to_owned());
        let rest = s.strip_prefix("spiffe://").ok_or_else(shape)?;
        let mut parts = rest.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) => {
                SpiffeId::new(td, ns, sa)
            }
            _ => Err(shape()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_istios_form() {
        let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/sleep"
            .parse()
            .unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "sleep");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/sleep");
    }

    #[test]
    fn other_shapes_are_refused_by_name() {
        for bad in [
            "spiffe://cluster.local/ns/default",
            "spiffe://cluster.local/ns/default/sa/sleep/extra",
            "https://cluster.local/ns/default/sa/sleep",
            "spiffe://cluster.local/namespace/default/sa/sleep",
        ] {
            let err = bad.parse::<SpiffeId>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        let err = SpiffeId::new("cluster.local", "", "sleep").unwrap_err();
        assert_eq!(
            err.to_string(),
            "SPIFFE identity: namespace \"\" must be non-empty and hold no '/'"
        );
    }
}
