//! The engine: owns the policy, the logical streams, the connections under
//! them and their timers, and routes between protocol machines, the adapter
//! (actions) and the application (events). Sans-IO: every input carries `now`.

mod timers;
mod types;

pub use types::*;

use crate::metadata;
use crate::policy::{Policy, Protocol, StreamType};
use crate::proto::{self, Machine, Output};
use crate::retry::{RetryPolicy, Rng};
use crate::state::{Flags, StreamState};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timers::{Timer, Timers};

/// What a stream is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Created by the application to reach an endpoint.
    Client,
    /// A server streamtype: owns a listening socket, moves no payload.
    Server { listener: ListenerId },
    /// Created for a connection accepted by `server`; lives as long as it.
    Accepted { server: StreamId },
}

/// Where a stream is in its connection sequence (the reference's `seqstate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seq {
    /// No connection and none planned.
    Idle,
    /// A connection attempt is under way.
    Connecting,
    /// Connected.
    Connected,
    /// Waiting for the backoff timer before the next attempt.
    ReconnectWait,
}

#[derive(Debug)]
struct Stream {
    st: Arc<StreamType>,
    retry: Option<Arc<RetryPolicy>>,
    role: Role,
    seq: Seq,
    last_state: Option<StreamState>,
    conn: Option<ConnId>,
    tries: u16,
    retry_at: Option<Instant>,
    timeout_at: Option<Instant>,
    tx_len: Option<u64>,
    server_ack: Option<i32>,
    metadata: Vec<Option<Vec<u8>>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Resolving,
    Connecting,
    Open,
}

#[derive(Debug)]
struct Conn {
    stream: StreamId,
    phase: Phase,
    port: u16,
    candidates: VecDeque<SocketAddr>,
    deadline: Option<Instant>,
    unsent: usize,
    machine: Machine,
}

/// The Secure Streams engine. See the crate docs for the input/output shape.
pub struct Engine {
    policy: Policy,
    /// Streamtypes shared by their streams, rebuilt when the policy changes.
    shared: BTreeMap<String, SharedType>,
    config: EngineConfig,
    rng: Rng,
    streams: BTreeMap<StreamId, Stream>,
    conns: BTreeMap<ConnId, Conn>,
    listeners: BTreeMap<ListenerId, StreamId>,
    tx_pending: BTreeSet<StreamId>,
    timers: Timers,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    next_id: u64,
}

