//! Stream states, payload flags and callback return codes, numbered as in the
//! reference (`lws_ss_constate_t`, `LWSSS_FLAG_*`, `lws_ss_state_return_t`) so
//! logs, proxies and ported code agree on the numbers.

use std::fmt;

/// The state of a logical stream, with the reference's ordinal as discriminant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum StreamState {
    /// The stream object was just created (LWSSSCS_CREATING).
    Creating = 1,
    /// A connection carrying the stream went away (LWSSSCS_DISCONNECTED).
    Disconnected = 2,
    /// A connection attempt failed: DNS, refused, timed out (LWSSSCS_UNREACHABLE).
    Unreachable = 3,
    /// The peer refused our credentials (LWSSSCS_AUTH_FAILED).
    AuthFailed = 4,
    /// The stream has a connection and may move payload (LWSSSCS_CONNECTED).
    Connected = 5,
    /// A connection attempt is under way (LWSSSCS_CONNECTING).
    Connecting = 6,
    /// The stream is being destroyed; last state it reports (LWSSSCS_DESTROYING).
    Destroying = 7,
    /// A tx request on an idle stream is about to connect (LWSSSCS_POLL).
    Poll = 8,
    /// The retry policy is exhausted; idle until the next connect (LWSSSCS_ALL_RETRIES_FAILED).
    AllRetriesFailed = 9,
    /// The remote peer acknowledged the transaction (LWSSSCS_QOS_ACK_REMOTE).
    QosAckRemote = 10,
    /// The remote peer refused the transaction (LWSSSCS_QOS_NACK_REMOTE).
    QosNackRemote = 11,
    /// The local proxy accepted our tx (LWSSSCS_QOS_ACK_LOCAL).
    QosAckLocal = 12,
    /// The local proxy refused our tx (LWSSSCS_QOS_NACK_LOCAL).
    QosNackLocal = 13,
    /// The timeout set with `start_timeout` fired (LWSSSCS_TIMEOUT).
    Timeout = 14,
    /// A server transaction is ready for its response metadata (LWSSSCS_SERVER_TXN).
    ServerTxn = 15,
    /// The server connection upgraded its protocol (LWSSSCS_SERVER_UPGRADE).
    ServerUpgrade = 16,
    /// The event loop was woken by a cancel request (LWSSSCS_EVENT_WAIT_CANCELLED).
    EventWaitCancelled = 17,
    /// A proxied stream waits for the link to the proxy (LWSSSCS_UPSTREAM_LINK_RETRY).
    UpstreamLinkRetry = 18,
    /// A source stream joined a sink (LWSSSCS_SINK_JOIN).
    SinkJoin = 19,
    /// A source stream left a sink (LWSSSCS_SINK_PART).
    SinkPart = 20,
    /// An application state mapped by the policy (LWSSSCS_USER_BASE and up,
    /// e.g. `http_resp_map` turning status 530 into 1530). The mapped number
    /// travels in the event's `ack`; it never replaces the stream's last state.
    User = 1000,
}

impl StreamState {
    /// Every state, in ordinal order.
    pub const ALL: [StreamState; 20] = [
        Self::Creating,
        Self::Disconnected,
        Self::Unreachable,
        Self::AuthFailed,
        Self::Connected,
        Self::Connecting,
        Self::Destroying,
        Self::Poll,
        Self::AllRetriesFailed,
        Self::QosAckRemote,
        Self::QosNackRemote,
        Self::QosAckLocal,
        Self::QosNackLocal,
        Self::Timeout,
        Self::ServerTxn,
        Self::ServerUpgrade,
        Self::EventWaitCancelled,
        Self::UpstreamLinkRetry,
        Self::SinkJoin,
        Self::SinkPart,
    ];

    /// The reference's ordinal for this state.
    pub fn ordinal(self) -> u32 {
        self as u32
    }

    /// The state with the given reference ordinal, if any.
    pub fn from_ordinal(n: u32) -> Option<Self> {
        if n >= Self::User.ordinal() {
            return Some(Self::User);
        }
        Self::ALL.get((n as usize).checked_sub(1)?).copied()
    }

