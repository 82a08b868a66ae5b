#!/usr/bin/env python3
"""Third-party WebSocket peer for the conformance tests (Python `websockets`).

Run with the system python3 (Debian's python3-websockets, 10.4 or later).

Server mode (`server --port P [--cert C --key K] [--subprotocols a,b]`):
listens on 127.0.0.1:P (TLS with the given PEM leaf and key), selects a
subprotocol from its list when the client offers one, and prints "ready"
once listening. Every connection logs one JSON line per event to stdout.
Endpoints, by request path:

  /echo (and any other path)  echo every message back (text as text, binary as binary)
  /close/<code>               close at once with <code> (reason "bye")
  /frag                       send the text message "alpha-beta-gamma" as three
                              fragments ("alpha-", "beta-", "gamma"), then echo
  /fragbin                    send bytes 0..299 as a binary message of three
                              fragments (100 bytes each), then echo
  /big/<n>                    send a binary message of n bytes (byte i = i % 251),
                              then echo

Client mode (`client --url U [--subprotocol S] [--cafile F] [--close-code C]
--steps JSON|-`, `-` reading the JSON from stdin): connects (10 s bound on everything), runs the steps, prints
one JSON line per step and a final {"closed": ...} line, and exits 0. Steps:

  {"text": "hi"}                 send a text message, wait for the echo
  {"binary_hex": "00ff"}         send a binary message, wait for the echo
  {"big": n}                     send n bytes (byte i = i % 251) as binary
  {"frag": ["a", "b"]}           send one text message in fragments
  {"fragbin_hex": ["00", "ff"]}  send one binary message in fragments

Each step's line: {"step": i, "type": "text"|"binary", "sent_len": n,
"got_len": m, "equal": bool, "head": first 64 chars of text / hex}. The
final line: {"closed": true, "subprotocol": negotiated, "close_code": the
code of the server's answering Close, "sent_code": ours}.
"""

import argparse
import asyncio
import json
import signal
import ssl
import sys

import websockets


def out(obj):
    print(json.dumps(obj), flush=True)


def pattern(n):
    return bytes(i % 251 for i in range(n))


# ----- server -------------------------------------------------------------


async def serve_conn(ws, path=None):
    path = path if path is not None else ws.path
    out({"event": "open", "path": path, "subprotocol": ws.subprotocol})
    try:
        if path.startswith("/close/"):
            code = int(path.split("/")[2])
            await ws.close(code=code, reason="bye")
            out({"event": "closed_by_us", "code": code})
            return
        if path == "/frag":
            await ws.send(["alpha-", "beta-", "gamma"])
        elif path == "/fragbin":
            data = bytes(i % 256 for i in range(300))
            await ws.send([data[0:100], data[100:200], data[200:300]])
        elif path.startswith("/big/"):
            await ws.send(pattern(int(path.split("/")[2])))
        async for msg in ws:
            out({"event": "message", "type": "text" if isinstance(msg, str) else "binary",
                 "len": len(msg)})
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    out({"event": "close", "code": ws.close_code, "reason": ws.close_reason})


async def server(args):
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
    subs = [s for s in (args.subprotocols or "").split(",") if s] or None
    async with websockets.serve(serve_conn, "127.0.0.1", args.port, ssl=ctx,
                                subprotocols=subs, max_size=None):
        print("ready", flush=True)
        await asyncio.Future()


# ----- client -------------------------------------------------------------


def step_message(step):
    """(message to send, expected echo, type)"""
    if "text" in step:
        return step["text"], step["text"], "text"
    if "binary_hex" in step:
        b = bytes.fromhex(step["binary_hex"])
        return b, b, "binary"
    if "big" in step:
        b = pattern(step["big"])
        return b, b, "binary"
    if "frag" in step:
        return list(step["frag"]), "".join(step["frag"]), "text"
    if "fragbin_hex" in step:
        parts = [bytes.fromhex(h) for h in step["fragbin_hex"]]
        return parts, b"".join(parts), "binary"
    raise SystemExit("unknown step %r" % step)


async def client(args):
    ctx = None
    if args.url.startswith("wss:"):
        ctx = ssl.create_default_context(cafile=args.cafile)
    subs = [args.subprotocol] if args.subprotocol else None
    steps = json.loads(sys.stdin.read() if args.steps == "-" else (args.steps or "[]"))
    async with websockets.connect(args.url, ssl=ctx, subprotocols=subs,
                                  max_size=None, open_timeout=10,
                                  close_timeout=10) as ws:
        for i, step in enumerate(steps):
            msg, expect, kind = step_message(step)
            await ws.send(msg)
            got = await ws.recv()
            got_kind = "text" if isinstance(got, str) else "binary"
            head = got[:64] if isinstance(got, str) else got[:32].hex()
            out({"step": i, "type": got_kind, "sent_len": len(expect),
                 "got_len": len(got), "equal": got == expect and got_kind == kind,
                 "head": head})
        await ws.close(code=args.close_code, reason="done")
        out({"closed": True, "subprotocol": ws.subprotocol,
             "close_code": ws.close_code, "sent_code": args.close_code})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["server", "client"])
    ap.add_argument("--port", type=int)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--subprotocols")
    ap.add_argument("--url")
    ap.add_argument("--subprotocol")
    ap.add_argument("--cafile")
    ap.add_argument("--close-code", type=int, default=1000)
    ap.add_argument("--steps")
    args = ap.parse_args()
    if args.mode == "server":
        try:
            asyncio.run(server(args))
        except OSError as e:
            print("server: %s" % e, file=sys.stderr, flush=True)
            sys.exit(2)
    else:
        # A hard bound on the whole run: a hang fails the test, never blocks it.
        signal.signal(signal.SIGALRM, lambda *_: sys.exit("ws_peer client: timeout"))
        signal.alarm(20)
        asyncio.run(asyncio.wait_for(client(args), 15))


if __name__ == "__main__":
    main()
