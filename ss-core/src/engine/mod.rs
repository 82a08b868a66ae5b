//! The engine: owns the policy, the logical streams, the connections under
//! them and their timers, and routes between protocol machines, the adapter
//! (actions) and the application (events). Sans-IO: every input carries `now`.

mod h2;
mod h2_server;
mod http;
mod link;
mod mqtt;
mod timers;
mod types;
mod websocket;

pub use types::*;

use crate::metadata;
use crate::policy::{Policy, Protocol, StreamType};
use crate::proto::tls::{self, TlsContext, TlsSession, WallClock};
use crate::proto::{self, h1, Output};
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
    /// CONNECTED was reported for the current connection (the reference's
    /// `ss_dangling_connected`): a loss then reports DISCONNECTED, not UNREACHABLE.
    connected_reported: bool,
    /// Redirects followed in the current transaction, and where the last one points.
    redirects: u8,
    redirect: Option<http::Redirect>,
    /// The application paused this stream's rx ([`Engine::set_rx_paused`]).
    rx_paused: bool,
    /// The client request body's `rideshare` chain: the streamtypes whose
    /// parts followed the stream's own, in order (empty: still its own).
    ride: Vec<String>,
    /// The multipart boundary of the request body, when it is wrapped.
    boundary: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Resolving,
    Connecting,
    Open,
}

/// The protocol machine running on a connection.
#[derive(Debug)]
enum Proto {
    /// No framing.
    Raw(proto::raw::Raw),
    /// HTTP/1.1 client transactions.
    H1Client(Box<http::ClientConn>),
    /// HTTP/1.1 server transactions (which may upgrade to WebSocket).
    H1Server(Box<http::ServerConn>),
    /// WebSocket client: the upgrade, then frames.
    WsClient(Box<websocket::WsClientConn>),
    /// WebSocket server, after an upgrade.
    WsServer(Box<proto::ws::Ws>),
    /// An MQTT session shared by several streams.
    Mqtt(Box<mqtt::MqttConn>),
    /// An HTTP/2 client connection shared by several streams.
    H2(Box<h2::H2Conn>),
    /// An accepted HTTP/2 connection, one transaction per HTTP/2 stream.
    H2Srv(Box<h2_server::H2SrvConn>),
    /// A stream's link to a Secure Streams proxy daemon.
    Link(Box<link::LinkConn>),
}

/// Where a kept-alive client connection may be reused: same target, port and TLS.
type PoolKey = (String, u16, bool);

#[derive(Debug)]
struct Conn {
    /// The stream the connection carries; `None` while idle in the keep-alive pool.
    stream: Option<StreamId>,
    phase: Phase,
    port: u16,
    candidates: VecDeque<SocketAddr>,
    deadline: Option<Instant>,
    unsent: usize,
    proto: Proto,
    /// Client connections that may be kept alive: their pool key.
    pool: Option<PoolKey>,
    /// Taken from the keep-alive pool for this transaction.
    reused: bool,
    /// Something arrived from the peer on this connection.
    rx_any: bool,
    /// The peer closed it: no `Close` action is due.
    peer_closed: bool,
    /// TLS over the transport, when the streamtype (or a redirect) asks for it.
    tls: Option<TlsSession>,
    /// The name the client connects to: the TLS server name.
    sni: String,
    /// Client: wrap the transport in TLS once connected.
    want_tls: bool,
    /// The protocol has been started (after the TLS handshake, if any).
    ready: bool,
    /// When the peer last sent anything (validity checks).
    last_rx: Option<Instant>,
    /// Who connected, for an accepted local connection whose adapter can tell.
    peer: Option<Peer>,
    /// The adapter was told to stop reading (a stream on it has rx paused).
    rx_paused: bool,
    /// Bytes that arrived while paused, fed to the protocol on resume.
    held: Vec<u8>,
    /// The peer closed while paused: reported after `held` on resume.
    held_eof: bool,
    /// A SOCKS5 handshake to run once connected (the socket goes to the proxy).
    socks: Option<proto::socks5::Socks5Client>,
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
    /// Streams with a `Writable` event not yet taken: requests meanwhile
    /// wait for it to be taken (one `Writable` per request, however many).
    writable_queued: BTreeSet<StreamId>,
    /// Streams with rx paused (so the data path checks only when some are).
    rx_paused: usize,
    timers: Timers,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    next_id: u64,
    /// Idle kept-alive HTTP/1.1 client connections by target.
    pool: BTreeMap<PoolKey, Vec<ConnId>>,
    /// Cookie jars of `http_cookies` streamtypes, by streamtype name.
    cookies: BTreeMap<String, h1::cookies::Jar>,
    /// Application-provided blobs: auth tokens, device serial, firmware version, device type.
    blobs: BTreeMap<SystemBlob, Vec<u8>>,
    /// TLS configuration beyond the policy: provider, wall clock, roots, client certs.
    tls: TlsContext,
    /// Shared MQTT connections by (host, port, TLS).
    mqtt_conns: BTreeMap<PoolKey, ConnId>,
    /// Shared HTTP/2 connections by (host, port, TLS).
    h2_conns: BTreeMap<PoolKey, ConnId>,
    /// Connections of h2 streamtypes whose ALPN is not settled yet, by place.
    h2_pending: BTreeMap<PoolKey, ConnId>,
    /// Streams waiting for a pending connection to settle on h2 (then they
    /// join it) or on http/1.1 (then each opens its own).
    h2_waiters: BTreeMap<ConnId, Vec<StreamId>>,
    /// Unacknowledged MQTT messages waiting for the next connection to a place.
    mqtt_resume: BTreeMap<PoolKey, proto::mqtt::InFlight>,
    /// MQTT verdicts waiting for their stream's next CONNECTED.
    mqtt_late: BTreeMap<StreamId, Vec<StreamState>>,
}

