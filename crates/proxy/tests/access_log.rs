//! Access logs written by the proxy for real requests: Envoy's default format and
//! Istio's (text and JSON), with response flags for requests the proxy answered itself,
//! and the same lines as the real Envoy writes for the same bootstrap.
//!
//! Logs go to FIFOs, so a test reads each line the moment it is written.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::envoy::{Envoy, make_fifo, work_dir};
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::unix::pipe;

/// Istio's JSON access log format (MeshConfig `accessLogEncoding: JSON`), as a
/// `log_format`.
const ISTIO_JSON: &str = r#"{json_format: {start_time: "%START_TIME%", method: "%REQ(:METHOD)%", path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", protocol: "%PROTOCOL%", response_code: "%RESPONSE_CODE%", response_flags: "%RESPONSE_FLAGS%", response_code_details: "%RESPONSE_CODE_DETAILS%", connection_termination_details: "%CONNECTION_TERMINATION_DETAILS%", upstream_transport_failure_reason: "%UPSTREAM_TRANSPORT_FAILURE_REASON%", bytes_received: "%BYTES_RECEIVED%", bytes_sent: "%BYTES_SENT%", duration: "%DURATION%", upstream_service_time: "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", x_forwarded_for: "%REQ(X-FORWARDED-FOR)%", user_agent: "%REQ(USER-AGENT)%", request_id: "%REQ(X-REQUEST-ID)%", authority: "%REQ(:AUTHORITY)%", upstream_host: "%UPSTREAM_HOST%", upstream_cluster: "%UPSTREAM_CLUSTER_RAW%", upstream_local_address: "%UPSTREAM_LOCAL_ADDRESS%", downstream_local_address: "%DOWNSTREAM_LOCAL_ADDRESS%", downstream_remote_address: "%DOWNSTREAM_REMOTE_ADDRESS%", requested_server_name: "%REQUESTED_SERVER_NAME%", route_name: "%ROUTE_NAME%"}}"#;

/// Fields of Istio's JSON lines left out of the Envoy comparison, and why:
/// - `start_time`, `duration`, `upstream_service_time`: the clock's.
/// - `downstream_local_address`, `downstream_remote_address`: each proxy's own listener
///   and client ports.
/// - `upstream_local_address`: the port the upstream connection came from (Mizzen's
///   pooled connections do not record it, and print `null`).
/// - `upstream_transport_failure_reason`: Envoy's socket error text (Mizzen prints null).
const MASKED_JSON: [&str; 7] = [
    "start_time",
    "duration",
    "upstream_service_time",
    "downstream_local_address",
    "downstream_remote_address",
    "upstream_local_address",
    "upstream_transport_failure_reason",
];

/// Envoy's default format, as words: the start time (0), the duration (8) and the
/// upstream service time (9) are masked.
fn masked_default(line: &str) -> Vec<&str> {
    line.split(' ')
        .enumerate()
        .map(|(i, word)| if [0, 8, 9].contains(&i) { "*" } else { word })
        .collect()
}

fn masked_json(line: &str) -> serde_json::Value {
    let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
    for key in MASKED_JSON {
        value[key] = "*".into();
    }
    value
}

/// A backend answering every request with the same 5-byte body.
async fn hello() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An address nothing listens on.
async fn closed() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// The lines written to a FIFO, as they come.
struct Lines(tokio::io::Lines<BufReader<pipe::Receiver>>);

impl Lines {
    /// Makes a FIFO at `path` and opens it (read-write, so it never reads as closed
    /// before the writer opens it).
    fn open(path: &Path) -> Lines {
        make_fifo(path);
        let fifo = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)
            .unwrap();
        Lines(BufReader::new(fifo).lines())
    }

    async fn next(&mut self) -> String {
        self.0.next_line().await.unwrap().unwrap()
    }
}

/// An access logger writing to `path` in `format` (YAML for a `log_format`, or empty for
/// Envoy's default), with an optional filter (YAML).
fn logger(path: &Path, format: &str, filter: &str) -> String {
    let format = if format.is_empty() {
        String::new()
    } else {
        format!(", log_format: {format}")
    };
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!("filter: {filter}, ")
    };
    format!(
        "- {{name: envoy.access_loggers.file, {filter}typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: {}{format}}}}}\n",
        path.display()
    )
}

/// A bootstrap with one HTTP listener whose connection manager logs with `loggers`:
/// `/ok` goes to a backend, `/down` to a cluster with nothing listening, `/none` to a
/// cluster without endpoints; anything else matches no route.
fn bootstrap(loggers: &str, backend: SocketAddr, down: SocketAddr) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          access_log:
{}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {{name: ok, match: {{path: /ok}}, route: {{cluster: backend}}}}
              - {{name: down, match: {{path: /down}}, route: {{cluster: down}}}}
              - {{name: none, match: {{path: /none}}, route: {{cluster: none}}}}
  clusters:
{}
{}
  - {{name: none, type: STATIC, connect_timeout: 1s, load_assignment: {{cluster_name: none, endpoints: []}}}}
{ADMIN}"#,
        indent(loggers, 10),
        indent(&cluster("backend", &[backend]), 2),
        indent(&cluster("down", &[down]), 2),
    )
}

