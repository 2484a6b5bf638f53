#!/usr/bin/env python3
"""What Istio's telemetry costs Mizzen's proxy: the same outbound-sidecar bootstrap with

  - nothing: no telemetry filters, no access log;
  - metrics: `istio.metadata_exchange` and `istio.stats` as pilot puts them on a sidecar's
    outbound chain, with the node metadata of a real workload and a backend that answers
    with a peer's `x-envoy-peer-metadata` (as the server's sidecar does), so every label
    is filled in as in a mesh;
  - access log: Istio's default text format (pilot's `ISTIO_TEXT_FORMAT`, read from its
    source) to a file;
  - both.

Wall clock: wrk (HTTP/1.1, 64 connections) for SECONDS per run, the variants
interleaved in each of RUNS rounds (each round starting with the next one), the proxy
alone on CPU 0 with `--concurrency 1`, nginx and wrk on CPU 1. Reported: requests/s per
run, the median ratio to "nothing", and the proxy's CPU seconds (user + system) per
1,000 requests.

Load-independent: callgrind instructions per request of each variant (REQUESTS
requests over 10 connections after a warm-up, minus an idle window as long, as
bench/instructions.py measures them).

Usage: bench/observability.sh [SECONDS] [RUNS] [REQUESTS]   (defaults 10, 3, 20000)
       MIZZEN_BIN=path/to/mizzen bench/observability.sh   (measure that binary, no build)
       MIZZEN_PROFILES=DIR ...   (keep each variant's callgrind dump as
           DIR/callgrind-VARIANT.out, for callgrind_annotate)
Needs: nginx, wrk, h2load (nghttp2-client), valgrind, taskset (util-linux).
"""
import base64
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions as base  # noqa: E402  (its helpers, work directory and binary)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
REQUESTS = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
WARMUP = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")

VARIANTS = [
    ("nothing", False, False),
    ("metrics", True, False),
    ("access log", False, True),
    ("both", True, True),
]
CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"


def pb_varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_field(number, payload):
    """A length-delimited protobuf field."""
    return pb_varint(number << 3 | 2) + pb_varint(len(payload)) + payload


def pb_struct(fields):
    """A `google.protobuf.Struct` of strings and nested dicts."""
    out = b""
    for key, value in fields.items():
        if isinstance(value, dict):
            encoded = pb_field(5, pb_struct(value))  # Value.struct_value
        else:
            encoded = pb_field(3, value.encode())  # Value.string_value
        out += pb_field(1, pb_field(1, key.encode()) + pb_field(2, encoded))
    return out


def peer_metadata():
    """reviews-v2's node metadata as its sidecar sends it in `x-envoy-peer-metadata`."""
    return base64.b64encode(pb_struct({
        "WORKLOAD_NAME": "reviews-v2",
        "NAMESPACE": "default",
        "CLUSTER_ID": "Kubernetes",
        "LABELS": {"app": "reviews", "version": "v2",
                   "service.istio.io/canonical-name": "reviews",
                   "service.istio.io/canonical-revision": "v2"},
    })).decode()


def istio_text_format():
    """Istio's default access log format, as pilot writes it."""
    source = open(os.path.join(ROOT, "crates/pilot/src/translate/telemetry.rs")).read()
    literal = re.search(r'pub const ISTIO_TEXT_FORMAT: &str = ("(?:[^"\\]|\\.)*");', source)
    return json.loads(literal.group(1))


