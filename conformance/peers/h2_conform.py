#!/usr/bin/env python3
"""h2_conform.py: an h2spec-style HTTP/2 server conformance checker.

h2spec (Go) cannot be installed on this project's machines (no Go module
access, and it is packaged by neither Debian, PyPI nor npm), so this is the
equivalent: a raw-frame HTTP/2 client written against the Python standard
library only (socket, ssl, struct) that connects with TLS + ALPN "h2" (or
cleartext prior knowledge with --no-tls) and runs named test cases modelled
on h2spec's "http2" and "hpack" suites. Case ids are RFC 7540 / RFC 9113
section numbers, "<section>/<n>", as in h2spec; HPACK cases (RFC 7541) are
prefixed "hpack/".

Every case opens its own connection, performs the HTTP/2 handshake (preface,
SETTINGS both ways, both acknowledged), sends its frames and checks the
server's reaction against what the RFC requires:

* a connection error: a GOAWAY with one of the expected codes, or the
  connection closing (TCP FIN or reset) without one, as h2spec accepts;
* a stream error: a RST_STREAM with one of the expected codes, or a
  connection error with one of them, or the connection closing (as h2spec);
* a normal exchange: a PING or SETTINGS acknowledgement, a complete
  response, DATA frames within the flow-control window we granted...

Unlike h2spec, a GOAWAY or RST_STREAM carrying an error code other than the
expected ones is a failure (h2spec goes on waiting and passes if the
connection then closes); --lenient restores h2spec's behaviour.

Each wait lasts at most --timeout seconds (2 by default). Output is one line
per case (PASS / FAIL / SKIP with the reason) and a summary
"N passed, M failed, K skipped"; --json prints a machine-readable report
instead. The exit status is 0 only if every case that ran passed.

Usage:
    h2_conform.py [--no-tls] [--cafile CA.pem] [--path /] [--echo]
                  [--cases ID-PREFIX,...] [--json] [--list] HOST PORT
"""

import argparse
import json
import socket
import ssl
import struct
import sys
import time
import traceback

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
FRAME_NAMES = {
    DATA: "DATA",
    HEADERS: "HEADERS",
    PRIORITY: "PRIORITY",
    RST_STREAM: "RST_STREAM",
    SETTINGS: "SETTINGS",
    PUSH_PROMISE: "PUSH_PROMISE",
    PING: "PING",
    GOAWAY: "GOAWAY",
    WINDOW_UPDATE: "WINDOW_UPDATE",
    CONTINUATION: "CONTINUATION",
}

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Error codes (RFC 9113 section 7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
CONNECT_ERROR = 0xA
ENHANCE_YOUR_CALM = 0xB
INADEQUATE_SECURITY = 0xC
HTTP_1_1_REQUIRED = 0xD
ERROR_NAMES = {
    NO_ERROR: "NO_ERROR",
    PROTOCOL_ERROR: "PROTOCOL_ERROR",
    INTERNAL_ERROR: "INTERNAL_ERROR",
    FLOW_CONTROL_ERROR: "FLOW_CONTROL_ERROR",
    SETTINGS_TIMEOUT: "SETTINGS_TIMEOUT",
    STREAM_CLOSED: "STREAM_CLOSED",
    FRAME_SIZE_ERROR: "FRAME_SIZE_ERROR",
    REFUSED_STREAM: "REFUSED_STREAM",
    CANCEL: "CANCEL",
    COMPRESSION_ERROR: "COMPRESSION_ERROR",
    CONNECT_ERROR: "CONNECT_ERROR",
    ENHANCE_YOUR_CALM: "ENHANCE_YOUR_CALM",
    INADEQUATE_SECURITY: "INADEQUATE_SECURITY",
    HTTP_1_1_REQUIRED: "HTTP_1_1_REQUIRED",
}

# SETTINGS parameters (RFC 9113 section 6.5.2).
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65535
DEFAULT_FRAME_SIZE = 16384
MAX_WINDOW = (1 << 31) - 1
# h2spec's default length of a dummy header value (its --max-header-length).
DUMMY_LEN = 4000


def err_name(code):
    return ERROR_NAMES.get(code, "0x%x" % code)


def codes_text(codes):
    return "/".join(err_name(c) for c in codes)


# --------------------------------------------------------------------------
# HPACK (RFC 7541)
# --------------------------------------------------------------------------

STATIC_TABLE = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
]

# Code lengths of the HPACK Huffman code (RFC 7541 Appendix B) for symbols
# 0..255, as chr(48 + length); EOS (256) is 30 bits. The code is canonical
# (codes ascend with (length, symbol)), so the codes follow from the lengths.
_HUFFMAN_LENGTHS = (
    "=GLLLLLLLHNLLNLLLLLLLLNLLLLLLLLL6::<=68;::8;8666555666666678?6<:=6777777"
    "7777777777777777878=C=>6?56565666577666567655677777?;>=LDFDDFFFGFGGGGGHG"
    "HHFGHGGGGEFGFGGHFEDFFGGEGFFHEFGGEEFEGFGGDFFFGFFGJJDCFGFIJJJKKJHICEJKKJKH"
    "EEJJLKKKDHDEFEEGFFIIHHJGJKJJKKKKKLKKKKKJ"
)


def _huffman_codes():
    lengths = [ord(c) - 48 for c in _HUFFMAN_LENGTHS] + [30]
    assert len(lengths) == 257
    order = sorted(range(257), key=lambda s: (lengths[s], s))
    codes = [0] * 257
    code, prev = 0, lengths[order[0]]
    for i, sym in enumerate(order):
        n = lengths[sym]
        if i:
            code = (code + 1) << (n - prev)
        prev = n
        codes[sym] = code
    return codes, lengths


HUFFMAN_CODES, HUFFMAN_LENGTHS = _huffman_codes()
HUFFMAN_DECODE = {(HUFFMAN_LENGTHS[s], HUFFMAN_CODES[s]): s for s in range(257)}
assert HUFFMAN_CODES[256] == 0x3FFFFFFF


class HpackError(Exception):
    pass


def huffman_encode(data):
    acc, bits, out = 0, 0, bytearray()
    for b in data:
        acc = (acc << HUFFMAN_LENGTHS[b]) | HUFFMAN_CODES[b]
        bits += HUFFMAN_LENGTHS[b]
        while bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits:
        # Pad with the most significant bits of EOS (all ones).
        out.append(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xFF)
    return bytes(out)


def huffman_decode(data):
    out = bytearray()
    code, n = 0, 0
    for byte in data:
        for i in range(7, -1, -1):
            code = (code << 1) | ((byte >> i) & 1)
            n += 1
            sym = HUFFMAN_DECODE.get((n, code))
            if sym is not None:
                if sym == 256:
                    raise HpackError("EOS in a Huffman string")
                out.append(sym)
                code, n = 0, 0
            elif n > 30:
                raise HpackError("bad Huffman code")
    if n > 7:
        raise HpackError("Huffman padding longer than 7 bits")
    if code != (1 << n) - 1:
        raise HpackError("Huffman padding is not EOS")
    return bytes(out)


def encode_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_str(s, huffman=False):
    raw = s.encode("latin-1") if isinstance(s, str) else bytes(s)
    if huffman:
        h = huffman_encode(raw)
        return encode_int(len(h), 7, 0x80) + h
    return encode_int(len(raw), 7) + raw


def entry_size(name, value):
    return len(name) + len(value) + 32


class Encoder:
    """Header block encoder. By default every field is a literal without
    indexing (the name indexed when the static table has it): stateless, so
    a malformed block can never desynchronise the server's table. Fields can
    also be given as raw representations for the HPACK cases."""

    def __init__(self):
        self.table = []  # newest first
        self.size = 0
        self.max = 4096

    def _add(self, name, value):
        self.table.insert(0, (name, value))
        self.size += entry_size(name, value)
        while self.size > self.max and self.table:
            n, v = self.table.pop()
            self.size -= entry_size(n, v)

    def _name_index(self, name):
        for i, (n, _) in enumerate(STATIC_TABLE):
            if n == name:
                return i + 1
        return 0

    def literal(self, name, value, rep="without", huffman=False):
        """One literal field: rep is "without" (0000), "never" (0001) or
        "incremental" (01, added to our copy of the dynamic table)."""
        prefix, first = {"without": (4, 0x00), "never": (4, 0x10), "incremental": (6, 0x40)}[rep]
        idx = self._name_index(name)
        out = encode_int(idx, prefix, first)
        if not idx:
            out += encode_str(name, huffman)
        out += encode_str(value, huffman)
        if rep == "incremental":
            self._add(name, value)
        return out

    def indexed(self, index):
        return encode_int(index, 7, 0x80)

    def size_update(self, size):
        self.max = size
        while self.size > self.max and self.table:
            n, v = self.table.pop()
            self.size -= entry_size(n, v)
        return encode_int(size, 5, 0x20)

    def encode(self, headers, rep="without", huffman=False):
        return b"".join(self.literal(n, v, rep, huffman) for n, v in headers)


