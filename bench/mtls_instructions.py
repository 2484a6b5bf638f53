#!/usr/bin/env python3
"""What mTLS costs per request between two sidecars, in figures that load on the machine
does not change. One `mizzen proxy` (--concurrency 1) plays both sidecars of
bench/mtls.sh: load → listener `client` (the client sidecar's outbound) → cluster
`outbound|8000||backend` → listener `server` (the server sidecar's inbound) → nginx.
Measured in two configurations, each over the same REQUESTS requests (h2load --h1,
CONNECTIONS connections, after a warm-up):

  plaintext — no TLS between the two, no policy;
  mtls      — what pilot writes for STRICT + one ALLOW: the cluster originates Istio
              mTLS (TLS 1.2-1.3 as Istio pins it, client certificate, SAN-verified
              server, Istio's ALPN), the listener
              requires and verifies a client certificate, sets x-forwarded-client-cert,
              and an RBAC filter allows only the client's principal.

For each: instructions per request (valgrind's callgrind: counters zeroed after the
warm-up, dumped after the requests, minus an idle window as long); syscalls per request
(strace -c -f attached for the requests only, a run without valgrind); and TLS
handshakes per 10,000 requests (the proxy's `listener.*.ssl.handshake` and
`cluster.*.ssl.handshake`).

Usage: bench/mtls-instructions.sh [REQUESTS]   (default 20000)
       MIZZEN_BIN=path/to/mizzen ...   (measure that binary, no build)
       MIZZEN_PROFILES=DIR ...   (keep the callgrind dumps as DIR/callgrind-<mode>.out)
Needs: valgrind, strace, h2load (nghttp2-client), nginx, openssl.
"""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions as base  # noqa: E402  (its helpers, work directory and REQUESTS)

TRUST_DOMAIN = "cluster.local"
# Straight to the proxy's admin port, whatever http_proxy says.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def spiffe(sa):
    return f"spiffe://{TRUST_DOMAIN}/ns/default/sa/{sa}"


def certificates():
    """A root and a P-256 workload certificate for `client` and `backend` (as the proxy's
    agent makes them), with SPIFFE URI SANs; returns the work-directory file paths."""
    def run(*argv):
        subprocess.run(argv, cwd=base.WORK, capture_output=True, check=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "root.key", "-out", "root.pem", "-days", "2",
        "-subj", f"/O={TRUST_DOMAIN}", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for sa in ("client", "backend"):
        base.write(f"{sa}.ext", f"subjectAltName=critical,URI:{spiffe(sa)}\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")
        run("openssl", "req", *ec, "-keyout", f"{sa}.key", "-out", f"{sa}.csr", "-subj", f"/O={TRUST_DOMAIN}")
        run("openssl", "x509", "-req", "-in", f"{sa}.csr", "-CA", "root.pem", "-CAkey", "root.key",
            "-CAcreateserial", "-days", "2", "-out", f"{sa}.pem", "-extfile", f"{sa}.ext")
    return {name: os.path.join(base.WORK, name) for name in
            ("root.pem", "client.pem", "client.key", "backend.pem", "backend.key")}


def bootstrap(mode, client, server, backend, admin, files):
    mtls = mode == "mtls"
    def common(sa, alpn, pad, sans=""):
        return textwrap.indent(f"""
common_tls_context:
  tls_params: {{tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3}}
  tls_certificates: [{{certificate_chain: {{filename: {files[sa + '.pem']}}}, private_key: {{filename: {files[sa + '.key']}}}}}]
  validation_context: {{trusted_ca: {{filename: {files['root.pem']}}}{sans}}}
  alpn_protocols: {alpn}""", " " * pad)

    server_tls = f"""
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true{common("backend", "[h2, http/1.1]", 10)}""" if mtls else ""
    client_tls = f"""
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: outbound_.8000_._.backend.default.svc.cluster.local{common("client", "[istio-peer-exchange, istio]", 8,
                f", match_subject_alt_names: [{{exact: '{spiffe('backend')}'}}]")}""" if mtls else ""
    rbac = f"""
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules: {{policies: {{"ns[default]-policy[client-only]-rule[0]": {{permissions: [{{any: true}}], principals: [{{authenticated: {{principal_name: {{exact: '{spiffe('client')}'}}}}}}]}}}}}}""" if mtls else ""
    xfcc = """
          forward_client_cert_details: APPEND_FORWARD
          set_current_client_cert_details: {subject: true, dns: true, uri: true}""" if mtls else ""

    def listener(name, port, cluster, tls="", filters="", more=""):
        return f"""
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          codec_type: AUTO{more}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            name: {name}
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: "{cluster}"}}}}]{tls}"""

    def cluster(name, port, tls=""):
        return f"""
  - name: "{name}"
    type: STATIC
    # Handshakes under valgrind are slow.
    connect_timeout: 30s
    load_assignment:
      cluster_name: "{name}"
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]{tls}"""

    return f"""
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:{listener("client", client, "outbound|8000||backend")}{listener("server", server, "inbound|8000||", server_tls, rbac, xfcc)}
  clusters:{cluster("outbound|8000||backend", server, client_tls)}{cluster("inbound|8000||", backend)}
"""


def handshakes(admin):
    """The proxy's successful handshakes: (accepted by listeners, made by clusters)."""
    text = OPENER.open(f"http://127.0.0.1:{admin}/stats", timeout=5).read().decode()
    counts = {"listener": 0, "cluster": 0}
    for m in re.finditer(r"^(listener|cluster)\..*\.ssl\.handshake: (\d+)$", text, re.M):
        counts[m.group(1)] += int(m.group(2))
    return counts["listener"], counts["cluster"]


def instructions(mode, boot, port, admin):
    """Ir per request and handshakes per 10k requests."""
    p = base.start(f"callgrind-{mode}", ["valgrind", "--tool=callgrind", "--dump-instr=no",
                                         f"--callgrind-out-file={base.WORK}/callgrind.%p"] + base.proxy_argv(boot))
    base.wait_port(port, p, f"callgrind-{mode}")
    base.load(port, "h1", base.WARMUP)
    before = handshakes(admin)
    subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True, check=True)
    began = time.monotonic()
    base.load(port, "h1", base.REQUESTS)
    profiles = os.environ.get("MIZZEN_PROFILES")
    busy = base.callgrind_total(p.pid, os.path.join(profiles, f"callgrind-{mode}.out") if profiles else None)
    took = time.monotonic() - began
    after = handshakes(admin)
    subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True, check=True)
    time.sleep(took)
    idle = base.callgrind_total(p.pid)
    base.stop(p)
    per10k = tuple((a - b) * 10000 / base.REQUESTS for a, b in zip(after, before))
    return (busy - idle) / base.REQUESTS, per10k


