#!/usr/bin/env bash
# `mizzen analyze` over 10,000 generated objects (the config-load mix: Services,
# VirtualServices, DestinationRules, ServiceEntries, AuthorizationPolicies across 20
# namespaces), files only, every analyzer, all namespaces: wall time and peak RSS
# (hyperfine's mean ± σ when hyperfine is installed, else the median of 5 runs of
# /usr/bin/time), and how many messages the analysis printed.
#
# Then the same objects as a running mesh (`mizzen up`): the time from a bad
# `mizzen apply` (a VirtualService routing to a host that does not exist) to pilot
# serving the finding on /debug/analyzez, and from the fix to the finding gone; the
# median of 5 rounds, measured from when `apply` returned and from when it started.
#
# Usage: bench/analyze.sh [COUNT]   (default 10000)
# MIZZEN=path/to/mizzen uses that binary (say, a debug build to check the script);
# otherwise target/release/mizzen, built first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}
runs=5
rounds=5
if [[ -z "${MIZZEN:-}" ]]; then
    MIZZEN=target/release/mizzen
    [[ -x "$MIZZEN" ]] || cargo build --release -q -p mizzen
fi
mizzen=$(realpath "$MIZZEN")
dir=$(mktemp -d)
up=""
cleanup() {
    if [[ -n "$up" ]] && kill -0 "$up" 2>/dev/null; then
        kill -INT "$up"
        wait "$up" || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

python3 bench/gen_config.py "$dir/config" "$count"
echo "objects: $count in $(ls "$dir/config" | wc -l) files, $(du -sh "$dir/config" | cut -f1)"

cmd=("$mizzen" analyze --use-kube=false -A "$dir/config")
"${cmd[@]}" >"$dir/out" 2>/dev/null || true
messages=$(wc -l <"$dir/out")
if command -v hyperfine >/dev/null; then
    # analyze exits 79 when it finds errors: that is a result, not a failure.
    hyperfine --warmup 1 --runs "$runs" -i --export-json "$dir/hf.json" \
        "${cmd[*]} >/dev/null 2>&1" >/dev/null
    python3 - "$dir/hf.json" "$messages" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"mizzen analyze (hyperfine, {len(r['times'])} runs): {r['mean']:.3f}s ± {r['stddev']:.3f}s, "
      f"{sys.argv[2]} messages")
PY
else
    times=() rss=()
    for _ in $(seq "$runs"); do
        /usr/bin/time -f "%e %M" -o "$dir/time" "${cmd[@]}" >/dev/null 2>&1 || true
        # The last line: time says "Command exited with non-zero status 79" first.
        read -r t m < <(tail -n 1 "$dir/time")
        times+=("$t"); rss+=("$m")
    done
    med() { printf '%s\n' "$@" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"; }
    printf 'mizzen analyze (median of %d): %ss, %s MiB peak RSS, %d messages\n' \
        "$runs" "$(med "${times[@]}")" "$(( $(med "${rss[@]}") / 1024 ))" "$messages"
fi

# The running mesh: its own ports (busy defaults fall back to free ones).
"$mizzen" up "$dir/config" --state-dir "$dir/state" --ingress-ip 127.0.0.1 \
    >"$dir/up.log" 2>&1 &
up=$!
until grep -q "^Watching" "$dir/up.log"; do
    kill -0 "$up" 2>/dev/null || { cat "$dir/up.log"; exit 1; }
    sleep 0.05
done
debug=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["debug"])' "$dir/state/mesh.json")
cat >"$dir/bad.yaml" <<'YAML'
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench-route, namespace: ns0}
spec:
  hosts: [bench.local]
  http:
  - route:
    - destination: {host: no-such-service}
YAML
sed 's/no-such-service/svc0/' "$dir/bad.yaml" >"$dir/fixed.yaml"
now_ms() { date +%s%3N; }
# What pilot serves about the bad route: found, gone, or nothing (no answer).
finding() {
    curl -sf -o "$dir/analyzez" "http://$debug/debug/analyzez" || { echo none; return; }
    if grep -q 'no-such-service' "$dir/analyzez"; then echo found; else echo gone; fi
}
# Applies FILE and polls pilot until `finding` says WANT; sets `after` (ms since apply
# returned) and `total` (ms since it started).
measure() {
    local file=$1 want=$2 start applied end
    start=$(now_ms)
    "$mizzen" apply -f "$file" --state-dir "$dir/state" >/dev/null
    applied=$(now_ms)
    while [[ $(finding) != "$want" ]]; do
        (( $(now_ms) - start < 60000 )) || { echo "no answer from pilot in 60 s" >&2; exit 1; }
        sleep 0.005
    done
    end=$(now_ms)
    after=$(( end - applied )) total=$(( end - start ))
}
appear=() appear_total=() gone=() gone_total=()
for _ in $(seq "$rounds"); do
    measure "$dir/bad.yaml" found; appear+=("$after"); appear_total+=("$total")
    measure "$dir/fixed.yaml" gone; gone+=("$after"); gone_total+=("$total")
done
medr() { printf '%s\n' "$@" | sort -n | sed -n "$(( (rounds + 1) / 2 ))p"; }
printf 'apply -> finding served (median of %d, %d objects): %s ms after apply returned (%s ms from its start); fixed -> gone: %s ms (%s ms)\n' \
    "$rounds" "$count" "$(medr "${appear[@]}")" "$(medr "${appear_total[@]}")" \
    "$(medr "${gone[@]}")" "$(medr "${gone_total[@]}")"
