//! `telemetry.istio.io` Telemetry: which metrics, access logs and traces workloads
//! produce, and where they send them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Duration, PolicyTargetReference, WorkloadSelector, is_default, string_enum};
use crate::validate::{
    Validate, Validator, cel_error, check_duration_at_least, check_selector_and_targets,
};

/// Telemetry configuration for workloads: metrics, access logging and tracing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Telemetry {
    /// Workloads this applies to; all workloads of the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// A single resource (Gateway, Service…) this applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Resources this applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Tracing behaviour (at most one entry is supported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracing: Vec<Tracing>,
    /// Metrics behaviour.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metrics>,
    /// Access logging behaviour.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_logging: Vec<AccessLogging>,
}

/// A reference to an extension provider declared in MeshConfig.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderRef {
    /// Name of the provider, as declared in `meshConfig.extensionProviders`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

string_enum! {
    /// Which side of the traffic (client, server or both) a setting applies to.
    pub enum WorkloadMode {
        /// Both the client and the server side.
        ClientAndServer = "CLIENT_AND_SERVER",
        /// The client (outbound) side.
        Client = "CLIENT",
        /// The server (inbound) side.
        Server = "SERVER",
    }
}

/// Tracing settings: providers, sampling, and tags added to spans.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    /// The traffic (client/server) this applies to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<TracingSelector>,
    /// Providers spans are reported to (one is supported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Percentage of requests (0.0–100.0) sampled when not decided upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_sampling_percentage: Option<f64>,
    /// Stops span reporting while still propagating trace context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_span_reporting: Option<bool>,
    /// Stops propagating trace context headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_context_propagation: Option<bool>,
    /// Extra tags added to spans, by tag name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Uses `x-request-id` to decide sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_request_id_for_trace_sampling: Option<bool>,
    /// Adds Istio's own tags (`istio.canonical_service`…) to spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_istio_tags: Option<bool>,
}

/// Selects the traffic a tracing entry applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingSelector {
    /// Client, server, or both.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: WorkloadMode,
}

/// Where a custom span tag gets its value: exactly one of `literal`, `environment`,
/// `header` or `formatter` (or none, which adds nothing).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawCustomTag", into = "RawCustomTag")]
pub enum CustomTag {
    /// `{}`: no source given.
    #[default]
    Unset,
    /// A fixed value.
    Literal(Literal),
    /// The value of an environment variable of the proxy.
    Environment(Environment),
    /// The value of a request header.
    Header(RequestHeader),
    /// A value computed from an Envoy substitution formatter.
    Formatter(Formatter),
}

/// A fixed tag value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Literal {
    /// The value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// A tag value read from an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Environment {
    /// Name of the environment variable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Value used when the variable is unset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_value: String,
}

/// A tag value read from a request header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestHeader {
    /// Name of the header.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Value used when the header is absent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_value: String,
}

/// A tag value computed by an Envoy substitution formatter, e.g. `%REQ(:PATH)%`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Formatter {
    /// The formatter expression.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustomTag {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    literal: Option<Literal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment: Option<Environment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<RequestHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    formatter: Option<Formatter>,
}

impl TryFrom<RawCustomTag> for CustomTag {
    type Error = &'static str;

    fn try_from(raw: RawCustomTag) -> Result<Self, Self::Error> {
        match (raw.literal, raw.environment, raw.header, raw.formatter) {
            (None, None, None, None) => Ok(CustomTag::Unset),
            (Some(l), None, None, None) => Ok(CustomTag::Literal(l)),
            (None, Some(e), None, None) => Ok(CustomTag::Environment(e)),
            (None, None, Some(h), None) => Ok(CustomTag::Header(h)),
            (None, None, None, Some(f)) => Ok(CustomTag::Formatter(f)),
            _ => Err("only one of literal, environment, header or formatter may be set"),
        }
    }
}

impl From<CustomTag> for RawCustomTag {
    fn from(tag: CustomTag) -> Self {
        let mut raw = RawCustomTag::default();
        match tag {
            CustomTag::Unset => {}
            CustomTag::Literal(l) => raw.literal = Some(l),
            CustomTag::Environment(e) => raw.environment = Some(e),
            CustomTag::Header(h) => raw.header = Some(h),
            CustomTag::Formatter(f) => raw.formatter = Some(f),
        }
        raw
    }
}

