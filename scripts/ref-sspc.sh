#!/usr/bin/env bash
# Interop test against the reference (libwebsockets Secure Streams proxy API).
# Opt-in: not run by CI. Linux only (abstract Unix sockets).
#
#   scripts/ref-sspc.sh LWS_SOURCE_DIR [WORK_DIR]
#
# Builds libwebsockets from LWS_SOURCE_DIR out of tree in WORK_DIR/build
# (default WORK_DIR: /tmp/ss-ref-sspc; reused by later runs) with
# LWS_WITH_SECURE_STREAMS_PROXY_API, compiles the reference's proxy client
# examples (minimal-secure-streams as -client, minimal-secure-streams-client-tx),
# its proxy daemon (minimal-secure-streams-proxy) and scripts/ref-sspc-fetch.c
# (a counting client on the reference's proxy client library), builds our
# `ss`, and runs on loopback (no internet needed):
#
#   1  reference client -> reference proxy     (baseline: the harness works)
#   2  reference client -> ss proxy            h1 GET, rx metadata, SOM/EOM
#   3  ref-sspc-fetch -> ss proxy              256 KiB h1 body: every byte, and
#                                              SOM/EOM at most twice (see below)
#   3b ref-sspc-fetch -> reference proxy       the same (baseline)
#   3c ref-sspc-fetch -> ss proxy              the same with the default 32 KiB
#                                              proxy_buflen (rx flow control)
#   4  reference client-tx -> ss proxy         raw tx, bytes reach the peer
#   5  ss get --via-proxy -> reference proxy   h1 GET
#   6  ss get --via-proxy -> reference proxy   raw tx and rx (echo)
#
# Needs cmake, a C compiler, OpenSSL headers (libssl-dev), python3, cargo.
# Exit status 0 if every check passed, 1 if any failed, 2 on a setup error.
# Logs stay in WORK_DIR/run. JOBS (default 2) sets build parallelism.
set -u

die() { echo "ref-sspc: $*" >&2; exit 2; }