    /// The reference's name, e.g. `LWSSSCS_ALL_RETRIES_FAILED`.
    pub fn lws_name(self) -> &'static str {
        match self {
            Self::Creating => "LWSSSCS_CREATING",
            Self::Disconnected => "LWSSSCS_DISCONNECTED",
            Self::Unreachable => "LWSSSCS_UNREACHABLE",
            Self::AuthFailed => "LWSSSCS_AUTH_FAILED",
            Self::Connected => "LWSSSCS_CONNECTED",
            Self::Connecting => "LWSSSCS_CONNECTING",
            Self::Destroying => "LWSSSCS_DESTROYING",
            Self::Poll => "LWSSSCS_POLL",
            Self::AllRetriesFailed => "LWSSSCS_ALL_RETRIES_FAILED",
            Self::QosAckRemote => "LWSSSCS_QOS_ACK_REMOTE",
            Self::QosNackRemote => "LWSSSCS_QOS_NACK_REMOTE",
            Self::QosAckLocal => "LWSSSCS_QOS_ACK_LOCAL",
            Self::QosNackLocal => "LWSSSCS_QOS_NACK_LOCAL",
            Self::Timeout => "LWSSSCS_TIMEOUT",
            Self::ServerTxn => "LWSSSCS_SERVER_TXN",
            Self::ServerUpgrade => "LWSSSCS_SERVER_UPGRADE",
            Self::EventWaitCancelled => "LWSSSCS_EVENT_WAIT_CANCELLED",
            Self::UpstreamLinkRetry => "LWSSSCS_UPSTREAM_LINK_RETRY",
            Self::SinkJoin => "LWSSSCS_SINK_JOIN",
            Self::SinkPart => "LWSSSCS_SINK_PART",
            Self::User => "LWSSSCS_USER_BASE",
        }
    }

    /// Whether the reference allows moving from `prev` (None: a new stream) to `self`.
    ///
    /// This is the reference's `ss_state_txn_validity` table; the engine never
    /// reports a transition it rejects, and the simulation checks that.
    pub fn is_legal_after(self, prev: Option<StreamState>) -> bool {
        use StreamState::*;
        if self == User {
            return true;
        }
        let allowed: &[StreamState] = match prev {
            None => &[Creating, Destroying],
            Some(Creating) => &[Connecting, Timeout, Poll, ServerUpgrade, Destroying],
            Some(Disconnected) => &[
                Connecting,
                Connected,
                Timeout,
                Poll,
                Destroying,
                Unreachable,
            ],
            Some(Unreachable) => &[
                AllRetriesFailed,
                Timeout,
                Poll,
                Unreachable,
                Connecting,
                Connected,
                Destroying,
            ],
            Some(AuthFailed) => &[AllRetriesFailed, Timeout, Connecting, Destroying],
            Some(Connected) => &[
                ServerUpgrade,
                ServerTxn,
                AuthFailed,
                QosAckRemote,
                QosNackRemote,
                QosAckLocal,
                QosNackLocal,
                Disconnected,
                Timeout,
                Connecting,
                Poll,
                Destroying,
            ],
            Some(Connecting) => &[
                Unreachable,
                AuthFailed,
                Connecting,
                Connected,
                QosAckRemote,
                QosNackRemote,
                Timeout,
                Poll,
                AllRetriesFailed,
                Disconnected,
                Destroying,
            ],
            Some(Destroying) => &[],
            Some(Poll) => &[Connecting, Timeout, AllRetriesFailed, Destroying],
            Some(AllRetriesFailed) => &[Connecting, Poll, Timeout, Unreachable, Destroying],
            Some(QosAckRemote) => &[
                Disconnected,
                Timeout,
                Connecting,
                QosAckRemote,
                QosNackRemote,
                Destroying,
            ],
            Some(QosNackRemote) => &[
                Disconnected,
                Timeout,
                QosAckRemote,
                QosNackRemote,
                Destroying,
            ],
            Some(QosAckLocal) => &[Disconnected, Timeout, Destroying],
            Some(QosNackLocal) => &[Destroying, Timeout],
            Some(Timeout) => &[
                Connecting,
                Connected,
                QosAckRemote,
                QosNackRemote,
                Poll,
                Timeout,
                Disconnected,
                Unreachable,
                Destroying,
            ],
            Some(ServerTxn) => &[Disconnected, Timeout, ServerTxn, Destroying],
            Some(ServerUpgrade) => &[ServerUpgrade, ServerTxn, Timeout, Disconnected, Destroying],
            // Advisory states outside the reference table: anything may follow.
            Some(EventWaitCancelled | UpstreamLinkRetry | SinkJoin | SinkPart | User) => {
                return true
            }
        };
        allowed.contains(&self)
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.lws_name(), self.ordinal())
    }
}

