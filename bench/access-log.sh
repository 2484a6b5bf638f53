#!/usr/bin/env bash
# Access log cost: Mizzen's proxy with no access log vs Envoy's default-format file
# access log, same backend (nginx), same load (wrk, HTTP/1.1, 64 connections), one
# worker, runs interleaved. Prints requests/s of each run and the median ratio.
# Needs: apt-get install nginx-light wrk util-linux
# Usage: bench/access-log.sh [SECONDS] [RUNS]   (defaults 10, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
runs=${2:-3}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
for tool in nginx wrk taskset; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install nginx-light wrk util-linux"; exit 1; }
done
cargo build --release -q -p mizzen
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do sleep 0.05; done; }

backend=$(port)
cat >"$work/backend.conf" <<CONF
worker_processes 1; daemon off; pid $work/backend.pid; error_log $work/backend-error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$backend; location / { return 200 "hello from the backend\n"; } } }
CONF
taskset -c 1 nginx -c "$work/backend.conf" -p "$work" & pids+=($!)
wait_port "$backend"

bootstrap() { # listen port, access_log YAML (or empty)
    cat <<YAML
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 127.0.0.1, port_value: $1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
$2
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            name: local
            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: backend}}]}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $backend}}}}]}]
YAML
}
log="          access_log:
          - name: envoy.access_loggers.file
            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: $work/access.log}"

rps() { # label, access_log YAML
    local p; p=$(port)
    bootstrap "$p" "$2" >"$work/$1.yaml"
    taskset -c 0 target/release/mizzen proxy -c "$work/$1.yaml" --concurrency 1 -l warn & local pid=$!
    wait_port "$p"
    taskset -c 1 wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:$p/" | awk '/Requests\/sec/ {print $2}'
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "| run | no access log (req/s) | access log, default format, file (req/s) | ratio |"
echo "|---|---|---|---|"
ratios=()
for run in $(seq "$runs"); do
    off=$(rps off "")
    on=$(rps on "$log")
    ratio=$(echo "$on / $off" | bc -l)
    ratios+=("$ratio")
    printf '| %d | %.0f | %.0f | %.3f |\n' "$run" "$off" "$on" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
printf 'median on/off: %.3f (%s lines logged)\n' "$median" "$(wc -l <"$work/access.log")"