/// Metrics settings: providers, overrides, and how often metrics are reported.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// Providers metrics are generated for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Per-metric changes: disabling, and adding/removing tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<MetricsOverrides>,
    /// How often metrics of long-lived connections are reported (at least 1ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<Duration>,
}

/// A change to the metrics selected by `match`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsOverrides {
    /// The metrics this applies to; all metrics when unset.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<MetricSelector>,
    /// Turns the selected metrics off (or back on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Tags to add, change or remove, by tag name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tag_overrides: BTreeMap<String, TagOverride>,
}

string_enum! {
    /// Istio's standard metrics.
    pub enum IstioMetric {
        /// Every metric.
        AllMetrics = "ALL_METRICS",
        /// `istio_requests_total`.
        RequestCount = "REQUEST_COUNT",
        /// `istio_request_duration_milliseconds`.
        RequestDuration = "REQUEST_DURATION",
        /// `istio_request_bytes`.
        RequestSize = "REQUEST_SIZE",
        /// `istio_response_bytes`.
        ResponseSize = "RESPONSE_SIZE",
        /// `istio_tcp_connections_opened_total`.
        TcpOpenedConnections = "TCP_OPENED_CONNECTIONS",
        /// `istio_tcp_connections_closed_total`.
        TcpClosedConnections = "TCP_CLOSED_CONNECTIONS",
        /// `istio_tcp_sent_bytes_total`.
        TcpSentBytes = "TCP_SENT_BYTES",
        /// `istio_tcp_received_bytes_total`.
        TcpReceivedBytes = "TCP_RECEIVED_BYTES",
        /// `istio_request_messages_total`.
        GrpcRequestMessages = "GRPC_REQUEST_MESSAGES",
        /// `istio_response_messages_total`.
        GrpcResponseMessages = "GRPC_RESPONSE_MESSAGES",
    }
}

/// Selects metrics: a standard or custom metric (or all), on the client/server side.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawMetricSelector", into = "RawMetricSelector")]
pub struct MetricSelector {
    /// The metric; `None` selects all metrics.
    pub metric: Option<MetricMatch>,
    /// Client, server, or both.
    pub mode: WorkloadMode,
}

/// One metric, by standard name or by custom name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricMatch {
    /// `metric: REQUEST_COUNT`…
    Metric(IstioMetric),
    /// `customMetric: name`: a metric defined by the provider.
    CustomMetric(String),
}

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMetricSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric: Option<IstioMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    custom_metric: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    mode: WorkloadMode,
}

impl TryFrom<RawMetricSelector> for MetricSelector {
    type Error = &'static str;

    fn try_from(raw: RawMetricSelector) -> Result<Self, Self::Error> {
        let metric = match (raw.metric, raw.custom_metric) {
            (Some(_), Some(_)) => return Err("only one of metric or customMetric may be set"),
            (Some(m), None) => Some(MetricMatch::Metric(m)),
            (None, Some(c)) => Some(MetricMatch::CustomMetric(c)),
            (None, None) => None,
        };
        Ok(MetricSelector {
            metric,
            mode: raw.mode,
        })
    }
}

impl From<MetricSelector> for RawMetricSelector {
    fn from(s: MetricSelector) -> Self {
        let (metric, custom_metric) = match s.metric {
            None => (None, None),
            Some(MetricMatch::Metric(m)) => (Some(m), None),
            Some(MetricMatch::CustomMetric(c)) => (None, Some(c)),
        };
        RawMetricSelector {
            metric,
            custom_metric,
            mode: s.mode,
        }
    }
}

string_enum! {
    /// What a tag override does.
    pub enum TagOverrideOperation {
        /// Adds the tag, or replaces its value (`value` is required).
        Upsert = "UPSERT",
        /// Removes the tag (`value` must not be set).
        Remove = "REMOVE",
    }
}

/// Adds, changes or removes one metric tag.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagOverride {
    /// Upsert or remove.
    #[serde(default, skip_serializing_if = "is_default")]
    pub operation: TagOverrideOperation,
    /// A CEL expression giving the tag's value (for `UPSERT`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Access logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogging {
    /// The traffic (client/server) this applies to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<LogSelector>,
    /// Providers logs are written to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Turns access logging off (or back on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Only requests matching this filter are logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<AccessLogFilter>,
}

