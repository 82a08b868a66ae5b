//! The engine's vocabulary: identifiers, actions for the adapter, events for
//! the application, configuration and errors.

use crate::metadata::SubstError;
use crate::policy::PolicyError;
use crate::state::{Flags, StreamState};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A logical stream: lives from `create` to `destroy`, across connections.
    StreamId, "ss"
);
id_type!(
    /// One transport connection (TCP or Unix socket) the adapter carries.
    ConnId, "conn"
);
id_type!(
    /// One listening socket the adapter carries for a server streamtype.
    ListenerId, "listen"
);

/// A socket address to connect to or bind: IP, Unix path, or Linux abstract name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SockAddr {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A Unix domain socket path (endpoint `+path`).
    Unix(String),
    /// A Linux abstract-namespace Unix socket name, without the leading NUL (endpoint `+@name`).
    UnixAbstract(String),
}

/// Where to connect.
pub type ConnectAddr = SockAddr;
/// Where to listen.
pub type BindAddr = SockAddr;

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockAddr::Ip(a) => write!(f, "{a}"),
            SockAddr::Unix(p) => write!(f, "unix:{p}"),
            SockAddr::UnixAbstract(n) => write!(f, "unix:@{n}"),
        }
    }
}

/// Who is on the other end of an accepted local connection, as the OS
/// vouches for it (`SO_PEERCRED` on a Unix socket). Adapters that can tell
/// give it with [`Engine::set_peer`](crate::engine::Engine::set_peer); the
/// proxy daemon uses it to bound links per client process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    /// The peer's process id.
    pub pid: u32,
    /// The peer's user id.
    pub uid: u32,
}

/// Something the adapter must do on the engine's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resolve `host`; answer with `handle_resolved` (an empty list is a failure).
    Resolve {
        /// Connection the lookup is for.
        conn: ConnId,
        /// DNS name to look up.
        host: String,
    },
    /// Open a connection; answer with `handle_connected` or `handle_connect_failed`.
    Connect {
        /// The new connection's id.
        conn: ConnId,
        /// Where to connect.
        addr: ConnectAddr,
    },
    /// Write these bytes, in order; report progress with `handle_sent`.
    Transmit {
        /// Connection to write on.
        conn: ConnId,
        /// Bytes to write.
        data: Vec<u8>,
    },
    /// Close the connection (after writing what was already handed over). No
    /// `handle_closed` is expected for it.
    Close {
        /// Connection to close.
        conn: ConnId,
    },
    /// Open a listening socket; answer with `handle_listening` or `handle_listen_failed`.
    Listen {
        /// The listener's id.
        listener: ListenerId,
        /// Address to bind.
        bind: BindAddr,
    },
    /// Close a listening socket.
    StopListening {
        /// Listener to close.
        listener: ListenerId,
    },
    /// Stop (`paused`) or resume reading `conn`, because a stream on it has
    /// its rx paused ([`Engine::set_rx_paused`](crate::engine::Engine::set_rx_paused)).
    /// Unread bytes stay in the socket so transport flow control pushes back
    /// on the peer. Bytes read after the pause are still accepted (and held
    /// by the engine), so an adapter may finish a read already under way;
    /// after a resume it must read again even without a new readiness event.
    PauseReading {
        /// Connection concerned.
        conn: ConnId,
        /// `true` to stop reading, `false` to resume.
        paused: bool,
    },
    /// Apply IP ToS bits and socket priority from the streamtype's `attr_*`.
    SetSocketOptions {
        /// Connection to configure.
        conn: ConnId,
        /// IP ToS byte.
        tos: u8,
        /// Socket priority (0..=7).
        priority: u8,
    },
}

