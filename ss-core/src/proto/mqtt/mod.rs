//! MQTT 3.1.1 client session: a pure machine, bytes in → events and bytes out.
//!
//! The Secure Streams `mqtt` protocol maps each stream onto a logical user of
//! one MQTT connection: several streams of compatible streamtypes share one
//! TCP/TLS connection (the reference muxes up to 8 streams per connection), each
//! subscribing to its own filter and publishing to its own topic. [`Session`]
//! is that connection's MQTT state: it serialises CONNECT, SUBSCRIBE,
//! UNSUBSCRIBE, PUBLISH and the QoS 1/2 acknowledgement flows, parses what the
//! broker sends, and reports [`MqttEvent`]s tagged with the *owner* (an opaque
//! `u64`, the engine's stream id) that caused them. Incoming PUBLISHes are
//! reported once with every owner whose filter matches ([`topic_matches`]).
//!
//! Like the other machines in [`crate::proto`] it does no IO and reads no
//! clock: time comes in as [`Instant`](std::time::Instant) arguments,
//! [`Session::poll_timeout`] says when to call [`Session::handle_timeout`]
//! next (keep-alive PINGREQ, PINGRESP and CONNACK deadlines), and bytes for
//! the wire are taken with [`Session::poll_transmit`].
//!
//! The packet codec is the `mqttrs` crate. Its decoder indexes its input
//! without bounds checks in several places, so [`codec`] frames each packet
//! itself first (remaining length checked against [`Limits::max_packet`]
//! before anything is buffered towards it), checks the packet's structure
//! (fixed sizes, topic length inside the packet, packet types a client may
//! receive) and only then hands `mqttrs` a slice holding exactly that packet.
//!
//! Every buffer is bounded by [`Limits`]; any input gives a typed
//! [`MqttError`], never a panic.

pub mod codec;
mod session;
mod topic;

pub use session::{InFlight, InFlightPublish, Session, Subscription};
pub use topic::{topic_matches, validate_filter, validate_topic};

use std::fmt;
use std::time::Duration;

/// Default bound on one MQTT packet, either direction (fixed header included).
pub const DEFAULT_MAX_PACKET: usize = 256 * 1024;
/// Default bound on outgoing QoS 1/2 PUBLISHes awaiting their acknowledgement,
/// and separately on incoming QoS 2 PUBLISHes awaiting PUBREL.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// Default bound on (owner, filter) subscriptions held by one session.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 64;
/// Most bytes in a topic or filter the protocol can carry (16-bit length).
pub const MAX_TOPIC_LEN: usize = 65535;
/// Topic length limit of AWS IoT (the policy's `aws_iot`).
pub const AWS_IOT_MAX_TOPIC_LEN: usize = 256;
/// Most bytes in a client id accepted here (the reference's limit).
pub const MAX_CLIENT_ID_LEN: usize = 128;
/// Default time allowed for CONNACK after CONNECT and PINGRESP after PINGREQ.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// An MQTT packet identifier (never 0).
pub type PacketId = u16;

/// MQTT delivery guarantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// QoS 0: fire and forget.
    AtMostOnce = 0,
    /// QoS 1: acknowledged by PUBACK; may be delivered more than once.
    AtLeastOnce = 1,
    /// QoS 2: PUBREC / PUBREL / PUBCOMP; delivered exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a policy's `mqtt_qos` number, `None` above 2.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    pub(crate) fn to_mqttrs(self) -> mqttrs::QoS {
        match self {
            QoS::AtMostOnce => mqttrs::QoS::AtMostOnce,
            QoS::AtLeastOnce => mqttrs::QoS::AtLeastOnce,
            QoS::ExactlyOnce => mqttrs::QoS::ExactlyOnce,
        }
    }

    pub(crate) fn from_mqttrs(q: mqttrs::QoS) -> QoS {
        match q {
            mqttrs::QoS::AtMostOnce => QoS::AtMostOnce,
            mqttrs::QoS::AtLeastOnce => QoS::AtLeastOnce,
            mqttrs::QoS::ExactlyOnce => QoS::ExactlyOnce,
        }
    }
}

