//! The HTTP/1.1 scenario, plain and over TLS: one server node answers POSTs,
//! client nodes run transactions one after another and check every answer.
//!
//! The server is a [`Host`] with an h1 server streamtype on [`PORT`]; each
//! accepted connection's [`Handler`] collects the request body and, at its
//! EOM, answers `200` with `b"resp:" + body` (`server_ack(0)`,
//! `request_tx_len`, the response written in one to three `tx` callbacks,
//! SOM on the first, EOM on the last). Now and then (seeded) it answers
//! `503` instead, hangs up before answering, or hangs up in the middle of
//! the response (`DisconnectMe`), so the clients' retry paths run.
//!
//! Clients are bare [`Engine`](ss_core::Engine)s driven by [`HttpClient`]: one h1 POST stream
//! each, running its transactions in order: `request_tx_len(len)`, the body
//! in one to three writes on `Writable` (the last with EOM; the first
//! `Writable` comes while the stream is still CONNECTING, as in the
//! reference), the response collected until EOM, checked at QOS_ACK_REMOTE,
//! and the next transaction started at the DISCONNECTED that follows. On a
//! failure the engine retries by itself and asks for the body again; the
//! client only answers. ALL_RETRIES_FAILED ends the client (it gave up).
//!
//! With [`HttpConfig::tls`] every streamtype runs over TLS: an Ed25519 CA
//! and leaf made deterministically ([`tls_certs`]), each engine with a
//! seeded [`deterministic_provider`], so a TLS run replays byte for byte.
//!
//! Everything comes from the seed via [`HttpConfig::from_seed`];
//! [`check_http`] lists the invariants checked once the network is quiet,
//! and [`Sim`] itself checks state transitions, event order and leaks.

use super::net::{derive_seed, App, AppCx, FaultConfig, NodeId, Sim, SimRng, Stack, Stats};
use super::shared::{self, new_engine, retry_policy, server_endpoint, ServerApp, ServerState};
pub use super::shared::{tls_certs, TlsCerts, SERVER_IP, SERVER_NAME, UNIX_TIME};
use super::trace::{Fault, FaultKind, TraceEntry};
use crate::tls_provider::deterministic_provider;
use ss_core::policy::{MetadataDecl, Policy, Protocol, StreamType};
use ss_core::{
    EngineConfig, Event, Flags, Handler, Host, RetryPolicy, SsRet, StreamCtx, StreamId, StreamState,
};
use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

/// The port the HTTP server listens on.
pub const PORT: u16 = 8080;
/// Wake-up tag: make the server stream, or the client's stream.
pub const START: u64 = 1;

/// One client node of the HTTP scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpClientSpec {
    /// Endpoint is [`SERVER_NAME`] (resolved by sim DNS) rather than the server's IP.
    pub use_dns: bool,
    /// When the client creates its stream.
    pub start_at: Duration,
    /// Body length of each transaction, in order (K = its length).
    pub bodies: Vec<usize>,
}

/// Everything that decides one HTTP run.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// The run's seed (faults, bodies, engine jitter, TLS randomness).
    pub seed: u64,
    /// The network's behaviour.
    pub faults: FaultConfig,
    /// One entry per client node.
    pub clients: Vec<HttpClientSpec>,
    /// Every streamtype runs over TLS.
    pub tls: bool,
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
    /// Client engines' `keepalive_idle`.
    pub keepalive_idle: Duration,
    /// Chance, per complete request, that the server answers 503.
    pub server_busy: f64,
    /// Chance, per complete request, that the server hangs up before or
    /// during its response.
    pub server_abort: f64,
    /// Most 503s and hang-ups by the server together.
    pub server_max_misbehave: u32,
}

impl HttpConfig {
    /// A calm run: `clients` clients with `k` transactions of mixed sizes,
    /// no faults, 1 ms latency, no server misbehaviour.
    pub fn calm(seed: u64, tls: bool, clients: usize, k: usize) -> Self {
        let sizes = [0, 1, 100, 5000, 20_000, 17];
        HttpConfig {
            seed,
            faults: FaultConfig::none(),
            clients: (0..clients)
                .map(|i| HttpClientSpec {
                    use_dns: i % 2 == 0,
                    start_at: Duration::from_millis(i as u64),
                    bodies: (0..k).map(|j| sizes[(i + j) % sizes.len()]).collect(),
                })
                .collect(),
            tls,
            backoff_ms: vec![100, 200, 400],
            conceal: 20,
            jitter_pc: 0,
            connect_timeout: Duration::from_millis(1000),
            tx_high_water: 64 * 1024,
            tx_budget: 4096,
            keepalive_idle: Duration::from_secs(5),
            server_busy: 0.0,
            server_abort: 0.0,
            server_max_misbehave: 0,
        }
    }