/// Something the application should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The stream entered `state`; `ack` carries the reference's ordinal argument.
    State {
        /// Stream concerned.
        stream: StreamId,
        /// New state.
        state: StreamState,
        /// Extra argument (e.g. the mapped code for `http_resp_map` states).
        ack: u32,
    },
    /// Payload received for the stream.
    Rx {
        /// Stream concerned.
        stream: StreamId,
        /// The payload.
        data: Vec<u8>,
        /// SOM / EOM and other flags.
        flags: Flags,
    },
    /// The stream asked to transmit and may now write up to `budget` bytes with
    /// `Engine::write` (or pass, which is TX_DONT_SEND).
    Writable {
        /// Stream concerned.
        stream: StreamId,
        /// Suggested maximum for this write.
        budget: usize,
    },
    /// A server stream accepted a connection, which is the new stream `stream`.
    Accepted {
        /// The server (listening) stream.
        server: StreamId,
        /// The stream created for the accepted connection.
        stream: StreamId,
    },
    /// A server stream is listening on `addr`.
    Listening {
        /// The server stream.
        stream: StreamId,
        /// The bound address (with the real port when the policy said 0).
        addr: String,
    },
    /// Why the stream's connection failed (TLS verification, a malformed
    /// response, a refused redirect...); the state that follows tells what
    /// happens next (UNREACHABLE, DISCONNECTED).
    ConnectionError {
        /// Stream concerned.
        stream: StreamId,
        /// A human-readable reason, e.g. `http: malformed status line`.
        reason: String,
    },
    /// A server stream could not listen.
    ListenFailed {
        /// The server stream.
        stream: StreamId,
        /// Why, from the adapter.
        reason: String,
    },
}

impl Event {
    /// The stream the event concerns.
    pub fn stream(&self) -> StreamId {
        match self {
            Event::State { stream, .. }
            | Event::Rx { stream, .. }
            | Event::Writable { stream, .. }
            | Event::Accepted { stream, .. }
            | Event::Listening { stream, .. }
            | Event::ConnectionError { stream, .. }
            | Event::ListenFailed { stream, .. } => *stream,
        }
    }
}

/// Engine settings that are not policy: randomness, timeouts and bounds.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Seed for retry jitter; the same seed gives the same schedule.
    pub seed: u64,
    /// How long a connection attempt (resolve + connect) may take.
    pub connect_timeout: Duration,
    /// Bytes handed to the adapter but not yet reported sent, above which no
    /// more `Writable` events are given for the connection. Unsent bytes stay
    /// below `tx_high_water + max_write`.
    pub tx_high_water: usize,
    /// Budget offered with each `Writable` event.
    pub tx_budget: usize,
    /// Largest single `write`.
    pub max_write: usize,
    /// Most streams alive at once (client, server and accepted together).
    pub max_streams: usize,
    /// Bytes the engine holds for a connection whose reading is paused
    /// ([`Action::PauseReading`]): what the adapter had already read. An
    /// adapter that keeps reading beyond it fails the connection.
    pub max_held_rx: usize,
    /// Largest metadata value.
    pub max_metadata_len: usize,
    /// How long an idle kept-alive HTTP/1.1 connection waits for reuse.
    pub keepalive_idle: Duration,
    /// Most idle kept-alive connections per (host, port, TLS).
    pub max_idle_per_target: usize,
    /// How long an HTTP client transaction may hear nothing from the server
    /// before it fails (the reference's 30 s content timeout).
    pub http_silence_timeout: Duration,
    /// Most redirects one transaction follows (with `allow_redirects`).
    pub max_redirects: u8,
    /// HTTP/1 header size and count limits (also for WebSocket upgrades).
    pub http_limits: crate::proto::h1::Limits,
    /// Fulfil every client stream through a Secure Streams proxy daemon
    /// listening here (the reference's SSPC mode), instead of directly.
    pub proxy: Option<SockAddr>,
    /// A SOCKS5 proxy `host:port` for every client stream whose streamtype
    /// and policy name none (`via-socks5`); adapters fill it from the
    /// `socks_proxy` environment variable, as the reference does.
    pub socks5: Option<String>,
    /// Largest MQTT packet either way (and largest message a stream may publish).
    pub mqtt_max_packet: usize,
    /// Most MQTT QoS verdicts kept for a stream until it is CONNECTED again.
    pub mqtt_max_late_verdicts: usize,
    /// Largest WebSocket frame accepted (larger ones close with 1009).
    pub ws_max_frame: u64,
    /// Largest WebSocket message accepted (all its fragments).
    pub ws_max_message: u64,
    /// The rustls crypto provider; `None` takes ring's default. The
    /// simulation passes a seeded one so TLS runs replay.
    pub tls_provider: Option<std::sync::Arc<crate::proto::tls::rustls::crypto::CryptoProvider>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            seed: 0,
            connect_timeout: Duration::from_secs(20),
            tx_high_water: 64 * 1024,
            tx_budget: 16 * 1024,
            max_write: 1024 * 1024,
            max_streams: 65_536,
            max_held_rx: 2 << 20,
            max_metadata_len: 4096,
            keepalive_idle: Duration::from_secs(5),
            max_idle_per_target: 4,
            max_redirects: 5,
            http_silence_timeout: Duration::from_secs(30),
            http_limits: crate::proto::h1::Limits::default(),
            proxy: None,
            socks5: None,
            mqtt_max_packet: crate::proto::mqtt::DEFAULT_MAX_PACKET,
            mqtt_max_late_verdicts: 64,
            ws_max_frame: crate::proto::ws::DEFAULT_MAX_FRAME,
            ws_max_message: crate::proto::ws::DEFAULT_MAX_MESSAGE,
            tls_provider: None,
        }
    }
}

