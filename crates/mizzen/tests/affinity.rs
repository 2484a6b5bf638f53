//! Session affinity (Istio's consistent-hash load balancing), end to end: the
//! DestinationRules under `examples/traffic/affinity-*.yaml` applied to a local mesh,
//! judged on real traffic through the client's sidecar.
//!
//! These fail until pilot puts the DestinationRule's consistent hash on the routes
//! (`route.hash_policy`, built by `translate::cluster::hash_policies` but not yet
//! called by the route builders): the ring-hash cluster then has no key and picks at
//! random.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::client::Response;
use common::mesh::Mesh;
use common::{REVIEWS, assert_all_ok};

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
