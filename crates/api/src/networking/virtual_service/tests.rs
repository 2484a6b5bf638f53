//! VirtualService validation, from Istio's documented behaviour and its webhook tests.

use crate::load::Loader;
use crate::validate::{Issue, Severity};

fn load(spec: &str) -> crate::Object {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: vs\n  namespace: default\nspec:\n{spec}"
    );
    let result = Loader::new().load_str(&yaml, None);
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    result.objects.into_iter().next().unwrap().object
}

fn issues(spec: &str) -> Vec<Issue> {
    load(spec).validate()
}

fn of(spec: &str, severity: Severity) -> Vec<String> {
    issues(spec)
        .iter()
        .filter(|i| i.severity == severity)
        .map(ToString::to_string)
        .collect()
}

fn errors(spec: &str) -> Vec<String> {
    of(spec, Severity::Error)
}

fn warnings(spec: &str) -> Vec<String> {
    of(spec, Severity::Warning)
}

fn assert_error(spec: &str, path: &str, message: &str) {
    let errs = errors(spec);
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{path}:")) && e.contains(message)),
        "expected {path}: {message} in {errs:?}\n{spec}"
    );
}

fn assert_warning(spec: &str, path: &str, message: &str) {
    let w = warnings(spec);
    assert!(
        w.iter()
            .any(|e| e.starts_with(&format!("{path}:")) && e.contains(message)),
        "expected warning {path}: {message} in {w:?}\n{spec}"
    );
}

fn assert_valid(spec: &str) {
    assert_eq!(errors(spec), Vec::<String>::new(), "{spec}");
}

/// A one-route HTTP VirtualService for `reviews` with `extra` added to the route.
fn http(extra: &str) -> String {
    format!(
        "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews}}\n{extra}"
    )
}

/// An HTTP VirtualService whose only route is `route` (indented as a list item's body).
fn route(route: &str) -> String {
    format!("  hosts: [reviews]\n  http:\n  - {route}\n")
}

#[test]
fn complete_virtual_service_is_valid_and_round_trips() {
    let spec = r#"  hosts: [reviews.prod.svc.cluster.local, "*.example.com"]
  gateways: [istio-system/ingress, mesh]
  exportTo: [".", other]
  http:
  - name: main
    match:
    - name: m1
      uri: {prefix: /api}
      scheme: {exact: https}
      method: {exact: GET}
      authority: {regex: "a.*"}
      headers: {end-user: {exact: jason}, x-present: {}}
      withoutHeaders: {x-debug: {regex: "*"}}
      queryParams: {q: {exact: "1"}}
      port: 8080
      sourceLabels: {app: productpage}
      gateways: [mesh]
      ignoreUriCase: true
      sourceNamespace: default
      statPrefix: api
    route:
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      weight: 75
      headers:
        request: {set: {x-a: "1"}, add: {x-b: "%HOSTNAME%"}, remove: [x-c]}
        response: {set: {x-d: "100%%"}}
    - destination: {host: reviews, subset: v3}
      weight: 25
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure,refused-stream,503,cancelled", retryRemoteLocalities: true, retryIgnorePreviousHosts: false, backoff: 25ms}
    fault:
      delay: {percentage: {value: 0.1}, fixedDelay: 5s}
      abort: {percentage: {value: 10}, grpcStatus: UNAVAILABLE}
    mirrors:
    - destination: {host: reviews, subset: v4}
      percentage: {value: 50}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {regex: "https://.*\\.example\\.com"}]
      allowMethods: [GET, POST, "*"]
      allowHeaders: [x-custom, "*"]
      exposeHeaders: [x-exposed]
      maxAge: 24h
      allowCredentials: false
      unmatchedPreflights: IGNORE
    headers:
      request: {set: {host: reviews.example.com}}
      response: {remove: [server]}
    rewrite: {uriRegexRewrite: {match: "^/api(/.*)", rewrite: "\\1"}}
  - name: redirect
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new, derivePort: FROM_REQUEST_PORT, scheme: https, redirectCode: 308}
  - name: direct
    match: [{uri: {exact: /health}}]
    directResponse: {status: 200, body: {string: ok}}
  - name: mirror
    match: [{uri: {prefix: /m}}]
    route: [{destination: {host: reviews}}]
    mirror: {host: mirror.default.svc.cluster.local}
    mirrorPercentage: {value: 12.5}
  tls:
  - match:
    - sniHosts: [api.example.com]
      destinationSubnets: [10.0.0.0/8]
      port: 443
    route:
    - destination: {host: api.default.svc.cluster.local, port: {number: 443}}
  tcp:
  - match: [{port: 27017, destinationSubnets: [10.1.0.1], sourceLabels: {app: a}}]
    route:
    - destination: {host: mongo, port: {number: 5555}}
      weight: 100
