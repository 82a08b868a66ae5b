#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine with the Rust toolchain.
# Idempotent; run by .ci/run before the tests. Third-party peers used by the
# conformance tests (nginx, python3, openssl, curl, mosquitto, python websockets;
# nghttp2) are installed here: the tests start their own instances on
# loopback and fail (never skip) when a peer is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

need=()
have cc || need+=(gcc)
have openssl || need+=(openssl)
# curl is a third-party HTTP/1.1 client for our h1 server (conformance/tests/h1_peers.rs).
have curl || need+=(curl)
# The tests run the system python3 (stdlib only); /usr/bin/python3 is enough.
[ -x /usr/bin/python3 ] || have python3 || need+=(python3)
# Python websockets is the third-party WebSocket peer (conformance/peers/ws_peer.py,
# conformance/tests/ws_peers.rs); Debian's package goes with /usr/bin/python3,
# which is what the tests run (a pyenv python3 on PATH would not see it).
/usr/bin/python3 -c 'import websockets' >/dev/null 2>&1 || need+=(python3-websockets)
nginx_pkg=""
if ! have nginx; then
  need+=(__nginx__)
fi
# mosquitto is the MQTT broker peer (conformance/src/peers/mosquitto.rs);
# mosquitto_sub/mosquitto_pub are a second, independent MQTT client.
have mosquitto || need+=(mosquitto)
have mosquitto_sub || need+=(mosquitto-clients)
# nghttpd (nghttp2-server) is the HTTP/2 server peer of ss-core's h2 client
# machine (conformance/tests/h2_peers_smoke.rs); nghttp/h2load (nghttp2-client)
# are third-party HTTP/2 clients.
have nghttpd || need+=(nghttp2-server)
have nghttp || need+=(nghttp2-client)
# The echo module gives the nginx peer a POST/PUT /echo endpoint.
[ -e /usr/lib/nginx/modules/ngx_http_echo_module.so ] || need+=(libnginx-mod-http-echo)

# microsocks: a SOCKS5 proxy in front of the HTTP peers (conformance/tests/socks5_peers.rs).
have microsocks || need+=(microsocks)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  if [[ " ${need[*]} " == *" __nginx__ "* ]]; then
    # nginx-light is the small flavour; fall back to nginx where it is gone.
    # (Captured first: `grep -q` closing the pipe early would trip pipefail.)
    policy=$(apt-cache policy nginx-light 2>/dev/null || true)
    if grep -q 'Candidate: [0-9]' <<<"$policy"; then
      nginx_pkg=nginx-light
    else
      nginx_pkg=nginx
    fi
    need=("${need[@]/__nginx__/$nginx_pkg}")
  fi
  # Never let the packages start a system nginx on port 80 (or a system
  # mosquitto on 1883): a policy-rc.d that
  # forbids service starts is put in place for the install if none exists.
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  rc=0
  apt-get install -y -qq --no-install-recommends "${need[@]}" || rc=$?
  [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || exit "$rc"
fi

# Should a system nginx be running anyway (started by the package on a machine
# with an init system), stop it: the tests start their own instances.
if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  "$nginx_bin" -s quit 2>/dev/null || kill "$(cat /run/nginx.pid)" 2>/dev/null || true
fi

# Likewise a system mosquitto (it would hold 1883; the tests use their own
# instances on free ports).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  systemctl stop mosquitto 2>/dev/null || true
  systemctl disable mosquitto 2>/dev/null || true
fi
for pidf in /run/mosquitto/mosquitto.pid /var/run/mosquitto/mosquitto.pid /run/mosquitto.pid; do
  if [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
    kill "$(cat "$pidf")" 2>/dev/null || true
  fi
done

# (Captured first, for the same pipefail reason as above.)
components=$(rustup component list --installed 2>/dev/null || true)
if ! grep -q '^clippy' <<<"$components" || ! grep -q '^rustfmt' <<<"$components"; then
  rustup component add clippy rustfmt
fi
echo "install: ok"
