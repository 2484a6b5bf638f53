#!/usr/bin/env bash
# Per-request cost of the proxy in figures machine load does not change: instructions
# (callgrind), allocations (dhat), and RSS idle and under load (anonymous vs file-backed).
# See bench/instructions.py. Needs: valgrind, h2load (nghttp2-client), nginx.
# Usage: bench/instructions.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/instructions.py "$@"
