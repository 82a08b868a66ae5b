//! The WebSocket scenario, plain (`ws`) and over TLS (`wss`): one server node
//! echoes every message, client nodes send numbered messages over a
//! `nailed_up` stream and check every echo, across drops and reconnections.
//!
//! The server is a [`Host`] with an h1 server streamtype on [`PORT`] with
//! `ws_subprotocol` [`SUBPROTOCOL`]; each upgraded connection's [`Handler`]
//! answers every message `m` with [`echo_for`]`(m)` = `"echo:" + m`, one
//! echo per message, in order, in one to four `tx` pieces (SOM on the first,
//! EOM on the last, some pieces empty). Now and then (seeded) it hangs up
//! (`DisconnectMe`): in the middle of receiving a message, at its end
//! before echoing, or in the middle of the echo.
//!
//! Clients are bare [`Engine`](ss_core::Engine)s driven by [`WsClient`]: one `nailed_up` ws
//! stream each (`ws_binary` on some seeds), messages of 0 to 40 KB (text:
//! valid UTF-8 with multi-byte characters, cut anywhere, even inside a
//! character; binary: any bytes), each written in one to four pieces on
//! `Writable`, at most `window` messages ahead of their echoes (1: one at a
//! time). After DISCONNECTED the engine reconnects by itself (backoff, POLL,
//! CONNECTING, CONNECTED); on each CONNECTED the client starts again from the
//! first message whose echo it has not received whole. ALL_RETRIES_FAILED
//! ends the client (it gave up).
//!
//! So on every connection the client writes `m[i], m[i+1], ...` from the
//! first unechoed `i`, and the echoes that come back must be
//! `echo(m[i]), echo(m[i+1]), ...`, each whole (SOM on its first piece, no
//! SOM inside, EOM on its last) and exactly as sent: a message is echoed
//! completely at most once and, if the client finishes, every message was.
//! [`check_ws`] lists the invariants checked once the network is quiet;
//! [`Sim`] itself checks state transitions, event order and leaks.
//!
//! With [`WsSimConfig::tls`] every streamtype runs over TLS with the shared
//! deterministic certificates ([`super::shared::tls_certs`]) and a seeded
//! [`deterministic_provider`] per engine, so a `wss` run replays byte for byte.

use super::net::{derive_seed, App, AppCx, FaultConfig, NodeId, Sim, SimRng, Stack, Stats};
use super::shared::{
    cuts, new_engine, retry_policy, server_endpoint, with_tls, ServerApp, ServerState, SERVER_IP,
};
pub use super::shared::{SERVER_NAME, UNIX_TIME};
use super::trace::{Fault, FaultKind, TraceEntry};
use crate::tls_provider::deterministic_provider;
use ss_core::policy::{Policy, Protocol, StreamType};
use ss_core::{
    EngineConfig, Error, Event, Flags, Handler, Host, RetryPolicy, SsRet, StreamCtx, StreamId,
    StreamState,
};
use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

/// The port the WebSocket server listens on.
pub const PORT: u16 = 8090;
/// The subprotocol both ends ask for.
pub const SUBPROTOCOL: &str = "sim";
/// Wake-up tag: make the server stream, or the client's stream.
pub const START: u64 = 1;
/// What the server puts before every message it echoes.
pub const ECHO_PREFIX: &[u8] = b"echo:";
/// The message the server sends first on every connection it upgrades,
/// with [`WsSimConfig::greeting`].
pub const GREETING: &[u8] = b"hello:sim";

/// One client node of the WebSocket scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct WsClientSpec {
    /// Endpoint is [`SERVER_NAME`] (resolved by sim DNS) rather than the server's IP.
    pub use_dns: bool,
    /// When the client creates its stream.
    pub start_at: Duration,
    /// Most messages written ahead of their echoes (1: one at a time).
    pub window: usize,
    /// The length of each message, in order.
    pub sizes: Vec<usize>,
}

/// Everything that decides one WebSocket run.
#[derive(Clone, Debug, PartialEq)]
pub struct WsSimConfig {
    /// The run's seed (faults, messages, engine jitter, TLS randomness).
    pub seed: u64,
    /// The network's behaviour.
    pub faults: FaultConfig,
    /// One entry per client node.
    pub clients: Vec<WsClientSpec>,
    /// Every streamtype runs over TLS (`wss`).
    pub tls: bool,
    /// Every streamtype is `ws_binary` (messages are any bytes); otherwise
    /// text (messages are UTF-8).
    pub binary: bool,
    /// The retry policy's `backoff` (ms).
    pub backoff_ms: Vec<u32>,
    /// The retry policy's `conceal`.
    pub conceal: u16,
    /// The retry policy's `jitterpc`.
    pub jitter_pc: u8,
    /// Engines' connect timeout.
    pub connect_timeout: Duration,
    /// Engines' `tx_high_water`.
    pub tx_high_water: usize,
    /// Engines' `tx_budget`.
    pub tx_budget: usize,
    /// Chance, per message the server receives, that it hangs up during or
    /// right after it, or during its echo.
    pub server_abort: f64,
    /// Most hang-ups by the server.
    pub server_max_aborts: u32,
    /// The server sends [`GREETING`] as soon as it has upgraded a
    /// connection (often in the same segment as its 101, with coalescing),
    /// and clients expect it before any echo.
    pub greeting: bool,
}