/// A value the application provides for the whole engine (the reference's
/// `lws_system` blobs), used in HTTP headers named by the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SystemBlob {
    /// Auth token `n` (0..=3), sent in `http_auth_header`.
    Auth(u8),
    /// Device serial number, sent in `http_dsn_header`.
    DeviceSerial,
    /// Firmware version, sent in `http_fwv_header`.
    FirmwareVersion,
    /// Device type, sent in `http_devtype_header`.
    DeviceType,
    /// MQTT client id (else a random one, which forces a clean session).
    MqttClientId,
    /// MQTT user name.
    MqttUsername,
    /// MQTT password.
    MqttPassword,
}

/// Why an application call was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The policy has no streamtype of this name.
    UnknownStreamtype(String),
    /// The stream does not exist (never did, or was destroyed).
    NoSuchStream(StreamId),
    /// The streamtype declares no metadata of this name.
    UnknownMetadata(String),
    /// The stream has no connection to write on.
    NotConnected(StreamId),
    /// A value exceeds a configured bound.
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The call does not apply to this kind of stream (e.g. connect on a server).
    WrongKind(&'static str),
    /// Too many streams are alive.
    TooManyStreams,
    /// A `${metadata}` substitution failed.
    Substitution(SubstError),
    /// A policy or overlay failed to load.
    Policy(PolicyError),
    /// The endpoint cannot be used.
    BadEndpoint(String),
    /// The protocol refused the payload (e.g. a body longer than announced).
    Protocol(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownStreamtype(n) => write!(f, "no streamtype \"{n}\" in the policy"),
            Error::NoSuchStream(s) => write!(f, "no stream {s}"),
            Error::UnknownMetadata(n) => {
                write!(f, "metadata \"{n}\" is not declared by the streamtype")
            }
            Error::NotConnected(s) => write!(f, "stream {s} has no connection"),
            Error::TooLarge { what, len, max } => write!(f, "{what} of {len} bytes exceeds {max}"),
            Error::WrongKind(why) => write!(f, "{why}"),
            Error::TooManyStreams => write!(f, "too many streams"),
            Error::Substitution(e) => write!(f, "{e}"),
            Error::Policy(e) => write!(f, "{e}"),
            Error::BadEndpoint(e) => write!(f, "bad endpoint: {e}"),
            Error::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<SubstError> for Error {
    fn from(e: SubstError) -> Self {
        Error::Substitution(e)
    }
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Self {
        Error::Policy(e)
    }
}
