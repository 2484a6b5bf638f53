#!/usr/bin/env python3
"""Per-request cost of Mizzen's proxy, in figures that load on the machine does not change:

  - instructions per request (valgrind's callgrind): counters zeroed after a warm-up, a
    fixed number of requests, counters dumped; minus an idle window as long as the load
    took (timers, background tasks);
  - heap allocations and bytes allocated per request (valgrind's dhat): a run of
    warm-up + N requests minus a run of the warm-up alone;
  - RSS idle and under `-c 100` load, split into anonymous (the proxy's own) and
    file-backed (code and read-only data of the binary and libc, shared by every process
    running the same binary), from /proc/PID/smaps_rollup.

HTTP/1.1 (h2load --h1) and h2c (h2load, prior knowledge), both to an HTTP/1.1 backend
(nginx returning 23 bytes), one route `/`, `--concurrency 1`, as bench/proxy.py sets up.

Usage: bench/instructions.sh [REQUESTS]   (default 20000)
       MIZZEN_BIN=path/to/mizzen bench/instructions.sh   (measure that binary, no build)
       MIZZEN_PROFILES=DIR bench/instructions.sh   (keep the loaded runs' callgrind
           dumps as DIR/callgrind-h1.out and DIR/callgrind-h2.out, for callgrind_annotate)
Needs: valgrind, h2load (nghttp2-client), nginx.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUESTS = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
WARMUP = 1000
CONNECTIONS = 10
WORK = tempfile.mkdtemp(prefix="mizzen-instr-")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
MIZZEN = os.environ.get("MIZZEN_BIN") or os.path.join(TARGET, "release/mizzen")
PROCS = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write(name, text):
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def start(name, argv):
    log = open(os.path.join(WORK, name + ".log"), "w")
    p = subprocess.Popen(argv, stdout=log, stderr=log)
    PROCS.append(p)
    return p


def wait_port(port, proc, name, tries=1200):
    for _ in range(tries):
        if proc.poll() is not None:
            sys.exit(f"{name} exited: " + open(os.path.join(WORK, name + ".log")).read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{name} did not listen on {port}")


def stop(proc):
    # SIGINT is the proxy's clean stop (its Ctrl-C), so valgrind's tools write their output.
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load(port, proto, n, c=CONNECTIONS):
    argv = ["h2load", "-n", str(n), "-c", str(c), "-t", "1"]
    if proto == "h1":
        argv.append("--h1")
    out = subprocess.run(argv + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if int(done.group(2)) != n:
        sys.exit(f"h2load: only {done.group(2)} of {n} requests succeeded:\n{out}")


def bootstrap(listen, backend, admin):
    return f"""
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: backend}}}}]
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {backend}}}}}}}}}]}}]
"""


def proxy_argv(boot):
    return [MIZZEN, "proxy", "-c", boot, "--concurrency", "1", "-l", "warn"]


def callgrind_total(pid, keep=None):
    """Dumps callgrind's counters of `pid` and returns the Ir since the last zeroing; the
    dump is copied to `keep` when given."""
    before = set(os.listdir(WORK))
    subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True, check=True)
    for _ in range(600):
        new = [f for f in set(os.listdir(WORK)) - before if f.startswith(f"callgrind.{pid}.")]
        if new:
            path = os.path.join(WORK, new[0])
            for _ in range(100):
                text = open(path).read()
                m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
                if m:
                    if keep:
                        shutil.copyfile(path, keep)
                    return int(m.group(1))
                time.sleep(0.1)
        time.sleep(0.1)
    sys.exit("callgrind wrote no dump")


def instructions(boot, port, proto):
    """Ir per request: (Ir of REQUESTS requests - Ir of an idle window as long) / REQUESTS."""
    p = start(f"callgrind-{proto}", ["valgrind", "--tool=callgrind", "--dump-instr=no",
                                      f"--callgrind-out-file={WORK}/callgrind.%p"] + proxy_argv(boot))
    wait_port(port, p, "proxy under callgrind")
    load(port, proto, WARMUP)
    subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True, check=True)
    began = time.monotonic()
    load(port, proto, REQUESTS)
    profiles = os.environ.get("MIZZEN_PROFILES")
    keep = os.path.join(profiles, f"callgrind-{proto}.out") if profiles else None
    busy = callgrind_total(p.pid, keep)
    took = time.monotonic() - began
    subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True, check=True)
    time.sleep(took)
    idle = callgrind_total(p.pid)
    stop(p)
    return (busy - idle) / REQUESTS


def dhat_totals(boot, port, proto, n):
    """(bytes, blocks) allocated over a run of the warm-up and `n` more requests."""
    name = f"dhat-{proto}-{n}"
    p = start(name, ["valgrind", "--tool=dhat", f"--dhat-out-file={WORK}/dhat.%p"] + proxy_argv(boot))
    wait_port(port, p, "proxy under dhat")
    load(port, proto, WARMUP)
    if n:
        load(port, proto, n)
    stop(p)
    log = open(os.path.join(WORK, name + ".log")).read()
    m = re.search(r"Total:\s+([\d,]+) bytes in ([\d,]+) blocks", log)
    if not m:
        sys.exit(f"dhat wrote no totals:\n{log}")
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def allocations(boot, port, proto):
    base_bytes, base_blocks = dhat_totals(boot, port, proto, 0)
    bytes_, blocks = dhat_totals(boot, port, proto, REQUESTS)
    return (blocks - base_blocks) / REQUESTS, (bytes_ - base_bytes) / REQUESTS


def rollup(pid):
    """RSS of `pid` in MiB: total, anonymous, file-backed."""
    fields = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            fields[parts[0][:-1]] = int(parts[1]) / 1024
    return fields["Rss"], fields["Anonymous"], fields["Rss"] - fields["Anonymous"]


def memory(boot, port):
    """RSS idle, and the largest sampled under `-c 100` HTTP/1.1 then h2c load."""
    p = start("rss", proxy_argv(boot))
    wait_port(port, p, "proxy")
    time.sleep(0.5)
    idle = rollup(p.pid)
    peak = {}
    for proto in ("h1", "h2"):
        argv = ["h2load", "-D", "5", "-c", "100", "-t", "1"] + (["--h1"] if proto == "h1" else [])
        gen = subprocess.Popen(argv + [f"http://127.0.0.1:{port}/"], stdout=subprocess.DEVNULL)
        best = (0.0, 0.0, 0.0)
        while gen.poll() is None:
            best = max(best, rollup(p.pid))
            time.sleep(0.1)
        peak[proto] = best
    stop(p)
    return idle, peak


def main():
    if not os.environ.get("MIZZEN_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "mizzen"], cwd=ROOT, check=True)
    for tool in ["valgrind", "callgrind_control", "h2load", "nginx"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install valgrind nghttp2-client nginx-light")
    backend = free_port()
    conf = write("backend.conf", f"""
