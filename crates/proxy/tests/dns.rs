//! DNS clusters through the proxy: a STRICT_DNS cluster's name is resolved before the
//! proxy counts as ready, and requests go to the addresses it resolved to.

mod common;

use common::*;

#[tokio::test]
async fn a_strict_dns_cluster_of_localhost_serves_once_resolved() {
    let web = backend("web").await;
    let cluster = format!(
        "- name: web\n  type: STRICT_DNS\n  dns_lookup_family: V4_ONLY\n  connect_timeout: 1s\n  \
         load_assignment:\n    cluster_name: web\n    endpoints: [{{lb_endpoints: [{{endpoint: \
         {{address: {{socket_address: {{address: localhost, port_value: {}}}}}}}}}]}}]\n",
        web.port()
    );
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: web, auto_host_rewrite: true}}]
"#,
        &cluster,
    );
    let proxy = proxy(&yaml).await;
    proxy.ready().await;
    let addr = proxy.listener_addr("http").await;
    for _ in 0..3 {
        let seen = send(addr, get("x", "/")).await.seen();
        assert_eq!(seen.backend, "web");
        // The resolved endpoints carry the DNS name, which auto_host_rewrite sends.
        assert_eq!(seen.headers["host"], "localhost");
    }
}