/// Selects the traffic an access logging entry applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogSelector {
    /// Client, server, or both.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: WorkloadMode,
}

/// Which requests are logged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogFilter {
    /// A CEL expression; requests for which it is true are logged.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expression: String,
}

/// The `targetRef` kinds Istio's webhook accepts for Telemetry and WasmPlugin.
pub(crate) const POLICY_TARGET_KINDS: &[(&str, &str)] = &[
    ("", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
];

impl Validate for Telemetry {
    fn validate(&self, v: &mut Validator<'_>) {
        check_selector_and_targets(
            v,
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
            POLICY_TARGET_KINDS,
        );
        if self.tracing.len() > 1 {
            v.warn_at("tracing", "multiple tracing is not currently supported");
        }
        v.each("tracing", &self.tracing, |v, t| t.validate(v));
        v.each("metrics", &self.metrics, |v, m| m.validate(v));
        v.each("accessLogging", &self.access_logging, |v, a| a.validate(v));
    }
}

fn check_providers(v: &mut Validator<'_>, providers: &[ProviderRef]) {
    v.each("providers", providers, |v, p| {
        if p.name.is_empty() {
            v.required("name");
        }
    });
}

impl Validate for Tracing {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.providers.len() > 1 {
            v.warn_at("providers", "multiple providers is not currently supported");
        }
        check_providers(v, &self.providers);
        if let Some(p) = self.random_sampling_percentage
            && !(0.0..=100.0).contains(&p)
        {
            v.error_at(
                "randomSamplingPercentage",
                format!(
                    "Invalid value: {p}: randomSamplingPercentage must be in range [0.0, 100.0]"
                ),
            );
        }
        v.field("customTags", |v| {
            for (name, tag) in &self.custom_tags {
                v.key(name, |v| {
                    if name.is_empty() {
                        v.error("tag name may not be empty");
                    }
                    tag.validate(v);
                });
            }
        });
    }
}

impl Validate for CustomTag {
    fn validate(&self, v: &mut Validator<'_>) {
        match self {
            CustomTag::Unset => {}
            CustomTag::Literal(l) if l.value.is_empty() => v.required("literal.value"),
            CustomTag::Environment(e) if e.name.is_empty() => v.required("environment.name"),
            CustomTag::Header(h) if h.name.is_empty() => v.required("header.name"),
            CustomTag::Formatter(f) if f.value.is_empty() => v.required("formatter.value"),
            _ => {}
        }
    }
}

impl Validate for Metrics {
    fn validate(&self, v: &mut Validator<'_>) {
        check_providers(v, &self.providers);
        v.each("overrides", &self.overrides, |v, o| o.validate(v));
        if let Some(d) = self.reporting_interval {
            v.field("reportingInterval", |v| {
                check_duration_at_least(v, d, Duration::from_millis(1));
            });
        }
    }
}

impl Validate for MetricsOverrides {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(MetricSelector {
            metric: Some(MetricMatch::CustomMetric(name)),
            ..
        }) = &self.match_
            && name.is_empty()
        {
            v.error_at(
                "match.customMetric",
                "Invalid value: \"\": customMetric in body should be at least 1 chars long",
            );
        }
        v.field("tagOverrides", |v| {
            for (name, tag) in &self.tag_overrides {
                v.key(name, |v| {
                    if name.is_empty() {
                        v.warn("tagOverrides.name may not be empty");
                    }
                    match tag.operation {
                        TagOverrideOperation::Upsert if tag.value.is_empty() => {
                            cel_error(v, "object", "value must be set when operation is UPSERT");
                        }
                        TagOverrideOperation::Remove if !tag.value.is_empty() => {
                            cel_error(
                                v,
                                "object",
                                "value must not be set when operation is REMOVE",
                            );
                        }
                        _ => {}
                    }
                });
            }
        });
    }
}

impl Validate for AccessLogging {
    fn validate(&self, v: &mut Validator<'_>) {
        check_providers(v, &self.providers);
    }
}

#[cfg(test)]
mod tests {
    use crate::Kind;
    use crate::testing::{issues, load, messages, object_yaml};
    use crate::validate::{Issue, Severity};

