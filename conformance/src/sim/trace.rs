//! What a simulation run records: every application-visible event, every
//! injected fault and the network's own steps, each stamped with virtual time.
//!
//! Entries are structured (so two runs compare exactly with `==`) and
//! [`Display`](fmt::Display) as one line each for humans.

use super::net::{LinkId, NodeId};
use ss_core::{ConnId, ListenerId, StreamId, StreamState};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The kinds of fault the simulated network can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A connection attempt was refused although a listener was there.
    Refused,
    /// A DNS lookup failed (answered with no addresses).
    DnsFailure,
    /// A connection attempt vanished: neither success nor failure ever came.
    Blackhole,
    /// An open connection was reset mid-stream; both ends saw it close.
    Reset,
    /// A `Transmit` was written in several pieces, `handle_sent` per piece.
    PartialWrite,
    /// A segment was held up well beyond the usual latency.
    Delay,
    /// The server application tore its server stream down and made it again.
    ServerRestart,
    /// An application closed its stream's connection mid-stream
    /// (`disconnect`, or a handler returning `DisconnectMe`).
    AppDisconnect,
    /// An application destroyed a stream mid-stream (`destroy`, `DestroyMe`,
    /// or destroying from inside a callback).
    AppDestroy,
    /// Segments in flight were delivered together, as one `handle_data`.
    Coalesced,
}

impl FaultKind {
    /// Every fault kind, in order.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Refused,
        FaultKind::DnsFailure,
        FaultKind::Blackhole,
        FaultKind::Reset,
        FaultKind::PartialWrite,
        FaultKind::Delay,
        FaultKind::ServerRestart,
        FaultKind::AppDisconnect,
        FaultKind::AppDestroy,
        FaultKind::Coalesced,
    ];

    /// A short name for summaries.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Refused => "refused",
            FaultKind::DnsFailure => "dns-failure",
            FaultKind::Blackhole => "connect-blackhole",
            FaultKind::Reset => "reset",
            FaultKind::PartialWrite => "partial-write",
            FaultKind::Delay => "delay",
            FaultKind::ServerRestart => "server-restart",
            FaultKind::AppDisconnect => "app-disconnect",
            FaultKind::AppDestroy => "app-destroy",
            FaultKind::Coalesced => "coalesced",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One injected fault, with what it hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The connection attempt `conn` to `addr` was refused.
    Refused {
        /// The connecting side's connection.
        conn: ConnId,
        /// Where it tried to connect.
        addr: SocketAddr,
    },
    /// The lookup of `host` for `conn` failed.
    DnsFailure {
        /// The connection the lookup was for.
        conn: ConnId,
        /// The name looked up.
        host: String,
    },
    /// The connection attempt `conn` to `addr` will never complete.
    Blackhole {
        /// The connecting side's connection.
        conn: ConnId,
        /// Where it tried to connect.
        addr: SocketAddr,
    },
    /// The link was reset; `lost` bytes were in flight or being delivered.
    Reset {
        /// The link reset.
        link: LinkId,
        /// Bytes of the segment that triggered it (0 for a scheduled reset).
        lost: usize,
    },
    /// `len` bytes of one `Transmit` went out in `pieces` writes.
    PartialWrite {
        /// The writing side's connection.
        conn: ConnId,
        /// Bytes in the `Transmit`.
        len: usize,
        /// Number of writes.
        pieces: usize,
    },
    /// A segment on `conn` was held up `extra` beyond its latency.
    Delay {
        /// The writing side's connection.
        conn: ConnId,
        /// The extra delay.
        extra: Duration,
    },
    /// The server stream was destroyed, to be made again after `downtime`.
    ServerRestart {
        /// How long until it is made again.
        downtime: Duration,
    },
    /// The application disconnected `stream` mid-stream.
    AppDisconnect {
        /// The stream whose connection was closed.
        stream: StreamId,
    },
    /// The application destroyed `stream` mid-stream.
    AppDestroy {
        /// The stream destroyed.
        stream: StreamId,
    },
    /// `segments` segments on `link` were delivered as one of `len` bytes.
    Coalesced {
        /// The link.
        link: LinkId,
        /// Segments merged (the one due and those taken along).
        segments: usize,
        /// Bytes delivered at once.
        len: usize,
    },
}