impl WsSimConfig {
    /// A calm run: `clients` clients with `k` messages of mixed sizes (client
    /// `i` pipelining `i + 1` messages), no faults, 1 ms latency, no server
    /// hang-ups.
    pub fn calm(seed: u64, tls: bool, binary: bool, clients: usize, k: usize) -> Self {
        let sizes = [0, 1, 100, 5000, 40_000, 17, 3];
        WsSimConfig {
            seed,
            faults: FaultConfig::none(),
            clients: (0..clients)
                .map(|i| WsClientSpec {
                    use_dns: i % 2 == 0,
                    start_at: Duration::from_millis(i as u64),
                    window: i + 1,
                    sizes: (0..k).map(|j| sizes[(i + j) % sizes.len()]).collect(),
                })
                .collect(),
            tls,
            binary,
            backoff_ms: vec![100, 200, 400],
            conceal: 30,
            jitter_pc: 0,
            connect_timeout: Duration::from_millis(1000),
            tx_high_water: 64 * 1024,
            tx_budget: 4096,
            server_abort: 0.0,
            server_max_aborts: 0,
            greeting: seed % 2 == 1,
        }
    }

    /// The configuration seed `seed` stands for: client count, messages,
    /// windows, TLS, binary, policies, fault and hang-up odds all drawn from it.
    pub fn from_seed(seed: u64) -> Self {
        let mut r = SimRng::new(derive_seed(seed, 0x5753));
        let pct = |r: &mut SimRng, on: f64, lo: u64, hi: u64| {
            if r.chance(on) {
                r.range(lo, hi) as f64 / 1000.0
            } else {
                0.0
            }
        };
        let lat_lo = r.range(1, 5);
        let faults = FaultConfig {
            latency_ms: (lat_lo, lat_lo + r.range(0, 20)),
            bytes_per_ms: [0, 500, 2000, 10_000][r.range(0, 3) as usize],
            refuse: pct(&mut r, 0.4, 50, 400),
            dns_fail: pct(&mut r, 0.3, 50, 400),
            blackhole: pct(&mut r, 0.2, 50, 200),
            reset: pct(&mut r, 0.4, 5, 50),
            max_resets: r.range(1, 4) as u32,
            partial_write: pct(&mut r, 0.5, 200, 900),
            write_gap_ms: (0, r.range(0, 10)),
            delay: pct(&mut r, 0.3, 20, 200),
            delay_extra_ms: (50, r.range(100, 1500)),
            coalesce: pct(&mut r, 0.5, 100, 800),
        };
        let n = r.range(1, 3) as usize;
        let clients = (0..n)
            .map(|_| {
                let k = r.range(1, 8) as usize;
                WsClientSpec {
                    use_dns: r.chance(0.5),
                    start_at: r.millis((0, 50)),
                    window: if r.chance(0.5) {
                        1
                    } else {
                        r.range(2, 8) as usize
                    },
                    sizes: (0..k)
                        .map(|_| match r.range(0, 19) {
                            0 => 0,
                            1..=8 => r.range(1, 200) as usize,
                            9..=15 => r.range(200, 4000) as usize,
                            _ => r.range(4000, 40_000) as usize,
                        })
                        .collect(),
                }
            })
            .collect();
        let b0 = r.range(20, 200) as u32;
        WsSimConfig {
            seed,
            faults,
            clients,
            tls: r.chance(0.5),
            binary: r.chance(0.4),
            backoff_ms: vec![b0, b0 * 2, b0 * 4],
            // Mostly enough to outlast the faults; now and then small, so
            // some clients do give up.
            conceal: if r.chance(0.1) {
                r.range(1, 4) as u16
            } else {
                30
            },
            jitter_pc: r.range(0, 30) as u8,
            connect_timeout: r.millis((300, 3000)),
            tx_high_water: r.range(512, 32 * 1024) as usize,
            tx_budget: r.range(64, 8192) as usize,
            server_abort: pct(&mut r, 0.4, 30, 200),
            server_max_aborts: r.range(1, 4) as u32,
            greeting: r.chance(0.5),
        }
    }

    /// Messages over all clients.
    pub fn messages(&self) -> usize {
        self.clients.iter().map(|c| c.sizes.len()).sum()
    }
}

/// Characters text messages are made of: ASCII and two-, three- and
/// four-byte UTF-8, so pieces cut at any byte split characters.
const TEXT: [char; 8] = ['a', 'é', 'z', '€', 'q', '𝄞', 'ß', ' '];

/// Message `k` of client `client`, `len` bytes: a tag naming both, then a
/// pattern (so messages of 8 bytes or more are unique within a run). Text
/// messages are valid UTF-8 with multi-byte characters; binary ones have
/// bytes that are not UTF-8.
pub fn message_for(client: usize, k: usize, len: usize, binary: bool) -> Vec<u8> {
    let mut b = format!("<c{client}m{k}|").into_bytes();
    let mut i = client * 5 + k * 3;
    while b.len() < len {
        if binary {
            b.push((i * 37 + 0x80) as u8);
        } else {
            let c = TEXT[i % TEXT.len()];
            let room = len - b.len();
            let c = if c.len_utf8() <= room { c } else { 'x' };
            let mut tmp = [0u8; 4];
            b.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        }
        i += 1;
    }
    b.truncate(len);
    b
}