    fn check(spec: &str) -> Vec<Issue> {
        issues(Kind::Telemetry, spec)
    }

    fn errors(spec: &str) -> Vec<String> {
        messages(&check(spec), Severity::Error)
    }

    fn warnings(spec: &str) -> Vec<String> {
        messages(&check(spec), Severity::Warning)
    }

    fn load_err(spec: &str) -> String {
        load(&object_yaml(Kind::Telemetry, spec)).expect_err("does not load")
    }

    const FULL: &str = r#"
  selector:
    matchLabels:
      app: reviews
  metrics:
  - providers:
    - name: prometheus
    reportingInterval: 5s
    overrides:
    - tagOverrides:
        request_method:
          value: "request.method"
        gone:
          operation: REMOVE
      match:
        customMetric: "foo"
        mode: SERVER
      disabled: false
    - match:
        metric: GRPC_REQUEST_MESSAGES
      disabled: true
  accessLogging:
  - disabled: false
    filter:
      expression: 'response.code >= 400'
    match:
      mode: CLIENT
    providers:
    - name: stdout
  tracing:
  - providers:
    - name: otlp
    match:
      mode: CLIENT_AND_SERVER
    randomSamplingPercentage: 54.54
    useRequestIdForTraceSampling: true
    disableSpanReporting: false
    disableContextPropagation: false
    enableIstioTags: true
    customTags:
      env:
        environment:
          name: "NAME"
          defaultValue: "default"
      header:
        header:
          name: "x-name"
          defaultValue: "default name"
      literal:
        literal:
          value: "default literal"
      fmt:
        formatter:
          value: "%REQ(:PATH)%"
"#;

    #[test]
    fn full_telemetry_is_valid_and_round_trips() {
        assert_eq!(check(FULL), vec![]);
        let yaml = format!(
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata:\n  name: t\nspec:\n{FULL}"
        );
        let first = crate::load::Loader::new()
            .load_str(&yaml, None)
            .objects
            .remove(0)
            .object;
        let text = serde_yaml_ng::to_string(&first).unwrap();
        let again = crate::load::Loader::new()
            .load_str(&text, None)
            .objects
            .remove(0)
            .object;
        assert_eq!(first, again);
        let crate::Object::Telemetry(t) = first else {
            panic!()
        };
        let o = &t.spec.metrics[0].overrides[0];
        assert_eq!(
            o.match_.as_ref().unwrap().metric,
            Some(super::MetricMatch::CustomMetric("foo".into()))
        );
        assert_eq!(
            t.spec.tracing[0].custom_tags["literal"],
            super::CustomTag::Literal(super::Literal {
                value: "default literal".into()
            })
        );
    }

    #[test]
    fn providers_need_names() {
        assert_eq!(
            errors("  metrics:\n  - providers:\n    - name: \"\"\n"),
            ["spec.metrics[0].providers[0].name: Required value"]
        );
        assert_eq!(
            errors("  accessLogging:\n  - providers:\n    - {}\n"),
            ["spec.accessLogging[0].providers[0].name: Required value"]
        );
        assert_eq!(
            errors("  tracing:\n  - providers:\n    - name: a\n    - name: \"\"\n"),
            ["spec.tracing[0].providers[1].name: Required value"]
        );
        assert_eq!(
            warnings("  tracing:\n  - providers:\n    - name: a\n    - name: b\n  - {}\n"),
            [
                "spec.tracing: multiple tracing is not currently supported",
                "spec.tracing[0].providers: multiple providers is not currently supported"
            ]
        );
    }

    #[test]
    fn sampling_percentage_in_range() {
        assert!(errors("  tracing:\n  - randomSamplingPercentage: 0\n").is_empty());
        assert!(errors("  tracing:\n  - randomSamplingPercentage: 100\n").is_empty());
        assert_eq!(
            errors("  tracing:\n  - randomSamplingPercentage: 101\n"),
            [
                "spec.tracing[0].randomSamplingPercentage: Invalid value: 101: randomSamplingPercentage must be in range [0.0, 100.0]"
            ]
        );
        assert_eq!(
            errors("  tracing:\n  - randomSamplingPercentage: -1\n").len(),
            1
        );
    }