class Decoder:
    def __init__(self, max_size=4096):
        self.table = []
        self.size = 0
        self.max = max_size
        self.limit = max_size

    def _get(self, idx):
        if idx == 0:
            raise HpackError("index 0")
        if idx <= len(STATIC_TABLE):
            return STATIC_TABLE[idx - 1]
        d = idx - len(STATIC_TABLE) - 1
        if d >= len(self.table):
            raise HpackError("index %d out of range" % idx)
        return self.table[d]

    def _add(self, name, value):
        self.table.insert(0, (name, value))
        self.size += entry_size(name, value)
        self._evict()

    def _evict(self):
        while self.size > self.max and self.table:
            n, v = self.table.pop()
            self.size -= entry_size(n, v)

    @staticmethod
    def _int(data, pos, prefix_bits):
        if pos >= len(data):
            raise HpackError("truncated integer")
        limit = (1 << prefix_bits) - 1
        value = data[pos] & limit
        pos += 1
        if value < limit:
            return value, pos
        shift = 0
        while True:
            if pos >= len(data):
                raise HpackError("truncated integer")
            b = data[pos]
            pos += 1
            value += (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, pos
            if shift > 28:
                raise HpackError("integer too large")

    def _str(self, data, pos):
        if pos >= len(data):
            raise HpackError("truncated string")
        huff = data[pos] & 0x80
        n, pos = self._int(data, pos, 7)
        if pos + n > len(data):
            raise HpackError("truncated string")
        raw = data[pos : pos + n]
        pos += n
        if huff:
            raw = huffman_decode(raw)
        return raw.decode("latin-1"), pos

    def decode(self, data):
        headers = []
        pos = 0
        while pos < len(data):
            b = data[pos]
            if b & 0x80:
                idx, pos = self._int(data, pos, 7)
                headers.append(self._get(idx))
            elif b & 0x40:
                idx, pos = self._int(data, pos, 6)
                name = self._get(idx)[0] if idx else None
                if name is None:
                    name, pos = self._str(data, pos)
                value, pos = self._str(data, pos)
                self._add(name, value)
                headers.append((name, value))
            elif b & 0x20:
                size, pos = self._int(data, pos, 5)
                if size > self.limit:
                    raise HpackError("table size update above the limit")
                self.max = size
                self._evict()
            else:
                idx, pos = self._int(data, pos, 4)
                name = self._get(idx)[0] if idx else None
                if name is None:
                    name, pos = self._str(data, pos)
                value, pos = self._str(data, pos)
                headers.append((name, value))
        return headers


# --------------------------------------------------------------------------
# Frames and the connection
# --------------------------------------------------------------------------


class Frame:
    def __init__(self, ftype, flags, stream, payload):
        self.type = ftype
        self.flags = flags
        self.stream = stream
        self.payload = payload
        self.headers = None  # decoded header list, on the END_HEADERS frame
        self.hpack_error = None

    @property
    def error_code(self):
        if self.type == RST_STREAM and len(self.payload) >= 4:
            return struct.unpack(">I", self.payload[:4])[0]
        if self.type == GOAWAY and len(self.payload) >= 8:
            return struct.unpack(">I", self.payload[4:8])[0]
        return None

    def __str__(self):
        name = FRAME_NAMES.get(self.type, "UNKNOWN(0x%x)" % self.type)
        if self.type == GOAWAY:
            last = struct.unpack(">I", self.payload[:4])[0] & MAX_WINDOW if len(self.payload) >= 4 else -1
            debug = self.payload[8:].decode("latin-1")
            return "GOAWAY(%s, last_stream_id=%d%s)" % (
                err_name(self.error_code or 0),
                last,
                ", debug=%r" % debug if debug else "",
            )
        if self.type == RST_STREAM:
            return "RST_STREAM(stream %d, %s)" % (self.stream, err_name(self.error_code or 0))
        flags = []
        if self.type in (DATA, HEADERS) and self.flags & END_STREAM:
            flags.append("END_STREAM")
        if self.type in (HEADERS, CONTINUATION) and self.flags & END_HEADERS:
            flags.append("END_HEADERS")
        if self.type in (SETTINGS, PING) and self.flags & ACK:
            flags.append("ACK")
        text = "%s(stream %d, len %d%s)" % (
            name,
            self.stream,
            len(self.payload),
            ", " + "|".join(flags) if flags else "",
        )
        if self.headers:
            status = dict(self.headers).get(":status")
            if status:
                text += " :status %s" % status
        return text


class Event:
    CLOSED = "connection closed"
    TIMEOUT = "timeout"


class Fail(Exception):
    pass


class Skip(Exception):
    pass


class SetupError(Exception):
    pass


def frame_bytes(ftype, flags, stream, payload):
    n = len(payload)
    return struct.pack(">BHBBI", (n >> 16) & 0xFF, n & 0xFFFF, ftype, flags, stream) + bytes(payload)


def settings_payload(settings):
    return b"".join(struct.pack(">HI", k, v) for k, v in settings)


class Conn:
    def __init__(self, cfg):
        self.cfg = cfg
        self.timeout = cfg.timeout
        try:
            raw = socket.create_connection((cfg.host, cfg.port), timeout=cfg.timeout)
        except OSError as e:
            raise SetupError("connect: %s" % e)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if cfg.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if cfg.cafile:
                ctx.load_verify_locations(cfg.cafile)
                ctx.check_hostname = bool(cfg.sni)
            else:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            try:
                self.sock = ctx.wrap_socket(raw, server_hostname=cfg.sni or cfg.host)
            except (OSError, ssl.SSLError) as e:
                raw.close()
                raise SetupError("TLS handshake: %s" % e)
            alpn = self.sock.selected_alpn_protocol()
            if alpn != "h2":
                self.sock.close()
                raise SetupError("ALPN selected %r, not h2" % alpn)
        else:
            self.sock = raw
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.closed = False
        self.close_reason = ""
        self.peer_settings = {}
        self.enc = Encoder()
        self.dec = Decoder()
        self.header_stream = None
        self.header_buf = bytearray()
        # Our receive windows as the peer sees them; credited back when low.
        self.auto_window = True
        self.recv_conn = DEFAULT_WINDOW
        self.recv_stream = {}
        self.local_initial = DEFAULT_WINDOW
        # The peer's windows for what we send.
        self.send_conn = DEFAULT_WINDOW
        self.send_stream = {}
        self.peer_initial = DEFAULT_WINDOW
        self.seen = []

    # -- output -------------------------------------------------------------

    def send(self, data):
        """Queues bytes; they go out in one write before the next read, so
        the frames of a step reach the server together (as one TCP write)
        whatever the scheduling, and results do not depend on timing."""
        self.wbuf += data

    def flush(self):
        if not self.wbuf:
            return
        data, self.wbuf = bytes(self.wbuf), bytearray()
        if self.cfg.verbose:
            log("  send %d bytes" % len(data))
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError):
            # Like h2spec: a write error shows up as the connection closing
            # on the next read.
            pass

    def send_frame(self, ftype, flags, stream, payload=b""):
        if self.cfg.verbose:
            log("  queue %s" % Frame(ftype, flags, stream, bytes(payload)))
        self.send(frame_bytes(ftype, flags, stream, payload))

    def settings(self, *pairs):
        for k, v in pairs:
            if k == INITIAL_WINDOW_SIZE:
                delta = v - self.local_initial
                self.local_initial = v
                for s in self.recv_stream:
                    self.recv_stream[s] += delta
        self.send_frame(SETTINGS, 0, 0, settings_payload(pairs))

    def block(self, headers, **kw):
        return self.enc.encode(headers, **kw)

    def headers(self, stream, headers, end_stream=True, end_headers=True, block=None, **kw):
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        self.recv_stream.setdefault(stream, self.local_initial)
        self.send_stream.setdefault(stream, self.peer_initial)
        self.send_frame(HEADERS, flags, stream, block if block is not None else self.block(headers, **kw))

    def continuation(self, stream, block, end_headers=True):
        self.send_frame(CONTINUATION, END_HEADERS if end_headers else 0, stream, block)

    def data(self, stream, payload, end_stream=True):
        self.send_frame(DATA, END_STREAM if end_stream else 0, stream, payload)

    def rst(self, stream, code):
        self.send_frame(RST_STREAM, 0, stream, struct.pack(">I", code))

    def ping(self, payload, ack=False):
        self.send_frame(PING, ACK if ack else 0, 0, payload)

    def window_update(self, stream, increment):
        self.send_frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment))

    def priority(self, stream, depends_on=0, weight=15, exclusive=False):
        dep = depends_on | (0x80000000 if exclusive else 0)
        self.send_frame(PRIORITY, 0, stream, struct.pack(">IB", dep, weight))

    def close(self):
        self.flush()
        try:
            self.sock.close()
        except OSError:
            pass

    # -- input --------------------------------------------------------------

    def _closed(self, why):
        self.closed = True
        self.close_reason = why
        if self.cfg.verbose:
            log("  recv: connection closed (%s)" % why)
        return Event.CLOSED

    def next_event(self, deadline):
        """The next frame, Event.CLOSED or Event.TIMEOUT (at `deadline`)."""
        while True:
            if self.closed:
                return Event.CLOSED
            if len(self.rbuf) >= 9:
                n = (self.rbuf[0] << 16) | (self.rbuf[1] << 8) | self.rbuf[2]
                if len(self.rbuf) >= 9 + n:
                    ftype, flags = self.rbuf[3], self.rbuf[4]
                    stream = struct.unpack(">I", self.rbuf[5:9])[0] & MAX_WINDOW
                    payload = bytes(self.rbuf[9 : 9 + n])
                    del self.rbuf[: 9 + n]
                    f = Frame(ftype, flags, stream, payload)
                    self._on_frame(f)
                    if self.cfg.verbose:
                        log("  recv %s" % f)
                    self.seen.append(str(f))
                    return f
            self.flush()
            left = deadline - time.monotonic()
            if left <= 0:
                return Event.TIMEOUT
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return Event.TIMEOUT
            except ssl.SSLWantReadError:
                continue
            except (OSError, ssl.SSLError) as e:
                return self._closed(type(e).__name__)
            if not chunk:
                return self._closed("EOF")
            self.rbuf += chunk

    def _on_frame(self, f):
        """What any client does without being asked: acknowledge SETTINGS
        and PING, track windows, credit received DATA, decode headers."""
        if f.type == SETTINGS and not f.flags & ACK and f.stream == 0 and len(f.payload) % 6 == 0:
            for i in range(0, len(f.payload), 6):
                k, v = struct.unpack(">HI", f.payload[i : i + 6])
                self.peer_settings[k] = v
                if k == INITIAL_WINDOW_SIZE:
                    delta = v - self.peer_initial
                    self.peer_initial = v
                    for s in self.send_stream:
                        self.send_stream[s] += delta
            self.send_frame(SETTINGS, ACK, 0)
        elif f.type == PING and not f.flags & ACK and len(f.payload) == 8:
            self.ping(f.payload, ack=True)
        elif f.type == WINDOW_UPDATE and len(f.payload) == 4:
            inc = struct.unpack(">I", f.payload)[0] & MAX_WINDOW
            if f.stream == 0:
                self.send_conn += inc
            else:
                self.send_stream[f.stream] = self.send_stream.get(f.stream, self.peer_initial) + inc
        elif f.type == DATA and f.payload:
            n = len(f.payload)
            self.recv_conn -= n
            self.recv_stream[f.stream] = self.recv_stream.get(f.stream, self.local_initial) - n
            if self.auto_window:
                # Credit back once half the window is used (like any client;
                # h2spec waits until it is all used).
                if self.recv_conn < DEFAULT_WINDOW // 2:
                    self.window_update(0, DEFAULT_WINDOW - self.recv_conn)
                    self.recv_conn = DEFAULT_WINDOW
                w = self.recv_stream[f.stream]
                if w < self.local_initial // 2 and not f.flags & END_STREAM:
                    self.window_update(f.stream, self.local_initial - w)
                    self.recv_stream[f.stream] = self.local_initial
        if f.type in (HEADERS, PUSH_PROMISE, CONTINUATION):
            self._on_header_fragment(f)

    def _on_header_fragment(self, f):
        p = f.payload
        if f.type in (HEADERS, PUSH_PROMISE):
            pad = 0
            if f.flags & PADDED and p:
                pad, p = p[0], p[1:]
            if f.type == HEADERS and f.flags & PRIORITY_FLAG:
                p = p[5:]
            if f.type == PUSH_PROMISE:
                p = p[4:]
            if pad:
                p = p[: len(p) - pad] if pad <= len(p) else b""
            self.header_stream = f.stream
            self.header_buf = bytearray(p)
        else:
            self.header_buf += p
        if f.flags & END_HEADERS:
            try:
                f.headers = self.dec.decode(bytes(self.header_buf))
            except HpackError as e:
                f.hpack_error = str(e)
                f.headers = []
            self.header_buf = bytearray()

    # -- handshake ----------------------------------------------------------

    def handshake(self, settings=((INITIAL_WINDOW_SIZE, DEFAULT_WINDOW),)):
        """Preface and SETTINGS; waits for the server's SETTINGS and the ACK
        of ours (h2spec's handshake)."""
        self.send(PREFACE)
        self.settings(*settings)
        deadline = time.monotonic() + self.timeout
        got_settings = got_ack = False
        while not (got_settings and got_ack):
            ev = self.next_event(deadline)
            if not isinstance(ev, Frame):
                raise SetupError("handshake: %s (frames: %s)" % (ev, ", ".join(self.seen) or "none"))
            if ev.type == SETTINGS:
                if ev.flags & ACK:
                    got_ack = True
                else:
                    got_settings = True
        self.seen = []

    def max_frame_size(self):
        return self.peer_settings.get(MAX_FRAME_SIZE, DEFAULT_FRAME_SIZE)

    def deadline(self, factor=1.0):
        return time.monotonic() + self.timeout * factor

    def seen_text(self):
        return ", ".join(self.seen[-6:]) or "no frames"


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# Verifiers: return a short description of what passed; raise Fail.
# --------------------------------------------------------------------------


