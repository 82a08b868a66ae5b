//! WebSocket server conformance, Autobahn|Testsuite style, in memory.
//!
//! Autobahn's `wstest` is Python 2 only (autobahntestsuite 25.10.1 on PyPI
//! still is), and no Python 2 is installable here, so this is a documented
//! equivalent: a table of cases in the spirit of Autobahn's sections 1–7
//! (framing, pings, reserved bits, opcodes, fragmentation, UTF-8, close).
//! Each case feeds client frames (masked, in the given chunking) to our
//! server — an h1 server streamtype with `ws_subprotocol` whose application
//! echoes every message back keeping SOM/EOM — through the sans-IO engine,
//! no sockets, and checks Autobahn's expected outcome: the messages and
//! control frames the server sends back, then either its close code (one of
//! the codes Autobahn allows) or, for cases that end cleanly, the answer to
//! our closing handshake (1000). The results table is printed (`cargo test
//! -p conformance --test ws_conformance -- --nocapture`) and every case must
//! pass. docs/websocket.md maps the cases to Autobahn's numbering.

use ss_core::{Action, ConnId, Engine, EngineConfig, Event, Flags, Policy, StreamId};
use std::collections::VecDeque;
use std::time::Instant;

const POLICY: &str = r#"{
  "s": [
    {"srv": {"server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "h1",
             "ws_subprotocol": "echo"}},
    {"srvbin": {"server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "h1",
                "ws_subprotocol": "echo", "ws_binary": true}}
  ]
}"#;

const OP_CONT: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BIN: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// What the server sent back, message by message.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Msg {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Pong(Vec<u8>),
    Ping(Vec<u8>),
    /// A frame the parser could not place (a continuation outside a message...).
    Odd(String),
}

impl Msg {
    fn short(&self) -> String {
        let d = |k: &str, p: &[u8]| format!("{k}({})", p.len());
        match self {
            Msg::Text(p) => d("text", p),
            Msg::Binary(p) => d("bin", p),
            Msg::Pong(p) => d("pong", p),
            Msg::Ping(p) => d("ping", p),
            Msg::Odd(s) => s.clone(),
        }
    }
}

/// One client frame.
struct Frame {
    fin: bool,
    rsv: u8,
    op: u8,
    payload: Vec<u8>,
    /// Masked (clients must mask).
    masked: bool,
}

fn fr(fin: bool, op: u8, payload: &[u8]) -> Frame {
    Frame {
        fin,
        rsv: 0,
        op,
        payload: payload.to_vec(),
        masked: true,
    }
}

fn text(p: &[u8]) -> Frame {
    fr(true, OP_TEXT, p)
}

fn bin(p: &[u8]) -> Frame {
    fr(true, OP_BIN, p)
}

fn close(code: u16, reason: &[u8]) -> Frame {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    fr(true, OP_CLOSE, &p)
}

