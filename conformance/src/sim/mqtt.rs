//! The MQTT scenario: one broker node, client nodes publishing numbered QoS 1
//! messages and subscribing to each other's topics, across drops, partial
//! writes, delays and refused connections.
//!
//! The broker is a minimal in-simulation MQTT 3.1.1 broker ([`Broker`]) on a
//! raw server streamtype of a bare engine: it frames what each connection
//! sends with [`codec::frame`] and decodes client packets with `mqttrs`
//! (ss-core's own codec refuses server-bound packets by design). It answers
//! CONNECT (CONNACK; now and then, seeded, "server unavailable" and a
//! hang-up), SUBSCRIBE (SUBACK granting QoS 0), PUBLISH QoS 0/1 (recorded,
//! routed at QoS 0 to every connection with a matching filter, PUBACK for QoS
//! 1; now and then it hangs up before recording or before the PUBACK),
//! PINGREQ (PINGRESP), UNSUBSCRIBE (UNSUBACK) and DISCONNECT (hang-up). It
//! keeps no sessions: CONNACK never says `session_present`.
//!
//! Each client node ([`MqttClient`]) is a bare engine with the client id
//! system blob set and two `nailed_up` streamtypes sharing one connection:
//! `pub` publishes its messages to `sim/c{i}/data` at QoS 1
//! (`mqtt_clean_start` false, so unacknowledged messages are retransmitted
//! after a reconnect), one at a time: the next is written once
//! QOS_ACK_REMOTE came for the previous (a QOS_NACK_REMOTE writes it again);
//! `sub` subscribes to `sim/+/data` and checks every message it gets is one
//! some client wrote, whole. When every message is acknowledged (or `pub`
//! reports ALL_RETRIES_FAILED) the client destroys both streams. With
//! [`MqttSimConfig::mux`] both streams share one connection; without it `sub`
//! names the broker the other way (IP / DNS name) and gets its own.
//!
//! [`check_mqtt`] lists the invariants checked once the network is quiet;
//! [`Sim`] itself checks state transitions, event order and leaks.

use super::net::{derive_seed, App, AppCx, FaultConfig, NodeId, Sim, SimRng, Stack, Stats};
pub use super::shared::SERVER_NAME;
use super::shared::{new_engine, retry_policy, server_endpoint, FaultTally, SERVER_IP};
use super::trace::{Fault, FaultKind, TraceEntry};
use mqttrs::{Packet, QosPid};
use ss_core::engine::SystemBlob;
use ss_core::policy::{Policy, Protocol, StreamType};
use ss_core::proto::mqtt::{codec, topic_matches};
use ss_core::{EngineConfig, Event, Flags, StreamId, StreamState};
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

/// The port the broker listens on.
pub const PORT: u16 = 1883;
/// Wake-up tag: make the broker's server stream, or the client's streams.
pub const START: u64 = 1;
/// The filter every client's `sub` stream subscribes to.
pub const FILTER: &str = "sim/+/data";

/// One client node of the MQTT scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttClientSpec {
    /// Endpoint is [`SERVER_NAME`] (resolved by sim DNS) rather than the broker's IP.
    pub use_dns: bool,
    /// When the client creates its streams.
    pub start_at: Duration,
    /// The length of each message it publishes, in order.
    pub sizes: Vec<usize>,
    /// `mqtt_keep_alive` (s) of its streamtypes.
    pub keep_alive: u16,
}

/// Everything that decides one MQTT run.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttSimConfig {
    /// The run's seed.
    pub seed: u64,
    /// The network's behaviour.
    pub faults: FaultConfig,
    /// One entry per client node.
    pub clients: Vec<MqttClientSpec>,
    /// The retry policy's `backoff` (ms).
    pub backoff_ms: Vec<u32>,
    /// The retry policy's `conceal`.
    pub conceal: u16,
    /// The retry policy's `jitterpc`.
    pub jitter_pc: u8,
    /// Engines' connect timeout.
    pub connect_timeout: Duration,
    /// Chance, per CONNECT, that the broker refuses it (server unavailable).
    pub refuse_connack: f64,
    /// Chance, per QoS 1 PUBLISH, that the broker hangs up: half the time
    /// before recording it, half after recording it but before its PUBACK.
    pub drop_publish: f64,
    /// Most refusals and hang-ups by the broker.
    pub broker_max_faults: u32,
    /// A client's `sub` shares `pub`'s connection (the same endpoint);
    /// otherwise it names the broker the other way (IP for DNS name and
    /// back), which makes a connection of its own.
    pub mux: bool,
}

