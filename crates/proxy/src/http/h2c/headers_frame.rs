//! The HTTP/1.1 request that asked for the upgrade, as the HTTP/2 frames that open
//! stream 1 (RFC 7540 section 3.2: the response to it is sent on stream 1).

use bytes::{BufMut, Bytes, BytesMut};
use http::Request;
use http::header::{self, HeaderMap, HeaderName};

/// The largest frame payload every HTTP/2 peer accepts (the initial
/// `SETTINGS_MAX_FRAME_SIZE`; the client's SETTINGS say nothing of the server's).
const MAX_FRAME_PAYLOAD: usize = 16_384;
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const STREAM_ONE: u32 = 1;

/// Request headers that describe the HTTP/1.1 connection, which HTTP/2 forbids
/// (RFC 7540 section 8.1.2.2); `host` becomes `:authority` instead.
const CONNECTION_SPECIFIC: [HeaderName; 7] = [
    header::CONNECTION,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::HOST,
];

/// The HEADERS frame (and CONTINUATION frames when the block exceeds one frame) that
/// carries `request` on stream 1 with END_STREAM: the upgrade request has no body.
pub fn headers_frames<B>(request: &Request<B>) -> Bytes {
    let block = header_block(request);
    // The block is never empty (it has at least `:method`), so there is a first frame.
    let count = block.len().div_ceil(MAX_FRAME_PAYLOAD);
    let mut out = BytesMut::with_capacity(block.len() + count * FRAME_HEADER_LEN);
    for (i, chunk) in block.chunks(MAX_FRAME_PAYLOAD).enumerate() {
        let (kind, mut flags) = match i {
            0 => (TYPE_HEADERS, FLAG_END_STREAM),
            _ => (TYPE_CONTINUATION, 0),
        };
        if i + 1 == count {
            flags |= FLAG_END_HEADERS;
        }
        put_frame_header(&mut out, chunk.len(), kind, flags);
        out.put_slice(chunk);
    }
    out.freeze()
}

fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8) {
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(STREAM_ONE);
}