/// One GET per case, each with a known request id.
const REQUESTS: [&str; 4] = ["/ok", "/missing", "/down", "/none"];

/// Sends them; returns the length of each response body.
async fn send_all(addr: SocketAddr) -> Vec<usize> {
    let mut lengths = Vec::new();
    for (i, path) in REQUESTS.iter().enumerate() {
        let request = Request::get(*path)
            .header("host", "shop")
            .header("user-agent", "test/1")
            .header("x-request-id", format!("id-{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        lengths.push(send(addr, request).await.body.len());
    }
    lengths
}

fn fifo_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[tokio::test]
async fn envoys_default_format_with_response_flags() {
    let dir = work_dir();
    let path = fifo_in(&dir, "access.log");
    let mut lines = Lines::open(&path);
    // Times are Envoy's; everything else is exact.
    let format = "{text_format_source: {inline_string: \"%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %BYTES_SENT% %ROUTE_NAME% %UPSTREAM_CLUSTER% %REQ(X-REQUEST-ID)% %UPSTREAM_HOST%\\n\"}}";
    let (backend, down) = (hello().await, closed().await);
    let proxy = proxy(&bootstrap(&logger(&path, format, ""), backend, down)).await;
    let sent = send_all(proxy.listener_addr("http").await).await;
    let expected = [
        format!("200 - via_upstream 5 ok backend id-0 {backend}"),
        "404 NR route_not_found 0 - - id-1 -".to_owned(),
        format!(
            "503 UF upstream_reset_before_response_started{{remote_connection_failure|delayed_connect_error:_Connection_refused}} {} down down id-2 {down}",
            sent[2]
        ),
        "503 UH no_healthy_upstream 19 none none id-3 -".to_owned(),
    ];
    for want in expected {
        assert_eq!(lines.next().await, want);
    }
}

#[tokio::test]
async fn a_filter_logs_only_what_passes() {
    let dir = work_dir();
    let path = fifo_in(&dir, "errors.log");
    let mut lines = Lines::open(&path);
    let format =
        "{text_format_source: {inline_string: \"%REQ(X-REQUEST-ID)% %RESPONSE_CODE%\\n\"}}";
    // Istio's `response.code >= 400` minus the 404s: server errors only.
    let filter = "{and_filter: {filters: [{status_code_filter: {comparison: {op: GE, value: {default_value: 400, runtime_key: k}}}}, {not_health_check_filter: {}}, {response_flag_filter: {flags: [UF, UH]}}]}}";
    let (backend, down) = (hello().await, closed().await);
    let proxy = proxy(&bootstrap(&logger(&path, format, filter), backend, down)).await;
    send_all(proxy.listener_addr("http").await).await;
    assert_eq!(lines.next().await, "id-2 503");
    assert_eq!(lines.next().await, "id-3 503");
}

#[tokio::test]
async fn lines_match_envoys() {
    let (backend, down) = (hello().await, closed().await);
    let dir = work_dir();
    let fifos = |who: &str| {
        (
            fifo_in(&dir, &format!("{who}-default")),
            fifo_in(&dir, &format!("{who}-json")),
        )
    };
    let config = |(default, json): &(PathBuf, PathBuf)| {
        let loggers = logger(default, "", "") + &logger(json, ISTIO_JSON, "");
        bootstrap(&loggers, backend, down)
    };
    let (ours, theirs) = (fifos("mizzen"), fifos("envoy"));
    let mut our_lines = (Lines::open(&ours.0), Lines::open(&ours.1));
    let mut their_lines = (Lines::open(&theirs.0), Lines::open(&theirs.1));
    let Some(envoy) = Envoy::start(&config(&theirs)).await else {
        return;
    };
    let mizzen = proxy(&config(&ours)).await;
    send_all(mizzen.listener_addr("http").await).await;
    send_all(envoy.listener_addr("http").await).await;
    let mut differences = Vec::new();
    for path in REQUESTS {
        let (our_default, their_default) = (our_lines.0.next().await, their_lines.0.next().await);
        if masked_default(&our_default) != masked_default(&their_default) {
            differences.push(format!(
                "{path} default format:\n  mizzen: {our_default}\n  envoy:  {their_default}"
            ));
        }
        let (our_json, their_json) = (our_lines.1.next().await, their_lines.1.next().await);
        let (ours, theirs) = (masked_json(&our_json), masked_json(&their_json));
        if ours != theirs {
            differences.push(format!(
                "{path} JSON:\n  mizzen: {ours}\n  envoy:  {theirs}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// Istio's Telemetry `filter.expression`, as pilot writes it: Envoy's CEL filter.
fn cel_filter(expression: &str) -> String {
    format!(
        "{{extension_filter: {{name: envoy.access_loggers.extension_filters.cel, typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter, expression: \"{expression}\"}}}}}}"
    )
}

#[tokio::test]
async fn a_cel_filter_logs_what_envoys_logs() {
    let format =
        "{text_format_source: {inline_string: \"%REQ(X-REQUEST-ID)% %RESPONSE_CODE%\\n\"}}";
    let filter = cel_filter(
        "response.code >= 400 && request.headers['x-request-id'] != 'id-3' && xds.cluster_name != 'backend' || request.url_path.startsWith('/o')",
    );
    let (backend, down) = (hello().await, closed().await);
    let dir = work_dir();
    let (ours, theirs) = (fifo_in(&dir, "mizzen-cel"), fifo_in(&dir, "envoy-cel"));
    let (mut our_lines, mut their_lines) = (Lines::open(&ours), Lines::open(&theirs));
    let mizzen = proxy(&bootstrap(&logger(&ours, format, &filter), backend, down)).await;
    send_all(mizzen.listener_addr("http").await).await;
    // `/missing` has no cluster: the comparison errs, and the line is not written.
    let expected = ["id-0 200", "id-2 503"];
    for want in expected {
        assert_eq!(our_lines.next().await, want);
    }
    let Some(envoy) =
        Envoy::start(&bootstrap(&logger(&theirs, format, &filter), backend, down)).await
    else {
        return;
    };
    send_all(envoy.listener_addr("http").await).await;
    for want in expected {
        assert_eq!(their_lines.next().await, want);
    }
}

#[tokio::test]
async fn an_unsupported_cel_expression_is_refused_by_name() {
    let (backend, down) = (hello().await, closed().await);
    let filter = cel_filter("request.url_path.lowerAscii() == '/ok'");
    let path = fifo_in(&work_dir(), "refused.log");
    let yaml = bootstrap(&logger(&path, "", &filter), backend, down);
    let raw = mizzen_xds::json::bootstrap_from_yaml(&yaml).unwrap();
    let error = match mizzen_proxy::Bootstrap::from_pb(raw) {
        Err(e) => e.to_string(),
        Ok(bootstrap) => mizzen_proxy::Proxy::start(mizzen_proxy::ProxyOptions::new(bootstrap))
            .await
            .err()
            .expect("the listener is refused")
            .to_string(),
    };
    assert!(
        error.contains("request.url_path.lowerAscii() == '/ok'")
            && error.contains("lowerAscii() is not supported"),
        "{error}"
    );
}

/// A TCP proxy listener named `tcp` to `target`, logging in Envoy's default format to
/// `path`; clusters `echo` (an echo backend) and `down` (nothing listening).
fn tcp_bootstrap(path: &Path, target: &str, echo: SocketAddr, down: SocketAddr) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: {target}
          access_log:
{}
  clusters:
{}
{}
{ADMIN}"#,
        indent(&logger(path, "", ""), 10),
        indent(&cluster("echo", &[echo]), 2),
        indent(&cluster("down", &[down]), 2),
    )
}

/// Sends `hello`, half-closes, and reads until the proxy closes.
async fn talk(addr: SocketAddr) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got).await;
    got
}

#[tokio::test]
async fn tcp_connections_are_logged_as_envoy_logs_them() {
    let (echo, down) = (echo("echo").await, closed().await);
    let dir = work_dir();
    let files = |who: &str| {
        (
            fifo_in(&dir, &format!("{who}-tcp-ok")),
            fifo_in(&dir, &format!("{who}-tcp-down")),
        )
    };
    let bootstraps = |(ok, failed): &(PathBuf, PathBuf)| {
        (
            tcp_bootstrap(ok, "echo", echo, down),
            tcp_bootstrap(failed, "down", echo, down),
        )
    };
    let (ours, theirs) = (files("mizzen"), files("envoy"));
    let mut our_lines = (Lines::open(&ours.0), Lines::open(&ours.1));
    let mut their_lines = (Lines::open(&theirs.0), Lines::open(&theirs.1));

    let (to_echo, to_down) = bootstraps(&ours);
    let (relaying, refused) = (proxy(&to_echo).await, proxy(&to_down).await);
    assert_eq!(
        talk(relaying.listener_addr("tcp").await).await,
        b"echo:hello"
    );
    talk(refused.listener_addr("tcp").await).await;
    let (ok, failed) = (our_lines.0.next().await, our_lines.1.next().await);
    // Envoy's default format for a connection: no request, bytes each way, the endpoint.
    let expected_ok = format!("[*] \"- - -\" 0 - 5 10 * - \"-\" \"-\" \"-\" \"-\" \"{echo}\"");
    assert_eq!(masked_default(&ok), masked_default(&expected_ok));
    let expected_failed =
        format!("[*] \"- - -\" 0 UF,URX 0 0 * - \"-\" \"-\" \"-\" \"-\" \"{down}\"");
    assert_eq!(masked_default(&failed), masked_default(&expected_failed));

    let (to_echo, to_down) = bootstraps(&theirs);
    let (Some(relaying), Some(refused)) =
        (Envoy::start(&to_echo).await, Envoy::start(&to_down).await)
    else {
        return;
    };
    talk(relaying.listener_addr("tcp").await).await;
    talk(refused.listener_addr("tcp").await).await;
    assert_eq!(
        masked_default(&ok),
        masked_default(&their_lines.0.next().await)
    );
    assert_eq!(
        masked_default(&failed),
        masked_default(&their_lines.1.next().await)
    );
}
