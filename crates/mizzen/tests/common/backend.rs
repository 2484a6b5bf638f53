//! A controllable HTTP/1.1 test backend: one workload instance that says who it is and
//! misbehaves on demand.
//!
//! Every answer carries `x-instance: NAME` and the body `NAME`. How it answers is set
//! per instance ([`Backend::set`], shared state the test changes while traffic flows)
//! or per request, by headers the caller sends through the mesh:
//! `x-backend-status: 503` answers with that status, `x-backend-delay-ms: 2000` waits
//! that long first (what a slow service does, not a test sleeping).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::WAIT;

/// How an instance answers every request it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with its name.
    Answer,
    /// This status, with its name as the body.
    Fail(u16),
    /// Every other request fails with this status (the 1st, 3rd, 5th… of this mode).
    Flaky(u16),
    /// Holds each request, answering only once the mode changes (then as the new mode
    /// says): a hung service, or one whose requests a test wants in flight.
    Hold,
    /// Resets the connection (TCP RST) without answering.
    Reset,
}

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line's target.
    pub target: String,
    /// The headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    name: String,
    mode: watch::Sender<Mode>,
    /// Requests answered in the current mode, for [`Mode::Flaky`].
    in_mode: AtomicUsize,
    seen: watch::Sender<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A running backend instance; it stops with the test's runtime.
#[derive(Clone)]
pub struct Backend {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Backend {
    /// Starts instance `name` on `addr`, answering 200.
    pub async fn start(name: &str, addr: SocketAddr) -> Backend {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("backend {name}: cannot bind {addr}: {e}"));
        let state = Arc::new(State {
            name: name.to_owned(),
            mode: watch::Sender::new(Mode::Answer),
            in_mode: AtomicUsize::new(0),
            seen: watch::Sender::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, accepting.clone()));
            }
        });
        Backend { addr, state }
    }

    /// The instance's name (its WorkloadEntry's).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how it answers from now on; held requests are answered as `mode` says.
    pub fn set(&self, mode: Mode) {
        self.state.in_mode.store(0, Ordering::SeqCst);
        self.state.mode.send_replace(mode);
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.borrow().clone()
    }

    /// How many requests it received so far.
    pub fn count(&self) -> usize {
        self.state.seen.borrow().len()
    }

    /// The most requests it was handling at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until it has received `n` requests in all.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut seen = self.state.seen.subscribe();
        let arrived = tokio::time::timeout(WAIT, seen.wait_for(|s| s.len() >= n))
            .await
            .is_ok();
        assert!(
            arrived,
            "{} got {} requests, expected {n}",
            self.name(),
            self.count()
        );
    }
}

/// Serves one connection: requests in turn, kept alive until the peer closes.
async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut buffered = Vec::new();
    loop {
        let Some(seen) = read_request(&mut stream, &mut buffered).await else {
            return;
        };
        let delay = seen
            .header("x-backend-delay-ms")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        let status = seen
            .header("x-backend-status")
            .and_then(|v| v.parse::<u16>().ok());
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        state.seen.send_modify(|all| all.push(seen));
        let answer = answer(&state, delay, status).await;
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        let Some(status) = answer else {
            // SO_LINGER 0: closing sends RST, as a crashed process's socket does
            // (the deprecation is about blocking on close, which a zero linger never does).
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            return;
        };
        let name = &state.name;
        let response = format!(
            "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\nx-instance: {name}\r\n\r\n{name}",
            reason(status),
            name.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The status to answer with, or `None` to reset.
async fn answer(state: &State, delay: Option<Duration>, status: Option<u16>) -> Option<u16> {
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut mode = state.mode.subscribe();
    let mode = *mode
        .wait_for(|m| *m != Mode::Hold)
        .await
        .expect("the backend's state outlives its connections");
    let nth = state.in_mode.fetch_add(1, Ordering::SeqCst);
    match (mode, status) {
        (Mode::Reset, _) => None,
        (_, Some(status)) => Some(status),
        (Mode::Answer | Mode::Hold, None) => Some(200),
        (Mode::Fail(status), None) => Some(status),
        (Mode::Flaky(status), None) => Some(if nth % 2 == 1 { 200 } else { status }),
    }
}

/// Reads one request (head and `content-length` body) from `stream`; `None` at EOF.
async fn read_request(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<Seen> {
    let head_end = loop {
        if let Some(i) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, buffered).await?;
    };
    let head = String::from_utf8_lossy(&buffered[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buffered.len() < head_end + length {
        read_more(stream, buffered).await?;
    }
    buffered.drain(..head_end + length);
    Some(Seen { target, headers })
}

async fn read_more(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buffered.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