/// The server's answer to message `msg`: [`ECHO_PREFIX`] + `msg`.
pub fn echo_for(msg: &[u8]) -> Vec<u8> {
    let mut r = ECHO_PREFIX.to_vec();
    r.extend_from_slice(msg);
    r
}

fn retry(cfg: &WsSimConfig) -> RetryPolicy {
    retry_policy(&cfg.backoff_ms, cfg.conceal, cfg.jitter_pc)
}

/// The server node's policy: an h1 server streamtype `ws_srv` on [`PORT`]
/// upgrading requests for [`SUBPROTOCOL`] (over TLS with the shared leaf
/// when `cfg.tls`).
pub fn server_policy(cfg: &WsSimConfig) -> Policy {
    let mut st = StreamType {
        name: "ws_srv".into(),
        server: true,
        protocol: Protocol::H1,
        port: PORT,
        tls: cfg.tls,
        server_cert: cfg.tls.then(|| "leaf".into()),
        server_key: cfg.tls.then(|| "leaf_key".into()),
        ..Default::default()
    };
    st.ws.subprotocol = Some(SUBPROTOCOL.into());
    st.ws.binary = cfg.binary;
    with_tls(
        cfg.tls,
        Policy {
            retry: vec![retry(cfg)],
            streamtypes: vec![st],
            ..Default::default()
        },
    )
}

/// A client node's policy: a `nailed_up` ws streamtype `ws` (GET `/sim`,
/// subprotocol [`SUBPROTOCOL`]) reaching the server, retrying per the run's
/// policy.
pub fn client_policy(cfg: &WsSimConfig, spec: &WsClientSpec) -> Policy {
    let mut st = StreamType {
        name: "ws".into(),
        endpoint: Some(server_endpoint(spec.use_dns)),
        port: PORT,
        protocol: Protocol::Ws,
        retry: Some("sim".into()),
        nailed_up: true,
        tls: cfg.tls,
        tls_trust_store: cfg.tls.then(|| "sim_ts".into()),
        ..Default::default()
    };
    st.http.url = Some("/sim".into());
    st.ws.subprotocol = Some(SUBPROTOCOL.into());
    st.ws.binary = cfg.binary;
    with_tls(
        cfg.tls,
        Policy {
            retry: vec![retry(cfg)],
            streamtypes: vec![st],
            ..Default::default()
        },
    )
}

fn engine_config(cfg: &WsSimConfig, node: u64) -> EngineConfig {
    EngineConfig {
        seed: derive_seed(cfg.seed, 100 + node),
        connect_timeout: cfg.connect_timeout,
        tx_high_water: cfg.tx_high_water,
        tx_budget: cfg.tx_budget,
        tls_provider: cfg
            .tls
            .then(|| deterministic_provider(derive_seed(cfg.seed, 500 + node))),
        ..Default::default()
    }
}

// ----- server ------------------------------------------------------------

/// One upgraded connection as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvConn {
    /// The accepted stream.
    pub stream: StreamId,
    /// The whole messages received, in order.
    pub messages: Vec<Vec<u8>>,
    /// The message being received when the connection ended (if any).
    pub partial: Option<Vec<u8>>,
    /// Echoes written whole.
    pub echoed: usize,
    /// The server hung up on this connection.
    pub hung_up: bool,
}

/// What the server's handlers share with the server app.
pub struct SrvShared {
    rng: SimRng,
    greeting: bool,
    abort: f64,
    aborts_left: u32,
    conns: Vec<SrvConn>,
    faults: Vec<Fault>,
    notes: Vec<String>,
}

impl SrvShared {
    /// Whether to misbehave now (and count it).
    fn misbehave(&mut self) -> bool {
        if self.aborts_left > 0 && self.rng.chance(self.abort) {
            self.aborts_left -= 1;
            true
        } else {
            false
        }
    }

    fn hang_up(&mut self, conn: usize, stream: StreamId, why: String) -> SsRet {
        self.conns[conn].hung_up = true;
        self.faults.push(Fault::AppDisconnect { stream });
        self.notes.push(format!("server: {stream} hangs up {why}"));
        SsRet::DisconnectMe
    }
}

/// An echo being written.
struct Reply {
    data: Vec<u8>,
    cuts: Vec<usize>,
    /// Hang up instead of writing this piece.
    abort_before: Option<usize>,
    /// This is the [`GREETING`], not an echo.
    greeting: bool,
}

/// An accepted connection's handler: echo every message.
struct SrvHandler {
    shared: Rc<RefCell<SrvShared>>,
    conn: Option<usize>,
    queue: VecDeque<Reply>,
    piece: usize,
}

