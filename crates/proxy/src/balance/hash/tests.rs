use http::HeaderValue;
use mizzen_xds::pb::envoy::config::route::v3::route_action::hash_policy::{
    ConnectionProperties, Cookie, CookieAttribute, FilterState, Header, QueryParameter,
};
use mizzen_xds::pb::envoy::r#type::matcher::v3::RegexMatcher;
use mizzen_xds::pb::google::protobuf::Duration;

use super::*;

fn policy(specifier: PolicySpecifier) -> HashPolicy {
    HashPolicy {
        policy_specifier: Some(specifier),
        terminal: false,
    }
}

fn terminal(mut policy: HashPolicy) -> HashPolicy {
    policy.terminal = true;
    policy
}

fn header(name: &str) -> HashPolicy {
    policy(PolicySpecifier::Header(Header {
        header_name: name.to_owned(),
        regex_rewrite: None,
    }))
}

fn rewritten_header(name: &str, pattern: &str, substitution: &str) -> HashPolicy {
    policy(PolicySpecifier::Header(Header {
        header_name: name.to_owned(),
        regex_rewrite: Some(RegexMatchAndSubstitute {
            pattern: Some(RegexMatcher {
                regex: pattern.to_owned(),
                ..RegexMatcher::default()
            }),
            substitution: substitution.to_owned(),
        }),
    }))
}

fn cookie(name: &str, ttl: Option<i64>) -> HashPolicy {
    policy(PolicySpecifier::Cookie(Cookie {
        name: name.to_owned(),
        ttl: ttl.map(|seconds| Duration { seconds, nanos: 0 }),
        path: String::new(),
        attributes: Vec::new(),
    }))
}

fn source_ip() -> HashPolicy {
    policy(PolicySpecifier::ConnectionProperties(
        ConnectionProperties { source_ip: true },
    ))
}

fn query(name: &str) -> HashPolicy {
    policy(PolicySpecifier::QueryParameter(QueryParameter {
        name: name.to_owned(),
    }))
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for &(name, value) in pairs {
        map.append(name, HeaderValue::from_static(value));
    }
    map
}

fn input(headers: &HeaderMap) -> HashInput<'_> {
    HashInput {
        headers,
        authority: Some("reviews:9080"),
        path: Some("/api/v1?user=jason&b=2&user=other&flag"),
        remote: Some("10.1.2.3:45678".parse().unwrap()),
        local: Some("10.0.0.9:9080".parse().unwrap()),
    }
}

fn hash_of(policies: &[HashPolicy], headers: &HeaderMap) -> RequestHash {
    RequestHasher::new(policies).unwrap().hash(&input(headers))
}

fn xx(s: &str) -> u64 {
    xxh64(s.as_bytes(), 0)
}

#[test]
fn a_header_hashes_its_value() {
    let map = headers(&[("x-user", "jason")]);
    assert_eq!(hash_of(&[header("x-user")], &map).hash, Some(xx("jason")));
    // Header names are case-insensitive, as in Envoy.
    assert_eq!(hash_of(&[header("X-User")], &map).hash, Some(xx("jason")));
    assert_eq!(hash_of(&[header("x-other")], &map), RequestHash::default());
}

#[test]
fn all_values_of_a_header_hash_in_sorted_order() {
    let one = headers(&[("x-tag", "b"), ("x-tag", "a")]);
    let other = headers(&[("x-tag", "a"), ("x-tag", "b")]);
    let expected = xxh64(b"b", xxh64(b"a", 0));
    assert_eq!(hash_of(&[header("x-tag")], &one).hash, Some(expected));
    assert_eq!(hash_of(&[header("x-tag")], &other).hash, Some(expected));
}

#[test]
fn pseudo_headers_authority_and_path_can_be_hashed() {
    let map = HeaderMap::new();
    assert_eq!(
        hash_of(&[header(":authority")], &map).hash,
        Some(xx("reviews:9080"))
    );
    assert_eq!(
        hash_of(&[header(":path")], &map).hash,
        Some(xx("/api/v1?user=jason&b=2&user=other&flag"))
    );
}

