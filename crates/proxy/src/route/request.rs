//! What routing reads of a request, and how config names a part of it.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::error::{Invalid, Problem};

/// What routing reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// `Host` / `:authority` as received, port included if the client sent one.
    pub authority: &'a str,
    /// The request method.
    pub method: &'a Method,
    /// The path with its query, as received (empty for a CONNECT without path).
    pub path: &'a str,
    /// The scheme the client used (`http` or `https`): Envoy's `:scheme`, which routes can
    /// match on and redirects keep.
    pub scheme: &'a str,
    /// The request headers (without pseudo-headers).
    pub headers: &'a HeaderMap,
}

impl RequestHead<'_> {
    /// The path without its query or fragment.
    pub(crate) fn path_only(&self) -> &str {
        path_only(self.path)
    }

    /// Whether the request is gRPC, by Envoy's test ([`is_grpc`]).
    pub fn is_grpc(&self) -> bool {
        is_grpc(self.headers)
    }
}

/// Envoy's gRPC test on request headers: a `content-type` of `application/grpc`, maybe
/// with `+proto` or `;...` (not `application/grpc-web`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(GRPC) && matches!(v.get(GRPC.len()), None | Some(b'+' | b';'))
    })
}

/// `path` up to its query or fragment.
pub(crate) fn path_only(path: &str) -> &str {
    path.find(['?', '#']).map_or(path, |end| &path[..end])
}

/// Where config's header name points in a request. Envoy keeps `:authority`, `:method`,
/// `:path` and `:scheme` among the headers, and finds `host` as `:authority`.
#[derive(Debug, Clone)]
pub(crate) enum HeaderSource {
    Authority,
    Method,
    Path,
    Scheme,
    /// A pseudo-header a request head does not carry (`:protocol`, say): always absent.
    OtherPseudo,
    Header(HeaderName),
}

impl HeaderSource {
    /// The source of header `name`; errors name no field (the caller knows it).
    pub(crate) fn parse(name: &str) -> Result<HeaderSource, Invalid> {
        Ok(match name.to_ascii_lowercase().as_str() {
            ":authority" | "host" => HeaderSource::Authority,
            ":method" => HeaderSource::Method,
            ":path" => HeaderSource::Path,
            ":scheme" => HeaderSource::Scheme,
            pseudo if pseudo.starts_with(':') && pseudo.len() > 1 => HeaderSource::OtherPseudo,
            _ => HeaderSource::Header(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| Problem::InvalidHeaderName(name.to_owned()).at(""))?,
            ),
        })
    }

    /// Every value of the header, in order (none when absent): Envoy matches a repeated
    /// header value by value, not joined.
    pub(crate) fn values<'r>(&self, req: &RequestHead<'r>) -> impl Iterator<Item = &'r [u8]> {
        let (pseudo, all) = match self {
            HeaderSource::Header(name) => (None, Some(req.headers.get_all(name))),
            _ => (self.pseudo(req), None),
        };
        pseudo
            .into_iter()
            .chain(all.into_iter().flatten().map(HeaderValue::as_bytes))
    }

    /// The first value of the header, as Envoy reads `cluster_header` and its kin.
    pub(crate) fn first<'r>(&self, req: &RequestHead<'r>) -> Option<&'r [u8]> {
        match self {
            HeaderSource::Header(name) => req.headers.get(name).map(|v| v.as_bytes()),
            _ => self.pseudo(req),
        }
    }

    /// The first value of the header as text, `None` when absent, empty or not UTF-8.
    pub(crate) fn first_text<'r>(&self, req: &RequestHead<'r>) -> Option<&'r str> {
        let value = std::str::from_utf8(self.first(req)?).ok()?;
        (!value.is_empty()).then_some(value)
    }

    /// The only value of the header: `None` when absent or repeated.
    pub(crate) fn single<'r>(&self, req: &RequestHead<'r>) -> Option<&'r [u8]> {
        match self {
            HeaderSource::Header(name) => {
                let mut values = req.headers.get_all(name).iter();
                let first = values.next()?;
                values.next().is_none().then(|| first.as_bytes())
            }
            _ => self.pseudo(req),
        }
    }

    fn pseudo<'r>(&self, req: &RequestHead<'r>) -> Option<&'r [u8]> {
        let value = match self {
            HeaderSource::Authority => req.authority,
            HeaderSource::Method => req.method.as_str(),
            HeaderSource::Path => req.path,
            HeaderSource::Scheme => req.scheme,
            HeaderSource::OtherPseudo | HeaderSource::Header(_) => return None,
        };
        (!value.is_empty()).then_some(value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(headers: &'a HeaderMap) -> RequestHead<'a> {
        RequestHead {
            authority: "reviews:9080",
            method: &Method::GET,
            path: "/a?b=c",
            scheme: "http",
            headers,
        }
    }

    #[test]
    fn pseudo_headers_and_host_read_the_request_head() {
        let headers = HeaderMap::new();
        let req = head(&headers);
        for (name, want) in [
            (":authority", "reviews:9080"),
            ("host", "reviews:9080"),
            ("Host", "reviews:9080"),
            (":method", "GET"),
            (":path", "/a?b=c"),
            (":scheme", "http"),
        ] {
            let got: Vec<_> = HeaderSource::parse(name).unwrap().values(&req).collect();
            assert_eq!(got, [want.as_bytes()], "{name}");
        }
        let protocol = HeaderSource::parse(":protocol").unwrap();
        assert_eq!(protocol.values(&req).count(), 0);
    }

    #[test]
    fn repeated_headers_give_every_value_or_their_first() {
        let mut headers = HeaderMap::new();
        for v in ["a", "b,c"] {
            headers.append("x-tag", HeaderValue::from_static(v));
        }
        let req = head(&headers);
        let tag = HeaderSource::parse("x-tag").unwrap();
        let values: Vec<_> = tag.values(&req).collect();
        assert_eq!(values, [&b"a"[..], b"b,c"]);
        assert_eq!(tag.first(&req).unwrap(), b"a");
        assert!(tag.single(&req).is_none());
        let none = HeaderSource::parse("x-none").unwrap();
        assert_eq!(none.values(&req).count(), 0);
    }

    #[test]
    fn the_path_stops_at_the_query_or_fragment() {
        assert_eq!(path_only("/a/b?x=1#f"), "/a/b");
        assert_eq!(path_only("/a#f?x"), "/a");
        assert_eq!(path_only("/a"), "/a");
    }
}