def syscalls(mode, boot, port):
    """Syscalls per request, by name and in total."""
    p = base.start(f"strace-{mode}", base.proxy_argv(boot))
    base.wait_port(port, p, f"strace-{mode}")
    base.load(port, "h1", base.WARMUP)
    out = os.path.join(base.WORK, f"strace-{mode}.txt")
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(p.pid)],
                              stderr=subprocess.PIPE, text=True)
    # strace says so on stderr once it has attached to the process's threads.
    while "attached" not in (line := tracer.stderr.readline()):
        if not line:
            sys.exit("strace ended before attaching")
    base.load(port, "h1", base.REQUESTS)
    tracer.send_signal(signal.SIGINT)
    tracer.wait()
    base.stop(p)
    calls = {}
    for line in open(out):
        parts = line.split()
        if len(parts) >= 5 and parts[3].isdigit():
            calls[parts[-1]] = int(parts[3]) / base.REQUESTS
    return calls


def main():
    if not os.environ.get("MIZZEN_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "mizzen"], cwd=base.ROOT, check=True)
    for tool in ["valgrind", "callgrind_control", "strace", "h2load", "nginx", "openssl"]:
        if not base.shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install valgrind strace nghttp2-client nginx-light openssl")
    backend = base.free_port()
    conf = base.write("backend.conf", f"""
worker_processes 1; daemon off; pid {base.WORK}/backend.pid; error_log {base.WORK}/backend-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{backend}; location / {{ return 200 "hello from the backend\\n"; }} }} }}
""")
    b = base.start("backend", ["nginx", "-c", conf, "-p", base.WORK])
    base.wait_port(backend, b, "backend")
    files = certificates()
    client, server, admin = base.free_port(), base.free_port(), base.free_port()

    print(f"# Two sidecars in one mizzen proxy, per request: {base.REQUESTS:,} requests (h2load --h1, "
          f"{base.CONNECTIONS} connections) after {base.WARMUP:,} warm-up, --concurrency 1\n")
    print("| mode | Ir / request | syscalls / request | handshakes / 10k requests (server / client side) |")
    print("|---|---|---|---|")
    results = {}
    for mode in ("plaintext", "mtls"):
        boot = base.write(f"{mode}.yaml", bootstrap(mode, client, server, backend, admin, files))
        ir, hs = instructions(mode, boot, client, admin)
        calls = syscalls(mode, boot, client)
        results[mode] = (ir, calls)
        print(f"| {mode} | {ir:,.0f} | {calls.get('total', 0):.2f} | {hs[0]:.1f} / {hs[1]:.1f} |", flush=True)
    (pir, pcalls), (mir, mcalls) = results["plaintext"], results["mtls"]
    print(f"\nmtls / plaintext: Ir {mir / pir:.2f}, syscalls {mcalls['total'] / pcalls['total']:.2f}\n")
    print("| syscall / request | plaintext | mtls |")
    print("|---|---|---|")
    names = sorted((n for n in set(pcalls) | set(mcalls) if n != "total"), key=lambda n: -mcalls.get(n, 0))
    for n in names[:8]:
        print(f"| {n} | {pcalls.get(n, 0):.2f} | {mcalls.get(n, 0):.2f} |")


if __name__ == "__main__":
    try:
        main()
    finally:
        base.cleanup()