[ $# -ge 1 ] || die "usage: $0 LWS_SOURCE_DIR [WORK_DIR]"
LWS_SRC=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
[ -f "$LWS_SRC/lib/secure-streams/serialized/client/sspc.c" ] ||
	die "$LWS_SRC does not look like a libwebsockets tree with Secure Streams"
WORK=${2:-/tmp/ss-ref-sspc}
JOBS=${JOBS:-2}
REPO=$(cd "$(dirname "$0")/.." && pwd)
for t in cmake cc python3 cargo; do
	command -v "$t" >/dev/null || die "needs $t"
done
mkdir -p "$WORK/build" "$WORK/bin" "$WORK/run" || die "cannot create $WORK"
BIN=$WORK/bin
RUN=$WORK/run

# ----- build the reference ---------------------------------------------------

echo "== building libwebsockets ($(git -C "$LWS_SRC" rev-parse --short HEAD 2>/dev/null || echo '?')) in $WORK/build"
(
	cd "$WORK/build" &&
	cmake "$LWS_SRC" -DCMAKE_BUILD_TYPE=Debug \
		-DLWS_WITH_SECURE_STREAMS=1 \
		-DLWS_WITH_SECURE_STREAMS_PROXY_API=1 \
		-DLWS_WITH_MINIMAL_EXAMPLES=0 \
		-DLWS_WITHOUT_TESTAPPS=1 \
		-DLWS_WITH_HTTP3=0 -DLWS_WITH_GNUTLS=0 >cmake.log 2>&1 &&
	make -j"$JOBS" websockets >make.log 2>&1
) || die "libwebsockets build failed: see $WORK/build/cmake.log, make.log"

EX=$LWS_SRC/minimal-examples-lowlevel/secure-streams
ccex() { # output, defines..., source
	local out=$1; shift
	cc -g -I"$WORK/build/include" "$@" "$WORK/build/lib/libwebsockets.a" \
		-lssl -lcrypto -lpthread -ldl -lm -o "$BIN/$out" 2>"$BIN/$out.log" ||
		die "compiling $out failed: see $BIN/$out.log"
}
ccex lws-ss-client -DLWS_SS_USE_SSPC "$EX/minimal-secure-streams/minimal-secure-streams.c"
ccex lws-ss-client-tx "$EX/minimal-secure-streams-client-tx/minimal-secure-streams-client-tx.c"
ccex lws-ss-proxy "$EX/minimal-secure-streams-proxy/main.c"
ccex ref-sspc-fetch "$REPO/scripts/ref-sspc-fetch.c"

echo "== building ss"
(cd "$REPO" && cargo build -q -p ss-tokio --bin ss) || die "cargo build failed"
SS=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/ss
[ -x "$SS" ] || die "no ss binary at $SS"

# ----- loopback peers ----------------------------------------------------------

cd "$RUN" || die "cannot enter $RUN"
rm -f ./*.log ./*.out ./*.err sink.count ports
mkdir -p www
printf '<html><body>hello from the loopback peer</body></html>\n' >www/index.html
python3 -c 'import os,base64; os.write(1, base64.b64encode(os.urandom(196608)))' >www/big.txt

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT

# One process, three servers on free ports: HTTP/1 file server (www/), a raw
# sink that writes the bytes it got to sink.count, a raw echo that answers one
# read and closes.
cat >peers.py <<'EOF'
import http.server, os, socket, socketserver, threading
os.chdir("www")
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Quiet)
def tcp(fn):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0)); s.listen(8)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=fn, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1]
got = [0]
def sink(c):
    while True:
        b = c.recv(65536)
        if not b: break
        got[0] += len(b)
        with open("../sink.count", "w") as f: f.write(str(got[0]))
    c.close()
def echo(c):
    b = c.recv(65536)
    if b: c.sendall(b)
    c.close()
ports = (httpd.server_address[1], tcp(sink), tcp(echo))
with open("../ports.tmp", "w") as f: f.write("%d %d %d\n" % ports)
os.rename("../ports.tmp", "../ports")
httpd.serve_forever()
EOF
python3 peers.py >peers.log 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -s ports ] && break; sleep 0.1; done
[ -s ports ] || die "loopback peers did not start: see $RUN/peers.log"
read -r HTTP_PORT SINK_PORT ECHO_PORT <ports

# The streamtypes the reference examples ask for ("mintest", "spam") plus our
# "echo"; the same file serves both proxies and our client.
policy() { # file, extra keys for mintest, mintest path
	cat >"$1" <<EOF
{
  "release": "01234567", "product": "myproduct", "schema-version": 1,
  "retry": [{"default": {"backoff": [1000, 2000, 3000], "conceal": 5, "jitterpc": 20}}],
  "s": [
    {"mintest": {
      "endpoint": "127.0.0.1", "port": $HTTP_PORT, "protocol": "h1",
      "http_method": "GET", "http_url": "$3",
      "metadata": [{"uptag": "X-Upload-Tag:"}, {"ctype": "X-Content-Type:"},
                   {"srv": "server:"}, {"test": "test-custom-header:"}],
      "opportunistic": true, "retry": "default", "timeout_ms": 2000$2}},
    {"spam": {"endpoint": "127.0.0.1", "port": $SINK_PORT, "protocol": "raw",
              "retry": "default"}},
    {"echo": {"endpoint": "127.0.0.1", "port": $ECHO_PORT, "protocol": "raw",
              "retry": "default"}}
  ]
}
EOF
}
policy policy.json "" 'index.html?uptag=${uptag}'
# The reference proxy drops a fast body beyond proxy_buflen (no rx flow
# control in this policy): give the big body room (3c shows ss proxy without).
policy policy-big.json ', "proxy_buflen": 1048576' big.txt

SOCK=ss-ref-sspc-$$
FAILS=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

start_ss() { # policy
	"$SS" proxy --policy "$1" --abstract "$SOCK" >ss-proxy.out 2>>ss-proxy.err &
	SS_PID=$!
	PIDS+=("$SS_PID")
	for _ in $(seq 50); do grep -q listening ss-proxy.out 2>/dev/null && return 0; sleep 0.1; done
	die "ss proxy did not start: see $RUN/ss-proxy.err"
}
start_ref() { # policy
	"$BIN/lws-ss-proxy" -c "$1" -i "@$SOCK" >>ref-proxy.log 2>&1 &
	REF_PID=$!
	PIDS+=("$REF_PID")
	sleep 1.5 # it prints nothing parseable when its listener is up
	kill -0 "$REF_PID" 2>/dev/null || die "reference proxy did not start: see $RUN/ref-proxy.log"
}
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

client() { # log, args...
	local log=$1; shift
	timeout 30 "$BIN/lws-ss-client" -i "+@$SOCK" "$@" >"$log" 2>&1
}
# From the example's "myss_rx: len N, flags: F" lines; lws logging swallows
# identical consecutive lines, so only for bodies that arrive in one piece.
rx_summary() { # log -> "bytes som eom"
	sed -n 's/.*myss_rx: len \([0-9]*\), flags: \([0-9]*\).*/\1 \2/p' "$1" |
		awk '{b += $1; if ($2 % 2) s++; if (int($2 / 2) % 2) e++}
		     END {printf "%d %d %d\n", b, s, e}'
}