"#;
    assert_valid(spec);
    let object = load(spec);
    let text = serde_yaml_ng::to_string(&object).unwrap();
    let again = Loader::new().load_str(&text, None);
    assert_eq!(again.objects[0].object, object, "{text}");
}

#[test]
fn top_level_rules() {
    assert_error(
        "  hosts: [reviews]\n",
        "spec",
        "http, tcp or tls must be provided in virtual service",
    );
    assert_error(
        &format!(
            "{}  - route: [{{destination: {{host: a}}}}]\n",
            http("").replace("[reviews]", "[reviews, reviews]")
        ),
        "spec.hosts",
        "duplicate hosts in virtual service: reviews & reviews",
    );
    assert_error(
        &http("")
            .replace("[reviews]", "[\"*.foo.com\", \"*.com\"]")
            .replace("gateways", "x"),
        "spec.hosts",
        "duplicate hosts",
    );
    assert_error(
        &http("").replace("[reviews]", "[\"*\"]"),
        "spec.hosts[0]",
        "wildcard host * is not allowed for virtual services bound to the mesh gateway",
    );
    assert_valid(&format!(
        "  gateways: [ns/gw]\n{}",
        http("").replace("[reviews]", "[\"*\"]")
    ));
    assert_valid(&http("").replace("[reviews]", "[10.1.2.3]"));
    assert_error(
        &http("").replace("[reviews]", "[\"foo.*.com\"]"),
        "spec.hosts[0]",
        "invalid",
    );
    assert_error(
        &format!("  exportTo: [\"~\"]\n{}", http("")),
        "spec.exportTo",
        "exportTo ~ (none) is not allowed",
    );
    assert_error(
        &format!("  exportTo: [\".\", default]\n{}", http("")),
        "spec.exportTo",
        ". and current namespace default",
    );
    assert_error(
        &format!("  exportTo: [\"*\", a]\n{}", http("")),
        "spec.exportTo",
        "cannot have both public",
    );
}

#[test]
fn gateway_names() {
    assert_error(
        &format!("  gateways: [\"/gw\"]\n{}", http("")),
        "spec.gateways[0]",
        "config namespace and gateway name cannot be empty",
    );
    assert_error(
        &format!("  gateways: [\"bad_ns/gw\"]\n{}", http("")),
        "spec.gateways[0]",
        "invalid value for namespace: \"bad_ns\"",
    );
    assert_error(
        &format!("  gateways: [\"ns/gw.x\"]\n{}", http("")),
        "spec.gateways[0]",
        "invalid value for gateway name: \"gw.x\"",
    );
    assert_error(
        &format!("  gateways: [\"gw_1\"]\n{}", http("")),
        "spec.gateways[0]",
        "invalid",
    );
    assert_warning(
        &format!("  gateways: [gw.ns]\n{}", http("")),
        "spec.gateways[0]",
        "prefer the <namespace>/<name> format: \"ns/gw\"",
    );
    assert_error(
        &http("    match: [{gateways: [\"a/b/c\"]}]\n"),
        "spec.http[0].match[0].gateways[0]",
        "invalid value for gateway name",
    );
}

#[test]
fn delegates() {
    let root =
        "  hosts: [reviews]\n  http:\n  - name: root\n    delegate: {name: d, namespace: ns}\n";
    assert_valid(root);
    assert_error(
        &format!("{root}    route: [{{destination: {{host: a}}}}]\n"),
        "spec.http[0].route",
        "root HTTP route root must not specify route",
    );
    assert_error(
        &format!("{root}    redirect: {{uri: /x}}\n"),
        "spec.http[0].redirect",
        "root HTTP route root must not specify redirect",
    );
    let delegate = "  http:\n  - route: [{destination: {host: a}}]\n";
    assert_valid(delegate);
    assert_error(
        &format!("  gateways: [ns/gw]\n{delegate}"),
        "spec.gateways",
        "delegate virtual service must have no gateways specified",
    );
    assert_error(
        &format!("{delegate}  tcp:\n  - route: [{{destination: {{host: a}}}}]\n"),
        "spec.tcp",
        "no tcp route specified",
    );
    assert_error(
        "  http:\n  - delegate: {name: x}\n    route: [{destination: {host: a}}]\n",
        "spec.http[0].delegate",
        "delegate HTTP route cannot contain delegate",
    );
}

