//! `--prometheus URL`: the rates come from a Prometheus server that scrapes the mesh,
//! through its HTTP query API (`/api/v1/query`), as Kiali reads them.

use std::fmt::Write;
use std::time::Duration;

use axum::http::Uri;
use serde_json::Value;

use super::exposition::parse_value;
use super::fetch;
use super::traffic::SeriesRate;
use super::{Collected, TargetStatus};

/// The labels the dashboard reads; every query sums by them.
const LABELS: &str = "reporter, source_workload, source_workload_namespace, source_app, \
    source_version, source_canonical_service, source_canonical_revision, \
    destination_service, destination_service_name, destination_service_namespace, \
    destination_workload, destination_workload_namespace, destination_app, \
    destination_version, destination_canonical_service, destination_canonical_revision, \
    request_protocol, response_code, grpc_response_status, connection_security_policy";

/// The counters the dashboard reads, and the extra label each is summed by.
pub(super) const METRICS: [(&str, &str); 4] = [
    ("istio_requests_total", ""),
    ("istio_request_duration_milliseconds_bucket", ", le"),
    ("istio_tcp_sent_bytes_total", ""),
    ("istio_tcp_received_bytes_total", ""),
];

/// A Prometheus server's query API.
#[derive(Debug, Clone)]
pub(crate) struct PrometheusApi {
    base: String,
    window: Duration,
    timeout: Duration,
}

impl PrometheusApi {
    /// The server at `url` (`http://prometheus:9090`), asked for rates over `window`.
    pub fn new(url: &Uri, window: Duration, timeout: Duration) -> Self {
        PrometheusApi {
            base: url.to_string().trim_end_matches('/').to_owned(),
            window,
            timeout,
        }
    }

    /// The PromQL query for `metric`'s rates.
    pub fn query(&self, metric: &str, extra: &str) -> String {
        format!(
            "sum by ({LABELS}{extra}) (rate({metric}[{}s]))",
            self.window.as_secs().max(1)
        )
    }

    /// Asks for every metric's rates.
    pub async fn collect(&self) -> Collected {
        let mut rates = Vec::new();
        let mut statuses = Vec::new();
        for (metric, extra) in METRICS {
            let url = format!(
                "{}/api/v1/query?query={}",
                self.base,
                encode(&self.query(metric, extra))
            );
            let mut status = TargetStatus {
                proxy: String::new(),
                url: url.clone(),
                error: None,
                series: 0,
            };
            let answer = match url.parse::<Uri>() {
                Ok(uri) => fetch::get(&uri, self.timeout)
                    .await
                    .map_err(|e| e.reason)
                    .and_then(|body| vector(metric, &body)),
                Err(e) => Err(format!("bad URL: {e}")),
            };
            match answer {
                Ok(found) => {
                    status.series = found.len();
                    rates.extend(found);
                }
                Err(reason) => status.error = Some(reason),
            }
            statuses.push(status);
        }
        let error = statuses
            .iter()
            .find_map(|s| s.error.clone())
            .map(|e| format!("Prometheus at {}: {e}", self.base));
        Collected {
            rates,
            targets: statuses,
            error,
        }
    }
}

/// The series of an instant-vector answer, named `metric` (a sum drops `__name__`).
fn vector(metric: &str, body: &str) -> Result<Vec<SeriesRate>, String> {
    let answer: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if answer["status"] != "success" {
        return Err(format!(
            "query failed: {}",
            answer["error"].as_str().unwrap_or("no error given")
        ));
    }
    let results = answer["data"]["result"]
        .as_array()
        .ok_or("data.result is not a list")?;
    results
        .iter()
        .map(|result| {
            let mut labels: Vec<(String, String)> = result["metric"]
                .as_object()
                .ok_or("a result has no metric")?
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
            labels.sort();
            let rate = result["value"][1]
                .as_str()
                .and_then(parse_value)
                .ok_or("a result's value is not [time, \"number\"]")?;
            Ok(SeriesRate {
                name: metric.to_owned(),
                labels,
                rate,
            })
        })
        .collect()
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters kept).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_sum_rates_by_the_labels_read() {
        let api = PrometheusApi::new(
            &"http://prom:9090/".parse().unwrap(),
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        let query = api.query("istio_request_duration_milliseconds_bucket", ", le");
        assert!(
            query.starts_with("sum by (reporter, source_workload,"),
            "{query}"
        );
        assert!(
            query.ends_with(
                "connection_security_policy, le) (rate(istio_request_duration_milliseconds_bucket[60s]))"
            ),
            "{query}"
        );
        assert_eq!(
            encode("rate(a{b=\"c\"}[1m])"),
            "rate%28a%7Bb%3D%22c%22%7D%5B1m%5D%29"
        );
    }

    #[test]
    fn errors_of_the_api_are_reported() {
        assert_eq!(
            vector("m", r#"{"status":"error","error":"parse error"}"#),
            Err("query failed: parse error".to_owned())
        );
        assert_eq!(
            vector(
                "m",
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"b":"2","a":"1"},"value":[1.5,"0.25"]}]}}"#
            ),
            Ok(vec![SeriesRate {
                name: "m".to_owned(),
                labels: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
                rate: 0.25,
            }])
        );
    }
}
