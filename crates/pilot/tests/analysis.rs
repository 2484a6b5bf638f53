//! Pilot analyses the config it serves after every change: a VirtualService routing to
//! a host that does not exist shows up on `/debug/analyzez` with the config version
//! that brought it, and goes once the route is fixed.

use std::sync::Arc;
use std::time::Duration;

use mizzen_api::load::Loader;
use mizzen_pilot::server::{Findings, Pilot, PilotOptions};
use mizzen_pilot::store::{ConfigStore, DirStore};
use serde_json::Value;
use tokio::sync::watch;

mod common;
use common::{BOOKINFO, get};

const TO_REVIEWS2: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews2}
"#;

/// Applies `yaml` through the store and waits until pilot has analysed the revision it
/// made; returns `/debug/analyzez` then.
async fn apply_and_analyse(
    store: &DirStore,
    findings: &mut watch::Receiver<Arc<Findings>>,
    http: std::net::SocketAddr,
    yaml: &str,
) -> (u64, Value) {
    let loaded = Loader::new().load_str(yaml, None);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let objects = loaded.objects.into_iter().map(|l| l.object).collect();
    let revision = store.apply(objects).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(20),
        findings.wait_for(|f| f.revision >= revision),
    )
    .await
    .expect("the change is analysed")
    .unwrap();
    let answer = get(http, "/debug/analyzez").await;
    (revision, serde_json::from_str(&answer).unwrap())
}

/// The codes and messages about the VirtualService `default/reviews`.
fn about_reviews_route(analyzez: &Value) -> Vec<(String, String)> {
    analyzez["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["origin"] == "VirtualService default/reviews")
        .map(|m| {
            (
                m["code"].as_str().unwrap().to_owned(),
                m["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_a_missing_host_is_found_and_forgotten_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bookinfo.yaml"), BOOKINFO).unwrap();
    let store = Arc::new(DirStore::open(dir.path()).unwrap());
    let pilot = Pilot::bind(store.clone(), PilotOptions::ephemeral())
        .await
        .unwrap();
    let (http, mut findings) = (pilot.http_addr(), pilot.findings());
    let first = findings.borrow().revision;
    tokio::spawn(pilot.run(std::future::pending()));

    let (broken, analyzez) = apply_and_analyse(&store, &mut findings, http, TO_REVIEWS2).await;
    assert!(broken > first);
    assert_eq!(analyzez["version"], broken.to_string());
    assert_eq!(
        about_reviews_route(&analyzez),
        [(
            "IST0101".to_owned(),
            r#"Referenced host not found: "reviews2""#.to_owned()
        )]
    );
    let finding = analyzez["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["origin"] == "VirtualService default/reviews")
        .unwrap();
    assert_eq!(finding["level"], "Error");
    assert_eq!(
        finding["documentationUrl"],
        "https://istio.io/latest/docs/reference/config/analysis/ist0101/?ref=mizzen-analyze"
    );

    let fixed = TO_REVIEWS2.replace("host: reviews2", "host: reviews");
    let (revision, analyzez) = apply_and_analyse(&store, &mut findings, http, &fixed).await;
    assert!(revision > broken);
    assert_eq!(analyzez["version"], revision.to_string());
    assert!(about_reviews_route(&analyzez).is_empty(), "{analyzez}");
}
