//! Trace context in request headers: W3C Trace Context and B3, read and written.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::Hop;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(super) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const B3_SINGLE: HeaderName = HeaderName::from_static("b3");
const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// A span's identity and the trace's sampling decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace (128 bits; B3's 64-bit ids are the low half).
    pub trace_id: u128,
    /// The span.
    pub span_id: u64,
    /// Whether the trace is recorded.
    pub sampled: bool,
}

/// How the caller sent the trace context, so that the next hop hears it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// `traceparent` (and `tracestate`, passed on as it came).
    W3c,
    /// `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`.
    B3Multi,
    /// `b3: {trace}-{span}-{sampled}-{parent}`.
    B3Single,
    /// No context came: a new trace, sent in W3C and B3 (multi) both, for whichever the
    /// application propagates.
    New,
}

/// The trace context headers a tracer reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    /// W3C Trace Context, else B3 ([`extract`]); a new trace goes out in both. The
    /// OpenTelemetry tracer's, and propagation's without a tracer.
    W3cOrB3,
    /// B3 only, as Envoy's Zipkin tracer reads and writes it ([`B3Context`]).
    B3(B3Context),
}

/// How Envoy's Zipkin tracer continues and starts B3 traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct B3Context {
    /// A SERVER span takes the caller's span id and parent rather than a child id of
    /// its own (`shared_span_context`, on unless switched off).
    pub shared_span_context: bool,
    /// New traces get 128-bit ids (`trace_id_128bit`), else 64-bit ones.
    pub trace_id_128bit: bool,
    /// `traceparent` is read when no B3 came, and written beside B3
    /// (`trace_context_option: USE_B3_WITH_W3C_PROPAGATION`).
    pub w3c: bool,
}

/// A caller's B3 context as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct B3 {
    /// The trace.
    pub trace_id: u128,
    /// The caller's span.
    pub span_id: u64,
    /// The caller's parent span, when it says.
    pub parent: Option<u64>,
    /// The caller's sampling decision, when it made one (debug implies sampled).
    pub sampled: Option<bool>,
}

/// The caller's span context, from `traceparent`, else single `b3`, else the `x-b3-*`
/// headers; none when absent or malformed (a new trace starts). A B3 trace id without
/// a decision is sampled.
pub fn extract(headers: &HeaderMap) -> Option<(SpanContext, Propagation)> {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(context) = text(&TRACEPARENT).and_then(traceparent) {
        return Some((context, Propagation::W3c));
    }
    let (b3, propagation) = extract_b3(headers)?;
    Some((
        SpanContext {
            trace_id: b3.trace_id,
            span_id: b3.span_id,
            sampled: b3.sampled.unwrap_or(true),
        },
        propagation,
    ))
}

/// The caller's B3 context, from single `b3`, else the `x-b3-*` headers, and which of
/// the two it came in.
pub fn extract_b3(headers: &HeaderMap) -> Option<(B3, Propagation)> {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(context) = text(&B3_SINGLE).and_then(b3_single) {
        return Some((context, Propagation::B3Single));
    }
    let trace_id = text(&B3_TRACE_ID).and_then(b3_trace_id)?;
    let span_id = text(&B3_SPAN_ID).and_then(hex_u64)?;
    let sampled = match text(&B3_FLAGS) {
        Some("1") => Some(true),
        _ => text(&B3_SAMPLED).map(|s| s == "1" || s.eq_ignore_ascii_case("true")),
    };
    Some((
        B3 {
            trace_id,
            span_id,
            parent: text(&B3_PARENT_SPAN_ID).and_then(hex_u64),
            sampled,
        },
        Propagation::B3Multi,
    ))
}