impl MqttSimConfig {
    /// A calm run: `clients` clients of `k` messages each, no faults.
    pub fn calm(seed: u64, clients: usize, k: usize) -> Self {
        MqttSimConfig {
            seed,
            faults: FaultConfig::none(),
            clients: (0..clients)
                .map(|i| MqttClientSpec {
                    use_dns: i % 2 == 0,
                    start_at: Duration::from_millis(i as u64),
                    sizes: (0..k)
                        .map(|j| [10, 0, 300, 5000, 20, 40][(i + j) % 6])
                        .collect(),
                    keep_alive: 0,
                })
                .collect(),
            backoff_ms: vec![100, 200, 400],
            conceal: 30,
            jitter_pc: 0,
            connect_timeout: Duration::from_millis(1000),
            refuse_connack: 0.0,
            drop_publish: 0.0,
            broker_max_faults: 0,
            mux: true,
        }
    }

    /// The configuration seed `seed` stands for.
    pub fn from_seed(seed: u64) -> Self {
        let mut r = SimRng::new(derive_seed(seed, 0x4d51));
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
            reset: pct(&mut r, 0.5, 5, 50),
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
                let k = r.range(1, 10) as usize;
                MqttClientSpec {
                    use_dns: r.chance(0.5),
                    start_at: r.millis((0, 50)),
                    sizes: (0..k)
                        .map(|_| match r.range(0, 9) {
                            0 => 0,
                            1..=6 => r.range(1, 200) as usize,
                            _ => r.range(200, 20_000) as usize,
                        })
                        .collect(),
                    keep_alive: [0, 1, 2, 5][r.range(0, 3) as usize],
                }
            })
            .collect();
        let b0 = r.range(20, 200) as u32;
        MqttSimConfig {
            seed,
            faults,
            clients,
            backoff_ms: vec![b0, b0 * 2, b0 * 4],
            conceal: if r.chance(0.1) {
                r.range(1, 4) as u16
            } else {
                30
            },
            jitter_pc: r.range(0, 30) as u8,
            connect_timeout: r.millis((300, 3000)),
            refuse_connack: pct(&mut r, 0.4, 50, 300),
            drop_publish: pct(&mut r, 0.5, 30, 200),
            broker_max_faults: r.range(1, 5) as u32,
            mux: r.chance(0.5),
        }
    }

    /// Messages over all clients.
    pub fn messages(&self) -> usize {
        self.clients.iter().map(|c| c.sizes.len()).sum()
    }
}

/// Message `k` of client `client`, `len` bytes: a tag naming both (cut to
/// `len`), then a pattern.
pub fn message_for(client: usize, k: usize, len: usize) -> Vec<u8> {
    let mut b = format!("<c{client}m{k}|").into_bytes();
    let mut i = client * 7 + k * 3;
    while b.len() < len {
        b.push((i * 31 % 251) as u8);
        i += 1;
    }
    b.truncate(len);
    b
}

/// The topic client `client` publishes to.
pub fn topic_for(client: usize) -> String {
    format!("sim/c{client}/data")
}

/// The client id of client `client`.
pub fn client_id(client: usize) -> String {
    format!("sim-c{client}")
}