def _timeout_fail(c, expected):
    raise Fail("expected %s; got %s (after: %s)" % (expected, Event.TIMEOUT, c.seen_text()))


def expect_connection_error(c, *codes):
    """GOAWAY with one of `codes`, or the connection closing."""
    expected = "GOAWAY(%s) or connection close" % codes_text(codes)
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev == Event.CLOSED:
            return "connection closed (%s)" % c.close_reason
        if ev == Event.TIMEOUT:
            _timeout_fail(c, expected)
        if ev.type == GOAWAY:
            if ev.error_code in codes:
                return str(ev)
            if not c.cfg.lenient:
                raise Fail("expected %s; got %s" % (expected, ev))


def expect_stream_error(c, stream, *codes):
    """RST_STREAM (on `stream`, or any if None) or GOAWAY with one of
    `codes`, or the connection closing."""
    expected = "RST_STREAM(%s) or GOAWAY(%s) or connection close" % (codes_text(codes), codes_text(codes))
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev == Event.CLOSED:
            return "connection closed (%s)" % c.close_reason
        if ev == Event.TIMEOUT:
            _timeout_fail(c, expected)
        if ev.type == RST_STREAM and (stream is None or ev.stream == stream or c.cfg.lenient):
            if ev.error_code in codes:
                return str(ev)
            if not c.cfg.lenient:
                raise Fail("expected %s; got %s" % (expected, ev))
        if ev.type == GOAWAY:
            if ev.error_code in codes:
                return str(ev)
            if not c.cfg.lenient:
                raise Fail("expected %s; got %s" % (expected, ev))


def expect_close(c):
    """The TCP connection closes (a GOAWAY before it is fine)."""
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev == Event.CLOSED:
            return "connection closed (%s) after: %s" % (c.close_reason, c.seen_text())
        if ev == Event.TIMEOUT:
            _timeout_fail(c, "the connection to close")


def expect_goaway(c, *codes):
    """A GOAWAY frame with one of `codes` (not just a close)."""
    expected = "GOAWAY(%s)" % codes_text(codes)
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev == Event.CLOSED:
            raise Fail("expected %s; connection closed (%s) after: %s" % (expected, c.close_reason, c.seen_text()))
        if ev == Event.TIMEOUT:
            _timeout_fail(c, expected)
        if ev.type == GOAWAY:
            if ev.error_code in codes:
                return str(ev)
            raise Fail("expected %s; got %s" % (expected, ev))


def expect_rst(c, stream, *codes):
    """A RST_STREAM on `stream` with one of `codes` (nothing else)."""
    expected = "RST_STREAM(stream %d, %s)" % (stream, codes_text(codes))
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev == Event.CLOSED:
            raise Fail("expected %s; connection closed (%s) after: %s" % (expected, c.close_reason, c.seen_text()))
        if ev == Event.TIMEOUT:
            _timeout_fail(c, expected)
        if ev.type == RST_STREAM and ev.stream == stream:
            if ev.error_code in codes:
                return str(ev)
            raise Fail("expected %s; got %s" % (expected, ev))
        if ev.type == GOAWAY:
            raise Fail("expected %s; got %s" % (expected, ev))


def expect_ping_ack(c, payload):
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev in (Event.CLOSED, Event.TIMEOUT):
            raise Fail("expected PING ACK %r; got %s (after: %s)" % (payload, ev, c.seen_text()))
        if ev.type == PING and ev.flags & ACK:
            if ev.payload == payload:
                return "PING ACK with the same payload"
            raise Fail("PING ACK with payload %r, expected %r" % (ev.payload, payload))
        if ev.type == GOAWAY:
            raise Fail("expected PING ACK; got %s" % ev)


def expect_ping_ack_or_close(c, payload):
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev == Event.CLOSED:
            return "connection closed"
        if ev == Event.TIMEOUT:
            _timeout_fail(c, "PING ACK or connection close")
        if ev.type == PING and ev.flags & ACK:
            if ev.payload == payload:
                return "PING ACK"
            raise Fail("PING ACK with payload %r, expected %r" % (ev.payload, payload))


def expect_settings_ack(c):
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev in (Event.CLOSED, Event.TIMEOUT):
            raise Fail("expected SETTINGS ACK; got %s (after: %s)" % (ev, c.seen_text()))
        if ev.type == SETTINGS and ev.flags & ACK:
            if ev.payload:
                raise Fail("SETTINGS ACK with a %d-byte payload" % len(ev.payload))
            return "SETTINGS ACK"
        if ev.type == GOAWAY:
            raise Fail("expected SETTINGS ACK; got %s" % ev)


def expect_headers(c, stream):
    """A HEADERS frame (a response) on `stream`."""
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev in (Event.CLOSED, Event.TIMEOUT):
            raise Fail("expected HEADERS on stream %d; got %s (after: %s)" % (stream, ev, c.seen_text()))
        if ev.type == HEADERS and ev.stream == stream:
            return str(ev)
        if ev.type == GOAWAY or (ev.type == RST_STREAM and ev.stream == stream):
            raise Fail("expected HEADERS on stream %d; got %s" % (stream, ev))


def expect_data(c, stream):
    """The first DATA frame on `stream`."""
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev in (Event.CLOSED, Event.TIMEOUT):
            raise Fail("expected DATA on stream %d; got %s (after: %s)" % (stream, ev, c.seen_text()))
        if ev.type == DATA and ev.stream == stream:
            return ev
        if ev.type == GOAWAY or (ev.type == RST_STREAM and ev.stream == stream):
            raise Fail("expected DATA on stream %d; got %s" % (stream, ev))


def expect_stream_end(c, stream):
    """The response on `stream` ends (END_STREAM, or RST_STREAM(NO_ERROR))."""
    deadline = c.deadline()
    while True:
        ev = c.next_event(deadline)
        if ev in (Event.CLOSED, Event.TIMEOUT):
            raise Fail("expected the response on stream %d to end; got %s (after: %s)" % (stream, ev, c.seen_text()))
        if ev.stream == stream and ev.type in (DATA, HEADERS) and ev.flags & END_STREAM:
            return
        if ev.stream == stream and ev.type == RST_STREAM and ev.error_code == NO_ERROR:
            return
        if ev.type == GOAWAY or ev.type == RST_STREAM and ev.stream == stream:
            raise Fail("expected the response on stream %d to end; got %s" % (stream, ev))


class Response:
    def __init__(self):
        self.status = None
        self.headers = []
        self.trailers = []
        self.body = bytearray()
        self.done = False
        self.data_frames = []


def collect_responses(c, streams, factor=1.0):
    """Complete responses on every stream of `streams`; dict stream -> Response."""
    out = {s: Response() for s in streams}
    deadline = c.deadline(factor)
    while not all(r.done for r in out.values()):
        ev = c.next_event(deadline)
        waiting = sorted(s for s, r in out.items() if not r.done)
        if ev in (Event.CLOSED, Event.TIMEOUT):
            raise Fail(
                "expected complete responses on %d stream(s) (waiting for %s); got %s (after: %s)"
                % (len(streams), waiting[:5], ev, c.seen_text())
            )
        if ev.type == GOAWAY:
            raise Fail("expected complete responses; got %s" % ev)
        r = out.get(ev.stream)
        if r is None:
            continue
        if ev.type == RST_STREAM:
            raise Fail("expected a complete response on stream %d; got %s" % (ev.stream, ev))
        if ev.type == HEADERS and ev.flags & END_HEADERS or ev.type == CONTINUATION and ev.flags & END_HEADERS:
            if ev.hpack_error:
                raise Fail("undecodable response header block: %s" % ev.hpack_error)
            hs = ev.headers or []
            status = dict(hs).get(":status")
            if r.status is None or (r.status.startswith("1") and status):
                r.status = status
                r.headers = hs
            else:
                r.trailers = hs
        if ev.type == DATA:
            p = ev.payload
            if ev.flags & PADDED and p:
                pad = p[0]
                p = p[1 : len(p) - pad]
            r.body += p
            r.data_frames.append(len(ev.payload))
        if ev.type in (HEADERS, DATA) and ev.flags & END_STREAM:
            if r.status is None:
                raise Fail("stream %d ended without a response status" % ev.stream)
            if not r.status.startswith("1"):
                r.done = True
    return out


def get_response(c, stream, factor=1.0):
    return collect_responses(c, [stream], factor)[stream]


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------


