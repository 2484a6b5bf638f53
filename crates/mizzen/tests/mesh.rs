//! Pilot and proxy together, as the local mesh runs them: Istio config in a directory,
//! a sidecar in local mode (`INTERCEPTION_MODE: NONE`: listeners on the workload's own
//! address and an HTTP-proxy listener), and requests that follow a VirtualService.

mod common;

use std::collections::BTreeSet;

use common::REVIEWS;
use common::mesh::Mesh;

#[tokio::test]
async fn a_local_sidecar_routes_by_the_meshs_virtual_services() {
    let mesh = Mesh::start(&[]).await;
    // No VirtualService: the service's endpoints share the traffic (Istio's default
    // LEAST_REQUEST, which with one request at a time picks among all three; each is
    // missed by 60 requests with probability (2/3)^60 < 3e-11).
    let responses = mesh.send(REVIEWS, &[], 60, 1).await;
    let seen: BTreeSet<&str> = responses.iter().filter_map(|r| r.instance()).collect();
    assert!(responses.iter().all(|r| r.status == 200), "{responses:?}");
    assert_eq!(
        seen,
        BTreeSet::from(["reviews-v1", "reviews-v2", "reviews-v3"])
    );

    // A VirtualService sends everything to v1; the sidecar follows once it acks.
    mesh.apply("route-all-v1.yaml").await;
    let responses = mesh.send(REVIEWS, &[], 20, 1).await;
    for response in &responses {
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.instance(), Some("reviews-v1"), "{response:?}");
    }
}