#[test]
fn route_conflicts() {
    assert_error(
        &route("name: x"),
        "spec.http[0]",
        "HTTP route, redirect or direct_response is required",
    );
    assert_error(
        &http("    redirect: {uri: /x}\n"),
        "spec.http[0]",
        "HTTP route cannot contain both route and redirect",
    );
    assert_error(
        &route("redirect: {uri: /x}\n    fault: {abort: {httpStatus: 500}}"),
        "spec.http[0]",
        "both fault and redirect",
    );
    assert_error(
        &route("redirect: {uri: /x}\n    rewrite: {uri: /y}"),
        "spec.http[0]",
        "both rewrite and redirect",
    );
    assert_error(
        &route("redirect: {uri: /x}\n    directResponse: {status: 200}"),
        "spec.http[0]",
        "both direct_response and redirect",
    );
    assert_error(
        &http("    directResponse: {status: 200}\n"),
        "spec.http[0]",
        "both route and direct_response",
    );
    assert_error(
        &route("directResponse: {status: 200}\n    rewrite: {uri: /y}"),
        "spec.http[0]",
        "both rewrite and direct_response",
    );
    assert_error(
        &http("    mirror: {host: a}\n    mirrors: [{destination: {host: b}}]\n"),
        "spec.http[0]",
        "HTTP route cannot contain both mirror and mirrors",
    );
}

#[test]
fn destinations_and_weights() {
    assert_error(
        &route("route: [{destination: {host: \"*\"}}]"),
        "spec.http[0].route[0].destination.host",
        "invalid destination host *",
    );
    assert_error(
        &route("route: [{weight: 100}]"),
        "spec.http[0].route[0].destination",
        "Required value",
    );
    assert_error(
        &route("route: [{destination: {subset: v1}}]"),
        "spec.http[0].route[0].destination.host",
        "Required value",
    );
    assert_error(
        &route("route: [{destination: {host: a, subset: v_1}}]"),
        "spec.http[0].route[0].destination.subset",
        "subset name is invalid: v_1",
    );
    assert_error(
        &route("route: [{destination: {host: a, port: {}}}]"),
        "spec.http[0].route[0].destination.port.number",
        "65535",
    );
    assert_error(
        &route("route: [{destination: {host: a}, weight: -1}]"),
        "spec.http[0].route[0].weight",
        "weight -1 < 0",
    );
    assert_error(
        &route("route: [{destination: {host: a}}, {destination: {host: b}}]"),
        "spec.http[0].route",
        "total destination weight = 0",
    );
    assert_valid(&route(
        "route: [{destination: {host: a}, weight: 0}, {destination: {host: b}, weight: 100}]",
    ));
    assert_valid(&route("route: [{destination: {host: a, subset: V1}}]"));
}

#[test]
fn matches() {
    let m = |m: &str| http(&format!("    match: [{{{m}}}]\n"));
    assert_error(
        &m("uri: {regex: \"[\"}"),
        "spec.http[0].match[0].uri",
        "is not a valid regex",
    );
    assert_error(
        &m("uri: {regex: \"\"}"),
        "spec.http[0].match[0].uri",
        "\"uri\": regex string match should not be empty",
    );
    assert_valid(&m("uri: {prefix: \"\"}"));
    assert_error(
        &m("method: {prefix: \"\"}"),
        "spec.http[0].match[0].method",
        "\"method\": prefix string match should not be empty",
    );
    assert_error(
        &m("headers: {x: {prefix: \"\"}}"),
        "spec.http[0].match[0].headers[x]",
        "\"headers\": prefix string match should not be empty",
    );
    assert_error(
        &m("headers: {\"\": {exact: a}}"),
        "spec.http[0].match[0].headers[]",
        "header name cannot be empty",
    );
    assert_error(
        &m("headers: {\"bad header\": {exact: a}}"),
        "spec.http[0].match[0].headers[bad header]",
        "is not a valid header name",
    );
    assert_valid(&m("headers: {\":authority\": {exact: a}}"));
    assert_error(
        &m("headers: {X-User: {exact: a}}"),
        "spec.http[0].match[0].headers[X-User]",
        "must be lowercase",
    );
    assert_error(
        &m("queryParams: {q: {regex: \"(\"}}"),
        "spec.http[0].match[0].queryParams[q]",
        "not a valid regex",
    );
    assert_error(
        &m(&format!("uri: {{regex: \"{}\"}}", "a".repeat(1025))),
        "spec.http[0].match[0].uri",
        "regex is too large, max length allowed is 1024",
    );
    assert_error(&m("port: 70000"), "spec.http[0].match[0].port", "65535");
    assert_error(
        &m("sourceLabels: {\"bad key!\": a}"),
        "spec.http[0].match[0].sourceLabels[bad key!]",
        "invalid tag key",
    );
    assert_error(
        &m("sourceNamespace: Bad_Ns"),
        "spec.http[0].match[0].sourceNamespace",
        "sourceNamespace match Bad_Ns is invalid",
    );
    let load = Loader::new().load_str(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  http:\n  - match: [{uri: {exact: a, prefix: b}}]\n",
        None,
    );
    assert!(
        load.errors[0]
            .to_string()
            .contains("only one of exact, prefix or regex")
    );
}