impl Fault {
    /// The fault's kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Refused { .. } => FaultKind::Refused,
            Fault::DnsFailure { .. } => FaultKind::DnsFailure,
            Fault::Blackhole { .. } => FaultKind::Blackhole,
            Fault::Reset { .. } => FaultKind::Reset,
            Fault::PartialWrite { .. } => FaultKind::PartialWrite,
            Fault::Delay { .. } => FaultKind::Delay,
            Fault::ServerRestart { .. } => FaultKind::ServerRestart,
            Fault::AppDisconnect { .. } => FaultKind::AppDisconnect,
            Fault::AppDestroy { .. } => FaultKind::AppDestroy,
            Fault::Coalesced { .. } => FaultKind::Coalesced,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Refused { conn, addr } => write!(f, "FAULT refused {conn} -> {addr}"),
            Fault::DnsFailure { conn, host } => write!(f, "FAULT dns-failure {conn} {host}"),
            Fault::Blackhole { conn, addr } => {
                write!(f, "FAULT connect-blackhole {conn} -> {addr}")
            }
            Fault::Reset { link, lost } => write!(f, "FAULT reset {link} (lost {lost} bytes)"),
            Fault::PartialWrite { conn, len, pieces } => {
                write!(
                    f,
                    "FAULT partial-write {conn} {len} bytes in {pieces} pieces"
                )
            }
            Fault::Delay { conn, extra } => {
                write!(f, "FAULT delay {conn} +{}ms", extra.as_millis())
            }
            Fault::ServerRestart { downtime } => {
                write!(f, "FAULT server-restart (down {}ms)", downtime.as_millis())
            }
            Fault::AppDisconnect { stream } => write!(f, "FAULT app-disconnect {stream}"),
            Fault::AppDestroy { stream } => write!(f, "FAULT app-destroy {stream}"),
            Fault::Coalesced {
                link,
                segments,
                len,
            } => write!(
                f,
                "FAULT coalesced {link}: {segments} segments, {len} bytes"
            ),
        }
    }
}

/// A step the simulated network took for a node (not a fault).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetStep {
    /// The engine asked to resolve `host`.
    Resolve {
        /// Connection the lookup is for.
        conn: ConnId,
        /// Name to look up.
        host: String,
    },
    /// DNS answered `addrs` addresses.
    Resolved {
        /// Connection the lookup was for.
        conn: ConnId,
        /// How many addresses came back.
        addrs: usize,
    },
    /// The engine asked to connect.
    Connect {
        /// The connection.
        conn: ConnId,
        /// Where to.
        addr: String,
    },
    /// The connection attempt succeeded; it is carried by `link`.
    Connected {
        /// The connection.
        conn: ConnId,
        /// The link carrying it.
        link: LinkId,
    },
    /// A listener accepted a connection, carried by `link`.
    Accepted {
        /// The accepting side's new connection.
        conn: ConnId,
        /// The link carrying it.
        link: LinkId,
    },
    /// The connection attempt failed (no listener, refused by the engine...).
    ConnectFailed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: String,
    },
    /// The engine handed `len` bytes to `Transmit`.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// Bytes handed over.
        len: usize,
    },
    /// The engine closed its connection.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// The peer's close (or a reset) reached this node.
    PeerClosed {
        /// The connection.
        conn: ConnId,
    },
    /// A listener was bound.
    Listen {
        /// The listener.
        listener: ListenerId,
        /// Its address.
        addr: String,
    },
    /// A listener could not be bound.
    ListenFailed {
        /// The listener.
        listener: ListenerId,
        /// Why.
        reason: String,
    },
    /// A listener was closed.
    StopListening {
        /// The listener.
        listener: ListenerId,
    },
    /// Socket options were applied.
    SocketOptions {
        /// The connection.
        conn: ConnId,
        /// IP ToS byte.
        tos: u8,
        /// Socket priority.
        priority: u8,
    },
}