/// Size and count limits applied to everything a [`Session`] parses or holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes in one packet, fixed header included, in either direction.
    pub max_packet: usize,
    /// Most outgoing QoS 1/2 PUBLISHes unacknowledged at once; also the most
    /// incoming QoS 2 PUBLISHes held awaiting PUBREL.
    pub max_in_flight: usize,
    /// Most (owner, filter) subscriptions, pending ones included.
    pub max_subscriptions: usize,
    /// Most bytes in a topic name or filter (256 for AWS IoT).
    pub max_topic_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet: DEFAULT_MAX_PACKET,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_topic_len: MAX_TOPIC_LEN,
        }
    }
}

/// The last-will message the broker publishes if the connection is lost
/// without a DISCONNECT (policy `mqtt_will_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// Topic the will is published to (no wildcards).
    pub topic: String,
    /// Will payload.
    pub message: Vec<u8>,
    /// QoS the broker publishes the will with.
    pub qos: QoS,
    /// Whether the broker retains the will.
    pub retain: bool,
}

/// Everything CONNECT carries, plus the session's limits and timeouts.
///
/// The reference applies these per connection: streams sharing a connection
/// must agree on keep-alive, clean start and will.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Client identifier (at most [`MAX_CLIENT_ID_LEN`] bytes). The reference
    /// uses the system blob `MQTT_CLIENT_ID` when set, else 23 random
    /// characters from `[0-9a-zA-Z]` (and then forces a clean session). This
    /// machine has no randomness: the engine chooses.
    pub client_id: String,
    /// Keep-alive in seconds; 0 disables PINGREQ (policy `mqtt_keep_alive`).
    pub keep_alive_s: u16,
    /// Ask the broker to discard any earlier session (`mqtt_clean_start`).
    pub clean_session: bool,
    /// Last will, if any.
    pub will: Option<Will>,
    /// User name, if any.
    pub username: Option<String>,
    /// Password, if any (MQTT 3.1.1 requires a user name with it).
    pub password: Option<Vec<u8>>,
    /// Time allowed for CONNACK and for each PINGRESP before the connection
    /// counts as lost.
    pub response_timeout: Duration,
    /// Size and count limits.
    pub limits: Limits,
}

impl ConnectOptions {
    /// Options with this client id, a clean session, no will, no credentials,
    /// the given keep-alive and default limits and timeouts.
    pub fn new(client_id: impl Into<String>, keep_alive_s: u16) -> Self {
        ConnectOptions {
            client_id: client_id.into(),
            keep_alive_s,
            clean_session: true,
            will: None,
            username: None,
            password: None,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            limits: Limits::default(),
        }
    }
}

/// CONNACK return codes other than "accepted" (MQTT 3.1.1 §3.2.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// 1: unacceptable protocol version.
    ProtocolVersion,
    /// 2: client identifier rejected.
    IdentifierRejected,
    /// 3: server unavailable.
    ServerUnavailable,
    /// 4: bad user name or password.
    BadUsernamePassword,
    /// 5: not authorized.
    NotAuthorized,
}

impl ConnectRefusal {
    /// The return code on the wire.
    pub fn code(self) -> u8 {
        match self {
            ConnectRefusal::ProtocolVersion => 1,
            ConnectRefusal::IdentifierRejected => 2,
            ConnectRefusal::ServerUnavailable => 3,
            ConnectRefusal::BadUsernamePassword => 4,
            ConnectRefusal::NotAuthorized => 5,
        }
    }
}

/// Why an outgoing QoS 1/2 PUBLISH will never be acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NackReason {
    /// It was carried over to a session that connects with a clean session,
    /// so the broker has forgotten it.
    CleanSession,
    /// The engine gave up on carrying it to a new connection
    /// ([`Session::abandon_in_flight`]).
    Abandoned,
}