/// The caller's context as Envoy's Zipkin tracer reads it: B3, else, with `w3c`,
/// `traceparent` (continued in B3 headers).
pub fn extract_zipkin(headers: &HeaderMap, w3c: bool) -> Option<(B3, Propagation)> {
    extract_b3(headers).or_else(|| {
        let value = headers.get(TRACEPARENT).filter(|_| w3c)?.to_str().ok()?;
        let context = traceparent(value)?;
        let b3 = B3 {
            trace_id: context.trace_id,
            span_id: context.span_id,
            parent: None,
            sampled: Some(context.sampled),
        };
        Some((b3, Propagation::B3Multi))
    })
}

/// Writes this hop's context into the request for the next hop, in the caller's format.
pub fn inject(headers: &mut HeaderMap, hop: &Hop, propagation: Propagation) {
    let span = hop.span;
    let value = |s: String| HeaderValue::from_str(&s).expect("hex digits are a header value");
    if matches!(propagation, Propagation::W3c | Propagation::New) {
        inject_traceparent(headers, &span);
    }
    if propagation == Propagation::New {
        // Vendor state belongs to the trace it came with, which is not continued.
        headers.remove(TRACESTATE);
    }
    if matches!(propagation, Propagation::B3Multi | Propagation::New) {
        headers.insert(B3_TRACE_ID, value(b3_trace_hex(span.trace_id)));
        headers.insert(B3_SPAN_ID, value(format!("{:016x}", span.span_id)));
        match hop.parent {
            Some(parent) => headers.insert(B3_PARENT_SPAN_ID, value(format!("{parent:016x}"))),
            None => headers.remove(B3_PARENT_SPAN_ID),
        };
        headers.insert(
            B3_SAMPLED,
            HeaderValue::from_static(if span.sampled { "1" } else { "0" }),
        );
    }
    if propagation == Propagation::B3Single {
        let sampled = if span.sampled { "1" } else { "0" };
        let mut single = format!(
            "{}-{:016x}-{sampled}",
            b3_trace_hex(span.trace_id),
            span.span_id
        );
        if let Some(parent) = hop.parent {
            single.push_str(&format!("-{parent:016x}"));
        }
        headers.insert(B3_SINGLE, value(single));
    }
}

/// Writes `traceparent` for `span`.
pub fn inject_traceparent(headers: &mut HeaderMap, span: &SpanContext) {
    let flags = if span.sampled { "01" } else { "00" };
    let traceparent = format!("00-{:032x}-{:016x}-{flags}", span.trace_id, span.span_id);
    let value = HeaderValue::from_str(&traceparent).expect("hex digits are a header value");
    headers.insert(TRACEPARENT, value);
}

/// `version-traceid-spanid-flags`; version `ff` and all-zero ids are invalid.
fn traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2
        || version == "ff"
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
    let span_id = hex_u64(span)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// `{traceid}-{spanid}[-{sampled}[-{parentspanid}]]`; a lone `0`/`1`/`d` carries only a
/// decision, which starts no trace here.
fn b3_single(value: &str) -> Option<B3> {
    let mut parts = value.trim().split('-');
    let trace_id = b3_trace_id(parts.next()?)?;
    let span_id = hex_u64(parts.next()?)?;
    let sampled = match parts.next() {
        None => None,
        Some("1" | "d") => Some(true),
        Some("0") => Some(false),
        Some(_) => return None,
    };
    let parent = match parts.next() {
        None => None,
        Some(parent) => Some(hex_u64(parent)?),
    };
    Some(B3 {
        trace_id,
        span_id,
        parent,
        sampled,
    })
}

/// A B3 trace id: 16 or 32 hex digits, not zero.
fn b3_trace_id(hex: &str) -> Option<u128> {
    if hex.len() != 16 && hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(hex, 16).ok().filter(|t| *t != 0)
}

/// 16 hex digits, not zero.
fn hex_u64(hex: &str) -> Option<u64> {
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())?
        .filter(|s| *s != 0)
}

/// A trace id as B3 writes it: 16 digits when it fits in 64 bits, else 32.
fn b3_trace_hex(trace_id: u128) -> String {
    if trace_id >> 64 == 0 {
        format!("{trace_id:016x}")
    } else {
        format!("{trace_id:032x}")
    }
}
