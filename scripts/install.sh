#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine with the Rust toolchain.
# Idempotent; run by .ci/run before the tests. Third-party peers used by later
# test suites (mosquitto, nginx, nghttp2, python websockets, openssl) are added here.
set -euo pipefail
need=()
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
echo "install: ok"