/// The broker node's policy: a raw server streamtype `broker` on [`PORT`].
pub fn broker_policy() -> Policy {
    Policy {
        streamtypes: vec![StreamType {
            name: "broker".into(),
            server: true,
            protocol: Protocol::Raw,
            port: PORT,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Client `index`'s policy: `pub` and `sub`, both `nailed_up` MQTT streamtypes
/// to the broker.
pub fn client_policy(cfg: &MqttSimConfig, index: usize, spec: &MqttClientSpec) -> Policy {
    let base = |name: &str, use_dns: bool| {
        let mut st = StreamType {
            name: name.into(),
            endpoint: Some(server_endpoint(use_dns)),
            port: PORT,
            protocol: Protocol::Mqtt,
            retry: Some("sim".into()),
            nailed_up: true,
            ..Default::default()
        };
        st.mqtt.keep_alive = spec.keep_alive;
        st.mqtt.clean_start = false;
        st.mqtt.qos = 1;
        st
    };
    let mut publ = base("pub", spec.use_dns);
    publ.mqtt.topic = Some(topic_for(index));
    let mut sub = base("sub", spec.use_dns == cfg.mux);
    sub.mqtt.subscribe = Some(FILTER.into());
    Policy {
        retry: vec![retry_policy(&cfg.backoff_ms, cfg.conceal, cfg.jitter_pc)],
        streamtypes: vec![publ, sub],
        ..Default::default()
    }
}

fn engine_config(cfg: &MqttSimConfig, node: u64) -> EngineConfig {
    EngineConfig {
        seed: derive_seed(cfg.seed, 100 + node),
        connect_timeout: cfg.connect_timeout,
        ..Default::default()
    }
}

fn encode(p: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    match mqttrs::encode_slice(p, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            buf
        }
        Err(_) => vec![],
    }
}

// ----- broker --------------------------------------------------------------

/// A PUBLISH the broker received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The client id of the connection it came on.
    pub client_id: String,
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its DUP flag.
    pub dup: bool,
}

#[derive(Debug, Default)]
struct BConn {
    buf: Vec<u8>,
    client_id: Option<String>,
    filters: BTreeSet<String>,
}

/// The in-simulation MQTT broker (see the module docs).
pub struct Broker {
    rng: SimRng,
    refuse: f64,
    drop_publish: f64,
    faults_left: u32,
    server: Option<StreamId>,
    conns: BTreeMap<StreamId, BConn>,
    /// Every PUBLISH received (and kept), in order.
    pub received: Vec<Received>,
    /// Connections accepted (CONNACK accepted).
    pub sessions: usize,
    /// Hang-ups and refusals it made.
    pub broker_faults: usize,
    /// Messages it routed to subscribers.
    pub routed: usize,
}

impl Broker {
    /// A broker misbehaving as `cfg` says.
    pub fn new(cfg: &MqttSimConfig) -> Self {
        Broker {
            rng: SimRng::new(derive_seed(cfg.seed, 300)),
            refuse: cfg.refuse_connack,
            drop_publish: cfg.drop_publish,
            faults_left: cfg.broker_max_faults,
            server: None,
            conns: BTreeMap::new(),
            received: vec![],
            sessions: 0,
            broker_faults: 0,
            routed: 0,
        }
    }

    fn misbehave(&mut self, chance: f64) -> bool {
        if self.faults_left > 0 && self.rng.chance(chance) {
            self.faults_left -= 1;
            self.broker_faults += 1;
            true
        } else {
            false
        }
    }

    fn send(cx: &mut AppCx<'_>, s: StreamId, p: &Packet<'_>) {
        let bytes = encode(p);
        let now = cx.now();
        if let Err(e) = cx.engine().write(now, s, &bytes, Flags::SOM | Flags::EOM) {
            cx.note(format!("broker: write to {s}: {e}"));
        }
    }

    fn hang_up(&mut self, cx: &mut AppCx<'_>, s: StreamId, why: &str) {
        cx.fault(Fault::AppDisconnect { stream: s });
        cx.note(format!("broker: hangs up {s} {why}"));
        self.conns.remove(&s);
        let now = cx.now();
        let _ = cx.engine().disconnect(now, s);
    }

    /// Handle one whole packet from `s`; false when the connection ended.
    fn packet(&mut self, cx: &mut AppCx<'_>, s: StreamId, bytes: &[u8]) -> bool {
        let p = match mqttrs::decode_slice(bytes) {
            Ok(Some(p)) => p,
            other => {
                cx.violation(format!("broker: undecodable packet from {s}: {other:?}"));
                self.hang_up(cx, s, "after a bad packet");
                return false;
            }
        };
        let known = self.conns.get(&s).is_some_and(|c| c.client_id.is_some());
        match p {
            Packet::Connect(c) => {
                if known {
                    cx.violation(format!("broker: second CONNECT on {s}"));
                }
                if self.misbehave(self.refuse) {
                    Self::send(
                        cx,
                        s,
                        &Packet::Connack(mqttrs::Connack {
                            session_present: false,
                            code: mqttrs::ConnectReturnCode::ServerUnavailable,
                        }),
                    );
                    self.hang_up(cx, s, "after refusing CONNECT");
                    return false;
                }
                if let Some(bc) = self.conns.get_mut(&s) {
                    bc.client_id = Some(c.client_id.to_string());
                }
                self.sessions += 1;
                Self::send(
                    cx,
                    s,
                    &Packet::Connack(mqttrs::Connack {
                        session_present: false,
                        code: mqttrs::ConnectReturnCode::Accepted,
                    }),
                );
            }
            _ if !known => {
                cx.violation(format!("broker: packet before CONNECT on {s}: {p:?}"));
                self.hang_up(cx, s, "after a packet before CONNECT");
                return false;
            }
            Packet::Subscribe(sub) => {
                let codes = sub
                    .topics
                    .iter()
                    .map(|_| mqttrs::SubscribeReturnCodes::Success(mqttrs::QoS::AtMostOnce))
                    .collect();
                if let Some(bc) = self.conns.get_mut(&s) {
                    for t in &sub.topics {
                        bc.filters.insert(t.topic_path.to_string());
                    }
                }
                Self::send(
                    cx,
                    s,
                    &Packet::Suback(mqttrs::Suback {
                        pid: sub.pid,
                        return_codes: codes,
                    }),
                );
            }
            Packet::Unsubscribe(u) => {
                if let Some(bc) = self.conns.get_mut(&s) {
                    for t in &u.topics {
                        bc.filters.remove(t.as_str());
                    }
                }
                Self::send(cx, s, &Packet::Unsuback(u.pid));
            }
            Packet::Publish(p) => {
                let pid = match p.qospid {
                    QosPid::AtMostOnce => None,
                    QosPid::AtLeastOnce(pid) => Some(pid),
                    QosPid::ExactlyOnce(_) => {
                        cx.violation(format!("broker: QoS 2 PUBLISH on {s}"));
                        None
                    }
                };
                if pid.is_some() && self.misbehave(self.drop_publish) {
                    if self.rng.chance(0.5) {
                        self.hang_up(cx, s, "before recording a PUBLISH");
                        return false;
                    }
                    self.record(cx, s, &p);
                    self.hang_up(cx, s, "before acknowledging a PUBLISH");
                    return false;
                }
                self.record(cx, s, &p);
                if let Some(pid) = pid {
                    Self::send(cx, s, &Packet::Puback(pid));
                }
            }
            Packet::Pingreq => Self::send(cx, s, &Packet::Pingresp),
            Packet::Disconnect => {
                self.conns.remove(&s);
                let now = cx.now();
                let _ = cx.engine().disconnect(now, s);
                return false;
            }
            other => {
                cx.violation(format!("broker: unexpected packet on {s}: {other:?}"));
            }
        }
        true
    }

    /// Keep a PUBLISH and route it to every connection with a matching filter.
    fn record(&mut self, cx: &mut AppCx<'_>, s: StreamId, p: &mqttrs::Publish<'_>) {
        let client_id = self
            .conns
            .get(&s)
            .and_then(|c| c.client_id.clone())
            .unwrap_or_default();
        self.received.push(Received {
            client_id,
            topic: p.topic_name.to_string(),
            payload: p.payload.to_vec(),
            dup: p.dup,
        });
        let to: Vec<StreamId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.filters.iter().any(|f| topic_matches(f, p.topic_name)))
            .map(|(k, _)| *k)
            .collect();
        let out = Packet::Publish(mqttrs::Publish {
            dup: false,
            qospid: QosPid::AtMostOnce,
            retain: false,
            topic_name: p.topic_name,
            payload: p.payload,
        });
        for t in to {
            self.routed += 1;
            Self::send(cx, t, &out);
        }
    }

    fn rx(&mut self, cx: &mut AppCx<'_>, s: StreamId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&s) else {
            return;
        };
        c.buf.extend_from_slice(data);
        loop {
            let Some(c) = self.conns.get_mut(&s) else {
                return;
            };
            let f = match codec::frame(&c.buf, 1 << 20) {
                Ok(Some(f)) if c.buf.len() >= f.total() => f,
                Ok(_) => return,
                Err(e) => {
                    cx.violation(format!("broker: bad framing from {s}: {e}"));
                    return self.hang_up(cx, s, "after bad framing");
                }
            };
            let one: Vec<u8> = c.buf.drain(..f.total()).collect();
            if !self.packet(cx, s, &one) {
                return;
            }
        }
    }
}