#[test]
fn jwt_claim_routing_needs_a_gateway() {
    let m = "    match: [{headers: {\"@request.auth.claims.group\": {exact: admin}}}]\n";
    assert_error(
        &http(m),
        "spec.http[0].match[0].headers[@request.auth.claims.group]",
        "JWT claim based routing (key: @request.auth.claims.group) is only supported for gateway, found no gateways: []",
    );
    assert_valid(&format!("  gateways: [istio-system/gw]\n{}", http(m)));
    assert_error(
        &format!("  gateways: [mesh]\n{}", http(m)),
        "spec.http[0].match[0].headers[@request.auth.claims.group]",
        "found no gateways: [mesh]",
    );
}

#[test]
fn header_operations() {
    let h = |h: &str| http(&format!("    headers: {{{h}}}\n"));
    assert_error(
        &h("request: {set: {\":path\": /x}}"),
        "spec.http[0].headers.request.set[:path]",
        "header cannot have \":\" prefix",
    );
    assert_valid(&h("request: {set: {\":authority\": a.com}}"));
    assert_error(
        &h("request: {remove: [host]}"),
        "spec.http[0].headers.request.remove[0]",
        "cannot set Host header",
    );
    assert_error(
        &h("response: {add: {host: a}}"),
        "spec.http[0].headers.response.add[host]",
        "cannot set Host header",
    );
    assert_error(
        &h("response: {set: {\"\": a}}"),
        "spec.http[0].headers.response.set[]",
        "header name cannot be empty",
    );
    assert_error(
        &h("request: {add: {x-a: \"50%\"}}"),
        "spec.http[0].headers.request.add[x-a]",
        "Un-escaped %",
    );
    assert_error(
        &h("request: {add: {x-a: \"%START_TIME\"}}"),
        "spec.http[0].headers.request.add[x-a]",
        "Un-terminated variable expression",
    );
    assert_error(
        &h("request: {add: {x-a: \"a\\x01b\"}}"),
        "spec.http[0].headers.request.add[x-a]",
        "invalid characters",
    );
    assert_valid(&h(
        "request: {add: {x-a: \"%REQ(x-b)%\", x-c: \"%UPSTREAM_METADATA([\\\"istio\\\", \\\"x\\\"])%\"}}",
    ));
    assert_warning(
        &h("response: {set: {X-Upper: a}}"),
        "spec.http[0].headers.response.set[X-Upper]",
        "should be lowercase",
    );
    assert_error(
        &http("    rewrite: {authority: a.com}\n    headers: {request: {set: {host: b.com}}}\n"),
        "spec.http[0].headers.request",
        "authority header cannot be set multiple times: have \"a.com\", attempting to set \"b.com\"",
    );
    assert_error(
        "  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n      headers: {request: {set: {\":method\": GET}}}\n",
        "spec.http[0].route[0].headers.request.set[:method]",
        "header cannot have",
    );
}

