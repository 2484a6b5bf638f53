#!/usr/bin/env bash
# What mTLS costs per request between two sidecars, in figures machine load does not
# change: instructions (callgrind), syscalls (strace -c) and TLS handshakes per request,
# plaintext vs STRICT mTLS + one ALLOW policy, both sidecars in one proxy. See
# bench/mtls_instructions.py. Needs: valgrind, strace, h2load (nghttp2-client), nginx.
# Usage: bench/mtls-instructions.sh [REQUESTS]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/mtls_instructions.py "$@"
