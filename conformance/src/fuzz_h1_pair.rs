//! A client engine and a server engine speaking plain HTTP/1.1 to each other
//! in memory, with the input deciding everything the network and the two
//! applications do: which side's bytes move and how many at a time (so
//! transmits split at arbitrary points), when connections drop, when time
//! passes, which requests start, how the server answers (status, length or
//! chunked, piece sizes) and which streams are destroyed.
//!
//! Invariants: every transaction the client reports QOS_ACK_REMOTE for
//! delivered exactly the body the server wrote for it (each response body
//! carries a serial number, so the harness knows which one); legal state
//! transitions on both engines; no empty transmit; no panic; and once every
//! stream is destroyed and the keep-alive period has passed, neither engine
//! holds a stream or a connection. Shared by the cargo-fuzz target
//! `engine_h1_pair` and a proptest.

use ss_core::policy::{HttpPolicy, MetadataDecl, Policy, Protocol, StreamType};
use ss_core::{
    Action, ConnId, Engine, EngineConfig, Event, Flags, ListenerId, RetryPolicy, StreamId,
    StreamState,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The pair's policy: a GET and a POST client, and a server.
pub fn pair_policy() -> Policy {
    let retry = RetryPolicy {
        name: "r".into(),
        backoff_ms: vec![10, 20],
        conceal: 3,
        jitter_pc: Some(0),
        svalidping_s: None,
        svalidhup_s: None,
    };
    let client = StreamType {
        name: "get".into(),
        endpoint: Some("127.0.0.1".into()),
        port: 1,
        protocol: Protocol::H1,
        retry: Some("r".into()),
        metadata: vec![MetadataDecl {
            name: "mime".into(),
            header: Some("content-type:".into()),
        }],
        http: HttpPolicy {
            method: Some("GET".into()),
            url: Some("/g".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let post = StreamType {
        name: "post".into(),
        http: HttpPolicy {
            method: Some("POST".into()),
            url: Some("/p?q=1".into()),
            ..Default::default()
        },
        ..client.clone()
    };
    let srv = StreamType {
        name: "srv".into(),
        server: true,
        port: 0,
        retry: None,
        http: HttpPolicy::default(),
        ..client.clone()
    };
    Policy {
        retry: vec![retry],
        streamtypes: vec![client, post, srv],
        ..Default::default()
    }
}

/// A body being written in pieces.
#[derive(Debug, Default)]
struct Plan {
    body: Vec<u8>,
    sent: usize,
    piece: usize,
    done: bool,
}

impl Plan {
    /// Write the next piece of the body on `id`, asking for more if unfinished.
    fn write_next(&mut self, e: &mut Engine, now: Instant, id: StreamId) {
        if self.done {
            return;
        }
        let end = (self.sent + self.piece).min(self.body.len());
        let last = end == self.body.len();
        let som = if self.sent == 0 {
            Flags::SOM
        } else {
            Flags::NONE
        };
        let flags = if last { som | Flags::EOM } else { som };
        if e.write(now, id, &self.body[self.sent..end], flags).is_ok() {
            self.sent = end;
            if last {
                self.done = true;
            } else {
                let _ = e.request_tx(now, id);
            }
        } else {
            self.done = true;
        }
    }
}

/// A connection between the two engines.
#[derive(Debug)]
struct Link {
    cc: ConnId,
    sc: ConnId,
    c2s: VecDeque<u8>,
    s2c: VecDeque<u8>,
    /// The client side has not closed (nor been told of a close).
    c_open: bool,
    /// The server side has not closed (nor been told of a close).
    s_open: bool,
}

/// What one run saw, for assertions in tests.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Transactions the client acknowledged (body checked).
    pub acks: usize,
    /// Transactions the client reported QOS_NACK_REMOTE for.
    pub nacks: usize,
    /// Server transactions seen.
    pub server_txns: usize,
    /// Response bodies the server finished writing.
    pub responses: usize,
}

struct Pair {
    c: Engine,
    s: Engine,
    now: Instant,
    listener: Option<ListenerId>,
    server: Option<StreamId>,
    links: Vec<Link>,
    cstreams: Vec<StreamId>,
    /// Accepted streams with a request waiting for an answer.
    pending: Vec<StreamId>,
    /// Client request bodies.
    creq: BTreeMap<StreamId, Plan>,
    /// Client response bodies being received.
    crx: BTreeMap<StreamId, Vec<u8>>,
    /// Server responses being written.
    sresp: BTreeMap<StreamId, Plan>,
    /// Every response body the server started, by serial.
    bodies: BTreeMap<u64, Vec<u8>>,
    serial: u64,
    clast: BTreeMap<StreamId, StreamState>,
    slast: BTreeMap<StreamId, StreamState>,
    out: Outcome,
}

fn check_state(
    last: &mut BTreeMap<StreamId, StreamState>,
    side: &str,
    stream: StreamId,
    state: StreamState,
) {
    let prev = last.get(&stream).copied();
    assert!(
        state.is_legal_after(prev),
        "{side} {stream}: illegal {prev:?} -> {state:?}"
    );
    if state != StreamState::User {
        last.insert(stream, state);
    }
}

impl Pair {
    fn new(seed: u64) -> Self {
        let cfg = EngineConfig {
            seed,
            max_streams: 64,
            ..Default::default()
        };
        let mut p = Pair {
            c: Engine::new(pair_policy(), cfg.clone()),
            s: Engine::new(pair_policy(), cfg),
            now: Instant::now(),
            listener: None,
            server: None,
            links: vec![],
            cstreams: vec![],
            pending: vec![],
            creq: BTreeMap::new(),
            crx: BTreeMap::new(),
            sresp: BTreeMap::new(),
            bodies: BTreeMap::new(),
            serial: 0,
            clast: BTreeMap::new(),
            slast: BTreeMap::new(),
            out: Outcome::default(),
        };
        p.server = Some(p.s.create(p.now, "srv").expect("server stream"));
        p.pump();
        p
    }

    fn link_by_c(&mut self, c: ConnId) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| l.cc == c)
    }

    fn link_by_s(&mut self, s: ConnId) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| l.sc == s)
    }

    /// Tell a side its peer closed once the peer's last bytes reached it.
    fn settle(&mut self) {
        let now = self.now;
        for l in &mut self.links {
            if !l.c_open && l.s_open && l.c2s.is_empty() {
                l.s_open = false;
                self.s.handle_closed(now, l.sc);
            }
            if !l.s_open && l.c_open && l.s2c.is_empty() {
                l.c_open = false;
                self.c.handle_closed(now, l.cc);
            }
        }
        self.links.retain(|l| l.c_open || l.s_open);
    }

    /// Carry out both engines' actions and run both applications until quiet.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut any = false;
            self.settle();
            while let Some(a) = self.s.poll_action() {
                any = true;
                self.server_action(a);
            }
            while let Some(a) = self.c.poll_action() {
                any = true;
                self.client_action(a);
            }
            while let Some(ev) = self.s.poll_event() {
                any = true;
                self.server_event(ev);
            }
            while let Some(ev) = self.c.poll_event() {
                any = true;
                self.client_event(ev);
            }
            if !any {
                return;
            }
        }
        panic!("the pair never quiesces");
    }

    fn server_action(&mut self, a: Action) {
        let now = self.now;
        match a {
            Action::Listen { listener, .. } => {
                self.listener = Some(listener);
                self.s.handle_listening(now, listener, "127.0.0.1:1");
            }
            Action::StopListening { .. } => self.listener = None,
            Action::Transmit { conn, data } => {
                assert!(!data.is_empty(), "server: empty transmit");
                self.s.handle_sent(now, conn, data.len());
                if let Some(l) = self.link_by_s(conn) {
                    assert!(l.s_open, "server transmits on a closed connection");
                    if l.c_open {
                        l.s2c.extend(&data);
                    }
                }
            }
            Action::Close { conn } => {
                if let Some(l) = self.link_by_s(conn) {
                    l.s_open = false;
                    l.c2s.clear();
                }
            }
            Action::Connect { .. } | Action::Resolve { .. } => {
                panic!("the server engine connects out")
            }
            Action::SetSocketOptions { .. } | Action::PauseReading { .. } => {}
        }
    }

    fn client_action(&mut self, a: Action) {
        let now = self.now;
        match a {
            Action::Resolve { conn, .. } => {
                self.c
                    .handle_resolved(now, conn, &["127.0.0.1".parse().unwrap()]);
            }
            Action::Connect { conn, .. } => {
                let accepted = self.listener.and_then(|l| self.s.handle_accepted(now, l));
                match accepted {
                    Some(sc) => {
                        self.links.push(Link {
                            cc: conn,
                            sc,
                            c2s: VecDeque::new(),
                            s2c: VecDeque::new(),
                            c_open: true,
                            s_open: true,
                        });
                        self.c.handle_connected(now, conn);
                    }
                    None => self.c.handle_connect_failed(now, conn, "refused"),
                }
            }
            Action::Transmit { conn, data } => {
                assert!(!data.is_empty(), "client: empty transmit");
                self.c.handle_sent(now, conn, data.len());
                if let Some(l) = self.link_by_c(conn) {
                    assert!(l.c_open, "client transmits on a closed connection");
                    if l.s_open {
                        l.c2s.extend(&data);
                    }
                }
            }
            Action::Close { conn } => {
                if let Some(l) = self.link_by_c(conn) {
                    l.c_open = false;
                    l.s2c.clear();
                }
            }
            Action::Listen { .. } | Action::StopListening { .. } => {
                panic!("the client engine listens")
            }
            Action::SetSocketOptions { .. } | Action::PauseReading { .. } => {}
        }
    }

    fn server_event(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::State { stream, state, .. } => {
                check_state(&mut self.slast, "server", stream, state);
                match state {
                    StreamState::ServerTxn => {
                        self.out.server_txns += 1;
                        self.sresp.remove(&stream);
                        if !self.pending.contains(&stream) {
                            self.pending.push(stream);
                        }
                    }
                    StreamState::Destroying => {
                        self.pending.retain(|s| *s != stream);
                        self.sresp.remove(&stream);
                        if Some(stream) == self.server {
                            self.server = None;
                        }
                    }
                    _ => {}
                }
            }
            Event::Writable { stream, .. } => {
                if let Some(plan) = self.sresp.get_mut(&stream) {
                    plan.write_next(&mut self.s, now, stream);
                    if plan.done && plan.sent == plan.body.len() {
                        self.out.responses += 1;
                    }
                }
            }
            _ => {}
        }
    }

    fn client_event(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::State { stream, state, .. } => {
                check_state(&mut self.clast, "client", stream, state);
                match state {
                    StreamState::Connecting => {
                        // A new attempt or transaction: the body goes again.
                        if let Some(p) = self.creq.get_mut(&stream) {
                            p.sent = 0;
                            p.done = false;
                        }
                    }
                    StreamState::Connected => {
                        self.crx.insert(stream, vec![]);
                    }
                    StreamState::QosAckRemote => {
                        self.out.acks += 1;
                        let got = self.crx.remove(&stream).unwrap_or_default();
                        self.check_body(stream, &got);
                    }
                    StreamState::QosNackRemote => self.out.nacks += 1,
                    StreamState::Destroying => {
                        self.cstreams.retain(|s| *s != stream);
                        self.creq.remove(&stream);
                        self.crx.remove(&stream);
                    }
                    _ => {}
                }
            }
            Event::Rx {
                stream,
                data,
                flags,
            } => {
                let buf = self.crx.entry(stream).or_default();
                if flags.contains(Flags::SOM) {
                    buf.clear();
                }
                buf.extend_from_slice(&data);
            }
            Event::Writable { stream, .. } => {
                if let Some(plan) = self.creq.get_mut(&stream) {
                    plan.write_next(&mut self.c, now, stream);
                }
            }
            _ => {}
        }
    }

    /// An acknowledged body must be, byte for byte, one the server wrote.
    fn check_body(&self, stream: StreamId, got: &[u8]) {
        let text = String::from_utf8_lossy(got);
        let serial: Option<u64> = text
            .strip_prefix('#')
            .and_then(|t| t.split('#').next())
            .and_then(|n| n.parse().ok());
        let Some(serial) = serial else {
            panic!("{stream}: acknowledged a body the server never wrote: {text:?}");
        };
        let want = self.bodies.get(&serial).expect("a serial the server used");
        assert!(
            got == want.as_slice(),
            "{stream}: acknowledged body differs from what the server wrote for #{serial}:\n got {} bytes {:?}\nwant {} bytes {:?}",
            got.len(),
            String::from_utf8_lossy(got),
            want.len(),
            String::from_utf8_lossy(want)
        );
    }

    /// Move up to `n` bytes (all when 0) over link `i`, one direction.
    fn deliver(&mut self, i: usize, to_server: bool, n: usize) {
        let now = self.now;
        let Some(l) = self.links.get_mut(i) else {
            return;
        };
        let q = if to_server { &mut l.c2s } else { &mut l.s2c };
        let n = if n == 0 { q.len() } else { n.min(q.len()) };
        if n == 0 {
            return;
        }
        let bytes: Vec<u8> = q.drain(..n).collect();
        if to_server {
            let sc = l.sc;
            self.s.handle_data(now, sc, &bytes);
        } else {
            let cc = l.cc;
            self.c.handle_data(now, cc, &bytes);
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.c.handle_timeout(self.now);
        self.s.handle_timeout(self.now);
    }

    /// Deliver everything in flight until neither side has more to say.
    fn flush(&mut self) {
        for _ in 0..1000 {
            self.pump();
            if self
                .links
                .iter()
                .all(|l| l.c2s.is_empty() && l.s2c.is_empty())
            {
                return;
            }
            for i in 0..self.links.len() {
                self.deliver(i, true, 0);
                self.deliver(i, false, 0);
            }
        }
    }

    fn respond(&mut self, a: u8, b: u8) {
        if self.pending.is_empty() {
            return;
        }
        let now = self.now;
        let id = self.pending.remove(a as usize % self.pending.len());
        let code = [0, 201, 404, 500][(b & 3) as usize];
        self.serial += 1;
        let mut body = format!("#{}#", self.serial).into_bytes();
        body.extend((0..(b as usize >> 2) * 37).map(|i| b'a' + (i % 26) as u8));
        self.bodies.insert(self.serial, body.clone());
        let _ = self.s.server_ack(id, code);
        if b & 0x40 != 0 {
            let _ = self.s.set_metadata(id, "mime", b"text/x-fuzz");
        }
        let len = body.len() as u64;
        let piece = 1 + (a as usize * 7 + b as usize) % 300;
        self.sresp.insert(
            id,
            Plan {
                body,
                piece,
                ..Default::default()
            },
        );
        let _ = if a & 0x80 != 0 {
            self.s.request_tx_len(now, id, len)
        } else {
            self.s.request_tx(now, id)
        };
    }

    fn request(&mut self, a: u8, b: u8) {
        let Some(&id) = self.cstreams.get(a as usize % self.cstreams.len().max(1)) else {
            return;
        };
        let now = self.now;
        if self.c.streamtype(id) == Some("post") {
            let body: Vec<u8> = (0..b as usize * 11).map(|i| i as u8).collect();
            let len = body.len() as u64;
            self.creq.insert(
                id,
                Plan {
                    body,
                    piece: 1 + (b as usize * 5) % 200,
                    ..Default::default()
                },
            );
            let _ = if b & 1 == 0 {
                self.c.request_tx_len(now, id, len)
            } else {
                self.c.request_tx(now, id)
            };
        } else {
            let _ = self.c.request_tx(now, id);
        }
    }
}