#[test]
fn retries() {
    let r = |r: &str| http(&format!("    retries: {{{r}}}\n"));
    assert_valid(&r("attempts: 0"));
    assert_error(
        &r("attempts: -1"),
        "spec.http[0].retries.attempts",
        "attempts cannot be negative",
    );
    assert_error(
        &r("attempts: 0, retryOn: 5xx"),
        "spec.http[0].retries",
        "http retry policy configured when attempts are set to 0 (disabled)",
    );
    assert_error(
        &r("attempts: 3, perTryTimeout: 0.5ms"),
        "spec.http[0].retries.perTryTimeout",
        "must be a valid duration greater than 1ms",
    );
    assert_error(
        &r("attempts: 3, perTryTimeout: 1500us"),
        "spec.http[0].retries.perTryTimeout",
        "only durations to ms precision are supported",
    );
    assert_error(
        &r("attempts: 3, retryOn: \"5xx,bogus\""),
        "spec.http[0].retries.retryOn",
        "\"bogus\" is not a valid retryOn policy",
    );
    assert_error(
        &r("attempts: 3, retryOn: \"999\""),
        "spec.http[0].retries.retryOn",
        "\"999\" is not a valid retryOn policy",
    );
    assert_valid(&r(
        "attempts: 3, retryOn: \"retriable-status-codes,503,429,resource-exhausted,deadline-exceeded,internal,reset-before-request\"",
    ));
    assert_error(
        &r("attempts: 3, backoff: 0s"),
        "spec.http[0].retries.backoff",
        "greater than 1ms",
    );
}

#[test]
fn timeouts() {
    assert_valid(&http("    timeout: 1ms\n"));
    assert_error(
        &http("    timeout: 0s\n"),
        "spec.http[0].timeout",
        "must be a valid duration greater than 1ms",
    );
}

#[test]
fn fault_injection() {
    let f = |f: &str| http(&format!("    fault: {{{f}}}\n"));
    assert_error(
        &f(""),
        "spec.http[0].fault",
        "HTTP fault injection must have an abort and/or a delay",
    );
    assert_error(
        &f("abort: {httpStatus: 700}"),
        "spec.http[0].fault.abort.httpStatus",
        "HTTP status 700 is not in range 200-599",
    );
    assert_error(
        &f("abort: {httpStatus: 0}"),
        "spec.http[0].fault.abort.httpStatus",
        "HTTP status 0",
    );
    assert_error(
        &f("abort: {grpcStatus: BOGUS}"),
        "spec.http[0].fault.abort.grpcStatus",
        "gRPC status \"BOGUS\" is not supported",
    );
    assert_error(
        &f("abort: {http2Error: x}"),
        "spec.http[0].fault.abort.http2Error",
        "HTTP/2 abort fault injection not supported yet",
    );
    assert_error(
        &f("abort: {httpStatus: 500, grpcStatus: INTERNAL}"),
        "spec.http[0].fault.abort",
        "only one of httpStatus, grpcStatus or http2Error",
    );
    assert_warning(
        &f("abort: {percentage: {value: 1}}"),
        "spec.http[0].fault.abort",
        "abort configured, but error type not set",
    );
    assert_error(
        &f("abort: {httpStatus: 500, percentage: {value: 101}}"),
        "spec.http[0].fault.abort.percentage",
        "percentage 101 is neither 0.0, nor in range [0.0001, 100.0]",
    );
    assert_error(
        &f("abort: {httpStatus: 500, percentage: {value: 0.00001}}"),
        "spec.http[0].fault.abort.percentage",
        "neither 0.0",
    );
    assert_error(
        &f("delay: {fixedDelay: 0s}"),
        "spec.http[0].fault.delay.fixedDelay",
        "greater than 1ms",
    );
    assert_error(
        &f("delay: {exponentialDelay: 1s}"),
        "spec.http[0].fault.delay.exponentialDelay",
        "exponentialDelay not supported yet",
    );
    assert_error(
        &f("delay: {fixedDelay: 1s, exponentialDelay: 1s}"),
        "spec.http[0].fault.delay",
        "only one of fixedDelay or exponentialDelay",
    );
    assert_error(
        &f("delay: {fixedDelay: 1s, percentage: {value: -1}}"),
        "spec.http[0].fault.delay.percentage",
        "neither 0.0",
    );
    assert_warning(
        &f("delay: {fixedDelay: 1s, percent: 50}"),
        "spec.http[0].fault.delay.percent",
        "deprecated",
    );
}

