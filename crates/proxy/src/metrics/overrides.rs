//! A chain's changes to Istio's standard metrics, as its stats config's `metrics` give
//! them (pilot writes them from Telemetry `overrides`): metrics dropped, labels removed,
//! labels added or replaced by an attribute of the request or of its ends.
//!
//! The attributes are evaluated once per request into its series key, and only on
//! chains that have overrides; the labels are rearranged when a scrape renders them,
//! where series that removal makes alike are summed.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::HeaderMap;
use mizzen_xds::istio::{Attribute, MetricConfig, PeerField, STANDARD_METRICS};

use super::workload::Workload;

/// Istio's standard metric families, in the order they render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `istio_requests_total`.
    Requests,
    /// `istio_request_duration_milliseconds`.
    Duration,
    /// `istio_request_bytes`.
    RequestBytes,
    /// `istio_response_bytes`.
    ResponseBytes,
    /// `istio_tcp_connections_opened_total`.
    TcpOpened,
    /// `istio_tcp_connections_closed_total`.
    TcpClosed,
    /// `istio_tcp_sent_bytes_total`.
    TcpSent,
    /// `istio_tcp_received_bytes_total`.
    TcpReceived,
}

impl Family {
    const ALL: [Family; 8] = [
        Family::Requests,
        Family::Duration,
        Family::RequestBytes,
        Family::ResponseBytes,
        Family::TcpOpened,
        Family::TcpClosed,
        Family::TcpSent,
        Family::TcpReceived,
    ];

    /// The name a `MetricConfig` gives it (`requests_total`).
    fn config_name(self) -> &'static str {
        STANDARD_METRICS[self as usize].1
    }
}

/// What one family's labels become.
#[derive(Debug, Default)]
struct View {
    dropped: bool,
    removed: Vec<Box<str>>,
    /// Labels set, each to the attribute at an index of [`Overrides::attributes`].
    set: Vec<(Box<str>, usize)>,
}

/// A chain's compiled overrides.
#[derive(Debug)]
pub struct Overrides {
    views: [View; 8],
    /// Every attribute some family reads, in the order their values are kept.
    attributes: Vec<Attribute>,
}

impl Overrides {
    /// Compiles a stats config's `metrics` (applied in order, an empty name meaning all
    /// standard metrics); None when they change nothing. Custom metrics are refused.
    pub fn compile(metrics: &[MetricConfig]) -> Result<Option<Arc<Overrides>>, String> {
        let mut views: [View; 8] = Default::default();
        let mut attributes: Vec<Attribute> = Vec::new();
        for (i, m) in metrics.iter().enumerate() {
            let families: Vec<Family> = match m.name.as_str() {
                "" => Family::ALL.to_vec(),
                name => vec![
                    *Family::ALL
                        .iter()
                        .find(|f| f.config_name() == name)
                        .ok_or_else(|| {
                            format!("metrics[{i}].name: {name:?} is not a standard metric")
                        })?,
                ],
            };
            let mut set = Vec::new();
            let mut dimensions: Vec<_> = m.dimensions.iter().collect();
            dimensions.sort();
            for (label, expression) in dimensions {
                let attribute = Attribute::parse(expression)
                    .map_err(|e| format!("metrics[{i}].dimensions[{label:?}]: {e}"))?;
                let index = match attributes.iter().position(|a| *a == attribute) {
                    Some(index) => index,
                    None => {
                        attributes.push(attribute);
                        attributes.len() - 1
                    }
                };
                set.push((Box::<str>::from(label.as_str()), index));
            }
            for family in families {
                let view = &mut views[family as usize];
                view.dropped |= m.drop;
                for tag in &m.tags_to_remove {
                    view.set.retain(|(l, _)| **l != **tag);
                    view.removed.push(tag.as_str().into());
                }
                for (label, index) in &set {
                    view.removed.retain(|l| l != label);
                    view.set.retain(|(l, _)| l != label);
                    view.set.push((label.clone(), *index));
                }
            }
        }
        let changes = views
            .iter()
            .any(|v| v.dropped || !v.removed.is_empty() || !v.set.is_empty());
        Ok(changes.then(|| Arc::new(Overrides { views, attributes })))
    }

    /// Whether `family` is recorded at all.
    pub fn keeps(&self, family: Family) -> bool {
        !self.views[family as usize].dropped
    }