def bootstrap(listen, admin, backend, metrics, log):
    filters = ""
    if metrics:
        filters = """
          - name: istio.metadata_exchange
            typed_config:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/io.istio.http.peer_metadata.Config
              value:
                upstream_discovery: [{istio_headers: {}}, {workload_discovery: {}}]
                upstream_propagation: [{istio_headers: {}}]
          - name: istio.stats
            typed_config: {"@type": type.googleapis.com/stats.PluginConfig}"""
    access_log = ""
    if log:
        access_log = f"""
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {base.WORK}/access.log
              log_format: {{text_format_source: {{inline_string: {json.dumps(istio_text_format())}}}}}"""
    return f"""
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
node:
  id: sidecar~127.0.0.1~productpage-v1-1.default~default.svc.cluster.local
  metadata:
    ISTIO_VERSION: 1.28.0
    WORKLOAD_NAME: productpage-v1
    NAMESPACE: default
    CLUSTER_ID: Kubernetes
    SERVICE_ACCOUNT: bookinfo-productpage
    LABELS: {{app: productpage, version: v1, service.istio.io/canonical-name: productpage,
              service.istio.io/canonical-revision: v1}}
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    traffic_direction: OUTBOUND
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench{access_log}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            name: local
            virtual_hosts:
            - {{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, route: {{cluster: "{CLUSTER}"}}}}]}}
  clusters:
  - name: "{CLUSTER}"
    type: STATIC
    connect_timeout: 1s
    metadata: {{filter_metadata: {{istio: {{services: [{{host: reviews.default.svc.cluster.local, name: reviews, namespace: default}}]}}}}}}
    load_assignment:
      cluster_name: "{CLUSTER}"
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {backend}}}}}}}
          metadata: {{filter_metadata: {{istio: {{workload: "reviews-v2;default;reviews;v2;Kubernetes"}}}}}}
"""


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def wall_clock(name, boot, port, admin):
    """(requests/s, CPU seconds per 1,000 requests, the proxy's `istio_requests_total`
    lines) of one wrk run."""
    p = base.start(name, ["taskset", "-c", "0"] + base.proxy_argv(boot))
    base.wait_port(port, p, name)
    cpu = cpu_seconds(p.pid)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{SECONDS}s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         check=True).stdout
    cpu = cpu_seconds(p.pid) - cpu
    with socket.create_connection(("127.0.0.1", admin)) as s:
        s.sendall(b"GET /stats/prometheus HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
        scraped = b"".join(iter(lambda: s.recv(65536), b"")).decode()
    counted = [line for line in scraped.splitlines() if line.startswith("istio_requests_total{")]
    base.stop(p)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"{name}: failed requests:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, cpu * 1000 / requests, counted


def h2load(port, n):
    out = subprocess.run(["h2load", "--h1", "-n", str(n), "-c", "10", "-t", "1",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         check=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if int(done.group(2)) != n:
        sys.exit(f"h2load: only {done.group(2)} of {n} requests succeeded:\n{out}")


def instructions(name, boot, port):
    """Ir per request: (Ir of REQUESTS requests - Ir of an idle window as long) / REQUESTS."""
    p = base.start(name + "-callgrind", ["valgrind", "--tool=callgrind", "--dump-instr=no",
                                    f"--callgrind-out-file={base.WORK}/callgrind.%p"] + base.proxy_argv(boot))
    base.wait_port(port, p, name + "-callgrind")
    h2load(port, WARMUP)
    subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True, check=True)
    began = time.monotonic()
    h2load(port, REQUESTS)
    profiles = os.environ.get("MIZZEN_PROFILES")
    keep = os.path.join(profiles, f"callgrind-{name.replace(' ', '-')}.out") if profiles else None
    busy = base.callgrind_total(p.pid, keep)
    took = time.monotonic() - began
    subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True, check=True)
    time.sleep(took)
    idle = base.callgrind_total(p.pid)
    base.stop(p)
    return (busy - idle) / REQUESTS


def main():
    for tool in ["nginx", "wrk", "h2load", "valgrind", "callgrind_control", "taskset"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install nginx-light wrk nghttp2-client "
                     "valgrind util-linux")
    if not os.environ.get("MIZZEN_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "mizzen"], cwd=ROOT, check=True)
    backend = base.free_port()
    conf = base.write("backend.conf", f"""
worker_processes 1; daemon off; pid {base.WORK}/backend.pid; error_log {base.WORK}/backend-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{backend};
    location / {{
      add_header x-envoy-peer-metadata "{peer_metadata()}";
      add_header x-envoy-peer-metadata-id "sidecar~127.0.0.1~reviews-v2-1.default~default.svc.cluster.local";
      return 200 "hello from the backend\\n"; }} }} }}
""")
    b = base.start("backend", ["taskset", "-c", "1", "nginx", "-c", conf, "-p", base.WORK])
    base.wait_port(backend, b, "backend")
    port, admin = base.free_port(), base.free_port()
    boots = {name: base.write(f"{name.replace(' ', '-')}.yaml", bootstrap(port, admin, backend, m, l))
             for name, m, l in VARIANTS}

    names = [name for name, _, _ in VARIANTS]
    print(f"# Telemetry cost: wrk -t1 -c64 -d{SECONDS}s, HTTP/1.1, --concurrency 1, "
          f"{RUNS} interleaved rounds\n")
    print("| round | " + " | ".join(f"{n} (req/s)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    rps = {n: [] for n in names}
    cpu = {n: [] for n in names}
    counted = {}
    for run in range(1, RUNS + 1):
        # Each round starts with another variant, so that no variant always follows the
        # same one.
        for name in names[run - 1:] + names[:run - 1]:
            r, c, counted[name] = wall_clock(name.replace(" ", "-"), boots[name], port, admin)
            rps[name].append(r)
            cpu[name].append(c)
        print(f"| {run} | " + " | ".join(f"{rps[n][-1]:,.0f}" for n in names) + " |", flush=True)
    # The metrics are real: one series, every label filled in from both workloads.
    if len(counted["metrics"]) != 1 or "destination_workload=\"reviews-v2\"" not in counted["metrics"][0]:
        sys.exit(f"metrics: expected one series to reviews-v2, got {counted['metrics']}")
    if counted["nothing"]:
        sys.exit(f"nothing: recorded {counted['nothing']}")
    print(f"\nthe metrics variant's series: `{counted['metrics'][0]}`")
    if os.path.exists(os.path.join(base.WORK, "access.log")):
        with open(os.path.join(base.WORK, "access.log")) as f:
            first = f.readline().rstrip()
        print(f"an access log line: `{first}`")

    print("\n| variant | median req/s | median ratio to nothing | CPU s / 1k requests "
          "| Ir / request | Ir / request over nothing |")
    print("|---|---|---|---|---|---|")
    irs = {}
    for name in names:
        irs[name] = instructions(name.replace(" ", "-"), boots[name], port)
        ratio = statistics.median(r / o for r, o in zip(rps[name], rps["nothing"]))
        extra = irs[name] - irs["nothing"]
        over = "" if name == "nothing" else f"{extra:+,.0f} ({extra / irs['nothing']:+.1%})"
        print(f"| {name} | {statistics.median(rps[name]):,.0f} | {ratio:.3f} "
              f"| {statistics.median(cpu[name]):.4f} | {irs[name]:,.0f} | {over} |", flush=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        base.cleanup()
