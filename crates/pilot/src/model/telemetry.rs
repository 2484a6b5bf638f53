//! Which metrics, access logs and traces a proxy produces: the Telemetry resources in
//! scope for it merged as Istio merges them (root namespace, then its namespace, then
//! the one selecting its workload; later scopes override per provider), over
//! MeshConfig's `defaultProviders` and mesh-level defaults.

use std::collections::{BTreeMap, BTreeSet};

use mizzen_api::mesh::{ENVOY_PROVIDER, ExtensionProvider, FileAccessLog, Provider};
use mizzen_api::telemetry::{
    AccessLogging, CustomTag, IstioMetric, MetricMatch, MetricSelector, Metrics,
    TagOverrideOperation, Telemetry as TelemetrySpec, Tracing, WorkloadMode,
};
use mizzen_api::{Kind, Resource};

use super::proxy::Proxy;
use super::push::PushContext;
use super::security::{sorted, targets_gateway};

/// The side of the traffic a listener serves, as Telemetry's `match.mode` sees it:
/// outbound and gateway listeners are the client, inbound ones the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrafficSide {
    /// Outbound sidecar listeners and gateways.
    Client,
    /// Inbound sidecar listeners.
    Server,
}

impl TrafficSide {
    fn selected_by(self, mode: WorkloadMode) -> bool {
        matches!(
            (mode, self),
            (WorkloadMode::ClientAndServer, _)
                | (WorkloadMode::Client, TrafficSide::Client)
                | (WorkloadMode::Server, TrafficSide::Server)
        )
    }
}

/// The metrics one side of a proxy reports, per provider.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsConfig {
    /// Providers with metrics on, by name.
    pub providers: Vec<MetricsProvider>,
}

/// One metrics provider's settings for one side.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsProvider {
    /// The provider as declared in MeshConfig.
    pub provider: ExtensionProvider,
    /// Per-metric changes, by metric name (`REQUEST_COUNT`… or a custom name).
    pub overrides: Vec<MetricOverride>,
    /// How often long-lived connections are reported, when set.
    pub reporting_interval: Option<mizzen_api::types::Duration>,
}

/// The merged overrides of one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricOverride {
    /// `REQUEST_COUNT`…, or a custom metric's name.
    pub metric: String,
    /// The metric is not reported.
    pub disabled: bool,
    /// Tag changes, by tag name.
    pub tags: Vec<TagOverride>,
}

/// One tag change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagOverride {
    /// The tag.
    pub name: String,
    /// Its new value (a CEL expression), or `None` to remove it.
    pub value: Option<String>,
}

/// One access log a listener writes.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    /// Where and how.
    pub sink: LogSink,
    /// Telemetry's `filter.expression` (CEL): only matching requests are logged.
    pub filter: Option<String>,
}

/// Where an access log goes and in which format.
#[derive(Debug, Clone, PartialEq)]
pub enum LogSink {
    /// A file in the mesh's format (`accessLogEncoding`, `accessLogFormat`): the mesh's
    /// `accessLogFile`, or the built-in `envoy` provider without a format of its own.
    MeshFormat {
        /// The file.
        path: String,
    },
    /// A file provider with its own format.
    File(FileAccessLog),
}

/// How a connection manager traces requests.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Where spans are reported; `None`: trace context is handled, nothing reported
    /// (Istio's `enableTracing` without a provider).
    pub provider: Option<ExtensionProvider>,
    /// Percentage of requests sampled when the caller did not decide.
    pub sampling: f64,
    /// Extra span tags, by name.
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Add Istio's tags (`istio.canonical_service`, `istio.mesh_id`…).
    pub istio_tags: bool,
}

/// The Telemetry API as it applies to proxies of one push.
#[derive(Debug, Clone, Copy)]
pub struct Telemetry<'a> {
    push: &'a PushContext,
}

/// The Telemetry resources in scope for a proxy, least specific first.
struct Scopes<'a>(Vec<&'a Resource<TelemetrySpec>>);

impl PushContext {
    /// The Telemetry API over this push's config.
    pub fn telemetry(&self) -> Telemetry<'_> {
        Telemetry { push: self }
    }
}

