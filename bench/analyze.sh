#!/usr/bin/env bash
# `mizzen analyze` over 10,000 generated objects (the config-load mix: Services,
# VirtualServices, DestinationRules, ServiceEntries, AuthorizationPolicies across 20
# namespaces), files only, every analyzer, all namespaces. Prints the median wall time
# and peak RSS of 5 runs, and how many messages the analysis printed.
#
# Usage: bench/analyze.sh [COUNT]   (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}
runs=5
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cargo build --release -q -p mizzen
python3 bench/gen_config.py "$dir/config" "$count"
echo "objects: $count in $(ls "$dir/config" | wc -l) files, $(du -sh "$dir/config" | cut -f1)"

cmd=(target/release/mizzen analyze --use-kube=false -A "$dir/config")
times=() rss=()
for _ in $(seq $runs); do
    /usr/bin/time -f "%e %M" -o "$dir/time" "${cmd[@]}" >"$dir/out" 2>/dev/null || true
    read -r t m <"$dir/time"
    times+=("$t"); rss+=("$m")
done
med() { printf '%s\n' "$@" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"; }
printf 'mizzen analyze (median of %d): %ss, %s MiB peak RSS, %d messages\n' \
    "$runs" "$(med "${times[@]}")" "$(( $(med "${rss[@]}") / 1024 ))" "$(wc -l <"$dir/out")"