impl Engine {
    /// An engine running `policy`, with randomness seeded from `config.seed`.
    pub fn new(policy: Policy, config: EngineConfig) -> Self {
        Engine {
            shared: share(&policy),
            policy,
            rng: Rng::new(config.seed),
            config,
            streams: BTreeMap::new(),
            conns: BTreeMap::new(),
            listeners: BTreeMap::new(),
            tx_pending: BTreeSet::new(),
            timers: Timers::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replace the policy. Streams created from now on use it; existing
    /// streams keep the streamtype they were created with.
    pub fn set_policy(&mut self, policy: Policy) {
        self.shared = share(&policy);
        self.policy = policy;
    }

    /// Apply a policy overlay (a fragment overriding streamtype settings).
    pub fn apply_overlay(&mut self, json: &str) -> Result<(), Error> {
        self.policy.apply_overlay(json).map_err(Error::Policy)?;
        self.shared = share(&self.policy);
        Ok(())
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    // ----- outputs -------------------------------------------------------

    /// The next thing the adapter must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing the application should know.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ----- application API ----------------------------------------------

    /// Create a stream of `streamtype`. A client stream reports CREATING and,
    /// if `nailed_up`, starts connecting; a server stream starts listening.
    pub fn create(&mut self, now: Instant, streamtype: &str) -> Result<StreamId, Error> {
        let (st, retry) = self
            .shared
            .get(streamtype)
            .cloned()
            .ok_or_else(|| Error::UnknownStreamtype(streamtype.to_string()))?;
        if self.streams.len() >= self.config.max_streams {
            return Err(Error::TooManyStreams);
        }
        let bind = if st.server {
            Some(server_bind(&st)?)
        } else {
            None
        };
        let id = StreamId(self.alloc_id());
        let role = match bind {
            Some(_) => Role::Server {
                listener: ListenerId(self.alloc_id()),
            },
            None => Role::Client,
        };
        self.insert_stream(id, st, retry, role);
        self.emit_state(id, StreamState::Creating, 0);
        match (role, bind) {
            (Role::Server { listener }, Some(bind)) => {
                self.listeners.insert(listener, id);
                self.actions.push_back(Action::Listen { listener, bind });
            }
            _ => {
                if self.streams.get(&id).is_some_and(|s| s.st.nailed_up) {
                    self.start_connect(now, id, true);
                }
            }
        }
        Ok(id)
    }

    /// Start connecting an idle client stream now, resetting its retry count
    /// (`lws_ss_client_connect`). Does nothing if already connecting or connected.
    pub fn client_connect(&mut self, now: Instant, id: StreamId) -> Result<(), Error> {
        let s = self.stream(id)?;
        if s.role != Role::Client {
            return Err(Error::WrongKind("only client streams connect"));
        }
        if matches!(s.seq, Seq::Idle | Seq::ReconnectWait) {
            self.start_connect(now, id, true);
        }
        Ok(())
    }

    /// Ask for a `Writable` event when the stream can send; on an idle client
    /// stream this reports POLL and connects (`lws_ss_request_tx`).
    pub fn request_tx(&mut self, now: Instant, id: StreamId) -> Result<(), Error> {
        let s = self.stream(id)?;
        let (role, seq) = (s.role, s.seq);
        if matches!(role, Role::Server { .. }) {
            return Ok(());
        }
        self.tx_pending.insert(id);
        if role == Role::Client && seq == Seq::Idle {
            self.poll_and_connect(now, id);
        }
        self.service_tx();
        Ok(())
    }

    /// As `request_tx`, announcing the payload length (e.g. for content-length).
    pub fn request_tx_len(&mut self, now: Instant, id: StreamId, len: u64) -> Result<(), Error> {
        self.stream_mut(id)?.tx_len = Some(len);
        self.request_tx(now, id)
    }

    /// Send payload on a connected stream, normally in answer to `Writable`.
    /// Returns the number of bytes taken (all of them).
    pub fn write(
        &mut self,
        _now: Instant,
        id: StreamId,
        data: &[u8],
        flags: Flags,
    ) -> Result<usize, Error> {
        if data.len() > self.config.max_write {
            return Err(Error::TooLarge {
                what: "write",
                len: data.len(),
                max: self.config.max_write,
            });
        }
        let s = self.stream(id)?;
        let conn_id = match (s.seq, s.conn) {
            (Seq::Connected, Some(c)) => c,
            _ => return Err(Error::NotConnected(id)),
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Err(Error::NotConnected(id));
        };
        let mut out = Output::default();
        let res = conn.machine.write(data, flags, &mut out);
        self.route_output(conn_id, out);
        if let Err(e) = res {
            self.protocol_failed(_now, conn_id, e);
            return Err(Error::NotConnected(id));
        }
        Ok(data.len())
    }

    /// Close the stream's connection (`LWSSSSRET_DISCONNECT_ME`). An open
    /// connection reports DISCONNECTED and then reconnects or not as after any
    /// drop; an attempt still under way reports UNREACHABLE and backs off.
    pub fn disconnect(&mut self, now: Instant, id: StreamId) -> Result<(), Error> {
        if let Some(conn) = self.stream(id)?.conn {
            self.actions.push_back(Action::Close { conn });
            // An attempt that never connected fails like any other attempt
            // (UNREACHABLE, then backoff); an open connection is a drop.
            match self.conns.get(&conn).map(|c| &c.phase) {
                Some(Phase::Open) => self.conn_lost(now, conn),
                _ => self.connect_failed(now, conn),
            }
        }
        Ok(())
    }

    /// Destroy the stream: it reports DESTROYING and is gone. Destroying a
    /// server stream closes its listener and every connection it accepted.
    // `now` is part of every input's signature so protocols can act on it later.
    #[allow(clippy::only_used_in_recursion)]
    pub fn destroy(&mut self, now: Instant, id: StreamId) -> Result<(), Error> {
        let s = self.streams.remove(&id).ok_or(Error::NoSuchStream(id))?;
        self.tx_pending.remove(&id);
        self.timers.cancel(Timer::Retry(id));
        self.timers.cancel(Timer::UserTimeout(id));
        if let Some(conn) = s.conn {
            self.drop_conn(conn);
            self.actions.push_back(Action::Close { conn });
        }
        if let Role::Server { listener } = s.role {
            self.listeners.remove(&listener);
            self.actions.push_back(Action::StopListening { listener });
            let children: Vec<StreamId> = self
                .streams
                .iter()
                .filter(|(_, c)| c.role == Role::Accepted { server: id })
                .map(|(k, _)| *k)
                .collect();
            for child in children {
                let _ = self.destroy(now, child);
            }
        }
        // Payload and tx opportunities queued for the stream are moot now.
        self.events.retain(|e| {
            !(matches!(e, Event::Rx { .. } | Event::Writable { .. }) && e.stream() == id)
        });
        self.events.push_back(Event::State {
            stream: id,
            state: StreamState::Destroying,
            ack: 0,
        });
        Ok(())
    }

    /// Set a declared metadata item; used for `${name}` substitution and headers.
    pub fn set_metadata(&mut self, id: StreamId, name: &str, value: &[u8]) -> Result<(), Error> {
        let max = self.config.max_metadata_len;
        if value.len() > max {
            return Err(Error::TooLarge {
                what: "metadata value",
                len: value.len(),
                max,
            });
        }
        let s = self.stream_mut(id)?;
        let i =
            s.st.metadata_index(name)
                .ok_or_else(|| Error::UnknownMetadata(name.to_string()))?;
        if let Some(slot) = s.metadata.get_mut(i) {
            *slot = Some(value.to_vec());
        }
        Ok(())
    }

    /// A metadata item's value, `None` if it was never set.
    pub fn get_metadata(&self, id: StreamId, name: &str) -> Result<Option<&[u8]>, Error> {
        let s = self.stream(id)?;
        let i =
            s.st.metadata_index(name)
                .ok_or_else(|| Error::UnknownMetadata(name.to_string()))?;
        Ok(s.metadata.get(i).and_then(|v| v.as_deref()))
    }

    /// Arm the stream's timeout: `ms`, or the policy's `timeout_ms` when 0
    /// (`LWSSS_TIMEOUT_FROM_POLICY`). When it fires the stream reports TIMEOUT.
    pub fn start_timeout(&mut self, now: Instant, id: StreamId, ms: u32) -> Result<(), Error> {
        let s = self.stream_mut(id)?;
        let ms = if ms == 0 {
            s.st.timeout_ms.unwrap_or(0)
        } else {
            ms
        };
        if ms == 0 {
            return Ok(());
        }
        let at = now + Duration::from_millis(ms as u64);
        s.timeout_at = Some(at);
        self.timers.set(Timer::UserTimeout(id), at);
        Ok(())
    }

    /// Disarm the stream's timeout.
    pub fn cancel_timeout(&mut self, id: StreamId) -> Result<(), Error> {
        self.stream_mut(id)?.timeout_at = None;
        self.timers.cancel(Timer::UserTimeout(id));
        Ok(())
    }

    /// On a server transaction, set the response status (`lws_ss_server_ack`).
    pub fn server_ack(&mut self, id: StreamId, code: i32) -> Result<(), Error> {
        self.stream_mut(id)?.server_ack = Some(code);
        Ok(())
    }

    /// The last state the stream reported.
    pub fn state(&self, id: StreamId) -> Option<StreamState> {
        self.streams.get(&id).and_then(|s| s.last_state)
    }

    /// The name of the stream's streamtype.
    pub fn streamtype(&self, id: StreamId) -> Option<&str> {
        self.streams.get(&id).map(|s| s.st.name.as_str())
    }

    /// The length announced with `request_tx_len`, if any.
    pub fn tx_len(&self, id: StreamId) -> Option<u64> {
        self.streams.get(&id).and_then(|s| s.tx_len)
    }

    /// Number of live streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Number of live connections (any phase).
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    // ----- adapter inputs -----------------------------------------------

    /// DNS answered for `conn`; an empty list means the name did not resolve.
    pub fn handle_resolved(&mut self, now: Instant, conn: ConnId, addrs: &[IpAddr]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.phase != Phase::Resolving {
            return;
        }
        c.candidates = addrs
            .iter()
            .map(|ip| SocketAddr::new(*ip, c.port))
            .collect();
        self.connect_next(now, conn);
    }

    /// The connection attempt for `conn` succeeded.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.phase != Phase::Connecting {
            return;
        }
        c.phase = Phase::Open;
        c.deadline = None;
        let sid = c.stream;
        self.timers.cancel(Timer::ConnectTimeout(conn));
        if let Some(s) = self.streams.get_mut(&sid) {
            s.seq = Seq::Connected;
            s.tries = 0;
            let attr = s.st.attr;
            let tos = tos_bits(&attr);
            if tos != 0 || attr.priority != 0 {
                self.actions.push_back(Action::SetSocketOptions {
                    conn,
                    tos,
                    priority: attr.priority,
                });
            }
        }
        self.emit_state(sid, StreamState::Connected, 0);
        let _ = now;
        self.service_tx();
    }

    /// The connection attempt for `conn` failed (refused, unreachable...).
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, _reason: &str) {
        match self.conns.get(&conn).map(|c| &c.phase) {
            Some(Phase::Connecting) => self.connect_next(now, conn),
            Some(Phase::Resolving) => self.connect_failed(now, conn),
            Some(Phase::Open) => self.conn_lost(now, conn),
            None => {}
        }
    }