    /// The configuration seed `seed` stands for: client count, bodies,
    /// TLS, policies, fault and misbehaviour odds all drawn from it.
    pub fn from_seed(seed: u64) -> Self {
        let mut r = SimRng::new(derive_seed(seed, 0x4771));
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
            bytes_per_ms: [0, 200, 1000, 5000][r.range(0, 3) as usize],
            refuse: pct(&mut r, 0.4, 50, 400),
            dns_fail: pct(&mut r, 0.3, 50, 400),
            blackhole: pct(&mut r, 0.2, 50, 200),
            reset: pct(&mut r, 0.4, 5, 50),
            max_resets: r.range(1, 4) as u32,
            partial_write: pct(&mut r, 0.5, 200, 900),
            write_gap_ms: (0, r.range(0, 10)),
            delay: pct(&mut r, 0.3, 20, 200),
            delay_extra_ms: (50, r.range(100, 1500)),
            coalesce: 0.0,
        };
        let n = r.range(1, 4) as usize;
        let clients = (0..n)
            .map(|_| {
                let k = r.range(1, 6) as usize;
                HttpClientSpec {
                    use_dns: r.chance(0.5),
                    start_at: r.millis((0, 50)),
                    bodies: (0..k)
                        .map(|_| match r.range(0, 9) {
                            0 => 0,
                            1..=4 => r.range(1, 200) as usize,
                            5..=7 => r.range(200, 4000) as usize,
                            _ => r.range(4000, 20_000) as usize,
                        })
                        .collect(),
                }
            })
            .collect();
        let b0 = r.range(20, 200) as u32;
        HttpConfig {
            seed,
            faults,
            clients,
            tls: r.chance(0.5),
            backoff_ms: vec![b0, b0 * 2, b0 * 4],
            // Mostly enough to outlast the faults; sometimes small, so
            // clients do give up.
            conceal: if r.chance(0.15) {
                r.range(1, 4) as u16
            } else {
                20
            },
            jitter_pc: r.range(0, 30) as u8,
            connect_timeout: r.millis((300, 3000)),
            tx_high_water: r.range(512, 32 * 1024) as usize,
            tx_budget: r.range(64, 8192) as usize,
            keepalive_idle: r.millis((50, 5000)),
            server_busy: pct(&mut r, 0.3, 50, 300),
            server_abort: pct(&mut r, 0.3, 50, 300),
            server_max_misbehave: r.range(1, 4) as u32,
        }
    }

    /// Transactions over all clients.
    pub fn transactions(&self) -> usize {
        self.clients.iter().map(|c| c.bodies.len()).sum()
    }
}

/// The body of client `client`'s transaction `txn`: a tag naming both, then
/// a pattern, cut to `len` bytes (so bodies of 8 bytes or more are unique
/// within a run and a mixed-up response cannot go unnoticed).
pub fn body_for(client: usize, txn: usize, len: usize) -> Vec<u8> {
    let mut b = format!("<c{client}t{txn}|").into_bytes();
    let mut k = 0usize;
    while b.len() < len {
        b.push(b'a' + ((client * 7 + txn * 3 + k) % 26) as u8);
        k += 1;
    }
    b.truncate(len);
    b
}

/// The response the server gives to a request with body `body`.
pub fn response_for(body: &[u8]) -> Vec<u8> {
    let mut r = b"resp:".to_vec();
    r.extend_from_slice(body);
    r
}

/// The retry policy every engine in the run uses.
fn retry(cfg: &HttpConfig) -> RetryPolicy {
    retry_policy(&cfg.backoff_ms, cfg.conceal, cfg.jitter_pc)
}

fn with_tls(cfg: &HttpConfig, p: Policy) -> Policy {
    shared::with_tls(cfg.tls, p)
}

fn mime() -> Vec<MetadataDecl> {
    vec![MetadataDecl {
        name: "mime".into(),
        header: Some("content-type:".into()),
    }]
}