class Case:
    def __init__(self, cid, desc, expect, fn):
        self.id = cid
        self.desc = desc
        self.expect = expect
        self.fn = fn


CASES = []


def case(cid, desc, expect):
    def deco(fn):
        CASES.append(Case(cid, desc, expect, fn))
        return fn

    return deco


def open_conn(cfg, handshake=True, **kw):
    c = Conn(cfg)
    if handshake:
        c.handshake(**kw)
    return c


def req(c, method="GET", path=None, extra=()):
    return [
        (":method", method),
        (":scheme", "https" if c.cfg.tls else "http"),
        (":path", path or c.cfg.path),
        (":authority", c.cfg.authority),
    ] + list(extra)


def dummy(n=1):
    return [("x-dummy%d" % i, "x" * DUMMY_LEN) for i in range(n)]


def server_data_length(cfg):
    """How many body bytes a GET of --path gets (h2spec's ServerDataLength)."""
    c = open_conn(cfg)
    try:
        c.headers(1, req(c))
        return len(get_response(c, 1).body)
    finally:
        c.close()


PING_DATA = b"h2spec\x00\x01"


# 3.5 HTTP/2 Connection Preface


@case("3.5/1", "Sends client connection preface", "The server's first frame is SETTINGS")
def c_3_5_1(cfg):
    c = open_conn(cfg, handshake=False)
    c.send(PREFACE)
    c.settings()
    ev = c.next_event(c.deadline())
    if not isinstance(ev, Frame):
        raise Fail("expected SETTINGS; got %s" % ev)
    if ev.type != SETTINGS or ev.flags & ACK:
        raise Fail("the first frame is %s, not SETTINGS" % ev)
    return str(ev)


@case("3.5/2", "Sends invalid connection preface", "Connection error PROTOCOL_ERROR (GOAWAY or close)")
def c_3_5_2(cfg):
    c = open_conn(cfg, handshake=False)
    c.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
    return expect_connection_error(c, PROTOCOL_ERROR)


# 4.1 Frame Format


@case("4.1/1", "Sends a frame with unknown type", "Frame ignored: a following PING is answered")
def c_4_1_1(cfg):
    c = open_conn(cfg)
    c.send_frame(0x16, 0, 0, b"x" * 8)
    c.ping(PING_DATA)
    return expect_ping_ack(c, PING_DATA)


@case("4.1/2", "Sends a frame with undefined flag", "Flags ignored: the PING is answered")
def c_4_1_2(cfg):
    c = open_conn(cfg)
    c.send_frame(PING, 0x16, 0, PING_DATA)
    return expect_ping_ack(c, PING_DATA)


@case("4.1/3", "Sends a frame with reserved field bit", "Reserved bit ignored: the PING is answered")
def c_4_1_3(cfg):
    c = open_conn(cfg)
    c.send(struct.pack(">BHBBI", 0, 8, PING, 0, 0x80000000) + PING_DATA)
    return expect_ping_ack(c, PING_DATA)


# 4.2 Frame Size


@case("4.2/1", "Sends a DATA frame with 2^14 octets in length", "Accepted: the request gets a response")
def c_4_2_1(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "POST"), end_stream=False)
    c.data(1, b"x" * c.max_frame_size())
    return expect_headers(c, 1)


@case(
    "4.2/2",
    "Sends a DATA frame exceeding SETTINGS_MAX_FRAME_SIZE",
    "FRAME_SIZE_ERROR (RST_STREAM, GOAWAY or close)",
)
def c_4_2_2(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "POST"), end_stream=False)
    c.data(1, b"x" * (c.max_frame_size() + 1))
    return expect_stream_error(c, 1, FRAME_SIZE_ERROR)


@case(
    "4.2/3",
    "Sends a HEADERS frame exceeding SETTINGS_MAX_FRAME_SIZE",
    "Connection error FRAME_SIZE_ERROR",
)
def c_4_2_3(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c) + dummy(5))
    return expect_connection_error(c, FRAME_SIZE_ERROR)


# 4.3 Header Compression and Decompression


@case("4.3/1", "Sends invalid header block fragment", "Connection error COMPRESSION_ERROR")
def c_4_3_1(cfg):
    c = open_conn(cfg)
    # A literal with incremental indexing and a new name whose length is missing.
    c.send(b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x40")
    return expect_connection_error(c, COMPRESSION_ERROR)


@case(
    "4.3/2",
    "Sends a PRIORITY frame while sending the header blocks",
    "Connection error PROTOCOL_ERROR",
)
def c_4_3_2(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_stream=False, end_headers=False)
    c.priority(1, 0, 255)
    c.continuation(1, c.block(dummy()))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "4.3/3",
    "Sends a HEADERS frame to another stream while sending the header blocks",
    "Connection error PROTOCOL_ERROR",
)
def c_4_3_3(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_stream=False, end_headers=False)
    c.headers(3, req(c))
    c.continuation(1, c.block(dummy()))
    return expect_connection_error(c, PROTOCOL_ERROR)


# 5.1 Stream States


@case(
    "5.1/1",
    "idle: Sends a DATA frame",
    "PROTOCOL_ERROR or STREAM_CLOSED (connection error per 5.1; h2spec accepts a stream error)",
)
def c_5_1_1(cfg):
    c = open_conn(cfg)
    c.data(1, b"test")
    return expect_stream_error(c, 1, PROTOCOL_ERROR, STREAM_CLOSED)


@case("5.1/2", "idle: Sends a RST_STREAM frame", "Connection error PROTOCOL_ERROR")
def c_5_1_2(cfg):
    c = open_conn(cfg)
    c.rst(1, CANCEL)
    return expect_connection_error(c, PROTOCOL_ERROR)


@case("5.1/3", "idle: Sends a WINDOW_UPDATE frame", "Connection error PROTOCOL_ERROR")
def c_5_1_3(cfg):
    c = open_conn(cfg)
    c.window_update(1, 100)
    return expect_connection_error(c, PROTOCOL_ERROR)


@case("5.1/4", "idle: Sends a CONTINUATION frame", "Connection error PROTOCOL_ERROR")
def c_5_1_4(cfg):
    c = open_conn(cfg)
    c.continuation(1, c.block(req(c)))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case("5.1/5", "half closed (remote): Sends a DATA frame", "Stream error STREAM_CLOSED")
def c_5_1_5(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c))
    c.data(1, b"test")
    return expect_stream_error(c, 1, STREAM_CLOSED)


@case("5.1/6", "half closed (remote): Sends a HEADERS frame", "Stream error STREAM_CLOSED")
def c_5_1_6(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c))
    c.headers(1, req(c))
    return expect_stream_error(c, 1, STREAM_CLOSED)


@case(
    "5.1/7",
    "half closed (remote): Sends a CONTINUATION frame",
    "STREAM_CLOSED or PROTOCOL_ERROR",
)
def c_5_1_7(cfg):
    c = open_conn(cfg)
    blk = c.block(req(c))
    c.headers(1, None, block=blk)
    c.continuation(1, blk)
    return expect_stream_error(c, 1, STREAM_CLOSED, PROTOCOL_ERROR)


@case("5.1/8", "closed: Sends a DATA frame after sending RST_STREAM frame", "Stream error STREAM_CLOSED")
def c_5_1_8(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_stream=False)
    c.rst(1, CANCEL)
    c.data(1, b"test")
    return expect_stream_error(c, 1, STREAM_CLOSED)


@case("5.1/9", "closed: Sends a HEADERS frame after sending RST_STREAM frame", "Stream error STREAM_CLOSED")
def c_5_1_9(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_stream=False)
    c.rst(1, CANCEL)
    c.headers(1, req(c))
    return expect_stream_error(c, 1, STREAM_CLOSED)


@case(
    "5.1/10",
    "closed: Sends a CONTINUATION frame after sending RST_STREAM frame",
    "STREAM_CLOSED or PROTOCOL_ERROR",
)
def c_5_1_10(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_stream=False)
    c.rst(1, CANCEL)
    c.continuation(1, c.block(dummy()))
    return expect_stream_error(c, 1, STREAM_CLOSED, PROTOCOL_ERROR)


@case("5.1/11", "closed: Sends a DATA frame", "Stream error STREAM_CLOSED")
def c_5_1_11(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c))
    expect_stream_end(c, 1)
    c.data(1, b"test")
    return expect_stream_error(c, 1, STREAM_CLOSED)


@case("5.1/12", "closed: Sends a HEADERS frame", "Connection error STREAM_CLOSED")
def c_5_1_12(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c))
    expect_stream_end(c, 1)
    c.headers(1, req(c))
    return expect_connection_error(c, STREAM_CLOSED)


@case("5.1/13", "closed: Sends a CONTINUATION frame", "Connection error STREAM_CLOSED or PROTOCOL_ERROR")
def c_5_1_13(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c))
    expect_stream_end(c, 1)
    c.continuation(1, c.block(dummy()))
    return expect_connection_error(c, STREAM_CLOSED, PROTOCOL_ERROR)


@case(
    "5.1/14",
    "half closed (remote): Sends WINDOW_UPDATE, PRIORITY and RST_STREAM frames",
    "Allowed: no error; the connection still answers a request",
)
def c_5_1_14(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c))
    c.window_update(1, 100)
    c.priority(1, 0, 100)
    c.rst(1, CANCEL)
    c.headers(3, req(c))
    r = get_response(c, 3)
    return "stream 3 answered %s" % r.status


@case(
    "5.1/15",
    "idle: Sends a PRIORITY frame, then HEADERS on a lower stream id",
    "Allowed: PRIORITY on an idle stream does not open it; stream 1 is answered",
)
def c_5_1_15(cfg):
    c = open_conn(cfg)
    c.priority(3, 0, 15)
    c.headers(1, req(c))
    r = get_response(c, 1)
    return "stream 1 answered %s" % r.status


# 5.1.1 Stream Identifiers


@case("5.1.1/1", "Sends even-numbered stream identifier", "Connection error PROTOCOL_ERROR")
def c_5_1_1_1(cfg):
    c = open_conn(cfg)
    c.headers(2, req(c))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "5.1.1/2",
    "Sends stream identifier that is numerically smaller than previous",
    "Connection error PROTOCOL_ERROR",
)
def c_5_1_1_2(cfg):
    c = open_conn(cfg)
    c.headers(5, req(c))
    c.headers(3, req(c))
    return expect_connection_error(c, PROTOCOL_ERROR)


# 5.1.2 Stream Concurrency


