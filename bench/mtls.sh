#!/usr/bin/env bash
# mTLS bench: what zero trust costs between two sidecars. One `mizzen up` mesh runs an
# nginx backend behind a server sidecar and an idle client workload; the load
# generators play the client's app, through its sidecar's HTTP-proxy port:
#   load → client sidecar → server sidecar → nginx
# measured twice in the same run, on the same backend, under the same load:
#   plaintext — PeerAuthentication DISABLE mesh-wide (sidecars talk plain HTTP);
#   mtls      — STRICT for the namespace and one ALLOW policy naming the client's
#               principal (sidecars talk Istio mTLS; the server checks RBAC).
# For each: requests/s at saturation (wrk, $CONNECTIONS connections, default 64) and
# p50/p99 at a fixed rate (oha, 16 connections, with latency correction); then the
# ratios mtls / plaintext.
# The mesh (pilot and both sidecars live in the `up` process) runs on CPU 0; nginx and
# the load generators share CPU 1. The mesh's config is in bench/mtls/.
# bench/mtls-instructions.sh gives the same comparison in load-independent figures.
#
# Needs: nginx, wrk, taskset, curl, jq (apt-get install nginx-light wrk util-linux curl
# jq); oha from PATH, $OHA, or installed under target/ by cargo.
# Usage: bench/mtls.sh [SECONDS] [RATE]   (default 30 s per measurement, 1000 req/s)
# MIZZEN_BIN=path/to/mizzen skips the release build: a debug build, to try the script
# (`MIZZEN_BIN=target/debug/mizzen CONNECTIONS=4 bench/mtls.sh 3 20`; its unoptimised
# handshakes are far too slow for 64 new connections at once).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
seconds="${1:-30}"
rate="${2:-1000}"
connections="${CONNECTIONS:-64}"

for tool in nginx wrk taskset curl jq; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
oha="${OHA:-$(command -v oha || echo "$root/target/bench-tools/bin/oha")}"
if [ ! -x "$oha" ]; then
    cargo install --quiet --locked oha --root "$root/target/bench-tools"
    oha="$root/target/bench-tools/bin/oha"
fi
bin="${MIZZEN_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release -q -p mizzen
    bin="$root/target/release/mizzen"
fi

work="$(mktemp -d)"
up=""
cleanup() {
    if [ -n "$up" ] && kill -0 "$up" 2>/dev/null; then
        kill -INT "$up"
        wait "$up" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/config"

# The mesh (bench/mtls/): nginx listens where the mesh tells its app to
# ($POD_IP:$PORT), pinned to CPU 1.
for f in nginx.conf.in mtls.yaml; do sed "s|@WORK@|$work|g" "bench/mtls/$f" >"$work/$f"; done
sed "s|@WORK@|$work|g" bench/mtls/mesh.yaml.in >"$work/config/mesh.yaml"

taskset -c 0 "$bin" up "$work/config" --state-dir "$work/state" \
    --xds-addr 127.0.0.1:0 --tls-addr 127.0.0.1:0 --debug-addr 127.0.0.1:0 \
    --ingress-ip 127.0.0.1 >"$work/up.log" 2>&1 &
up=$!
until grep -q "^Mesh ready" "$work/up.log"; do
    kill -0 "$up" 2>/dev/null || { cat "$work/up.log"; exit 1; }
    sleep 0.05
done
ip_of() { "$bin" get pods "$1" -o json --state-dir "$work/state" | jq -r '.[0].ip'; }
client="$(ip_of client-1):15080"
server="$(ip_of backend-1):8000"
# The app's requests, as an app with HTTP_PROXY set sends them.
url="http://$client/"
host="backend:8000"
status() { curl -s -o /dev/null -w '%{http_code}' -H "host: $host" "$url" || true; }
until [ "$(status)" = 200 ]; do sleep 0.05; done

measure() {
    local mode="$1" out rps p50 p99
    # wrk's own Host header is `Host`; the same spelling replaces it.
    out="$(taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" -H "Host: $host" "$url")"
    rps="$(awk '/Requests\/sec:/ {print $2}' <<<"$out")"
    if grep -q "Non-2xx" <<<"$out"; then
        echo "$mode: some requests failed: $out" >&2
        exit 1
    fi
    out="$(taskset -c 1 "$oha" -z "${seconds}s" -q "$rate" -c 16 --no-tui --output-format json \
        --latency-correction -H "Host: $host" "$url")"
    if [ "$(jq -c '.statusCodeDistribution | keys' <<<"$out")" != '["200"]' ] ||
        [ "$(jq '.errorDistribution | del(."aborted due to deadline") | length' <<<"$out")" != 0 ]; then
        echo "$mode: some requests failed: $(jq -c '[.statusCodeDistribution, .errorDistribution]' <<<"$out")" >&2
        exit 1
    fi
    p50="$(jq '.latencyPercentiles.p50 * 1000' <<<"$out")"
    p99="$(jq '.latencyPercentiles.p99 * 1000' <<<"$out")"
    echo "$mode $rps $p50 $p99"
}

plain="$(measure plaintext)"
"$bin" apply -f "$work/mtls.yaml" --state-dir "$work/state" >/dev/null
# In force when the server refuses plain text (STRICT) and the client still gets
# through (over mTLS, and allowed).
until ! curl -s -o /dev/null --max-time 1 "http://$server/" && [ "$(status)" = 200 ]; do
    sleep 0.05
done
mtls="$(measure mtls)"

echo "# mTLS bench: load → client sidecar → server sidecar → nginx; ${seconds}s per measurement"
echo
echo "| mode | req/s (wrk, $connections conns) | p50 / p99 at $rate req/s (ms) |"
echo "|---|---|---|"
for line in "$plain" "$mtls"; do
    read -r mode rps p50 p99 <<<"$line"
    printf '| %s | %.0f | %.3f / %.3f |\n' "$mode" "$rps" "$p50" "$p99"
done
read -r _ prps _ pp99 <<<"$plain"
read -r _ mrps _ mp99 <<<"$mtls"
printf '\nmtls / plaintext: req/s %.2f, p99 %.2f\n' \
    "$(echo "$mrps / $prps" | bc -l)" "$(echo "$mp99 / $pp99" | bc -l)"