impl Handler for SrvHandler {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        let mut sh = self.shared.borrow_mut();
        match state {
            StreamState::ServerUpgrade => {
                if self.conn.is_some() {
                    sh.notes
                        .push(format!("VIOLATION server: {} upgraded twice", ctx.id()));
                }
                sh.conns.push(SrvConn {
                    stream: ctx.id(),
                    messages: vec![],
                    partial: None,
                    echoed: 0,
                    hung_up: false,
                });
                self.conn = Some(sh.conns.len() - 1);
                if sh.greeting {
                    self.queue.push_back(Reply {
                        data: GREETING.to_vec(),
                        cuts: vec![0, GREETING.len()],
                        abort_before: None,
                        greeting: true,
                    });
                    drop(sh);
                    let _ = ctx.request_tx();
                }
            }
            StreamState::ServerTxn => {
                sh.notes.push(format!(
                    "VIOLATION server: {} reported SERVER_TXN (every request asks to upgrade)",
                    ctx.id()
                ));
            }
            _ => {}
        }
        SsRet::Ok
    }

    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        let s = ctx.id();
        let mut guard = self.shared.borrow_mut();
        let sh = &mut *guard;
        let Some(ci) = self.conn else {
            sh.notes
                .push(format!("VIOLATION server: rx on {s} before SERVER_UPGRADE"));
            return SsRet::Ok;
        };
        let c = &mut sh.conns[ci];
        let som = flags.contains(Flags::SOM);
        match (&mut c.partial, som) {
            (None, true) => c.partial = Some(data.to_vec()),
            (None, false) => {
                sh.notes.push(format!(
                    "VIOLATION server: {s}: message {} starts without SOM",
                    c.messages.len()
                ));
                c.partial = Some(data.to_vec());
            }
            (Some(p), false) => p.extend_from_slice(data),
            (Some(p), true) => {
                let n = p.len();
                sh.notes.push(format!(
                    "VIOLATION server: {s}: SOM inside message {} (after {n} bytes)",
                    c.messages.len()
                ));
                c.partial = Some(data.to_vec());
            }
        }
        let eom = flags.contains(Flags::EOM);
        let got = c.partial.as_ref().map_or(0, Vec::len);
        if !eom {
            if sh.misbehave() {
                return sh.hang_up(
                    ci,
                    s,
                    format!("in the middle of a message ({got} bytes in)"),
                );
            }
            return SsRet::Ok;
        }
        let msg = c.partial.take().unwrap_or_default();
        c.messages.push(msg.clone());
        let mut abort_before = None;
        if sh.misbehave() {
            if sh.rng.chance(0.5) {
                return sh.hang_up(ci, s, format!("instead of echoing ({got} bytes)"));
            }
            abort_before = Some(1);
        }
        let data = echo_for(&msg);
        let lo = if abort_before.is_some() { 2 } else { 1 };
        let pieces = sh.rng.range(lo, 4) as usize;
        let allow_empty = abort_before.is_none() && sh.rng.chance(0.2);
        let cuts = cuts(&mut sh.rng, data.len(), pieces, allow_empty);
        if let Some(a) = &mut abort_before {
            *a = sh.rng.range(1, cuts.len() as u64 - 2) as usize;
        }
        drop(guard);
        self.queue.push_back(Reply {
            data,
            cuts,
            abort_before,
            greeting: false,
        });
        let _ = ctx.request_tx();
        SsRet::Ok
    }

    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        _budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        let Some(r) = self.queue.front() else {
            return SsRet::TxDontSend;
        };
        let Some(ci) = self.conn else {
            return SsRet::TxDontSend;
        };
        if r.abort_before == Some(self.piece) {
            let s = ctx.id();
            let why = format!(
                "after {} of {} echo bytes",
                r.cuts[self.piece],
                r.data.len()
            );
            return self.shared.borrow_mut().hang_up(ci, s, why);
        }
        let (a, b) = (r.cuts[self.piece], r.cuts[self.piece + 1]);
        buf.extend_from_slice(&r.data[a..b]);
        if self.piece == 0 {
            *flags |= Flags::SOM;
        }
        self.piece += 1;
        if self.piece + 1 == r.cuts.len() {
            *flags |= Flags::EOM;
            let greeting = r.greeting;
            self.queue.pop_front();
            self.piece = 0;
            if !greeting {
                self.shared.borrow_mut().conns[ci].echoed += 1;
            }
        }
        if !self.queue.is_empty() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

/// The server node's application (see [`ServerApp`]).
pub type WsServer = ServerApp<SrvShared>;

impl WsServer {
    /// A server misbehaving as `cfg` says.
    pub fn new(cfg: &WsSimConfig) -> Self {
        ServerApp::with_state(
            SrvShared {
                rng: SimRng::new(derive_seed(cfg.seed, 300)),
                greeting: cfg.greeting,
                abort: cfg.server_abort,
                aborts_left: cfg.server_max_aborts,
                conns: vec![],
                faults: vec![],
                notes: vec![],
            },
            "ws_srv",
            |shared| {
                Box::new(SrvHandler {
                    shared: shared.clone(),
                    conn: None,
                    queue: VecDeque::new(),
                    piece: 0,
                })
            },
        )
    }

    /// Every upgraded connection the server saw, in order.
    pub fn conns(&self) -> Vec<SrvConn> {
        self.state().conns.clone()
    }
}

impl ServerState for SrvShared {
    fn take_report(&mut self) -> (Vec<Fault>, Vec<String>) {
        (
            std::mem::take(&mut self.faults),
            std::mem::take(&mut self.notes),
        )
    }
}

// ----- client ------------------------------------------------------------