@case(
    "5.1.2/1",
    "Sends HEADERS frames that exceed the advertised concurrent stream limit",
    "Stream error PROTOCOL_ERROR or REFUSED_STREAM",
)
def c_5_1_2_1(cfg):
    c = open_conn(cfg)
    limit = c.peer_settings.get(MAX_CONCURRENT_STREAMS)
    if limit is None:
        raise Skip("SETTINGS_MAX_CONCURRENT_STREAMS not advertised")
    if limit > 1000:
        raise Skip("SETTINGS_MAX_CONCURRENT_STREAMS is %d" % limit)
    # Responses cannot finish with a zero window, so the streams stay open.
    c.settings((INITIAL_WINDOW_SIZE, 0))
    blk = c.block(req(c))
    c.send(b"".join(frame_bytes(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, blk) for i in range(limit + 1)))
    return expect_stream_error(c, None, PROTOCOL_ERROR, REFUSED_STREAM)


@case(
    "5.1.2/2",
    "Opens streams up to the advertised concurrent stream limit (at most 100)",
    "Every stream gets a complete response",
)
def c_5_1_2_2(cfg):
    c = open_conn(cfg)
    n = min(c.peer_settings.get(MAX_CONCURRENT_STREAMS, 100), 100)
    if n < 1:
        raise Skip("SETTINGS_MAX_CONCURRENT_STREAMS is %d" % n)
    streams = [1 + 2 * i for i in range(n)]
    blk = c.block(req(c))
    c.send(b"".join(frame_bytes(HEADERS, END_STREAM | END_HEADERS, s, blk) for s in streams))
    rs = collect_responses(c, streams, factor=5)
    statuses = sorted(set(r.status for r in rs.values()))
    return "%d concurrent streams answered (status %s)" % (n, ",".join(statuses))


# 5.3.1 Stream Dependencies


@case("5.3.1/1", "Sends HEADERS frame that depends on itself", "Stream error PROTOCOL_ERROR")
def c_5_3_1_1(cfg):
    c = open_conn(cfg)
    payload = struct.pack(">IB", 3, 15) + c.block(req(c))
    c.send_frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 3, payload)
    return expect_stream_error(c, 3, PROTOCOL_ERROR)


@case("5.3.1/2", "Sends PRIORITY frame that depend on itself", "Stream error PROTOCOL_ERROR")
def c_5_3_1_2(cfg):
    c = open_conn(cfg)
    c.priority(2, 2, 15)
    return expect_stream_error(c, 2, PROTOCOL_ERROR)


# 5.4 Error Handling


@case(
    "5.4.1/1",
    "Sends an invalid PING frame for connection close",
    "The TCP connection is closed",
)
def c_5_4_1_1(cfg):
    c = open_conn(cfg)
    c.send_frame(PING, 0, 3, b"\x00" * 8)
    return expect_close(c)


@case(
    "5.4.1/2",
    "Sends an invalid PING frame to receive GOAWAY frame",
    "A GOAWAY (PROTOCOL_ERROR) is sent before closing (SHOULD)",
)
def c_5_4_1_2(cfg):
    c = open_conn(cfg)
    c.send_frame(PING, 0, 3, b"\x00" * 8)
    return expect_goaway(c, PROTOCOL_ERROR)


@case(
    "5.4.2/1",
    "Resets one stream with RST_STREAM while another is open",
    "The other stream still gets its response",
)
def c_5_4_2_1(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "POST"), end_stream=False)
    c.headers(3, req(c))
    c.rst(1, CANCEL)
    r = get_response(c, 3)
    return "stream 3 answered %s" % r.status


@case(
    "5.4.2/2",
    "Resets a stream whose response is blocked by a zero window, then opens the window",
    "The connection keeps serving: a new stream gets a complete response",
)
def c_5_4_2_2(cfg):
    c = open_conn(cfg)
    c.auto_window = False
    c.settings((INITIAL_WINDOW_SIZE, 0))
    expect_settings_ack(c)
    c.headers(1, req(c))
    # The response head can go out; its body cannot.
    expect_headers(c, 1)
    c.rst(1, CANCEL)
    c.settings((INITIAL_WINDOW_SIZE, DEFAULT_WINDOW))
    c.auto_window = True
    c.headers(3, req(c))
    r = get_response(c, 3)
    return "stream 3 answered %s with %d body bytes" % (r.status, len(r.body))


# 5.5 Extending HTTP/2


@case("5.5/1", "Sends an unknown extension frame", "Ignored: a following PING is answered")
def c_5_5_1(cfg):
    c = open_conn(cfg)
    c.send_frame(0xFF, 0, 0, b"unknown-extension")
    c.ping(PING_DATA)
    return expect_ping_ack(c, PING_DATA)


@case(
    "5.5/2",
    "Sends an unknown extension frame in the middle of a header block",
    "Connection error PROTOCOL_ERROR",
)
def c_5_5_2(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_headers=False)
    c.send_frame(0xFF, 0, 1, b"unknown")
    c.continuation(1, c.block(dummy()))
    return expect_connection_error(c, PROTOCOL_ERROR)


# 6.1 DATA


@case("6.1/1", "Sends a DATA frame with 0x0 stream identifier", "Connection error PROTOCOL_ERROR")
def c_6_1_1(cfg):
    c = open_conn(cfg)
    c.data(0, b"test")
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.1/2",
    'Sends a DATA frame on a stream not in "open" or "half-closed (local)"',
    "Stream error STREAM_CLOSED",
)
def c_6_1_2(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "POST"))
    c.data(1, b"test")
    return expect_stream_error(c, 1, STREAM_CLOSED)


@case("6.1/3", "Sends a DATA frame with invalid pad length", "Connection error PROTOCOL_ERROR")
def c_6_1_3(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "POST"), end_stream=False)
    # Pad length 6 with only 5 octets after it.
    c.send_frame(DATA, END_STREAM | PADDED, 1, b"\x06" + b"test\x00")
    return expect_connection_error(c, PROTOCOL_ERROR)


@case("6.1/4", "Sends DATA frames with padding", "Accepted: the request gets a complete response")
def c_6_1_4(cfg):
    c = open_conn(cfg)
    body = b"padded request body"
    c.headers(1, req(c, "POST", extra=[("content-length", str(len(body)))]), end_stream=False)
    c.send_frame(DATA, PADDED, 1, b"\x08" + body[:7] + b"\x00" * 8)
    c.send_frame(DATA, END_STREAM | PADDED, 1, b"\x00" + body[7:])
    r = get_response(c, 1)
    check_echo(c, r, body)
    return "answered %s" % r.status


# 6.2 HEADERS


@case(
    "6.2/1",
    "Sends a HEADERS frame without the END_HEADERS flag, and a PRIORITY frame",
    "Connection error PROTOCOL_ERROR",
)
def c_6_2_1(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_headers=False)
    c.priority(1, 0, 255)
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.2/2",
    "Sends a HEADERS frame to another stream while sending a HEADERS frame",
    "Connection error PROTOCOL_ERROR",
)
def c_6_2_2(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_headers=False)
    c.headers(3, req(c))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case("6.2/3", "Sends a HEADERS frame with 0x0 stream identifier", "Connection error PROTOCOL_ERROR")
def c_6_2_3(cfg):
    c = open_conn(cfg)
    c.headers(0, req(c))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.2/4",
    "Sends a HEADERS frame with invalid pad length",
    "PROTOCOL_ERROR (connection error per 6.2; stream error accepted as by h2spec)",
)
def c_6_2_4(cfg):
    c = open_conn(cfg)
    blk = c.block(req(c))
    # Pad length larger than what follows it.
    c.send_frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, bytes([len(blk) + 1]) + blk)
    return expect_stream_error(c, 1, PROTOCOL_ERROR)


@case(
    "6.2/5",
    "Sends a HEADERS frame with padding and priority",
    "Accepted: the request gets a complete response",
)
def c_6_2_5(cfg):
    c = open_conn(cfg)
    blk = c.block(req(c))
    payload = b"\x05" + struct.pack(">IB", 0, 200) + blk + b"\x00" * 5
    c.send_frame(HEADERS, END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG, 1, payload)
    r = get_response(c, 1)
    return "answered %s" % r.status


# 6.3 PRIORITY


@case("6.3/1", "Sends a PRIORITY frame with 0x0 stream identifier", "Connection error PROTOCOL_ERROR")
def c_6_3_1(cfg):
    c = open_conn(cfg)
    c.priority(0, 0, 255)
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.3/2",
    "Sends a PRIORITY frame with a length other than 5 octets",
    "Stream error FRAME_SIZE_ERROR",
)
def c_6_3_2(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_stream=False)
    c.send_frame(PRIORITY, 0, 1, b"\x80\x00\x00\x01")
    return expect_stream_error(c, 1, FRAME_SIZE_ERROR)


# 6.4 RST_STREAM


@case("6.4/1", "Sends a RST_STREAM frame with 0x0 stream identifier", "Connection error PROTOCOL_ERROR")
def c_6_4_1(cfg):
    c = open_conn(cfg)
    c.rst(0, CANCEL)
    return expect_connection_error(c, PROTOCOL_ERROR)


@case("6.4/2", "Sends a RST_STREAM frame on a idle stream", "Connection error PROTOCOL_ERROR")
def c_6_4_2(cfg):
    c = open_conn(cfg)
    c.rst(1, CANCEL)
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.4/3",
    "Sends a RST_STREAM frame with a length other than 4 octets",
    "Connection error FRAME_SIZE_ERROR",
)
def c_6_4_3(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_stream=False)
    c.send_frame(RST_STREAM, 0, 1, b"\x00\x00\x00")
    return expect_stream_error(c, 1, FRAME_SIZE_ERROR)


# 6.5 SETTINGS


@case("6.5/1", "Sends a SETTINGS frame with ACK flag and payload", "Connection error FRAME_SIZE_ERROR")
def c_6_5_1(cfg):
    c = open_conn(cfg)
    c.send_frame(SETTINGS, ACK, 0, settings_payload([(ENABLE_PUSH, 0)]))
    return expect_connection_error(c, FRAME_SIZE_ERROR)


@case(
    "6.5/2",
    "Sends a SETTINGS frame with a stream identifier other than 0x0",
    "Connection error PROTOCOL_ERROR",
)
def c_6_5_2(cfg):
    c = open_conn(cfg)
    c.send_frame(SETTINGS, 0, 1, settings_payload([(ENABLE_PUSH, 0)]))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.5/3",
    "Sends a SETTINGS frame with a length other than a multiple of 6 octets",
    "Connection error FRAME_SIZE_ERROR",
)
def c_6_5_3(cfg):
    c = open_conn(cfg)
    c.send_frame(SETTINGS, 0, 0, b"\x00\x02\x00\x00")
    return expect_connection_error(c, FRAME_SIZE_ERROR)


