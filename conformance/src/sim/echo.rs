//! The raw echo scenario: one server node echoes whatever it receives; client
//! nodes send numbered byte sequences and check they come back.
//!
//! The server is a [`Host`]: its accepted streams run an lws-style
//! [`Handler`] that echoes, and now and then hangs up (returns `DisconnectMe`
//! or `DestroyMe`, or destroys itself inside `rx`); the server app may also
//! restart its server stream, and its engine may have a small `max_streams`.
//! Clients are bare [`Engine`]s driven by [`EchoClient`]: one to three raw
//! streams per node, sending in answer to `Writable`, keeping what
//! `Engine::write` accepted per connection, resending from the last fully
//! echoed message after a drop; now and then they disconnect, destroy and
//! replace a stream, call `client_connect`, or arm the stream timeout, at any
//! point of the stream's life. Everything about a run (node and stream
//! counts, policies, faults, behaviours) comes from its seed via
//! [`EchoConfig::from_seed`], so a failing seed is a complete reproduction.
//!
//! [`check_echo`] lists the invariants checked once the network is quiet;
//! [`Sim`] itself checks state transitions, event order and leaks.

use super::net::{derive_seed, App, AppCx, FaultConfig, NodeId, Sim, SimRng, Stack, Stats};
use super::trace::{Fault, FaultKind, TraceEntry, TraceKind};
use ss_core::policy::{Policy, Protocol, StreamType};
use ss_core::{
    ConnId, Engine, EngineConfig, Event, Flags, Handler, Host, RetryPolicy, SsRet, StreamCtx,
    StreamId, StreamState,
};
use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

/// The port the echo server listens on.
pub const PORT: u16 = 7000;
/// The server's DNS name.
pub const SERVER_NAME: &str = "server.sim";
/// An address no node has (connections to it are refused).
pub const DEAD_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254));

/// Wake-up tag for [`EchoServer`] and [`EchoClient`]: create the stream(s).
pub const START: u64 = 1;
/// Wake-up tag: tear the server stream down (server restart).
const RESTART: u64 = 2;
/// Wake-up tag: a client pokes one of its streams (destroy, disconnect or connect now).
const POKE: u64 = 3;

/// How a client stream gets its first connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// Just create it: the streamtype is `nailed_up`, the engine connects.
    Create,
    /// `request_tx` on the idle stream (POLL, then connect).
    RequestTx,
    /// `client_connect`.
    ClientConnect,
}

/// One client node of the echo scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSpec {
    /// Endpoint is [`SERVER_NAME`] (resolved by sim DNS) rather than the server's IP.
    pub use_dns: bool,
    /// The streamtype's `nailed_up`.
    pub nailed_up: bool,
    /// The streamtype's `opportunistic`.
    pub opportunistic: bool,
    /// How the stream is started.
    pub start: StartMode,
    /// When the client creates its stream.
    pub start_at: Duration,
    /// Messages to get echoed.
    pub messages: usize,
    /// Most padding bytes in one message.
    pub max_pad: usize,
    /// Most bytes given to one `Engine::write`.
    pub max_chunk: usize,
    /// Streams the node creates (each sends its own messages).
    pub streams: usize,
    /// Chance, per payload received, that the client disconnects the stream.
    pub disconnect: f64,
    /// Most such disconnects by this node.
    pub max_disconnects: u32,
    /// Chance, per payload received, that the client destroys the stream
    /// and creates a fresh one in its place.
    pub churn: f64,
    /// Most such replacements by this node.
    pub max_churn: u32,
    /// Chance, when a stream is created and each time it connects, that the
    /// client arms its timeout (`start_timeout`) for 1..300 ms.
    pub user_timeout: f64,
    /// Times (after the client starts) at which it pokes a random live
    /// stream, whatever its state: destroys and replaces it, disconnects it,
    /// or calls `client_connect` on it.
    pub pokes: Vec<Duration>,
    /// On DISCONNECTED, call `request_tx` even when the streamtype reconnects
    /// by itself (nailed up, or not opportunistic): a belt-and-braces app.
    /// When false the app leaves reconnection to the engine, so a stream the
    /// engine leaves idle without ALL_RETRIES_FAILED shows up as stalled.
    pub kick_after_drop: bool,
}

impl ClientSpec {
    /// A nailed-up client using DNS, starting at once, with `messages` messages.
    pub fn nailed(messages: usize) -> Self {
        ClientSpec {
            use_dns: true,
            nailed_up: true,
            opportunistic: false,
            start: StartMode::Create,
            start_at: Duration::ZERO,
            messages,
            max_pad: 40,
            max_chunk: 64,
            streams: 1,
            disconnect: 0.0,
            max_disconnects: 0,
            churn: 0.0,
            max_churn: 0,
            user_timeout: 0.0,
            pokes: vec![],
            kick_after_drop: true,
        }
    }
}

