//! The HTTP/2 scenario: one server node serves an `h2` server streamtype
//! over TLS (ALPN `h2`), client nodes start several `h2` POST streams at
//! once (so they share one connection per client) and check every answer.
//!
//! The server is a [`Host`] with an `h2` server streamtype on [`PORT`]; each
//! accepted stream's [`Handler`] (one per HTTP/2 request: the connection's
//! own stream and, for concurrent requests, new accepted streams) collects
//! the request body and, at its EOM, answers `200` with a response derived
//! from the request ([`response_for`]: method, path and body), written in one
//! to three `tx` callbacks. Now and then (seeded) it misbehaves instead:
//!
//! * answers `503` (the client conceals the attempt and retries);
//! * hangs up (`DisconnectMe`) before or in the middle of its response;
//! * resets its stream alone (`DestroyMe`, RST_STREAM) before or in the
//!   middle of its response, the connection's other streams going on.
//!
//! Clients are bare [`Engine`](ss_core::Engine)s driven by [`H2Client`]:
//! several `h2` POST streams created together, each running its
//! transactions in order (`request_tx_len`, the body in one to three writes
//! on `Writable`, the response collected until EOM and checked byte for
//! byte at QOS_ACK_REMOTE, the next transaction at the DISCONNECTED that
//! follows). Bodies range from empty to beyond the 65535-byte default
//! HTTP/2 flow-control window. The engine retries failures by itself;
//! ALL_RETRIES_FAILED ends a stream (it gave up).
//!
//! Every engine runs with a seeded [`deterministic_provider`] and the
//! scenario's Ed25519 certificates ([`tls_certs`]), so a run replays byte
//! for byte. Everything comes from the seed via [`H2SimConfig::from_seed`];
//! [`check_h2`] lists the invariants checked once the network is quiet, and
//! [`Sim`] itself checks state transitions, event order and leaks.

use super::net::{derive_seed, App, AppCx, FaultConfig, NodeId, Sim, SimRng, Stack, Stats};
use super::shared::{self, new_engine, retry_policy, server_endpoint, ServerApp, ServerState};
pub use super::shared::{tls_certs, TlsCerts, SERVER_IP, SERVER_NAME, UNIX_TIME};
use super::trace::{Fault, FaultKind, NetStep, TraceEntry, TraceKind};
use crate::tls_provider::deterministic_provider;
use ss_core::policy::{MetadataDecl, Policy, Protocol, StreamType};
use ss_core::{
    ConnId, EngineConfig, Event, Flags, Handler, Host, RetryPolicy, SsRet, StreamCtx, StreamId,
    StreamState,
};
use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

/// The port the HTTP/2 server listens on.
pub const PORT: u16 = 8443;
/// Wake-up tag: make the server stream, or the client's streams.
pub const START: u64 = 1;
/// The default HTTP/2 flow-control window (RFC 9113 6.9.2).
pub const DEFAULT_WINDOW: usize = 65_535;

/// One client node of the HTTP/2 scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct H2ClientSpec {
    /// Endpoint is [`SERVER_NAME`] (resolved by sim DNS) rather than the server's IP.
    pub use_dns: bool,
    /// When the client creates its streams (all at once).
    pub start_at: Duration,
    /// One entry per stream: the body length of each of its transactions, in order.
    pub streams: Vec<Vec<usize>>,
}

/// Everything that decides one HTTP/2 run.
#[derive(Clone, Debug, PartialEq)]
pub struct H2SimConfig {
    /// The run's seed (faults, bodies, engine jitter, TLS randomness).
    pub seed: u64,
    /// The network's behaviour.
    pub faults: FaultConfig,
    /// One entry per client node.
    pub clients: Vec<H2ClientSpec>,
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
    /// Client engines' `keepalive_idle` (how long an HTTP/2 connection with
    /// no stream stays up).
    pub keepalive_idle: Duration,
    /// Chance, per complete request, that the server answers 503.
    pub server_busy: f64,
    /// Chance, per complete request, that the server hangs up the
    /// connection before or during its response.
    pub server_abort: f64,
    /// Chance, per complete request, that the server resets that one
    /// stream (RST_STREAM) before or during its response.
    pub server_reset: f64,
    /// Most 503s, hang-ups and resets by the server together.
    pub server_max_misbehave: u32,
}

impl H2SimConfig {
    /// A calm run: `clients` clients with `streams` streams of `k`
    /// transactions each (sizes mixed, some beyond the flow-control
    /// window), no faults, 1 ms latency, no server misbehaviour.
    pub fn calm(seed: u64, clients: usize, streams: usize, k: usize) -> Self {
        let sizes = [0, 1, 100, 70_000, 5000, 20_000, 17, 140_000];
        H2SimConfig {
            seed,
            faults: FaultConfig::none(),
            clients: (0..clients)
                .map(|i| H2ClientSpec {
                    use_dns: i % 2 == 0,
                    start_at: Duration::from_millis(i as u64),
                    streams: (0..streams)
                        .map(|j| {
                            (0..k)
                                .map(|t| sizes[(i + 3 * j + t) % sizes.len()])
                                .collect()
                        })
                        .collect(),
                })
                .collect(),
            backoff_ms: vec![100, 200, 400],
            conceal: 20,
            jitter_pc: 0,
            connect_timeout: Duration::from_millis(1000),
            tx_high_water: 64 * 1024,
            tx_budget: 4096,
            keepalive_idle: Duration::from_secs(5),
            server_busy: 0.0,
            server_abort: 0.0,
            server_reset: 0.0,
            server_max_misbehave: 0,
        }
    }