    /// The values of the attributes for a request (`headers` is None for TCP) between
    /// `source` and `destination`.
    pub fn evaluate(
        self: &Arc<Self>,
        headers: Option<&HeaderMap>,
        uri: Option<(&http::Method, &http::Uri)>,
        (source, destination): (&Workload, &Workload),
    ) -> Custom {
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let values = self
            .attributes
            .iter()
            .map(|a| {
                let value = match a {
                    Attribute::Literal(s) => s.clone(),
                    Attribute::Host => uri
                        .and_then(|(_, u)| u.authority())
                        .map(|a| a.as_str().to_owned())
                        .unwrap_or_else(|| header("host")),
                    Attribute::Method => uri.map(|(m, _)| m.to_string()).unwrap_or_default(),
                    Attribute::Path { query: true } => uri
                        .and_then(|(_, u)| u.path_and_query())
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default(),
                    Attribute::Path { query: false } => {
                        uri.map(|(_, u)| u.path().to_owned()).unwrap_or_default()
                    }
                    Attribute::Header(name) => header(name),
                    Attribute::Peer { upstream, field } => {
                        let w = if *upstream { destination } else { source };
                        match field {
                            PeerField::Workload => w.name.clone(),
                            PeerField::Namespace => w.namespace.clone(),
                            PeerField::Service => w.canonical_service.clone(),
                            PeerField::Revision => w.canonical_revision.clone(),
                            PeerField::App => w.app.clone(),
                            PeerField::Version => w.version.clone(),
                            PeerField::Cluster => w.cluster.clone(),
                        }
                    }
                };
                value.into_boxed_str()
            })
            .collect();
        Custom {
            overrides: self.clone(),
            values,
        }
    }

    /// `labels` as `family` shows them: removed ones left out, set ones replaced in
    /// place or added at the end, with `values` of this series.
    pub fn apply<'a>(
        &'a self,
        family: Family,
        labels: &mut Vec<(&'a str, &'a str)>,
        values: &'a [Box<str>],
    ) {
        let view = &self.views[family as usize];
        labels.retain(|(name, _)| !view.removed.iter().any(|r| **r == **name));
        for (label, index) in &view.set {
            let value = &*values[*index];
            match labels.iter_mut().find(|(name, _)| *name == &**label) {
                Some(existing) => existing.1 = value,
                None => labels.push((label, value)),
            }
        }
    }
}

/// A series' overrides and the values of their attributes; series keys compare the
/// overrides by identity.
#[derive(Debug, Clone)]
pub struct Custom {
    /// The chain's overrides.
    pub overrides: Arc<Overrides>,
    /// The attributes' values, in [`Overrides`]' order.
    pub values: Box<[Box<str>]>,
}

impl PartialEq for Custom {
    fn eq(&self, other: &Custom) -> bool {
        Arc::ptr_eq(&self.overrides, &other.overrides) && self.values == other.values
    }
}

impl Eq for Custom {}

impl Hash for Custom {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.overrides).hash(state);
        self.values.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, remove: &[&str], set: &[(&str, &str)]) -> MetricConfig {
        MetricConfig {
            name: name.into(),
            tags_to_remove: remove.iter().map(|s| (*s).to_owned()).collect(),
            dimensions: set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..MetricConfig::default()
        }
    }

    #[test]
    fn later_overrides_win_and_labels_keep_their_place() {
        let o = Overrides::compile(&[
            config("", &["request_protocol"], &[]),
            config(
                "requests_total",
                &[],
                &[("request_protocol", "'h'"), ("host", "request.host")],
            ),
        ])
        .unwrap()
        .unwrap();
        // Attributes in the order first named: request.host, then the literal.
        let values: Vec<Box<str>> = vec!["example.com".into(), "h".into()];
        let mut labels = vec![("reporter", "source"), ("request_protocol", "http")];
        o.apply(Family::Requests, &mut labels, &values);
        assert_eq!(
            labels,
            [
                ("reporter", "source"),
                ("request_protocol", "h"),
                ("host", "example.com")
            ]
        );
        let mut labels = vec![("reporter", "source"), ("request_protocol", "http")];
        o.apply(Family::Duration, &mut labels, &values);
        assert_eq!(labels, [("reporter", "source")]);
    }

    #[test]
    fn unknown_metrics_and_expressions_are_refused() {
        let err = Overrides::compile(&[config("my_metric", &[], &[])]).unwrap_err();
        assert!(err.contains("my_metric"), "{err}");
        let err =
            Overrides::compile(&[config("", &[], &[("x", "size(request.path)")])]).unwrap_err();
        assert!(err.contains("dimensions[\"x\"]"), "{err}");
        assert!(Overrides::compile(&[]).unwrap().is_none());
    }
}