    /// Bytes arrived on `conn`.
    pub fn handle_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.phase != Phase::Open {
            return;
        }
        let mut out = Output::default();
        let res = c.machine.handle_input(data, &mut out);
        self.route_output(conn, out);
        if let Err(e) = res {
            self.protocol_failed(now, conn, e);
        }
    }

    /// The adapter wrote `n` more bytes of what `Transmit` handed it.
    pub fn handle_sent(&mut self, _now: Instant, conn: ConnId, n: usize) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.unsent = c.unsent.saturating_sub(n);
            self.service_tx();
        }
    }

    /// `conn` was closed by the peer or failed (reset, EOF).
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        match self.conns.get(&conn).map(|c| &c.phase) {
            Some(Phase::Open) => self.conn_lost(now, conn),
            Some(_) => self.handle_connect_failed(now, conn, "closed"),
            None => {}
        }
    }

    /// A listener is bound; `addr` is its real address.
    pub fn handle_listening(&mut self, _now: Instant, listener: ListenerId, addr: &str) {
        if let Some(&stream) = self.listeners.get(&listener) {
            self.events.push_back(Event::Listening {
                stream,
                addr: addr.to_string(),
            });
        }
    }

    /// A listener could not be bound.
    pub fn handle_listen_failed(&mut self, _now: Instant, listener: ListenerId, reason: &str) {
        if let Some(stream) = self.listeners.remove(&listener) {
            self.events.push_back(Event::ListenFailed {
                stream,
                reason: reason.to_string(),
            });
        }
    }

    /// A listener accepted a connection. Returns the id the adapter must use
    /// for it, or `None` if it must be closed at once (listener gone, or too
    /// many streams). The new stream reports CREATING, CONNECTING, CONNECTED.
    pub fn handle_accepted(&mut self, now: Instant, listener: ListenerId) -> Option<ConnId> {
        let server = *self.listeners.get(&listener)?;
        if self.streams.len() >= self.config.max_streams {
            return None;
        }
        let (st, retry) = self
            .streams
            .get(&server)
            .map(|s| (s.st.clone(), s.retry.clone()))?;
        let id = StreamId(self.alloc_id());
        let conn = ConnId(self.alloc_id());
        self.insert_stream(id, st.clone(), retry, Role::Accepted { server });
        self.events
            .push_back(Event::Accepted { server, stream: id });
        self.emit_state(id, StreamState::Creating, 0);
        self.emit_state(id, StreamState::Connecting, 0);
        self.conns.insert(
            conn,
            Conn {
                stream: id,
                phase: Phase::Open,
                port: st.port,
                candidates: VecDeque::new(),
                deadline: None,
                unsent: 0,
                machine: machine_for(st.protocol),
            },
        );
        if let Some(s) = self.streams.get_mut(&id) {
            s.conn = Some(conn);
            s.seq = Seq::Connected;
        }
        self.emit_state(id, StreamState::Connected, 0);
        let _ = now;
        self.service_tx();
        Some(conn)
    }

    /// Time passed: fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::Retry(id) => {
                    let waiting = self.streams.get_mut(&id).is_some_and(|s| {
                        s.retry_at = None;
                        s.seq == Seq::ReconnectWait
                    });
                    if waiting {
                        self.poll_and_connect(now, id);
                    }
                }
                Timer::UserTimeout(id) => {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.timeout_at = None;
                        self.emit_state(id, StreamState::Timeout, 0);
                    }
                }
                Timer::ConnectTimeout(conn) => {
                    if self
                        .conns
                        .get(&conn)
                        .is_some_and(|c| c.phase != Phase::Open)
                    {
                        self.actions.push_back(Action::Close { conn });
                        self.connect_failed(now, conn);
                    }
                }
            }
        }
    }

    // ----- internals -----------------------------------------------------

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn stream(&self, id: StreamId) -> Result<&Stream, Error> {
        self.streams.get(&id).ok_or(Error::NoSuchStream(id))
    }

    fn stream_mut(&mut self, id: StreamId) -> Result<&mut Stream, Error> {
        self.streams.get_mut(&id).ok_or(Error::NoSuchStream(id))
    }

    fn insert_stream(
        &mut self,
        id: StreamId,
        st: Arc<StreamType>,
        retry: Option<Arc<RetryPolicy>>,
        role: Role,
    ) {
        let md = st.metadata.len();
        self.streams.insert(
            id,
            Stream {
                st,
                retry,
                role,
                seq: Seq::Idle,
                last_state: None,
                conn: None,
                tries: 0,
                retry_at: None,
                timeout_at: None,
                tx_len: None,
                server_ack: None,
                metadata: vec![None; md],
            },
        );
    }

    fn emit_state(&mut self, id: StreamId, state: StreamState, ack: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.last_state = Some(state);
            self.events.push_back(Event::State {
                stream: id,
                state,
                ack,
            });
        }
    }

    /// The retry path of `lws_ss_request_tx`: POLL (once), then connect.
    fn poll_and_connect(&mut self, now: Instant, id: StreamId) {
        if self.state(id) != Some(StreamState::Poll) {
            self.emit_state(id, StreamState::Poll, 0);
        }
        self.start_connect(now, id, false);
    }

    fn start_connect(&mut self, now: Instant, id: StreamId, explicit: bool) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if explicit {
            s.tries = 0;
        }
        s.seq = Seq::Connecting;
        s.retry_at = None;
        self.timers.cancel(Timer::Retry(id));
        self.emit_state(id, StreamState::Connecting, 0);

        let target = match self.streams.get(&id).map(resolve_endpoint) {
            Some(Ok(t)) => t,
            _ => {
                // Nothing to connect to (bad endpoint or substitution): unreachable.
                self.emit_state(id, StreamState::Unreachable, 0);
                self.backoff(now, id, false);
                return;
            }
        };
        let conn = ConnId(self.alloc_id());
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.conn = Some(conn);
        let deadline = now + self.config.connect_timeout;
        let (phase, action) = match target {
            Target::Addr(addr) => (Phase::Connecting, Action::Connect { conn, addr }),
            Target::Host(host) => (Phase::Resolving, Action::Resolve { conn, host }),
        };
        self.conns.insert(
            conn,
            Conn {
                stream: id,
                phase,
                port: s.st.port,
                candidates: VecDeque::new(),
                deadline: Some(deadline),
                unsent: 0,
                machine: machine_for(s.st.protocol),
            },
        );
        self.timers.set(Timer::ConnectTimeout(conn), deadline);
        self.actions.push_back(action);
    }

    /// Try the next resolved address, or fail the attempt when none is left.
    fn connect_next(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match c.candidates.pop_front() {
            Some(addr) => {
                c.phase = Phase::Connecting;
                self.actions.push_back(Action::Connect {
                    conn,
                    addr: SockAddr::Ip(addr),
                });
            }
            None => self.connect_failed(now, conn),
        }
    }

    fn drop_conn(&mut self, conn: ConnId) -> Option<Conn> {
        self.timers.cancel(Timer::ConnectTimeout(conn));
        let c = self.conns.remove(&conn)?;
        if let Some(s) = self.streams.get_mut(&c.stream) {
            if s.conn == Some(conn) {
                s.conn = None;
            }
        }
        Some(c)
    }

    /// A connection attempt failed for good: UNREACHABLE, then backoff.
    fn connect_failed(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.drop_conn(conn) else {
            return;
        };
        let id = c.stream;
        self.emit_state(id, StreamState::Unreachable, 0);
        self.backoff(now, id, false);
    }

    /// An open connection went away: DISCONNECTED, then per role and policy.
    fn conn_lost(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.drop_conn(conn) else {
            return;
        };
        let id = c.stream;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.seq = Seq::Idle;
        s.timeout_at = None;
        let role = s.role;
        let reconnect = s.st.nailed_up || !s.st.opportunistic;
        self.timers.cancel(Timer::UserTimeout(id));
        self.emit_state(id, StreamState::Disconnected, 0);
        match role {
            Role::Accepted { .. } => {
                let _ = self.destroy(now, id);
            }
            Role::Client if reconnect => self.backoff(now, id, true),
            _ => {}
        }
    }

    fn protocol_failed(&mut self, now: Instant, conn: ConnId, _e: proto::ProtoError) {
        self.actions.push_back(Action::Close { conn });
        self.conn_lost(now, conn);
    }

    /// Schedule the next attempt per the retry policy, or give up with
    /// ALL_RETRIES_FAILED. After a drop (`after_drop`), giving up is silent:
    /// the reference table has no DISCONNECTED → ALL_RETRIES_FAILED edge.
    fn backoff(&mut self, now: Instant, id: StreamId, after_drop: bool) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let delay = match &s.retry {
            Some(p) => p.next_delay(&mut s.tries, &mut self.rng),
            None => None,
        };
        match delay {
            Some(d) => {
                s.seq = Seq::ReconnectWait;
                let at = now + d;
                s.retry_at = Some(at);
                self.timers.set(Timer::Retry(id), at);
            }
            None => {
                s.seq = Seq::Idle;
                if !after_drop {
                    self.emit_state(id, StreamState::AllRetriesFailed, 0);
                }
            }
        }
    }

    fn route_output(&mut self, conn: ConnId, out: Output) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let stream = c.stream;
        if !out.transmit.is_empty() {
            c.unsent += out.transmit.len();
            self.actions.push_back(Action::Transmit {
                conn,
                data: out.transmit,
            });
        }
        for (data, flags) in out.rx {
            self.events.push_back(Event::Rx {
                stream,
                data,
                flags,
            });
        }
    }

    /// Give `Writable` to every stream that asked and whose connection has room.
    fn service_tx(&mut self) {
        let pending: Vec<StreamId> = self.tx_pending.iter().copied().collect();
        for id in pending {
            let Some(s) = self.streams.get(&id) else {
                self.tx_pending.remove(&id);
                continue;
            };
            if s.seq != Seq::Connected {
                continue;
            }
            let room = s
                .conn
                .and_then(|c| self.conns.get(&c))
                .is_some_and(|c| c.phase == Phase::Open && c.unsent < self.config.tx_high_water);
            if room {
                self.tx_pending.remove(&id);
                self.events.push_back(Event::Writable {
                    stream: id,
                    budget: self.config.tx_budget,
                });
            }
        }
    }
}