# 6.5.2 Defined SETTINGS Parameters


@case(
    "6.5.2/1",
    "SETTINGS_ENABLE_PUSH (0x2): Sends the value other than 0 or 1",
    "Connection error PROTOCOL_ERROR",
)
def c_6_5_2_1(cfg):
    c = open_conn(cfg)
    c.send_frame(SETTINGS, 0, 0, settings_payload([(ENABLE_PUSH, 2)]))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.5.2/2",
    "SETTINGS_INITIAL_WINDOW_SIZE (0x4): Sends the value above the maximum flow control window size",
    "Connection error FLOW_CONTROL_ERROR",
)
def c_6_5_2_2(cfg):
    c = open_conn(cfg)
    c.send_frame(SETTINGS, 0, 0, settings_payload([(INITIAL_WINDOW_SIZE, 1 << 31)]))
    return expect_connection_error(c, FLOW_CONTROL_ERROR)


@case(
    "6.5.2/3",
    "SETTINGS_MAX_FRAME_SIZE (0x5): Sends the value below the initial value",
    "Connection error PROTOCOL_ERROR",
)
def c_6_5_2_3(cfg):
    c = open_conn(cfg)
    c.send_frame(SETTINGS, 0, 0, settings_payload([(MAX_FRAME_SIZE, DEFAULT_FRAME_SIZE - 1)]))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.5.2/4",
    "SETTINGS_MAX_FRAME_SIZE (0x5): Sends the value above the maximum allowed frame size",
    "Connection error PROTOCOL_ERROR",
)
def c_6_5_2_4(cfg):
    c = open_conn(cfg)
    c.send_frame(SETTINGS, 0, 0, settings_payload([(MAX_FRAME_SIZE, 1 << 24)]))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case("6.5.2/5", "Sends a SETTINGS frame with unknown identifier", "Ignored: SETTINGS ACK, PING answered")
def c_6_5_2_5(cfg):
    c = open_conn(cfg)
    c.send_frame(SETTINGS, 0, 0, settings_payload([(0xFF, 1)]))
    c.ping(PING_DATA)
    return expect_ping_ack(c, PING_DATA)


# 6.5.3 Settings Synchronization


@case(
    "6.5.3/1",
    "Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE",
    "Processed in order: the last (1) wins, so the first DATA is 1 octet",
)
def c_6_5_3_1(cfg):
    if server_data_length(cfg) < 1:
        raise Skip("GET %s has an empty body" % cfg.path)
    c = open_conn(cfg)
    c.auto_window = False
    c.settings((INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1))
    expect_settings_ack(c)
    c.headers(1, req(c))
    f = expect_data(c, 1)
    if len(f.payload) != 1:
        raise Fail("expected DATA of 1 octet; got %s" % f)
    return str(f)


@case("6.5.3/2", "Sends a SETTINGS frame without ACK flag", "A SETTINGS frame with ACK is sent")
def c_6_5_3_2(cfg):
    c = open_conn(cfg)
    c.settings((ENABLE_PUSH, 0))
    return expect_settings_ack(c)


# 6.7 PING


@case("6.7/1", "Sends a PING frame", "A PING ACK with an identical payload")
def c_6_7_1(cfg):
    c = open_conn(cfg)
    c.ping(PING_DATA)
    return expect_ping_ack(c, PING_DATA)


@case("6.7/2", "Sends a PING frame with ACK", "Not answered: only the next PING is acknowledged")
def c_6_7_2(cfg):
    c = open_conn(cfg)
    c.ping(b"unsolici", ack=True)
    c.ping(PING_DATA)
    return expect_ping_ack(c, PING_DATA)


@case(
    "6.7/3",
    "Sends a PING frame with a stream identifier field value other than 0x0",
    "Connection error PROTOCOL_ERROR",
)
def c_6_7_3(cfg):
    c = open_conn(cfg)
    c.send_frame(PING, 0, 1, PING_DATA)
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.7/4",
    "Sends a PING frame with a length field value other than 8",
    "Connection error FRAME_SIZE_ERROR",
)
def c_6_7_4(cfg):
    c = open_conn(cfg)
    c.send_frame(PING, 0, 0, b"\x00" * 6)
    return expect_connection_error(c, FRAME_SIZE_ERROR)


# 6.8 GOAWAY


@case(
    "6.8/1",
    "Sends a GOAWAY frame with a stream identifier other than 0x0",
    "Connection error PROTOCOL_ERROR",
)
def c_6_8_1(cfg):
    c = open_conn(cfg)
    c.send_frame(GOAWAY, 0, 1, struct.pack(">II", 0, NO_ERROR))
    return expect_connection_error(c, PROTOCOL_ERROR)


# 6.9 WINDOW_UPDATE


@case(
    "6.9/1",
    "Sends a WINDOW_UPDATE frame with a flow control window increment of 0",
    "Connection error PROTOCOL_ERROR",
)
def c_6_9_1(cfg):
    c = open_conn(cfg)
    c.window_update(0, 0)
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.9/2",
    "Sends a WINDOW_UPDATE frame with a flow control window increment of 0 on a stream",
    "Stream error PROTOCOL_ERROR",
)
def c_6_9_2(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_stream=False)
    c.window_update(1, 0)
    return expect_stream_error(c, 1, PROTOCOL_ERROR)


@case(
    "6.9/3",
    "Sends a WINDOW_UPDATE frame with a length other than 4 octets",
    "Connection error FRAME_SIZE_ERROR",
)
def c_6_9_3(cfg):
    c = open_conn(cfg)
    c.send_frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01")
    return expect_connection_error(c, FRAME_SIZE_ERROR)


@case(
    "6.9/4",
    "Sends a request body larger than the initial window, within the server's windows",
    "The server credits the windows (WINDOW_UPDATE) and answers",
)
def c_6_9_4(cfg):
    c = open_conn(cfg)
    body = bytes((i * 7 + 3) % 251 for i in range(3 * DEFAULT_WINDOW + 1000))
    c.headers(1, req(c, "POST", extra=[("content-length", str(len(body)))]), end_stream=False)
    sent = 0
    deadline = c.deadline(5)
    while sent < len(body):
        room = min(c.send_conn, c.send_stream.get(1, 0), c.max_frame_size(), len(body) - sent)
        if room > 0:
            last = sent + room == len(body)
            c.data(1, body[sent : sent + room], end_stream=last)
            c.send_conn -= room
            c.send_stream[1] -= room
            sent += room
            continue
        # Blocked by flow control: wait for WINDOW_UPDATE.
        ev = c.next_event(deadline)
        if ev in (Event.CLOSED, Event.TIMEOUT):
            raise Fail(
                "stalled after %d of %d bytes (windows: connection %d, stream %d): %s (after: %s)"
                % (sent, len(body), c.send_conn, c.send_stream.get(1, 0), ev, c.seen_text())
            )
        if ev.type == GOAWAY or ev.type == RST_STREAM and ev.stream == 1:
            raise Fail("after %d bytes: %s" % (sent, ev))
    r = get_response(c, 1, factor=5)
    check_echo(c, r, body)
    return "%d bytes sent within the windows, answered %s" % (len(body), r.status)


# 6.9.1 The Flow-Control Window


@case(
    "6.9.1/1",
    "Sends SETTINGS frame to set the initial window size to 1 and sends HEADERS frame",
    "The server sends DATA of at most 1 octet",
)
def c_6_9_1_1(cfg):
    if server_data_length(cfg) < 1:
        raise Skip("GET %s has an empty body" % cfg.path)
    c = open_conn(cfg)
    c.auto_window = False
    c.settings((INITIAL_WINDOW_SIZE, 1))
    expect_settings_ack(c)
    c.headers(1, req(c))
    f = expect_data(c, 1)
    if len(f.payload) != 1:
        raise Fail("expected DATA of 1 octet; got %s" % f)
    return str(f)


@case(
    "6.9.1/2",
    "Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1",
    "GOAWAY FLOW_CONTROL_ERROR",
)
def c_6_9_1_2(cfg):
    c = open_conn(cfg)
    c.window_update(0, MAX_WINDOW)
    c.window_update(0, MAX_WINDOW)
    return expect_goaway(c, FLOW_CONTROL_ERROR)


@case(
    "6.9.1/3",
    "Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1 on a stream",
    "RST_STREAM FLOW_CONTROL_ERROR",
)
def c_6_9_1_3(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_stream=False)
    c.window_update(1, MAX_WINDOW)
    c.window_update(1, MAX_WINDOW)
    return expect_rst(c, 1, FLOW_CONTROL_ERROR)


@case(
    "6.9.1/4",
    "Grants an 8-octet stream window and credits 8 octets after each DATA",
    "No DATA frame exceeds the window; the whole response arrives",
)
def c_6_9_1_4(cfg):
    c = open_conn(cfg, settings=((INITIAL_WINDOW_SIZE, 8),))
    c.auto_window = False
    c.headers(1, req(c))
    body = bytearray()
    window = 8
    frames = 0
    deadline = c.deadline(5)
    while True:
        ev = c.next_event(deadline)
        if ev in (Event.CLOSED, Event.TIMEOUT):
            raise Fail("after %d body bytes: %s (after: %s)" % (len(body), ev, c.seen_text()))
        if ev.type == GOAWAY or ev.type == RST_STREAM and ev.stream == 1:
            raise Fail("after %d body bytes: %s" % (len(body), ev))
        if ev.stream != 1:
            continue
        if ev.type == DATA:
            frames += 1
            if len(ev.payload) > window:
                raise Fail("DATA of %d octets with a window of %d" % (len(ev.payload), window))
            window -= len(ev.payload)
            body += ev.payload
            if ev.payload and not ev.flags & END_STREAM:
                c.window_update(1, len(ev.payload))
                window += len(ev.payload)
        if ev.type in (DATA, HEADERS) and ev.flags & END_STREAM:
            break
    if frames < 2 and len(body) > 8:
        raise Fail("%d body bytes in %d DATA frame(s)" % (len(body), frames))
    return "%d body bytes in %d DATA frames, none over the window" % (len(body), frames)


# 6.9.2 Initial Flow-Control Window Size