    /// The configuration seed `seed` stands for: clients, streams, bodies,
    /// policies, fault and misbehaviour odds all drawn from it.
    pub fn from_seed(seed: u64) -> Self {
        let mut r = SimRng::new(derive_seed(seed, 0x4832));
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
            bytes_per_ms: [0, 1000, 5000, 20_000][r.range(0, 3) as usize],
            refuse: pct(&mut r, 0.4, 50, 400),
            dns_fail: pct(&mut r, 0.3, 50, 400),
            blackhole: pct(&mut r, 0.2, 50, 200),
            reset: pct(&mut r, 0.4, 2, 20),
            max_resets: r.range(1, 3) as u32,
            partial_write: pct(&mut r, 0.5, 200, 900),
            write_gap_ms: (0, r.range(0, 10)),
            delay: pct(&mut r, 0.3, 10, 100),
            delay_extra_ms: (50, r.range(100, 1500)),
            coalesce: pct(&mut r, 0.3, 100, 600),
        };
        let n = r.range(1, 3) as usize;
        let clients = (0..n)
            .map(|_| {
                let streams = r.range(2, 5) as usize;
                H2ClientSpec {
                    use_dns: r.chance(0.5),
                    start_at: r.millis((0, 50)),
                    streams: (0..streams)
                        .map(|_| {
                            let k = r.range(1, 3) as usize;
                            (0..k)
                                .map(|_| match r.range(0, 19) {
                                    0..=1 => 0,
                                    2..=8 => r.range(1, 200) as usize,
                                    9..=13 => r.range(200, 4000) as usize,
                                    14..=17 => r.range(4000, 30_000) as usize,
                                    // Beyond the default window.
                                    _ => r.range(DEFAULT_WINDOW as u64 + 1, 150_000) as usize,
                                })
                                .collect()
                        })
                        .collect(),
                }
            })
            .collect();
        let b0 = r.range(20, 200) as u32;
        H2SimConfig {
            seed,
            faults,
            clients,
            backoff_ms: vec![b0, b0 * 2, b0 * 4],
            // Mostly enough to outlast the faults; sometimes small, so
            // streams do give up.
            conceal: if r.chance(0.15) {
                r.range(1, 4) as u16
            } else {
                20
            },
            jitter_pc: r.range(0, 30) as u8,
            connect_timeout: r.millis((300, 3000)),
            tx_high_water: r.range(512, 64 * 1024) as usize,
            tx_budget: r.range(64, 8192) as usize,
            keepalive_idle: r.millis((50, 5000)),
            server_busy: pct(&mut r, 0.3, 50, 250),
            server_abort: pct(&mut r, 0.3, 30, 150),
            server_reset: pct(&mut r, 0.4, 50, 250),
            server_max_misbehave: r.range(1, 5) as u32,
        }
    }

    /// The same run with every failure that can strike once a request is
    /// on its way removed (network resets, server 503s, hang-ups and
    /// stream resets); connection-level faults stay.
    pub fn calm_mid_txn(mut self) -> Self {
        self.faults.reset = 0.0;
        self.server_busy = 0.0;
        self.server_abort = 0.0;
        self.server_reset = 0.0;
        self
    }

    /// Streams over all clients.
    pub fn streams(&self) -> usize {
        self.clients.iter().map(|c| c.streams.len()).sum()
    }

    /// Transactions over all clients.
    pub fn transactions(&self) -> usize {
        self.clients
            .iter()
            .flat_map(|c| &c.streams)
            .map(Vec::len)
            .sum()
    }
}

/// The tag of client `client`'s stream `stream`, transaction `txn` (its
/// request path is `/t/<tag>`).
pub fn tag_for(client: usize, stream: usize, txn: usize) -> String {
    format!("c{client}s{stream}t{txn}")
}

/// The body of the transaction tagged `tag`: the tag, then a pattern, cut
/// to `len` bytes (so bodies of 10 bytes or more are unique within a run).
pub fn body_for(tag: &str, len: usize) -> Vec<u8> {
    let mut b = format!("<{tag}|").into_bytes();
    let seed = tag.bytes().fold(0usize, |a, c| a * 31 + c as usize);
    let mut k = 0usize;
    while b.len() < len {
        b.push(b'a' + ((seed + k * 7 + k / 26) % 26) as u8);
        k += 1;
    }
    b.truncate(len);
    b
}

/// The response the server gives to `method path` with body `body`.
pub fn response_for(method: &[u8], path: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r = b"resp:".to_vec();
    r.extend_from_slice(method);
    r.push(b' ');
    r.extend_from_slice(path);
    r.push(b'|');
    r.extend_from_slice(body);
    r
}

/// The retry policy every engine in the run uses.
fn retry(cfg: &H2SimConfig) -> RetryPolicy {
    retry_policy(&cfg.backoff_ms, cfg.conceal, cfg.jitter_pc)
}

fn decl(name: &str, header: Option<&str>) -> MetadataDecl {
    MetadataDecl {
        name: name.into(),
        header: header.map(Into::into),
    }
}

