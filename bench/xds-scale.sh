#!/usr/bin/env bash
# xDS at scale: 1,000 sidecar ADS streams against pilot with 1,000 services; change one
# VirtualService and measure how long until every stream has received and ACKed the new
# routes (p50/p99), plus pilot's CPU seconds and peak RSS.
#
# Usage: bench/xds-scale.sh [SERVICES] [PROXIES]   (defaults 1000 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-1000}
proxies=${2:-1000}
work=$(mktemp -d)
pilot_pid=
trap '[ -n "$pilot_pid" ] && kill $pilot_pid 2>/dev/null; rm -rf "$work"' EXIT

cargo build --release -q -p mizzen
cargo build --release -q -p mizzen-pilot --example xds_scale
ulimit -n 65536 2>/dev/null || true

mkdir -p "$work/config"
python3 - "$work/config" "$services" <<'PY'
import sys
out, n = sys.argv[1], int(sys.argv[2])
docs = []
for i in range(n):
    docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: svc{i}, namespace: default}}
spec:
  selector: {{app: svc{i}}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: svc{i}-v1, namespace: default}}
spec: {{address: 10.{i // 250}.{i % 250}.1, labels: {{app: svc{i}, version: v1}}}}
""")
open(f"{out}/services.yaml", "w").write("---\n".join(docs))
PY
vs() { # weight of v1
cat > "$work/config/vs.yaml" <<YAML
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc0, namespace: default}
spec:
  hosts: [svc0]
  http:
  - route:
    - destination: {host: svc0}
      weight: $1
    - destination: {host: svc1}
      weight: $((100 - $1))
YAML
}
vs 90

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
xds=$(port); http=$(port)
target/release/mizzen pilot "$work/config" --xds-addr 127.0.0.1:$xds --http-addr 127.0.0.1:$http 2>"$work/pilot.log" &
pilot_pid=$!
until grep -q "xDS on" "$work/pilot.log"; do
    sleep 0.05
    kill -0 $pilot_pid 2>/dev/null || { cat "$work/pilot.log"; exit 1; }
done

cpu() { awk '{print $14 + $15}' /proc/$pilot_pid/stat; }
tick=$(getconf CLK_TCK)
mkfifo "$work/signal"
target/release/examples/xds_scale 127.0.0.1:$xds "$proxies" "$services" <"$work/signal" >"$work/sim.log" 2>&1 &
sim=$!
exec 3>"$work/signal"
until grep -q "^ready" "$work/sim.log"; do sleep 0.1; kill -0 $sim 2>/dev/null || { cat "$work/sim.log"; exit 1; }; done
cpu_ready=$(cpu)
rss_ready=$(awk '/VmRSS/{print $2}' /proc/$pilot_pid/status)
vs 50
echo changed >&3
wait $sim
cpu_done=$(cpu)
hwm=$(awk '/VmHWM/{print $2}' /proc/$pilot_pid/status)

echo "services: $services, proxies: $proxies"
cat "$work/sim.log"
printf 'pilot CPU: %.2f s to serve the initial config, %.2f s for the change\n' \
    "$(echo "$cpu_ready / $tick" | bc -l)" "$(echo "($cpu_done - $cpu_ready) / $tick" | bc -l)"
echo "pilot RSS: $((rss_ready / 1024)) MiB after the initial config, peak $((hwm / 1024)) MiB"