/// A streamtype and its retry policy, shared by every stream of that type.
type SharedType = (Arc<StreamType>, Option<Arc<RetryPolicy>>);

fn share(policy: &Policy) -> BTreeMap<String, SharedType> {
    policy
        .streamtypes
        .iter()
        .map(|st| {
            let retry = st
                .retry
                .as_deref()
                .and_then(|r| policy.retry_policy(r))
                .map(|r| Arc::new(r.clone()));
            (st.name.clone(), (Arc::new(st.clone()), retry))
        })
        .collect()
}

enum Target {
    Addr(SockAddr),
    Host(String),
}

/// Turn the stream's endpoint (after `${metadata}` substitution) into an address or host.
fn resolve_endpoint(s: &Stream) -> Result<Target, Error> {
    let ep =
        s.st.endpoint
            .as_deref()
            .ok_or_else(|| Error::BadEndpoint("no endpoint".into()))?;
    let ep = metadata::substitute(ep, |name| {
        let i = s.st.metadata_index(name)?;
        Some(s.metadata.get(i).and_then(|v| v.as_deref()).unwrap_or(&[]))
    })?;
    parse_endpoint(&ep, s.st.port)
}

fn parse_endpoint(ep: &str, port: u16) -> Result<Target, Error> {
    if let Some(name) = ep.strip_prefix("+@") {
        return Ok(Target::Addr(SockAddr::UnixAbstract(name.to_string())));
    }
    if let Some(path) = ep.strip_prefix('+') {
        return Ok(Target::Addr(SockAddr::Unix(path.to_string())));
    }
    let host = ep.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(Error::BadEndpoint("empty endpoint".into()));
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(Target::Addr(SockAddr::Ip(SocketAddr::new(ip, port)))),
        Err(_) => Ok(Target::Host(host.to_string())),
    }
}

