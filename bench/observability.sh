#!/usr/bin/env bash
# Telemetry cost of the proxy, same run: nothing vs Istio's metrics (metadata exchange +
# istio.stats, as pilot emits them) vs Istio's default-format file access log vs both;
# wall clock (req/s, CPU per request, interleaved) and callgrind instructions per
# request. See bench/observability.py.
# Needs: nginx, wrk, h2load (nghttp2-client), valgrind, taskset (util-linux).
# Usage: bench/observability.sh [SECONDS] [RUNS] [REQUESTS]   (defaults 10, 3, 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/observability.py "$@"
