//! The upgraded connection as the HTTP/2 server reads it: the client's bytes, with the
//! frames that open stream 1 slipped in right after its connection preface and first
//! SETTINGS frame (where the server expects them, and before any frame of the client's
//! that may name stream 1).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 7540 section 3.5).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_SETTINGS: u8 = 0x4;
/// The largest SETTINGS frame waited for: more than the initial maximum frame size is a
/// protocol error the server reports itself, so such bytes pass through untouched.
const MAX_SETTINGS_PAYLOAD: usize = 16_384;

/// An IO whose reads carry `frames` after the client's preface and first SETTINGS frame.
pub struct Injecting<I> {
    io: I,
    state: State,
}

enum State {
    /// Reading the preface and the first frame; `frames` wait to follow them.
    Prelude { read: BytesMut, frames: Bytes },
    /// Handing out what was read and the frames, in order.
    Replay(Bytes),
    /// Everything injected: reads go straight to the connection.
    Through,
}

impl<I> Injecting<I> {
    /// Wraps `io` so that its reader sees `frames` after the client's first SETTINGS.
    pub fn new(io: I, frames: Bytes) -> Self {
        Injecting {
            io,
            state: State::Prelude {
                read: BytesMut::with_capacity(PREFACE.len() + FRAME_HEADER_LEN + 64),
                frames,
            },
        }
    }
}

/// Where the first frame after the preface ends, once `read` holds its header; `None`
/// while more bytes are needed. A prelude that is not a preface and a SETTINGS frame
/// ends at 0: nothing is injected, and the server rejects what it reads.
fn prelude_end(read: &[u8]) -> Option<usize> {
    let header_end = PREFACE.len() + FRAME_HEADER_LEN;
    let known = read.len().min(PREFACE.len());
    if read[..known] != PREFACE[..known] {
        return Some(0);
    }
    let header = read.get(PREFACE.len()..header_end)?;
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if header[3] != TYPE_SETTINGS || len > MAX_SETTINGS_PAYLOAD {
        return Some(0);
    }
    Some(header_end + len)
}

impl<I: AsyncRead + Unpin> AsyncRead for Injecting<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Prelude { read, frames } => {
                    let end = prelude_end(read).filter(|&end| read.len() >= end);
                    let Some(end) = end else {
                        let mut chunk = [0u8; 512];
                        let mut chunk = ReadBuf::new(&mut chunk);
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut chunk))?;
                        if chunk.filled().is_empty() {
                            // The client left early: the server sees what it sent.
                            this.state = State::Replay(std::mem::take(read).freeze());
                        } else {
                            read.extend_from_slice(chunk.filled());
                        }
                        continue;
                    };
                    let mut replay = BytesMut::with_capacity(read.len() + frames.len());
                    replay.extend_from_slice(&read[..end]);
                    if end > 0 {
                        replay.extend_from_slice(frames);
                    }
                    replay.extend_from_slice(&read[end..]);
                    this.state = State::Replay(replay.freeze());
                }
                State::Replay(bytes) if bytes.is_empty() => this.state = State::Through,
                State::Replay(bytes) => {
                    let n = bytes.len().min(buf.remaining());
                    buf.put_slice(&bytes[..n]);
                    bytes.advance(n);
                    return Poll::Ready(Ok(()));
                }
                State::Through => return Pin::new(&mut this.io).poll_read(cx, buf),
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Injecting<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Writes `chunks` as the client, one write each, then closes; returns every byte
    /// the server side reads.
    async fn server_reads(chunks: Vec<Vec<u8>>, frames: &'static [u8]) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for chunk in chunks {
                client.write_all(&chunk).await.unwrap();
            }
        });
        let mut server = Injecting::new(server, Bytes::from_static(frames));
        let mut seen = Vec::new();
        server.read_to_end(&mut seen).await.unwrap();
        writer.await.unwrap();
        seen
    }

    const INJECTED: &[u8] = b"<HEADERS frame for stream 1>";

    #[tokio::test]
    async fn the_frames_follow_the_preface_and_first_settings_even_when_split_across_reads() {
        // SETTINGS_MAX_CONCURRENT_STREAMS = 100, SETTINGS_INITIAL_WINDOW_SIZE = 1 MiB.
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100, 0, 4, 0, 16, 0, 0]);
        let window_update = frame(0x8, 0, 0, &[0, 0x3f, 0xff, 0x01]);
        let priority = frame(0x2, 0, 1, &[0, 0, 0, 0, 15]);
        let headers3 = frame(0x1, 0x5, 3, &[0x82, 0x86, 0x84]);
        // The client's bytes, cut at awkward places: inside the preface, inside the
        // SETTINGS header, and SETTINGS glued to the frames after it.
        let mut after = settings[5..].to_vec();
        after.extend_from_slice(&window_update);
        after.extend_from_slice(&priority);
        let chunks = vec![
            PREFACE[..7].to_vec(),
            [&PREFACE[7..], &settings[..5]].concat(),
            after,
            headers3.clone(),
        ];
        let seen = server_reads(chunks, INJECTED).await;
        let expected = [
            PREFACE,
            &settings,
            INJECTED,
            &window_update,
            &priority,
            &headers3,
        ]
        .concat();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn an_empty_settings_frame_is_followed_too() {
        let settings = frame(0x4, 0, 0, &[]);
        let ping = frame(0x6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let chunks = vec![[PREFACE, &settings, &ping].concat()];
        let seen = server_reads(chunks, INJECTED).await;
        assert_eq!(seen, [PREFACE, &settings, INJECTED, &ping].concat());
    }

    #[tokio::test]
    async fn a_client_that_does_not_speak_http2_gets_nothing_injected() {
        let garbage = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n and then some more bytes".to_vec();
        let seen = server_reads(vec![garbage.clone()], INJECTED).await;
        assert_eq!(seen, garbage);
        // A preface followed by something other than SETTINGS is left to the server too.
        let ping = frame(0x6, 0, 0, &[0; 8]);
        let seen = server_reads(vec![[PREFACE, &ping].concat()], INJECTED).await;
        assert_eq!(seen, [PREFACE, &ping].concat());
    }

    #[tokio::test]
    async fn a_client_that_leaves_mid_preface_is_seen_leaving() {
        let seen = server_reads(vec![PREFACE[..10].to_vec()], INJECTED).await;
        assert_eq!(seen, &PREFACE[..10]);
    }

    #[tokio::test]
    async fn writes_reach_the_client_unchanged() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = Injecting::new(server, Bytes::from_static(INJECTED));
        server.write_all(b"server settings").await.unwrap();
        let mut got = [0u8; 15];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"server settings");
    }
}
