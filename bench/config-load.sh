#!/usr/bin/env bash
# Load + validate 10,000 mixed Istio/Kubernetes objects with `mizzen validate`, and,
# in the same run, parse the same files with PyYAML's C loader (parse only, no
# validation) as a floor to compare against. Prints wall time and peak RSS.
#
# Usage: bench/config-load.sh [COUNT]   (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}
runs=5
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cargo build --release -q -p mizzen
python3 bench/gen_config.py "$dir/config" "$count"
echo "objects: $count in $(ls "$dir/config" | wc -l) files, $(du -sh "$dir/config" | cut -f1)"

measure() { # label, command...
    local label=$1; shift
    local times=() rss=()
    for _ in $(seq $runs); do
        /usr/bin/time -f "%e %M" -o "$dir/time" "$@" >/dev/null 2>&1 || true
        read -r t m <"$dir/time"
        times+=("$t"); rss+=("$m")
    done
    local med_t med_m
    med_t=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    med_m=$(printf '%s\n' "${rss[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    printf '%-44s %8ss %8s MiB\n' "$label" "$med_t" "$(( med_m / 1024 ))"
}

printf '%-44s %9s %12s\n' "median of $runs runs" "wall" "peak RSS"
measure "mizzen validate (load + validate)" target/release/mizzen validate -f "$dir/config"
measure "python3 yaml.load_all CSafeLoader (parse)" python3 -c '
import sys, glob, yaml
n = 0
for f in sorted(glob.glob(sys.argv[1] + "/*.yaml")):
    n += sum(1 for _ in yaml.load_all(open(f), Loader=yaml.CSafeLoader))
print(n)' "$dir/config"
target/release/mizzen validate -f "$dir/config" | tail -1