#[test]
fn mirrors() {
    assert_error(
        &http("    mirror: {host: \"*\"}\n"),
        "spec.http[0].mirror.host",
        "invalid destination host *",
    );
    assert_error(
        &http("    mirror: {host: a}\n    mirrorPercentage: {value: 101}\n"),
        "spec.http[0].mirrorPercentage",
        "mirror_percentage must have a max value of 100 (it has 101.000000)",
    );
    assert_error(
        &http("    mirror: {host: a}\n    mirrorPercentage: {value: -1}\n"),
        "spec.http[0].mirrorPercentage",
        "mirror_percentage must have a min value of 0",
    );
    assert_error(
        &http("    mirror: {host: a}\n    mirror_percent: 101\n"),
        "spec.http[0].mirrorPercent",
        "mirror_percent must have a max value of 100 (it has 101)",
    );
    assert_warning(
        &http("    mirror: {host: a}\n    mirrorPercent: 5\n"),
        "spec.http[0].mirrorPercent",
        "using deprecated setting \"mirrorPercent\"",
    );
    assert_error(
        &http("    mirrors: [{percentage: {value: 5}}]\n"),
        "spec.http[0].mirrors[0].destination",
        "destination is required for mirrors",
    );
    assert_error(
        &http("    mirrors: [{destination: {host: a}, percentage: {value: 200}}]\n"),
        "spec.http[0].mirrors[0].percentage",
        "mirror percentage must have a max value of 100",
    );
    assert_error(
        &http("    mirrors: [{destination: {host: a, subset: \"-x\"}}]\n"),
        "spec.http[0].mirrors[0].destination.subset",
        "subset name is invalid",
    );
}

#[test]
fn rewrites() {
    let r = |r: &str| http(&format!("    rewrite: {{{r}}}\n"));
    assert_valid(&r("uri: /v1"));
    assert_valid(&r("authority: a.com"));
    assert_error(
        &r(""),
        "spec.http[0].rewrite",
        "rewrite must specify at least one of URI, UriRegexRewrite, or authority",
    );
    assert_error(
        &r("uri: /a, uriRegexRewrite: {match: a, rewrite: b}"),
        "spec.http[0].rewrite",
        "rewrite may only contain one of URI or UriRegexRewrite",
    );
    assert_error(
        &r("uriRegexRewrite: {match: a}"),
        "spec.http[0].rewrite.uriRegexRewrite",
        "UriRegexRewrite requires both Rewrite and Match fields to be specified",
    );
    assert_error(
        &r("uriRegexRewrite: {match: \"(\", rewrite: b}"),
        "spec.http[0].rewrite.uriRegexRewrite.match",
        "not a valid regex",
    );
}

#[test]
fn redirects() {
    let r = |r: &str| route(&format!("redirect: {{{r}}}"));
    assert_valid(&r("authority: a.com, port: 8443"));
    assert_valid(&r("derivePort: FROM_PROTOCOL_DEFAULT"));
    assert_error(
        &r(""),
        "spec.http[0].redirect",
        "redirect must specify URI, authority, scheme, or port",
    );
    assert_error(
        &r("uri: /a, redirectCode: 200"),
        "spec.http[0].redirect.redirectCode",
        "200 is not a valid redirect code, must be 3xx",
    );
    assert_error(
        &r("scheme: ftp"),
        "spec.http[0].redirect.scheme",
        "invalid redirect scheme, must be \"http\" or \"https\"",
    );
    assert_error(&r("port: 70000"), "spec.http[0].redirect.port", "65535");
    assert_error(
        &r("port: 80, derivePort: FROM_REQUEST_PORT"),
        "spec.http[0].redirect",
        "only one of port or derivePort",
    );
}

#[test]
fn direct_responses() {
    let d = |d: &str| route(&format!("directResponse: {{{d}}}"));
    assert_valid(&d("status: 503, body: {bytes: aGVsbG8=}"));
    assert_error(
        &d("body: {string: x}"),
        "spec.http[0].directResponse.status",
        "HTTP status 0 is not in range 200-599",
    );
    assert_error(
        &d("status: 199"),
        "spec.http[0].directResponse.status",
        "HTTP status 199",
    );
    assert_error(
        &d("status: 200, body: {bytes: \"not base64!\"}"),
        "spec.http[0].directResponse.body.bytes",
        "illegal base64 data",
    );
    let big = format!("status: 200, body: {{string: {}}}", "a".repeat(200 * 1024));
    assert_warning(
        &d(&big),
        "spec.http[0].directResponse.body",
        "large direct_responses may impact control plane performance",
    );
    let huge = format!(
        "status: 200, body: {{string: {}}}",
        "a".repeat(1024 * 1024 + 1)
    );
    assert_error(
        &d(&huge),
        "spec.http[0].directResponse.body",
        "must be less than 1MB",
    );
}

