//! Virtual host selection by authority.

use super::*;
use crate::route::Problem;

fn vhosts(specs: &[(&str, &[&str])]) -> RouteTable {
    table(
        specs
            .iter()
            .map(|(name, domains)| vhost(name, domains, vec![route(name, prefix("/"))]))
            .collect(),
    )
}

#[test]
fn exact_then_suffix_then_prefix_then_any() {
    let t = vhosts(&[
        ("any", &["*"]),
        ("prefix", &["api.*"]),
        ("suffix", &["*.example.com"]),
        ("exact", &["api.example.com"]),
    ]);
    for (authority, want) in [
        ("api.example.com", "exact"),
        ("www.example.com", "suffix"),
        ("api.other.org", "prefix"),
        ("other.org", "any"),
    ] {
        assert_eq!(
            vhost_for(&t, &Request::get(authority, "/")),
            Some(want),
            "{authority}"
        );
    }
}

#[test]
fn the_longest_wildcard_wins() {
    let t = vhosts(&[
        ("short-suffix", &["*.foo.com"]),
        ("long-suffix", &["*-bar.foo.com"]),
        ("short-prefix", &["foo.*"]),
        ("long-prefix", &["foo.bar.*"]),
    ]);
    for (authority, want) in [
        ("baz-bar.foo.com", "long-suffix"),
        ("baz.foo.com", "short-suffix"),
        ("foo.bar.org", "long-prefix"),
        ("foo.baz.org", "short-prefix"),
    ] {
        assert_eq!(
            vhost_for(&t, &Request::get(authority, "/")),
            Some(want),
            "{authority}"
        );
    }
}

#[test]
fn a_wildcard_does_not_match_the_empty_string() {
    let t = vhosts(&[("suffix", &["*-bar.foo.com"]), ("prefix", &["foo-*"])]);
    assert_eq!(vhost_for(&t, &Request::get("-bar.foo.com", "/")), None);
    assert_eq!(vhost_for(&t, &Request::get("foo-", "/")), None);
    assert_eq!(
        vhost_for(&t, &Request::get("x-bar.foo.com", "/")),
        Some("suffix")
    );
}

#[test]
fn domains_are_case_insensitive() {
    let t = vhosts(&[("reviews", &["Reviews.Default", "*.Example.COM"])]);
    for authority in [
        "reviews.default",
        "REVIEWS.default",
        "www.example.com",
        "WWW.EXAMPLE.COM",
    ] {
        assert_eq!(
            vhost_for(&t, &Request::get(authority, "/")),
            Some("reviews"),
            "{authority}"
        );
    }
}

#[test]
fn the_authority_is_matched_with_its_port() {
    // Istio lists both forms, so a port on the authority must not be dropped.
    let t = vhosts(&[("reviews", &["reviews", "reviews:9080"])]);
    assert_eq!(
        vhost_for(&t, &Request::get("reviews", "/")),
        Some("reviews")
    );
    assert_eq!(
        vhost_for(&t, &Request::get("reviews:9080", "/")),
        Some("reviews")
    );
    assert_eq!(vhost_for(&t, &Request::get("reviews:8080", "/")), None);
}

#[test]
fn the_port_can_be_ignored() {
    let mut c = config(vec![
        vhost("reviews", &["reviews"], vec![route("r", prefix("/"))]),
        vhost("v6", &["[::1]"], vec![route("v6", prefix("/"))]),
    ]);
    c.ignore_port_in_host_matching = true;
    let t = compile(c);
    assert_eq!(
        vhost_for(&t, &Request::get("reviews:8080", "/")),
        Some("reviews")
    );
    assert_eq!(vhost_for(&t, &Request::get("[::1]:80", "/")), Some("v6"));
    assert_eq!(vhost_for(&t, &Request::get("[::1]", "/")), Some("v6"));
}

#[test]
fn no_virtual_host_means_no_route() {
    let t = vhosts(&[("reviews", &["reviews"])]);
    assert!(t.select(&Request::get("ratings", "/").head()).is_none());
}

#[test]
fn a_lone_catch_all_serves_any_authority() {
    let t = vhosts(&[("allow_any", &["*"])]);
    assert_eq!(vhost_for(&t, &Request::get("", "/")), Some("allow_any"));
    assert_eq!(
        vhost_for(&t, &Request::get("anything:1234", "/")),
        Some("allow_any")
    );
}

#[test]
fn vhost_header_replaces_the_authority() {
    let mut c = config(vec![
        vhost("a", &["a"], vec![route("a", prefix("/"))]),
        vhost("b", &["b"], vec![route("b", prefix("/"))]),
    ]);
    c.vhost_header = "x-vhost".to_owned();
    let t = compile(c);
    assert_eq!(
        vhost_for(&t, &Request::get("a", "/").header("x-vhost", "b")),
        Some("b")
    );
    assert_eq!(vhost_for(&t, &Request::get("a", "/")), None);
}

#[test]
fn a_domain_in_two_virtual_hosts_is_refused_naming_both() {
    let err = refused(config(vec![
        vhost("first", &["reviews", "ratings"], vec![]),
        vhost("second", &["details", "Ratings"], vec![]),
    ]));
    assert_eq!(
        err.to_string(),
        r#"route config "9080": virtual host "second": domains: domain "ratings" is also a domain of virtual host "first""#
    );
}

#[test]
fn two_catch_alls_are_refused() {
    let err = refused(config(vec![
        vhost("allow_any", &["*"], vec![]),
        vhost("block_all", &["*"], vec![]),
    ]));
    assert!(
        matches!(err.problem(), Problem::DuplicateDomain { domain, other } if domain == "*" && other == "allow_any"),
        "{err}"
    );
}

#[test]
fn a_domain_listed_twice_is_refused() {
    let err = refused(config(vec![vhost("a", &["*.a.com", "*.A.com"], vec![])]));
    assert_eq!(err.field(), "domains");
    assert!(matches!(err.problem(), Problem::RepeatedDomain(d) if d == "*.a.com"));
}

#[test]
fn a_virtual_host_without_domains_is_refused() {
    let err = refused(config(vec![vhost("a", &[], vec![])]));
    assert_eq!(err.place(), r#"route config "9080": virtual host "a""#);
    assert_eq!(err.field(), "domains");
}