/// Everything that decides one echo run.
#[derive(Clone, Debug, PartialEq)]
pub struct EchoConfig {
    /// The run's seed (faults, payload, engine jitter).
    pub seed: u64,
    /// The network's behaviour.
    pub faults: FaultConfig,
    /// One entry per client node.
    pub clients: Vec<ClientSpec>,
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
    /// The server binds 0.0.0.0 (else its own IP).
    pub server_bind_any: bool,
    /// DNS lists [`DEAD_IP`] before the server's address.
    pub dns_dead_first: bool,
    /// Restart the server stream at this time after it starts, down for this long.
    pub server_restart: Option<(Duration, Duration)>,
    /// Reset every connection of client `i` at time `t`: `(t, i)`.
    pub resets_at: Vec<(Duration, usize)>,
    /// Chance, per payload received, that the server disconnects the connection.
    pub server_disconnect: f64,
    /// Most such disconnects by the server.
    pub server_max_disconnects: u32,
    /// The server engine's `max_streams` (its listening stream counts).
    pub server_max_streams: usize,
}

impl EchoConfig {
    /// A calm run: one nailed-up client with 10 messages, no faults, 1 ms
    /// latency, no jitter, backoff 100/200/400 ms with conceal 3.
    pub fn calm(seed: u64) -> Self {
        EchoConfig {
            seed,
            faults: FaultConfig::none(),
            clients: vec![ClientSpec::nailed(10)],
            backoff_ms: vec![100, 200, 400],
            conceal: 3,
            jitter_pc: 0,
            connect_timeout: Duration::from_millis(1000),
            tx_high_water: 256,
            tx_budget: 64,
            server_bind_any: true,
            dns_dead_first: false,
            server_restart: None,
            resets_at: vec![],
            server_disconnect: 0.0,
            server_max_disconnects: 0,
            server_max_streams: EngineConfig::default().max_streams,
        }
    }

    /// The configuration seed `seed` stands for: client count, policies and
    /// fault odds all drawn from it.
    pub fn from_seed(seed: u64) -> Self {
        let mut r = SimRng::new(derive_seed(seed, 0xec40));
        let pct = |r: &mut SimRng, on: f64, lo: u64, hi: u64| {
            if r.chance(on) {
                r.range(lo, hi) as f64 / 1000.0
            } else {
                0.0
            }
        };
        let lat_lo = r.range(1, 5);
        let faults = FaultConfig {
            latency_ms: (lat_lo, lat_lo + r.range(0, 30)),
            bytes_per_ms: [0, 50, 200, 1000][r.range(0, 3) as usize],
            refuse: pct(&mut r, 0.5, 50, 400),
            dns_fail: pct(&mut r, 0.4, 50, 400),
            blackhole: pct(&mut r, 0.3, 50, 300),
            reset: pct(&mut r, 0.5, 5, 50),
            max_resets: r.range(1, 4) as u32,
            partial_write: pct(&mut r, 0.5, 200, 900),
            write_gap_ms: (0, r.range(0, 10)),
            delay: pct(&mut r, 0.4, 20, 200),
            delay_extra_ms: (50, r.range(100, 1500)),
            coalesce: 0.0,
        };
        let n = r.range(1, 3) as usize;
        let clients = (0..n)
            .map(|_| {
                let (nailed_up, opportunistic, start) = match r.range(0, 2) {
                    0 => (true, false, StartMode::Create),
                    1 => (false, true, StartMode::RequestTx),
                    _ => (false, false, StartMode::ClientConnect),
                };
                let start = if start != StartMode::Create && r.chance(0.5) {
                    StartMode::RequestTx
                } else {
                    start
                };
                ClientSpec {
                    use_dns: r.chance(0.6),
                    nailed_up,
                    opportunistic,
                    start,
                    start_at: r.millis((0, 50)),
                    messages: r.range(1, 40) as usize,
                    max_pad: r.range(0, 120) as usize,
                    max_chunk: r.range(1, 512) as usize,
                    streams: r.range(1, 3) as usize,
                    disconnect: pct(&mut r, 0.2, 5, 50),
                    max_disconnects: r.range(1, 2) as u32,
                    churn: pct(&mut r, 0.15, 5, 50),
                    max_churn: r.range(1, 2) as u32,
                    user_timeout: pct(&mut r, 0.2, 100, 600),
                    pokes: if r.chance(0.25) {
                        (0..r.range(1, 3)).map(|_| r.millis((0, 2000))).collect()
                    } else {
                        vec![]
                    },
                    kick_after_drop: true,
                }
            })
            .collect();
        let b0 = r.range(20, 200) as u32;
        EchoConfig {
            seed,
            faults,
            clients,
            backoff_ms: vec![b0, b0 * 2, b0 * 4],
            conceal: r.range(3, 6) as u16,
            jitter_pc: r.range(0, 30) as u8,
            connect_timeout: r.millis((300, 3000)),
            tx_high_water: r.range(64, 2048) as usize,
            tx_budget: r.range(16, 1024) as usize,
            server_bind_any: r.chance(0.5),
            dns_dead_first: r.chance(0.25),
            server_restart: r
                .chance(0.2)
                .then(|| (r.millis((5, 300)), r.millis((50, 1500)))),
            resets_at: vec![],
            server_disconnect: pct(&mut r, 0.2, 5, 50),
            server_max_disconnects: r.range(1, 3) as u32,
            server_max_streams: if r.chance(0.1) {
                r.range(2, 4) as usize
            } else {
                EngineConfig::default().max_streams
            },
        }
    }
}