impl Engine {
    /// An engine running `policy`, with randomness seeded from `config.seed`.
    pub fn new(policy: Policy, config: EngineConfig) -> Self {
        let tls = match &config.tls_provider {
            Some(p) => TlsContext::new(p.clone(), WallClock::new()),
            None => TlsContext::with_default_provider(WallClock::new()),
        };
        Engine {
            tls,
            shared: share(&policy),
            policy,
            rng: Rng::new(config.seed),
            config,
            streams: BTreeMap::new(),
            conns: BTreeMap::new(),
            listeners: BTreeMap::new(),
            tx_pending: BTreeSet::new(),
            writable_queued: BTreeSet::new(),
            rx_paused: 0,
            timers: Timers::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            pool: BTreeMap::new(),
            mqtt_conns: BTreeMap::new(),
            h2_conns: BTreeMap::new(),
            h2_pending: BTreeMap::new(),
            h2_waiters: BTreeMap::new(),
            mqtt_resume: BTreeMap::new(),
            mqtt_late: BTreeMap::new(),
            cookies: BTreeMap::new(),
            blobs: BTreeMap::new(),
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
        self.tls.clear_cache();
    }

    /// Tell the engine the wall-clock time (seconds since the Unix epoch).
    /// TLS needs it to check certificate validity; adapters set it from the
    /// system clock, the simulation from virtual time. Until it is set, TLS
    /// certificate verification fails.
    pub fn set_unix_time(&mut self, unix_secs: u64) {
        self.tls.clock().set_unix_secs(unix_secs);
    }

    /// Provide client certificate `index` (the policy's `client_cert`): the
    /// chain (leaf first, DER) and its private key (PKCS#8, PKCS#1 or SEC1 DER).
    pub fn set_client_cert(
        &mut self,
        index: u8,
        chain: Vec<Vec<u8>>,
        key: Vec<u8>,
    ) -> Result<(), Error> {
        let chain = chain
            .into_iter()
            .map(tls::rustls::pki_types::CertificateDer::from)
            .collect();
        let key = tls::rustls::pki_types::PrivateKeyDer::try_from(key)
            .map_err(|e| Error::Protocol(format!("tls: client key: {e}")))?;
        self.tls
            .set_client_cert(index, chain, key)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        self.tls.clear_cache();
        Ok(())
    }

    /// Replace the roots used by TLS streamtypes that name no trust store
    /// (default: the Mozilla bundle). Returns how many certificates were usable.
    pub fn set_system_roots(&mut self, roots: Vec<Vec<u8>>) -> usize {
        let n = self
            .tls
            .set_system_roots(roots.into_iter().map(Into::into).collect());
        self.tls.clear_cache();
        n
    }

    /// Apply a policy overlay (a fragment overriding streamtype settings).
    pub fn apply_overlay(&mut self, json: &str) -> Result<(), Error> {
        self.policy.apply_overlay(json).map_err(Error::Policy)?;
        self.shared = share(&self.policy);
        self.tls.clear_cache();
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
        let ev = self.events.pop_front()?;
        if let Event::Writable { stream, .. } = ev {
            self.writable_queued.remove(&stream);
            if self.tx_pending.contains(&stream) {
                self.service_tx();
            }
        }
        Some(ev)
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
        // A `Writable` already queued answers this request too.
        if !self.writable_queued.contains(&id) {
            self.tx_pending.insert(id);
        }
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
        now: Instant,
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
        match &mut conn.proto {
            Proto::Raw(m) => {
                let mut out = Output::default();
                let res = m.write(data, flags, &mut out);
                self.route_output(conn_id, out);
                if let Err(e) = res {
                    self.protocol_failed(now, conn_id, e.to_string());
                    return Err(Error::NotConnected(id));
                }
                Ok(data.len())
            }
            Proto::H1Client(_) => self.h1c_write(now, conn_id, id, data, flags),
            Proto::H1Server(_) => self.h1s_write(now, conn_id, id, data, flags),
            Proto::WsClient(_) | Proto::WsServer(_) => self.ws_write(now, conn_id, id, data, flags),
            Proto::Mqtt(_) => self.mqtt_write(now, conn_id, id, data, flags),
            Proto::H2(_) => self.h2_write(now, conn_id, id, data, flags),
            Proto::H2Srv(_) => self.h2s_write(now, conn_id, id, data, flags),
            Proto::Link(_) => self.link_write(now, conn_id, id, data, flags),
        }
    }

    /// Close the stream's connection (`LWSSSSRET_DISCONNECT_ME`). An open
    /// connection reports DISCONNECTED and then reconnects or not as after any
    /// drop; an attempt still under way reports UNREACHABLE and backs off.
    pub fn disconnect(&mut self, now: Instant, id: StreamId) -> Result<(), Error> {
        if let Some(conn) = self.stream(id)?.conn {
            if self.is_h2_conn(conn) {
                self.h2_leave(now, conn, id);
                if let Some(s) = self.streams.get_mut(&id) {
                    s.seq = Seq::Idle;
                }
                self.emit_state(id, StreamState::Disconnected, 0);
                return Ok(());
            }
            if self.is_mqtt_conn(conn) {
                // Only this stream leaves the shared connection.
                self.mqtt_leave(now, conn, id);
                if let Some(s) = self.streams.get_mut(&id) {
                    s.seq = Seq::Idle;
                }
                self.emit_state(id, StreamState::Disconnected, 0);
                return Ok(());
            }
            if self.is_h2s_conn(conn) {
                // The accepted HTTP/2 connection closes: every stream on it ends.
                self.h2s_lost(
                    now,
                    conn,
                    "h2: the connection was closed by the server".into(),
                );
                return Ok(());
            }
            if self
                .conns
                .get(&conn)
                .is_some_and(|c| c.phase == Phase::Open && matches!(c.proto, Proto::Link(_)))
            {
                // A proxy link is open while its onward stream may not be:
                // the loss reads as DISCONNECTED only after CONNECTED.
                self.link_destroying(conn);
                self.attempt_fail(
                    now,
                    conn,
                    "proxy link: disconnected by the application".into(),
                );
                return Ok(());
            }
            self.close_conn(conn);
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
        if self.streams.get(&id).is_some_and(|s| s.rx_paused) {
            // Neighbours on a shared connection read again.
            self.set_rx_paused(now, id, false)?;
        }
        if let Some(conn) = self.streams.get(&id).and_then(|s| s.conn) {
            if self.h2_unwait(conn, id) {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.conn = None;
                }
            } else if self.is_mqtt_conn(conn) {
                self.mqtt_leave(now, conn, id);
            } else if self.is_h2_conn(conn) {
                self.h2_leave(now, conn, id);
            } else if self.is_h2s_child(conn, id) {
                self.h2s_forget(now, conn, id);
            } else if self.is_h2s_conn(conn) {
                // The connection's own stream: the connection closes with it
                // (below), and the request streams on it end.
                self.h2s_end_requests(now, conn, "h2: the connection was closed by the server");
            } else {
                self.link_destroying(conn);
            }
        }
        self.mqtt_late.remove(&id);
        let s = self.streams.remove(&id).ok_or(Error::NoSuchStream(id))?;
        self.tx_pending.remove(&id);
        self.timers.cancel(Timer::Retry(id));
        self.timers.cancel(Timer::UserTimeout(id));
        if let Some(conn) = s.conn {
            // Streams waiting on its connection to settle on h2 start over.
            let waiters = self.h2_take_waiters(conn);
            self.close_conn(conn);
            self.drop_conn(conn);
            for w in waiters {
                self.start_connect(now, w, false);
            }
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
        self.writable_queued.remove(&id);
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
        self.link_metadata(id, name, value);
        Ok(())
    }

    /// Provide a system blob (auth token, device serial...) for the headers
    /// the policy names (`http_auth_header`, `http_dsn_header`, ...).
    pub fn set_system_blob(&mut self, blob: SystemBlob, value: &[u8]) -> Result<(), Error> {
        let max = self.config.max_metadata_len;
        if value.len() > max {
            return Err(Error::TooLarge {
                what: "system blob",
                len: value.len(),
                max,
            });
        }
        self.blobs.insert(blob, value.to_vec());
        Ok(())
    }

    /// The cookies an `http_cookies` streamtype holds, as `name=value` pairs.
    pub fn cookies(&self, streamtype: &str) -> Vec<(String, String)> {
        self.cookies
            .get(streamtype)
            .map(|j| j.cookies().to_vec())
            .unwrap_or_default()
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
        self.link_timeout(id, Some(ms));
        Ok(())
    }

    /// Disarm the stream's timeout.
    pub fn cancel_timeout(&mut self, id: StreamId) -> Result<(), Error> {
        self.stream_mut(id)?.timeout_at = None;
        self.timers.cancel(Timer::UserTimeout(id));
        self.link_timeout(id, None);
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

    /// The stream's streamtype (its policy entry): one map lookup, where
    /// going through the name would search the policy.
    pub fn stream_policy(&self, id: StreamId) -> Option<&StreamType> {
        self.streams.get(&id).map(|s| &*s.st)
    }

    /// The streamtype whose part of the request body the stream is producing
    /// (the reference's `lws_ss_rideshare`): its own streamtype, until an
    /// EOM ends a part whose streamtype names a `rideshare`; then that one,
    /// and so on down the chain. Back to its own when a request starts.
    /// `None` if there is no such stream.
    pub fn rideshare(&self, id: StreamId) -> Option<&str> {
        let s = self.streams.get(&id)?;
        Some(s.ride.last().map_or(s.st.name.as_str(), String::as_str))
    }

    /// The connection currently carrying the stream, if any (adapters use it
    /// to apply back-pressure to one connection's reads).
    pub fn conn_of(&self, id: StreamId) -> Option<ConnId> {
        self.streams.get(&id).and_then(|s| s.conn)
    }

    /// Pause (or resume) the stream's rx: no more `Rx` events for it until
    /// resumed. Why: an application (or the proxy daemon) that cannot keep up
    /// pushes back on the peer instead of buffering without bound. The
    /// connection's reading stops ([`Action::PauseReading`]), so transport
    /// flow control slows the sender; bytes the adapter already read are
    /// held and delivered, in order, on resume. On a shared connection
    /// (HTTP/2, MQTT) the whole connection pauses while any stream on it is
    /// paused. The pause outlives reconnections until resumed.
    pub fn set_rx_paused(&mut self, now: Instant, id: StreamId, paused: bool) -> Result<(), Error> {
        let s = self.stream_mut(id)?;
        if s.rx_paused == paused {
            return Ok(());
        }
        s.rx_paused = paused;
        let conn = s.conn;
        if paused {
            self.rx_paused += 1;
        } else {
            self.rx_paused = self.rx_paused.saturating_sub(1);
        }
        match conn {
            Some(conn) if self.is_h2_conn(conn) => self.h2_set_rx_paused(now, conn, id, paused),
            Some(conn) if self.is_h2s_conn(conn) => self.h2s_set_rx_paused(now, conn, id, paused),
            Some(conn) => self.refresh_rx_pause(now, conn),
            None => {}
        }
        Ok(())
    }

    /// Whether the stream's rx is paused.
    pub fn is_rx_paused(&self, id: StreamId) -> bool {
        self.streams.get(&id).is_some_and(|s| s.rx_paused)
    }

    /// Whether the adapter should read `conn` now (`false` after
    /// [`Action::PauseReading`] until it is resumed). Adapters that read in
    /// bursts check it before each read.
    pub fn wants_read(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| !c.rx_paused)
    }

    /// Tell the adapter to stop or resume reading `conn` as its streams'
    /// pauses require; on resume, feed what was held.
    fn refresh_rx_pause(&mut self, now: Instant, conn: ConnId) {
        // A handshake (TLS, SOCKS5) still under way must be read, and an
        // HTTP/2 connection pauses per stream through flow control instead.
        let want = self.rx_paused > 0
            && self
                .conns
                .get(&conn)
                .is_some_and(|c| c.ready && !matches!(c.proto, Proto::H2(_) | Proto::H2Srv(_)))
            && self
                .conn_streams(conn)
                .iter()
                .any(|sid| self.streams.get(sid).is_some_and(|s| s.rx_paused));
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.rx_paused == want {
            return;
        }
        c.rx_paused = want;
        self.actions
            .push_back(Action::PauseReading { conn, paused: want });
        if want {
            return;
        }
        let held = std::mem::take(&mut c.held);
        let eof = std::mem::take(&mut c.held_eof);
        if !held.is_empty() {
            self.handle_data(now, conn, &held);
        }
        if eof && self.conns.contains_key(&conn) {
            self.handle_closed(now, conn);
        }
    }

    /// Hold input (or EOF) for a paused connection; `true` if it was held.
    fn hold_rx(&mut self, now: Instant, conn: ConnId, data: &[u8], eof: bool) -> bool {
        if self.rx_paused == 0 {
            return false;
        }
        if !self.conns.get(&conn).is_some_and(|c| c.rx_paused) {
            // A paused stream may have moved onto this connection since.
            self.refresh_rx_pause(now, conn);
        }
        let max = self.config.max_held_rx;
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if !c.rx_paused {
            return false;
        }
        if eof {
            c.held_eof = true;
            return true;
        }
        if c.held.len().saturating_add(data.len()) > max {
            let reason = format!("rx paused but the adapter kept reading (> {max} bytes)");
            self.attempt_fail(now, conn, reason);
            return true;
        }
        c.held.extend_from_slice(data);
        true
    }

    /// Record who is on the other end of `conn` (adapters, right after
    /// `handle_accepted`, for local sockets where the OS says: `SO_PEERCRED`).
    pub fn set_peer(&mut self, conn: ConnId, peer: Peer) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Some(peer);
        }
    }

