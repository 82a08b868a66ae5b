//! The simulated network: nodes (engines), DNS, listeners, connections as
//! pairs of byte pipes, virtual time, and seeded faults.
//!
//! Everything runs in one thread from one event queue ordered by
//! (virtual time, sequence number); engine timers are polled after every step
//! and fired in node order. The only randomness is [`SimRng`], seeded by the
//! caller, and no map is iterated in hash order, so a seed replays exactly.
//! The wall clock is read once, for the base `Instant`; engines see
//! `base + virtual offset`, and the trace records offsets only.
//!
//! Whatever the scenario, the network checks every node as it goes (findings
//! in [`Sim::violations`]):
//!
//! * each stream's states follow the reference's transition table
//!   ([`StreamState::is_legal_after`]), starting from none, and nothing is
//!   reported for a stream after its DESTROYING;
//! * payload and `Writable` come only while the stream is CONNECTED (an
//!   HTTP/1.1 client stream may also be `Writable` while CONNECTING: its
//!   request goes out before the response head reports CONNECTED);
//! * no `Transmit`, `Connect` or `Close` on a connection already closed (by
//!   the engine or by the network), no `StopListening` for a listener that
//!   is not listening;
//! * between inputs, an engine holds at most one connection per stream
//!   (plus idle kept-alive HTTP/1.1 connections, up to its pool limit), and
//!   a [`Host`] has exactly one handler per stream;
//! * the run ends within [`Limits`] (virtual time and steps);
//! * [`Sim::check_no_leaks`], once every stream is destroyed: no stream,
//!   connection, timer or handler left in any engine, and no open
//!   connection, attempt or listener left in the network.

use super::trace::{Fault, FaultKind, NetStep, TraceEntry, TraceKind};
use ss_core::engine::SockAddr;
use ss_core::policy::Protocol;
use ss_core::{Action, ConnId, Engine, Event, Host, ListenerId, Rng, StreamId, StreamState};
use std::any::Any;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// A node of the simulation (one engine), by index of creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// One simulated connection between two nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link{}", self.0)
    }
}

/// A seed for a sub-component (an engine, an application) derived from the
/// run's seed, so components do not share one random sequence.
pub fn derive_seed(seed: u64, salt: u64) -> u64 {
    Rng::new(seed ^ salt.wrapping_mul(0xa076_1d64_78bd_642f)).next_u64()
}

/// The simulation's random source (splitmix64, as [`ss_core::Rng`]).
#[derive(Clone, Debug)]
pub struct SimRng(Rng);

impl SimRng {
    /// A source that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        SimRng(Rng::new(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `lo..=hi` (`lo` when `hi <= lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p`. Draws nothing when `p` is 0 or 1, so a
    /// fault switched off does not shift the rest of the sequence.
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            ((self.next_u64() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
        }
    }

    /// A duration of `lo..=hi` milliseconds.
    pub fn millis(&mut self, (lo, hi): (u64, u64)) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

/// What the network does to traffic: latency, bandwidth, and fault odds.
///
/// Probabilities are per opportunity: per connection attempt (`refuse`,
/// `blackhole`), per lookup (`dns_fail`), per `Transmit` (`partial_write`),
/// per segment delivered (`reset`), per message sent (`delay`: segments,
/// connection attempts, DNS answers, closes).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// One-way latency in milliseconds, drawn per message from this range.
    pub latency_ms: (u64, u64),
    /// Bytes a connection writes per millisecond (0: no limit). Sets how
    /// long `handle_sent` takes, so the engine's flow control comes into play.
    pub bytes_per_ms: u64,
    /// Chance a connection attempt to a listening address is refused.
    pub refuse: f64,
    /// Chance a DNS lookup fails.
    pub dns_fail: f64,
    /// Chance a connection attempt is never answered (the engine's connect
    /// timeout must end it).
    pub blackhole: f64,
    /// Chance delivering a segment resets the connection instead.
    pub reset: f64,
    /// Most resets injected in one run (keeps runs finite).
    pub max_resets: u32,
    /// Chance a `Transmit` is written in several pieces.
    pub partial_write: f64,
    /// Gap between the pieces of a partial write, in milliseconds.
    pub write_gap_ms: (u64, u64),
    /// Chance a message is held up by an extra delay.
    pub delay: f64,
    /// The extra delay, in milliseconds.
    pub delay_extra_ms: (u64, u64),
    /// Chance a segment delivered takes along the segments right behind it
    /// on the same direction (those due within [`COALESCE_WINDOW`], up to a
    /// close), delivered as one `handle_data`, as TCP merges writes.
    pub coalesce: f64,
}

/// How far ahead a coalesced delivery looks for segments to take along.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(20);

impl FaultConfig {
    /// No faults, 1 ms latency, no bandwidth limit.
    pub fn none() -> Self {
        FaultConfig {
            latency_ms: (1, 1),
            bytes_per_ms: 0,
            refuse: 0.0,
            dns_fail: 0.0,
            blackhole: 0.0,
            reset: 0.0,
            max_resets: 3,
            partial_write: 0.0,
            write_gap_ms: (0, 5),
            delay: 0.0,
            delay_extra_ms: (50, 1500),
            coalesce: 0.0,
        }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self::none()
    }
}

/// Bounds that make every run finite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Virtual time after which the run is abandoned.
    pub max_time: Duration,
    /// Steps (queue events and timer firings) after which the run is abandoned.
    pub max_steps: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_time: Duration::from_secs(600),
            max_steps: 1_000_000,
        }
    }
}

/// Why [`Sim::run`] stopped before the network went quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// Something was still scheduled past [`Limits::max_time`].
    TimeLimit(Duration),
    /// More than [`Limits::max_steps`] steps were taken.
    StepLimit(u64),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::TimeLimit(t) => write!(f, "still busy at the time limit ({t:?})"),
            SimError::StepLimit(n) => write!(f, "still busy after {n} steps"),
        }
    }
}

impl std::error::Error for SimError {}

