#!/usr/bin/env python3
"""HTTP/1.1 edge-case server for the Secure Streams conformance tests.

Stdlib only. Started by conformance::peers::PyEdge:

    h1_edge_server.py --port N [--cert server.pem --key server.key [--client-ca ca.pem]]

Listens on 127.0.0.1:N (TLS when --cert/--key are given, ALPN http/1.1;
--client-ca requires a client certificate signed by that CA), then prints
"ready" on stdout. HTTP/1.1 with keep-alive unless an endpoint closes.

Deterministic content: byte i of a generated body is i % 251.
Every response carries `X-Conn-Id: <client port>` (and so does /conn-id).

Endpoints:
  GET  /chunked?n=N&size=S     chunked body: N chunks of S bytes each (the whole
                               body's byte i = i % 251); chunk framing visible raw.
  GET  /close?size=S[&http10=1] read-to-close body: no Content-Length, no chunked,
                               Connection: close (status line HTTP/1.0 if http10=1).
  GET  /len?size=S             Content-Length body of S bytes, keep-alive.
  GET  /204                    204 No Content, no body.
  GET  /status/NNN             status NNN with body "status NNN" (none for 1xx/204/304).
  GET  /redirect?n=K[&abs=1]   302 chain of K hops ending at /len?size=10 (Location
                               relative, or absolute http(s)://Host/... with abs=1).
  GET  /redirect-loop          302 to itself, forever.
  GET  /set-cookie             Set-Cookie: a=1; Path=/ and b=2; Path=/; HttpOnly; body "ok".
  GET  /cookie-echo            body = the request's Cookie header value ("" if none).
  POST /echo, PUT /echo        echoes the request body (Content-Length or chunked
                               request), with X-Req-Content-Type, X-Req-Content-Length,
                               X-Req-Transfer-Encoding = the request's values or "none".
  GET  /headers                body = JSON object of the request headers, lower-cased
                               names -> values (repeats joined with ", ").
  POST /multipart-upload[?data=1]
                               parses a multipart/form-data body; answers JSON
                               [{"name","filename","content_type","len","sha256"}]
                               (filename/content_type null when absent; with data=1
                               also "data": the part's bytes as Latin-1 text), with
                               X-Req-Content-Length / X-Req-Transfer-Encoding as /echo;
                               400 if malformed.
  GET  /multipart-download?parts=N
                               multipart/mixed; boundary=ss-edge-boundary-42 with N parts;
                               part k (1-based) body = "part k " * 100, header X-Part: k.
  GET  /resp-header            X-Test-Meta: hello-meta, body "ok".
  GET  /malformed              writes a garbage status line and closes.
  GET  /huge-header            a 64 KiB X-Huge header, body "ok".
  GET  /conn-id                body = the client's TCP port (same value = same connection).
  GET  /slow?ms=N              waits N ms, then body "slow".
  GET  /peer-cert              body = the client certificate's subject CN, or "none".
  HEAD of any GET endpoint     its headers only.
  anything else                404 "not found".
"""

import argparse
import hashlib
import json
import re
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BOUNDARY = "ss-edge-boundary-42"