    /// Who is on the other end of the stream's connection, if the adapter
    /// said ([`Engine::set_peer`]).
    pub fn peer_of(&self, id: StreamId) -> Option<Peer> {
        let conn = self.streams.get(&id)?.conn?;
        self.conns.get(&conn)?.peer
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
        let want_tls = c.want_tls;
        let via_socks = c.socks.is_some();
        let sid = c.stream;
        if !want_tls && !via_socks {
            c.deadline = None;
            self.timers.cancel(Timer::ConnectTimeout(conn));
        }
        if let Some(s) = sid.and_then(|sid| self.streams.get_mut(&sid)) {
            // The retry count is reset once the protocol proves the
            // connection usable (transport_ready, or an HTTP response).
            s.seq = Seq::Connected;
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
        if via_socks {
            // The proxy first; TLS and the protocol once the tunnel is up.
            let mut out = Vec::new();
            if let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.socks.as_mut()) {
                s.start(&mut out);
            }
            self.transmit_wire(conn, out);
        } else {
            self.tunnel_ready(now, conn);
        }
    }

    /// The transport reaches the target (directly or through SOCKS5): TLS
    /// if wanted, else the protocol.
    fn tunnel_ready(&mut self, now: Instant, conn: ConnId) {
        let want_tls = self.conns.get(&conn).is_some_and(|c| c.want_tls);
        if want_tls {
            // The connect deadline keeps running until the handshake is done.
            self.start_client_tls(now, conn);
        } else {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.deadline = None;
            }
            self.timers.cancel(Timer::ConnectTimeout(conn));
            self.transport_ready(now, conn);
        }
    }

    /// Bytes from a SOCKS5 proxy during the handshake.
    fn socks_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let mut out = Vec::new();
        let res = match self.conns.get_mut(&conn).and_then(|c| c.socks.as_mut()) {
            Some(s) => s.handle_input(data, &mut out),
            None => return,
        };
        self.transmit_wire(conn, out);
        match res {
            Ok(None) => {}
            Ok(Some(rest)) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.socks = None;
                }
                self.tunnel_ready(now, conn);
                if !rest.is_empty() {
                    self.handle_data(now, conn, &rest);
                }
            }
            Err(e) => {
                if let Some(sid) = self.conns.get(&conn).and_then(|c| c.stream) {
                    self.emit_error(sid, e.to_string());
                }
                self.close_conn(conn);
                self.connect_failed(now, conn);
            }
        }
    }

    /// The SOCKS5 proxy for a streamtype: its own `via-socks5`, the
    /// policy's, or the engine's (from `socks_proxy`).
    fn socks_for(&self, st: &StreamType) -> Option<String> {
        st.via_socks5
            .clone()
            .or_else(|| self.policy.via_socks5.clone())
            .or_else(|| self.config.socks5.clone())
            .filter(|s| !s.trim().is_empty())
    }

    /// The connection attempt for `conn` failed (refused, unreachable...).
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, _reason: &str) {
        match self.conns.get(&conn).map(|c| &c.phase) {
            Some(Phase::Connecting) => self.connect_next(now, conn),
            Some(Phase::Resolving) => self.connect_failed(now, conn),
            Some(Phase::Open) => self.handle_closed(now, conn),
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
        if self.hold_rx(now, conn, data, false) {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.socks.is_some() {
            return self.socks_input(now, conn, data);
        }
        c.rx_any = true;
        c.last_rx = Some(now);
        if c.stream.is_none() && !matches!(c.proto, Proto::Mqtt(_) | Proto::H2(_) | Proto::H2Srv(_))
        {
            // An idle pooled connection has nothing to say: drop it.
            self.close_conn(conn);
            self.drop_conn(conn);
            return;
        }
        let Some(session) = c.tls.as_mut() else {
            self.proto_input(now, conn, data);
            return;
        };
        let was_handshaking = session.is_handshaking();
        let mut plain = Vec::new();
        let mut wire = Vec::new();
        let res = session.handle_input(data, &mut plain, &mut wire);
        let handshaken = was_handshaking && !session.is_handshaking();
        let peer_closed = session.peer_closed();
        self.transmit_wire(conn, wire);
        if let Err(e) = res {
            return self.tls_failed(now, conn, e.to_string());
        }
        if handshaken {
            self.handshake_done(now, conn);
        }
        if !plain.is_empty() {
            self.proto_input(now, conn, &plain);
        }
        if peer_closed && self.conns.contains_key(&conn) {
            // close_notify: the peer's end of the stream, like EOF.
            self.conn_eof(now, conn);
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
        if self.hold_rx(now, conn, &[], true) {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.peer_closed = true;
        self.conn_eof(now, conn);
    }

    /// The peer's end of `conn` arrived (socket EOF, reset, or TLS close_notify).
    fn conn_eof(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        match (&c.phase, &c.proto, c.stream) {
            (Phase::Open, Proto::Link(_), Some(_)) => {
                self.attempt_fail(now, conn, "proxy link: the daemon closed the link".into())
            }
            (Phase::Open, Proto::H2Srv(_), _) => {
                self.h2s_lost(now, conn, "h2: connection closed".into())
            }
            (Phase::Open, Proto::H2(_), _) => {
                self.h2_lost(now, conn, "h2: connection closed".into())
            }
            (Phase::Open, Proto::Mqtt(_), _) => {
                self.mqtt_lost(now, conn, proto::mqtt::MqttError::Closed)
            }
            (Phase::Open, _, None) => {
                self.drop_conn(conn);
            }
            (Phase::Open, Proto::H1Client(_), Some(_)) => self.h1c_closed(now, conn),
            (Phase::Open, Proto::H1Server(_), Some(_)) => self.h1s_closed(now, conn),
            (Phase::Open, Proto::WsClient(t), Some(_)) if t.ws.is_none() => {
                self.attempt_fail(now, conn, "ws: connection closed during the upgrade".into())
            }
            (Phase::Open, Proto::WsClient(_) | Proto::WsServer(_), Some(_)) => {
                self.conn_lost(now, conn)
            }
            (Phase::Open, Proto::Raw(_), Some(_)) => self.conn_lost(now, conn),
            (Phase::Connecting, ..) => self.connect_next(now, conn),
            (Phase::Resolving, ..) => self.connect_failed(now, conn),
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
        let session = if st.tls {
            let made = self
                .tls
                .server_config(&self.policy, &st, alpn_for(&st))
                .and_then(TlsSession::server);
            match made {
                Ok(s) => Some(s),
                Err(e) => {
                    self.emit_error(server, e.to_string());
                    return None;
                }
            }
        } else {
            None
        };
        let id = StreamId(self.alloc_id());
        let conn = ConnId(self.alloc_id());
        self.insert_stream(id, st.clone(), retry, Role::Accepted { server });
        self.events
            .push_back(Event::Accepted { server, stream: id });
        self.emit_state(id, StreamState::Creating, 0);
        self.emit_state(id, StreamState::Connecting, 0);
        let mut c = Conn::new(
            Some(id),
            Phase::Open,
            st.port,
            proto_for(&st, true, &self.config),
        );
        c.ready = session.is_none();
        c.tls = session;
        self.conns.insert(conn, c);
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
                Timer::ConnectTimeout(conn) => match self.conns.get(&conn) {
                    Some(c) if c.phase != Phase::Open => {
                        self.close_conn(conn);
                        self.connect_failed(now, conn);
                    }
                    // Connected, but the TLS or SOCKS5 handshake on top has
                    // not finished: the attempt has taken too long too.
                    Some(c) if !c.ready => {
                        let secs = self.config.connect_timeout.as_secs_f32();
                        let what = if c.socks.is_some() { "socks5" } else { "tls" };
                        let reason = format!("{what}: handshake not done within {secs} s");
                        if what == "tls" {
                            self.tls_failed(now, conn, reason);
                        } else {
                            if let Some(sid) = c.stream {
                                self.emit_error(sid, reason);
                            }
                            self.close_conn(conn);
                            self.connect_failed(now, conn);
                        }
                    }
                    _ => {}
                },
                Timer::HttpSilence(conn) => {
                    let secs = self.config.http_silence_timeout.as_secs_f32();
                    let reason = format!("http: no answer from the server in {secs} s");
                    if self.conns.get(&conn).is_some_and(|c| c.rx_paused)
                        || self.h2_any_paused(conn)
                    {
                        // We stopped reading: the server is not silent.
                        let t = now + self.config.http_silence_timeout;
                        self.timers.set(Timer::HttpSilence(conn), t);
                    } else if self.is_h2_conn(conn) {
                        // Every stream waiting on the shared connection fails.
                        self.h2_lost(now, conn, reason);
                    } else if self.conns.get(&conn).is_some_and(|c| c.stream.is_some()) {
                        self.attempt_fail(now, conn, reason);
                    }
                }
                Timer::Mqtt(conn) => self.mqtt_timeout(now, conn),
                Timer::Validity(conn) => self.check_validity(now, conn),
                Timer::PoolIdle(conn) => {
                    if self.conns.get(&conn).is_some_and(|c| c.stream.is_none()) {
                        self.close_conn(conn);
                        self.drop_conn(conn);
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
                connected_reported: false,
                redirects: 0,
                redirect: None,
                rx_paused: false,
                ride: Vec::new(),
                boundary: None,
            },
        );
    }

    fn emit_state(&mut self, id: StreamId, state: StreamState, ack: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            if state == StreamState::User {
                // A policy-mapped state is advisory: the lifecycle goes on from the last one.
                self.events.push_back(Event::State {
                    stream: id,
                    state,
                    ack,
                });
                return;
            }
            match state {
                StreamState::Connected => s.connected_reported = true,
                StreamState::Disconnected | StreamState::Unreachable => {
                    s.connected_reported = false
                }
                _ => {}
            }
            s.last_state = Some(state);
            self.events.push_back(Event::State {
                stream: id,
                state,
                ack,
            });
        }
    }

    /// Tell the application why a connection failed, before the state that reports it.
    fn emit_error(&mut self, id: StreamId, reason: String) {
        if self.streams.contains_key(&id) {
            self.events
                .push_back(Event::ConnectionError { stream: id, reason });
        }
    }

    /// The retry path of `lws_ss_request_tx`: POLL (once), then connect.
    fn poll_and_connect(&mut self, now: Instant, id: StreamId) {
        let prev = self.state(id);
        // POLL cannot follow every state (e.g. AUTH_FAILED in the
        // reference's table): then straight to CONNECTING.
        if prev != Some(StreamState::Poll) && StreamState::Poll.is_legal_after(prev) {
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

        if let Some(proxy) = self.config.proxy.clone() {
            return self.start_link(now, id, proxy);
        }
        let (target, tls) = match self.streams.get(&id).map(resolve_endpoint) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                // Nothing to connect to (bad endpoint or substitution): unreachable.
                self.emit_error(id, e.to_string());
                self.emit_state(id, StreamState::Unreachable, 0);
                self.backoff(now, id, false, Duration::ZERO);
                return;
            }
            None => return,
        };
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        let st = s.st.clone();
        let port = s.redirect.as_ref().map_or(st.port, |r| r.port);
        if st.protocol == Protocol::H2 && !st.server && self.h2_join(now, id) {
            return;
        }
        if st.protocol == Protocol::H2 && !st.server && tls {
            if let Some(pending) = self.h2_wait(id) {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.conn = Some(pending);
                }
                return;
            }
        }
        if mqtt::is_mqtt(&st) && self.mqtt_join(now, id) {
            // Riding an existing connection to the same broker.
            return;
        }
        let key = pool_key(&st, &target, port, tls);
        // A kept-alive connection to the same place carries the transaction at once.
        if let Some(conn) = key.as_ref().and_then(|k| self.take_pooled(k)) {
            self.timers.cancel(Timer::PoolIdle(conn));
            if let Some(c) = self.conns.get_mut(&conn) {
                c.stream = Some(id);
                c.reused = true;
                c.rx_any = false;
            }
            if let Some(s) = self.streams.get_mut(&id) {
                s.conn = Some(conn);
                s.seq = Seq::Connected;
            }
            self.transport_ready(now, conn);
            return;
        }
        let conn = ConnId(self.alloc_id());
        if let Some(s) = self.streams.get_mut(&id) {
            s.conn = Some(conn);
        }
        let deadline = now + self.config.connect_timeout;
        let sni = match &target {
            Target::Addr(SockAddr::Ip(a)) => a.ip().to_string(),
            Target::Addr(_) => "localhost".to_string(),
            Target::Host(h) => h.clone(),
        };
        // Through a SOCKS5 proxy: connect to it, ask it for the real target.
        let mut socks = None;
        let mut target = target;
        let mut conn_port = port;
        if let Some(proxy) = self.socks_for(&st) {
            if !matches!(
                target,
                Target::Addr(SockAddr::Unix(_) | SockAddr::UnixAbstract(_))
            ) {
                match proto::socks5::parse_proxy(&proxy).map(|(h, p)| {
                    (
                        parse_endpoint(&h, p),
                        proto::socks5::Socks5Client::new(&sni, port, None),
                        p,
                    )
                }) {
                    Some((Ok(t), Ok(client), p)) => {
                        target = t;
                        conn_port = p;
                        socks = Some(client);
                    }
                    _ => {
                        if let Some(s) = self.streams.get_mut(&id) {
                            s.conn = None;
                        }
                        self.emit_error(id, format!("socks5: unusable proxy address {proxy:?}"));
                        self.emit_state(id, StreamState::Unreachable, 0);
                        self.backoff(now, id, false, Duration::ZERO);
                        return;
                    }
                }
            }
        }
        let (phase, action) = match target {
            Target::Addr(addr) => (Phase::Connecting, Action::Connect { conn, addr }),
            Target::Host(host) => (Phase::Resolving, Action::Resolve { conn, host }),
        };
        let mut c = Conn::new(
            Some(id),
            phase,
            conn_port,
            proto_for(&st, false, &self.config),
        );
        c.socks = socks;
        if mqtt::is_mqtt(&st) {
            match self.mqtt_new_conn(now, id) {
                Ok(m) => {
                    c.proto = Proto::Mqtt(Box::new(m));
                    // A shared connection belongs to its members, not one stream.
                    c.stream = None;
                }
                Err(reason) => {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.conn = None;
                    }
                    self.emit_error(id, reason);
                    self.emit_state(id, StreamState::Unreachable, 0);
                    self.backoff(now, id, false, Duration::ZERO);
                    return;
                }
            }
            self.mqtt_register(id, conn);
        }
        c.deadline = Some(deadline);
        c.pool = key;
        c.sni = sni;
        c.want_tls = tls;
        self.conns.insert(conn, c);
        if st.protocol == Protocol::H2 && !st.server && tls {
            if let Some(k) = self.h2_key_of(id) {
                self.h2_pending.insert(k, conn);
            }
        }
        self.timers.set(Timer::ConnectTimeout(conn), deadline);
        self.actions.push_back(action);
    }

    /// The validity thresholds (`svalidping`, `svalidhup`) for `conn`, from
    /// the retry policy of (the first of) its streams.
    fn validity(&self, conn: ConnId) -> Option<(Option<Duration>, Option<Duration>)> {
        let sid = *self.conn_streams(conn).first()?;
        let r = self.streams.get(&sid)?.retry.clone()?;
        let secs = |s: Option<u32>| s.filter(|s| *s > 0).map(|s| Duration::from_secs(s.into()));
        let v = (secs(r.svalidping_s), secs(r.svalidhup_s));
        (v.0.is_some() || v.1.is_some()).then_some(v)
    }

    /// Arm the validity timer for the next threshold after the last input.
    fn arm_validity(&mut self, now: Instant, conn: ConnId) {
        let Some((ping, hup)) = self.validity(conn) else {
            return;
        };
        let last = self.conns.get(&conn).and_then(|c| c.last_rx).unwrap_or(now);
        let mut next: Option<Instant> = None;
        for d in [ping, hup].into_iter().flatten() {
            let at = last + d;
            if at > now {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        let at = next.unwrap_or(now + hup.or(ping).unwrap_or(Duration::from_secs(1)));
        self.timers.set(Timer::Validity(conn), at);
    }

    /// The reference's connection validity: after `svalidping` seconds with
    /// nothing from the peer, ask it to prove it is there (a WebSocket ping;
    /// MQTT has its own keep-alive); after `svalidhup` seconds, hang up.
    fn check_validity(&mut self, now: Instant, conn: ConnId) {
        let Some((ping, hup)) = self.validity(conn) else {
            return;
        };
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.rx_paused {
            // We stopped reading, so silence proves nothing.
            return self.arm_validity(now, conn);
        }
        let Some(last) = c.last_rx else {
            return;
        };
        let idle = now.saturating_duration_since(last);
        if hup.is_some_and(|h| idle >= h) {
            let reason = format!("connection silent for {} s (svalidhup)", idle.as_secs());
            if let Some(sid) = self.conns.get(&conn).and_then(|c| c.stream) {
                self.emit_error(sid, reason.clone());
            }
            self.close_conn(conn);
            if self.is_mqtt_conn(conn) {
                return self.mqtt_lost(now, conn, proto::mqtt::MqttError::Malformed(reason));
            }
            return self.conn_lost(now, conn);
        }
        if ping.is_some_and(|p| idle >= p) {
            self.ws_ping(conn);
        }
        self.arm_validity(now, conn);
    }

    /// Open a stream's link to the proxy daemon (SSPC mode).
    fn start_link(&mut self, now: Instant, id: StreamId, addr: SockAddr) {
        let conn = ConnId(self.alloc_id());
        if let Some(s) = self.streams.get_mut(&id) {
            s.conn = Some(conn);
        }
        let deadline = now + self.config.connect_timeout;
        let port = match &addr {
            SockAddr::Ip(a) => a.port(),
            _ => 0,
        };
        let mut c = Conn::new(
            Some(id),
            Phase::Connecting,
            port,
            Proto::Link(Box::new(link::LinkConn::new())),
        );
        c.deadline = Some(deadline);
        self.conns.insert(conn, c);
        self.timers.set(Timer::ConnectTimeout(conn), deadline);
        self.actions.push_back(Action::Connect { conn, addr });
    }

    /// A pending h2 connection to the same place as stream `id`, which it
    /// then waits on.
    fn h2_wait(&mut self, id: StreamId) -> Option<ConnId> {
        let key = self.h2_key_of(id)?;
        let conn = *self.h2_pending.get(&key)?;
        if self.conns.get(&conn).is_none_or(|c| c.ready) {
            return None;
        }
        self.h2_waiters.entry(conn).or_default().push(id);
        Some(conn)
    }

    /// Stream `id` stops waiting on `conn`; whether it was waiting there.
    fn h2_unwait(&mut self, conn: ConnId, id: StreamId) -> bool {
        match self.h2_waiters.get_mut(&conn) {
            Some(w) if w.contains(&id) => {
                w.retain(|s| *s != id);
                true
            }
            _ => false,
        }
    }

    /// The pending connection did not settle on h2: its waiters go their own way.
    fn h2_release_waiters(&mut self, now: Instant, conn: ConnId) {
        for w in self.h2_take_waiters(conn) {
            self.start_connect(now, w, false);
        }
    }

    /// The streams still waiting on the pending connection `conn`, which
    /// stops being pending; they no longer ride it.
    fn h2_take_waiters(&mut self, conn: ConnId) -> Vec<StreamId> {
        self.h2_pending.retain(|_, c| *c != conn);
        let mut out = vec![];
        for w in self.h2_waiters.remove(&conn).unwrap_or_default() {
            if let Some(s) = self.streams.get_mut(&w) {
                if s.conn == Some(conn) {
                    s.conn = None;
                    out.push(w);
                }
            }
        }
        out
    }

    /// The pending connection the streams `waiters` waited on failed before
    /// settling on a protocol: their attempts failed with it (UNREACHABLE,
    /// then backoff), as when its connect fails.
    fn h2_fail_waiters(&mut self, now: Instant, waiters: Vec<StreamId>, reason: &str) {
        for w in waiters {
            if let Some(s) = self.streams.get_mut(&w) {
                s.seq = Seq::Idle;
            }
            self.emit_error(w, reason.to_string());
            self.emit_state(w, StreamState::Unreachable, 0);
            self.backoff(now, w, false, Duration::ZERO);
        }
    }

    /// The sharing key of a stream's target (host, port, TLS; a followed
    /// redirect's, if any).
    fn h2_key_of(&self, id: StreamId) -> Option<PoolKey> {
        let s = self.streams.get(&id)?;
        let (target, tls) = resolve_endpoint(s).ok()?;
        let t = match target {
            Target::Addr(a) => a.to_string(),
            Target::Host(h) => h.to_ascii_lowercase(),
        };
        Some((t, s.redirect.as_ref().map_or(s.st.port, |r| r.port), tls))
    }

    /// Whether `conn` is a shared HTTP/2 connection.
    fn is_h2_conn(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| matches!(c.proto, Proto::H2(_)))
    }

    /// Whether `conn` is a shared MQTT connection.
    fn is_mqtt_conn(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| matches!(c.proto, Proto::Mqtt(_)))
    }

    /// An idle pooled connection for `key`, removed from the pool.
    fn take_pooled(&mut self, key: &PoolKey) -> Option<ConnId> {
        let list = self.pool.get_mut(key)?;
        let conn = list.pop();
        if list.is_empty() {
            self.pool.remove(key);
        }
        conn
    }

    /// Keep an idle client connection for reuse, or close it if the pool is full.
    fn pool_conn(&mut self, now: Instant, conn: ConnId) {
        let Some(key) = self.conns.get(&conn).and_then(|c| c.pool.clone()) else {
            self.close_conn(conn);
            self.drop_conn(conn);
            return;
        };
        let list = self.pool.entry(key).or_default();
        if list.len() >= self.config.max_idle_per_target {
            self.close_conn(conn);
            self.drop_conn(conn);
            return;
        }
        list.push(conn);
        self.timers
            .set(Timer::PoolIdle(conn), now + self.config.keepalive_idle);
        // An idle connection is read again (to notice the server closing it).
        self.refresh_rx_pause(now, conn);
    }

    /// The transport under `conn` is up: start the protocol on it.
    fn transport_ready(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.ready = true;
        c.last_rx.get_or_insert(now);
        self.arm_validity(now, conn);
        if self.rx_paused > 0 {
            // A stream paused while its handshake ran: stop reading now.
            self.refresh_rx_pause(now, conn);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if matches!(c.proto, Proto::Mqtt(_)) {
            return self.mqtt_start(now, conn);
        }
        let Some(sid) = c.stream else {
            return;
        };
        let reported = self.streams.get(&sid).is_some_and(|s| s.connected_reported);
        match self.conns.get(&conn).map(|c| &c.proto) {
            Some(Proto::Raw(_)) if !reported => {
                if let Some(s) = self.streams.get_mut(&sid) {
                    s.tries = 0;
                }
                self.emit_state(sid, StreamState::Connected, 0)
            }
            Some(Proto::Raw(_)) | None => {}
            Some(Proto::H1Client(_)) => self.h1c_start(now, conn),
            Some(Proto::Link(_)) => self.link_start(now, conn),
            Some(Proto::WsClient(_)) => self.ws_start(now, conn),
            Some(Proto::H1Server(_))
            | Some(Proto::WsServer(_))
            | Some(Proto::Mqtt(_))
            | Some(Proto::H2(_))
            | Some(Proto::H2Srv(_)) => {}
        }
        self.service_tx();
    }

    /// Feed plaintext from the peer to the connection's protocol machine.
    fn proto_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match &mut c.proto {
            Proto::Raw(m) => {
                let mut out = Output::default();
                let res = m.handle_input(data, &mut out);
                self.route_output(conn, out);
                if let Err(e) = res {
                    self.protocol_failed(now, conn, e.to_string());
                }
            }
            Proto::H1Client(_) => self.h1c_input(now, conn, data),
            Proto::H1Server(_) => self.h1s_input(now, conn, data),
            Proto::WsClient(_) => self.ws_client_input(now, conn, data),
            Proto::WsServer(_) => self.ws_input(now, conn, data),
            Proto::Mqtt(_) => self.mqtt_input(now, conn, data),
            Proto::H2(_) => self.h2_input(now, conn, data),
            Proto::H2Srv(_) => self.h2s_input(now, conn, data),
            Proto::Link(_) => self.link_input(now, conn, data),
        }
    }

    /// Send protocol bytes: through TLS when the connection has it.
    fn transmit(&mut self, conn: ConnId, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match c.tls.as_mut() {
            Some(session) => {
                let mut wire = Vec::new();
                // ok: an error here only follows a failed session, whose
                // failure was already reported by the input that caused it;
                // writes before the handshake are not offered (`ready`).
                let _ = session.write(&data, &mut wire);
                self.transmit_wire(conn, wire);
            }
            None => self.transmit_wire(conn, data),
        }
    }

    /// Hand bytes for the wire to the adapter.
    fn transmit_wire(&mut self, conn: ConnId, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.unsent += data.len();
            self.actions.push_back(Action::Transmit { conn, data });
        }
    }

    /// Ask the adapter to close `conn` unless the peer already did (after a
    /// TLS close_notify when there is a session).
    fn close_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.peer_closed {
            return;
        }
        self.ws_close(conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(session) = c.tls.as_mut() {
            let mut wire = Vec::new();
            session.close(&mut wire);
            self.transmit_wire(conn, wire);
        }
        self.actions.push_back(Action::Close { conn });
    }

    /// Wrap a freshly connected client transport in TLS and send the hello.
    fn start_client_tls(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let sni = c.sni.clone();
        let Some(st) = self
            .conn_streams(conn)
            .first()
            .and_then(|s| self.streams.get(s))
            .map(|s| s.st.clone())
        else {
            return;
        };
        let made = self
            .tls
            .client_config(&self.policy, &st, alpn_for(&st))
            .and_then(|cfg| TlsSession::client(cfg, &sni));
        let mut session = match made {
            Ok(s) => s,
            Err(e) => return self.tls_failed(now, conn, e.to_string()),
        };
        let mut wire = Vec::new();
        let res = session.start(&mut wire);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.tls = Some(session);
        }
        self.transmit_wire(conn, wire);
        if let Err(e) = res {
            self.tls_failed(now, conn, e.to_string());
        }
    }

    /// The TLS handshake completed: the protocol can start.
    fn handshake_done(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.deadline = None;
        self.timers.cancel(Timer::ConnectTimeout(conn));
        let h2 = c
            .tls
            .as_ref()
            .and_then(|t| t.alpn_protocol())
            .is_some_and(|p| p == b"h2");
        if h2 && matches!(c.proto, Proto::H1Client(_)) {
            c.last_rx.get_or_insert(now);
            self.h2_pending.retain(|_, c| *c != conn);
            self.h2_upgrade(now, conn);
            for w in self.h2_waiters.remove(&conn).unwrap_or_default() {
                if self.streams.get(&w).is_some_and(|s| s.conn == Some(conn)) {
                    self.h2_join_conn(now, conn, w);
                }
            }
            return;
        }
        if h2 && matches!(c.proto, Proto::H1Server(_)) {
            return self.h2s_upgrade(now, conn);
        }
        self.h2_release_waiters(now, conn);
        self.transport_ready(now, conn);
    }

    /// TLS failed on `conn`: before the handshake completed it is a failed
    /// attempt (UNREACHABLE and backoff), after it a protocol failure.
    fn tls_failed(&mut self, now: Instant, conn: ConnId, reason: String) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let ready = c.ready;
        if matches!(c.proto, Proto::H2(_)) {
            return self.h2_lost(now, conn, reason);
        }
        if matches!(c.proto, Proto::Mqtt(_)) {
            if ready {
                return self.mqtt_lost(now, conn, proto::mqtt::MqttError::Malformed(reason));
            }
            for sid in self.conn_streams(conn) {
                self.emit_error(sid, reason.clone());
            }
            self.close_conn(conn);
            return self.connect_failed(now, conn);
        }
        let http_like = matches!(c.proto, Proto::H1Client(_) | Proto::WsClient(_));
        let client = c
            .stream
            .is_some_and(|s| self.streams.get(&s).is_some_and(|s| s.role == Role::Client));
        match (ready, client) {
            (false, true) => {
                if let Some(sid) = c.stream {
                    self.emit_error(sid, reason);
                }
                self.close_conn(conn);
                self.connect_failed(now, conn);
            }
            (true, true) if http_like => self.attempt_fail(now, conn, reason),
            _ => self.protocol_failed(now, conn, reason),
        }
    }

    /// Try the next resolved address, or fail the attempt when none is left.
    fn connect_next(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match c.candidates.pop_front() {
            Some(addr) => {
                c.phase = Phase::Connecting;
                c.peer_closed = false;
                self.actions.push_back(Action::Connect {
                    conn,
                    addr: SockAddr::Ip(addr),
                });
            }
            None => self.connect_failed(now, conn),
        }
    }

    fn drop_conn(&mut self, conn: ConnId) -> Option<Conn> {
        // Unacknowledged MQTT messages outlive a connection that fails
        // before CONNACK (refused, unresolved, timed out, CONNACK refused).
        self.mqtt_stash(conn);
        self.timers.cancel(Timer::ConnectTimeout(conn));
        self.timers.cancel(Timer::PoolIdle(conn));
        self.timers.cancel(Timer::HttpSilence(conn));
        self.timers.cancel(Timer::Mqtt(conn));
        self.timers.cancel(Timer::Validity(conn));
        for sid in self.conn_streams(conn) {
            if let Some(s) = self.streams.get_mut(&sid) {
                if s.conn == Some(conn) {
                    s.conn = None;
                }
            }
        }
        self.mqtt_conns.retain(|_, c| *c != conn);
        self.h2_conns.retain(|_, c| *c != conn);
        self.h2_pending.retain(|_, c| *c != conn);
        self.h2_waiters.remove(&conn);
        let c = self.conns.remove(&conn)?;
        if let Some(key) = &c.pool {
            if let Some(list) = self.pool.get_mut(key) {
                list.retain(|&x| x != conn);
                if list.is_empty() {
                    self.pool.remove(key);
                }
            }
        }
        if let Some(s) = c.stream.and_then(|id| self.streams.get_mut(&id)) {
            if s.conn == Some(conn) {
                s.conn = None;
            }
        }
        Some(c)
    }

    /// A connection attempt failed for good: UNREACHABLE, then backoff.
    fn connect_failed(&mut self, now: Instant, conn: ConnId) {
        let streams = self.conn_streams(conn);
        self.drop_conn(conn);
        for id in streams {
            if let Some(s) = self.streams.get_mut(&id) {
                s.seq = Seq::Idle;
            }
            self.emit_state(id, StreamState::Unreachable, 0);
            self.backoff(now, id, false, Duration::ZERO);
        }
    }

    /// An open connection went away: DISCONNECTED, then per role and policy.
    fn conn_lost(&mut self, now: Instant, conn: ConnId) {
        if self.is_h2_conn(conn) {
            return self.h2_lost(now, conn, "h2: connection lost".into());
        }
        if self.is_mqtt_conn(conn) {
            return self.mqtt_lost(now, conn, proto::mqtt::MqttError::Closed);
        }
        // Streams waiting on it to settle on h2 fail with it.
        let waiters = self.h2_take_waiters(conn);
        self.h2_fail_waiters(now, waiters, "connection lost");
        let Some(id) = self.drop_conn(conn).and_then(|c| c.stream) else {
            return;
        };
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
            Role::Client if reconnect => self.backoff(now, id, true, Duration::ZERO),
            _ => {}
        }
    }

    /// The protocol on `conn` failed: tell why, close, and treat it as a loss.
    fn protocol_failed(&mut self, now: Instant, conn: ConnId, reason: String) {
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| matches!(c.proto, Proto::H2Srv(_)))
        {
            return self.h2s_lost(now, conn, reason);
        }
        if self.is_h2_conn(conn) {
            return self.h2_lost(now, conn, reason);
        }
        if self.is_mqtt_conn(conn) {
            return self.mqtt_lost(now, conn, proto::mqtt::MqttError::Malformed(reason));
        }
        if let Some(sid) = self.conns.get(&conn).and_then(|c| c.stream) {
            self.emit_error(sid, reason);
        }
        self.close_conn(conn);
        self.conn_lost(now, conn);
    }

    /// Schedule the next attempt per the retry policy (waiting at least
    /// `at_least`, e.g. a server's Retry-After), or give up with
    /// ALL_RETRIES_FAILED. After a drop (`after_drop`), giving up is silent:
    /// the reference table has no DISCONNECTED → ALL_RETRIES_FAILED edge.
    fn backoff(&mut self, now: Instant, id: StreamId, after_drop: bool, at_least: Duration) {
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
                let at = now + d.max(at_least);
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
        let Some(stream) = self.conns.get(&conn).and_then(|c| c.stream) else {
            return;
        };
        self.transmit(conn, out.transmit);
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
            if s.seq != Seq::Connected
                || (mqtt::is_mqtt(&s.st) && !s.connected_reported)
                || self.writable_queued.contains(&id)
            {
                continue;
            }
            let room = s.conn.and_then(|c| self.conns.get(&c)).is_some_and(|c| {
                c.phase == Phase::Open
                    && c.ready
                    && c.unsent < self.config.tx_high_water
                    && proto_wants_tx(&c.proto)
                    && match &c.proto {
                        Proto::H2(h) => h.wants_body(id),
                        Proto::H2Srv(h) => h.wants_response(id),
                        _ => true,
                    }
            });
            if room {
                self.tx_pending.remove(&id);
                self.writable_queued.insert(id);
                self.events.push_back(Event::Writable {
                    stream: id,
                    budget: self.config.tx_budget,
                });
            }
        }
    }
}