/// Payload flags carried with rx and tx, with the reference's bit values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u32);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// The payload starts a message (LWSSS_FLAG_SOM).
    pub const SOM: Flags = Flags(1 << 0);
    /// The payload ends a message (LWSSS_FLAG_EOM).
    pub const EOM: Flags = Flags(1 << 1);
    /// Not real payload: a poll for rx (LWSSS_FLAG_POLL).
    pub const POLL: Flags = Flags(1 << 2);
    /// A group of related messages starts (LWSSS_FLAG_RELATED_START).
    pub const RELATED_START: Flags = Flags(1 << 3);
    /// A group of related messages ends (LWSSS_FLAG_RELATED_END).
    pub const RELATED_END: Flags = Flags(1 << 4);
    /// The payload belongs to a rideshare streamtype (LWSSS_FLAG_RIDESHARE).
    pub const RIDESHARE: Flags = Flags(1 << 5);
    /// The payload is connection performance JSON (LWSSS_FLAG_PERF_JSON).
    pub const PERF_JSON: Flags = Flags(1 << 6);

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// What a callback asks of its caller, as the reference's `lws_ss_state_return_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum SsRet {
    /// tx only: this opportunity to send was passed on (LWSSSSRET_TX_DONT_SEND).
    TxDontSend = 1,
    /// Carry on (LWSSSSRET_OK).
    Ok = 0,
    /// Close the current connection (LWSSSSRET_DISCONNECT_ME).
    DisconnectMe = -1,
    /// The caller should destroy the stream (LWSSSSRET_DESTROY_ME).
    DestroyMe = -2,
    /// The callback already destroyed the stream (LWSSSSRET_SS_HANDLE_DESTROYED).
    HandleDestroyed = -3,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_match_reference() {
        assert_eq!(StreamState::Creating.ordinal(), 1);
        assert_eq!(StreamState::Unreachable.ordinal(), 3);
        assert_eq!(StreamState::Connected.ordinal(), 5);
        assert_eq!(StreamState::AllRetriesFailed.ordinal(), 9);
        assert_eq!(StreamState::Timeout.ordinal(), 14);
        assert_eq!(StreamState::ServerUpgrade.ordinal(), 16);
        assert_eq!(StreamState::SinkPart.ordinal(), 20);
        for s in StreamState::ALL {
            assert_eq!(StreamState::from_ordinal(s.ordinal()), Some(s));
        }
        assert_eq!(StreamState::from_ordinal(0), None);
        assert_eq!(StreamState::from_ordinal(21), None);
    }

    #[test]
    fn transition_table_spot_checks() {
        use StreamState::*;
        assert!(Creating.is_legal_after(None));
        assert!(!Connected.is_legal_after(None));
        assert!(Connecting.is_legal_after(Some(Creating)));
        assert!(!Connected.is_legal_after(Some(Creating)));
        assert!(AllRetriesFailed.is_legal_after(Some(Unreachable)));
        assert!(!AllRetriesFailed.is_legal_after(Some(Disconnected)));
        assert!(!Creating.is_legal_after(Some(Destroying)));
    }
}