impl App for Broker {
    fn on_event(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        match ev {
            Event::Accepted { stream, .. } => {
                self.conns.insert(*stream, BConn::default());
            }
            Event::Rx { stream, data, .. } => self.rx(cx, *stream, data),
            Event::State { stream, state, .. }
                if Some(*stream) != self.server
                    && matches!(state, StreamState::Disconnected | StreamState::Destroying) =>
            {
                self.conns.remove(stream);
            }
            Event::ListenFailed { reason, .. } => {
                cx.violation(format!("broker could not listen: {reason}"))
            }
            _ => {}
        }
    }

    fn on_wake(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        if tag != START {
            return;
        }
        let now = cx.now();
        match cx.engine().create(now, "broker") {
            Ok(s) => self.server = Some(s),
            Err(e) => cx.violation(format!("create broker: {e}")),
        }
    }

    fn shutdown(&mut self, cx: &mut AppCx<'_>) {
        if let Some(s) = self.server.take() {
            let now = cx.now();
            if let Err(e) = cx.engine().destroy(now, s) {
                cx.violation(format!("destroy broker: {e}"));
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ----- client ----------------------------------------------------------------

/// Where a client got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Messages still unacknowledged.
    Running,
    /// Every message was acknowledged.
    Done,
    /// `pub` reported ALL_RETRIES_FAILED.
    GaveUp,
}

/// A client node's application (see the module docs).
pub struct MqttClient {
    index: usize,
    publ: Option<StreamId>,
    sub: Option<StreamId>,
    /// Its messages, in order.
    pub msgs: Vec<Vec<u8>>,
    /// Messages acknowledged (always the first `acked`).
    pub acked: usize,
    /// Message `acked` was written and is waiting for its acknowledgement.
    in_flight: bool,
    /// Writes of whole messages (more than `msgs` after NACKs).
    pub writes: usize,
    /// QOS_NACK_REMOTE reports.
    pub nacks: usize,
    /// CONNECTED reports of `pub`.
    pub connections: usize,
    /// Whole messages `sub` received.
    pub heard: usize,
    rx: Option<Vec<u8>>,
    /// Where it got to.
    pub outcome: Outcome,
}

impl MqttClient {
    /// Client `index` with `spec`'s messages.
    pub fn new(index: usize, spec: &MqttClientSpec) -> Self {
        MqttClient {
            index,
            publ: None,
            sub: None,
            msgs: spec
                .sizes
                .iter()
                .enumerate()
                .map(|(k, n)| message_for(index, k, *n))
                .collect(),
            acked: 0,
            in_flight: false,
            writes: 0,
            nacks: 0,
            connections: 0,
            heard: 0,
            rx: None,
            outcome: Outcome::Running,
        }
    }

    fn want_tx(&mut self, cx: &mut AppCx<'_>) {
        if let (Some(p), false, true) = (self.publ, self.in_flight, self.acked < self.msgs.len()) {
            let now = cx.now();
            if let Err(e) = cx.engine().request_tx(now, p) {
                cx.violation(format!("request_tx: {e}"));
            }
        }
    }

    fn finish(&mut self, cx: &mut AppCx<'_>, outcome: Outcome) {
        self.outcome = outcome;
        cx.note(format!("client{}: {outcome:?}", self.index));
        let now = cx.now();
        for s in [self.publ.take(), self.sub.take()].into_iter().flatten() {
            if let Err(e) = cx.engine().destroy(now, s) {
                cx.violation(format!("destroy {s}: {e}"));
            }
        }
    }

    fn on_pub(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        match ev {
            Event::State { state, .. } => match state {
                StreamState::Connected => {
                    self.connections += 1;
                    self.want_tx(cx);
                }
                StreamState::QosAckRemote => {
                    if !self.in_flight {
                        cx.violation(format!(
                            "client{}: QOS_ACK_REMOTE with nothing in flight",
                            self.index
                        ));
                        return;
                    }
                    self.in_flight = false;
                    self.acked += 1;
                    if self.acked == self.msgs.len() {
                        self.finish(cx, Outcome::Done);
                    } else {
                        self.want_tx(cx);
                    }
                }
                StreamState::QosNackRemote => {
                    self.nacks += 1;
                    self.in_flight = false;
                    self.want_tx(cx);
                }
                StreamState::AllRetriesFailed => self.finish(cx, Outcome::GaveUp),
                _ => {}
            },
            Event::Writable { stream, .. } => {
                if self.in_flight || self.acked >= self.msgs.len() {
                    return;
                }
                let now = cx.now();
                let m = self.msgs[self.acked].clone();
                match cx.engine().write(now, *stream, &m, Flags::SOM | Flags::EOM) {
                    Ok(_) => {
                        self.in_flight = true;
                        self.writes += 1;
                    }
                    Err(e) => cx.note(format!("client{}: write: {e}", self.index)),
                }
            }
            _ => {}
        }
    }

    fn on_sub(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        let Event::Rx { data, flags, .. } = ev else {
            return;
        };
        match (&mut self.rx, flags.contains(Flags::SOM)) {
            (Some(_), true) => {
                cx.violation(format!("client{}: SOM inside a message", self.index));
                self.rx = Some(data.clone());
            }
            (None, false) => {
                cx.violation(format!("client{}: rx without SOM", self.index));
                return;
            }
            (Some(m), false) => m.extend_from_slice(data),
            (None, true) => self.rx = Some(data.clone()),
        }
        if flags.contains(Flags::EOM) {
            let m = self.rx.take().unwrap_or_default();
            self.heard += 1;
            if !is_some_message(&m) {
                cx.violation(format!(
                    "client{}: heard a message no client wrote ({} bytes)",
                    self.index,
                    m.len()
                ));
            }
        }
    }
}

/// Whether `m` is `message_for(c, k, m.len())` for the client and index its
/// tag names (the empty message is anyone's).
fn is_some_message(m: &[u8]) -> bool {
    if m.is_empty() {
        return true;
    }
    // Short messages carry a cut tag: accept any prefix of a possible tag.
    let text = String::from_utf8_lossy(m);
    let Some(rest) = text.strip_prefix("<c") else {
        return "<c".as_bytes().starts_with(m);
    };
    let parse = |s: &str| -> Option<(usize, usize)> {
        let (c, r) = s.split_once('m')?;
        let (k, _) = r.split_once('|')?;
        Some((c.parse().ok()?, k.parse().ok()?))
    };
    match parse(rest) {
        Some((c, k)) => message_for(c, k, m.len()) == m,
        // A tag cut short: only digits, 'm' and '|' may follow.
        None => rest.chars().all(|ch| ch.is_ascii_digit() || ch == 'm'),
    }
}

impl App for MqttClient {
    fn on_event(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        let s = ev.stream();
        if Some(s) == self.publ {
            self.on_pub(cx, ev);
        } else if Some(s) == self.sub {
            self.on_sub(cx, ev);
        }
    }

    fn on_wake(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        if tag != START {
            return;
        }
        let now = cx.now();
        if self.msgs.is_empty() {
            self.outcome = Outcome::Done;
            return;
        }
        match cx.engine().create(now, "sub") {
            Ok(s) => self.sub = Some(s),
            Err(e) => cx.violation(format!("create sub: {e}")),
        }
        match cx.engine().create(now, "pub") {
            Ok(s) => self.publ = Some(s),
            Err(e) => cx.violation(format!("create pub: {e}")),
        }
    }

    fn shutdown(&mut self, cx: &mut AppCx<'_>) {
        let now = cx.now();
        for s in [self.publ.take(), self.sub.take()].into_iter().flatten() {
            if let Err(e) = cx.engine().destroy(now, s) {
                cx.violation(format!("destroy {s}: {e}"));
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ----- the run -----------------------------------------------------------------

/// What one MQTT run did.
#[derive(Clone, Debug)]
pub struct MqttReport {
    /// The seed.
    pub seed: u64,
    /// Every application-visible event and fault.
    pub trace: Vec<TraceEntry>,
    /// Network counters.
    pub stats: Stats,
    /// Broken invariants (empty when all held).
    pub violations: Vec<String>,
    /// Client nodes.
    pub clients: usize,
    /// Clients with every message acknowledged.
    pub clients_done: usize,
    /// Clients whose `pub` gave up.
    pub clients_gave_up: usize,
    /// Messages over all clients.
    pub messages: usize,
    /// Messages acknowledged.
    pub acked: usize,
    /// QOS_NACK_REMOTE reports.
    pub nacks: usize,
    /// PUBLISHes the broker kept.
    pub broker_received: usize,
    /// Of those, with DUP set.
    pub dups: usize,
    /// Of those, the same message a second time.
    pub duplicates: usize,
    /// Broker sessions (accepted CONNECTs).
    pub sessions: usize,
    /// Broker refusals and hang-ups.
    pub broker_faults: usize,
    /// Messages routed to subscribers, and whole messages they heard.
    pub routed: usize,
    /// Whole messages `sub` streams heard.
    pub heard: usize,
}

impl MqttReport {
    /// No invariant broken.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The fault kinds injected in this run.
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

    /// One paragraph about the run.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} clients ({} done, {} gave up), {} messages ({} acked, {} nacked), \
             broker kept {} ({} DUP, {} duplicates), {} sessions, {} broker faults, \
             {} routed / {} heard, faults {:?}, {} violations",
            self.seed,
            self.clients,
            self.clients_done,
            self.clients_gave_up,
            self.messages,
            self.acked,
            self.nacks,
            self.broker_received,
            self.dups,
            self.duplicates,
            self.sessions,
            self.broker_faults,
            self.routed,
            self.heard,
            self.stats.faults,
            self.violations.len()
        )
    }
}

/// The MQTT scenario set up and ready to run.
pub struct MqttSim {
    /// The seed the run came from.
    pub seed: u64,
    /// The network.
    pub sim: Sim,
    /// The broker node.
    pub broker: NodeId,
    /// The client nodes.
    pub clients: Vec<NodeId>,
}

impl MqttSim {
    /// Build the scenario `cfg` describes.
    pub fn new(cfg: &MqttSimConfig) -> Self {
        let mut sim = Sim::new(cfg.seed, cfg.faults.clone());
        let broker = sim.add_node(
            "broker",
            Stack::Engine(new_engine(broker_policy(), engine_config(cfg, 0))),
            Box::new(Broker::new(cfg)),
        );
        assert_eq!(sim.node_ip(broker), SERVER_IP);
        sim.add_dns(SERVER_NAME, vec![SERVER_IP]);
        let mut clients = vec![];
        for (i, spec) in cfg.clients.iter().enumerate() {
            let mut engine = new_engine(
                client_policy(cfg, i, spec),
                engine_config(cfg, 1 + i as u64),
            );
            if let Err(e) =
                engine.set_system_blob(SystemBlob::MqttClientId, client_id(i).as_bytes())
            {
                panic!("client id blob: {e}");
            }
            let app = MqttClient::new(i, spec);
            clients.push(sim.add_node(&format!("client{i}"), Stack::Engine(engine), Box::new(app)));
        }
        sim.schedule_wake(broker, Duration::ZERO, START);
        for (c, spec) in clients.iter().zip(&cfg.clients) {
            sim.schedule_wake(*c, spec.start_at, START);
        }
        MqttSim {
            seed: cfg.seed,
            sim,
            broker,
            clients,
        }
    }

    /// Run until quiet, check the invariants, shut everything down, check
    /// for leaks, and report.
    pub fn finish(mut self) -> MqttReport {
        let sim = &mut self.sim;
        if let Err(e) = sim.run() {
            let msg = format!("run: {e}");
            sim.with_node(self.broker, |cx| cx.violation(msg));
        }
        let mut violations = check_mqtt(sim, self.broker, &self.clients);
        for c in &self.clients {
            sim.shutdown(*c);
        }
        let _ = sim.run();
        sim.shutdown(self.broker);
        let _ = sim.run();
        sim.check_no_leaks();
        let mut all = sim.violations().to_vec();
        all.append(&mut violations);
        let apps: Vec<&MqttClient> = self.clients.iter().filter_map(|c| sim.app(*c)).collect();
        let b = sim.app::<Broker>(self.broker);
        let received = b.map(|b| b.received.clone()).unwrap_or_default();
        let mut seen = BTreeSet::new();
        let duplicates = received
            .iter()
            .filter(|r| !seen.insert((r.client_id.clone(), r.payload.clone())))
            .count();
        MqttReport {
            seed: self.seed,
            trace: sim.trace().to_vec(),
            stats: sim.stats().clone(),
            violations: all,
            clients: apps.len(),
            clients_done: apps.iter().filter(|a| a.outcome == Outcome::Done).count(),
            clients_gave_up: apps.iter().filter(|a| a.outcome == Outcome::GaveUp).count(),
            messages: apps.iter().map(|a| a.msgs.len()).sum(),
            acked: apps.iter().map(|a| a.acked).sum(),
            nacks: apps.iter().map(|a| a.nacks).sum(),
            broker_received: received.len(),
            dups: received.iter().filter(|r| r.dup).count(),
            duplicates,
            sessions: b.map_or(0, |b| b.sessions),
            broker_faults: b.map_or(0, |b| b.broker_faults),
            routed: b.map_or(0, |b| b.routed),
            heard: apps.iter().map(|a| a.heard).sum(),
        }
    }
}

/// Run the MQTT scenario `cfg` to the end and report.
pub fn run_mqtt(cfg: &MqttSimConfig) -> MqttReport {
    MqttSim::new(cfg).finish()
}

/// The MQTT invariants, checked once the network is quiet:
///
/// * every client finished (all acknowledged) or its `pub` gave up;
/// * every message a client was acknowledged for reached the broker, from
///   its client id, on its topic, whole (at least once: QoS 1 allows
///   duplicates, not loss);
/// * the broker kept only messages some client wrote, on the writer's topic,
///   and each client's messages first arrived in order (one in flight at a
///   time);
/// * the subscribers heard only whole messages some client wrote (checked as
///   they arrive).
pub fn check_mqtt(sim: &Sim, broker: NodeId, clients: &[NodeId]) -> Vec<String> {
    let mut v = vec![];
    let Some(b) = sim.app::<Broker>(broker) else {
        return vec!["broker node has no Broker".into()];
    };
    for (i, &c) in clients.iter().enumerate() {
        let Some(app) = sim.app::<MqttClient>(c) else {
            v.push(format!("{c}: no MqttClient"));
            continue;
        };
        let id = client_id(i);
        let topic = topic_for(i);
        if app.outcome == Outcome::Running {
            v.push(format!(
                "client{i}: stalled: {} of {} acknowledged, {} connections",
                app.acked,
                app.msgs.len(),
                app.connections
            ));
        }
        if app.outcome == Outcome::Done && app.acked != app.msgs.len() {
            v.push(format!(
                "client{i}: done with {} of {}",
                app.acked,
                app.msgs.len()
            ));
        }
        let mine: Vec<&Received> = b.received.iter().filter(|r| r.client_id == id).collect();
        for (k, m) in app.msgs.iter().enumerate().take(app.acked) {
            if !mine.iter().any(|r| r.payload == *m && r.topic == topic) {
                v.push(format!(
                    "client{i} message {k}: acknowledged but the broker never received it"
                ));
            }
        }
        // Distinct messages seen in order: a record is the next message,
        // or a repeat of one already seen (a duplicate), nothing else.
        let mut next = 0;
        for r in &mine {
            if r.topic != topic {
                v.push(format!("client{i}: published to {}", r.topic));
            }
            if app.msgs.get(next) == Some(&r.payload) {
                next += 1;
            } else if !app.msgs[..next].contains(&r.payload) {
                v.push(format!(
                    "client{i}: the broker got {} bytes that are not message {next} nor a repeat",
                    r.payload.len()
                ));
            }
        }
        if app.acked > next {
            v.push(format!(
                "client{i}: {} acknowledged but only {next} reached the broker in order",
                app.acked
            ));
        }
    }
    v
}

/// Aggregates over many MQTT runs.
#[derive(Default)]
pub struct MqttSummary {
    /// Network-level tally.
    pub net: FaultTally,
    /// Client nodes.
    pub clients: u64,
    /// Of those, done.
    pub clients_done: u64,
    /// Of those, gave up.
    pub clients_gave_up: u64,
    /// Messages.
    pub messages: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// NACKs.
    pub nacks: u64,
    /// PUBLISHes the broker kept.
    pub broker_received: u64,
    /// With DUP.
    pub dups: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Sessions.
    pub sessions: u64,
    /// Broker faults.
    pub broker_faults: u64,
    /// Routed to subscribers.
    pub routed: u64,
    /// Heard by subscribers.
    pub heard: u64,
}

impl MqttSummary {
    /// Add one run.
    pub fn add(&mut self, r: &MqttReport) {
        self.net.add(r.seed, false, &r.stats, &r.violations);
        self.clients += r.clients as u64;
        self.clients_done += r.clients_done as u64;
        self.clients_gave_up += r.clients_gave_up as u64;
        self.messages += r.messages as u64;
        self.acked += r.acked as u64;
        self.nacks += r.nacks as u64;
        self.broker_received += r.broker_received as u64;
        self.dups += r.dups as u64;
        self.duplicates += r.duplicates as u64;
        self.sessions += r.sessions as u64;
        self.broker_faults += r.broker_faults as u64;
        self.routed += r.routed as u64;
        self.heard += r.heard as u64;
    }

    /// Fold `o` in.
    pub fn merge(&mut self, o: MqttSummary) {
        self.net.merge(o.net);
        self.clients += o.clients;
        self.clients_done += o.clients_done;
        self.clients_gave_up += o.clients_gave_up;
        self.messages += o.messages;
        self.acked += o.acked;
        self.nacks += o.nacks;
        self.broker_received += o.broker_received;
        self.dups += o.dups;
        self.duplicates += o.duplicates;
        self.sessions += o.sessions;
        self.broker_faults += o.broker_faults;
        self.routed += o.routed;
        self.heard += o.heard;
    }
}