/// Run the pair over `data`; panics if an invariant breaks.
pub fn run(data: &[u8]) -> Outcome {
    let mut p = Pair::new(data.first().copied().unwrap_or(0) as u64);
    for op in data.chunks(3) {
        let (code, a, b) = (op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0));
        let nlinks = p.links.len().max(1);
        match code % 12 {
            0 => {
                let st = if a & 1 == 0 { "get" } else { "post" };
                if let Ok(id) = p.c.create(p.now, st) {
                    p.cstreams.push(id);
                    if a & 2 != 0 {
                        let _ = p.c.set_metadata(id, "mime", b"application/x-fuzz");
                    }
                    p.request(p.cstreams.len() as u8 - 1, b);
                }
            }
            1 => p.request(a, b),
            2 => {
                if let Some(&id) = p.cstreams.get(a as usize % p.cstreams.len().max(1)) {
                    if b & 1 == 0 {
                        let _ = p.c.destroy(p.now, id);
                    } else {
                        let _ = p.c.disconnect(p.now, id);
                    }
                }
            }
            3 | 4 => p.deliver(a as usize % nlinks, true, b as usize),
            5 | 6 => p.deliver(a as usize % nlinks, false, b as usize),
            7 => {
                // The network drops the connection: what is in flight is lost.
                let now = p.now;
                if let Some(l) = p.links.get_mut(a as usize % nlinks) {
                    l.c2s.clear();
                    l.s2c.clear();
                    if l.c_open {
                        l.c_open = false;
                        p.c.handle_closed(now, l.cc);
                    }
                    if l.s_open {
                        l.s_open = false;
                        p.s.handle_closed(now, l.sc);
                    }
                }
            }
            8 => p.advance(Duration::from_millis(a as u64 * 4)),
            9 | 10 => p.respond(a, b),
            _ => {
                if b & 3 == 0 {
                    p.advance(Duration::from_secs(1 + a as u64 % 8));
                } else if let Some(&id) = p.pending.get(a as usize % p.pending.len().max(1)) {
                    // The server application gives up on a transaction.
                    let _ = p.s.destroy(p.now, id);
                }
            }
        }
        p.pump();
    }
    // Let everything finish, then tear down: nothing may be left.
    p.flush();
    for _ in 0..4 {
        p.advance(Duration::from_millis(100));
        p.flush();
    }
    for id in p.cstreams.clone() {
        let _ = p.c.destroy(p.now, id);
    }
    if let Some(srv) = p.server {
        let _ = p.s.destroy(p.now, srv);
    }
    p.flush();
    let idle = p.c.config().keepalive_idle + Duration::from_secs(1);
    p.advance(idle);
    p.flush();
    assert_eq!(p.c.stream_count(), 0, "client streams leaked");
    assert_eq!(p.s.stream_count(), 0, "server streams leaked");
    assert_eq!(p.c.conn_count(), 0, "client connections leaked");
    assert_eq!(p.s.conn_count(), 0, "server connections leaked");
    p.out
}
