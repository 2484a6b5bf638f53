//! Istio's traffic-management tutorials, end to end: each scenario applies the Istio
//! YAML under `examples/traffic/` to a local mesh and judges the real traffic an
//! application sends through its sidecar (docs/traffic-management.md walks through
//! the same files by hand). Session affinity is Istio's consistent-hash balancing: the
//! DestinationRule's key, put on the routes, keeps each user on one endpoint.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::client::Response;
use common::mesh::Mesh;
use common::{REVIEWS, answered_by, assert_all_ok, assert_binomial};

/// Requests per statistical sample: 5σ is then ±9% of the sample at p = 0.1 and ±4%
/// at p = 0.5, tight enough to tell the weights apart, quick enough for CI.
const SAMPLE: usize = 1000;
/// Application connections sending a sample at once.
const CONNECTIONS: usize = 8;

#[tokio::test]
async fn canary_shifts_traffic_by_weight() {
    let mesh = Mesh::start(&["canary-90-10.yaml"]).await;
    let responses = mesh.send(REVIEWS, &[], SAMPLE, CONNECTIONS).await;
    assert_all_ok(&responses);
    let v2 = answered_by(&responses, "reviews-v2");
    assert_eq!(answered_by(&responses, "reviews-v1") + v2, SAMPLE);
    assert_binomial("requests to v2 at 90/10", v2, SAMPLE, 0.1);

    mesh.apply("canary-50-50.yaml").await;
    let responses = mesh.send(REVIEWS, &[], SAMPLE, CONNECTIONS).await;
    assert_all_ok(&responses);
    let v2 = answered_by(&responses, "reviews-v2");
    assert_eq!(answered_by(&responses, "reviews-v1") + v2, SAMPLE);
    assert_binomial("requests to v2 at 50/50", v2, SAMPLE, 0.5);
}

#[tokio::test]
async fn a_request_header_picks_the_version() {
    let mesh = Mesh::start(&["header-routing.yaml"]).await;
    for (headers, version) in [
        (&[("end-user", "jason")][..], "reviews-v2"),
        (&[("end-user", "alice")][..], "reviews-v1"),
        (&[][..], "reviews-v1"),
    ] {
        let responses = mesh.send(REVIEWS, headers, 50, 2).await;
        assert_all_ok(&responses);
        assert_eq!(answered_by(&responses, version), 50, "{headers:?}");
    }
}

#[tokio::test]
async fn a_delegate_virtual_service_routes_for_its_root() {
    let mesh = Mesh::start(&["delegate.yaml", "delegate-routes.yaml"]).await;
    let expect = |cases: [(&'static [(&'static str, &'static str)], &'static str); 2]| {
        let mesh = &mesh;
        async move {
            for (headers, version) in cases {
                let responses = mesh.send(REVIEWS, headers, 50, 2).await;
                assert_all_ok(&responses);
                assert_eq!(answered_by(&responses, version), 50, "{headers:?}");
            }
        }
    };
    expect([
        (&[("end-user", "jason")], "reviews-v2"),
        (&[], "reviews-v3"),
    ])
    .await;
    // Only the delegate changes: proxies that route through its root follow.
    mesh.apply("delegate-update.yaml").await;
    expect([
        (&[("end-user", "jason")], "reviews-v3"),
        (&[], "reviews-v1"),
    ])
    .await;
}

#[tokio::test]
async fn round_robin_takes_the_endpoints_in_turn() {
    let mesh = Mesh::start(&["lb-round-robin.yaml"]).await;
    let responses = mesh.send(REVIEWS, &[], 60, 1).await;
    assert_all_ok(&responses);
    let order: Vec<&str> = responses.iter().filter_map(Response::instance).collect();
    // Every three requests in a row reach the three endpoints, in a fixed cycle.
    for window in order.windows(3) {
        let distinct: BTreeSet<&str> = window.iter().copied().collect();
        assert_eq!(distinct.len(), 3, "{order:?}");
    }
    for backend in mesh.backends() {
        assert_eq!(answered_by(&responses, backend.name()), 20, "{order:?}");
    }
}

#[tokio::test]
async fn random_balancing_spreads_requests_independently() {
    let mesh = Mesh::start(&["lb-random.yaml"]).await;
    let n = 600;
    let responses = mesh.send(REVIEWS, &[], n, 1).await;
    assert_all_ok(&responses);
    for backend in mesh.backends() {
        let what = format!("requests to {}", backend.name());
        assert_binomial(&what, answered_by(&responses, backend.name()), n, 1.0 / 3.0);
    }
    // Independent picks repeat the previous endpoint a third of the time (these events
    // are pairwise independent, so their count is binomial); round robin never does.
    let order: Vec<&str> = responses.iter().filter_map(Response::instance).collect();
    let repeats = order.windows(2).filter(|w| w[0] == w[1]).count();
    assert_binomial("same endpoint twice in a row", repeats, n - 1, 1.0 / 3.0);
}

/// Sends `per_user` requests for each of `users` users, with the headers
/// `user_headers(user)` makes; asserts each user stays on one endpoint and returns
/// the endpoint of each user.
async fn assert_sticky(
    mesh: &Mesh,
    users: usize,
    per_user: usize,
    user_headers: impl Fn(&str) -> (String, String),
) -> BTreeMap<String, String> {
    let mut placed = BTreeMap::new();
    for i in 0..users {
        let user = format!("user-{i}");
        let (name, value) = user_headers(&user);
        let responses = mesh
            .send(REVIEWS, &[(name.as_str(), value.as_str())], per_user, 1)
            .await;
        assert_all_ok(&responses);
        let endpoints: BTreeSet<&str> = responses.iter().filter_map(Response::instance).collect();
        assert_eq!(
            endpoints.len(),
            1,
            "{user} stays on one endpoint: {endpoints:?}"
        );
        placed.insert(user, endpoints.into_iter().next().unwrap().to_owned());
    }
    placed
}

/// Users hashed onto three endpoints; all of 30 on one has probability 3^-29.
#[track_caller]
fn assert_spread(placed: &BTreeMap<String, String>) {
    let endpoints: BTreeSet<&String> = placed.values().collect();
    assert!(
        endpoints.len() > 1,
        "users spread over endpoints: {placed:?}"
    );
}

#[tokio::test]
async fn session_affinity_by_cookie() {
    let mesh = Mesh::start(&["affinity-cookie.yaml"]).await;
    let placed = assert_sticky(&mesh, 30, 5, |user| {
        ("cookie".into(), format!("user={user}"))
    })
    .await;
    assert_spread(&placed);

    // A first visit without the cookie is given one (with the configured lifetime),
    // and placed where that cookie keeps it.
    let mut client = mesh.client();
    let first = client.get(REVIEWS, &[]).await;
    assert_eq!(first.status, 200, "{first:?}");
    let set_cookie = first
        .headers("set-cookie")
        .find(|c| c.starts_with("user="))
        .unwrap_or_else(|| panic!("a cookie is set: {first:?}"))
        .to_owned();
    assert!(set_cookie.contains("Max-Age=3600"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap();
    for _ in 0..10 {
        let next = client.get(REVIEWS, &[("cookie", cookie)]).await;
        assert_eq!(next.status, 200, "{next:?}");
        assert_eq!(next.instance(), first.instance(), "{cookie}");
        assert!(next.header("set-cookie").is_none(), "{next:?}");
    }
}

#[tokio::test]
async fn session_affinity_by_header() {
    let mesh = Mesh::start(&["affinity-header.yaml"]).await;
    let placed = assert_sticky(&mesh, 30, 5, |user| ("x-user".into(), user.to_owned())).await;
    assert_spread(&placed);
}
