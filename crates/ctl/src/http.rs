//! A minimal HTTP/1.0 client for the mesh's local debug endpoints (pilot's 15014, a
//! proxy's 15000), which need nothing more.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// Fetches `path` from `addr` and returns the body of a 200 response.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    request(addr, "GET", path)
}

/// POSTs an empty body to `path` (Envoy's admin takes changes such as `/logging?level=`
/// only by POST) and returns the body of a 200 response.
pub fn post(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    request(addr, "POST", path)
}

fn request(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<String> {
    let timeout = Some(Duration::from_secs(10));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr} (is it running?)"))?;
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading http://{addr}{path}"))?;
    let response = String::from_utf8(response).context("response is not UTF-8")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("malformed response from http://{addr}{path}"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{method} http://{addr}{path}: {status}: {}", body.trim());
    }
    Ok(body.to_owned())
}