/// What runs on a node: a bare engine (the application is the node's
/// [`App`]) or a [`Host`] (per-stream [`ss_core::Handler`]s, the reference's
/// callback model, with the [`App`] watching).
pub enum Stack {
    /// A bare engine.
    Engine(Engine),
    /// An engine with the callback layer.
    Host(Host),
}

impl Stack {
    /// The engine.
    pub fn engine(&mut self) -> &mut Engine {
        match self {
            Stack::Engine(e) => e,
            Stack::Host(h) => &mut h.engine,
        }
    }

    /// The engine, read-only.
    pub fn engine_ref(&self) -> &Engine {
        match self {
            Stack::Engine(e) => e,
            Stack::Host(h) => &h.engine,
        }
    }

    /// The host, if this is one.
    pub fn host(&mut self) -> Option<&mut Host> {
        match self {
            Stack::Engine(_) => None,
            Stack::Host(h) => Some(h),
        }
    }
}

/// A node's application: it sees every event its engine reports and acts
/// through [`AppCx`].
pub trait App: Any {
    /// An event the node's engine reported. For a [`Stack::Host`] node the
    /// stream's handler has already run.
    fn on_event(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        let _ = (cx, ev);
    }

    /// A wake-up the application asked for with [`AppCx::wake_after`] (or the
    /// scenario with [`Sim::schedule_wake`]).
    fn on_wake(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        let _ = (cx, tag);
    }

    /// Destroy every stream the application owns (end of a run).
    fn shutdown(&mut self, cx: &mut AppCx<'_>) {
        let _ = cx;
    }

    /// The application as `Any`, so the scenario can read it back with [`Sim::app`].
    fn as_any(&self) -> &dyn Any;
}

enum AppReq {
    Wake(Duration, u64),
    Note(String),
    Fault(Fault),
    Violation(String),
}

/// What an application may do when called: drive its engine, schedule
/// wake-ups, add notes and faults to the trace, report violations.
pub struct AppCx<'a> {
    node: NodeId,
    now: Instant,
    elapsed: Duration,
    stack: &'a mut Stack,
    stream_conn: &'a BTreeMap<StreamId, ConnId>,
    reqs: &'a mut Vec<AppReq>,
}

impl AppCx<'_> {
    /// The node this application runs on.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Virtual now, to pass to the engine.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The node's engine.
    pub fn engine(&mut self) -> &mut Engine {
        self.stack.engine()
    }

    /// The node's host, for a [`Stack::Host`] node.
    pub fn host(&mut self) -> Option<&mut Host> {
        self.stack.host()
    }

    /// The connection currently carrying `stream`, as last seen by the
    /// network (set when the stream reports CONNECTED or is accepted).
    pub fn conn_of(&self, stream: StreamId) -> Option<ConnId> {
        self.stream_conn.get(&stream).copied()
    }

    /// Call [`App::on_wake`] with `tag` after `after`.
    pub fn wake_after(&mut self, after: Duration, tag: u64) {
        self.reqs.push(AppReq::Wake(after, tag));
    }

    /// Add a line to the trace.
    pub fn note(&mut self, text: impl Into<String>) {
        self.reqs.push(AppReq::Note(text.into()));
    }

    /// Record a fault the application injected (e.g. a server restart).
    pub fn fault(&mut self, fault: Fault) {
        self.reqs.push(AppReq::Fault(fault));
    }

    /// Report a broken invariant.
    pub fn violation(&mut self, text: impl Into<String>) {
        self.reqs.push(AppReq::Violation(text.into()));
    }
}

/// Counters for one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// `Connect` actions carried out.
    pub connects: u64,
    /// Connections established (links made).
    pub links: u64,
    /// Payload bytes delivered to engines by `handle_data`.
    pub bytes_delivered: u64,
    /// Steps taken (queue events and timer firings).
    pub steps: u64,
}

/// A connection as the network sees it: side 0 connected, side 1 accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// The link.
    pub id: LinkId,
    /// The connecting side: node and its connection id.
    pub client: (NodeId, ConnId),
    /// The accepting side: node and its connection id.
    pub server: (NodeId, ConnId),
    /// When it was established.
    pub opened_at: Duration,
    /// Whether each side (client, server) is still open.
    pub open: [bool; 2],
    /// Bytes delivered to each side (client, server).
    pub delivered: [u64; 2],
    /// Whether each side (client, server) closed it itself (`Close`), as
    /// opposed to hearing the other side's close. A graceful close delivers
    /// everything written before it, unless the other side closes too.
    pub closed_itself: [bool; 2],
    /// Whether it was reset (data in flight lost).
    pub reset: bool,
}

#[derive(Debug)]
struct Link {
    ends: [(NodeId, ConnId); 2],
    open: [bool; 2],
    opened_at: Duration,
    delivered: [u64; 2],
    /// Latest scheduled arrival towards each side, to keep segments in order.
    last_arrival: [Duration; 2],
    /// When each side's writer is free again.
    write_free: [Duration; 2],
    closed_itself: [bool; 2],
    reset: bool,
}