/// Where a client got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Messages still to get echoed.
    Running,
    /// Every message came back echoed.
    Done,
    /// The stream reported ALL_RETRIES_FAILED.
    GaveUp,
}

/// One message of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// The message.
    pub body: Vec<u8>,
    /// Where it is cut into writes (0, ..., len; equal cuts make empty pieces).
    pub cuts: Vec<usize>,
    /// Times it was written whole (once per connection that got that far).
    pub sends: u32,
    /// Its echo arrived whole and right.
    pub echoed: bool,
}

/// A client node's application: one `nailed_up` ws stream sending its
/// messages in order and checking every echo (see the module docs).
pub struct WsClient {
    index: usize,
    spec: WsClientSpec,
    stream: Option<StreamId>,
    /// The messages, in order.
    pub msgs: Vec<Msg>,
    /// Messages echoed (always the first `echoed` ones).
    pub echoed: usize,
    /// The next message to write on the current connection.
    sent: usize,
    /// The next piece of message `sent`.
    piece: usize,
    /// The echo being received.
    rx: Vec<u8>,
    rx_in_msg: bool,
    /// Expect [`GREETING`] first on every connection.
    greeting: bool,
    /// The greeting arrived on this connection.
    greeted: bool,
    /// Greetings received (one per connection that got that far).
    pub greetings: u32,
    last: Option<StreamState>,
    /// CONNECTED reported (connections the client used).
    pub connections: u32,
    /// Echoes cut short by a drop (partial echoes thrown away).
    pub partial_echoes: u32,
    /// Where the client got to.
    pub outcome: Outcome,
}

impl WsClient {
    /// Client node number `index` per `spec`; messages are binary per
    /// `binary`, write cuts drawn from `seed`; with `greeting`, every
    /// connection must start with [`GREETING`].
    pub fn new(index: usize, spec: WsClientSpec, binary: bool, greeting: bool, seed: u64) -> Self {
        let mut rng = SimRng::new(derive_seed(seed, 200 + index as u64));
        let msgs = spec
            .sizes
            .iter()
            .enumerate()
            .map(|(k, &len)| {
                let pieces = rng.range(1, 4) as usize;
                let allow_empty = rng.chance(0.2);
                Msg {
                    body: message_for(index, k, len, binary),
                    cuts: cuts(&mut rng, len, pieces, allow_empty),
                    sends: 0,
                    echoed: false,
                }
            })
            .collect();
        WsClient {
            index,
            spec,
            stream: None,
            msgs,
            echoed: 0,
            sent: 0,
            piece: 0,
            rx: vec![],
            rx_in_msg: false,
            greeting,
            greeted: false,
            greetings: 0,
            last: None,
            connections: 0,
            partial_echoes: 0,
            outcome: Outcome::Running,
        }
    }

    /// What the client was made from.
    pub fn spec(&self) -> &WsClientSpec {
        &self.spec
    }

    /// Messages written whole more than once (resent after a drop).
    pub fn resends(&self) -> u32 {
        self.msgs.iter().map(|m| m.sends.saturating_sub(1)).sum()
    }

    fn connected(&self) -> bool {
        self.last == Some(StreamState::Connected)
    }

    /// Ask for `Writable` if a message may be written now.
    fn want_tx(&mut self, cx: &mut AppCx<'_>, s: StreamId) {
        if self.connected()
            && self.sent < self.msgs.len()
            && self.sent - self.echoed < self.spec.window
        {
            let now = cx.now();
            if let Err(e) = cx.engine().request_tx(now, s) {
                cx.violation(format!("request_tx {s}: {e}"));
            }
        }
    }

    fn on_state(&mut self, cx: &mut AppCx<'_>, s: StreamId, state: StreamState) {
        if state != StreamState::User {
            self.last = Some(state);
        }
        match state {
            StreamState::Connected => {
                self.connections += 1;
                self.sent = self.echoed;
                self.piece = 0;
                self.rx.clear();
                self.rx_in_msg = false;
                self.greeted = false;
                if self.outcome == Outcome::Running {
                    cx.note(format!(
                        "client{}: {s} connected, (re)sending from message {} of {}",
                        self.index,
                        self.echoed,
                        self.msgs.len()
                    ));
                }
                self.want_tx(cx, s);
            }
            StreamState::Disconnected => {
                if self.rx_in_msg {
                    self.partial_echoes += 1;
                    cx.note(format!(
                        "client{}: {s} dropped with {} bytes of echo {} in hand",
                        self.index,
                        self.rx.len(),
                        self.echoed
                    ));
                }
                self.rx.clear();
                self.rx_in_msg = false;
            }
            StreamState::AllRetriesFailed if self.outcome == Outcome::Running => {
                self.outcome = Outcome::GaveUp;
                cx.note(format!(
                    "client{}: gave up with {} of {} messages echoed",
                    self.index,
                    self.echoed,
                    self.msgs.len()
                ));
            }
            StreamState::Destroying => self.stream = None,
            _ => {}
        }
    }