#[test]
fn a_regex_rewrite_applies_before_hashing() {
    let map = HeaderMap::new();
    let rewrite = rewritten_header(":path", r"^/api/(v\d+)\?.*$", r"version \1 costs $5");
    assert_eq!(
        hash_of(&[rewrite], &map).hash,
        Some(xx("version v1 costs $5"))
    );
}

#[test]
fn hashes_combine_by_rotating_and_xoring() {
    let map = headers(&[("x-user", "jason"), ("x-team", "blue")]);
    let both = hash_of(&[header("x-user"), header("x-team")], &map).hash;
    assert_eq!(both, Some(xx("jason").rotate_left(1) ^ xx("blue")));
    // The same policy twice does not cancel itself out.
    let twice = hash_of(&[header("x-user"), header("x-user")], &map).hash;
    assert_eq!(twice, Some(xx("jason").rotate_left(1) ^ xx("jason")));
    // A policy that yields nothing leaves the hash alone.
    let skipped = hash_of(&[header("x-none"), header("x-team")], &map).hash;
    assert_eq!(skipped, Some(xx("blue")));
}

#[test]
fn a_terminal_policy_that_produced_a_hash_ends_evaluation() {
    let map = headers(&[("x-user", "jason"), ("x-team", "blue")]);
    let stop = hash_of(&[terminal(header("x-user")), header("x-team")], &map).hash;
    assert_eq!(stop, Some(xx("jason")));
    // Without a hash yet, a terminal policy that yields nothing does not stop.
    let go_on = hash_of(&[terminal(header("x-none")), header("x-team")], &map).hash;
    assert_eq!(go_on, Some(xx("blue")));
    // Terminal after an earlier hash stops even if it yields nothing itself.
    let after = hash_of(
        &[
            header("x-user"),
            terminal(header("x-none")),
            header("x-team"),
        ],
        &map,
    )
    .hash;
    assert_eq!(after, Some(xx("jason")));
}

#[test]
fn a_present_cookie_hashes_its_value() {
    let map = headers(&[
        ("cookie", "a=1; session=\"abc\"; session=later"),
        ("cookie", "x=y"),
    ]);
    let hashed = hash_of(&[cookie("session", Some(60))], &map);
    assert_eq!(
        hashed,
        RequestHash {
            hash: Some(xx("abc")),
            set_cookie: None
        }
    );
    let other_header = hash_of(&[cookie("x", None)], &map);
    assert_eq!(other_header.hash, Some(xx("y")));
    assert_eq!(
        hash_of(&[cookie("absent", None)], &map),
        RequestHash::default()
    );
}

#[test]
fn an_absent_cookie_with_a_ttl_is_generated_from_the_connection() {
    let value = format!("{:016x}", xx("10.1.2.3:4567810.0.0.9:9080"));
    let generated = hash_of(&[cookie("session", Some(3600))], &HeaderMap::new());
    assert_eq!(generated.hash, Some(xx(&value)));
    assert_eq!(
        generated.set_cookie.as_deref(),
        Some(format!("session=\"{value}\"; Max-Age=3600; HttpOnly").as_str())
    );
    // An empty cookie counts as absent.
    let empty = hash_of(
        &[cookie("session", Some(3600))],
        &headers(&[("cookie", "session=")]),
    );
    assert_eq!(empty, generated);
}

#[test]
fn generated_cookies_carry_path_attributes_and_session_lifetime() {
    let full = policy(PolicySpecifier::Cookie(Cookie {
        name: "s".to_owned(),
        ttl: Some(Duration {
            seconds: 0,
            nanos: 500,
        }),
        path: "/app".to_owned(),
        attributes: vec![
            CookieAttribute {
                name: "SameSite".to_owned(),
                value: "Strict".to_owned(),
            },
            CookieAttribute {
                name: "Secure".to_owned(),
                value: String::new(),
            },
        ],
    }));
    let set = hash_of(&[full], &HeaderMap::new()).set_cookie.unwrap();
    let value = format!("{:016x}", xx("10.1.2.3:4567810.0.0.9:9080"));
    // A zero TTL makes a session cookie: no Max-Age.
    assert_eq!(
        set,
        format!("s=\"{value}\"; Path=/app; SameSite=Strict; Secure; HttpOnly")
    );
}