/// The server node's policy: an `h2` server streamtype `h2_srv` on [`PORT`]
/// over TLS with the scenario's leaf; requests set `method` and `path`.
pub fn server_policy(cfg: &H2SimConfig) -> Policy {
    shared::with_tls(
        true,
        Policy {
            retry: vec![retry(cfg)],
            streamtypes: vec![StreamType {
                name: "h2_srv".into(),
                server: true,
                protocol: Protocol::H2,
                port: PORT,
                tls: true,
                server_cert: Some("leaf".into()),
                server_key: Some("leaf_key".into()),
                metadata: vec![
                    decl("mime", Some("content-type:")),
                    decl("method", None),
                    decl("path", None),
                ],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
}

/// A client node's policy: an `h2` client streamtype `post` (POST to
/// `/t/${tag}`) reaching the server over TLS, not opportunistic, retrying
/// per the run's policy.
pub fn client_policy(cfg: &H2SimConfig, spec: &H2ClientSpec) -> Policy {
    let mut st = StreamType {
        name: "post".into(),
        endpoint: Some(server_endpoint(spec.use_dns)),
        port: PORT,
        protocol: Protocol::H2,
        retry: Some("sim".into()),
        opportunistic: false,
        tls: true,
        tls_trust_store: Some("sim_ts".into()),
        metadata: vec![decl("mime", Some("content-type:")), decl("tag", None)],
        ..Default::default()
    };
    st.http.method = Some("POST".into());
    st.http.url = Some("/t/${tag}".into());
    shared::with_tls(
        true,
        Policy {
            retry: vec![retry(cfg)],
            streamtypes: vec![st],
            ..Default::default()
        },
    )
}

fn engine_config(cfg: &H2SimConfig, node: u64) -> EngineConfig {
    EngineConfig {
        seed: derive_seed(cfg.seed, 100 + node),
        connect_timeout: cfg.connect_timeout,
        tx_high_water: cfg.tx_high_water,
        tx_budget: cfg.tx_budget,
        keepalive_idle: cfg.keepalive_idle,
        tls_provider: Some(deterministic_provider(derive_seed(cfg.seed, 500 + node))),
        ..Default::default()
    }
}

// ----- server ------------------------------------------------------------

/// How the server answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Not decided yet (body still arriving).
    Pending,
    /// 200 with [`response_for`] the request (written whole, unless the
    /// transaction was cut by the peer or the network).
    Ok,
    /// 503.
    Busy,
    /// Hung up the connection (before or during the response).
    HungUp,
    /// Reset its own stream (before or during the response).
    Reset,
}

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRequest {
    /// The accepted stream it came on.
    pub stream: StreamId,
    /// Its `method` metadata.
    pub method: Vec<u8>,
    /// Its `path` metadata.
    pub path: Vec<u8>,
    /// The body bytes received.
    pub body: Vec<u8>,
    /// The body's EOM arrived.
    pub complete: bool,
    /// What the server did about it.
    pub answer: Answer,
}

/// What the server's handlers share with the server app.
pub struct SrvShared {
    rng: SimRng,
    busy: f64,
    abort: f64,
    reset: f64,
    misbehave_left: u32,
    requests: Vec<SrvRequest>,
    faults: Vec<Fault>,
    notes: Vec<String>,
}

/// How a misbehaving handler cuts its response short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// Hang up the connection (`DisconnectMe`).
    HangUp,
    /// Reset the stream (`DestroyMe`).
    Reset,
}

/// How the handler answers the current request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Still receiving the body.
    Receiving,
    /// Writing the response; cut it short before piece `at` if set.
    Responding { cut: Option<(usize, Cut)> },
}

/// An accepted stream's handler: collect the body, answer at its EOM.
struct SrvHandler {
    shared: Rc<RefCell<SrvShared>>,
    req: Option<usize>,
    plan: Plan,
    resp: Vec<u8>,
    cuts: Vec<usize>,
    piece: usize,
}

impl SrvHandler {
    /// Cut the request `idx` short now: record it and return what does it.
    fn cut(&mut self, sh: &mut SrvShared, stream: StreamId, how: Cut, what: &str) -> SsRet {
        if let Some(idx) = self.req {
            sh.requests[idx].answer = match how {
                Cut::HangUp => Answer::HungUp,
                Cut::Reset => Answer::Reset,
            };
        }
        self.plan = Plan::Receiving;
        match how {
            Cut::HangUp => {
                sh.faults.push(Fault::AppDisconnect { stream });
                sh.notes.push(format!("server: {stream} hangs up {what}"));
                SsRet::DisconnectMe
            }
            Cut::Reset => {
                sh.faults.push(Fault::AppDestroy { stream });
                sh.notes
                    .push(format!("server: {stream} resets its stream {what}"));
                SsRet::DestroyMe
            }
        }
    }

    /// Decide the answer to the complete request `idx` and ask to send it.
    fn answer(&mut self, ctx: &mut StreamCtx<'_>, idx: usize) -> SsRet {
        let shared = self.shared.clone();
        let mut guard = shared.borrow_mut();
        let sh = &mut *guard;
        let stream = ctx.id();
        let q = &sh.requests[idx];
        let ok_resp = response_for(&q.method, &q.path, &q.body);
        let mut cut = None;
        let (code, resp) = if sh.misbehave_left > 0 && sh.rng.chance(sh.busy) {
            sh.misbehave_left -= 1;
            sh.notes.push(format!("server: {stream} answers 503"));
            sh.requests[idx].answer = Answer::Busy;
            (503, b"busy".to_vec())
        } else if sh.misbehave_left > 0 && sh.rng.chance(sh.abort + sh.reset) {
            sh.misbehave_left -= 1;
            let how = if sh.rng.chance(sh.abort / (sh.abort + sh.reset)) {
                Cut::HangUp
            } else {
                Cut::Reset
            };
            if sh.rng.chance(0.4) {
                return self.cut(sh, stream, how, "instead of answering");
            }
            cut = Some((1, how));
            sh.requests[idx].answer = Answer::Ok;
            (0, ok_resp)
        } else {
            sh.requests[idx].answer = Answer::Ok;
            (0, ok_resp)
        };
        // One to three pieces (at least two when cutting mid-response).
        let lo = if cut.is_some() { 2 } else { 1 };
        let n = sh.rng.range(lo, 3) as usize;
        let cuts = shared::cuts(&mut sh.rng, resp.len(), n, false);
        drop(guard);
        self.cuts = cuts;
        self.piece = 0;
        self.resp = resp;
        self.plan = Plan::Responding { cut };
        let _ = ctx.server_ack(code);
        let _ = ctx.set_metadata("mime", b"application/x-sim");
        let _ = ctx.request_tx_len(self.resp.len() as u64);
        SsRet::Ok
    }
}

impl Handler for SrvHandler {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        if state == StreamState::ServerTxn {
            let meta = |ctx: &StreamCtx<'_>, name: &str| {
                ctx.get_metadata(name)
                    .ok()
                    .flatten()
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default()
            };
            let (method, path) = (meta(ctx, "method"), meta(ctx, "path"));
            let mut sh = self.shared.borrow_mut();
            sh.requests.push(SrvRequest {
                stream: ctx.id(),
                method,
                path,
                body: vec![],
                complete: false,
                answer: Answer::Pending,
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
        let Plan::Responding { cut } = self.plan else {
            return SsRet::TxDontSend;
        };
        if self.piece + 1 >= self.cuts.len() {
            return SsRet::TxDontSend;
        }
        if let Some((at, how)) = cut {
            if at == self.piece {
                let what = format!(
                    "after {} of {} response bytes",
                    self.cuts[self.piece],
                    self.resp.len()
                );
                let shared = self.shared.clone();
                let mut sh = shared.borrow_mut();
                return self.cut(&mut sh, ctx.id(), how, &what);
            }
        }
        let (a, b) = (self.cuts[self.piece], self.cuts[self.piece + 1]);
        buf.extend_from_slice(&self.resp[a..b]);
        if self.piece == 0 {
            *flags |= Flags::SOM;
        }
        self.piece += 1;
        if self.piece + 1 == self.cuts.len() {
            *flags |= Flags::EOM;
            self.plan = Plan::Receiving;
        } else {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

/// The server node's application (see [`ServerApp`]).
pub type H2Server = ServerApp<SrvShared>;

impl H2Server {
    /// A server misbehaving as `cfg` says.
    pub fn new(cfg: &H2SimConfig) -> Self {
        ServerApp::with_state(
            SrvShared {
                rng: SimRng::new(derive_seed(cfg.seed, 300)),
                busy: cfg.server_busy,
                abort: cfg.server_abort,
                reset: cfg.server_reset,
                misbehave_left: cfg.server_max_misbehave,
                requests: vec![],
                faults: vec![],
                notes: vec![],
            },
            "h2_srv",
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

/// Where a client stream got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Transactions still to do.
    Running,
    /// Every transaction was acknowledged with the right response.
    Done,
    /// The stream reported ALL_RETRIES_FAILED.
    GaveUp,
}

/// One transaction of a client stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// Its tag (the request path is `/t/<tag>`).
    pub tag: String,
    /// The request body.
    pub body: Vec<u8>,
    /// Where the body is cut into writes (0, ..., len).
    pub cuts: Vec<usize>,
    /// CONNECTING reported for it (attempts, counting silent retries).
    pub attempts: u32,
    /// The response acknowledged (QOS_ACK_REMOTE), if it was.
    pub response: Option<Vec<u8>>,
}

impl Txn {
    /// The response the server must give to this transaction.
    pub fn expected(&self) -> Vec<u8> {
        response_for(b"POST", format!("/t/{}", self.tag).as_bytes(), &self.body)
    }
}

/// One `h2` POST stream of a client, running its transactions in order.
#[derive(Clone, Debug)]
pub struct Lane {
    stream: Option<StreamId>,
    /// The transactions, in order.
    pub txns: Vec<Txn>,
    /// The transaction under way (== `txns.len()` when done).
    pub cur: usize,
    piece: usize,
    rx: Vec<u8>,
    rx_eom: bool,
    /// The last state reported (USER aside).
    pub last: Option<StreamState>,
    /// The connection last seen carrying the stream in this attempt.
    conn: Option<ConnId>,
    /// Where the stream got to.
    pub outcome: Outcome,
}

impl Lane {
    /// Transactions acknowledged.
    pub fn done(&self) -> usize {
        self.txns.iter().filter(|t| t.response.is_some()).count()
    }

    fn running(&self) -> bool {
        self.outcome == Outcome::Running && self.cur < self.txns.len()
    }

    /// The attempt under way failed or a new one starts: the body goes
    /// again from its start, any partial response is dropped.
    fn restart_attempt(&mut self) {
        self.piece = 0;
        self.rx.clear();
        self.rx_eom = false;
    }
}

/// A client node's application: several `h2` POST streams created at once,
/// each running its transactions in order and checking each response.
pub struct H2Client {
    index: usize,
    spec: H2ClientSpec,
    /// The streams, in order of creation.
    pub lanes: Vec<Lane>,
    by_stream: BTreeMap<StreamId, usize>,
    /// Connections on which the server reset a single stream.
    reset_conns: BTreeSet<ConnId>,
    /// Stream resets by the server (RST_STREAM seen by a stream).
    pub stream_resets: usize,
    /// Transactions acknowledged on a connection after the server reset
    /// another stream on it (the neighbours went on).
    pub acks_after_reset: usize,
}

impl H2Client {
    /// Client node number `index` per `spec`; write cuts drawn from `seed`.
    pub fn new(index: usize, spec: H2ClientSpec, seed: u64) -> Self {
        let mut rng = SimRng::new(derive_seed(seed, 200 + index as u64));
        let lanes = spec
            .streams
            .iter()
            .enumerate()
            .map(|(j, bodies)| Lane {
                stream: None,
                txns: bodies
                    .iter()
                    .enumerate()
                    .map(|(k, &len)| {
                        let tag = tag_for(index, j, k);
                        let n = rng.range(1, 3) as usize;
                        Txn {
                            body: body_for(&tag, len),
                            tag,
                            cuts: shared::cuts(&mut rng, len, n, false),
                            attempts: 0,
                            response: None,
                        }
                    })
                    .collect(),
                cur: 0,
                piece: 0,
                rx: vec![],
                rx_eom: false,
                last: None,
                conn: None,
                outcome: Outcome::Running,
            })
            .collect();
        H2Client {
            index,
            spec,
            lanes,
            by_stream: BTreeMap::new(),
            reset_conns: BTreeSet::new(),
            stream_resets: 0,
            acks_after_reset: 0,
        }
    }

    /// What the client was made from.
    pub fn spec(&self) -> &H2ClientSpec {
        &self.spec
    }

    /// Transactions acknowledged over all streams.
    pub fn done(&self) -> usize {
        self.lanes.iter().map(Lane::done).sum()
    }

    /// Start lane `l`'s transaction `cur`: set its tag, announce its
    /// length, which asks for tx.
    fn start_txn(&mut self, cx: &mut AppCx<'_>, l: usize, s: StreamId) {
        let lane = &mut self.lanes[l];
        lane.restart_attempt();
        let t = &lane.txns[lane.cur];
        let len = t.body.len() as u64;
        let now = cx.now();
        cx.note(format!(
            "client{}: {s} transaction {} ({len} bytes)",
            self.index, t.tag
        ));
        if let Err(e) = cx.engine().set_metadata(s, "tag", t.tag.as_bytes()) {
            cx.violation(format!("set_metadata {s}: {e}"));
        }
        if let Err(e) = cx.engine().request_tx_len(now, s, len) {
            cx.violation(format!("request_tx_len {s}: {e}"));
        }
    }

    fn on_state(&mut self, cx: &mut AppCx<'_>, l: usize, s: StreamId, state: StreamState) {
        let index = self.index;
        let lane = &mut self.lanes[l];
        let prev = lane.last;
        if state != StreamState::User {
            lane.last = Some(state);
        }
        let running = lane.running();
        match state {
            StreamState::Connecting => {
                lane.restart_attempt();
                lane.conn = None;
                if running {
                    lane.txns[lane.cur].attempts += 1;
                }
            }
            StreamState::Connected => {
                if !lane.rx.is_empty() {
                    cx.violation(format!("{s}: response bytes before CONNECTED"));
                }
                lane.rx.clear();
                lane.rx_eom = false;
                lane.conn = cx.engine().conn_of(s).or(lane.conn);
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
                let t = &mut lane.txns[lane.cur];
                let want = t.expected();
                if t.response.is_some() {
                    cx.violation(format!("{s}: transaction {} acknowledged twice", t.tag));
                } else if !lane.rx_eom {
                    cx.violation(format!(
                        "{s}: transaction {} acknowledged before the response's EOM \
                         ({} bytes)",
                        t.tag,
                        lane.rx.len()
                    ));
                } else if lane.rx != want {
                    cx.violation(format!(
                        "{s}: transaction {}: wrong response ({} bytes, starting {:?}; \
                         wanted {} bytes starting {:?})",
                        t.tag,
                        lane.rx.len(),
                        String::from_utf8_lossy(&lane.rx[..lane.rx.len().min(32)]),
                        want.len(),
                        String::from_utf8_lossy(&want[..want.len().min(32)]),
                    ));
                }
                t.response = Some(std::mem::take(&mut lane.rx));
                if lane.conn.is_some_and(|c| self.reset_conns.contains(&c)) {
                    self.acks_after_reset += 1;
                }
            }
            StreamState::QosNackRemote => {
                cx.violation(format!(
                    "{s}: QOS_NACK_REMOTE (the server only answers 200 or 503)"
                ));
            }
            StreamState::Disconnected => {
                let acked = running && lane.txns[lane.cur].response.is_some();
                lane.restart_attempt();
                if acked {
                    lane.cur += 1;
                    if lane.cur == lane.txns.len() {
                        lane.outcome = Outcome::Done;
                        cx.note(format!(
                            "client{index}: {s} all {} transactions done",
                            lane.cur
                        ));
                    } else {
                        self.start_txn(cx, l, s);
                    }
                }
            }
            StreamState::Unreachable => lane.restart_attempt(),
            StreamState::AllRetriesFailed if lane.outcome == Outcome::Running => {
                lane.outcome = Outcome::GaveUp;
                cx.note(format!(
                    "client{index}: {s} gave up with {} of {} transactions done",
                    lane.cur,
                    lane.txns.len()
                ));
            }
            StreamState::Destroying => lane.stream = None,
            _ => {}
        }
    }

    fn on_writable(&mut self, cx: &mut AppCx<'_>, l: usize, s: StreamId) {
        let lane = &mut self.lanes[l];
        if !lane.running() {
            return cx.violation(format!("{s}: Writable with no transaction under way"));
        }
        if let Some(c) = cx.engine().conn_of(s) {
            lane.conn = Some(c);
        }
        let t = &lane.txns[lane.cur];
        if lane.piece + 1 >= t.cuts.len() {
            return cx.violation(format!(
                "{s}: Writable with transaction {}'s body already written on this attempt",
                t.tag
            ));
        }
        let (a, b) = (t.cuts[lane.piece], t.cuts[lane.piece + 1]);
        let last = lane.piece + 2 == t.cuts.len();
        let mut flags = if last { Flags::EOM } else { Flags::NONE };
        if lane.piece == 0 {
            flags |= Flags::SOM;
        }
        let chunk = t.body[a..b].to_vec();
        let now = cx.now();
        match cx.engine().write(now, s, &chunk, flags) {
            Ok(n) if n == chunk.len() => {
                lane.piece += 1;
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

    fn on_rx(&mut self, cx: &mut AppCx<'_>, l: usize, s: StreamId, data: &[u8], flags: Flags) {
        let lane = &mut self.lanes[l];
        if lane.last != Some(StreamState::Connected) {
            return cx.violation(format!(
                "{s}: {} response bytes while {:?}, not between CONNECTED and QOS_ACK",
                data.len(),
                lane.last
            ));
        }
        if lane.rx_eom {
            return cx.violation(format!("{s}: response bytes after EOM"));
        }
        if lane.rx.is_empty() && !flags.contains(Flags::SOM) {
            cx.violation(format!("{s}: first response bytes without SOM"));
        }
        lane.rx.extend_from_slice(data);
        lane.rx_eom = flags.contains(Flags::EOM);
    }
}

impl App for H2Client {
    fn on_event(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        let s = ev.stream();
        let Some(&l) = self.by_stream.get(&s) else {
            return;
        };
        if self.lanes[l].stream != Some(s) {
            return;
        }
        match ev {
            Event::State { state, .. } => self.on_state(cx, l, s, *state),
            Event::Writable { .. } => self.on_writable(cx, l, s),
            Event::Rx { data, flags, .. } => self.on_rx(cx, l, s, data, *flags),
            Event::ConnectionError { reason, .. } => {
                if reason.contains("no answer from the server") {
                    // The simulated server never goes silent (it answers,
                    // 503s, hangs up or resets): a stream that waited this
                    // long was stuck, the timeout only hides it.
                    cx.violation(format!("{s}: stuck until the silence timeout: {reason}"));
                }
                let lane = &mut self.lanes[l];
                lane.restart_attempt();
                if reason.contains("stream reset by the peer") {
                    self.stream_resets += 1;
                    if let Some(c) = lane.conn {
                        self.reset_conns.insert(c);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_wake(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        if tag != START {
            return;
        }
        let now = cx.now();
        for l in 0..self.lanes.len() {
            let s = match cx.engine().create(now, "post") {
                Ok(s) => s,
                Err(e) => return cx.violation(format!("create: {e}")),
            };
            self.lanes[l].stream = Some(s);
            self.by_stream.insert(s, l);
        }
        // All streams exist before the first asks to connect: they start
        // together and should share one connection.
        for l in 0..self.lanes.len() {
            let Some(s) = self.lanes[l].stream else {
                continue;
            };
            if self.lanes[l].txns.is_empty() {
                self.lanes[l].outcome = Outcome::Done;
            } else {
                self.start_txn(cx, l, s);
            }
        }
    }

    fn shutdown(&mut self, cx: &mut AppCx<'_>) {
        let now = cx.now();
        for lane in &self.lanes {
            if let Some(s) = lane.stream {
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

// ----- the run -----------------------------------------------------------

/// The result of one HTTP/2 run.
#[derive(Clone, Debug)]
pub struct H2Report {
    /// The run's seed.
    pub seed: u64,
    /// Everything that happened, in order.
    pub trace: Vec<TraceEntry>,
    /// Network counters.
    pub stats: Stats,
    /// Broken invariants (empty for a good run).
    pub violations: Vec<String>,
    /// Client nodes.
    pub clients: usize,
    /// Client streams.
    pub streams: usize,
    /// Streams that finished every transaction.
    pub streams_done: usize,
    /// Streams that reported ALL_RETRIES_FAILED.
    pub streams_gave_up: usize,
    /// Transactions planned, over all streams.
    pub txns: usize,
    /// Transactions acknowledged with the right response.
    pub txns_done: usize,
    /// Transactions acknowledged whose body exceeded the default window.
    pub big_txns_done: usize,
    /// Requests the server saw (retries included).
    pub requests: usize,
    /// 503s the server answered.
    pub busy: usize,
    /// Times the server hung up a connection instead of (or while) answering.
    pub hang_ups: usize,
    /// Times the server reset one stream instead of (or while) answering.
    pub resets: usize,
    /// Stream resets the clients saw.
    pub stream_resets_seen: usize,
    /// Transactions acknowledged on a connection after the server had
    /// reset another stream on it.
    pub acks_after_reset: usize,
    /// `Connect` actions per client node.
    pub connects: Vec<u64>,
    /// Virtual time when the network went quiet (before shutdown).
    pub quiet_at: Duration,
}

impl H2Report {
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
            "seed {}: {} clients, {} streams ({} done, {} gave up), {}/{} transactions \
             ({} beyond the window), {} requests ({} answered 503, {} hung up, {} reset; \
             {} acks after a reset), connects per client {:?}, {} connections, quiet at {:?}, \
             {} steps, faults [{}], {} violations",
            self.seed,
            self.clients,
            self.streams,
            self.streams_done,
            self.streams_gave_up,
            self.txns_done,
            self.txns,
            self.big_txns_done,
            self.requests,
            self.busy,
            self.hang_ups,
            self.resets,
            self.acks_after_reset,
            self.connects,
            self.stats.links,
            self.quiet_at,
            self.stats.steps,
            faults.join(" "),
            self.violations.len()
        )
    }
}

/// The HTTP/2 scenario set up and ready to run.
pub struct H2Sim {
    /// The seed the run came from.
    pub seed: u64,
    /// The network; drive it with [`Sim::run`] / [`Sim::run_for`].
    pub sim: Sim,
    /// The server node (an [`H2Server`] on a [`Host`]).
    pub server: NodeId,
    /// The client nodes (an [`H2Client`] each, on a bare [`Engine`](ss_core::Engine)).
    pub clients: Vec<NodeId>,
}

impl H2Sim {
    /// Build the scenario `cfg` describes.
    pub fn new(cfg: &H2SimConfig) -> Self {
        let mut sim = Sim::new(cfg.seed, cfg.faults.clone());
        let server = sim.add_node(
            "server",
            Stack::Host(Host::new(new_engine(
                server_policy(cfg),
                engine_config(cfg, 0),
            ))),
            Box::new(H2Server::new(cfg)),
        );
        assert_eq!(sim.node_ip(server), SERVER_IP);
        sim.add_dns(SERVER_NAME, vec![SERVER_IP]);
        let mut clients = vec![];
        for (i, spec) in cfg.clients.iter().enumerate() {
            let engine = new_engine(client_policy(cfg, spec), engine_config(cfg, 1 + i as u64));
            let app = H2Client::new(i, spec.clone(), cfg.seed);
            clients.push(sim.add_node(&format!("client{i}"), Stack::Engine(engine), Box::new(app)));
        }
        sim.schedule_wake(server, Duration::ZERO, START);
        for (c, spec) in clients.iter().zip(&cfg.clients) {
            // After the server listens (its wake-up is queued first).
            sim.schedule_wake(*c, spec.start_at, START);
        }
        H2Sim {
            seed: cfg.seed,
            sim,
            server,
            clients,
        }
    }

    /// Run until the network is quiet, check the HTTP/2 invariants, destroy
    /// every stream (clients first), check nothing leaked, and report.
    pub fn finish(mut self) -> H2Report {
        let sim = &mut self.sim;
        let _ = sim.run();
        let quiet_at = sim.elapsed();
        let mut violations = check_h2(sim, self.server, &self.clients);
        for c in &self.clients {
            sim.shutdown(*c);
        }
        let _ = sim.run();
        sim.shutdown(self.server);
        let _ = sim.run();
        sim.check_no_leaks();

        let mut all = sim.violations().to_vec();
        all.append(&mut violations);
        let apps: Vec<&H2Client> = self.clients.iter().filter_map(|c| sim.app(*c)).collect();
        let lanes: Vec<&Lane> = apps.iter().flat_map(|a| &a.lanes).collect();
        let reqs = sim
            .app::<H2Server>(self.server)
            .map(H2Server::requests)
            .unwrap_or_default();
        let mut connects = vec![0u64; self.clients.len()];
        for e in sim.trace() {
            if let TraceKind::Net(NetStep::Connect { .. }) = e.kind {
                if let Some(i) = self.clients.iter().position(|c| *c == e.node) {
                    connects[i] += 1;
                }
            }
        }
        H2Report {
            seed: self.seed,
            trace: sim.trace().to_vec(),
            stats: sim.stats().clone(),
            violations: all,
            clients: apps.len(),
            streams: lanes.len(),
            streams_done: lanes.iter().filter(|l| l.outcome == Outcome::Done).count(),
            streams_gave_up: lanes
                .iter()
                .filter(|l| l.outcome == Outcome::GaveUp)
                .count(),
            txns: lanes.iter().map(|l| l.txns.len()).sum(),
            txns_done: lanes.iter().map(|l| l.done()).sum(),
            big_txns_done: lanes
                .iter()
                .flat_map(|l| &l.txns)
                .filter(|t| t.response.is_some() && t.body.len() > DEFAULT_WINDOW)
                .count(),
            requests: reqs.len(),
            busy: reqs.iter().filter(|r| r.answer == Answer::Busy).count(),
            hang_ups: reqs.iter().filter(|r| r.answer == Answer::HungUp).count(),
            resets: reqs.iter().filter(|r| r.answer == Answer::Reset).count(),
            stream_resets_seen: apps.iter().map(|a| a.stream_resets).sum(),
            acks_after_reset: apps.iter().map(|a| a.acks_after_reset).sum(),
            connects,
            quiet_at,
        }
    }
}

/// Run the HTTP/2 scenario `cfg` to the end and report.
pub fn run_h2(cfg: &H2SimConfig) -> H2Report {
    H2Sim::new(cfg).finish()
}

/// The HTTP/2 invariants, checked once the network is quiet (the clients
/// check each response as it is acknowledged, see [`H2Client`]):
///
/// * every client stream finished all its transactions or reported
///   ALL_RETRIES_FAILED (nothing stalls);
/// * each stream's transactions were acknowledged in order, each once,
///   each with exactly [`response_for`] its own request;
/// * every body the server received is a prefix of the body of the
///   transaction its path names (all of it when its EOM arrived), and every
///   acknowledged transaction reached the server whole;
/// * the server decided what to do about every complete request;
/// * once quiet, the server holds nothing but its listening stream: every
///   accepted stream ended with its connection (none left behind).
pub fn check_h2(sim: &Sim, server: NodeId, clients: &[NodeId]) -> Vec<String> {
    let mut v = vec![];
    let Some(srv) = sim.app::<H2Server>(server) else {
        return vec!["server node has no H2Server".into()];
    };
    let reqs = srv.requests();
    let mut by_path: BTreeMap<Vec<u8>, &[u8]> = BTreeMap::new();
    for &c in clients {
        let Some(app) = sim.app::<H2Client>(c) else {
            v.push(format!("{c}: no H2Client"));
            continue;
        };
        for (j, lane) in app.lanes.iter().enumerate() {
            if lane.outcome == Outcome::Running {
                v.push(format!(
                    "{c} stream {j}: stalled: neither done nor given up when the network \
                     went quiet ({} of {} transactions done, last state {:?})",
                    lane.cur,
                    lane.txns.len(),
                    lane.last
                ));
            }
            if lane.outcome == Outcome::Done && lane.done() != lane.txns.len() {
                v.push(format!(
                    "{c} stream {j}: done with {} of {}",
                    lane.done(),
                    lane.txns.len()
                ));
            }
            for (k, t) in lane.txns.iter().enumerate() {
                by_path.insert(format!("/t/{}", t.tag).into_bytes(), &t.body);
                if (k < lane.cur) != t.response.is_some() {
                    v.push(format!(
                        "{c} transaction {}: acknowledged {} but the stream is at {}",
                        t.tag,
                        t.response.is_some(),
                        lane.cur
                    ));
                }
                if let Some(r) = &t.response {
                    if *r != t.expected() {
                        v.push(format!("{c} transaction {}: wrong response", t.tag));
                    }
                    let path = format!("/t/{}", t.tag).into_bytes();
                    if !reqs
                        .iter()
                        .any(|q| q.complete && q.path == path && q.body == t.body)
                    {
                        v.push(format!(
                            "{c} transaction {}: acknowledged, but the server never received \
                             its whole body",
                            t.tag
                        ));
                    }
                }
            }
        }
    }
    for (i, q) in reqs.iter().enumerate() {
        let path = String::from_utf8_lossy(&q.path);
        if q.method != b"POST" {
            v.push(format!(
                "server request #{i} ({path}): method {:?}",
                q.method
            ));
        }
        match by_path.get(&q.path) {
            None => v.push(format!("server request #{i}: unknown path {path}")),
            Some(body) => {
                let ok = if q.complete {
                    q.body == *body
                } else {
                    body.starts_with(&q.body)
                };
                if !ok {
                    v.push(format!(
                        "server request #{i} on {} ({path}): body of {} bytes ({}) is not {} \
                         the client's body of {} bytes",
                        q.stream,
                        q.body.len(),
                        if q.complete { "complete" } else { "partial" },
                        if q.complete { "" } else { "a prefix of" },
                        body.len()
                    ));
                }
            }
        }
        if q.complete && q.answer == Answer::Pending {
            v.push(format!(
                "server request #{i} on {} ({path}): complete but never answered",
                q.stream
            ));
        }
    }
    let e = sim.stack(server).engine_ref();
    if e.stream_count() != 1 || e.conn_count() != 0 {
        v.push(format!(
            "server: {} streams and {} connections left once quiet (want the listener only)",
            e.stream_count(),
            e.conn_count()
        ));
    }
    v
}