    fn on_writable(&mut self, cx: &mut AppCx<'_>, s: StreamId) {
        if !self.connected() {
            return cx.violation(format!("{s}: Writable while {:?}", self.last));
        }
        // A request from an earlier moment (or connection) may be answered
        // when there is nothing to write; that is fine.
        if self.sent >= self.msgs.len() || self.sent - self.echoed >= self.spec.window {
            return;
        }
        let m = &self.msgs[self.sent];
        let (a, b) = (m.cuts[self.piece], m.cuts[self.piece + 1]);
        let last = self.piece + 2 == m.cuts.len();
        let mut flags = Flags::NONE;
        if self.piece == 0 {
            flags |= Flags::SOM;
        }
        if last {
            flags |= Flags::EOM;
        }
        let chunk = m.body[a..b].to_vec();
        let now = cx.now();
        match cx.engine().write(now, s, &chunk, flags) {
            Ok(n) if n == chunk.len() => {
                self.piece += 1;
                if last {
                    self.msgs[self.sent].sends += 1;
                    self.sent += 1;
                    self.piece = 0;
                }
                self.want_tx(cx, s);
            }
            Ok(n) => cx.violation(format!("write took {n} of {} bytes", chunk.len())),
            // The connection went away after the Writable was queued: its
            // DISCONNECTED follows.
            Err(Error::NotConnected(_)) => {
                cx.note(format!("client{}: {s} write: not connected", self.index))
            }
            Err(e) => cx.violation(format!("{s}: write on Writable refused: {e}")),
        }
    }

    fn on_rx(&mut self, cx: &mut AppCx<'_>, s: StreamId, data: &[u8], flags: Flags) {
        if !self.connected() {
            return cx.violation(format!(
                "{s}: {} bytes received while {:?}, not CONNECTED",
                data.len(),
                self.last
            ));
        }
        let som = flags.contains(Flags::SOM);
        if !self.rx_in_msg && !som {
            cx.violation(format!(
                "{s}: echo {} starts without SOM ({} bytes)",
                self.echoed,
                data.len()
            ));
        }
        if self.rx_in_msg && som {
            cx.violation(format!(
                "{s}: SOM inside echo {} after {} bytes (two echoes mixed)",
                self.echoed,
                self.rx.len()
            ));
            self.rx.clear();
        }
        self.rx_in_msg = true;
        self.rx.extend_from_slice(data);
        if !flags.contains(Flags::EOM) {
            return;
        }
        self.rx_in_msg = false;
        let got = std::mem::take(&mut self.rx);
        if self.greeting && !self.greeted {
            self.greeted = true;
            self.greetings += 1;
            if got != GREETING {
                cx.violation(format!(
                    "{s}: the first message on the connection is not the greeting: {} bytes \
                     starting {:?}",
                    got.len(),
                    String::from_utf8_lossy(&got[..got.len().min(24)]),
                ));
            }
            return;
        }
        let k = self.echoed;
        if k >= self.msgs.len() {
            return cx.violation(format!(
                "{s}: an echo ({} bytes) after all {} messages were echoed",
                got.len(),
                k
            ));
        }
        if k >= self.sent {
            cx.violation(format!(
                "{s}: an echo for message {k}, which is not written whole on this connection \
                 (next to write: {}, piece {})",
                self.sent, self.piece
            ));
        }
        let want = echo_for(&self.msgs[k].body);
        if got != want {
            let other = self
                .msgs
                .iter()
                .position(|m| echo_for(&m.body) == got)
                .map_or("no message's".to_string(), |j| format!("message {j}'s"));
            return cx.violation(format!(
                "{s}: echo {k} wrong: {} bytes starting {:?}, {other} echo; wanted {} bytes \
                 starting {:?}",
                got.len(),
                String::from_utf8_lossy(&got[..got.len().min(24)]),
                want.len(),
                String::from_utf8_lossy(&want[..want.len().min(24)]),
            ));
        }
        self.msgs[k].echoed = true;
        self.echoed += 1;
        if self.echoed == self.msgs.len() && self.outcome == Outcome::Running {
            self.outcome = Outcome::Done;
            cx.note(format!(
                "client{}: all {} messages echoed ({} connections)",
                self.index, self.echoed, self.connections
            ));
        }
        self.want_tx(cx, s);
    }
}

impl App for WsClient {
    fn on_event(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        let Some(s) = self.stream else { return };
        if ev.stream() != s {
            return;
        }
        match ev {
            Event::State { state, .. } => self.on_state(cx, s, *state),
            Event::Writable { .. } => self.on_writable(cx, s),
            Event::Rx { data, flags, .. } => self.on_rx(cx, s, data, *flags),
            _ => {}
        }
    }

    fn on_wake(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        if tag != START {
            return;
        }
        let now = cx.now();
        if self.msgs.is_empty() {
            self.outcome = Outcome::Done;
        }
        // nailed_up: creating it starts connecting (its events are read
        // after this call returns, with the stream known).
        match cx.engine().create(now, "ws") {
            Ok(s) => self.stream = Some(s),
            Err(e) => cx.violation(format!("create: {e}")),
        }
    }