impl fmt::Display for NetStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetStep::Resolve { conn, host } => write!(f, "net resolve {conn} {host}"),
            NetStep::Resolved { conn, addrs } => write!(f, "net resolved {conn} {addrs} addrs"),
            NetStep::Connect { conn, addr } => write!(f, "net connect {conn} -> {addr}"),
            NetStep::Connected { conn, link } => write!(f, "net connected {conn} on {link}"),
            NetStep::Accepted { conn, link } => write!(f, "net accepted {conn} on {link}"),
            NetStep::ConnectFailed { conn, reason } => {
                write!(f, "net connect-failed {conn} ({reason})")
            }
            NetStep::Transmit { conn, len } => write!(f, "net transmit {conn} {len} bytes"),
            NetStep::Close { conn } => write!(f, "net close {conn}"),
            NetStep::PeerClosed { conn } => write!(f, "net peer-closed {conn}"),
            NetStep::Listen { listener, addr } => write!(f, "net listen {listener} {addr}"),
            NetStep::ListenFailed { listener, reason } => {
                write!(f, "net listen-failed {listener} ({reason})")
            }
            NetStep::StopListening { listener } => write!(f, "net stop-listening {listener}"),
            NetStep::SocketOptions {
                conn,
                tos,
                priority,
            } => write!(f, "net sockopt {conn} tos={tos:#04x} prio={priority}"),
        }
    }
}

/// What a trace entry records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// A stream changed state (`conn` is set for CONNECTED: the connection under it).
    State {
        /// The stream.
        stream: StreamId,
        /// Its new state.
        state: StreamState,
        /// The event's `ack` argument.
        ack: u32,
        /// For CONNECTED, the connection now carrying the stream.
        conn: Option<ConnId>,
    },
    /// Payload arrived for a stream.
    Rx {
        /// The stream.
        stream: StreamId,
        /// Bytes received.
        len: usize,
    },
    /// A stream was told it may write.
    Writable {
        /// The stream.
        stream: StreamId,
        /// The size budget offered.
        budget: usize,
    },
    /// A server stream accepted a connection as a new stream.
    Accepted {
        /// The server stream.
        server: StreamId,
        /// The new stream.
        stream: StreamId,
        /// Its connection.
        conn: Option<ConnId>,
    },
    /// A server stream is listening.
    Listening {
        /// The server stream.
        stream: StreamId,
        /// Where.
        addr: String,
    },
    /// A server stream could not listen.
    ListenFailed {
        /// The server stream.
        stream: StreamId,
        /// Why.
        reason: String,
    },
    /// A stream's connection failed, and why.
    ConnectionError {
        /// The stream.
        stream: StreamId,
        /// Why.
        reason: String,
    },
    /// A fault was injected.
    Fault(Fault),
    /// The network did something for the node.
    Net(NetStep),
    /// A note from the node's application.
    Note(String),
}

/// One line of a run's trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual time since the start of the run.
    pub at: Duration,
    /// The node concerned.
    pub node: NodeId,
    /// What happened.
    pub kind: TraceKind,
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>4}.{:06}s {:<3} ",
            self.at.as_secs(),
            self.at.subsec_micros(),
            self.node.to_string()
        )?;
        match &self.kind {
            TraceKind::State {
                stream,
                state,
                ack,
                conn,
            } => {
                write!(f, "{stream} {state}")?;
                if *ack != 0 {
                    write!(f, " ack={ack}")?;
                }
                if let Some(c) = conn {
                    write!(f, " on {c}")?;
                }
                Ok(())
            }
            TraceKind::Rx { stream, len } => write!(f, "{stream} rx {len} bytes"),
            TraceKind::Writable { stream, budget } => write!(f, "{stream} writable {budget}"),
            TraceKind::Accepted {
                server,
                stream,
                conn,
            } => {
                write!(f, "{server} accepted {stream}")?;
                if let Some(c) = conn {
                    write!(f, " on {c}")?;
                }
                Ok(())
            }
            TraceKind::Listening { stream, addr } => write!(f, "{stream} listening on {addr}"),
            TraceKind::ListenFailed { stream, reason } => {
                write!(f, "{stream} listen failed: {reason}")
            }
            TraceKind::ConnectionError { stream, reason } => {
                write!(f, "{stream} connection error: {reason}")
            }
            TraceKind::Fault(x) => write!(f, "{x}"),
            TraceKind::Net(x) => write!(f, "{x}"),
            TraceKind::Note(s) => write!(f, "app: {s}"),
        }
    }
}