impl Link {
    fn side_of(&self, end: (NodeId, ConnId)) -> usize {
        usize::from(self.ends[0] != end)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Resolving,
    Connecting,
    Blackholed,
}

#[derive(Debug)]
enum Ev {
    Dns {
        node: NodeId,
        conn: ConnId,
        addrs: Vec<IpAddr>,
    },
    ConnectArrive {
        node: NodeId,
        conn: ConnId,
        addr: SocketAddr,
    },
    ConnectFail {
        node: NodeId,
        conn: ConnId,
        reason: String,
    },
    Sent {
        link: LinkId,
        side: usize,
        n: usize,
    },
    Segment {
        link: LinkId,
        to: usize,
        data: Vec<u8>,
    },
    Fin {
        link: LinkId,
        to: usize,
    },
    Listening {
        node: NodeId,
        listener: ListenerId,
        addr: String,
    },
    ListenFailed {
        node: NodeId,
        listener: ListenerId,
        reason: String,
    },
    Wake {
        node: NodeId,
        tag: u64,
    },
    ResetNode {
        node: NodeId,
    },
}

struct Node {
    name: String,
    ip: IpAddr,
    stack: Stack,
    app: Box<dyn App>,
    /// The connection under each stream, learnt from CONNECTED / Accepted.
    stream_conn: BTreeMap<StreamId, ConnId>,
    /// The connection the current input concerns (handle_connected / accepted).
    input_conn: Option<ConnId>,
    /// Connections closed by the engine or by the network.
    dead: BTreeSet<ConnId>,
    /// Last state each live stream reported.
    states: BTreeMap<StreamId, StreamState>,
    /// Streams whose last connection-related state was CONNECTED.
    connected: BTreeSet<StreamId>,
    /// Streams that reported DESTROYING.
    destroyed: BTreeSet<StreamId>,
}

/// Most rounds of action/event exchange one input may cause on a node.
const MAX_PUMP_ROUNDS: usize = 100_000;

/// The simulation: nodes, network, virtual clock, trace.
pub struct Sim {
    base: Instant,
    now: Duration,
    seq: u64,
    queue: BTreeMap<(Duration, u64), Ev>,
    rng: SimRng,
    faults: FaultConfig,
    limits: Limits,
    nodes: Vec<Node>,
    dns: BTreeMap<String, Vec<IpAddr>>,
    listeners: BTreeMap<SocketAddr, (NodeId, ListenerId)>,
    links: BTreeMap<LinkId, Link>,
    conn_link: BTreeMap<(NodeId, ConnId), LinkId>,
    pending: BTreeMap<(NodeId, ConnId), Pending>,
    /// Connections whose engine paused reading (`Action::PauseReading`).
    paused: BTreeSet<(NodeId, ConnId)>,
    /// Segments and FINs for a paused side, in arrival order, replayed on resume.
    parked: BTreeMap<(LinkId, usize), VecDeque<Ev>>,
    next_link: u64,
    next_port: u16,
    resets: u32,
    trace: Vec<TraceEntry>,
    stats: Stats,
    violations: Vec<String>,
}

impl Sim {
    /// An empty network whose faults are drawn from `seed`.
    pub fn new(seed: u64, faults: FaultConfig) -> Self {
        Sim {
            // The one read of the wall clock: everything after is base + offset.
            base: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            rng: SimRng::new(derive_seed(seed, 0x5eed)),
            faults,
            limits: Limits::default(),
            nodes: vec![],
            dns: BTreeMap::new(),
            listeners: BTreeMap::new(),
            links: BTreeMap::new(),
            conn_link: BTreeMap::new(),
            paused: BTreeSet::new(),
            parked: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_link: 1,
            next_port: 40_000,
            resets: 0,
            trace: vec![],
            stats: Stats::default(),
            violations: vec![],
        }
    }

    /// Replace the run's bounds.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The fault settings in force.
    pub fn faults(&self) -> &FaultConfig {
        &self.faults
    }

    /// Replace the fault settings (e.g. to stop faults before shutting down).
    pub fn set_faults(&mut self, faults: FaultConfig) {
        self.faults = faults;
    }

