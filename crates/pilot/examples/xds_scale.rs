//! The xDS scale simulator behind `bench/xds-scale.sh`: opens N ADS streams as Bookinfo-
//! style sidecars against a running pilot, waits until every one holds its config, then
//! (when told the config changed) measures how long each takes to receive and ACK the
//! new routes.
//!
//! Usage: xds_scale XDS_ADDR PROXIES SERVICES (the services `bench/xds-scale.sh` writes:
//! `svcN.default`, port 9080, whose clusters each stream subscribes to over EDS, as
//! Envoy does).
//! It prints `ready` once every stream has acked, waits for a line on stdin (the script
//! writes the VirtualService change, then that line), and prints convergence percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};
use mizzen_xds::{AdsClient, ClientOptions, ResourceType, Subscription};

fn node(i: usize) -> Node {
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    let ip = format!("127.1.{}.{}", i / 250, i % 250 + 1);
    let fields = [
        ("NAMESPACE", "default".to_owned()),
        ("INSTANCE_IPS", ip.clone()),
        ("INTERCEPTION_MODE", "REDIRECT".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), text(&v)))
    .collect();
    Node {
        id: format!("sidecar~{ip}~client-{i}.default~default.svc.cluster.local"),
        metadata: Some(Struct { fields }),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, proxies, services] = &args[..] else {
        eprintln!("usage: xds_scale XDS_ADDR PROXIES SERVICES");
        std::process::exit(2);
    };
    let proxies: usize = proxies.parse().expect("PROXIES is a number");
    let services: usize = services.parse().expect("SERVICES is a number");
    let clusters = Subscription::names(
        (0..services).map(|i| format!("outbound|9080||svc{i}.default.svc.cluster.local")),
    );
    let mut clients = Vec::with_capacity(proxies);
    for i in 0..proxies {
        let mut options = ClientOptions::new(format!("http://{addr}"), node(i));
        options
            .subscriptions
            .insert(ResourceType::Route, Subscription::names(["9080"]));
        options
            .subscriptions
            .insert(ResourceType::Endpoint, clusters.clone());
        clients.push(AdsClient::start(options, |_, _| Ok(())));
    }
    let started = Instant::now();
    let mut initial = Vec::with_capacity(proxies);
    for c in &clients {
        let state = tokio::time::timeout(
            Duration::from_secs(600),
            c.wait_until(|s| {
                [
                    ResourceType::Cluster,
                    ResourceType::Endpoint,
                    ResourceType::Listener,
                    ResourceType::Route,
                ]
                .iter()
                .all(|t| s.version(*t).is_some())
            }),
        )
        .await
        .expect("every stream gets its config");
        initial.push(state.version(ResourceType::Route).unwrap().to_owned());
    }
    println!(
        "ready: {proxies} streams acked their initial config in {:.2}s",
        started.elapsed().as_secs_f64()
    );

    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    tokio::io::AsyncBufReadExt::read_line(&mut stdin, &mut line)
        .await
        .expect("the script says when the config changed");
    let changed_at = Instant::now();
    let clients = Arc::new(clients);
    let mut waits = Vec::with_capacity(proxies);
    for (i, before) in initial.into_iter().enumerate() {
        let clients = clients.clone();
        waits.push(tokio::spawn(async move {
            clients[i]
                .wait_until(|s| s.version(ResourceType::Route).is_some_and(|v| v != before))
                .await;
            changed_at.elapsed()
        }));
    }
    let mut times = Vec::with_capacity(proxies);
    for w in waits {
        times.push(
            tokio::time::timeout(Duration::from_secs(600), w)
                .await
                .expect("converges")
                .unwrap(),
        );
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "converged: {} streams; p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        times.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3
    );
}