worker_processes 1; daemon off; pid {WORK}/backend.pid; error_log {WORK}/backend-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{backend}; location / {{ return 200 "hello from the backend\\n"; }} }} }}
""")
    b = start("backend", ["nginx", "-c", conf, "-p", WORK])
    wait_port(backend, b, "backend")
    port = free_port()
    boot = write("mizzen.yaml", bootstrap(port, backend, free_port()))

    print(f"# mizzen proxy per request: {REQUESTS:,} requests over {CONNECTIONS} connections "
          f"after {WARMUP:,} warm-up, --concurrency 1\n")
    print("| protocol | Ir / request | allocations / request | bytes allocated / request |")
    print("|---|---|---|---|")
    for proto, label in (("h1", "HTTP/1.1"), ("h2", "h2c")):
        ir = instructions(boot, port, proto)
        blocks, bytes_ = allocations(boot, port, proto)
        print(f"| {label} | {ir:,.0f} | {blocks:.1f} | {bytes_:,.0f} |", flush=True)
    idle, peak = memory(boot, port)
    print("\n| RSS (MiB) | total | anonymous | file-backed |")
    print("|---|---|---|---|")
    print("| idle | {:.1f} | {:.1f} | {:.1f} |".format(*idle))
    print("| HTTP/1.1 -c 100 | {:.1f} | {:.1f} | {:.1f} |".format(*peak["h1"]))
    print("| h2c -c 100 | {:.1f} | {:.1f} | {:.1f} |".format(*peak["h2"]))


def cleanup():
    """Stops what is still running and removes the work directory. SIGTERM first, not
    SIGKILL: nginx's master stops its workers only when asked."""
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