    /// Add a node running `stack`, driven by `app`. Node N gets the address 10.0.0.N+1.
    pub fn add_node(&mut self, name: &str, stack: Stack, app: Box<dyn App>) -> NodeId {
        let id = NodeId(self.nodes.len());
        assert!(id.0 < 250, "at most 250 nodes");
        self.nodes.push(Node {
            name: name.to_string(),
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, id.0 as u8 + 1)),
            stack,
            app,
            stream_conn: BTreeMap::new(),
            input_conn: None,
            dead: BTreeSet::new(),
            states: BTreeMap::new(),
            connected: BTreeSet::new(),
            destroyed: BTreeSet::new(),
        });
        id
    }

    /// A node's address.
    pub fn node_ip(&self, node: NodeId) -> IpAddr {
        self.nodes[node.0].ip
    }

    /// A node's name.
    pub fn node_name(&self, node: NodeId) -> &str {
        &self.nodes[node.0].name
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Make `name` resolve to `addrs`, in order.
    pub fn add_dns(&mut self, name: &str, addrs: Vec<IpAddr>) {
        self.dns.insert(name.to_string(), addrs);
    }

    /// A node's stack.
    pub fn stack(&self, node: NodeId) -> &Stack {
        &self.nodes[node.0].stack
    }

    /// A node's application, if it is a `T`.
    pub fn app<T: App>(&self, node: NodeId) -> Option<&T> {
        self.nodes.get(node.0)?.app.as_any().downcast_ref()
    }

    /// Virtual now.
    pub fn now(&self) -> Instant {
        self.base + self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The trace so far.
    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Broken invariants found so far, each with time and node.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Every connection established so far, in order.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.links
            .iter()
            .map(|(id, l)| LinkInfo {
                id: *id,
                client: l.ends[0],
                server: l.ends[1],
                opened_at: l.opened_at,
                open: l.open,
                delivered: l.delivered,
                closed_itself: l.closed_itself,
                reset: l.reset,
            })
            .collect()
    }

    /// The link carrying `conn` on `node`, if it ever connected.
    pub fn link_of(&self, node: NodeId, conn: ConnId) -> Option<LinkId> {
        self.conn_link.get(&(node, conn)).copied()
    }

    /// Call `node`'s [`App::on_wake`] with `tag` at virtual time `at`.
    pub fn schedule_wake(&mut self, node: NodeId, at: Duration, tag: u64) {
        self.push(at, Ev::Wake { node, tag });
    }

    /// Reset every open connection of `node` at virtual time `at`.
    pub fn schedule_reset(&mut self, node: NodeId, at: Duration) {
        self.push(at, Ev::ResetNode { node });
    }

    /// Run `f` on `node` now (as its application would), then carry out what
    /// the engine asks.
    pub fn with_node<R>(&mut self, node: NodeId, f: impl FnOnce(&mut AppCx<'_>) -> R) -> R {
        let r = self.call_app(node, |_, cx| f(cx));
        self.pump(node);
        r
    }

    /// Ask `node`'s application to destroy its streams, and carry that out.
    pub fn shutdown(&mut self, node: NodeId) {
        self.call_app(node, |app, cx| app.shutdown(cx));
        self.pump(node);
    }

    /// Run until nothing is scheduled and no engine has a timer.
    pub fn run(&mut self) -> Result<(), SimError> {
        self.run_until(None)
    }

    /// Run for `d` of virtual time (or until quiet, if sooner).
    pub fn run_for(&mut self, d: Duration) -> Result<(), SimError> {
        let until = self.now + d;
        self.run_until(Some(until))?;
        self.now = self.now.max(until);
        Ok(())
    }

    /// After every stream was destroyed and the run went quiet: no engine
    /// holds a stream or connection, no handler is left, the network holds no
    /// open connection, attempt or listener. Findings go to [`Sim::violations`].
    pub fn check_no_leaks(&mut self) {
        let mut found = vec![];
        for (i, n) in self.nodes.iter().enumerate() {
            let e = n.stack.engine_ref();
            if e.stream_count() != 0 {
                found.push(format!("n{i}: {} streams left", e.stream_count()));
            }
            if e.conn_count() != 0 {
                found.push(format!("n{i}: {} connections left", e.conn_count()));
            }
            if e.poll_timeout().is_some() {
                found.push(format!("n{i}: a timer is still armed"));
            }
            if let Stack::Host(h) = &n.stack {
                if h.handler_count() != 0 {
                    found.push(format!("n{i}: {} handlers left", h.handler_count()));
                }
            }
            if !n.states.is_empty() {
                found.push(format!(
                    "n{i}: streams never reported DESTROYING: {:?}",
                    n.states.keys().collect::<Vec<_>>()
                ));
            }
        }
        for (id, l) in &self.links {
            for side in 0..2 {
                if l.open[side] {
                    let (n, c) = l.ends[side];
                    found.push(format!("{n}: {c} on {id} never closed"));
                }
            }
        }
        for ((n, c), p) in &self.pending {
            found.push(format!("{n}: connection attempt {c} ({p:?}) never ended"));
        }
        for (addr, (n, l)) in &self.listeners {
            found.push(format!("{n}: listener {l} on {addr} never closed"));
        }
        for f in found {
            self.violation(None, format!("leak: {f}"));
        }
    }

    // ----- internals ---------------------------------------------------

    /// Keep a segment or FIN for a side that is not being read (or has
    /// parked ones before it); the reader's socket buffer, in effect.
    fn park(&mut self, ev: Ev) -> Option<Ev> {
        let key = match &ev {
            Ev::Segment { link, to, .. } | Ev::Fin { link, to } => (*link, *to),
            _ => return Some(ev),
        };
        let Some(l) = self.links.get(&key.0) else {
            return Some(ev);
        };
        if !self.paused.contains(&l.ends[key.1]) && !self.parked.contains_key(&key) {
            return Some(ev);
        }
        self.parked.entry(key).or_default().push_back(ev);
        None
    }

    /// The engine stopped or resumed reading `conn`: park what arrives, or
    /// replay what was parked, in order, now.
    fn pause_reading(&mut self, node: NodeId, conn: ConnId, paused: bool) {
        if paused {
            self.paused.insert((node, conn));
            return;
        }
        if !self.paused.remove(&(node, conn)) {
            return;
        }
        let Some(&link) = self.conn_link.get(&(node, conn)) else {
            return;
        };
        let Some(side) = self.links.get(&link).map(|l| l.side_of((node, conn))) else {
            return;
        };
        let at = self.now;
        for ev in self.parked.remove(&(link, side)).unwrap_or_default() {
            self.push(at, ev);
        }
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn record(&mut self, node: NodeId, kind: TraceKind) {
        self.trace.push(TraceEntry {
            at: self.now,
            node,
            kind,
        });
    }

    fn fault(&mut self, node: NodeId, fault: Fault) {
        *self.stats.faults.entry(fault.kind()).or_default() += 1;
        self.record(node, TraceKind::Fault(fault));
    }

    fn violation(&mut self, node: Option<NodeId>, text: String) {
        let at = self.now;
        let who = node.map(|n| format!(" {n}")).unwrap_or_default();
        self.violations.push(format!(
            "[{}.{:06}s{who}] {text}",
            at.as_secs(),
            at.subsec_micros()
        ));
    }

    /// One-way latency for a message from `node` on `conn`, maybe with a delay fault.
    fn latency(&mut self, node: NodeId, conn: ConnId) -> Duration {
        let mut d = self.rng.millis(self.faults.latency_ms);
        if self.rng.chance(self.faults.delay) {
            let extra = self.rng.millis(self.faults.delay_extra_ms);
            self.fault(node, Fault::Delay { conn, extra });
            d += extra;
        }
        d
    }

    fn next_timer(&self) -> Option<(Duration, NodeId)> {
        let mut best: Option<(Duration, NodeId)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(at) = n.stack.engine_ref().poll_timeout() {
                let off = at.saturating_duration_since(self.base);
                let earlier = match best {
                    None => true,
                    Some((b, _)) => off < b,
                };
                if earlier {
                    best = Some((off, NodeId(i)));
                }
            }
        }
        best
    }

    fn run_until(&mut self, deadline: Option<Duration>) -> Result<(), SimError> {
        loop {
            let next_q = self.queue.keys().next().map(|k| k.0);
            let next_t = self.next_timer();
            let (at, timer) = match (next_q, next_t) {
                (None, None) => return Ok(()),
                (Some(q), Some((t, n))) if t <= q => (t, Some(n)),
                (None, Some((t, n))) => (t, Some(n)),
                (Some(q), _) => (q, None),
            };
            if deadline.is_some_and(|d| at > d) {
                return Ok(());
            }
            if at > self.limits.max_time {
                let e = SimError::TimeLimit(self.limits.max_time);
                self.violation(None, format!("no termination: {e}"));
                return Err(e);
            }
            self.stats.steps += 1;
            if self.stats.steps > self.limits.max_steps {
                let e = SimError::StepLimit(self.limits.max_steps);
                self.violation(None, format!("no termination: {e}"));
                return Err(e);
            }
            self.now = self.now.max(at);
            match timer {
                Some(n) => {
                    let now = self.now();
                    self.nodes[n.0].stack.engine().handle_timeout(now);
                    self.pump(n);
                }
                None => {
                    if let Some((_, ev)) = self.queue.pop_first() {
                        self.process(ev);
                    }
                }
            }
        }
    }

    fn process(&mut self, ev: Ev) {
        let now = self.now();
        let ev = match self.park(ev) {
            Some(ev) => ev,
            None => return,
        };
        match ev {
            Ev::Dns { node, conn, addrs } => {
                if self.pending.remove(&(node, conn)).is_none() {
                    return;
                }
                self.record(
                    node,
                    TraceKind::Net(NetStep::Resolved {
                        conn,
                        addrs: addrs.len(),
                    }),
                );
                self.nodes[node.0]
                    .stack
                    .engine()
                    .handle_resolved(now, conn, &addrs);
                self.pump(node);
            }
            Ev::ConnectArrive { node, conn, addr } => self.connect_arrive(node, conn, addr),
            Ev::ConnectFail { node, conn, reason } => {
                if self.pending.remove(&(node, conn)).is_some() {
                    self.connect_failed(node, conn, reason);
                }
            }
            Ev::Sent { link, side, n } => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                if l.open[side] {
                    let (node, conn) = l.ends[side];
                    self.nodes[node.0].stack.engine().handle_sent(now, conn, n);
                    self.pump(node);
                }
            }
            Ev::Segment { link, to, data } => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                if !l.open[to] {
                    return;
                }
                if self.resets < self.faults.max_resets && self.rng.chance(self.faults.reset) {
                    let node = l.ends[to].0;
                    self.fault(
                        node,
                        Fault::Reset {
                            link,
                            lost: data.len(),
                        },
                    );
                    self.reset_link(link);
                    return;
                }
                let mut data = data;
                if self.rng.chance(self.faults.coalesce) {
                    self.coalesce(link, to, &mut data);
                }
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                l.delivered[to] += data.len() as u64;
                let (node, conn) = l.ends[to];
                self.stats.bytes_delivered += data.len() as u64;
                // A stream that reports CONNECTED on data (HTTP, a proxy
                // link) is on the connection the data came in on.
                self.nodes[node.0].input_conn = Some(conn);
                self.nodes[node.0]
                    .stack
                    .engine()
                    .handle_data(now, conn, &data);
                self.pump(node);
                self.nodes[node.0].input_conn = None;
            }
            Ev::Fin { link, to } => {
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                if l.open[to] {
                    l.open[to] = false;
                    let (node, conn) = l.ends[to];
                    self.peer_closed(node, conn);
                }
            }
            Ev::Listening {
                node,
                listener,
                addr,
            } => {
                self.nodes[node.0]
                    .stack
                    .engine()
                    .handle_listening(now, listener, &addr);
                self.pump(node);
            }
            Ev::ListenFailed {
                node,
                listener,
                reason,
            } => {
                self.nodes[node.0]
                    .stack
                    .engine()
                    .handle_listen_failed(now, listener, &reason);
                self.pump(node);
            }
            Ev::Wake { node, tag } => {
                self.call_app(node, |app, cx| app.on_wake(cx, tag));
                self.pump(node);
            }
            Ev::ResetNode { node } => {
                let hit: Vec<LinkId> = self
                    .links
                    .iter()
                    .filter(|(_, l)| {
                        (0..2).any(|s| l.ends[s].0 == node) && (l.open[0] || l.open[1])
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for link in hit {
                    self.fault(node, Fault::Reset { link, lost: 0 });
                    self.reset_link(link);
                }
            }
        }
    }

    fn connect_arrive(&mut self, node: NodeId, conn: ConnId, addr: SocketAddr) {
        if self.pending.get(&(node, conn)) != Some(&Pending::Connecting) {
            // The engine gave up on the attempt (closed it) before it arrived.
            return;
        }
        self.pending.remove(&(node, conn));
        let Some(&(snode, listener)) = self.listeners.get(&addr) else {
            self.connect_failed(node, conn, "connection refused (nothing listening)".into());
            return;
        };
        if self.rng.chance(self.faults.refuse) {
            self.fault(node, Fault::Refused { conn, addr });
            self.connect_failed(node, conn, "connection refused".into());
            return;
        }
        let now = self.now();
        let Some(sconn) = self.nodes[snode.0]
            .stack
            .engine()
            .handle_accepted(now, listener)
        else {
            self.pump(snode);
            self.connect_failed(node, conn, "closed by the server at accept".into());
            return;
        };
        let link = LinkId(self.next_link);
        self.next_link += 1;
        self.links.insert(
            link,
            Link {
                ends: [(node, conn), (snode, sconn)],
                open: [true, true],
                opened_at: self.now,
                delivered: [0, 0],
                last_arrival: [self.now, self.now],
                write_free: [self.now, self.now],
                closed_itself: [false, false],
                reset: false,
            },
        );
        self.conn_link.insert((node, conn), link);
        self.conn_link.insert((snode, sconn), link);
        self.stats.links += 1;
        self.record(
            snode,
            TraceKind::Net(NetStep::Accepted { conn: sconn, link }),
        );
        self.nodes[snode.0].input_conn = Some(sconn);
        self.pump(snode);
        self.nodes[snode.0].input_conn = None;
        self.record(node, TraceKind::Net(NetStep::Connected { conn, link }));
        self.nodes[node.0].input_conn = Some(conn);
        self.nodes[node.0]
            .stack
            .engine()
            .handle_connected(now, conn);
        self.pump(node);
        self.nodes[node.0].input_conn = None;
    }

    fn connect_failed(&mut self, node: NodeId, conn: ConnId, reason: String) {
        let now = self.now();
        self.nodes[node.0]
            .stack
            .engine()
            .handle_connect_failed(now, conn, &reason);
        self.record(
            node,
            TraceKind::Net(NetStep::ConnectFailed { conn, reason }),
        );
        self.pump(node);
    }

    fn peer_closed(&mut self, node: NodeId, conn: ConnId) {
        self.nodes[node.0].dead.insert(conn);
        self.record(node, TraceKind::Net(NetStep::PeerClosed { conn }));
        let now = self.now();
        self.nodes[node.0].stack.engine().handle_closed(now, conn);
        self.pump(node);
    }

    fn reset_link(&mut self, link: LinkId) {
        self.resets += 1;
        // A reset discards what the receivers had not read.
        self.parked.retain(|(l, _), _| *l != link);
        if let Some(l) = self.links.get_mut(&link) {
            l.reset = true;
        }
        for side in 0..2 {
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            if l.open[side] {
                l.open[side] = false;
                let (node, conn) = l.ends[side];
                self.peer_closed(node, conn);
            }
        }
    }

    /// Carry out `node`'s actions and deliver its events until it has none.
    fn pump(&mut self, node: NodeId) {
        for _ in 0..MAX_PUMP_ROUNDS {
            let mut busy = false;
            while let Some(a) = self.nodes[node.0].stack.engine().poll_action() {
                busy = true;
                self.on_action(node, a);
            }
            let evs = self.drain_events(node);
            for ev in evs {
                busy = true;
                // Payload and tx offers drained before the application
                // destroyed their stream (while handling an earlier event of
                // this batch) are moot, as `Engine::destroy` drops the ones
                // still queued.
                let gone = matches!(ev, Event::Rx { .. } | Event::Writable { .. })
                    && self.nodes[node.0]
                        .stack
                        .engine_ref()
                        .streamtype(ev.stream())
                        .is_none();
                if gone {
                    continue;
                }
                self.observe(node, &ev);
                self.call_app(node, |app, cx| app.on_event(cx, &ev));
            }
            if !busy {
                self.check_counts(node);
                return;
            }
        }
        self.violation(
            Some(node),
            format!("livelock: still busy after {MAX_PUMP_ROUNDS} rounds"),
        );
    }

    /// Between inputs: an engine holds at most one connection per stream,
    /// and a host has exactly one handler per stream.
    fn check_counts(&mut self, node: NodeId) {
        let n = &self.nodes[node.0];
        let e = n.stack.engine_ref();
        let (streams, conns) = (e.stream_count(), e.conn_count());
        let mut bad = vec![];
        if conns > streams + idle_pool_allowance(e) {
            bad.push(format!("{conns} connections for {streams} streams"));
        }
        if let Stack::Host(h) = &n.stack {
            if h.handler_count() != streams {
                bad.push(format!(
                    "{} handlers for {streams} streams",
                    h.handler_count()
                ));
            }
        }
        for b in bad {
            self.violation(Some(node), b);
        }
    }

    fn drain_events(&mut self, node: NodeId) -> Vec<Event> {
        let now = self.now();
        match &mut self.nodes[node.0].stack {
            Stack::Engine(e) => std::iter::from_fn(|| e.poll_event()).collect(),
            Stack::Host(h) => {
                let mut v = vec![];
                h.dispatch_with(now, |ev| v.push(ev.clone()));
                // Seen above; a host keeps events for streams without a handler.
                h.take_unhandled();
                v
            }
        }
    }

    fn call_app<R>(
        &mut self,
        node: NodeId,
        f: impl FnOnce(&mut dyn App, &mut AppCx<'_>) -> R,
    ) -> R {
        let mut reqs = vec![];
        let now = self.base + self.now;
        let elapsed = self.now;
        let n = &mut self.nodes[node.0];
        let mut cx = AppCx {
            node,
            now,
            elapsed,
            stack: &mut n.stack,
            stream_conn: &n.stream_conn,
            reqs: &mut reqs,
        };
        let r = f(n.app.as_mut(), &mut cx);
        for req in reqs {
            match req {
                AppReq::Wake(after, tag) => self.push(self.now + after, Ev::Wake { node, tag }),
                AppReq::Note(s) => self.record(node, TraceKind::Note(s)),
                AppReq::Fault(f) => self.fault(node, f),
                AppReq::Violation(s) => self.violation(Some(node), s),
            }
        }
        r
    }

    /// Check an event against the transition table and record it.
    fn observe(&mut self, node: NodeId, ev: &Event) {
        let mut bad = vec![];
        let n = &mut self.nodes[node.0];
        let kind = match ev {
            Event::State { stream, state, ack } => {
                if n.destroyed.contains(stream) {
                    bad.push(format!("{stream} reported {state} after DESTROYING"));
                }
                let prev = n.states.get(stream).copied();
                if !state.is_legal_after(prev) {
                    let p = prev.map_or("(new)".to_string(), |p| p.to_string());
                    bad.push(format!("{stream}: illegal transition {p} -> {state}"));
                }
                let mut conn = None;
                match state {
                    StreamState::Connected => {
                        conn = n.input_conn;
                        if let Some(c) = conn {
                            n.stream_conn.insert(*stream, c);
                        }
                        n.connected.insert(*stream);
                    }
                    StreamState::Creating
                    | StreamState::Disconnected
                    | StreamState::Unreachable
                    | StreamState::Connecting
                    | StreamState::Poll
                    | StreamState::AllRetriesFailed
                    | StreamState::Destroying => {
                        n.connected.remove(stream);
                    }
                    _ => {}
                }
                if *state == StreamState::User {
                    // Advisory: the lifecycle goes on from the previous state.
                } else if *state == StreamState::Destroying {
                    n.states.remove(stream);
                    n.destroyed.insert(*stream);
                    n.stream_conn.remove(stream);
                } else {
                    n.states.insert(*stream, *state);
                }
                TraceKind::State {
                    stream: *stream,
                    state: *state,
                    ack: *ack,
                    conn,
                }
            }
            Event::Rx { stream, data, .. } => {
                if n.destroyed.contains(stream) {
                    bad.push(format!("{stream} received payload after DESTROYING"));
                } else if !n.connected.contains(stream) {
                    bad.push(format!("{stream} received payload while not CONNECTED"));
                }
                TraceKind::Rx {
                    stream: *stream,
                    len: data.len(),
                }
            }
            Event::Writable { stream, budget } => {
                // An HTTP/1.1 client sends its request (and asks for the
                // body) as soon as the transport is up, before the response
                // head reports CONNECTED: the reference's ss-h1 behaviour.
                // An HTTP/2 client stream does the same once its request
                // is open on the shared connection.
                // A proxy client's link carries payload once the daemon
                // accepted the stream, before the onward CONNECTED (the
                // reference client's OPERATIONAL state).
                let pre_connect = matches!(
                    n.states.get(stream),
                    Some(
                        StreamState::Connecting
                            | StreamState::Poll
                            | StreamState::Unreachable
                            | StreamState::Timeout
                    )
                );
                let h1_body = (n.states.get(stream) == Some(&StreamState::Connecting)
                    && is_http_client(n.stack.engine_ref(), *stream))
                    || (pre_connect && n.stack.engine_ref().config().proxy.is_some());
                if n.destroyed.contains(stream) {
                    bad.push(format!("{stream} writable after DESTROYING"));
                } else if !n.connected.contains(stream) && !h1_body {
                    bad.push(format!("{stream} writable while not CONNECTED"));
                }
                TraceKind::Writable {
                    stream: *stream,
                    budget: *budget,
                }
            }
            Event::Accepted { server, stream } => {
                let conn = n.input_conn;
                if let Some(c) = conn {
                    n.stream_conn.insert(*stream, c);
                }
                TraceKind::Accepted {
                    server: *server,
                    stream: *stream,
                    conn,
                }
            }
            Event::Listening { stream, addr } => TraceKind::Listening {
                stream: *stream,
                addr: addr.clone(),
            },
            Event::ListenFailed { stream, reason } => TraceKind::ListenFailed {
                stream: *stream,
                reason: reason.clone(),
            },
            Event::ConnectionError { stream, reason } => TraceKind::ConnectionError {
                stream: *stream,
                reason: reason.clone(),
            },
        };
        self.record(node, kind);
        for b in bad {
            self.violation(Some(node), b);
        }
    }

    fn on_action(&mut self, node: NodeId, action: Action) {
        match action {
            Action::Resolve { conn, host } => {
                self.record(
                    node,
                    TraceKind::Net(NetStep::Resolve {
                        conn,
                        host: host.clone(),
                    }),
                );
                self.pending.insert((node, conn), Pending::Resolving);
                let addrs = if self.rng.chance(self.faults.dns_fail) {
                    self.fault(node, Fault::DnsFailure { conn, host });
                    vec![]
                } else {
                    self.dns.get(&host).cloned().unwrap_or_default()
                };
                let at = self.now + self.latency(node, conn);
                self.push(at, Ev::Dns { node, conn, addrs });
            }
            Action::Connect { conn, addr } => {
                self.record(
                    node,
                    TraceKind::Net(NetStep::Connect {
                        conn,
                        addr: addr.to_string(),
                    }),
                );
                self.stats.connects += 1;
                if self.nodes[node.0].dead.contains(&conn) {
                    self.violation(Some(node), format!("Connect on {conn} after it was closed"));
                }
                let SockAddr::Ip(addr) = addr else {
                    self.pending.insert((node, conn), Pending::Connecting);
                    let reason = "address family not simulated".to_string();
                    self.push(self.now, Ev::ConnectFail { node, conn, reason });
                    return;
                };
                if self.rng.chance(self.faults.blackhole) {
                    self.fault(node, Fault::Blackhole { conn, addr });
                    self.pending.insert((node, conn), Pending::Blackholed);
                    return;
                }
                self.pending.insert((node, conn), Pending::Connecting);
                let at = self.now + self.latency(node, conn);
                self.push(at, Ev::ConnectArrive { node, conn, addr });
            }
            Action::Transmit { conn, data } => self.transmit(node, conn, data),
            Action::PauseReading { conn, paused } => self.pause_reading(node, conn, paused),
            Action::Close { conn } => self.close(node, conn),
            Action::Listen { listener, bind } => self.listen(node, listener, bind),
            Action::StopListening { listener } => {
                self.record(node, TraceKind::Net(NetStep::StopListening { listener }));
                let before = self.listeners.len();
                self.listeners.retain(|_, v| *v != (node, listener));
                if self.listeners.len() == before {
                    self.violation(
                        Some(node),
                        format!("StopListening for {listener}, which is not listening"),
                    );
                }
            }
            Action::SetSocketOptions {
                conn,
                tos,
                priority,
            } => self.record(
                node,
                TraceKind::Net(NetStep::SocketOptions {
                    conn,
                    tos,
                    priority,
                }),
            ),
        }
    }

    fn transmit(&mut self, node: NodeId, conn: ConnId, data: Vec<u8>) {
        self.record(
            node,
            TraceKind::Net(NetStep::Transmit {
                conn,
                len: data.len(),
            }),
        );
        let Some(&link) = self.conn_link.get(&(node, conn)) else {
            self.violation(Some(node), format!("Transmit on {conn}, never connected"));
            return;
        };
        let (side, open, mut free, mut last) = {
            let l = &self.links[&link];
            let side = l.side_of((node, conn));
            (
                side,
                l.open[side],
                l.write_free[side],
                l.last_arrival[1 - side],
            )
        };
        if !open {
            self.violation(
                Some(node),
                format!(
                    "Transmit of {} bytes on {conn} after it was closed",
                    data.len()
                ),
            );
            return;
        }
        if data.is_empty() {
            return;
        }
        let len = data.len();
        let mut cuts = BTreeSet::new();
        if len >= 2 && self.rng.chance(self.faults.partial_write) {
            let want = self.rng.range(1, 4.min(len as u64 - 1));
            for _ in 0..want {
                cuts.insert(self.rng.range(1, len as u64 - 1) as usize);
            }
            self.fault(
                node,
                Fault::PartialWrite {
                    conn,
                    len,
                    pieces: cuts.len() + 1,
                },
            );
        }
        cuts.insert(len);
        let mut t = self.now.max(free);
        let mut start = 0;
        for (k, end) in cuts.into_iter().enumerate() {
            let piece = data[start..end].to_vec();
            start = end;
            if k > 0 {
                t += self.rng.millis(self.faults.write_gap_ms);
            }
            if let Some(us) = (piece.len() as u64 * 1000).checked_div(self.faults.bytes_per_ms) {
                t += Duration::from_micros(us);
            }
            free = t;
            self.push(
                t,
                Ev::Sent {
                    link,
                    side,
                    n: piece.len(),
                },
            );
            let arrive = (t + self.latency(node, conn)).max(last);
            last = arrive;
            self.push(
                arrive,
                Ev::Segment {
                    link,
                    to: 1 - side,
                    data: piece,
                },
            );
        }
        if let Some(l) = self.links.get_mut(&link) {
            l.write_free[side] = free;
            l.last_arrival[1 - side] = last;
        }
    }

    /// Append to `data` the segments queued right behind it towards side
    /// `to` of `link` (due within [`COALESCE_WINDOW`], before any close), and
    /// take them off the queue.
    fn coalesce(&mut self, link: LinkId, to: usize, data: &mut Vec<u8>) {
        let until = self.now + COALESCE_WINDOW;
        let mut taken = vec![];
        for (k, ev) in self.queue.range(..=(until, u64::MAX)) {
            match ev {
                Ev::Segment { link: l, to: t, .. } if *l == link && *t == to => taken.push(*k),
                Ev::Fin { link: l, to: t } if *l == link && *t == to => break,
                _ => {}
            }
        }
        if taken.is_empty() {
            return;
        }
        for k in &taken {
            if let Some(Ev::Segment { data: d, .. }) = self.queue.remove(k) {
                data.extend_from_slice(&d);
            }
        }
        let node = self.links[&link].ends[to].0;
        self.fault(
            node,
            Fault::Coalesced {
                link,
                segments: taken.len() + 1,
                len: data.len(),
            },
        );
    }

    fn close(&mut self, node: NodeId, conn: ConnId) {
        self.record(node, TraceKind::Net(NetStep::Close { conn }));
        if !self.nodes[node.0].dead.insert(conn) {
            self.violation(Some(node), format!("Close of {conn}, already closed"));
            return;
        }
        self.pending.remove(&(node, conn));
        self.paused.remove(&(node, conn));
        let Some(&link) = self.conn_link.get(&(node, conn)) else {
            return;
        };
        let (side, peer_open, last) = {
            let l = &self.links[&link];
            let side = l.side_of((node, conn));
            self.parked.remove(&(link, side));
            (side, l.open[1 - side], l.last_arrival[1 - side])
        };
        if let Some(l) = self.links.get_mut(&link) {
            l.open[side] = false;
            l.closed_itself[side] = true;
        }
        if peer_open {
            // The peer hears the close after everything already in flight.
            let arrive = (self.now + self.latency(node, conn)).max(last);
            if let Some(l) = self.links.get_mut(&link) {
                l.last_arrival[1 - side] = arrive;
            }
            self.push(arrive, Ev::Fin { link, to: 1 - side });
        }
    }

    fn listen(&mut self, node: NodeId, listener: ListenerId, bind: SockAddr) {
        let ip = self.nodes[node.0].ip;
        let res = match &bind {
            SockAddr::Ip(a) if a.ip().is_unspecified() || a.ip() == ip => {
                let port = if a.port() == 0 {
                    self.next_port += 1;
                    self.next_port
                } else {
                    a.port()
                };
                let key = SocketAddr::new(ip, port);
                match self.listeners.entry(key) {
                    Entry::Occupied(_) => Err(format!("{key}: address in use")),
                    Entry::Vacant(v) => {
                        v.insert((node, listener));
                        Ok(key.to_string())
                    }
                }
            }
            SockAddr::Ip(a) => Err(format!("{a}: not an address of this node")),
            other => Err(format!("{other}: unix sockets are not simulated")),
        };
        match res {
            Ok(addr) => {
                self.record(
                    node,
                    TraceKind::Net(NetStep::Listen {
                        listener,
                        addr: addr.clone(),
                    }),
                );
                self.push(
                    self.now,
                    Ev::Listening {
                        node,
                        listener,
                        addr,
                    },
                );
            }
            Err(reason) => {
                self.record(
                    node,
                    TraceKind::Net(NetStep::ListenFailed {
                        listener,
                        reason: reason.clone(),
                    }),
                );
                self.push(
                    self.now,
                    Ev::ListenFailed {
                        node,
                        listener,
                        reason,
                    },
                );
            }
        }
    }
}

/// Whether `stream` is an HTTP/1.1 client stream (which may be `Writable`
/// for its request body while still CONNECTING).
fn is_http_client(e: &Engine, stream: StreamId) -> bool {
    e.streamtype(stream)
        .and_then(|name| e.policy().streamtype(name))
        .is_some_and(|st| matches!(st.protocol, Protocol::H1 | Protocol::H2) && !st.server)
}

/// Idle kept-alive connections an engine may hold beyond one per stream:
/// up to `max_idle_per_target` per HTTP/1.1 client streamtype (one target
/// each), one idle shared connection per HTTP/2 client streamtype, none
/// for engines without HTTP clients.
fn idle_pool_allowance(e: &Engine) -> usize {
    let count = |p: Protocol| {
        e.policy()
            .streamtypes
            .iter()
            .filter(|st| st.protocol == p && !st.server)
            .count()
    };
    count(Protocol::H1) * e.config().max_idle_per_target + count(Protocol::H2)
}