#[test]
fn cors_policies() {
    let c = |c: &str| http(&format!("    corsPolicy: {{{c}}}\n"));
    assert_error(
        &c("allowOrigins: [{}]"),
        "spec.http[0].corsPolicy.allowOrigins[0]",
        "'' is not a valid match type for CORS allow origins",
    );
    assert_error(
        &c("allowOrigins: [{exact: \"\"}]"),
        "spec.http[0].corsPolicy.allowOrigins[0]",
        "not a valid match type",
    );
    assert_error(
        &c("allowOrigins: [{regex: \"(\"}]"),
        "spec.http[0].corsPolicy.allowOrigins[0]",
        "not a valid regex",
    );
    assert_error(
        &c("allowMethods: [get]"),
        "spec.http[0].corsPolicy.allowMethods[0]",
        "\"get\" is not a supported HTTP method",
    );
    assert_error(
        &c("allowHeaders: [\"a b\"]"),
        "spec.http[0].corsPolicy.allowHeaders[0]",
        "header name a b is not a valid header name",
    );
    assert_error(
        &c("exposeHeaders: [\"\"]"),
        "spec.http[0].corsPolicy.exposeHeaders[0]",
        "header name cannot be empty",
    );
    assert_error(
        &c("maxAge: 1.5s"),
        "spec.http[0].corsPolicy.maxAge",
        "max_age duration is accurate only to seconds precision",
    );
    assert_error(
        &c("maxAge: 0s"),
        "spec.http[0].corsPolicy.maxAge",
        "greater than 1ms",
    );
    assert_warning(
        &c("allowOrigin: [a.com]"),
        "spec.http[0].corsPolicy.allowOrigin",
        "deprecated",
    );
}

#[test]
fn tls_routes() {
    let tls = |hosts: &str, sni: &str, gateways: &str| {
        format!(
            "  hosts: [{hosts}]\n{gateways}  tls:\n  - match: [{{sniHosts: [{sni}]}}]\n    route: [{{destination: {{host: a}}}}]\n"
        )
    };
    assert_valid(&tls(
        "\"*.example.com\"",
        "a.example.com, \"*.b.example.com\"",
        "",
    ));
    assert_error(
        &tls("a.example.com", "b.example.com", ""),
        "spec.tls[0].match[0].sniHosts[0]",
        "SNI host \"b.example.com\" is not a compatible subset of any of the virtual service hosts: [a.example.com]",
    );
    assert_error(
        &tls("a.example.com", "\"*.example.com\"", ""),
        "spec.tls[0].match[0].sniHosts[0]",
        "not a compatible subset",
    );
    assert_warning(
        &tls("a.example.com", "10.0.0.1", ""),
        "spec.tls[0].match[0].sniHosts[0]",
        "using an IP address (\"10.0.0.1\") goes against SNI spec",
    );
    assert_valid(&tls(
        "\"*.global\"",
        "outbound_.80_._.e2e.foo.global",
        "  gateways: [ns/gw]\n",
    ));
    assert_error(
        &tls(
            "\"*\"",
            "outbound_.x_._.foo.global",
            "  gateways: [ns/gw]\n",
        ),
        "spec.tls[0].match[0].sniHosts[0]",
        "should follow outbound_.<PORT>_._.<HOSTNAME> format",
    );
    assert_error(
        "  hosts: [a.com]\n  tls:\n  - route: [{destination: {host: a}}]\n",
        "spec.tls[0].match",
        "TLS route must have at least one match condition",
    );
    assert_error(
        "  hosts: [a.com]\n  tls:\n  - match: [{port: 443}]\n",
        "spec.tls[0].match[0].sniHosts",
        "TLS match must have at least one SNI host",
    );
    assert_error(
        "  hosts: [a.com]\n  tls:\n  - match: [{sniHosts: [a.com]}]\n",
        "spec.tls[0].route",
        "TLS route is required",
    );
    assert_error(
        "  hosts: [a.com]\n  tls:\n  - match: [{sniHosts: [a.com], destinationSubnets: [10.0.0.0/33]}]\n    route: [{destination: {host: a}}]\n",
        "spec.tls[0].match[0].destinationSubnets[0]",
        "not a valid IP address or CIDR block",
    );
}

#[test]
fn tcp_routes() {
    assert_error(
        "  hosts: [a]\n  tcp:\n  - match: [{port: 1}]\n",
        "spec.tcp[0].route",
        "TCP route is required",
    );
    assert_error(
        "  hosts: [a]\n  tcp:\n  - match: [{port: 70000, destinationSubnets: [bogus]}]\n    route: [{destination: {host: a}}]\n",
        "spec.tcp[0].match[0].port",
        "65535",
    );
    assert_error(
        "  hosts: [a]\n  tcp:\n  - match: [{destinationSubnets: [bogus]}]\n    route: [{destination: {host: a}}]\n",
        "spec.tcp[0].match[0].destinationSubnets[0]",
        "not a valid IP",
    );
    assert_error(
        "  hosts: [a]\n  tcp:\n  - route: [{destination: {host: a}, weight: 0}, {destination: {host: b}}]\n",
        "spec.tcp[0].route",
        "total destination weight = 0",
    );
}