/// Where a server streamtype listens: its endpoint as an IP, Unix path or
/// abstract name; `lo` / `localhost` mean 127.0.0.1; none means all interfaces.
fn server_bind(st: &StreamType) -> Result<BindAddr, Error> {
    match st.endpoint.as_deref() {
        None | Some("") => Ok(SockAddr::Ip(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            st.port,
        ))),
        Some("lo") | Some("localhost") => Ok(SockAddr::Ip(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            st.port,
        ))),
        Some(ep) => match parse_endpoint(ep, st.port)? {
            Target::Addr(a) => Ok(a),
            Target::Host(h) => Err(Error::BadEndpoint(format!(
                "server endpoint \"{h}\" must be an IP address, lo, or a +unix path"
            ))),
        },
    }
}

fn machine_for(_p: Protocol) -> Machine {
    // Only raw exists yet; other protocols fall back to raw until they land.
    Machine::Raw(proto::raw::Raw::default())
}

fn tos_bits(a: &crate::policy::Attributes) -> u8 {
    let mut tos = 0;
    if a.low_latency {
        tos |= 0x10;
    }
    if a.high_throughput {
        tos |= 0x08;
    }
    if a.high_reliability {
        tos |= 0x04;
    }
    if a.low_cost {
        tos |= 0x02;
    }
    tos
}