/// The retry policy every engine in the run uses.
pub(super) fn retry(cfg: &EchoConfig) -> RetryPolicy {
    RetryPolicy {
        name: "sim".into(),
        backoff_ms: cfg.backoff_ms.clone(),
        conceal: cfg.conceal,
        jitter_pc: Some(cfg.jitter_pc),
        svalidping_s: None,
        svalidhup_s: None,
    }
}

/// The server node's policy: a raw server streamtype `echo_srv` on [`PORT`].
pub fn server_policy(cfg: &EchoConfig, server_ip: IpAddr) -> Policy {
    Policy {
        retry: vec![retry(cfg)],
        streamtypes: vec![StreamType {
            name: "echo_srv".into(),
            server: true,
            protocol: Protocol::Raw,
            port: PORT,
            endpoint: (!cfg.server_bind_any).then(|| server_ip.to_string()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A client node's policy: a raw client streamtype `echo` reaching the server.
pub fn client_policy(cfg: &EchoConfig, spec: &ClientSpec, server_ip: IpAddr) -> Policy {
    let endpoint = if spec.use_dns {
        SERVER_NAME.to_string()
    } else {
        server_ip.to_string()
    };
    Policy {
        retry: vec![retry(cfg)],
        streamtypes: vec![StreamType {
            name: "echo".into(),
            endpoint: Some(endpoint),
            port: PORT,
            protocol: Protocol::Raw,
            retry: Some("sim".into()),
            nailed_up: spec.nailed_up,
            opportunistic: spec.opportunistic,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(super) fn engine_config(cfg: &EchoConfig, node: u64) -> EngineConfig {
    EngineConfig {
        seed: derive_seed(cfg.seed, 100 + node),
        connect_timeout: cfg.connect_timeout,
        tx_high_water: cfg.tx_high_water,
        tx_budget: cfg.tx_budget,
        ..Default::default()
    }
}

/// Shared by the server's handlers: whether to hang up, and who did.
struct HangUps {
    rng: SimRng,
    chance: f64,
    left: u32,
    done: Vec<Fault>,
}

/// The server's per-connection handler: echo everything back; now and then
/// (per [`EchoConfig::server_disconnect`]) hang up instead, the lws ways:
/// return `DisconnectMe` or `DestroyMe` from `rx`, or destroy the stream
/// from inside `rx` and return `HandleDestroyed`.
struct EchoHandler {
    pending: Vec<u8>,
    hang_ups: Rc<RefCell<HangUps>>,
}

impl Handler for EchoHandler {
    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], _flags: Flags) -> SsRet {
        self.pending.extend_from_slice(data);
        let mut h = self.hang_ups.borrow_mut();
        if h.left > 0 {
            let chance = h.chance;
            if h.rng.chance(chance) {
                h.left -= 1;
                let stream = ctx.id();
                return match h.rng.range(0, 2) {
                    0 => {
                        h.done.push(Fault::AppDisconnect { stream });
                        SsRet::DisconnectMe
                    }
                    1 => {
                        h.done.push(Fault::AppDestroy { stream });
                        SsRet::DestroyMe
                    }
                    _ => {
                        h.done.push(Fault::AppDestroy { stream });
                        ctx.destroy();
                        SsRet::HandleDestroyed
                    }
                };
            }
        }
        let _ = ctx.request_tx();
        SsRet::Ok
    }

    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        _flags: &mut Flags,
    ) -> SsRet {
        if self.pending.is_empty() {
            return SsRet::TxDontSend;
        }
        let n = budget.min(self.pending.len());
        buf.extend(self.pending.drain(..n));
        if !self.pending.is_empty() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

/// The listening stream's handler: nothing to do.
struct Listener;
impl Handler for Listener {}

/// The server node's application: makes the server stream (and restarts it
/// if told to), and records what each accepted connection received.
pub struct EchoServer {
    hang_ups: Rc<RefCell<HangUps>>,
    restart: Option<(Duration, Duration)>,
    restarted: bool,
    server: Option<StreamId>,
    conn_of: BTreeMap<StreamId, ConnId>,
    /// Bytes received, per accepted connection (the server engine's id).
    pub received: BTreeMap<ConnId, Vec<u8>>,
}

impl EchoServer {
    /// A server that restarts once per `restart` (after, downtime), if
    /// given, and disconnects as `cfg` says.
    pub fn new(cfg: &EchoConfig) -> Self {
        EchoServer {
            hang_ups: Rc::new(RefCell::new(HangUps {
                rng: SimRng::new(derive_seed(cfg.seed, 300)),
                chance: cfg.server_disconnect,
                left: cfg.server_max_disconnects,
                done: vec![],
            })),
            restart: cfg.server_restart,
            restarted: false,
            server: None,
            conn_of: BTreeMap::new(),
            received: BTreeMap::new(),
        }
    }
}

impl App for EchoServer {
    fn on_event(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        let hung_up = std::mem::take(&mut self.hang_ups.borrow_mut().done);
        for fault in hung_up {
            cx.fault(fault);
        }
        match ev {
            Event::Accepted { stream, .. } => match cx.conn_of(*stream) {
                Some(c) => {
                    self.conn_of.insert(*stream, c);
                    self.received.entry(c).or_default();
                }
                None => cx.violation(format!("accepted {stream} has no connection")),
            },
            Event::Rx { stream, data, .. } => match self.conn_of.get(stream) {
                Some(c) => self.received.entry(*c).or_default().extend_from_slice(data),
                None => cx.violation(format!("rx on {stream}, not an accepted stream")),
            },
            Event::ListenFailed { reason, .. } => {
                cx.violation(format!("server could not listen: {reason}"))
            }
            _ => {}
        }
    }

    fn on_wake(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        let now = cx.now();
        match tag {
            START => {
                let Some(host) = cx.host() else {
                    return cx.violation("the echo server needs a Host");
                };
                let made = host.create_server(
                    now,
                    "echo_srv",
                    Box::new(Listener),
                    Box::new({
                        let hang_ups = self.hang_ups.clone();
                        move |_| {
                            Box::new(EchoHandler {
                                pending: vec![],
                                hang_ups: hang_ups.clone(),
                            })
                        }
                    }),
                );
                match made {
                    Ok(s) => self.server = Some(s),
                    Err(e) => cx.violation(format!("create_server: {e}")),
                }
                if let (Some((after, _)), false) = (self.restart, self.restarted) {
                    cx.wake_after(after, RESTART);
                }
            }
            RESTART => {
                self.restarted = true;
                if let (Some(s), Some((_, downtime))) = (self.server.take(), self.restart) {
                    cx.fault(Fault::ServerRestart { downtime });
                    let _ = cx.engine().destroy(now, s);
                    cx.wake_after(downtime, START);
                }
            }
            _ => {}
        }
    }

    fn shutdown(&mut self, cx: &mut AppCx<'_>) {
        if let Some(s) = self.server.take() {
            let now = cx.now();
            if let Err(e) = cx.engine().destroy(now, s) {
                cx.violation(format!("destroy server: {e}"));
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Where a client stream got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still sending or waiting for echo.
    Running,
    /// Every message came back.
    Done,
    /// The stream reported ALL_RETRIES_FAILED.
    GaveUp,
    /// The application destroyed the stream before it was done.
    Destroyed,
}

/// What happened on one connection of a client stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// The client engine's connection.
    pub conn: ConnId,
    /// Offset into the stream's data where this connection started sending.
    pub start: usize,
    /// Bytes `Engine::write` accepted on this connection, in order.
    pub sent: Vec<u8>,
    /// Bytes received back on this connection, in order.
    pub echoed: Vec<u8>,
    /// The stream reported DISCONNECTED for this connection.
    pub failed: bool,
    /// The application destroyed the stream while on this connection.
    pub destroyed: bool,
}

/// One client stream: its payload and what became of it.
#[derive(Clone, Debug)]
pub struct ClientStream {
    /// The stream, while it exists.
    pub id: Option<StreamId>,
    /// The whole byte sequence to get echoed: numbered, padded messages.
    pub data: Vec<u8>,
    ends: Vec<usize>,
    /// Bytes confirmed echoed (at a message boundary): where a new
    /// connection starts sending.
    pub confirmed: usize,
    cursor: usize,
    cur: Option<usize>,
    reported: bool,
    /// One entry per connection the stream had.
    pub epochs: Vec<Epoch>,
    /// Where the stream got to.
    pub outcome: Outcome,
}

impl ClientStream {
    fn new(tag: &str, messages: usize, max_pad: usize, r: &mut SimRng) -> Self {
        let mut data = vec![];
        let mut ends = vec![];
        for k in 0..messages {
            data.extend_from_slice(format!("<{tag}m{k}|").as_bytes());
            let pad = r.range(0, max_pad as u64) as usize;
            data.extend((0..pad).map(|j| b'a' + ((k + j) % 26) as u8));
            data.extend_from_slice(b">\n");
            ends.push(data.len());
        }
        ClientStream {
            id: None,
            data,
            ends,
            confirmed: 0,
            cursor: 0,
            cur: None,
            reported: false,
            epochs: vec![],
            outcome: Outcome::Running,
        }
    }

    /// Bytes echoed back over every connection.
    pub fn bytes_echoed(&self) -> u64 {
        self.epochs.iter().map(|e| e.echoed.len() as u64).sum()
    }
}

/// A client node's application: raw streams that send numbered messages
/// and check the echo.
pub struct EchoClient {
    index: usize,
    spec: ClientSpec,
    rng: SimRng,
    disconnects_left: u32,
    churn_left: u32,
    /// The node's streams, in creation order.
    pub streams: Vec<ClientStream>,
}

impl EchoClient {
    /// Client node number `index` per `spec`; payload and behaviour drawn from `seed`.
    pub fn new(index: usize, spec: ClientSpec, seed: u64) -> Self {
        let mut rng = SimRng::new(derive_seed(seed, 200 + index as u64));
        let streams = (0..spec.streams.max(1))
            .map(|k| {
                ClientStream::new(
                    &format!("c{index}s{k}"),
                    spec.messages,
                    spec.max_pad,
                    &mut rng,
                )
            })
            .collect();
        EchoClient {
            index,
            disconnects_left: spec.max_disconnects,
            churn_left: spec.max_churn,
            spec,
            rng,
            streams,
        }
    }

    /// Bytes echoed back over every stream and connection.
    pub fn bytes_echoed(&self) -> u64 {
        self.streams.iter().map(ClientStream::bytes_echoed).sum()
    }

    fn request_tx(cx: &mut AppCx<'_>, s: StreamId) {
        let now = cx.now();
        if let Err(e) = cx.engine().request_tx(now, s) {
            cx.violation(format!("request_tx: {e}"));
        }
    }

    /// Create stream `k` and start it as the spec says.
    fn start_stream(&mut self, cx: &mut AppCx<'_>, k: usize) {
        let now = cx.now();
        let s = match cx.engine().create(now, "echo") {
            Ok(s) => s,
            Err(e) => return cx.violation(format!("create: {e}")),
        };
        self.streams[k].id = Some(s);
        self.maybe_timeout(cx, s);
        let r = match self.spec.start {
            StartMode::Create => Ok(()),
            StartMode::RequestTx => cx.engine().request_tx(now, s),
            StartMode::ClientConnect => cx.engine().client_connect(now, s),
        };
        if let Err(e) = r {
            cx.violation(format!("starting {s}: {e}"));
        }
    }

    /// Now and then arm the stream's timeout, so TIMEOUT lands anywhere.
    fn maybe_timeout(&mut self, cx: &mut AppCx<'_>, s: StreamId) {
        if self.rng.chance(self.spec.user_timeout) {
            let ms = self.rng.range(1, 300) as u32;
            let now = cx.now();
            if let Err(e) = cx.engine().start_timeout(now, s, ms) {
                cx.violation(format!("start_timeout {s}: {e}"));
            }
        }
    }

    fn on_state(&mut self, cx: &mut AppCx<'_>, k: usize, s: StreamId, state: StreamState) {
        if state == StreamState::Connected {
            self.maybe_timeout(cx, s);
        }
        let st = &mut self.streams[k];
        match state {
            StreamState::Connected => {
                let Some(conn) = cx.conn_of(s) else {
                    return cx.violation(format!("{s} CONNECTED with no connection"));
                };
                if st.cur.is_some() {
                    cx.violation(format!("{s} CONNECTED twice without DISCONNECTED"));
                }
                st.epochs.push(Epoch {
                    conn,
                    start: st.confirmed,
                    sent: vec![],
                    echoed: vec![],
                    failed: false,
                    destroyed: false,
                });
                st.cur = Some(st.epochs.len() - 1);
                st.cursor = st.confirmed;
                if st.outcome == Outcome::Running && st.cursor < st.data.len() {
                    Self::request_tx(cx, s);
                }
            }
            StreamState::Disconnected => {
                if let Some(i) = st.cur.take() {
                    st.epochs[i].failed = true;
                }
                // A streamtype that reconnects by itself (nailed up, or not
                // opportunistic) must either reconnect or report
                // ALL_RETRIES_FAILED, so a strict app leaves it alone (and
                // asks for tx again on CONNECTED). An opportunistic one stays
                // down until asked: the app asks, to reconnect now.
                let reconnects = self.spec.nailed_up || !self.spec.opportunistic;
                if st.outcome == Outcome::Running && (!reconnects || self.spec.kick_after_drop) {
                    Self::request_tx(cx, s);
                }
            }
            StreamState::AllRetriesFailed if st.outcome == Outcome::Running => {
                st.outcome = Outcome::GaveUp;
                cx.note(format!(
                    "{s} gave up with {} of {} bytes echoed",
                    st.confirmed,
                    st.data.len()
                ));
            }
            StreamState::Destroying => {
                st.cur = None;
                st.id = None;
            }
            _ => {}
        }
    }

    fn on_writable(&mut self, cx: &mut AppCx<'_>, k: usize, s: StreamId, budget: usize) {
        let max_chunk = self.spec.max_chunk;
        let st = &mut self.streams[k];
        let Some(i) = st.cur else {
            return cx.note(format!("{s} writable while not connected"));
        };
        if st.outcome != Outcome::Running || st.cursor >= st.data.len() {
            return;
        }
        let n = budget.min(max_chunk).min(st.data.len() - st.cursor).max(1);
        let chunk = st.data[st.cursor..st.cursor + n].to_vec();
        let now = cx.now();
        match cx.engine().write(now, s, &chunk, Flags::NONE) {
            Ok(took) => {
                if took != n {
                    cx.violation(format!("write took {took} of {n} bytes"));
                }
                st.epochs[i].sent.extend_from_slice(&chunk);
                st.cursor += n;
                if st.cursor < st.data.len() {
                    Self::request_tx(cx, s);
                }
            }
            Err(e) => cx.note(format!("{s} write refused: {e}")),
        }
    }

    fn on_rx(&mut self, cx: &mut AppCx<'_>, k: usize, s: StreamId, data: &[u8]) {
        let st = &mut self.streams[k];
        let Some(i) = st.cur else {
            return cx.violation(format!(
                "{s} received {} bytes while not connected",
                data.len()
            ));
        };
        let e = &mut st.epochs[i];
        e.echoed.extend_from_slice(data);
        if !e.sent.starts_with(&e.echoed) {
            if !st.reported {
                st.reported = true;
                cx.violation(format!(
                    "{s}: echo on {} is not a prefix of what was sent ({} sent, {} echoed)",
                    e.conn,
                    e.sent.len(),
                    e.echoed.len()
                ));
            }
            return;
        }
        let reached = e.start + e.echoed.len();
        let whole = st.ends.partition_point(|&end| end <= reached);
        if whole > 0 {
            st.confirmed = st.confirmed.max(st.ends[whole - 1]);
        }
        if reached == st.data.len() && st.outcome == Outcome::Running {
            st.outcome = Outcome::Done;
            cx.note(format!(
                "{s}: all {} messages ({} bytes) echoed",
                st.ends.len(),
                st.data.len()
            ));
            return;
        }
        let now = cx.now();
        if self.disconnects_left > 0 && self.rng.chance(self.spec.disconnect) {
            self.disconnects_left -= 1;
            cx.fault(Fault::AppDisconnect { stream: s });
            if let Err(e) = cx.engine().disconnect(now, s) {
                cx.violation(format!("disconnect {s}: {e}"));
            }
        } else if self.churn_left > 0 && self.rng.chance(self.spec.churn) {
            self.churn_left -= 1;
            self.replace_stream(cx, k);
        }
    }

    /// Destroy stream `k` mid-stream and start over on a fresh stream.
    fn replace_stream(&mut self, cx: &mut AppCx<'_>, k: usize) {
        let st = &mut self.streams[k];
        let Some(s) = st.id else {
            return;
        };
        cx.fault(Fault::AppDestroy { stream: s });
        st.outcome = Outcome::Destroyed;
        if let Some(i) = st.cur.take() {
            st.epochs[i].destroyed = true;
        }
        let now = cx.now();
        if let Err(e) = cx.engine().destroy(now, s) {
            cx.violation(format!("destroy {s}: {e}"));
        }
        let tag = format!("c{}s{}", self.index, self.streams.len());
        let fresh = ClientStream::new(&tag, self.spec.messages, self.spec.max_pad, &mut self.rng);
        self.streams.push(fresh);
        self.start_stream(cx, self.streams.len() - 1);
    }

    /// Act on a random live stream, whatever state it is in.
    fn poke(&mut self, cx: &mut AppCx<'_>) {
        let live: Vec<usize> = (0..self.streams.len())
            .filter(|&k| {
                self.streams[k].id.is_some() && self.streams[k].outcome == Outcome::Running
            })
            .collect();
        if live.is_empty() {
            return;
        }
        let k = live[self.rng.range(0, live.len() as u64 - 1) as usize];
        let Some(s) = self.streams[k].id else {
            return;
        };
        let now = cx.now();
        match self.rng.range(0, 2) {
            0 => self.replace_stream(cx, k),
            1 => {
                cx.fault(Fault::AppDisconnect { stream: s });
                if let Err(e) = cx.engine().disconnect(now, s) {
                    cx.violation(format!("disconnect {s}: {e}"));
                }
            }
            _ => {
                cx.note(format!("{s}: client_connect"));
                if let Err(e) = cx.engine().client_connect(now, s) {
                    cx.violation(format!("client_connect {s}: {e}"));
                }
            }
        }
    }
}

impl App for EchoClient {
    fn on_event(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        let s = ev.stream();
        let Some(k) = self.streams.iter().position(|st| st.id == Some(s)) else {
            return;
        };
        match ev {
            Event::State { state, .. } => self.on_state(cx, k, s, *state),
            Event::Writable { budget, .. } => self.on_writable(cx, k, s, *budget),
            Event::Rx { data, .. } => self.on_rx(cx, k, s, data),
            _ => {}
        }
    }

    fn on_wake(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        match tag {
            START => {
                for k in 0..self.streams.len() {
                    self.start_stream(cx, k);
                }
                for at in self.spec.pokes.clone() {
                    cx.wake_after(at, POKE);
                }
            }
            POKE => self.poke(cx),
            _ => {}
        }
    }

    fn shutdown(&mut self, cx: &mut AppCx<'_>) {
        let now = cx.now();
        for st in &self.streams {
            if let Some(s) = st.id {
                if let Err(e) = cx.engine().destroy(now, s) {
                    cx.violation(format!("destroy {s}: {e}"));
                }
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The result of one echo run.
#[derive(Clone, Debug)]
pub struct EchoReport {
    /// The run's seed.
    pub seed: u64,
    /// Everything that happened, in order.
    pub trace: Vec<TraceEntry>,
    /// Network counters.
    pub stats: Stats,
    /// Broken invariants (empty for a good run).
    pub violations: Vec<String>,
    /// The server node.
    pub server: NodeId,
    /// The client nodes.
    pub client_nodes: Vec<NodeId>,
    /// Client streams, over all client nodes.
    pub streams: usize,
    /// Client streams whose every message came back.
    pub streams_done: usize,
    /// Client streams that reported ALL_RETRIES_FAILED.
    pub streams_gave_up: usize,
    /// Client streams the application destroyed before they were done.
    pub streams_destroyed: usize,
    /// Bytes echoed back to clients, over all connections.
    pub bytes_echoed: u64,
    /// Virtual time when the network went quiet (before shutdown).
    pub quiet_at: Duration,
}

impl EchoReport {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The fault kinds this run saw.
    pub fn fault_kinds(&self) -> BTreeSet<FaultKind> {
        self.stats.faults.keys().copied().collect()
    }

    /// The states `node` reported (all its streams), with their times.
    pub fn states(&self, node: NodeId) -> Vec<(Duration, StreamState)> {
        self.trace
            .iter()
            .filter(|e| e.node == node)
            .filter_map(|e| match e.kind {
                TraceKind::State { state, .. } => Some((e.at, state)),
                _ => None,
            })
            .collect()
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
            "seed {}: {} clients, {} streams ({} done, {} gave up, {} destroyed), {} connections, \
             {} bytes echoed, quiet at {:?}, {} steps, faults [{}], {} violations",
            self.seed,
            self.client_nodes.len(),
            self.streams,
            self.streams_done,
            self.streams_gave_up,
            self.streams_destroyed,
            self.stats.links,
            self.bytes_echoed,
            self.quiet_at,
            self.stats.steps,
            faults.join(" "),
            self.violations.len()
        )
    }
}

/// The echo scenario set up and ready to run: the network, the server node
/// and the client nodes, with their start (and any scheduled resets) queued.
pub struct EchoSim {
    /// The seed the run came from.
    pub seed: u64,
    /// The network; drive it with [`Sim::run`] / [`Sim::run_for`].
    pub sim: Sim,
    /// The server node (an [`EchoServer`] on a [`Host`]).
    pub server: NodeId,
    /// The client nodes (an [`EchoClient`] each, on a bare [`Engine`]).
    pub clients: Vec<NodeId>,
}

impl EchoSim {
    /// Build the scenario `cfg` describes.
    pub fn new(cfg: &EchoConfig) -> Self {
        let mut sim = Sim::new(cfg.seed, cfg.faults.clone());
        let server_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let server_config = EngineConfig {
            max_streams: cfg.server_max_streams,
            ..engine_config(cfg, 0)
        };
        let server = sim.add_node(
            "server",
            Stack::Host(Host::new(Engine::new(
                server_policy(cfg, server_ip),
                server_config,
            ))),
            Box::new(EchoServer::new(cfg)),
        );
        assert_eq!(sim.node_ip(server), server_ip);
        let addrs = if cfg.dns_dead_first {
            vec![DEAD_IP, server_ip]
        } else {
            vec![server_ip]
        };
        sim.add_dns(SERVER_NAME, addrs);
        let mut clients = vec![];
        for (i, spec) in cfg.clients.iter().enumerate() {
            let engine = Engine::new(
                client_policy(cfg, spec, server_ip),
                engine_config(cfg, 1 + i as u64),
            );
            let app = EchoClient::new(i, spec.clone(), cfg.seed);
            clients.push(sim.add_node(&format!("client{i}"), Stack::Engine(engine), Box::new(app)));
        }
        sim.schedule_wake(server, Duration::ZERO, START);
        for (c, spec) in clients.iter().zip(&cfg.clients) {
            sim.schedule_wake(*c, spec.start_at, START);
        }
        for (at, i) in &cfg.resets_at {
            if let Some(c) = clients.get(*i) {
                sim.schedule_reset(*c, *at);
            }
        }
        EchoSim {
            seed: cfg.seed,
            sim,
            server,
            clients,
        }
    }

    /// Client `i`'s application.
    pub fn client(&self, i: usize) -> &EchoClient {
        self.sim
            .app(self.clients[i])
            .expect("client nodes run an EchoClient")
    }

    /// Run until the network is quiet, check the echo invariants, destroy
    /// every stream (clients first, so nailed-up streams do not chase a dead
    /// server), check nothing leaked, and report.
    pub fn finish(mut self) -> EchoReport {
        let sim = &mut self.sim;
        let _ = sim.run();
        let quiet_at = sim.elapsed();
        let violations = check_echo(sim, self.server, &self.clients);
        for c in &self.clients {
            sim.shutdown(*c);
        }
        let _ = sim.run();
        sim.shutdown(self.server);
        let _ = sim.run();
        sim.check_no_leaks();

        echo_report(
            sim,
            self.seed,
            self.server,
            &self.clients,
            violations,
            quiet_at,
        )
    }
}

/// The report of a finished run whose client nodes run [`EchoClient`]s:
/// the network's own violations followed by `violations`.
pub(super) fn echo_report(
    sim: &Sim,
    seed: u64,
    server: NodeId,
    clients: &[NodeId],
    mut violations: Vec<String>,
    quiet_at: Duration,
) -> EchoReport {
    let mut all = sim.violations().to_vec();
    all.append(&mut violations);
    let apps: Vec<&EchoClient> = clients.iter().filter_map(|c| sim.app(*c)).collect();
    let streams = || apps.iter().flat_map(|a| a.streams.iter());
    let count = |o: Outcome| streams().filter(|s| s.outcome == o).count();
    EchoReport {
        seed,
        trace: sim.trace().to_vec(),
        stats: sim.stats().clone(),
        violations: all,
        server,
        client_nodes: clients.to_vec(),
        streams: streams().count(),
        streams_done: count(Outcome::Done),
        streams_gave_up: count(Outcome::GaveUp),
        streams_destroyed: count(Outcome::Destroyed),
        bytes_echoed: apps.iter().map(|a| a.bytes_echoed()).sum(),
        quiet_at,
    }
}

/// Run the echo scenario `cfg` to the end: until the network is quiet, then
/// check the echo invariants, destroy every stream, and check for leaks.
pub fn run_echo(cfg: &EchoConfig) -> EchoReport {
    EchoSim::new(cfg).finish()
}

/// What holds for a client stream whoever echoed it (the server directly,
/// or through a proxy daemon): it is done or gave up (nothing stalls), and
/// per connection epoch it sent a slice of its data, the echo is a prefix of
/// that, and the whole of it when no failure was reported.
pub(super) fn check_stream(c: NodeId, k: usize, st: &ClientStream, v: &mut Vec<String>) {
    if st.outcome == Outcome::Running {
        v.push(format!(
            "{c} stream #{k}: stalled: neither done nor given up when the network \
             went quiet ({} of {} bytes confirmed)",
            st.confirmed,
            st.data.len()
        ));
    }
    for (n, e) in st.epochs.iter().enumerate() {
        let at = format!("{c} stream #{k} epoch {n} ({})", e.conn);
        if st.data.get(e.start..e.start + e.sent.len()) != Some(&e.sent[..]) {
            v.push(format!(
                "{at}: client bookkeeping: sent bytes are not its data"
            ));
        }
        if !e.sent.starts_with(&e.echoed) {
            v.push(format!(
                "{at}: the echo ({} bytes) is not a prefix of what was sent ({} bytes)",
                e.echoed.len(),
                e.sent.len()
            ));
        }
        if !e.failed && !e.destroyed && e.echoed.len() != e.sent.len() {
            v.push(format!(
                "{at}: echo incomplete ({} of {}) with no failure reported",
                e.echoed.len(),
                e.sent.len()
            ));
        }
    }
}

/// The echo invariants, checked once the network is quiet:
///
/// * every client stream is done or has given up (nothing stalls);
/// * per connection, the server received a prefix of what the client's
///   `write`s accepted, in order, and the client's echo is a prefix of that;
/// * unless the stream reported DISCONNECTED for that connection, all of it
///   arrived and all of it came back;
/// * every connection the network made was reported CONNECTED by its client.
pub fn check_echo(sim: &Sim, server: NodeId, clients: &[NodeId]) -> Vec<String> {
    let mut v = vec![];
    let Some(srv) = sim.app::<EchoServer>(server) else {
        return vec!["server node has no EchoServer".into()];
    };
    let links = sim.links();
    let empty = vec![];
    for &c in clients {
        let Some(app) = sim.app::<EchoClient>(c) else {
            v.push(format!("{c}: no EchoClient"));
            continue;
        };
        for (k, st) in app.streams.iter().enumerate() {
            check_stream(c, k, st, &mut v);
            for e in &st.epochs {
                let at = format!("{c} stream #{k} {}", e.conn);
                let Some(link) = links.iter().find(|l| l.client == (c, e.conn)) else {
                    v.push(format!(
                        "{at}: CONNECTED on a connection the network never made"
                    ));
                    continue;
                };
                let got = srv.received.get(&link.server.1).unwrap_or(&empty);
                if !e.sent.starts_with(got) {
                    v.push(format!(
                        "{at}: server received {} bytes that are not a prefix of the {} sent",
                        got.len(),
                        e.sent.len()
                    ));
                }
                if !got.starts_with(&e.echoed) {
                    v.push(format!(
                        "{at}: client got {} bytes of echo but the server received only {}",
                        e.echoed.len(),
                        got.len()
                    ));
                }
                let server_hung_up = link.reset || link.closed_itself[1];
                if !server_hung_up && got.len() != e.sent.len() {
                    // Only the client closed (or nobody did): a graceful
                    // close still delivers everything written before it.
                    v.push(format!(
                        "{at}: lost data: {} bytes accepted by write, {} reached the \
                         server, which neither hung up nor was reset",
                        e.sent.len(),
                        got.len(),
                    ));
                }
                if !e.failed && !e.destroyed && got.len() != e.sent.len() {
                    v.push(format!(
                        "{at}: lost data: {} bytes accepted by write, {} reached the \
                         server, no failure reported",
                        e.sent.len(),
                        got.len()
                    ));
                }
            }
        }
        for l in links.iter().filter(|l| l.client.0 == c) {
            let seen = app
                .streams
                .iter()
                .any(|st| st.epochs.iter().any(|e| e.conn == l.client.1));
            if !seen {
                v.push(format!(
                    "{c}: {} connected on {} but no stream reported CONNECTED on it",
                    l.client.1, l.id
                ));
            }
        }
    }
    v
}