fn encode(f: &Frame, mask_seed: u8) -> Vec<u8> {
    let mut out = vec![(u8::from(f.fin) << 7) | (f.rsv << 4) | f.op];
    let m = if f.masked { 0x80 } else { 0 };
    let n = f.payload.len();
    if n < 126 {
        out.push(m | n as u8);
    } else if n <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    if f.masked {
        let key = [mask_seed, 0x5a, 0xa5, mask_seed.wrapping_mul(7)];
        out.extend_from_slice(&key);
        out.extend(f.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(&f.payload);
    }
    out
}

/// How the input is cut before it is fed.
#[derive(Clone, Copy)]
enum Chop {
    /// All frames in one `handle_data`.
    Whole,
    /// One `handle_data` per frame.
    PerFrame,
    /// Pieces of this many bytes.
    Bytes(usize),
}

/// What Autobahn expects.
struct Expect {
    /// Messages / control frames before any Close.
    msgs: Vec<Msg>,
    /// `None`: the connection stays open and answers our Close 1000 with
    /// 1000 (a clean end). `Some(codes)`: the server closes with one of these.
    close: Option<Vec<u16>>,
}

fn echo(msgs: Vec<Msg>) -> Expect {
    Expect { msgs, close: None }
}

fn fail(msgs: Vec<Msg>, codes: &[u16]) -> Expect {
    Expect {
        msgs,
        close: Some(codes.to_vec()),
    }
}

struct Case {
    id: String,
    what: String,
    frames: Vec<Frame>,
    chop: Chop,
    expect: Expect,
}

fn case(id: &str, what: &str, frames: Vec<Frame>, expect: Expect) -> Case {
    Case {
        id: id.into(),
        what: what.into(),
        frames,
        chop: Chop::PerFrame,
        expect,
    }
}

/// What the server did with a case's input.
#[derive(Debug, PartialEq, Eq)]
struct Got {
    msgs: Vec<Msg>,
    /// The code of the server's Close frame, if it sent one.
    close: Option<u16>,
    /// The server closed the connection.
    closed: bool,
}

impl Got {
    fn show(&self) -> String {
        let mut s: Vec<String> = self.msgs.iter().map(Msg::short).collect();
        if let Some(c) = self.close {
            s.push(format!("close {c}"));
        }
        if !self.closed {
            s.push("open".into());
        }
        s.join(", ")
    }
}

fn show_expect(e: &Expect) -> String {
    let mut s: Vec<String> = e.msgs.iter().map(Msg::short).collect();
    match &e.close {
        None => s.push("clean close 1000".into()),
        Some(codes) => s.push(format!(
            "close {}",
            codes
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        )),
    }
    s.join(", ")
}

/// A server engine with one accepted, upgraded connection.
struct Server {
    e: Engine,
    now: Instant,
    conn: ConnId,
    out: Vec<u8>,
    closed: bool,
    /// The echo application: pieces waiting for `Writable`.
    pending: VecDeque<(Vec<u8>, Flags)>,
    accepted: Option<StreamId>,
}

impl Server {
    fn new(binary: bool) -> Server {
        let p = Policy::parse(POLICY).unwrap();
        let mut e = Engine::new(p, EngineConfig::default());
        let now = Instant::now();
        e.create(now, if binary { "srvbin" } else { "srv" })
            .unwrap();
        let mut listener = None;
        while let Some(a) = e.poll_action() {
            if let Action::Listen { listener: l, .. } = a {
                e.handle_listening(now, l, "127.0.0.1:9");
                listener = Some(l);
            }
        }
        let conn = e.handle_accepted(now, listener.unwrap()).unwrap();
        let mut s = Server {
            e,
            now,
            conn,
            out: vec![],
            closed: false,
            pending: VecDeque::new(),
            accepted: None,
        };
        s.feed(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: echo\r\n\r\n",
        );
        let head = String::from_utf8_lossy(&s.out).into_owned();
        let end = head.find("\r\n\r\n").expect("101 response") + 4;
        assert!(
            head.starts_with("HTTP/1.1 101 ") && head.contains("Sec-WebSocket-Protocol: echo"),
            "{head}"
        );
        s.out.drain(..end);
        s
    }

    fn feed(&mut self, data: &[u8]) {
        self.e.handle_data(self.now, self.conn, data);
        self.pump();
    }

    fn pump(&mut self) {
        loop {
            let mut any = false;
            while let Some(a) = self.e.poll_action() {
                any = true;
                match a {
                    Action::Transmit { conn, data } if conn == self.conn => {
                        self.e.handle_sent(self.now, conn, data.len());
                        self.out.extend_from_slice(&data);
                    }
                    Action::Close { conn } if conn == self.conn => self.closed = true,
                    _ => {}
                }
            }
            while let Some(ev) = self.e.poll_event() {
                any = true;
                match ev {
                    Event::Accepted { stream, .. } => self.accepted = Some(stream),
                    Event::Rx {
                        stream,
                        data,
                        flags,
                    } => {
                        self.pending.push_back((data, flags));
                        let _ = self.e.request_tx(self.now, stream);
                    }
                    Event::Writable { stream, budget } => self.write(stream, budget.max(1)),
                    _ => {}
                }
            }
            if !any {
                break;
            }
        }
    }

    /// Echo pending pieces, at most `budget` bytes, splitting a piece if needed.
    fn write(&mut self, stream: StreamId, mut budget: usize) {
        while let Some((mut data, flags)) = self.pending.pop_front() {
            if data.len() > budget {
                let rest = data.split_off(budget);
                let first = Flags(flags.0 & !Flags::EOM.0);
                let later = Flags(flags.0 & !Flags::SOM.0);
                self.pending.push_front((rest, later));
                if self.e.write(self.now, stream, &data, first).is_err() {
                    self.pending.clear();
                }
                let _ = self.e.request_tx(self.now, stream);
                return;
            }
            budget -= data.len();
            if self.e.write(self.now, stream, &data, flags).is_err() {
                self.pending.clear();
                return;
            }
            if budget == 0 && !self.pending.is_empty() {
                let _ = self.e.request_tx(self.now, stream);
                return;
            }
        }
    }

    /// Parse the server's frames: messages, then its Close code if any.
    fn parse(&self) -> (Vec<Msg>, Option<u16>) {
        let mut msgs = vec![];
        let mut cur: Option<(u8, Vec<u8>)> = None;
        let mut b = &self.out[..];
        while b.len() >= 2 {
            let (fin, op, masked) = (b[0] & 0x80 != 0, b[0] & 0x0f, b[1] & 0x80 != 0);
            if b[0] & 0x70 != 0 || masked {
                msgs.push(Msg::Odd(format!(
                    "bad server frame {:02x}{:02x}",
                    b[0], b[1]
                )));
                break;
            }
            let (len, hl) = match b[1] & 0x7f {
                126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            if b.len() < hl + len {
                msgs.push(Msg::Odd("truncated server frame".into()));
                break;
            }
            let p = b[hl..hl + len].to_vec();
            b = &b[hl + len..];
            match op {
                OP_CLOSE => {
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    return (msgs, Some(code.unwrap_or(1005)));
                }
                OP_PING => msgs.push(Msg::Ping(p)),
                OP_PONG => msgs.push(Msg::Pong(p)),
                OP_TEXT | OP_BIN if cur.is_none() => cur = Some((op, p)),
                OP_CONT if cur.is_some() => {
                    if let Some((_, d)) = cur.as_mut() {
                        d.extend_from_slice(&p);
                    }
                }
                _ => {
                    msgs.push(Msg::Odd(format!("unexpected opcode {op}")));
                    continue;
                }
            }
            if fin && matches!(op, OP_TEXT | OP_BIN | OP_CONT) {
                if let Some((op, d)) = cur.take() {
                    msgs.push(if op == OP_TEXT {
                        Msg::Text(d)
                    } else {
                        Msg::Binary(d)
                    });
                }
            }
        }
        (msgs, None)
    }
}

fn run(c: &Case) -> Got {
    let binary = c.frames.iter().any(|f| f.op == OP_BIN);
    let mut s = Server::new(binary);
    let bytes: Vec<Vec<u8>> = c
        .frames
        .iter()
        .enumerate()
        .map(|(i, f)| encode(f, i as u8))
        .collect();
    match c.chop {
        Chop::Whole => s.feed(&bytes.concat()),
        Chop::PerFrame => {
            for b in &bytes {
                s.feed(b);
            }
        }
        Chop::Bytes(n) => {
            for piece in bytes.concat().chunks(n) {
                s.feed(piece);
            }
        }
    }
    let (msgs, code) = s.parse();
    if code.is_none() && !s.closed {
        // The case ended without the server closing: end it cleanly.
        s.feed(&encode(&close(1000, b""), 0xee));
    }
    let (msgs2, code) = s.parse();
    debug_assert!(msgs2.len() >= msgs.len());
    Got {
        msgs: msgs2,
        close: code,
        closed: s.closed,
    }
}

fn passes(e: &Expect, g: &Got) -> bool {
    let codes = e.close.clone().unwrap_or_else(|| vec![1000]);
    g.msgs == e.msgs && g.close.is_some_and(|c| codes.contains(&c)) && g.closed
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn text_of(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

use Msg::{Binary as B, Pong, Text as T};

fn cases() -> Vec<Case> {
    let mut v = vec![];
    // ----- 1: framing: text and binary of the boundary sizes -----
    for (i, n) in [0usize, 125, 126, 127, 128, 65535, 65536]
        .iter()
        .enumerate()
    {
        v.push(case(
            &format!("1.1.{}", i + 1),
            &format!("text, {n} bytes"),
            vec![text(&text_of(*n))],
            echo(vec![T(text_of(*n))]),
        ));
        v.push(case(
            &format!("1.2.{}", i + 1),
            &format!("binary, {n} bytes"),
            vec![bin(&pattern(*n))],
            echo(vec![B(pattern(*n))]),
        ));
    }
    let mut c = case(
        "1.1.8",
        "text 65536 bytes fed in 997-byte chunks",
        vec![text(&text_of(65536))],
        echo(vec![T(text_of(65536))]),
    );
    c.chop = Chop::Bytes(997);
    v.push(c);
    let mut c = case(
        "1.2.8",
        "binary 65536 bytes fed in 997-byte chunks",
        vec![bin(&pattern(65536))],
        echo(vec![B(pattern(65536))]),
    );
    c.chop = Chop::Bytes(997);
    v.push(c);
    let big = 16 << 20;
    let mut c = case(
        "9.2.6",
        "binary 16 MiB fed in 64 KiB chunks",
        vec![bin(&pattern(big))],
        echo(vec![B(pattern(big))]),
    );
    c.chop = Chop::Bytes(64 << 10);
    v.push(c);
    // ----- 2: pings and pongs -----
    let p125 = pattern(125);
    v.push(case(
        "2.1",
        "ping, no payload",
        vec![fr(true, OP_PING, b"")],
        echo(vec![Pong(vec![])]),
    ));
    v.push(case(
        "2.2",
        "ping, 125-byte text payload",
        vec![fr(true, OP_PING, &text_of(125))],
        echo(vec![Pong(text_of(125))]),
    ));
    v.push(case(
        "2.3",
        "ping, binary payload",
        vec![fr(
            true,
            OP_PING,
            &[0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0, 0xff],
        )],
        echo(vec![Pong(vec![0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0, 0xff])]),
    ));
    v.push(case(
        "2.4",
        "ping, 125-byte binary payload",
        vec![fr(true, OP_PING, &p125)],
        echo(vec![Pong(p125.clone())]),
    ));
    v.push(case(
        "2.5",
        "ping, 126-byte payload (too long)",
        vec![fr(true, OP_PING, &pattern(126))],
        fail(vec![], &[1002]),
    ));
    let mut c = case(
        "2.6",
        "ping, 125 bytes fed one byte at a time",
        vec![fr(true, OP_PING, &p125)],
        echo(vec![Pong(p125.clone())]),
    );
    c.chop = Chop::Bytes(1);
    v.push(c);
    v.push(case(
        "2.7",
        "unsolicited pong, no payload",
        vec![fr(true, OP_PONG, b"")],
        echo(vec![]),
    ));
    v.push(case(
        "2.8",
        "unsolicited pong with payload",
        vec![fr(true, OP_PONG, b"unsolicited pong payload")],
        echo(vec![]),
    ));
    v.push(case(
        "2.9",
        "unsolicited pong, then ping",
        vec![fr(true, OP_PONG, b"x"), fr(true, OP_PING, b"ping payload")],
        echo(vec![Pong(b"ping payload".to_vec())]),
    ));
    let mut c = case(
        "2.10",
        "10 pings in one read",
        (0..10)
            .map(|i| fr(true, OP_PING, format!("p{i}").as_bytes()))
            .collect(),
        echo(
            (0..10)
                .map(|i| Pong(format!("p{i}").into_bytes()))
                .collect(),
        ),
    );
    c.chop = Chop::Whole;
    v.push(c);
    // ----- 3: reserved bits -----
    for (i, rsv) in [4u8, 2, 1].iter().enumerate() {
        let mut f = text(b"Hello, world!");
        f.rsv = *rsv;
        v.push(case(
            &format!("3.{}", i + 1),
            &format!("RSV{} set on text", i + 1),
            vec![text(b"first"), f, fr(true, OP_PING, b"after")],
            fail(vec![T(b"first".to_vec())], &[1002]),
        ));
    }
    let mut f = bin(&[0xff; 8]);
    f.rsv = 5;
    v.push(case(
        "3.5",
        "RSV1+RSV3 on binary",
        vec![f],
        fail(vec![], &[1002]),
    ));
    let mut f = fr(true, OP_PING, b"ping");
    f.rsv = 6;
    v.push(case("3.6", "RSV on ping", vec![f], fail(vec![], &[1002])));
    let mut f = close(1000, b"");
    f.rsv = 7;
    v.push(case("3.7", "RSV on close", vec![f], fail(vec![], &[1002])));
    // ----- 4: reserved opcodes -----
    for (i, op) in [3u8, 4, 5, 6, 7].iter().enumerate() {
        v.push(case(
            &format!("4.1.{}", i + 1),
            &format!("reserved data opcode {op}"),
            vec![text(b"before"), fr(true, *op, b"reserved"), text(b"after")],
            fail(vec![T(b"before".to_vec())], &[1002]),
        ));
    }
    for (i, op) in [11u8, 12, 13, 14, 15].iter().enumerate() {
        v.push(case(
            &format!("4.2.{}", i + 1),
            &format!("reserved control opcode {op}"),
            vec![text(b"before"), fr(true, *op, b"reserved"), text(b"after")],
            fail(vec![T(b"before".to_vec())], &[1002]),
        ));
    }
    // ----- 5: fragmentation -----
    v.push(case(
        "5.1",
        "ping in two fragments",
        vec![fr(false, OP_PING, b"frag1"), fr(true, OP_CONT, b"frag2")],
        fail(vec![], &[1002]),
    ));
    v.push(case(
        "5.2",
        "pong in two fragments",
        vec![fr(false, OP_PONG, b"frag1"), fr(true, OP_CONT, b"frag2")],
        fail(vec![], &[1002]),
    ));
    for (id, chop) in [("5.3", Chop::PerFrame), ("5.4", Chop::Bytes(1))] {
        let mut c = case(
            id,
            "text in two fragments",
            vec![fr(false, OP_TEXT, b"frag1"), fr(true, OP_CONT, b"frag2")],
            echo(vec![T(b"frag1frag2".to_vec())]),
        );
        c.chop = chop;
        v.push(c);
    }
    let mut c = case(
        "5.6",
        "text in two fragments, a ping between them",
        vec![
            fr(false, OP_TEXT, b"frag1"),
            fr(true, OP_PING, b"ping"),
            fr(true, OP_CONT, b"frag2"),
        ],
        echo(vec![Pong(b"ping".to_vec()), T(b"frag1frag2".to_vec())]),
    );
    c.chop = Chop::Whole;
    v.push(c);
    let mut c = case(
        "5.8",
        "same, fed one byte at a time",
        vec![
            fr(false, OP_TEXT, b"frag1"),
            fr(true, OP_PING, b"ping"),
            fr(true, OP_CONT, b"frag2"),
        ],
        echo(vec![Pong(b"ping".to_vec()), T(b"frag1frag2".to_vec())]),
    );
    c.chop = Chop::Bytes(1);
    v.push(c);
    v.push(case(
        "5.9",
        "continuation (fin) without a message",
        vec![fr(true, OP_CONT, b"fragment"), text(b"after")],
        fail(vec![], &[1002]),
    ));
    v.push(case(
        "5.10",
        "continuation (not fin) without a message",
        vec![fr(false, OP_CONT, b"fragment"), text(b"after")],
        fail(vec![], &[1002]),
    ));
    v.push(case(
        "5.15",
        "new text message inside a fragmented one",
        vec![
            fr(false, OP_TEXT, b"fragment1"),
            fr(true, OP_CONT, b"fragment2"),
            fr(false, OP_CONT, b"fragment3"),
            fr(false, OP_TEXT, b"fragment4"),
        ],
        fail(vec![T(b"fragment1fragment2".to_vec())], &[1002]),
    ));
    v.push(case(
        "5.17",
        "text, binary start inside it",
        vec![fr(false, OP_TEXT, b"a"), fr(true, OP_BIN, b"b")],
        fail(vec![], &[1002]),
    ));
    v.push(case(
        "5.19",
        "five fragments with pings between",
        vec![
            fr(false, OP_TEXT, b"fragment1"),
            fr(false, OP_CONT, b"fragment2"),
            fr(true, OP_PING, b"pongme 1!"),
            fr(false, OP_CONT, b"fragment3"),
            fr(false, OP_CONT, b"fragment4"),
            fr(true, OP_PING, b"pongme 2!"),
            fr(true, OP_CONT, b"fragment5"),
        ],
        echo(vec![
            Pong(b"pongme 1!".to_vec()),
            Pong(b"pongme 2!".to_vec()),
            T(b"fragment1fragment2fragment3fragment4fragment5".to_vec()),
        ]),
    ));
    v.push(case(
        "5.x",
        "empty fragments",
        vec![
            fr(false, OP_TEXT, b""),
            fr(false, OP_CONT, b"x"),
            fr(true, OP_CONT, b""),
        ],
        echo(vec![T(b"x".to_vec())]),
    ));
    // ----- 6: UTF-8 -----
    let kosme = "κόσμε".as_bytes();
    let hello = "Hello-µ@ßöäüàá-UTF-8!!".as_bytes();
    v.push(case(
        "6.1.1",
        "empty text",
        vec![text(b"")],
        echo(vec![T(vec![])]),
    ));
    v.push(case(
        "6.1.3",
        "empty fragments of a text message",
        vec![fr(false, OP_TEXT, b""), fr(true, OP_CONT, b"")],
        echo(vec![T(vec![])]),
    ));
    v.push(case(
        "6.2.1",
        "valid UTF-8, one frame",
        vec![text(hello)],
        echo(vec![T(hello.to_vec())]),
    ));
    v.push(case(
        "6.2.3",
        "valid UTF-8, one fragment per byte",
        hello
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let op = if i == 0 { OP_TEXT } else { OP_CONT };
                fr(i == hello.len() - 1, op, &[*b])
            })
            .collect(),
        echo(vec![T(hello.to_vec())]),
    ));
    v.push(case(
        "6.2.4",
        "κόσμε split inside a character",
        vec![
            fr(false, OP_TEXT, &kosme[..3]),
            fr(true, OP_CONT, &kosme[3..]),
        ],
        echo(vec![T(kosme.to_vec())]),
    ));
    let valid: [(&str, &[u8]); 5] = [
        ("6.5.1", kosme),
        ("6.7.4", &[0xf4, 0x8f, 0xbf, 0xbf]),
        ("6.11.1", &[0xef, 0xbf, 0xbf]),
        ("6.7.1", &[0x00]),
        ("6.22.1", &[0xef, 0xbf, 0xbe]),
    ];
    for (id, s) in valid {
        v.push(case(
            id,
            &format!("valid UTF-8 {}", hex(s)),
            vec![text(s)],
            echo(vec![T(s.to_vec())]),
        ));
    }
    let invalid: [(&str, &[u8]); 9] = [
        (
            "6.3.1",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
        ),
        ("6.6.1", &[0xce]),
        ("6.8.1", &[0xf8, 0x88, 0x80, 0x80, 0x80]),
        ("6.9.1", &[0xc0, 0xaf]),
        ("6.9.4", &[0xf4, 0x90, 0x80, 0x80]),
        ("6.12.1", &[0x80]),
        ("6.16.1", &[0xfe]),
        ("6.18.1", &[0xed, 0xa0, 0x80]),
        ("6.6.x", b"valid then invalid at the end \xce"),
    ];
    for (id, s) in invalid {
        v.push(case(
            id,
            &format!("invalid UTF-8 {}", hex(&s[s.len().saturating_sub(6)..])),
            vec![text(s)],
            fail(vec![], &[1007]),
        ));
    }
    v.push(case(
        "6.4.1",
        "invalid in the 2nd of 3 fragments (fail fast)",
        vec![
            fr(false, OP_TEXT, kosme),
            fr(false, OP_CONT, &[0xf4, 0x90, 0x80, 0x80]),
            fr(true, OP_CONT, b"edited"),
        ],
        fail(vec![], &[1007]),
    ));
    v.push(case(
        "6.4.x",
        "a text message ending inside a character",
        vec![fr(false, OP_TEXT, kosme), fr(true, OP_CONT, &[0xce])],
        fail(vec![], &[1007]),
    ));
    v.push(case(
        "6.x",
        "binary is not checked as UTF-8",
        vec![bin(&[0xff, 0xfe, 0xce])],
        echo(vec![B(vec![0xff, 0xfe, 0xce])]),
    ));
    // ----- 7: closing -----
    v.push(case(
        "7.1.1",
        "echo, then close",
        vec![text(b"Hello World!"), close(1000, b"")],
        fail(vec![T(b"Hello World!".to_vec())], &[1000]),
    ));
    v.push(case(
        "7.1.2",
        "close twice",
        vec![close(1000, b""), close(1000, b"")],
        fail(vec![], &[1000]),
    ));
    v.push(case(
        "7.1.3",
        "ping after close: no pong",
        vec![close(1000, b""), fr(true, OP_PING, b"ping")],
        fail(vec![], &[1000]),
    ));
    v.push(case(
        "7.1.4",
        "text after close: no echo",
        vec![close(1000, b""), text(b"hello")],
        fail(vec![], &[1000]),
    ));
    v.push(case(
        "7.1.5",
        "close inside a fragmented message",
        vec![fr(false, OP_TEXT, b"fragment1"), close(1000, b"")],
        fail(vec![], &[1000]),
    ));
    v.push(case(
        "7.3.1",
        "close with an empty payload",
        vec![fr(true, OP_CLOSE, b"")],
        fail(vec![], &[1000]),
    ));
    v.push(case(
        "7.3.2",
        "close with a 1-byte payload",
        vec![fr(true, OP_CLOSE, b"a")],
        fail(vec![], &[1002]),
    ));
    v.push(case(
        "7.3.3",
        "close 1000, no reason",
        vec![close(1000, b"")],
        fail(vec![], &[1000]),
    ));
    v.push(case(
        "7.3.4",
        "close 1000 with a reason",
        vec![close(1000, b"Hello World!")],
        fail(vec![], &[1000]),
    ));
    v.push(case(
        "7.3.5",
        "close 1000, 123-byte reason",
        vec![close(1000, &text_of(123))],
        fail(vec![], &[1000]),
    ));
    v.push(case(
        "7.3.6",
        "close 1000, 124-byte reason (frame too long)",
        vec![close(1000, &text_of(124))],
        fail(vec![], &[1002]),
    ));
    v.push(case(
        "7.5.1",
        "close reason not UTF-8",
        vec![close(
            1000,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
        )],
        fail(vec![], &[1002, 1007]),
    ));
    for (i, code) in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ]
    .iter()
    .enumerate()
    {
        v.push(case(
            &format!("7.7.{}", i + 1),
            &format!("valid close code {code}"),
            vec![close(*code, b"")],
            fail(vec![], &[1000, *code]),
        ));
    }
    for (i, code) in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999]
        .iter()
        .enumerate()
    {
        v.push(case(
            &format!("7.9.{}", i + 1),
            &format!("invalid close code {code}"),
            vec![close(*code, b"")],
            fail(vec![], &[1002]),
        ));
    }
    for (i, code) in [5000u16, 65535].iter().enumerate() {
        v.push(case(
            &format!("7.13.{}", i + 1),
            &format!("close code {code} (out of range)"),
            vec![close(*code, b"")],
            fail(vec![], &[1000, *code, 1002]),
        ));
    }
    // ----- beyond Autobahn: masking is required of clients -----
    let mut f = text(b"unmasked");
    f.masked = false;
    v.push(case(
        "x.1",
        "unmasked client frame",
        vec![f],
        fail(vec![], &[1002]),
    ));
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn autobahn_style_server_cases() {
    let mut rows = vec![];
    let mut failed = vec![];
    for c in cases() {
        let got = run(&c);
        let ok = passes(&c.expect, &got);
        let (e, g) = (show_expect(&c.expect), got.show());
        if !ok {
            failed.push(format!("{} {}: expected [{e}], got [{g}]", c.id, c.what));
        }
        rows.push(format!(
            "| {} | {} | {e} | {g} | {} |",
            c.id,
            c.what,
            if ok { "pass" } else { "FAIL" }
        ));
    }
    println!("| case | what | expected | got | result |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    println!("{} cases, {} failed", rows.len(), failed.len());
    assert!(failed.is_empty(), "failing cases:\n{}", failed.join("\n"));
}
