//! The application side: an HTTP/1.1 client that sends its requests through the
//! sidecar's HTTP-proxy listener (as an app with `http_proxy` set does), on one
//! kept-alive connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as the application sees it.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
    /// From sending the request to the end of the response.
    pub elapsed: Duration,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lowercase).
    pub fn headers(&self, name: &str) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The backend instance that answered (its `x-instance`), if one did.
    pub fn instance(&self) -> Option<&str> {
        self.header("x-instance")
    }
}

/// One application connection to a sidecar.
pub struct Client {
    proxy: SocketAddr,
    stream: Option<TcpStream>,
    buffered: Vec<u8>,
}

impl Client {
    /// A client of the sidecar HTTP-proxy listener at `proxy`; it connects on first use.
    pub fn new(proxy: SocketAddr) -> Client {
        Client {
            proxy,
            stream: None,
            buffered: Vec::new(),
        }
    }

    /// `GET http://AUTHORITY/` with `headers`.
    pub async fn get(&mut self, authority: &str, headers: &[(&str, &str)]) -> Response {
        self.send("GET", authority, "/", headers).await
    }

    /// `METHOD http://AUTHORITY PATH` with `headers`; a connection closed unanswered
    /// is the test's failure.
    pub async fn send(
        &mut self,
        method: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        self.try_send(method, authority, path, headers)
            .await
            .unwrap_or_else(|| panic!("{authority}: the sidecar closed the connection"))
    }

    /// [`Client::send`], `None` when the connection is closed unanswered (a refused
    /// one, say).
    pub async fn try_send(
        &mut self,
        method: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<Response> {
        let mut request =
            format!("{method} http://{authority}{path} HTTP/1.1\r\nhost: {authority}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let started = Instant::now();
        // A kept-alive connection the proxy closed in between is reopened once, as
        // every HTTP client does; a fresh one failing is the answer.
        let reused = self.stream.is_some();
        let mut response = match self.exchange(request.as_bytes()).await {
            Some(response) => response,
            None if reused => {
                self.stream = None;
                self.exchange(request.as_bytes()).await?
            }
            None => return None,
        };
        response.elapsed = started.elapsed();
        Some(response)
    }

    async fn exchange(&mut self, request: &[u8]) -> Option<Response> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.proxy)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the sidecar {}: {e}", self.proxy));
            stream.set_nodelay(true).ok()?;
            self.stream = Some(stream);
            self.buffered.clear();
        }
        let stream = self.stream.as_mut()?;
        stream.write_all(request).await.ok()?;
        let response = read_response(stream, &mut self.buffered).await;
        let close = response.as_ref().is_none_or(|r| {
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        });
        if close {
            self.stream = None;
        }
        response
    }
}

/// Reads one response; `None` if the connection ended before its head.
async fn read_response(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<Response> {
    let head_end = loop {
        if let Some(i) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, buffered).await?;
    };
    let head = String::from_utf8_lossy(&buffered[..head_end]).into_owned();
    buffered.drain(..head_end);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(stream, buffered).await?
    } else if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buffered.len() < length {
            read_more(stream, buffered).await?;
        }
        buffered.drain(..length).collect()
    } else {
        while read_more(stream, buffered).await.is_some() {}
        std::mem::take(buffered)
    };
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        elapsed: Duration::ZERO,
    })
}

async fn read_chunked(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buffered.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            read_more(stream, buffered).await?;
        };
        let size_text = String::from_utf8_lossy(&buffered[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buffered.drain(..line_end + 2);
        // The chunk and its CRLF; the last (empty) chunk is followed by the final CRLF.
        while buffered.len() < size + 2 {
            read_more(stream, buffered).await?;
        }
        body.extend(buffered.drain(..size));
        buffered.drain(..2);
        if size == 0 {
            return Some(body);
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buffered.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}
