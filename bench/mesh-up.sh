#!/usr/bin/env bash
# The local Bookinfo mesh: time from `mizzen up` to every proxy ready, and the memory
# of the mesh (pilot + 7 proxies live in the `up` process; each app is its own
# process), idle and after 500 product pages through the ingress.
# Usage: bench/mesh-up.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
cargo build --release -q -p mizzen
bin="$PWD/target/release/mizzen"
work="$(mktemp -d)"
trap 'pkill -INT -f "mizzen up $work/config" 2>/dev/null || true; rm -rf "$work"' EXIT
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
echo "| run | ready (printed by up) | ready (wall, from exec) | up process RSS idle / after 500 pages (MiB) | 6 apps RSS (MiB) |"
echo "|---|---|---|---|---|"
for run in $(seq "$runs"); do
    rm -rf "$work/config" "$work/state"
    mkdir -p "$work/config"
    cp examples/bookinfo/*.yaml "$work/config/"
    start=$(date +%s%N)
    "$bin" up "$work/config" --state-dir "$work/state" --ingress-ip 127.0.77.9 >"$work/up.log" 2>&1 &
    up=$!
    until grep -q "Mesh ready" "$work/up.log"; do
        kill -0 "$up" 2>/dev/null || { cat "$work/up.log"; exit 1; }
        sleep 0.01
    done
    wall=$(( ($(date +%s%N) - start) / 1000000 ))
    printed=$(grep -o "Mesh ready in [0-9]* ms" "$work/up.log" | grep -o "[0-9]*")
    idle=$(rss "$up")
    for _ in $(seq 500); do curl -s -o /dev/null "http://127.0.77.9:8080/productpage"; done
    loaded=$(rss "$up")
    apps=0
    for pid in $(pgrep -f "demo-app" || true); do apps=$((apps + $(rss "$pid"))); done
    printf '| %d | %d ms | %d ms | %.1f / %.1f | %.1f |\n' "$run" "$printed" "$wall" \
        "$(echo "$idle/1024" | bc -l)" "$(echo "$loaded/1024" | bc -l)" "$(echo "$apps/1024" | bc -l)"
    kill -INT "$up"
    wait "$up" || true
done