# 1 baseline
start_ref policy.json
if client 1-ref-ref.log && grep -q "srv: SimpleHTTP" 1-ref-ref.log; then
	pass "1 reference client -> reference proxy (baseline)"
else
	fail "1 reference client -> reference proxy (baseline): see $RUN/1-ref-ref.log"
fi

# The reference client hands a frame's SOM/EOM to the application with every
# piece of it: pieces are at most 1380 bytes, and a frame split across two of
# its socket reads is two pieces. So with frames of at most 1380 bytes SOM and
# EOM arrive once, or twice when that frame straddles a read (the reference
# proxy's first h1 frame, 1520 bytes, always gives SOM twice); bigger frames
# give many (64 KiB frames gave SOM 16 times).
fetch_big() { # name
	timeout 30 "$BIN/ref-sspc-fetch" -s mintest -i "+@$SOCK" >"$1.out" 2>"$1.err" &&
		cmp -s "$1.out" www/big.txt &&
		tail -1 "$1.err" | grep -Eq "^ref-sspc-fetch: [0-9]+ bytes, SOM [12], EOM [12]$"
}

# 5, 6 our client -> reference proxy
if timeout 30 "$SS" get mintest --policy policy.json --via-proxy "+@$SOCK" \
	>5.out 2>5.err && cmp -s 5.out www/index.html; then
	pass "5 ss get --via-proxy -> reference proxy: h1 GET"
else
	fail "5 ss get --via-proxy -> reference proxy: h1 GET: see $RUN/5.out, 5.err"
fi
if timeout 30 "$SS" get echo --policy policy.json --via-proxy "+@$SOCK" \
	--send "hello through the reference proxy" >6.out 2>6.err &&
	[ "$(cat 6.out)" = "hello through the reference proxy" ]; then
	pass "6 ss get --via-proxy -> reference proxy: raw tx and echo"
else
	fail "6 ss get --via-proxy -> reference proxy: raw echo: see $RUN/6.out, 6.err"
fi
stop "$REF_PID"

# 2, 4 reference clients -> ss proxy
start_ss policy.json
if client 2-ref-ss.log && grep -q "srv: SimpleHTTP" 2-ref-ss.log &&
	[ "$(rx_summary 2-ref-ss.log)" = "$(wc -c <www/index.html | tr -d ' ') 1 1" ]; then
	pass "2 reference client -> ss proxy: h1 GET, rx metadata, SOM/EOM"
else
	fail "2 reference client -> ss proxy: see $RUN/2-ref-ss.log, ss-proxy.err"
fi
if timeout 30 "$BIN/lws-ss-client-tx" -i "+@$SOCK" -c 10 >4-ref-ss.log 2>&1 &&
	sleep 0.5 && [ "$(cat sink.count 2>/dev/null)" = 800 ]; then
	pass "4 reference client-tx -> ss proxy: 10 x 80 bytes reached the peer"
else
	fail "4 reference client-tx -> ss proxy: peer got $(cat sink.count 2>/dev/null || echo 0) of 800 bytes: see $RUN/4-ref-ss.log"
fi
stop "$SS_PID"

# 3, 3b big body
BIG=$(wc -c <www/big.txt | tr -d ' ')
# 3c: with the default 32 KiB proxy_buflen, ss proxy pauses the onward
# connection while the reference client catches up (rx flow control).
policy policy-small.json '' big.txt
start_ss policy-small.json
if fetch_big 3c; then
	pass "3c ref-sspc-fetch -> ss proxy, default proxy_buflen: $BIG-byte body intact ($(tail -1 3c.err | sed "s/.*bytes, //"))"
else
	fail "3c ref-sspc-fetch -> ss proxy, default proxy_buflen, $BIG-byte body: $(tail -1 3c.err): see $RUN/3c.out, 3c.err, ss-proxy.err"
fi
stop "$SS_PID"
start_ss policy-big.json
if fetch_big 3; then
	pass "3 ref-sspc-fetch -> ss proxy: $BIG-byte body intact ($(tail -1 3.err | sed "s/.*bytes, //"))"
else
	fail "3 ref-sspc-fetch -> ss proxy, $BIG-byte body: $(tail -1 3.err): see $RUN/3.out, 3.err"
fi
stop "$SS_PID"
start_ref policy-big.json
if fetch_big 3b; then
	pass "3b ref-sspc-fetch -> reference proxy: $BIG-byte body intact ($(tail -1 3b.err | sed "s/.*bytes, //"))"
else
	fail "3b ref-sspc-fetch -> reference proxy, $BIG-byte body: $(tail -1 3b.err): see $RUN/3b.out, 3b.err"
fi
stop "$REF_PID"

echo "== $FAILS failed; logs in $RUN"
[ "$FAILS" -eq 0 ]
