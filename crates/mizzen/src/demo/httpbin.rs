//! An httpbin: a backend that answers with what it was sent, or fails, waits or resets
//! when asked to, on httpbin's paths.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::form;
use super::server::{Reply, Request};

/// httpbin's cap on `/delay/<s>`.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Answers `/status/<code>`, `/delay/<seconds>`, `/headers`, `/get`, `/ip`, `/reset` and
/// `/health`.
pub async fn handle(request: &Request) -> Reply {
    let path = request.path();
    match path {
        "/health" => Reply::json(StatusCode::OK, &json!({"status": "httpbin is healthy"})),
        "/headers" => Reply::json(StatusCode::OK, &json!({"headers": headers(request)})),
        "/get" => Reply::json(StatusCode::OK, &echo(request)),
        "/ip" => Reply::json(
            StatusCode::OK,
            &json!({"origin": request.peer.ip().to_string()}),
        ),
        // Dropping the connection unanswered is what a crashing server does.
        "/reset" => Reply::Reset,
        _ => {
            if let Some(code) = path.strip_prefix("/status/") {
                status(code)
            } else if let Some(seconds) = path.strip_prefix("/delay/") {
                delay(request, seconds).await
            } else {
                Reply::not_found(path)
            }
        }
    }
}

fn status(code: &str) -> Reply {
    match code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
    {
        Some(status) => Reply::new(status, "text/plain; charset=utf-8", ""),
        None => Reply::text(
            StatusCode::BAD_REQUEST,
            format!("invalid status code {code:?}\n"),
        ),
    }
}

async fn delay(request: &Request, seconds: &str) -> Reply {
    let wait = seconds
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    let Some(wait) = wait else {
        return Reply::text(
            StatusCode::BAD_REQUEST,
            format!("invalid delay {seconds:?}\n"),
        );
    };
    tokio::time::sleep(wait.min(MAX_DELAY)).await;
    Reply::json(StatusCode::OK, &echo(request))
}

/// What `/get` answers: the query, the headers, the caller and the URL.
fn echo(request: &Request) -> Value {
    let args: Map<String, Value> = form::pairs(request.query())
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    let host = request
        .head
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let target = request
        .head
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str());
    json!({
        "args": args,
        "headers": headers(request),
        "origin": request.peer.ip().to_string(),
        "url": format!("http://{host}{target}"),
    })
}

/// The request's headers as httpbin shows them: `X-Request-Id`-cased names, repeated
/// values joined by commas.
fn headers(request: &Request) -> Map<String, Value> {
    let mut out = Map::new();
    for name in request.head.headers.keys() {
        let values: Vec<_> = request
            .head
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(title_case(name.as_str()), Value::String(values.join(",")));
    }
    out
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use http::Method;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::App;
    use super::super::testing::{call, get, start};
    use super::*;

    #[tokio::test]
    async fn status_answers_the_code_asked_for() {
        let addr = start(App::Httpbin, "v1").await;
        for code in [200, 418, 503] {
            assert_eq!(get(addr, &format!("/status/{code}")).await.0, code);
        }
        assert_eq!(get(addr, "/status/abc").await.0, 400);
        assert_eq!(get(addr, "/health").await.0, 200);
    }

    #[tokio::test]
    async fn headers_and_get_echo_the_request() {
        let addr = start(App::Httpbin, "v1").await;
        let answer = call(
            addr,
            Method::GET,
            "/headers",
            &[("x-request-id", "abc"), ("end-user", "jason")],
            "",
        )
        .await;
        assert_eq!(answer.status, 200);
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["headers"]["X-Request-Id"], "abc");
        assert_eq!(body["headers"]["End-User"], "jason");
        assert_eq!(body["headers"]["Host"], addr.to_string());

        let (status, body) = get(addr, "/get?show_env=1&name=a+b").await;
        assert_eq!(status, 200);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["args"], json!({"show_env": "1", "name": "a b"}));
        assert_eq!(body["origin"], "127.0.0.1");
        assert_eq!(
            body["url"],
            format!("http://{addr}/get?show_env=1&name=a+b")
        );
    }

    #[tokio::test]
    async fn delay_waits_before_answering() {
        let addr = start(App::Httpbin, "v1").await;
        let asked = Instant::now();
        let (status, _) = get(addr, "/delay/0.2").await;
        assert_eq!(status, 200);
        assert!(
            asked.elapsed() >= Duration::from_millis(200),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(get(addr, "/delay/forever").await.0, 400);
    }

    #[tokio::test]
    async fn reset_closes_the_connection_unanswered() {
        let addr = start(App::Httpbin, "v1").await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /reset HTTP/1.1\r\nhost: httpbin\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        // Either a clean end of stream or a reset: no bytes of a response either way.
        let _ = stream.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }

    #[test]
    fn header_names_are_title_cased() {
        assert_eq!(title_case("x-b3-traceid"), "X-B3-Traceid");
        assert_eq!(title_case("host"), "Host");
    }
}