/// The server node's policy: an h1 server streamtype `http_srv` on [`PORT`]
/// (over TLS with the scenario's leaf when `cfg.tls`).
pub fn server_policy(cfg: &HttpConfig) -> Policy {
    with_tls(
        cfg,
        Policy {
            retry: vec![retry(cfg)],
            streamtypes: vec![StreamType {
                name: "http_srv".into(),
                server: true,
                protocol: Protocol::H1,
                port: PORT,
                tls: cfg.tls,
                server_cert: cfg.tls.then(|| "leaf".into()),
                server_key: cfg.tls.then(|| "leaf_key".into()),
                metadata: mime(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
}

/// A client node's policy: an h1 client streamtype `post` (POST to `/t`)
/// reaching the server, not opportunistic, retrying per the run's policy.
pub fn client_policy(cfg: &HttpConfig, spec: &HttpClientSpec) -> Policy {
    let endpoint = server_endpoint(spec.use_dns);
    let mut st = StreamType {
        name: "post".into(),
        endpoint: Some(endpoint),
        port: PORT,
        protocol: Protocol::H1,
        retry: Some("sim".into()),
        opportunistic: false,
        tls: cfg.tls,
        tls_trust_store: cfg.tls.then(|| "sim_ts".into()),
        metadata: mime(),
        ..Default::default()
    };
    st.http.method = Some("POST".into());
    st.http.url = Some("/t".into());
    with_tls(
        cfg,
        Policy {
            retry: vec![retry(cfg)],
            streamtypes: vec![st],
            ..Default::default()
        },
    )
}

fn engine_config(cfg: &HttpConfig, node: u64) -> EngineConfig {
    EngineConfig {
        seed: derive_seed(cfg.seed, 100 + node),
        connect_timeout: cfg.connect_timeout,
        tx_high_water: cfg.tx_high_water,
        tx_budget: cfg.tx_budget,
        keepalive_idle: cfg.keepalive_idle,
        tls_provider: cfg
            .tls
            .then(|| deterministic_provider(derive_seed(cfg.seed, 500 + node))),
        ..Default::default()
    }
}

// ----- server ------------------------------------------------------------

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRequest {
    /// The accepted stream it came on.
    pub stream: StreamId,
    /// The body bytes received.
    pub body: Vec<u8>,
    /// The body's EOM arrived.
    pub complete: bool,
    /// The status answered (0 until decided; 200, 503), or 1 for a hang-up.
    pub answer: u16,
}

/// What the server's handlers share with the server app.
pub struct SrvShared {
    rng: SimRng,
    busy: f64,
    abort: f64,
    misbehave_left: u32,
    requests: Vec<SrvRequest>,
    faults: Vec<Fault>,
    notes: Vec<String>,
}

/// How the handler answers the current request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Still receiving the body.
    Receiving,
    /// Writing the response; hang up before piece `abort_at` if set.
    Responding { abort_at: Option<usize> },
}

/// An accepted connection's handler: collect the body, answer at its EOM.
struct SrvHandler {
    shared: Rc<RefCell<SrvShared>>,
    req: Option<usize>,
    plan: Plan,
    resp: Vec<u8>,
    cuts: Vec<usize>,
    piece: usize,
}

impl SrvHandler {
    /// Decide the answer to the complete request `idx` and ask to send it.
    fn answer(&mut self, ctx: &mut StreamCtx<'_>, idx: usize) -> SsRet {
        let mut guard = self.shared.borrow_mut();
        let sh = &mut *guard;
        let body = sh.requests[idx].body.clone();
        let stream = ctx.id();
        let mut abort_at = None;
        let (code, resp) = if sh.misbehave_left > 0 && sh.rng.chance(sh.busy) {
            sh.misbehave_left -= 1;
            sh.notes.push(format!("server: {stream} answers 503"));
            (503, b"busy".to_vec())
        } else if sh.misbehave_left > 0 && sh.rng.chance(sh.abort) {
            sh.misbehave_left -= 1;
            if sh.rng.chance(0.5) {
                sh.requests[idx].answer = 1;
                sh.faults.push(Fault::AppDisconnect { stream });
                sh.notes
                    .push(format!("server: {stream} hangs up instead of answering"));
                return SsRet::DisconnectMe;
            }
            abort_at = Some(1);
            (0, response_for(&body))
        } else {
            (0, response_for(&body))
        };
        sh.requests[idx].answer = if code == 0 { 200 } else { code as u16 };
        // One to three pieces (at least two when hanging up mid-response).
        let lo = if abort_at.is_some() { 2 } else { 1 };
        let n = sh.rng.range(lo, 3) as usize;
        let mut cuts: BTreeSet<usize> = (1..n)
            .map(|_| sh.rng.range(1, resp.len() as u64 - 1) as usize)
            .collect();
        cuts.insert(0);
        cuts.insert(resp.len());
        drop(guard);
        self.cuts = cuts.into_iter().collect();
        self.piece = 0;
        self.resp = resp;
        self.plan = Plan::Responding { abort_at };
        let _ = ctx.server_ack(code);
        let _ = ctx.request_tx_len(self.resp.len() as u64);
        SsRet::Ok
    }
}

impl Handler for SrvHandler {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        if state == StreamState::ServerTxn {
            let mut sh = self.shared.borrow_mut();
            sh.requests.push(SrvRequest {
                stream: ctx.id(),
                body: vec![],
                complete: false,
                answer: 0,
            });
            self.req = Some(sh.requests.len() - 1);
            self.plan = Plan::Receiving;
        }
        SsRet::Ok
    }

    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        let Some(idx) = self.req else {
            self.shared.borrow_mut().notes.push(format!(
                "VIOLATION server: rx on {} before SERVER_TXN",
                ctx.id()
            ));
            return SsRet::Ok;
        };
        {
            let mut sh = self.shared.borrow_mut();
            let r = &mut sh.requests[idx];
            if r.complete || self.plan != Plan::Receiving {
                let s = ctx.id();
                sh.notes
                    .push(format!("VIOLATION server: {s} rx after the request's EOM"));
                return SsRet::Ok;
            }
            r.body.extend_from_slice(data);
            if !flags.contains(Flags::EOM) {
                return SsRet::Ok;
            }
            r.complete = true;
        }
        self.answer(ctx, idx)
    }

    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        _budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        let Plan::Responding { abort_at } = self.plan else {
            return SsRet::TxDontSend;
        };
        if self.piece + 1 >= self.cuts.len() {
            return SsRet::TxDontSend;
        }
        if abort_at == Some(self.piece) {
            let stream = ctx.id();
            let mut sh = self.shared.borrow_mut();
            if let Some(idx) = self.req {
                sh.requests[idx].answer = 1;
            }
            sh.faults.push(Fault::AppDisconnect { stream });
            sh.notes.push(format!(
                "server: {stream} hangs up after {} of {} response bytes",
                self.cuts[self.piece],
                self.resp.len()
            ));
            self.plan = Plan::Receiving;
            return SsRet::DisconnectMe;
        }
        let (a, b) = (self.cuts[self.piece], self.cuts[self.piece + 1]);
        buf.extend_from_slice(&self.resp[a..b]);
        if self.piece == 0 {
            *flags |= Flags::SOM;
        }
        self.piece += 1;
        if self.piece + 1 == self.cuts.len() {
            *flags |= Flags::EOM;
        } else {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

/// The server node's application (see [`ServerApp`]).
pub type HttpServer = ServerApp<SrvShared>;

impl HttpServer {
    /// A server misbehaving as `cfg` says.
    pub fn new(cfg: &HttpConfig) -> Self {
        ServerApp::with_state(
            SrvShared {
                rng: SimRng::new(derive_seed(cfg.seed, 300)),
                busy: cfg.server_busy,
                abort: cfg.server_abort,
                misbehave_left: cfg.server_max_misbehave,
                requests: vec![],
                faults: vec![],
                notes: vec![],
            },
            "http_srv",
            |shared| {
                Box::new(SrvHandler {
                    shared: shared.clone(),
                    req: None,
                    plan: Plan::Receiving,
                    resp: vec![],
                    cuts: vec![],
                    piece: 0,
                })
            },
        )
    }

    /// Every request the server saw, in order.
    pub fn requests(&self) -> Vec<SrvRequest> {
        self.state().requests.clone()
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
    /// Transactions still to do.
    Running,
    /// Every transaction was acknowledged with the right response.
    Done,
    /// The stream reported ALL_RETRIES_FAILED.
    GaveUp,
}

/// One transaction of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// The request body.
    pub body: Vec<u8>,
    /// Where the body is cut into writes (0, ..., len).
    pub cuts: Vec<usize>,
    /// CONNECTING reported for it (attempts, counting silent retries).
    pub attempts: u32,
    /// The response acknowledged (QOS_ACK_REMOTE), if it was.
    pub response: Option<Vec<u8>>,
}

/// A client node's application: one h1 POST stream running its
/// transactions in order, checking each response.
pub struct HttpClient {
    index: usize,
    spec: HttpClientSpec,
    stream: Option<StreamId>,
    /// The transactions, in order.
    pub txns: Vec<Txn>,
    /// The transaction under way (== `txns.len()` when done).
    pub cur: usize,
    piece: usize,
    rx: Vec<u8>,
    rx_eom: bool,
    last: Option<StreamState>,
    /// Where the client got to.
    pub outcome: Outcome,
}

impl HttpClient {
    /// Client node number `index` per `spec`; write cuts drawn from `seed`.
    pub fn new(index: usize, spec: HttpClientSpec, seed: u64) -> Self {
        let mut rng = SimRng::new(derive_seed(seed, 200 + index as u64));
        let txns = spec
            .bodies
            .iter()
            .enumerate()
            .map(|(k, &len)| {
                let body = body_for(index, k, len);
                let mut cuts: BTreeSet<usize> = BTreeSet::new();
                if len >= 2 {
                    for _ in 1..rng.range(1, 3) {
                        cuts.insert(rng.range(1, len as u64 - 1) as usize);
                    }
                }
                cuts.insert(0);
                cuts.insert(len);
                Txn {
                    body,
                    cuts: cuts.into_iter().collect(),
                    attempts: 0,
                    response: None,
                }
            })
            .collect();
        HttpClient {
            index,
            spec,
            stream: None,
            txns,
            cur: 0,
            piece: 0,
            rx: vec![],
            rx_eom: false,
            last: None,
            outcome: Outcome::Running,
        }
    }

    /// What the client was made from.
    pub fn spec(&self) -> &HttpClientSpec {
        &self.spec
    }

    /// Transactions acknowledged.
    pub fn done(&self) -> usize {
        self.txns.iter().filter(|t| t.response.is_some()).count()
    }

    /// Start transaction `cur`: announce its length, which asks for tx.
    fn start_txn(&mut self, cx: &mut AppCx<'_>, s: StreamId) {
        self.piece = 0;
        self.rx.clear();
        self.rx_eom = false;
        let len = self.txns[self.cur].body.len() as u64;
        let now = cx.now();
        cx.note(format!(
            "client{}: {s} transaction {} ({len} bytes)",
            self.index, self.cur
        ));
        if let Err(e) = cx.engine().request_tx_len(now, s, len) {
            cx.violation(format!("request_tx_len {s}: {e}"));
        }
    }

    /// The attempt under way failed or a new one starts: the body goes
    /// again from its start, any partial response is dropped.
    fn restart_attempt(&mut self) {
        self.piece = 0;
        self.rx.clear();
        self.rx_eom = false;
    }

    fn on_state(&mut self, cx: &mut AppCx<'_>, s: StreamId, state: StreamState) {
        let prev = self.last;
        if state != StreamState::User {
            self.last = Some(state);
        }
        let running = self.outcome == Outcome::Running && self.cur < self.txns.len();
        match state {
            StreamState::Connecting => {
                self.restart_attempt();
                if running {
                    self.txns[self.cur].attempts += 1;
                }
            }
            StreamState::Connected => {
                if !self.rx.is_empty() {
                    cx.violation(format!("{s}: response bytes before CONNECTED"));
                }
                self.rx.clear();
                self.rx_eom = false;
            }
            StreamState::QosAckRemote => {
                if prev != Some(StreamState::Connected) {
                    cx.violation(format!(
                        "{s}: QOS_ACK_REMOTE after {prev:?}, not after CONNECTED"
                    ));
                }
                if !running {
                    return cx.violation(format!("{s}: QOS_ACK_REMOTE with no transaction"));
                }
                let t = &mut self.txns[self.cur];
                let want = response_for(&t.body);
                if t.response.is_some() {
                    cx.violation(format!("{s}: transaction {} acknowledged twice", self.cur));
                } else if !self.rx_eom {
                    cx.violation(format!(
                        "{s}: transaction {} acknowledged before the response's EOM \
                         ({} bytes)",
                        self.cur,
                        self.rx.len()
                    ));
                } else if self.rx != want {
                    cx.violation(format!(
                        "{s}: transaction {}: wrong response ({} bytes, starting {:?}; \
                         wanted {} bytes starting {:?})",
                        self.cur,
                        self.rx.len(),
                        String::from_utf8_lossy(&self.rx[..self.rx.len().min(24)]),
                        want.len(),
                        String::from_utf8_lossy(&want[..want.len().min(24)]),
                    ));
                }
                t.response = Some(std::mem::take(&mut self.rx));
            }
            StreamState::QosNackRemote => {
                cx.violation(format!(
                    "{s}: QOS_NACK_REMOTE (the server only answers 200 or 503)"
                ));
            }
            StreamState::Disconnected => {
                let acked = running && self.txns[self.cur].response.is_some();
                self.restart_attempt();
                if acked {
                    self.cur += 1;
                    if self.cur == self.txns.len() {
                        self.outcome = Outcome::Done;
                        cx.note(format!(
                            "client{}: all {} transactions done",
                            self.index, self.cur
                        ));
                    } else {
                        self.start_txn(cx, s);
                    }
                }
            }
            StreamState::Unreachable => self.restart_attempt(),
            StreamState::AllRetriesFailed if self.outcome == Outcome::Running => {
                self.outcome = Outcome::GaveUp;
                cx.note(format!(
                    "client{}: gave up with {} of {} transactions done",
                    self.index,
                    self.cur,
                    self.txns.len()
                ));
            }
            StreamState::Destroying => self.stream = None,
            _ => {}
        }
    }

    fn on_writable(&mut self, cx: &mut AppCx<'_>, s: StreamId) {
        if self.outcome != Outcome::Running || self.cur >= self.txns.len() {
            return cx.violation(format!("{s}: Writable with no transaction under way"));
        }
        let t = &self.txns[self.cur];
        if self.piece + 1 >= t.cuts.len() {
            return cx.violation(format!(
                "{s}: Writable with transaction {}'s body already written on this attempt",
                self.cur
            ));
        }
        let (a, b) = (t.cuts[self.piece], t.cuts[self.piece + 1]);
        let last = self.piece + 2 == t.cuts.len();
        let flags = if last { Flags::EOM } else { Flags::NONE };
        let chunk = t.body[a..b].to_vec();
        let now = cx.now();
        match cx.engine().write(now, s, &chunk, flags) {
            Ok(n) if n == chunk.len() => {
                self.piece += 1;
                if !last {
                    if let Err(e) = cx.engine().request_tx(now, s) {
                        cx.violation(format!("request_tx {s}: {e}"));
                    }
                }
            }
            Ok(n) => cx.violation(format!("write took {n} of {} bytes", chunk.len())),
            Err(e) => cx.violation(format!("{s}: write on Writable refused: {e}")),
        }
    }

    fn on_rx(&mut self, cx: &mut AppCx<'_>, s: StreamId, data: &[u8], flags: Flags) {
        if self.last != Some(StreamState::Connected) {
            return cx.violation(format!(
                "{s}: {} response bytes while {:?}, not between CONNECTED and QOS_ACK",
                data.len(),
                self.last
            ));
        }
        if self.rx_eom {
            return cx.violation(format!("{s}: response bytes after EOM"));
        }
        if self.rx.is_empty() && !flags.contains(Flags::SOM) {
            cx.violation(format!("{s}: first response bytes without SOM"));
        }
        self.rx.extend_from_slice(data);
        self.rx_eom = flags.contains(Flags::EOM);
    }
}

impl App for HttpClient {
    fn on_event(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        let Some(s) = self.stream else { return };
        if ev.stream() != s {
            return;
        }
        match ev {
            Event::State { state, .. } => self.on_state(cx, s, *state),
            Event::Writable { .. } => self.on_writable(cx, s),
            Event::Rx { data, flags, .. } => self.on_rx(cx, s, data, *flags),
            Event::ConnectionError { .. } => self.restart_attempt(),
            _ => {}
        }
    }

    fn on_wake(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        if tag != START {
            return;
        }
        let now = cx.now();
        let s = match cx.engine().create(now, "post") {
            Ok(s) => s,
            Err(e) => return cx.violation(format!("create: {e}")),
        };
        self.stream = Some(s);
        if self.txns.is_empty() {
            self.outcome = Outcome::Done;
        } else {
            self.start_txn(cx, s);
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

/// The result of one HTTP run.
#[derive(Clone, Debug)]
pub struct HttpReport {
    /// The run's seed.
    pub seed: u64,
    /// Whether it ran over TLS.
    pub tls: bool,
    /// Everything that happened, in order.
    pub trace: Vec<TraceEntry>,
    /// Network counters.
    pub stats: Stats,
    /// Broken invariants (empty for a good run).
    pub violations: Vec<String>,
    /// Client nodes.
    pub clients: usize,
    /// Clients that finished every transaction.
    pub clients_done: usize,
    /// Clients that reported ALL_RETRIES_FAILED.
    pub clients_gave_up: usize,
    /// Transactions planned, over all clients.
    pub txns: usize,
    /// Transactions acknowledged with the right response.
    pub txns_done: usize,
    /// Requests the server saw (retries included).
    pub requests: usize,
    /// 503s the server answered.
    pub busy: usize,
    /// Times the server hung up instead of (or while) answering.
    pub hang_ups: usize,
    /// Virtual time when the network went quiet (before shutdown).
    pub quiet_at: Duration,
}

impl HttpReport {
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
            "seed {} ({}): {} clients ({} done, {} gave up), {}/{} transactions, {} requests \
             ({} answered 503, {} hung up), {} connections, quiet at {:?}, {} steps, \
             faults [{}], {} violations",
            self.seed,
            if self.tls { "tls" } else { "plain" },
            self.clients,
            self.clients_done,
            self.clients_gave_up,
            self.txns_done,
            self.txns,
            self.requests,
            self.busy,
            self.hang_ups,
            self.stats.links,
            self.quiet_at,
            self.stats.steps,
            faults.join(" "),
            self.violations.len()
        )
    }
}

/// The HTTP scenario set up and ready to run.
pub struct HttpSim {
    /// The seed the run came from.
    pub seed: u64,
    /// Whether it runs over TLS.
    pub tls: bool,
    /// The network; drive it with [`Sim::run`] / [`Sim::run_for`].
    pub sim: Sim,
    /// The server node (an [`HttpServer`] on a [`Host`]).
    pub server: NodeId,
    /// The client nodes (an [`HttpClient`] each, on a bare [`Engine`](ss_core::Engine)).
    pub clients: Vec<NodeId>,
}

impl HttpSim {
    /// Build the scenario `cfg` describes.
    pub fn new(cfg: &HttpConfig) -> Self {
        let mut sim = Sim::new(cfg.seed, cfg.faults.clone());
        let server = sim.add_node(
            "server",
            Stack::Host(Host::new(new_engine(
                server_policy(cfg),
                engine_config(cfg, 0),
            ))),
            Box::new(HttpServer::new(cfg)),
        );
        assert_eq!(sim.node_ip(server), SERVER_IP);
        sim.add_dns(SERVER_NAME, vec![SERVER_IP]);
        let mut clients = vec![];
        for (i, spec) in cfg.clients.iter().enumerate() {
            let engine = new_engine(client_policy(cfg, spec), engine_config(cfg, 1 + i as u64));
            let app = HttpClient::new(i, spec.clone(), cfg.seed);
            clients.push(sim.add_node(&format!("client{i}"), Stack::Engine(engine), Box::new(app)));
        }
        sim.schedule_wake(server, Duration::ZERO, START);
        for (c, spec) in clients.iter().zip(&cfg.clients) {
            // After the server listens (its wake-up is queued first).
            sim.schedule_wake(*c, spec.start_at, START);
        }
        HttpSim {
            seed: cfg.seed,
            tls: cfg.tls,
            sim,
            server,
            clients,
        }
    }

    /// Run until the network is quiet, check the HTTP invariants, destroy
    /// every stream (clients first), check nothing leaked, and report.
    pub fn finish(mut self) -> HttpReport {
        let sim = &mut self.sim;
        let _ = sim.run();
        let quiet_at = sim.elapsed();
        let mut violations = check_http(sim, self.server, &self.clients);
        for c in &self.clients {
            sim.shutdown(*c);
        }
        let _ = sim.run();
        sim.shutdown(self.server);
        let _ = sim.run();
        sim.check_no_leaks();

        let mut all = sim.violations().to_vec();
        all.append(&mut violations);
        let apps: Vec<&HttpClient> = self.clients.iter().filter_map(|c| sim.app(*c)).collect();
        let reqs = sim
            .app::<HttpServer>(self.server)
            .map(HttpServer::requests)
            .unwrap_or_default();
        HttpReport {
            seed: self.seed,
            tls: self.tls,
            trace: sim.trace().to_vec(),
            stats: sim.stats().clone(),
            violations: all,
            clients: apps.len(),
            clients_done: apps.iter().filter(|a| a.outcome == Outcome::Done).count(),
            clients_gave_up: apps.iter().filter(|a| a.outcome == Outcome::GaveUp).count(),
            txns: apps.iter().map(|a| a.txns.len()).sum(),
            txns_done: apps.iter().map(|a| a.done()).sum(),
            requests: reqs.len(),
            busy: reqs.iter().filter(|r| r.answer == 503).count(),
            hang_ups: reqs.iter().filter(|r| r.answer == 1).count(),
            quiet_at,
        }
    }
}

/// Run the HTTP scenario `cfg` to the end and report.
pub fn run_http(cfg: &HttpConfig) -> HttpReport {
    HttpSim::new(cfg).finish()
}

/// The HTTP invariants, checked once the network is quiet (the clients
/// check each response as it is acknowledged, see [`HttpClient`]):
///
/// * every client finished all its transactions or reported
///   ALL_RETRIES_FAILED (nothing stalls);
/// * transactions were acknowledged in order, each once, each with exactly
///   `resp:` + its own body;
/// * every body the server received is a prefix of one of the clients'
///   bodies (all of it when its EOM arrived), and every acknowledged body
///   reached the server whole;
/// * the server answered every complete request it did not hang up on.
pub fn check_http(sim: &Sim, server: NodeId, clients: &[NodeId]) -> Vec<String> {
    let mut v = vec![];
    let Some(srv) = sim.app::<HttpServer>(server) else {
        return vec!["server node has no HttpServer".into()];
    };
    let reqs = srv.requests();
    let mut all_bodies: Vec<&[u8]> = vec![];
    for &c in clients {
        let Some(app) = sim.app::<HttpClient>(c) else {
            v.push(format!("{c}: no HttpClient"));
            continue;
        };
        if app.outcome == Outcome::Running {
            v.push(format!(
                "{c}: stalled: neither done nor given up when the network went quiet \
                 ({} of {} transactions done, last state {:?})",
                app.cur,
                app.txns.len(),
                app.last
            ));
        }
        if app.outcome == Outcome::Done && app.done() != app.txns.len() {
            v.push(format!(
                "{c}: done with {} of {}",
                app.done(),
                app.txns.len()
            ));
        }
        for (k, t) in app.txns.iter().enumerate() {
            all_bodies.push(&t.body);
            if (k < app.cur) != t.response.is_some() {
                v.push(format!(
                    "{c} transaction {k}: acknowledged {} but the client is at {}",
                    t.response.is_some(),
                    app.cur
                ));
            }
            if let Some(r) = &t.response {
                if *r != response_for(&t.body) {
                    v.push(format!("{c} transaction {k}: wrong response"));
                }
                if !reqs.iter().any(|q| q.complete && q.body == t.body) {
                    v.push(format!(
                        "{c} transaction {k}: acknowledged, but the server never received \
                         its whole body"
                    ));
                }
            }
        }
    }
    for (i, q) in reqs.iter().enumerate() {
        let ok = if q.complete {
            all_bodies.contains(&q.body.as_slice())
        } else {
            all_bodies.iter().any(|b| b.starts_with(&q.body))
        };
        if !ok {
            v.push(format!(
                "server request #{i} on {}: body of {} bytes ({}) is not {} any client's \
                 body (starts {:?})",
                q.stream,
                q.body.len(),
                if q.complete { "complete" } else { "partial" },
                if q.complete { "" } else { "a prefix of" },
                String::from_utf8_lossy(&q.body[..q.body.len().min(24)])
            ));
        }
        if q.complete && q.answer == 0 {
            v.push(format!(
                "server request #{i} on {}: complete but never answered",
                q.stream
            ));
        }
    }
    v
}