def pattern(start, length):
    """Bytes start..start+length of the deterministic stream (i % 251)."""
    return bytes((i % 251) for i in range(start, start + length))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ss-edge/1"
    disable_nagle_algorithm = True

    # -- helpers ---------------------------------------------------------
    def log_message(self, fmt, *args):
        sys.stderr.write("%s:%d %s\n" % (self.client_address[0], self.client_address[1], fmt % args))

    def start(self, code, headers=()):
        self.send_response(code)
        self.send_header("X-Conn-Id", str(self.client_address[1]))
        for k, v in headers:
            self.send_header(k, v)

    def reply(self, code, body=b"", ctype="text/plain", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.start(code, headers)
        no_body = code < 200 or code in (204, 304)
        if not no_body:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not no_body and self.command != "HEAD":
            self.wfile.write(body)

    def query(self):
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return parts.path, q

    def intq(self, q, name, default):
        try:
            return int(q.get(name, default))
        except ValueError:
            return default

    def read_body(self):
        te = self.headers.get("Transfer-Encoding")
        if te and "chunked" in te.lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the empty line
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(3)  # CRLF after the chunk
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # -- dispatch ----------------------------------------------------------
    def do_GET(self):
        path, q = self.query()
        if path == "/chunked":
            n, size = self.intq(q, "n", 3), self.intq(q, "size", 10)
            self.start(200, [("Content-Type", "application/octet-stream"),
                             ("Transfer-Encoding", "chunked")])
            self.end_headers()
            if self.command == "HEAD":
                return
            for k in range(n):
                self.wfile.write(b"%x\r\n" % size + pattern(k * size, size) + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/close":
            size = self.intq(q, "size", 10)
            if q.get("http10") == "1":
                self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                 b"Connection: close\r\n\r\n")
            else:
                self.start(200, [("Content-Type", "application/octet-stream"),
                                 ("Connection", "close")])
                self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(pattern(0, size))
            self.close_connection = True
        elif path == "/len":
            self.reply(200, pattern(0, self.intq(q, "size", 10)), "application/octet-stream")
        elif path == "/204":
            self.reply(204)
        elif path.startswith("/status/"):
            try:
                code = int(path[len("/status/"):])
            except ValueError:
                return self.reply(400, "bad status")
            self.reply(code, "status %d" % code)
        elif path == "/redirect":
            n = self.intq(q, "n", 1)
            target = "/redirect?n=%d" % (n - 1) if n > 1 else "/len?size=10"
            if n > 1 and q.get("abs") == "1":
                target += "&abs=1"
            if q.get("abs") == "1":
                scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
                target = "%s://%s%s" % (scheme, self.headers.get("Host", "127.0.0.1"), target)
            self.reply(302, "redirect", headers=[("Location", target)])
        elif path == "/redirect-loop":
            self.reply(302, "loop", headers=[("Location", "/redirect-loop")])
        elif path == "/set-cookie":
            self.reply(200, "ok", headers=[("Set-Cookie", "a=1; Path=/"),
                                           ("Set-Cookie", "b=2; Path=/; HttpOnly")])
        elif path == "/cookie-echo":
            self.reply(200, "; ".join(self.headers.get_all("Cookie") or []))
        elif path == "/headers":
            h = {}
            for k, v in self.headers.items():
                k = k.lower()
                h[k] = h[k] + ", " + v if k in h else v
            self.reply(200, json.dumps(h, sort_keys=True), "application/json")
        elif path == "/multipart-download":
            n = self.intq(q, "parts", 2)
            body = bytearray()
            for k in range(1, n + 1):
                body += ("--%s\r\nContent-Type: text/plain\r\nX-Part: %d\r\n\r\n" % (BOUNDARY, k)).encode()
                body += ("part %d " % k).encode() * 100 + b"\r\n"
            body += ("--%s--\r\n" % BOUNDARY).encode()
            self.reply(200, bytes(body), "multipart/mixed; boundary=%s" % BOUNDARY)
        elif path == "/resp-header":
            self.reply(200, "ok", headers=[("X-Test-Meta", "hello-meta")])
        elif path == "/malformed":
            self.wfile.write(b"THIS IS NOT HTTP AT ALL\r\n\x00\x01garbage\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True
        elif path == "/huge-header":
            self.reply(200, "ok", headers=[("X-Huge", "h" * 65536)])
        elif path == "/conn-id":
            self.reply(200, str(self.client_address[1]))
        elif path == "/slow":
            time.sleep(self.intq(q, "ms", 100) / 1000.0)
            self.reply(200, "slow")
        elif path == "/peer-cert":
            cn = "none"
            if isinstance(self.connection, ssl.SSLSocket):
                cert = self.connection.getpeercert()
                for rdn in (cert or {}).get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            cn = v
            self.reply(200, cn)
        else:
            self.reply(404, "not found")

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        path, _ = self.query()
        if path == "/echo":
            self.echo()
        elif path == "/multipart-upload":
            self.multipart_upload()
        else:
            self.read_body()
            self.reply(404, "not found")

    def do_PUT(self):
        path, _ = self.query()
        if path == "/echo":
            self.echo()
        else:
            self.read_body()
            self.reply(404, "not found")

    def echo(self):
        body = self.read_body()
        hdr = [
            ("X-Req-Content-Type", self.headers.get("Content-Type", "none")),
            ("X-Req-Content-Length", self.headers.get("Content-Length", "none")),
            ("X-Req-Transfer-Encoding", self.headers.get("Transfer-Encoding", "none")),
        ]
        self.reply(200, body, "application/octet-stream", headers=hdr)

    def multipart_upload(self):
        _, q = self.query()
        body = self.read_body()
        hdr = [
            ("X-Req-Content-Length", self.headers.get("Content-Length", "none")),
            ("X-Req-Transfer-Encoding", self.headers.get("Transfer-Encoding", "none")),
        ]
        ctype = self.headers.get("Content-Type", "")
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.lower().startswith("multipart/form-data") or not m:
            return self.reply(400, "not multipart/form-data with a boundary: %r" % ctype)
        try:
            parts = parse_multipart(body, m.group(1).encode(), q.get("data") == "1")
        except ValueError as e:
            return self.reply(400, "malformed multipart: %s" % e, headers=hdr)
        self.reply(200, json.dumps(parts), "application/json", headers=hdr)


def parse_multipart(body, boundary, with_data=False):
    """Splits a multipart body per RFC 2046 (the CRLF before a delimiter
    belongs to it); returns one dict per part (with its bytes as Latin-1
    text under "data" if with_data)."""
    delim = b"--" + boundary
    if body.startswith(delim):
        pos = 0
    else:
        pos = body.find(b"\r\n" + delim)
        if pos < 0:
            raise ValueError("no opening delimiter")
        pos += 2
    out = []
    while True:
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            return out
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise ValueError("truncated after delimiter")
        hend = body.find(b"\r\n\r\n", eol)
        if hend < 0:
            raise ValueError("part headers not terminated")
        headers = {}
        for line in body[eol + 2:hend].split(b"\r\n"):
            if not line:
                continue
            k, sep, v = line.partition(b":")
            if not sep:
                raise ValueError("bad part header %r" % line)
            headers[k.strip().lower().decode()] = v.strip().decode("utf-8", "replace")
        start = hend + 4
        end = body.find(b"\r\n" + delim, start)
        if end < 0:
            raise ValueError("part not closed by a delimiter")
        data = body[start:end]
        disp = headers.get("content-disposition", "")

        def param(name):
            m = re.search(r'(?:^|;)\s*%s="([^"]*)"' % name, disp) or \
                re.search(r'(?:^|;)\s*%s=([^";\s]+)' % name, disp)
            return m.group(1) if m else None

        part = {
            "name": param("name"),
            "filename": param("filename"),
            "content_type": headers.get("content-type"),
            "len": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if with_data:
            part["data"] = data.decode("latin-1")
        out.append(part)
        pos = end + 2


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    ssl_ctx = None

    def get_request(self):
        sock, addr = super().get_request()
        if self.ssl_ctx is not None:
            # Handshake in the handler thread, so a stalled client cannot
            # block accept().
            sock = self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def shutdown_request(self, request):
        # Close TLS properly (close_notify) so a read-to-close body is not a
        # truncation; bounded, in case the client never answers.
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(1.0)
                request.unwrap()
            except (OSError, ValueError):
                pass
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # Clients that hang up mid-response are normal in these tests.
        exc = sys.exc_info()[1]
        sys.stderr.write("%s: %r\n" % (client_address, exc))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        ctx.set_alpn_protocols(["http/1.1"])
        if a.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(a.client_ca)
        srv.ssl_ctx = ctx
    print("ready", flush=True)
    try:
        srv.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