@case(
    "6.9.2/1",
    "Changes SETTINGS_INITIAL_WINDOW_SIZE after sending HEADERS frame",
    "The open stream's window is adjusted: a DATA frame of 1 octet",
)
def c_6_9_2_1(cfg):
    if server_data_length(cfg) < 1:
        raise Skip("GET %s has an empty body" % cfg.path)
    c = open_conn(cfg)
    c.auto_window = False
    c.settings((INITIAL_WINDOW_SIZE, 0))
    expect_settings_ack(c)
    c.headers(1, req(c))
    c.settings((INITIAL_WINDOW_SIZE, 1))
    f = expect_data(c, 1)
    if len(f.payload) != 1:
        raise Fail("expected DATA of 1 octet; got %s" % f)
    return str(f)


@case(
    "6.9.2/2",
    "Sends a SETTINGS frame for window size to be negative",
    "The negative window is tracked: after WINDOW_UPDATE(2) the next DATA is 1 octet",
)
def c_6_9_2_2(cfg):
    if server_data_length(cfg) < 5:
        raise Skip("GET %s has a body under 5 octets" % cfg.path)
    c = open_conn(cfg)
    c.auto_window = False
    c.settings((INITIAL_WINDOW_SIZE, 3))
    expect_settings_ack(c)
    c.headers(1, req(c))
    expect_data(c, 1)
    c.settings((INITIAL_WINDOW_SIZE, 2))
    expect_settings_ack(c)
    c.window_update(1, 2)
    f = expect_data(c, 1)
    if len(f.payload) != 1:
        raise Fail("expected DATA of 1 octet; got %s" % f)
    return str(f)


@case(
    "6.9.2/3",
    "Sends a SETTINGS_INITIAL_WINDOW_SIZE settings with an exceeded maximum window size value",
    "Connection error FLOW_CONTROL_ERROR",
)
def c_6_9_2_3(cfg):
    c = open_conn(cfg)
    c.send(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + b"\x00\x04\x80\x00\x00\x00")
    return expect_connection_error(c, FLOW_CONTROL_ERROR)


# 6.10 CONTINUATION


@case(
    "6.10/1",
    "Sends multiple CONTINUATION frames preceded by a HEADERS frame",
    "Accepted: the request gets a response",
)
def c_6_10_1(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_headers=False)
    c.continuation(1, c.block(dummy()), end_headers=False)
    c.continuation(1, c.block(dummy()))
    return expect_headers(c, 1)


@case(
    "6.10/2",
    "Sends a CONTINUATION frame followed by any frame other than CONTINUATION",
    "Connection error PROTOCOL_ERROR",
)
def c_6_10_2(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "POST"), end_stream=False, end_headers=False)
    c.continuation(1, c.block(dummy()), end_headers=False)
    c.data(1, b"test")
    return expect_connection_error(c, PROTOCOL_ERROR)


@case("6.10/3", "Sends a CONTINUATION frame with 0x0 stream identifier", "Connection error PROTOCOL_ERROR")
def c_6_10_3(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_headers=False)
    c.continuation(0, c.block(dummy()))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.10/4",
    "Sends a CONTINUATION frame preceded by a HEADERS frame with END_HEADERS flag",
    "Connection error PROTOCOL_ERROR",
)
def c_6_10_4(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c))
    c.continuation(1, c.block(dummy()))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.10/5",
    "Sends a CONTINUATION frame preceded by a CONTINUATION frame with END_HEADERS flag",
    "Connection error PROTOCOL_ERROR",
)
def c_6_10_5(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_headers=False)
    c.continuation(1, c.block(dummy()))
    c.continuation(1, c.block(dummy()))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.10/6",
    "Sends a CONTINUATION frame preceded by a DATA frame",
    "Connection error PROTOCOL_ERROR",
)
def c_6_10_6(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "POST"), end_stream=False)
    c.data(1, b"test", end_stream=False)
    c.continuation(1, c.block(dummy()))
    return expect_connection_error(c, PROTOCOL_ERROR)


@case(
    "6.10/7",
    "Sends a CONTINUATION frame on a different stream than the HEADERS",
    "Connection error PROTOCOL_ERROR",
)
def c_6_10_7(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_headers=False)
    c.continuation(3, c.block(dummy()))
    return expect_connection_error(c, PROTOCOL_ERROR)


# 7 Error Codes


@case("7/1", "Sends a GOAWAY frame with unknown error code", "No special behaviour: PING answered (or close)")
def c_7_1(cfg):
    c = open_conn(cfg)
    c.send_frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0xFF))
    c.ping(PING_DATA)
    return expect_ping_ack_or_close(c, PING_DATA)


@case(
    "7/2",
    "Sends a RST_STREAM frame with unknown error code",
    "No special behaviour: PING answered (or close)",
)
def c_7_2(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "POST"), end_stream=False)
    c.rst(1, 0xFF)
    c.ping(PING_DATA)
    return expect_ping_ack_or_close(c, PING_DATA)


# 8.1 HTTP Request/Response Exchange


def check_echo(c, r, body):
    if c.cfg.echo and bytes(r.body) != body:
        raise Fail("echo differs: %d bytes back for %d sent" % (len(r.body), len(body)))


@case("8.1/1", "Sends a second HEADERS frame without the END_STREAM flag", "Stream error PROTOCOL_ERROR")
def c_8_1_1(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "POST"), end_stream=False)
    c.data(1, b"test", end_stream=False)
    c.headers(1, [("x-test", "ok")], end_stream=False)
    return expect_stream_error(c, 1, PROTOCOL_ERROR)


@case("8.1/2", "Sends a GET request", "A complete response")
def c_8_1_2(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c))
    r = get_response(c, 1)
    if not r.status or not r.status.isdigit():
        raise Fail("bad :status %r" % r.status)
    return "%s with %d body bytes" % (r.status, len(r.body))


@case("8.1/3", "Sends a HEAD request", "A response without content")
def c_8_1_3(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "HEAD"))
    r = get_response(c, 1)
    if r.body:
        raise Fail("HEAD response with %d body bytes" % len(r.body))
    return "%s, no content" % r.status


@case("8.1/4", "Sends a POST request with a body", "A complete response (the echo, with --echo)")
def c_8_1_4(cfg):
    c = open_conn(cfg)
    body = b"hello, conformance"
    c.headers(1, req(c, "POST", extra=[("content-length", str(len(body)))]), end_stream=False)
    c.data(1, body[:5], end_stream=False)
    c.data(1, body[5:])
    r = get_response(c, 1)
    check_echo(c, r, body)
    return "%s with %d body bytes" % (r.status, len(r.body))


@case("8.1/5", "Sends a POST request with trailers", "A complete response (the echo, with --echo)")
def c_8_1_5(cfg):
    c = open_conn(cfg)
    body = b"body before trailers"
    c.headers(1, req(c, "POST"), end_stream=False)
    c.data(1, body, end_stream=False)
    c.headers(1, [("x-trailer", "ok")])
    r = get_response(c, 1)
    check_echo(c, r, body)
    return "%s with %d body bytes" % (r.status, len(r.body))


# 8.1.2 HTTP Header Fields


def malformed(cfg, headers, end_stream=True, body=None):
    c = open_conn(cfg)
    c.headers(1, headers(c), end_stream=end_stream and body is None)
    if body is not None:
        for i, part in enumerate(body):
            c.data(1, part, end_stream=i == len(body) - 1)
    return expect_stream_error(c, 1, PROTOCOL_ERROR)