impl<'a> Telemetry<'a> {
    /// The mesh-wide Telemetry (root namespace, no selector), the proxy's namespace's,
    /// and the one selecting its workload (by labels, or a Gateway `targetRef`): the
    /// oldest of each.
    fn scopes(&self, proxy: &Proxy) -> Scopes<'a> {
        let root = self.push.mesh.root_namespace.as_str();
        let all = sorted::<TelemetrySpec>(&self.push.config, Kind::Telemetry);
        let in_ns = |ns: &str| -> Vec<&'a Resource<TelemetrySpec>> {
            all.iter()
                .copied()
                .filter(|t| t.metadata.namespace.as_deref() == Some(ns))
                .collect()
        };
        let wide = |ns: &str| {
            in_ns(ns).into_iter().find(|t| {
                t.spec
                    .selector
                    .as_ref()
                    .is_none_or(|s| s.match_labels.is_empty())
                    && t.spec.target_ref.is_none()
                    && t.spec.target_refs.is_empty()
            })
        };
        let mut out: Vec<_> = wide(root).into_iter().collect();
        if proxy.namespace != root {
            out.extend(wide(&proxy.namespace));
        }
        let ns = proxy.namespace.as_str();
        out.extend(in_ns(ns).into_iter().find(|t| {
            let by_labels = t
                .spec
                .selector
                .as_ref()
                .is_some_and(|s| !s.match_labels.is_empty() && s.matches(&proxy.labels));
            by_labels
                || t.spec
                    .target_ref
                    .iter()
                    .chain(&t.spec.target_refs)
                    .any(|r| targets_gateway(r, ns, proxy))
        }));
        Scopes(out)
    }

    fn provider(&self, name: &str) -> Option<&'a ExtensionProvider> {
        self.push.mesh.config.provider(name)
    }

    /// The metrics `proxy` reports on `side` (Istio's `mergeMetrics`): providers from
    /// the most specific scope that names some (else `defaultProviders.metrics`),
    /// overrides applied in scope order, later ones winning per metric and tag.
    pub fn metrics(&self, proxy: &Proxy, side: TrafficSide) -> MetricsConfig {
        let scopes = self.scopes(proxy);
        let entries: Vec<&Metrics> = scopes.0.iter().flat_map(|t| &t.spec.metrics).collect();
        let defaults = &self.push.mesh.default_providers.metrics;
        let in_scope = entries
            .iter()
            .rev()
            .find(|m| !m.providers.is_empty())
            .map_or_else(
                || defaults.clone(),
                |m| m.providers.iter().map(|p| p.name.clone()).collect(),
            );

        #[derive(Default)]
        struct Metric {
            disabled: Option<bool>,
            tags: BTreeMap<String, Option<String>>,
        }
        #[derive(Default)]
        struct Merged {
            disabled_all: bool,
            interval: Option<mizzen_api::types::Duration>,
            metrics: BTreeMap<String, Metric>,
        }
        let mut merged: BTreeMap<&str, Merged> = BTreeMap::new();
        if entries.is_empty() {
            for name in defaults {
                merged.entry(name).or_default();
            }
        }
        let mut parent: Vec<&str> = defaults.iter().map(String::as_str).collect();
        for m in &entries {
            let names: Vec<&str> = if m.providers.is_empty() {
                parent.clone()
            } else {
                m.providers.iter().map(|p| p.name.as_str()).collect()
            };
            for name in &names {
                if !in_scope.iter().any(|n| n == name) {
                    continue;
                }
                let provider = merged.entry(name).or_default();
                if m.reporting_interval.is_some() {
                    provider.interval = m.reporting_interval;
                }
                for o in &m.overrides {
                    let selector = o.match_.clone().unwrap_or_default();
                    if !side.selected_by(selector.mode) {
                        continue;
                    }
                    if all_metrics(&selector) && o.disabled == Some(true) {
                        provider.disabled_all = true;
                        continue;
                    }
                    provider.disabled_all = false;
                    for metric in metric_names(&selector) {
                        let entry = provider.metrics.entry(metric).or_default();
                        if o.disabled.is_some() {
                            entry.disabled = o.disabled;
                        }
                        for (tag, change) in &o.tag_overrides {
                            let value = (change.operation == TagOverrideOperation::Upsert)
                                .then(|| change.value.clone());
                            entry.tags.insert(tag.clone(), value);
                        }
                    }
                }
            }
            parent = names;
        }
        let providers = merged
            .into_iter()
            .filter(|(_, m)| !m.disabled_all)
            .filter_map(|(name, m)| {
                Some(MetricsProvider {
                    provider: self.provider(name)?.clone(),
                    reporting_interval: m.interval,
                    overrides: m
                        .metrics
                        .into_iter()
                        .map(|(metric, m)| MetricOverride {
                            metric,
                            disabled: m.disabled == Some(true),
                            tags: m
                                .tags
                                .into_iter()
                                .map(|(name, value)| TagOverride { name, value })
                                .collect(),
                        })
                        .collect(),
                })
            })
            .collect();
        MetricsConfig { providers }
    }

    /// The access logs `proxy` writes on `side` (Istio's `AccessLogging` and
    /// `mergeLogs`): without Telemetry access logging or default providers, the mesh's
    /// `accessLogFile`; else each enabled provider with the filter of the entry that
    /// named it, in provider name order. Providers that are not file loggers are left
    /// out (pilot warns about unsupported kinds when MeshConfig loads).
    pub fn access_logs(&self, proxy: &Proxy, side: TrafficSide) -> Vec<AccessLog> {
        let mesh = &self.push.mesh;
        let scopes = self.scopes(proxy);
        let levels: Vec<&[AccessLogging]> = scopes
            .0
            .iter()
            .map(|t| t.spec.access_logging.as_slice())
            .filter(|l| !l.is_empty())
            .collect();
        let defaults = &mesh.default_providers.access_logging;
        if levels.is_empty() && defaults.is_empty() {
            return if mesh.access_log_file.is_empty() {
                Vec::new()
            } else {
                vec![AccessLog {
                    sink: LogSink::MeshFormat {
                        path: mesh.access_log_file.clone(),
                    },
                    filter: None,
                }]
            };
        }
        let selects = |l: &AccessLogging| {
            side.selected_by(l.match_.as_ref().map(|m| m.mode).unwrap_or_default())
        };
        let mut enabled: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        if levels.is_empty() {
            enabled.extend(defaults.iter().map(|d| (d.as_str(), None)));
        } else {
            let mut in_scope: BTreeSet<&str> = defaults.iter().map(String::as_str).collect();
            let mut filters: BTreeMap<&str, Option<&str>> = BTreeMap::new();
            for level in &levels {
                let mut names = BTreeSet::new();
                for l in level.iter().filter(|l| selects(l)) {
                    for p in &l.providers {
                        names.insert(p.name.as_str());
                        filters.insert(&p.name, filter_of(l));
                    }
                }
                if !names.is_empty() {
                    in_scope = names;
                }
            }
            let mut parent: Vec<&str> = defaults.iter().map(String::as_str).collect();
            for l in levels.iter().flat_map(|l| l.iter()) {
                let names: Vec<&str> = if l.providers.is_empty() {
                    parent.clone()
                } else {
                    l.providers.iter().map(|p| p.name.as_str()).collect()
                };
                for name in &names {
                    if !in_scope.contains(name) || !selects(l) {
                        continue;
                    }
                    if l.disabled == Some(true) {
                        enabled.remove(name);
                    } else {
                        enabled.insert(name, filters.get(name).copied().flatten());
                    }
                }
                parent = names;
            }
        }
        enabled
            .into_iter()
            .filter_map(|(name, filter)| {
                let provider = self.provider(name)?;
                let Provider::EnvoyFileAccessLog(file) = &provider.provider else {
                    return None;
                };
                // Istio formats the built-in `envoy` provider as the mesh's own log.
                let sink = if provider.name == ENVOY_PROVIDER
                    && file.log_format.is_none()
                    && !file.omit_empty_values
                {
                    LogSink::MeshFormat {
                        path: file.path.clone(),
                    }
                } else {
                    LogSink::File(file.clone())
                };
                Some(AccessLog {
                    sink,
                    filter: filter.map(str::to_owned),
                })
            })
            .collect()
    }

    /// How `proxy`'s connection managers on `side` trace (Istio's `Tracing` with
    /// `configureTracingFromTelemetry`): `None` when not at all. Without Telemetry
    /// tracing or a default provider, MeshConfig's `enableTracing` decides and no
    /// spans are reported; otherwise the last provider named (default provider
    /// first), sampling, tags and `disableSpanReporting` as the scopes set them, and
    /// no tracing when no tracing provider results.
    pub fn tracing(&self, proxy: &Proxy, side: TrafficSide) -> Option<TracingConfig> {
        let mesh = &self.push.mesh;
        let proxy_tracing = mesh.default_config.tracing.as_ref();
        let mesh_tags = || {
            proxy_tracing
                .map(|t| t.custom_tags.clone())
                .unwrap_or_default()
        };
        let mesh_istio_tags = proxy_tracing
            .and_then(|t| t.enable_istio_tags)
            .unwrap_or(true);
        let scopes = self.scopes(proxy);
        let entries: Vec<&Tracing> = scopes.0.iter().flat_map(|t| &t.spec.tracing).collect();
        let default_provider = mesh.default_providers.tracing.first();
        if entries.is_empty() && default_provider.is_none() {
            return mesh.enable_tracing.then(|| TracingConfig {
                provider: None,
                sampling: mesh.default_sampling(),
                custom_tags: mesh_tags(),
                istio_tags: mesh_istio_tags,
            });
        }
        let mut provider = default_provider.and_then(|n| self.provider(n));
        let mut disabled = false;
        let mut sampling = None;
        let mut custom_tags = BTreeMap::new();
        let mut istio_tags = true;
        for t in entries {
            if !side.selected_by(t.match_.as_ref().map(|m| m.mode).unwrap_or_default()) {
                continue;
            }
            if let Some(first) = t.providers.first() {
                provider = self.provider(&first.name);
            }
            if let Some(d) = t.disable_span_reporting {
                disabled = d;
            }
            if !t.custom_tags.is_empty() {
                custom_tags = t.custom_tags.clone();
            }
            if t.random_sampling_percentage.is_some() {
                sampling = t.random_sampling_percentage;
            }
            if let Some(enable) = t.enable_istio_tags {
                istio_tags = enable;
            }
        }
        let provider = provider
            .filter(|p| matches!(p.provider, Provider::Opentelemetry(_) | Provider::Zipkin(_)))?;
        if disabled {
            return None;
        }
        Some(TracingConfig {
            provider: Some(provider.clone()),
            sampling: sampling.unwrap_or_else(|| mesh.default_sampling()),
            custom_tags: if custom_tags.is_empty() {
                mesh_tags()
            } else {
                custom_tags
            },
            istio_tags,
        })
    }
}

fn filter_of(l: &AccessLogging) -> Option<&str> {
    l.filter
        .as_ref()
        .map(|f| f.expression.as_str())
        .filter(|e| !e.is_empty())
}

/// No metric named, or `ALL_METRICS`.
fn all_metrics(selector: &MetricSelector) -> bool {
    matches!(
        selector.metric,
        None | Some(MetricMatch::Metric(IstioMetric::AllMetrics))
    )
}

/// The metric names a selector covers; `ALL_METRICS` is every standard one.
fn metric_names(selector: &MetricSelector) -> Vec<String> {
    match &selector.metric {
        Some(MetricMatch::CustomMetric(name)) => vec![name.clone()],
        Some(MetricMatch::Metric(m)) if *m != IstioMetric::AllMetrics => {
            vec![m.as_str().to_owned()]
        }
        _ => IstioMetric::ALL
            .iter()
            .filter(|m| **m != IstioMetric::AllMetrics)
            .map(|m| m.as_str().to_owned())
            .collect(),
    }
}

#[cfg(test)]
mod tests;