#[test]
fn unreachable_rules_warn() {
    let spec = "  hosts: [a]\n  http:\n  - match: [{uri: {exact: /a}, name: first}]\n    route: [{destination: {host: a}}]\n  - name: dup\n    match: [{uri: {exact: /a}}]\n    route: [{destination: {host: a}}]\n  - route: [{destination: {host: a}}]\n  - route: [{destination: {host: a}}]\n  - match: [{uri: {exact: /z}}]\n    route: [{destination: {host: a}}]\n";
    let w = warnings(spec);
    assert_eq!(
        w,
        [
            "spec.http[1]: virtualService rule \"dup\" match #0 is not used (duplicate/overlapping match in rule #0)",
            "spec.http[1]: virtualService rule \"dup\" not used (all matches used by prior rules)",
            "spec.http[3]: virtualService rule #3 not used (only the last rule can have no matches)",
            "spec.http[4]: virtualService rule #4 not used (route without matches defined before)",
        ]
    );
    let overlap = "  hosts: [a]\n  http:\n  - match: [{uri: {prefix: /debug}}]\n    route: [{destination: {host: a}}]\n  - match: [{uri: {prefix: /debugs}}]\n    route: [{destination: {host: a}}]\n";
    assert_warning(
        overlap,
        "spec.http[1]",
        "virtualService rule #1 match #0 of prefix /debugs is not used (duplicate/overlapping match in rule #0 of prefix /debug on #0)",
    );
    let tcp = "  hosts: [a]\n  tcp:\n  - match: [{port: 1}]\n    route: [{destination: {host: a}}]\n  - match: [{port: 1}]\n    route: [{destination: {host: a}}]\n";
    assert_warning(
        tcp,
        "spec.tcp[1]",
        "virtualService rule #1 not used (all matches used by prior rules)",
    );
}

#[test]
fn schema_level_mistakes_are_load_errors() {
    for (spec, needle) in [
        ("  hosts: [a]\n  http:\n  - rout: []\n", "unknown field"),
        (
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}, weight: x}]\n",
            "invalid type",
        ),
        (
            "  hosts: [a]\n  http:\n  - corsPolicy: {unmatchedPreflights: DROP}\n",
            "Unsupported value: \"DROP\"",
        ),
        (
            "  hosts: [a]\n  http:\n  - directResponse: {status: 200, body: {string: a, bytes: b}}\n",
            "only one of string or bytes",
        ),
        (
            "  hosts: [a]\n  http:\n  - timeout: 5\n",
            "invalid duration",
        ),
    ] {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: a}}\nspec:\n{spec}"
        );
        let result = Loader::new().load_str(&yaml, None);
        assert!(
            result.errors.iter().any(|e| e.to_string().contains(needle)),
            "{needle}: {:?}",
            result.errors
        );
    }
}

#[test]
fn cases_from_istio_webhook_table() {
    let sni = "outbound_.15010_._.istiod.istio-system.svc.cluster.local";
    assert_valid(&format!(
        "  hosts: [{sni}]\n  gateways: [ns1/gateway]\n  tls:\n  - match: [{{sniHosts: [{sni}]}}]\n    route: [{{destination: {{host: istio.istio-system.svc.cluster.local}}}}]\n"
    ));
    let exact_after_prefix = "  hosts: [foo.bar]\n  http:\n  - match: [{uri: {prefix: /}}, {uri: {exact: /}, method: {exact: GET}}]\n    route: [{destination: {host: foo.baz}}]\n";
    assert_eq!(warnings(exact_after_prefix), Vec::<String>::new());
    assert_error(
        &http("").replace("[reviews]", "[\"foo.ba!r\"]"),
        "spec.hosts[0]",
        "invalid",
    );
    assert_error(
        &format!("  gateways: [\"ns1/*\"]\n{}", http("")),
        "spec.gateways[0]",
        "invalid value for gateway name: \"*\"",
    );
    assert_error(
        &format!("  gateways: [\"*/gateway\"]\n{}", http("")),
        "spec.gateways[0]",
        "invalid value for namespace: \"*\"",
    );
    assert_error(
        &format!("  gateways: [\"b@dgateway\"]\n{}", http("")),
        "spec.gateways[0]",
        "invalid",
    );
}