/// Something that happened on the session, for the engine to route to the
/// stream(s) named by `owner(s)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MqttEvent {
    /// CONNACK accepted the connection. Unacknowledged publishes carried over
    /// with [`Session::restore`] have been queued for retransmission.
    Connected {
        /// The broker still held a session for this client id.
        session_present: bool,
    },
    /// CONNACK refused the connection; the session is closed.
    ConnectRefused(ConnectRefusal),
    /// A PUBLISH arrived (QoS 2: reported once, on its first arrival).
    Message {
        /// Owners with a subscription whose filter matches `topic`, each once,
        /// in subscription order; empty if none does (e.g. a stored message
        /// arriving on a resumed session before anyone re-subscribed).
        owners: Vec<u64>,
        /// Topic name it was published to.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
        /// QoS it was delivered with.
        qos: QoS,
        /// The broker's retained message, sent because of a new subscription.
        retain: bool,
    },
    /// A QoS 1 PUBLISH got its PUBACK, or a QoS 2 one its PUBCOMP: the
    /// reference reports this as `QOS_ACK_REMOTE` to the owner.
    Acked {
        /// Who published it.
        owner: u64,
        /// Its packet id.
        pkid: PacketId,
    },
    /// A QoS 1/2 PUBLISH will never be acknowledged (`QOS_NACK_REMOTE`).
    Nacked {
        /// Who published it.
        owner: u64,
        /// Its packet id.
        pkid: PacketId,
        /// Why.
        reason: NackReason,
    },
    /// The broker granted a subscription (or the owner joined one the session
    /// already held, without a SUBSCRIBE on the wire).
    SubAcked {
        /// Who subscribed.
        owner: u64,
        /// The filter.
        filter: String,
        /// Maximum QoS granted.
        granted: QoS,
    },
    /// The broker refused a subscription (SUBACK return code 0x80).
    SubRefused {
        /// Who subscribed.
        owner: u64,
        /// The filter.
        filter: String,
    },
    /// The owner no longer holds the subscription (UNSUBACK received, or no
    /// UNSUBSCRIBE needed because other owners still use the filter).
    Unsubscribed {
        /// Who unsubscribed.
        owner: u64,
        /// The filter.
        filter: String,
    },
}

/// Why the session cannot go on, or why a call was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MqttError {
    /// A packet could not be decoded.
    Malformed(String),
    /// A packet (announced or to be sent) is larger than [`Limits::max_packet`].
    PacketTooLarge {
        /// Its size in bytes, fixed header included.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The broker sent a packet a client must not receive, or one out of
    /// order (e.g. anything before CONNACK).
    Protocol(&'static str),
    /// Too many unacknowledged QoS 1/2 PUBLISHes (or packet ids in use).
    TooManyInFlight,
    /// Too many subscriptions.
    TooManySubscriptions,
    /// A topic or filter is empty, too long or badly formed.
    InvalidTopic(String),
    /// A connect option cannot be sent (e.g. client id too long).
    InvalidOptions(&'static str),
    /// The call needs an accepted connection.
    NotConnected,
    /// The session is closed (refused, disconnected or failed).
    Closed,
    /// No CONNACK within the response timeout.
    ConnectTimeout,
    /// No PINGRESP within the response timeout: the connection is lost.
    KeepAliveTimeout,
}

impl fmt::Display for MqttError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqttError::Malformed(why) => write!(f, "mqtt: malformed packet: {why}"),
            MqttError::PacketTooLarge { len, max } => {
                write!(f, "mqtt: packet of {len} bytes exceeds the limit of {max}")
            }
            MqttError::Protocol(why) => write!(f, "mqtt: protocol violation: {why}"),
            MqttError::TooManyInFlight => f.write_str("mqtt: too many messages in flight"),
            MqttError::TooManySubscriptions => f.write_str("mqtt: too many subscriptions"),
            MqttError::InvalidTopic(why) => write!(f, "mqtt: invalid topic: {why}"),
            MqttError::InvalidOptions(why) => write!(f, "mqtt: invalid connect options: {why}"),
            MqttError::NotConnected => f.write_str("mqtt: not connected"),
            MqttError::Closed => f.write_str("mqtt: session closed"),
            MqttError::ConnectTimeout => f.write_str("mqtt: no CONNACK in time"),
            MqttError::KeepAliveTimeout => f.write_str("mqtt: no PINGRESP in time"),
        }
    }
}

impl std::error::Error for MqttError {}