    #[test]
    fn custom_tags_need_their_values() {
        assert_eq!(
            errors(
                "  tracing:\n  - customTags:\n      a:\n        literal: {}\n      b:\n        header: {}\n      c:\n        environment:\n          defaultValue: x\n      d:\n        formatter:\n          value: \"\"\n"
            ),
            [
                "spec.tracing[0].customTags[a].literal.value: Required value",
                "spec.tracing[0].customTags[b].header.name: Required value",
                "spec.tracing[0].customTags[c].environment.name: Required value",
                "spec.tracing[0].customTags[d].formatter.value: Required value",
            ]
        );
        assert!(load_err("  tracing:\n  - customTags:\n      a:\n        literal: {value: x}\n        header: {name: y}\n").contains("only one of literal"));
    }

    #[test]
    fn tag_overrides_follow_operation() {
        assert_eq!(
            errors(
                "  metrics:\n  - overrides:\n    - tagOverrides:\n        foo:\n          operation: UPSERT\n"
            ),
            [
                "spec.metrics[0].overrides[0].tagOverrides[foo]: Invalid value: \"object\": value must be set when operation is UPSERT"
            ]
        );
        assert_eq!(
            errors(
                "  metrics:\n  - overrides:\n    - tagOverrides:\n        foo:\n          operation: REMOVE\n          value: oops\n"
            ),
            [
                "spec.metrics[0].overrides[0].tagOverrides[foo]: Invalid value: \"object\": value must not be set when operation is REMOVE"
            ]
        );
        assert!(load_err("  metrics:\n  - overrides:\n    - tagOverrides:\n        foo:\n          operation: DELETE\n").contains("Unsupported value: \"DELETE\""));
    }

    #[test]
    fn metric_selector_is_one_of() {
        assert_eq!(
            errors("  metrics:\n  - overrides:\n    - match:\n        customMetric: \"\"\n"),
            [
                "spec.metrics[0].overrides[0].match.customMetric: Invalid value: \"\": customMetric in body should be at least 1 chars long"
            ]
        );
        assert!(load_err("  metrics:\n  - overrides:\n    - match:\n        customMetric: a\n        metric: REQUEST_COUNT\n").contains("only one of metric or customMetric"));
        assert!(
            load_err("  metrics:\n  - overrides:\n    - match:\n        metric: REQUESTS\n")
                .contains("Unsupported value")
        );
    }

    #[test]
    fn reporting_interval_at_least_a_millisecond() {
        assert!(errors("  metrics:\n  - reportingInterval: 1ms\n").is_empty());
        assert_eq!(
            errors("  metrics:\n  - reportingInterval: 100us\n"),
            [
                "spec.metrics[0].reportingInterval: must be a valid duration greater than 1ms, got 100us"
            ]
        );
    }

    #[test]
    fn selector_and_target_refs() {
        assert_eq!(
            errors(
                "  selector:\n    matchLabels:\n      app: a\n  targetRefs:\n  - kind: Gateway\n    group: gateway.networking.k8s.io\n    name: gw\n"
            ),
            ["spec: only one of targetRefs or selector can be set"]
        );
        assert_eq!(
            errors("  targetRef:\n    kind: Service\n    name: a\n  targetRefs:\n  - kind: Service\n    name: b\n").len(),
            1
        );
        assert!(errors("  targetRefs:\n  - kind: ServiceEntry\n    group: networking.istio.io\n    name: se\n").is_empty());
        assert!(errors("  targetRef:\n    kind: Service\n    name: a\n").is_empty());
        let bad = errors(
            "  targetRefs:\n  - kind: Deployment\n    group: apps\n    name: d\n    namespace: other\n",
        );
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(
            errors(
                "  selector:\n    matchLabels:\n      \"\": bar\n      \"app*\": x\n      ok: \"v*\"\n"
            ),
            [
                "spec.selector.matchLabels: Invalid value: \"object\": key must not be empty",
                "spec.selector.matchLabels: Invalid value: \"object\": wildcard not allowed in label key match",
                "spec.selector.matchLabels[ok]: Invalid value: \"string\": wildcard not allowed in label value match",
            ]
        );
        assert_eq!(
            warnings("  selector:\n    matchLabels: {}\n"),
            ["spec.selector: workload selector specified without labels"]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(load_err("  tracing:\n  - sampling: 5\n").contains("unknown field"));
    }
}
