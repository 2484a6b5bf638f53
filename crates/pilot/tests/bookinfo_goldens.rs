//! Goldens: for each of Istio's Bookinfo networking samples, the clusters, listeners and
//! routes productpage's sidecar gets, summarised one line per resource (and per route).
//! The goldens in `tests/golden/bookinfo/` were reviewed against Istio's documented
//! behaviour; regenerate them with `MIZZEN_UPDATE_GOLDEN=1` and review the diff.

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

use mizzen_api::load::Loader;
use mizzen_pilot::model::{MeshConfig, Proxy, PushContext};
use mizzen_pilot::server::source::proxy_from_node;
use mizzen_pilot::store::Snapshot;
use mizzen_pilot::translate::{cluster, listener, route};
use mizzen_xds::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use mizzen_xds::pb::envoy::config::route::v3::{
    RouteConfiguration, route as envoy_route, route_action, route_match,
};

mod common;
use common::{BOOKINFO, productpage_node};
use mizzen_api::testdata::istio_data;

fn snapshot(texts: &[&str]) -> Arc<Snapshot> {
    let mut objects = std::collections::BTreeMap::new();
    for text in texts {
        let loaded = Loader::new().load_str(text, None);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        for l in loaded.objects {
            objects.insert(l.object.key(), Arc::new(l.object));
        }
    }
    Arc::new(Snapshot::new(1, objects))
}

fn summary(push: &PushContext, proxy: &Proxy) -> String {
    let mut out = String::from("# clusters\n");
    let mut clusters: Vec<(String, String)> = cluster::clusters(push, proxy)
        .into_iter()
        .map(|c| {
            let kind = match c.cluster_discovery_type {
                Some(ClusterDiscoveryType::Type(t)) => {
                    format!("{:?}", DiscoveryType::try_from(t).unwrap())
                }
                _ => "custom".into(),
            };
            (c.name, kind)
        })
        .collect();
    clusters.sort();
    for (name, kind) in clusters {
        let _ = writeln!(out, "{name} {kind}");
    }
    out.push_str("# listeners\n");
    let mut listeners: Vec<String> = listener::listeners(push, proxy)
        .into_iter()
        .map(|l| l.name)
        .collect();
    listeners.sort();
    for l in listeners {
        let _ = writeln!(out, "{l}");
    }
    for rc in route::routes(push, proxy, &["9080".to_owned()]) {
        routes(&mut out, &rc);
    }
    out
}

fn routes(out: &mut String, rc: &RouteConfiguration) {
    let _ = writeln!(out, "# routes {}", rc.name);
    for vh in &rc.virtual_hosts {
        let _ = writeln!(out, "{} [{}]", vh.name, vh.domains.join(" "));
        for r in &vh.routes {
            let m = r.r#match.as_ref().unwrap();
            let path = match &m.path_specifier {
                Some(route_match::PathSpecifier::Prefix(p)) => format!("prefix {p}"),
                Some(route_match::PathSpecifier::Path(p)) => format!("path {p}"),
                Some(route_match::PathSpecifier::SafeRegex(r)) => format!("regex {}", r.regex),
                other => format!("{other:?}"),
            };
            let headers: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
            let action = match &r.action {
                Some(envoy_route::Action::Route(a)) => match &a.cluster_specifier {
                    Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
                    Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
                        .clusters
                        .iter()
                        .map(|c| format!("{}={}", c.name, c.weight.map_or(0, |w| w.value)))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => format!("{other:?}"),
                },
                Some(envoy_route::Action::Redirect(_)) => "redirect".into(),
                Some(envoy_route::Action::DirectResponse(d)) => format!("direct {}", d.status),
                other => format!("{other:?}"),
            };
            let mut filters: Vec<&str> = r
                .typed_per_filter_config
                .keys()
                .map(String::as_str)
                .collect();
            filters.sort();
            let _ = writeln!(
                out,
                "  {path}{}{} -> {action}{}",
                if headers.is_empty() {
                    String::new()
                } else {
                    format!(" headers {}", headers.join(","))
                },
                if r.name.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.name)
                },
                if filters.is_empty() {
                    String::new()
                } else {
                    format!(" +{}", filters.join("+"))
                },
            );
        }
    }
}

#[test]
fn bookinfo_networking_samples_match_their_goldens() {
    let Some(data) = istio_data() else { return };
    let networking = data.join("samples/bookinfo/networking");
    let rules = std::fs::read_to_string(networking.join("destination-rule-all.yaml")).unwrap();
    let proxy = proxy_from_node(&productpage_node()).unwrap();
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/bookinfo");
    let update = std::env::var_os("MIZZEN_UPDATE_GOLDEN").is_some();
    let mut samples: Vec<_> = std::fs::read_dir(&networking)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("virtual-service-")
        })
        .collect();
    samples.sort();
    let mut mismatches = Vec::new();
    for sample in &samples {
        let text = std::fs::read_to_string(sample).unwrap();
        let push = PushContext::new(
            snapshot(&[BOOKINFO, &rules, &text]),
            Arc::new(MeshConfig::default()),
        );
        let got = summary(&push, &proxy);
        let golden = golden_dir
            .join(sample.file_name().unwrap())
            .with_extension("txt");
        if update {
            std::fs::create_dir_all(&golden_dir).unwrap();
            std::fs::write(&golden, &got).unwrap();
        } else {
            let want = std::fs::read_to_string(&golden).unwrap_or_default();
            if want != got {
                mismatches.push(format!("{}:\n{got}", golden.display()));
            }
        }
    }
    assert!(samples.len() >= 10);
    assert!(
        mismatches.is_empty(),
        "differs from golden (MIZZEN_UPDATE_GOLDEN=1 rewrites):\n{}",
        mismatches.join("\n")
    );
}