/// The request's HPACK header block, every field a literal without indexing and without
/// Huffman coding: it leaves the server's dynamic table untouched, so the client's own
/// encoder (which never saw this block) stays in step with it.
fn header_block<B>(request: &Request<B>) -> BytesMut {
    let mut block = BytesMut::new();
    let uri = request.uri();
    let headers = request.headers();
    let authority = uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| headers.get(header::HOST).map(|h| h.as_bytes()));
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    literal(&mut block, b":method", request.method().as_str().as_bytes());
    literal(&mut block, b":scheme", b"http");
    if let Some(authority) = authority {
        literal(&mut block, b":authority", authority);
    }
    literal(&mut block, b":path", path.as_bytes());
    let named = connection_named(headers);
    for (name, value) in headers {
        let dropped = CONNECTION_SPECIFIC.contains(name)
            || named.contains(name)
            || (name == header::TE && !value.as_bytes().eq_ignore_ascii_case(b"trailers"));
        if !dropped {
            // `HeaderName`s are lower case already, as HTTP/2 requires.
            literal(&mut block, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    block
}

/// The headers the `connection` header names: hop-by-hop, like it.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// One "literal header field without indexing — new name" (RFC 7541 section 6.2.2).
fn literal(block: &mut BytesMut, name: &[u8], value: &[u8]) {
    block.put_u8(0x00);
    string(block, name);
    string(block, value);
}

/// A string literal without Huffman coding (RFC 7541 section 5.2): its length as an
/// integer with a 7-bit prefix (the Huffman bit, above it, clear), then its octets.
fn string(block: &mut BytesMut, bytes: &[u8]) {
    length(block, bytes.len());
    block.put_slice(bytes);
}

/// An integer with a 7-bit prefix (RFC 7541 section 5.1).
fn length(block: &mut BytesMut, mut value: usize) {
    const MAX: usize = 0x7f;
    if value < MAX {
        block.put_u8(value as u8);
        return;
    }
    block.put_u8(MAX as u8);
    value -= MAX;
    while value >= 0x80 {
        block.put_u8((value % 0x80) as u8 | 0x80);
        value /= 0x80;
    }
    block.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits frames into (type, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len =
                usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        out
    }

    /// The block as (name, value) pairs, decoding only the literal form this module writes.
    fn decode(mut block: &[u8]) -> Vec<(String, String)> {
        fn int(block: &mut &[u8], prefix: u8) -> usize {
            let max = (1usize << prefix) - 1;
            let mut value = usize::from(block[0]) & max;
            *block = &block[1..];
            if value == max {
                let mut shift = 0;
                loop {
                    let b = block[0];
                    *block = &block[1..];
                    value += usize::from(b & 0x7f) << shift;
                    shift += 7;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
            }
            value
        }
        fn string(block: &mut &[u8]) -> String {
            assert_eq!(block[0] & 0x80, 0, "no Huffman coding");
            let len = int(block, 7);
            let s = String::from_utf8(block[..len].to_vec()).unwrap();
            *block = &block[len..];
            s
        }
        let mut fields = Vec::new();
        while !block.is_empty() {
            assert_eq!(block[0], 0x00, "literal without indexing, new name");
            block = &block[1..];
            let name = string(&mut block);
            let value = string(&mut block);
            fields.push((name, value));
        }
        fields
    }

    #[test]
    fn the_request_becomes_one_headers_frame_on_stream_one_without_connection_headers() {
        let request = Request::get("/reviews/1?x=y")
            .header("Host", "reviews:9080")
            .header("Connection", "Upgrade, HTTP2-Settings, x-hop")
            .header("Upgrade", "h2c")
            .header("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")
            .header("Keep-Alive", "timeout=5")
            .header("X-Hop", "gone")
            .header("TE", "gzip")
            .header("Accept", "*/*")
            .header("Cookie", "a=1")
            .header("Cookie", "b=2")
            .body(())
            .unwrap();
        let bytes = headers_frames(&request);
        let frames = frames(&bytes);
        assert_eq!(frames.len(), 1);
        let (kind, flags, stream, payload) = &frames[0];
        assert_eq!(
            (*kind, *flags, *stream),
            (TYPE_HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, 1)
        );
        let fields = decode(payload);
        let expected = [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "reviews:9080"),
            (":path", "/reviews/1?x=y"),
            ("accept", "*/*"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(fields, expected);
    }

    #[test]
    fn te_trailers_is_kept() {
        let request = Request::get("/")
            .header("host", "a")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let bytes = headers_frames(&request);
        let fields = decode(&frames(&bytes)[0].3);
        assert!(
            fields.contains(&("te".into(), "trailers".into())),
            "{fields:?}"
        );
    }

    #[test]
    fn a_block_larger_than_a_frame_continues_in_continuation_frames() {
        let big = "v".repeat(40_000);
        let request = Request::get("/")
            .header("host", "a")
            .header("x-big", &big)
            .body(())
            .unwrap();
        let bytes = headers_frames(&request);
        let frames = frames(&bytes);
        let shape: Vec<(u8, u8, u32, usize)> = frames
            .iter()
            .map(|(t, f, s, p)| (*t, *f, *s, p.len()))
            .collect();
        let block_len: usize = shape.iter().map(|s| s.3).sum();
        assert_eq!(
            shape,
            [
                (TYPE_HEADERS, FLAG_END_STREAM, 1, MAX_FRAME_PAYLOAD),
                (TYPE_CONTINUATION, 0, 1, MAX_FRAME_PAYLOAD),
                (
                    TYPE_CONTINUATION,
                    FLAG_END_HEADERS,
                    1,
                    block_len - 2 * MAX_FRAME_PAYLOAD
                ),
            ]
        );
        let block: Vec<u8> = frames.into_iter().flat_map(|f| f.3).collect();
        let fields = decode(&block);
        assert_eq!(fields.last(), Some(&("x-big".to_string(), big)));
    }

    #[test]
    fn lengths_past_the_prefix_continue_in_more_octets() {
        let encoded = |n| {
            let mut block = BytesMut::new();
            length(&mut block, n);
            block.to_vec()
        };
        assert_eq!(encoded(126), [0x7e]);
        assert_eq!(encoded(127), [0x7f, 0x00]);
        // 1337 - 127 = 1210 = 9 * 128 + 58.
        assert_eq!(encoded(1337), [0x7f, 0x80 | 58, 9]);
    }
}