impl Conn {
    fn new(stream: Option<StreamId>, phase: Phase, port: u16, proto: Proto) -> Self {
        Conn {
            stream,
            phase,
            port,
            candidates: VecDeque::new(),
            deadline: None,
            unsent: 0,
            proto,
            pool: None,
            reused: false,
            rx_any: false,
            peer_closed: false,
            tls: None,
            sni: String::new(),
            want_tls: false,
            ready: false,
            last_rx: None,
            peer: None,
            rx_paused: false,
            held: Vec::new(),
            held_eof: false,
            socks: None,
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

/// Turn the stream's endpoint (after `${metadata}` substitution, or a
/// redirect's target) into an address or host, and whether to use TLS.
fn resolve_endpoint(s: &Stream) -> Result<(Target, bool), Error> {
    if let Some(r) = &s.redirect {
        return Ok((parse_endpoint(&r.host, r.port)?, r.tls));
    }
    let ep =
        s.st.endpoint
            .as_deref()
            .ok_or_else(|| Error::BadEndpoint("no endpoint".into()))?;
    let ep = s.substitute(ep)?;
    Ok((parse_endpoint(&ep, s.st.port)?, s.st.tls))
}

impl Stream {
    /// `template` with this stream's `${metadata}` substituted (unset
    /// declared items are empty; undeclared names are an error).
    fn substitute(&self, template: &str) -> Result<String, metadata::SubstError> {
        metadata::substitute(template, |name| {
            let i = self.st.metadata_index(name)?;
            Some(
                self.metadata
                    .get(i)
                    .and_then(|v| v.as_deref())
                    .unwrap_or(&[]),
            )
        })
    }
}

/// The keep-alive pool key for a client connection, for protocols that reuse them.
fn pool_key(st: &StreamType, target: &Target, port: u16, tls: bool) -> Option<PoolKey> {
    if !matches!(st.protocol, Protocol::H1 | Protocol::H2) || st.server {
        return None;
    }
    let t = match target {
        Target::Addr(a) => a.to_string(),
        Target::Host(h) => h.to_ascii_lowercase(),
    };
    Some((t, port, tls))
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

/// The protocol machine for a new connection of `st`.
fn proto_for(st: &StreamType, accepted: bool, config: &EngineConfig) -> Proto {
    match (st.protocol, accepted) {
        // Until HTTP/2 lands, h2 streamtypes speak HTTP/1.1 (ALPN http/1.1),
        // as the reference does when ALPN settles on http/1.1.
        (Protocol::H1 | Protocol::H2, false) => {
            Proto::H1Client(Box::new(http::ClientConn::new(config)))
        }
        (Protocol::H1 | Protocol::H2 | Protocol::Ws, true) => {
            Proto::H1Server(Box::new(http::ServerConn::new(config)))
        }
        (Protocol::Ws, false) => Proto::WsClient(Box::new(websocket::WsClientConn::new())),
        // Protocols not built yet run raw until they land.
        _ => Proto::Raw(proto::raw::Raw::default()),
    }
}

/// The ALPN protocols a streamtype offers or accepts over TLS.
fn alpn_for(st: &StreamType) -> &'static [&'static [u8]] {
    match st.protocol {
        Protocol::H2 => &[b"h2", b"http/1.1"],
        Protocol::H1 | Protocol::Ws => &[b"http/1.1"],
        Protocol::Mqtt if st.mqtt.aws_iot => &[b"x-amzn-mqtt-ca"],
        Protocol::Raw | Protocol::Mqtt => &[],
    }
}

/// Whether the protocol can take application payload now.
fn proto_wants_tx(p: &Proto) -> bool {
    match p {
        Proto::Raw(_) => true,
        Proto::H1Client(c) => c.wants_body(),
        Proto::H1Server(c) => c.wants_response(),
        Proto::WsClient(c) => c.ws.as_ref().is_some_and(|w| !w.is_closing()),
        Proto::WsServer(w) => !w.is_closing(),
        Proto::Mqtt(m) => m.wants_tx(),
        // Decided per stream in service_tx.
        Proto::H2(_) | Proto::H2Srv(_) => true,
        Proto::Link(l) => l.created(),
    }
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