    fn shutdown(&mut self, cx: &mut AppCx<'_>) {
        if let Some(s) = self.stream {
            let now = cx.now();
            if let Err(e) = cx.engine().destroy(now, s) {
                cx.violation(format!("destroy {s}: {e}"));
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ----- the run -----------------------------------------------------------

/// The result of one WebSocket run.
#[derive(Clone, Debug)]
pub struct WsReport {
    /// The run's seed.
    pub seed: u64,
    /// Whether it ran over TLS.
    pub tls: bool,
    /// Whether the streamtypes were `ws_binary`.
    pub binary: bool,
    /// Everything that happened, in order.
    pub trace: Vec<TraceEntry>,
    /// Network counters.
    pub stats: Stats,
    /// Broken invariants (empty for a good run).
    pub violations: Vec<String>,
    /// Client nodes.
    pub clients: usize,
    /// Clients that got every message echoed.
    pub clients_done: usize,
    /// Clients that reported ALL_RETRIES_FAILED.
    pub clients_gave_up: usize,
    /// Messages planned, over all clients.
    pub messages: usize,
    /// Messages echoed (whole and right).
    pub echoed: usize,
    /// Messages written whole again on a later connection.
    pub resends: usize,
    /// Echoes cut short by a drop.
    pub partial_echoes: usize,
    /// Greetings the clients received.
    pub greetings: usize,
    /// Connections the clients saw upgraded (CONNECTED).
    pub client_connections: usize,
    /// Upgraded connections the server saw.
    pub server_connections: usize,
    /// Whole messages the server received (resends included).
    pub server_messages: usize,
    /// Times the server hung up.
    pub hang_ups: usize,
    /// Virtual time when the network went quiet (before shutdown).
    pub quiet_at: Duration,
}

impl WsReport {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The fault kinds this run saw.
    pub fn fault_kinds(&self) -> BTreeSet<FaultKind> {
        self.stats.faults.keys().copied().collect()
    }

    /// The trace, one line per entry.
    pub fn trace_text(&self) -> String {
        let mut s = String::new();
        for e in &self.trace {
            let _ = writeln!(s, "{e}");
        }
        s
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let faults: Vec<String> = self
            .stats
            .faults
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        format!(
            "seed {} ({}, {}): {} clients ({} done, {} gave up), {}/{} messages echoed, \
             {} resent, {} partial echoes, {} greetings, {} client / {} server connections upgraded, \
             {} messages seen by the server, {} hang-ups, {} connections, quiet at {:?}, \
             {} steps, faults [{}], {} violations",
            self.seed,
            if self.tls { "wss" } else { "ws" },
            if self.binary { "binary" } else { "text" },
            self.clients,
            self.clients_done,
            self.clients_gave_up,
            self.echoed,
            self.messages,
            self.resends,
            self.partial_echoes,
            self.greetings,
            self.client_connections,
            self.server_connections,
            self.server_messages,
            self.hang_ups,
            self.stats.links,
            self.quiet_at,
            self.stats.steps,
            faults.join(" "),
            self.violations.len()
        )
    }
}

/// The WebSocket scenario set up and ready to run.
pub struct WsSim {
    /// The seed the run came from.
    pub seed: u64,
    /// Whether it runs over TLS.
    pub tls: bool,
    /// Whether the streamtypes are `ws_binary`.
    pub binary: bool,
    /// The network; drive it with [`Sim::run`] / [`Sim::run_for`].
    pub sim: Sim,
    /// The server node (a [`WsServer`] on a [`Host`]).
    pub server: NodeId,
    /// The client nodes (a [`WsClient`] each, on a bare [`Engine`](ss_core::Engine)).
    pub clients: Vec<NodeId>,
}

impl WsSim {
    /// Build the scenario `cfg` describes.
    pub fn new(cfg: &WsSimConfig) -> Self {
        let mut sim = Sim::new(cfg.seed, cfg.faults.clone());
        let server = sim.add_node(
            "server",
            Stack::Host(Host::new(new_engine(
                server_policy(cfg),
                engine_config(cfg, 0),
            ))),
            Box::new(WsServer::new(cfg)),
        );
        assert_eq!(sim.node_ip(server), SERVER_IP);
        sim.add_dns(SERVER_NAME, vec![SERVER_IP]);
        let mut clients = vec![];
        for (i, spec) in cfg.clients.iter().enumerate() {
            let engine = new_engine(client_policy(cfg, spec), engine_config(cfg, 1 + i as u64));
            let app = WsClient::new(i, spec.clone(), cfg.binary, cfg.greeting, cfg.seed);
            clients.push(sim.add_node(&format!("client{i}"), Stack::Engine(engine), Box::new(app)));
        }
        sim.schedule_wake(server, Duration::ZERO, START);
        for (c, spec) in clients.iter().zip(&cfg.clients) {
            // After the server listens (its wake-up is queued first).
            sim.schedule_wake(*c, spec.start_at, START);
        }
        WsSim {
            seed: cfg.seed,
            tls: cfg.tls,
            binary: cfg.binary,
            sim,
            server,
            clients,
        }
    }

    /// Run until the network is quiet, check the WebSocket invariants,
    /// destroy every stream (clients first), check nothing leaked, and report.
    pub fn finish(mut self) -> WsReport {
        let sim = &mut self.sim;
        let _ = sim.run();
        let quiet_at = sim.elapsed();
        let mut violations = check_ws(sim, self.server, &self.clients);
        for c in &self.clients {
            sim.shutdown(*c);
        }
        let _ = sim.run();
        sim.shutdown(self.server);
        let _ = sim.run();
        sim.check_no_leaks();

        let mut all = sim.violations().to_vec();
        all.append(&mut violations);
        let apps: Vec<&WsClient> = self.clients.iter().filter_map(|c| sim.app(*c)).collect();
        let conns = sim
            .app::<WsServer>(self.server)
            .map(WsServer::conns)
            .unwrap_or_default();
        WsReport {
            seed: self.seed,
            tls: self.tls,
            binary: self.binary,
            trace: sim.trace().to_vec(),
            stats: sim.stats().clone(),
            violations: all,
            clients: apps.len(),
            clients_done: apps.iter().filter(|a| a.outcome == Outcome::Done).count(),
            clients_gave_up: apps.iter().filter(|a| a.outcome == Outcome::GaveUp).count(),
            messages: apps.iter().map(|a| a.msgs.len()).sum(),
            echoed: apps.iter().map(|a| a.echoed).sum(),
            resends: apps.iter().map(|a| a.resends() as usize).sum(),
            partial_echoes: apps.iter().map(|a| a.partial_echoes as usize).sum(),
            greetings: apps.iter().map(|a| a.greetings as usize).sum(),
            client_connections: apps.iter().map(|a| a.connections as usize).sum(),
            server_connections: conns.len(),
            server_messages: conns.iter().map(|c| c.messages.len()).sum(),
            hang_ups: conns.iter().filter(|c| c.hung_up).count(),
            quiet_at,
        }
    }
}

/// Run the WebSocket scenario `cfg` to the end and report.
pub fn run_ws(cfg: &WsSimConfig) -> WsReport {
    WsSim::new(cfg).finish()
}

/// Whether `conn`'s messages are a run `msgs[i], msgs[i+1], ...` of one
/// client's messages, its partial message (if any) a prefix of the next.
fn is_run_of(conn: &SrvConn, msgs: &[Msg]) -> bool {
    let n = conn.messages.len();
    (0..=msgs.len().saturating_sub(n)).any(|i| {
        i + n <= msgs.len()
            && conn
                .messages
                .iter()
                .zip(&msgs[i..])
                .all(|(got, m)| *got == m.body)
            && conn
                .partial
                .as_ref()
                .is_none_or(|p| msgs.get(i + n).is_some_and(|m| m.body.starts_with(p)))
    })
}

/// The WebSocket invariants, checked once the network is quiet (the clients
/// check each echo as it arrives and the server each message's SOM/EOM, see
/// [`WsClient`] and the module docs):
///
/// * every client got all its messages echoed or reported
///   ALL_RETRIES_FAILED (nothing stalls);
/// * the messages echoed are the first `echoed` of the client's, each
///   written whole at least once, and no message beyond was echoed;
/// * on every upgraded connection the server received a run of one client's
///   messages, `m[i], m[i+1], ...`, whole, with at most a prefix of the next
///   one when the connection ended in the middle of it;
/// * every message echoed reached the server whole on some connection.
pub fn check_ws(sim: &Sim, server: NodeId, clients: &[NodeId]) -> Vec<String> {
    let mut v = vec![];
    let Some(srv) = sim.app::<WsServer>(server) else {
        return vec!["server node has no WsServer".into()];
    };
    let conns = srv.conns();
    let mut all: Vec<&[Msg]> = vec![];
    for &c in clients {
        let Some(app) = sim.app::<WsClient>(c) else {
            v.push(format!("{c}: no WsClient"));
            continue;
        };
        all.push(&app.msgs);
        if app.outcome == Outcome::Running {
            v.push(format!(
                "{c}: stalled: neither done nor given up when the network went quiet \
                 ({} of {} messages echoed, last state {:?}, {} connections)",
                app.echoed,
                app.msgs.len(),
                app.last,
                app.connections
            ));
        }
        if app.outcome == Outcome::Done && app.echoed != app.msgs.len() {
            v.push(format!(
                "{c}: done with {} of {}",
                app.echoed,
                app.msgs.len()
            ));
        }
        for (k, m) in app.msgs.iter().enumerate() {
            if m.echoed != (k < app.echoed) {
                v.push(format!(
                    "{c} message {k}: echoed {} but the client has {} echoed",
                    m.echoed, app.echoed
                ));
            }
            if m.echoed && m.sends == 0 {
                v.push(format!("{c} message {k}: echoed but never written whole"));
            }
            if m.echoed && !conns.iter().any(|sc| sc.messages.contains(&m.body)) {
                v.push(format!(
                    "{c} message {k}: echoed, but the server never received it whole"
                ));
            }
        }
    }
    for sc in &conns {
        if !all.iter().any(|msgs| is_run_of(sc, msgs)) {
            let lens: Vec<usize> = sc.messages.iter().map(Vec::len).collect();
            v.push(format!(
                "server connection {}: messages {:?} (lengths) + partial {:?} are not a run \
                 of one client's messages",
                sc.stream,
                lens,
                sc.partial.as_ref().map(Vec::len)
            ));
        }
        if sc.echoed > sc.messages.len() {
            v.push(format!(
                "server connection {}: {} echoes for {} messages",
                sc.stream,
                sc.echoed,
                sc.messages.len()
            ));
        }
    }
    v
}