#[test]
fn no_cookie_is_generated_without_a_ttl_or_without_addresses() {
    assert_eq!(
        hash_of(&[cookie("s", None)], &HeaderMap::new()),
        RequestHash::default()
    );
    let map = HeaderMap::new();
    let no_addresses = HashInput {
        remote: None,
        ..input(&map)
    };
    let hasher = RequestHasher::new(&[cookie("s", Some(60))]).unwrap();
    assert_eq!(hasher.hash(&no_addresses), RequestHash::default());
}

#[test]
fn source_ip_hashes_the_downstream_address_without_port() {
    assert_eq!(
        hash_of(&[source_ip()], &HeaderMap::new()).hash,
        Some(xx("10.1.2.3"))
    );
    let map = HeaderMap::new();
    let v6 = HashInput {
        remote: Some("[2001:db8::1]:443".parse().unwrap()),
        ..input(&map)
    };
    let hasher = RequestHasher::new(&[source_ip()]).unwrap();
    assert_eq!(hasher.hash(&v6).hash, Some(xx("2001:db8::1")));
}

#[test]
fn a_query_parameter_hashes_its_first_raw_value() {
    let map = HeaderMap::new();
    assert_eq!(hash_of(&[query("user")], &map).hash, Some(xx("jason")));
    assert_eq!(hash_of(&[query("flag")], &map).hash, Some(xx("")));
    assert_eq!(hash_of(&[query("missing")], &map).hash, None);
    let encoded = HashInput {
        path: Some("/?user=j%20son"),
        ..input(&map)
    };
    let hasher = RequestHasher::new(&[query("user")]).unwrap();
    assert_eq!(hasher.hash(&encoded).hash, Some(xx("j%20son")));
}

#[test]
fn filter_state_and_disabled_connection_properties_never_hash() {
    let hasher = RequestHasher::new(&[
        policy(PolicySpecifier::FilterState(FilterState {
            key: "k".to_owned(),
        })),
        policy(PolicySpecifier::ConnectionProperties(
            ConnectionProperties { source_ip: false },
        )),
    ])
    .unwrap();
    assert!(hasher.is_empty());
    assert_eq!(
        hasher.hash(&input(&HeaderMap::new())),
        RequestHash::default()
    );
}

#[test]
fn a_terminal_filter_state_policy_still_ends_evaluation_after_a_hash() {
    let map = headers(&[("x-user", "jason"), ("x-team", "blue")]);
    let filter_state = terminal(policy(PolicySpecifier::FilterState(FilterState {
        key: "k".to_owned(),
    })));
    let hashed = hash_of(&[header("x-user"), filter_state, header("x-team")], &map);
    assert_eq!(hashed.hash, Some(xx("jason")));
}

#[test]
fn invalid_policies_are_rejected_with_the_field_and_reason() {
    let err = |policies: &[HashPolicy]| RequestHasher::new(policies).unwrap_err().to_string();
    assert_eq!(
        err(&[header("x-ok"), header("bad header")]),
        "hash_policy[1]: header.header_name: \"bad header\" is not a valid header name"
    );
    assert_eq!(
        err(&[header(":method")]),
        "hash_policy[0]: header.header_name: pseudo-header \":method\" cannot be hashed \
         (only :authority and :path can)"
    );
    assert!(
        err(&[rewritten_header("x", "(", "")])
            .starts_with("hash_policy[0]: header.regex_rewrite: invalid regex \"(\": ")
    );
    assert_eq!(
        err(&[rewritten_header("x", "(a)", r"\2")]),
        "hash_policy[0]: header.regex_rewrite: substitution \"\\\\2\" refers to group 2 but \
         the pattern has 1"
    );
    assert_eq!(
        err(&[rewritten_header("x", "a", r"\n")]),
        "hash_policy[0]: header.regex_rewrite: substitution \"\\\\n\" has an invalid escape"
    );
    assert_eq!(
        err(&[cookie("", None)]),
        "hash_policy[0]: cookie.name: is required"
    );
    assert_eq!(
        err(&[HashPolicy::default()]),
        "hash_policy[0]: policy_specifier: is required"
    );
}