@case(
    "8.1.2/1",
    "Sends a HEADERS frame that contains the header field name in uppercase letters",
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_1(cfg):
    return malformed(cfg, lambda c: req(c, extra=[("X-TEST", "ok")]))


@case(
    "8.1.2.1/1",
    "Sends a HEADERS frame that contains a unknown pseudo-header field",
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_1_1(cfg):
    return malformed(cfg, lambda c: req(c, extra=[(":test", "ok")]))


@case(
    "8.1.2.1/2",
    "Sends a HEADERS frame that contains the pseudo-header field defined for response",
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_1_2(cfg):
    return malformed(cfg, lambda c: req(c, extra=[(":status", "200")]))


@case(
    "8.1.2.1/3",
    "Sends a HEADERS frame that contains a pseudo-header field as trailers",
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_1_3(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c, "POST"), end_stream=False)
    c.data(1, b"test", end_stream=False)
    c.headers(1, [(":method", "POST")])
    return expect_stream_error(c, 1, PROTOCOL_ERROR)


@case(
    "8.1.2.1/4",
    "Sends a HEADERS frame with a pseudo-header field after a regular header field",
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_1_4(cfg):
    return malformed(cfg, lambda c: [("x-test", "ok")] + req(c))


@case(
    "8.1.2.2/1",
    "Sends a HEADERS frame that contains the connection-specific header field",
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_2_1(cfg):
    return malformed(cfg, lambda c: req(c, extra=[("connection", "keep-alive")]))


@case(
    "8.1.2.2/2",
    'Sends a HEADERS frame that contains the TE header field with any value other than "trailers"',
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_2_2(cfg):
    return malformed(cfg, lambda c: req(c, extra=[("trailers", "test"), ("te", "trailers, deflate")]))


def without(c, name, method="GET"):
    return [h for h in req(c, method) if h[0] != name]


def doubled(c, name):
    hs = req(c)
    return hs + [h for h in hs if h[0] == name]


@case("8.1.2.3/1", 'Sends a HEADERS frame with empty ":path" pseudo-header field', "Stream error PROTOCOL_ERROR")
def c_8_1_2_3_1(cfg):
    return malformed(cfg, lambda c: without(c, ":path") + [(":path", "")])


@case("8.1.2.3/2", 'Sends a HEADERS frame that omits ":method" pseudo-header field', "Stream error PROTOCOL_ERROR")
def c_8_1_2_3_2(cfg):
    return malformed(cfg, lambda c: without(c, ":method"))


@case("8.1.2.3/3", 'Sends a HEADERS frame that omits ":scheme" pseudo-header field', "Stream error PROTOCOL_ERROR")
def c_8_1_2_3_3(cfg):
    return malformed(cfg, lambda c: without(c, ":scheme"))


@case("8.1.2.3/4", 'Sends a HEADERS frame that omits ":path" pseudo-header field', "Stream error PROTOCOL_ERROR")
def c_8_1_2_3_4(cfg):
    return malformed(cfg, lambda c: without(c, ":path"))


@case(
    "8.1.2.3/5",
    'Sends a HEADERS frame with duplicated ":method" pseudo-header field',
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_3_5(cfg):
    return malformed(cfg, lambda c: doubled(c, ":method"))


@case(
    "8.1.2.3/6",
    'Sends a HEADERS frame with duplicated ":scheme" pseudo-header field',
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_3_6(cfg):
    return malformed(cfg, lambda c: doubled(c, ":scheme"))


@case(
    "8.1.2.3/7",
    'Sends a HEADERS frame with duplicated ":path" pseudo-header field',
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_3_7(cfg):
    return malformed(cfg, lambda c: doubled(c, ":path"))


@case(
    "8.1.2.6/1",
    'Sends a HEADERS frame with the "content-length" header field which does not equal the DATA frame payload length',
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_6_1(cfg):
    return malformed(cfg, lambda c: req(c, "POST", extra=[("content-length", "1")]), body=[b"test"])


@case(
    "8.1.2.6/2",
    'Sends a HEADERS frame with the "content-length" header field which does not equal the sum of the multiple DATA frames payload length',
    "Stream error PROTOCOL_ERROR",
)
def c_8_1_2_6_2(cfg):
    return malformed(cfg, lambda c: req(c, "POST", extra=[("content-length", "1")]), body=[b"test", b"test"])


# 8.2 Server Push


@case("8.2/1", "Sends a PUSH_PROMISE frame", "Connection error PROTOCOL_ERROR")
def c_8_2_1(cfg):
    c = open_conn(cfg)
    c.headers(1, req(c), end_stream=False)
    c.send_frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + c.block(req(c)))
    return expect_connection_error(c, PROTOCOL_ERROR)


# HPACK (RFC 7541)


def hpack_positive(cfg, build):
    c = open_conn(cfg)
    c.headers(1, None, block=build(c))
    r = get_response(c, 1)
    return "answered %s" % r.status


def hpack_base(c):
    """The request's pseudo-headers as literals (no dynamic table use)."""
    return c.enc.encode(req(c))


@case(
    "hpack/2.3/1",
    "Sends literals with incremental indexing (Huffman and not), then refers to them by dynamic index",
    "Decoded: both requests are answered",
)
def c_hpack_2_3_1(cfg):
    c = open_conn(cfg)
    hs = req(c)
    blk = c.enc.indexed(2) + c.enc.literal(":scheme", hs[1][1], "incremental")
    blk += c.enc.literal(":path", cfg.path, "incremental", huffman=True)
    blk += c.enc.literal(":authority", cfg.authority, "incremental", huffman=True)
    blk += c.enc.literal("x-custom-name", "custom-value", "incremental")
    c.headers(1, None, block=blk)
    get_response(c, 1)
    # Dynamic table now (newest first): x-custom-name 62, :authority 63, :path 64, :scheme 65.
    blk = c.enc.indexed(2) + c.enc.indexed(65) + c.enc.indexed(64) + c.enc.indexed(63) + c.enc.indexed(62)
    c.headers(3, None, block=blk)
    r = get_response(c, 3)
    return "answered %s" % r.status


@case(
    "hpack/2.3/2",
    "Sends never-indexed and without-indexing literals with Huffman-coded new names",
    "Decoded: the request is answered",
)
def c_hpack_2_3_2(cfg):
    def build(c):
        return (
            hpack_base(c)
            + c.enc.literal("x-never", "secret", "never", huffman=True)
            + c.enc.literal("x-plain", "value", "without", huffman=True)
        )

    return hpack_positive(cfg, build)


def hpack_negative(cfg, build):
    c = open_conn(cfg)
    c.headers(1, None, block=build(c))
    return expect_connection_error(c, COMPRESSION_ERROR)


@case(
    "hpack/2.3.3/1",
    "Sends a indexed header field representation with invalid index",
    "Connection error COMPRESSION_ERROR",
)
def c_hpack_2_3_3_1(cfg):
    return hpack_negative(cfg, lambda c: hpack_base(c) + c.enc.indexed(70))


@case(
    "hpack/2.3.3/2",
    "Sends a literal header field representation with invalid index",
    "Connection error COMPRESSION_ERROR",
)
def c_hpack_2_3_3_2(cfg):
    return hpack_negative(cfg, lambda c: hpack_base(c) + encode_int(70, 6, 0x40) + encode_str("x"))


@case(
    "hpack/4.2/1",
    "Sends a dynamic table size update at the end of header block",
    "Connection error COMPRESSION_ERROR",
)
def c_hpack_4_2_1(cfg):
    return hpack_negative(cfg, lambda c: hpack_base(c) + encode_int(4096, 5, 0x20))


@case(
    "hpack/5.2/1",
    "Sends a Huffman-encoded string literal representation with padding longer than 7 bits",
    "Connection error COMPRESSION_ERROR",
)
def c_hpack_5_2_1(cfg):
    # "a" (00011) then 11 bits of EOS prefix.
    return hpack_negative(cfg, lambda c: hpack_base(c) + b"\x00" + encode_str("x-test") + b"\x82\x1f\xff")


@case(
    "hpack/5.2/2",
    "Sends a Huffman-encoded string literal representation padded by zero",
    "Connection error COMPRESSION_ERROR",
)
def c_hpack_5_2_2(cfg):
    # "a" (00011) then 000.
    return hpack_negative(cfg, lambda c: hpack_base(c) + b"\x00" + encode_str("x-test") + b"\x81\x18")


@case(
    "hpack/5.2/3",
    "Sends a Huffman-encoded string literal representation containing the EOS symbol",
    "Connection error COMPRESSION_ERROR",
)
def c_hpack_5_2_3(cfg):
    return hpack_negative(cfg, lambda c: hpack_base(c) + b"\x00" + encode_str("x-test") + b"\x84\xff\xff\xff\xff")


@case(
    "hpack/6.1/1",
    "Sends a indexed header field representation with index 0",
    "Connection error COMPRESSION_ERROR",
)
def c_hpack_6_1_1(cfg):
    return hpack_negative(cfg, lambda c: hpack_base(c) + b"\x80")


@case(
    "hpack/6.3/1",
    "Sends a dynamic table size update larger than the value of SETTINGS_HEADER_TABLE_SIZE",
    "Connection error COMPRESSION_ERROR",
)
def c_hpack_6_3_1(cfg):
    limit = 4096

    def build(c):
        return encode_int(c.peer_settings.get(HEADER_TABLE_SIZE, limit) + 1, 5, 0x20) + hpack_base(c)

    return hpack_negative(cfg, build)


@case(
    "hpack/6.3/2",
    "Sends dynamic table size updates (0, then 4096) at the start of a header block",
    "Decoded: the request is answered",
)
def c_hpack_6_3_2(cfg):
    return hpack_positive(cfg, lambda c: c.enc.size_update(0) + c.enc.size_update(4096) + hpack_base(c))



# --------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------


def run_case(cfg, cs):
    start = time.monotonic()
    try:
        detail = cs.fn(cfg) or ""
        result = "PASS"
    except Skip as e:
        result, detail = "SKIP", str(e)
    except Fail as e:
        result, detail = "FAIL", str(e)
    except SetupError as e:
        result, detail = "FAIL", "setup: %s" % e
    except Exception as e:  # a bug in the checker: report it as a failure
        result = "FAIL"
        detail = "checker error: %s: %s" % (type(e).__name__, e)
        if cfg.verbose:
            traceback.print_exc()
    return {
        "id": cs.id,
        "description": cs.desc,
        "expected": cs.expect,
        "result": result,
        "detail": detail,
        "seconds": round(time.monotonic() - start, 3),
    }


def selected(cases, patterns):
    if not patterns:
        return cases
    out = []
    for cs in cases:
        for p in patterns:
            if cs.id == p or cs.id.startswith(p if p.endswith("/") else p + "/"):
                out.append(cs)
                break
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="h2spec-style HTTP/2 server conformance checker (stdlib only)")
    ap.add_argument("host", nargs="?", default="127.0.0.1")
    ap.add_argument("port", nargs="?", type=int, default=443)
    ap.add_argument("--no-tls", dest="tls", action="store_false", help="cleartext HTTP/2 (prior knowledge)")
    ap.add_argument("--cafile", help="verify the server against this CA (PEM); default: no verification")
    ap.add_argument("--sni", help="TLS server name (and name checked with --cafile)")
    ap.add_argument("--authority", help=":authority to send (default HOST:PORT)")
    ap.add_argument("--path", default="/", help="request path (default /)")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per wait (default 2)")
    ap.add_argument("--echo", action="store_true", help="the server echoes POST bodies: check them")
    ap.add_argument("--lenient", action="store_true", help="h2spec's leniency: wrong error codes pass if the connection closes")
    ap.add_argument("--cases", help="comma-separated case ids or section prefixes (e.g. 6.5,hpack/)")
    ap.add_argument("--json", action="store_true", help="print a JSON report")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="log frames to stderr")
    cfg = ap.parse_args(argv)
    if cfg.authority is None:
        cfg.authority = "%s:%d" % (cfg.sni or cfg.host, cfg.port)
    patterns = [p.strip() for p in cfg.cases.split(",")] if cfg.cases else []
    cases = selected(CASES, patterns)
    if cfg.list:
        for cs in cases:
            print("%-14s %s\n%14s -> %s" % (cs.id, cs.desc, "", cs.expect))
        print("%d cases" % len(cases))
        return 0
    if not cases:
        print("no case matches %s" % cfg.cases, file=sys.stderr)
        return 2
    results = []
    for cs in cases:
        if cfg.verbose:
            log("== %s %s" % (cs.id, cs.desc))
        r = run_case(cfg, cs)
        results.append(r)
        if not cfg.json:
            line = "%s  %-14s %s" % (r["result"], r["id"], r["description"])
            if r["result"] == "PASS":
                line += " -> %s" % r["detail"]
            elif r["result"] == "FAIL":
                line += "\n      expected: %s\n      actual:   %s" % (r["expected"], r["detail"])
            else:
                line += " (%s)" % r["detail"]
            print(line, flush=True)
    counts = {k: sum(1 for r in results if r["result"] == k) for k in ("PASS", "FAIL", "SKIP")}
    summary = "%d passed, %d failed, %d skipped" % (counts["PASS"], counts["FAIL"], counts["SKIP"])
    if cfg.json:
        print(
            json.dumps(
                {
                    "target": "%s://%s:%d%s" % ("https" if cfg.tls else "http", cfg.host, cfg.port, cfg.path),
                    "cases": results,
                    "passed": counts["PASS"],
                    "failed": counts["FAIL"],
                    "skipped": counts["SKIP"],
                    "summary": summary,
                },
                indent=1,
            )
        )
    else:
        print(summary)
    return 0 if counts["FAIL"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
