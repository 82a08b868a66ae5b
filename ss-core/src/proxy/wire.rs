//! The Serialized Secure Streams wire format (protocol version 1), both
//! directions, as typed messages with an encoder and a bounded incremental
//! decoder.
//!
//! Why: a proxy daemon lets many application processes share one engine over
//! a local byte stream (a Unix socket per stream). To let the reference's own
//! proxy clients (`lws_sspc_*`) talk to our daemon, and our clients talk to
//! the reference's proxy, every byte must match the reference's framing.
//!
//! What: every frame is `type (1) | rest-of-frame length (2, MSB first) |
//! body`. Client→proxy types start at `0xaa` ([`ToProxy`]), proxy→client
//! types at `0x55` ([`ToClient`]). All integers are big-endian. The layouts
//! were taken from the reference header's comments and checked against its
//! serializers and byte-wise deserializers; where the two disagree the
//! deserializers win (they are what a peer actually accepts) — see
//! `docs/proxy.md` for the tables and the differences.
//!
//! The version handshake is one byte: the client's first frame
//! ([`ToProxy::StreamtypeCreate`]) carries [`PROTOCOL_VERSION`]; a proxy that
//! does not speak it hangs up. There is no version reply; the proxy answers
//! with [`ToClient::CreateResult`].
//!
//! Decoding is pure and bounded: [`decode`] parses one frame from a
//! contiguous buffer, [`Decoder`] accepts any split of the byte stream and
//! never holds more than one frame (at most `3 + Limits::max_frame` bytes).
//! Bad input gives a [`WireError`], never a panic. Frames are checked as soon
//! as their type byte and length are known, so a hostile length is refused
//! before anything is buffered for it.

use crate::state::{Flags, StreamState};
use std::fmt;
use std::marker::PhantomData;

/// The protocol version this module speaks (the reference's `LWSSSS_VERSION`).
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes before every frame's body: type and the 2-byte length.
pub const FRAME_HEADER_LEN: usize = 3;
/// Largest body the 16-bit length field can describe.
pub const MAX_FRAME_BODY: usize = 0xffff;
/// Body bytes ahead of the data in a payload frame: flags (4), latency (4),
/// unix time (8).
pub const PAYLOAD_PREFIX_LEN: usize = 16;
/// Longest streamtype name: the reference proxy keeps it in `char[32]` with
/// its NUL.
pub const MAX_STREAMTYPE_LEN: usize = 31;
/// Longest metadata name: the reference parsers refuse a length byte of 31
/// or more (`metadata_name[32]`).
pub const MAX_METADATA_NAME_LEN: usize = 30;
/// Longest rideshare name in a payload frame (`rideshare[32]`).
pub const MAX_RIDESHARE_NAME_LEN: usize = 31;
/// Longest rideshare list in a create result: the reference client refuses
/// 128 or more (`rideshare_list[128]`).
pub const MAX_RIDESHARE_LIST_LEN: usize = 127;
/// Most commas in a rideshare list: the reference client indexes at most
/// four entries (`rideshare_ofs[4]`).
pub const MAX_RIDESHARE_LIST_COMMAS: usize = 3;
/// Most payload bytes a proxy should put in one `RX_PAYLOAD` frame for the
/// reference client. Its parser hands rx up in pieces of at most 1380 bytes,
/// and when a frame needs more than one piece it buffers them and then
/// delivers every piece with the frame's SOM and EOM flags: a 16 KiB frame
/// flagged SOM reaches the application as a dozen "starts of message". At
/// most this much per frame, a frame read whole is one delivery with its
/// flags exactly once. (The reference proxy's own frames are one onward read,
/// up to 1520 bytes for h1.) Not a decoding limit: frames up to
/// [`MAX_FRAME_BODY`] are valid.
pub const REF_CLIENT_RX_PIECE: usize = 1380;
/// Timeout value asking the proxy to use the policy's timeout.
pub const TIMEOUT_USE_POLICY: u32 = 0;
/// Timeout value asking the proxy to cancel the stream's timeout.
pub const TIMEOUT_CANCEL: u32 = 0xffff_ffff;

/// Message type bytes (the reference's `lws_sss_cmds_t`).
pub mod ty {
    /// Proxy→client: payload received from the onward connection.
    pub const RX_PAYLOAD: u8 = 0x55;
    /// Proxy→client: result of the streamtype creation.
    pub const CREATE_RESULT: u8 = 0x56;
    /// Proxy→client: the onward stream's state changed.
    pub const CONNSTATE: u8 = 0x57;
    /// Proxy→client: the peer granted tx credit.
    pub const RX_TXCR_UPDATE: u8 = 0x58;
    /// Proxy→client: metadata received on the onward connection.
    pub const RX_METADATA: u8 = 0x59;
    /// Proxy→client: reserved by the reference (TLS enclave signing), unused.
    pub const RX_TLSNEG_ENCLAVE_SIGN: u8 = 0x5a;
    /// Proxy→client: connection performance JSON.
    pub const PERF: u8 = 0x5b;
    /// Client→proxy: create a stream of a streamtype (first frame).
    pub const STREAMTYPE: u8 = 0xaa;
    /// Client→proxy: connect the onward stream.
    pub const ONWARD_CONNECT: u8 = 0xab;
    /// Client→proxy: the client stream is being destroyed.
    pub const DESTROYING: u8 = 0xac;
    /// Client→proxy: payload to send on the onward connection.
    pub const TX_PAYLOAD: u8 = 0xad;
    /// Client→proxy: one metadata item was set.
    pub const TX_METADATA: u8 = 0xae;
    /// Client→proxy: the client grants the peer more tx credit.
    pub const TX_TXCR_UPDATE: u8 = 0xaf;
    /// Client→proxy: start or cancel the stream timeout.
    pub const TIMEOUT_UPDATE: u8 = 0xb0;
    /// Client→proxy: length of the payload about to be sent.
    pub const PAYLOAD_LENGTH_HINT: u8 = 0xb1;
    /// Client→proxy: reserved by the reference (TLS enclave signed), unused.
    pub const TX_TLSNEG_ENCLAVE_SIGNED: u8 = 0xb2;
    /// Client→proxy: reserved by the reference (link validity probe), unused.
    pub const LINK_VALIDITY_PROBE: u8 = 0xb3;
}

/// Why a frame could not be decoded or encoded. After a decode error the
/// framing of the byte stream is lost: the connection must be closed (the
/// reference hangs up too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The type byte is not a message of this direction (includes the
    /// reference's reserved, never-sent types).
    UnknownType(u8),
    /// The length field is impossible for this message type.
    BadLength {
        /// Message type.
        ty: u8,
        /// The rest-of-frame length found (or needed, when encoding).
        len: usize,
    },
    /// The frame is longer than the configured [`Limits::max_frame`] (or, when
    /// encoding, than the 16-bit length field can say).
    TooLarge {
        /// Message type.
        ty: u8,
        /// The rest-of-frame length.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The client asked for a protocol version other than [`PROTOCOL_VERSION`].
    UnsupportedVersion(u8),
    /// A field inside the body is out of range or malformed.
    BadField {
        /// Message type.
        ty: u8,
        /// Which field and what is wrong with it.
        what: &'static str,
    },
    /// A state report carries an ordinal [`StreamState`] does not know.
    UnknownState(u32),
    /// The byte stream ended inside a frame.
    Truncated {
        /// Bytes of the frame held.
        have: usize,
        /// Bytes the frame needs (3 while the header is incomplete).
        need: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            WireError::BadLength { ty, len } => {
                write!(f, "message 0x{ty:02x}: impossible length {len}")
            }
            WireError::TooLarge { ty, len, max } => {
                write!(f, "message 0x{ty:02x}: length {len} exceeds {max}")
            }
            WireError::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            WireError::BadField { ty, what } => write!(f, "message 0x{ty:02x}: {what}"),
            WireError::UnknownState(s) => write!(f, "unknown stream state ordinal {s}"),
            WireError::Truncated { have, need } => {
                write!(f, "stream ended inside a frame ({have} of {need} bytes)")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// Decoder bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest rest-of-frame length accepted (everything after the 3-byte
    /// header). Defaults to [`MAX_FRAME_BODY`], the most the reference can
    /// send; lower it to bound memory per connection harder.
    pub max_frame: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: MAX_FRAME_BODY,
        }
    }
}

/// The body of a payload frame, the same in both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// Payload flags (SOM, EOM, ...). [`Flags::RIDESHARE`] must be set exactly
    /// when [`Payload::rideshare`] is `Some`.
    pub flags: Flags,
    /// Microseconds the sender held the payload before writing it (the
    /// reference proxy sends 0 here for rx).
    pub latency_us: u32,
    /// The sender's clock in microseconds when it wrote the frame. The
    /// reference header says unix time, but both reference sides write
    /// `lws_now_usecs()`, `CLOCK_MONOTONIC` on Linux; only its proxy reads
    /// it (hold-time metrics).
    pub unix_us: u64,
    /// Name of the non-default rideshare streamtype the payload belongs to;
    /// on the wire as a length byte and the name after the timestamps.
    pub rideshare: Option<String>,
    /// The payload itself.
    pub data: Vec<u8>,
}

impl Payload {
    /// Plain payload with flags and no timing or rideshare.
    pub fn new(data: Vec<u8>, flags: Flags) -> Self {
        Payload {
            flags,
            latency_us: 0,
            unix_us: 0,
            rideshare: None,
            data,
        }
    }
}

/// A message from a client (application process) to the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToProxy {
    /// `0xaa`: the first frame on a connection; create a stream of
    /// `streamtype` on the proxy. Carries the protocol version (always
    /// [`PROTOCOL_VERSION`], checked on decode).
    StreamtypeCreate {
        /// The client's process id (0 where the platform has none).
        pid: u32,
        /// Initial tx credit the client grants the peer (its rx window).
        initial_tx_credit: i32,
        /// The policy streamtype name (1..=31 bytes).
        streamtype: String,
    },
    /// `0xab`: connect the onward stream.
    OnwardConnect,
    /// `0xac`: the client is destroying its stream.
    Destroying,
    /// `0xad`: payload for the onward connection.
    TxPayload(Payload),
    /// `0xae`: one metadata item set on the client side.
    Metadata {
        /// Metadata name as in the policy (1..=30 bytes).
        name: String,
        /// Value (at least one byte: the reference cannot carry an empty one).
        value: Vec<u8>,
    },
    /// `0xaf`: the client grants the peer this much more tx credit.
    TxCreditUpdate(i32),
    /// `0xb0`: start the stream timeout (ms), [`TIMEOUT_USE_POLICY`] or
    /// [`TIMEOUT_CANCEL`].
    TimeoutUpdate(u32),
    /// `0xb1`: the length of the payload the client is about to send.
    PayloadLengthHint(u32),
}

/// A message from the proxy to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToClient {
    /// `0x55`: payload received on the onward connection.
    RxPayload(Payload),
    /// `0x56`: the answer to [`ToProxy::StreamtypeCreate`].
    CreateResult {
        /// 0: created; anything else: failed, the proxy closes the link.
        status: u8,
        /// Buffer size the client should allocate for this streamtype (from
        /// the policy's `client_buflen`, 0 = client default).
        client_buflen: u32,
        /// Comma-separated streamtype rideshare chain, as sent (the reference
        /// proxy sends a leading comma, then the streamtype and its
        /// rideshares); empty when absent.
        rideshare: String,
    },
    /// `0x57`: the onward stream's state changed.
    ConnState {
        /// The reference ordinal of the state (see [`StreamState`]; 1000 and
        /// up are policy-mapped user states, kept exactly).
        state: u32,
        /// The state's argument (ordinal / ack value).
        ack: u32,
    },
    /// `0x58`: the peer granted the client this much more tx credit.
    TxCreditUpdate(i32),
    /// `0x59`: metadata received on the onward connection.
    Metadata {
        /// Metadata name (1..=30 bytes).
        name: String,
        /// Value (at least one byte).
        value: Vec<u8>,
    },
    /// `0x5b`: connection performance information, JSON (at least one byte).
    Perf(Vec<u8>),
}

impl ToClient {
    /// A state report for `state` with argument `ack`.
    pub fn conn_state(state: StreamState, ack: u32) -> Self {
        ToClient::ConnState {
            state: state.ordinal(),
            ack,
        }
    }

    /// The [`StreamState`] a [`ToClient::ConnState`] reports (`None` for other
    /// messages).
    pub fn stream_state(&self) -> Option<StreamState> {
        match self {
            ToClient::ConnState { state, .. } => StreamState::from_ordinal(*state),
            _ => None,
        }
    }

    /// The rideshare names of a [`ToClient::CreateResult`], empty entries
    /// skipped.
    pub fn rideshare_names(&self) -> Vec<&str> {
        match self {
            ToClient::CreateResult { rideshare, .. } => {
                rideshare.split(',').filter(|s| !s.is_empty()).collect()
            }
            _ => vec![],
        }
    }
}

/// One direction's message set: what [`Decoder`] and [`decode`] need.
pub trait WireMessage: Sized {
    /// Whether `ty` is a message type of this direction.
    fn accepts(ty: u8) -> bool;
    /// Checks a rest-of-frame length against what type `ty` allows.
    fn check_len(ty: u8, len: usize) -> Result<(), WireError>;
    /// Decodes a complete body of type `ty`.
    fn decode_body(ty: u8, body: &[u8]) -> Result<Self, WireError>;
    /// Appends the encoded frame to `out`. On error nothing is appended.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError>;
}

// ---------------------------------------------------------------- reading

/// A cursor over a frame body that never panics.
struct Rd<'a> {
    b: &'a [u8],
    ty: u8,
}

impl<'a> Rd<'a> {
    fn short(&self) -> WireError {
        WireError::BadField {
            ty: self.ty,
            what: "body shorter than its fields",
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(self.short());
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        let (&v, rest) = self.b.split_first().ok_or_else(|| self.short())?;
        self.b = rest;
        Ok(v)
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let a: [u8; 4] = self.take(4)?.try_into().map_err(|_| self.short())?;
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let a: [u8; 8] = self.take(8)?.try_into().map_err(|_| self.short())?;
        Ok(u64::from_be_bytes(a))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
}

fn name_str(ty: u8, b: &[u8], what: &'static str) -> Result<String, WireError> {
    if b.contains(&0) {
        return Err(WireError::BadField { ty, what });
    }
    String::from_utf8(b.to_vec()).map_err(|_| WireError::BadField { ty, what })
}

fn check_name(ty: u8, name: &str, max: usize, what: &'static str) -> Result<(), WireError> {
    if name.is_empty() || name.len() > max || name.as_bytes().contains(&0) {
        return Err(WireError::BadField { ty, what });
    }
    Ok(())
}

fn check_rideshare_list(ty: u8, list: &str) -> Result<(), WireError> {
    if list.len() > MAX_RIDESHARE_LIST_LEN
        || list.as_bytes().contains(&0)
        || list.bytes().filter(|&c| c == b',').count() > MAX_RIDESHARE_LIST_COMMAS
    {
        return Err(WireError::BadField {
            ty,
            what: "rideshare list too long or too many entries",
        });
    }
    Ok(())
}

fn exact(ty: u8, len: usize, want: usize) -> Result<(), WireError> {
    if len == want {
        Ok(())
    } else {
        Err(WireError::BadLength { ty, len })
    }
}

fn at_least(ty: u8, len: usize, min: usize) -> Result<(), WireError> {
    if len >= min {
        Ok(())
    } else {
        Err(WireError::BadLength { ty, len })
    }
}

fn decode_payload(ty: u8, body: &[u8]) -> Result<Payload, WireError> {
    let mut r = Rd { b: body, ty };
    let flags = Flags(r.u32()?);
    let latency_us = r.u32()?;
    let unix_us = r.u64()?;
    let rideshare = if flags.contains(Flags::RIDESHARE) {
        let n = usize::from(r.u8()?);
        if n == 0 || n > MAX_RIDESHARE_NAME_LEN {
            return Err(WireError::BadField {
                ty,
                what: "rideshare name length out of range",
            });
        }
        let name = r.take(n)?;
        Some(name_str(ty, name, "rideshare name not UTF-8 or has NUL")?)
    } else {
        None
    };
    Ok(Payload {
        flags,
        latency_us,
        unix_us,
        rideshare,
        data: r.rest().to_vec(),
    })
}

fn decode_metadata(ty: u8, body: &[u8]) -> Result<(String, Vec<u8>), WireError> {
    let mut r = Rd { b: body, ty };
    let n = usize::from(r.u8()?);
    if n == 0 || n > MAX_METADATA_NAME_LEN {
        return Err(WireError::BadField {
            ty,
            what: "metadata name length out of range",
        });
    }
    let name = name_str(ty, r.take(n)?, "metadata name not UTF-8 or has NUL")?;
    let value = r.rest();
    if value.is_empty() {
        return Err(WireError::BadField {
            ty,
            what: "metadata value empty",
        });
    }
    Ok((name, value.to_vec()))
}

fn be_i32(ty: u8, body: &[u8]) -> Result<i32, WireError> {
    let mut r = Rd { b: body, ty };
    Ok(r.u32()? as i32)
}

fn be_u32(ty: u8, body: &[u8]) -> Result<u32, WireError> {
    let mut r = Rd { b: body, ty };
    r.u32()
}

// ---------------------------------------------------------------- writing

/// Writes `ty`, a length placeholder, runs `body`, then patches the length;
/// on any error `out` is restored.
fn frame(
    out: &mut Vec<u8>,
    ty: u8,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let start = out.len();
    out.extend_from_slice(&[ty, 0, 0]);
    let res = body(out).and_then(|()| {
        let len = out.len().saturating_sub(start + FRAME_HEADER_LEN);
        let l16 = u16::try_from(len).map_err(|_| WireError::TooLarge {
            ty,
            len,
            max: MAX_FRAME_BODY,
        })?;
        if let Some(slot) = out.get_mut(start + 1..start + 3) {
            slot.copy_from_slice(&l16.to_be_bytes());
        }
        Ok(())
    });
    if res.is_err() {
        out.truncate(start);
    }
    res
}

fn encode_payload(ty: u8, p: &Payload, out: &mut Vec<u8>) -> Result<(), WireError> {
    if p.flags.contains(Flags::RIDESHARE) != p.rideshare.is_some() {
        return Err(WireError::BadField {
            ty,
            what: "RIDESHARE flag and rideshare name disagree",
        });
    }
    if let Some(rs) = &p.rideshare {
        check_name(ty, rs, MAX_RIDESHARE_NAME_LEN, "rideshare name length")?;
    }
    frame(out, ty, |o| {
        o.extend_from_slice(&p.flags.0.to_be_bytes());
        o.extend_from_slice(&p.latency_us.to_be_bytes());
        o.extend_from_slice(&p.unix_us.to_be_bytes());
        if let Some(rs) = &p.rideshare {
            o.push(rs.len() as u8);
            o.extend_from_slice(rs.as_bytes());
        }
        o.extend_from_slice(&p.data);
        Ok(())
    })
}

fn encode_metadata(ty: u8, name: &str, value: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    check_name(ty, name, MAX_METADATA_NAME_LEN, "metadata name length")?;
    if value.is_empty() {
        return Err(WireError::BadField {
            ty,
            what: "metadata value empty",
        });
    }
    frame(out, ty, |o| {
        o.push(name.len() as u8);
        o.extend_from_slice(name.as_bytes());
        o.extend_from_slice(value);
        Ok(())
    })
}

fn encode_u32(ty: u8, v: u32, out: &mut Vec<u8>) -> Result<(), WireError> {
    frame(out, ty, |o| {
        o.extend_from_slice(&v.to_be_bytes());
        Ok(())
    })
}

// ---------------------------------------------------------------- directions

impl WireMessage for ToProxy {
    fn accepts(t: u8) -> bool {
        (ty::STREAMTYPE..=ty::PAYLOAD_LENGTH_HINT).contains(&t)
    }

    fn check_len(t: u8, len: usize) -> Result<(), WireError> {
        match t {
            // version 1 + pid 4 + credit 4 + at least one name byte
            ty::STREAMTYPE => {
                at_least(t, len, 10)?;
                if len > 9 + MAX_STREAMTYPE_LEN {
                    return Err(WireError::BadLength { ty: t, len });
                }
                Ok(())
            }
            ty::ONWARD_CONNECT | ty::DESTROYING => exact(t, len, 0),
            ty::TX_PAYLOAD => at_least(t, len, PAYLOAD_PREFIX_LEN),
            // name length byte, a name byte, a value byte
            ty::TX_METADATA => at_least(t, len, 3),
            ty::TX_TXCR_UPDATE | ty::TIMEOUT_UPDATE | ty::PAYLOAD_LENGTH_HINT => exact(t, len, 4),
            _ => Err(WireError::UnknownType(t)),
        }
    }

    fn decode_body(t: u8, body: &[u8]) -> Result<Self, WireError> {
        Self::check_len(t, body.len())?;
        match t {
            ty::STREAMTYPE => {
                let mut r = Rd { b: body, ty: t };
                let v = r.u8()?;
                if v != PROTOCOL_VERSION {
                    return Err(WireError::UnsupportedVersion(v));
                }
                let pid = r.u32()?;
                let initial_tx_credit = r.u32()? as i32;
                let streamtype = name_str(t, r.rest(), "streamtype not UTF-8 or has NUL")?;
                Ok(ToProxy::StreamtypeCreate {
                    pid,
                    initial_tx_credit,
                    streamtype,
                })
            }
            ty::ONWARD_CONNECT => Ok(ToProxy::OnwardConnect),
            ty::DESTROYING => Ok(ToProxy::Destroying),
            ty::TX_PAYLOAD => Ok(ToProxy::TxPayload(decode_payload(t, body)?)),
            ty::TX_METADATA => {
                let (name, value) = decode_metadata(t, body)?;
                Ok(ToProxy::Metadata { name, value })
            }
            ty::TX_TXCR_UPDATE => Ok(ToProxy::TxCreditUpdate(be_i32(t, body)?)),
            ty::TIMEOUT_UPDATE => Ok(ToProxy::TimeoutUpdate(be_u32(t, body)?)),
            ty::PAYLOAD_LENGTH_HINT => Ok(ToProxy::PayloadLengthHint(be_u32(t, body)?)),
            _ => Err(WireError::UnknownType(t)),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            ToProxy::StreamtypeCreate {
                pid,
                initial_tx_credit,
                streamtype,
            } => {
                let t = ty::STREAMTYPE;
                check_name(t, streamtype, MAX_STREAMTYPE_LEN, "streamtype length")?;
                frame(out, t, |o| {
                    o.push(PROTOCOL_VERSION);
                    o.extend_from_slice(&pid.to_be_bytes());
                    o.extend_from_slice(&initial_tx_credit.to_be_bytes());
                    o.extend_from_slice(streamtype.as_bytes());
                    Ok(())
                })
            }
            ToProxy::OnwardConnect => frame(out, ty::ONWARD_CONNECT, |_| Ok(())),
            ToProxy::Destroying => frame(out, ty::DESTROYING, |_| Ok(())),
            ToProxy::TxPayload(p) => encode_payload(ty::TX_PAYLOAD, p, out),
            ToProxy::Metadata { name, value } => encode_metadata(ty::TX_METADATA, name, value, out),
            ToProxy::TxCreditUpdate(c) => encode_u32(ty::TX_TXCR_UPDATE, *c as u32, out),
            ToProxy::TimeoutUpdate(ms) => encode_u32(ty::TIMEOUT_UPDATE, *ms, out),
            ToProxy::PayloadLengthHint(n) => encode_u32(ty::PAYLOAD_LENGTH_HINT, *n, out),
        }
    }
}

impl WireMessage for ToClient {
    fn accepts(t: u8) -> bool {
        (ty::RX_PAYLOAD..=ty::PERF).contains(&t) && t != ty::RX_TLSNEG_ENCLAVE_SIGN
    }

    fn check_len(t: u8, len: usize) -> Result<(), WireError> {
        match t {
            ty::RX_PAYLOAD => at_least(t, len, PAYLOAD_PREFIX_LEN),
            // status 1 + buflen 4 + list
            ty::CREATE_RESULT => {
                at_least(t, len, 5)?;
                if len > 5 + MAX_RIDESHARE_LIST_LEN {
                    return Err(WireError::BadLength { ty: t, len });
                }
                Ok(())
            }
            // state index 1..=4 bytes + ack 4
            ty::CONNSTATE => {
                if (5..=8).contains(&len) {
                    Ok(())
                } else {
                    Err(WireError::BadLength { ty: t, len })
                }
            }
            ty::RX_TXCR_UPDATE => exact(t, len, 4),
            ty::RX_METADATA => at_least(t, len, 3),
            ty::PERF => at_least(t, len, 1),
            _ => Err(WireError::UnknownType(t)),
        }
    }

    fn decode_body(t: u8, body: &[u8]) -> Result<Self, WireError> {
        Self::check_len(t, body.len())?;
        match t {
            ty::RX_PAYLOAD => Ok(ToClient::RxPayload(decode_payload(t, body)?)),
            ty::CREATE_RESULT => {
                let mut r = Rd { b: body, ty: t };
                let status = r.u8()?;
                let client_buflen = r.u32()?;
                let rideshare = name_str(t, r.rest(), "rideshare list not UTF-8 or has NUL")?;
                check_rideshare_list(t, &rideshare)?;
                Ok(ToClient::CreateResult {
                    status,
                    client_buflen,
                    rideshare,
                })
            }
            ty::CONNSTATE => {
                let (idx, ack) = body.split_at(body.len().saturating_sub(4));
                let state = idx.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
                if StreamState::from_ordinal(state).is_none() {
                    return Err(WireError::UnknownState(state));
                }
                Ok(ToClient::ConnState {
                    state,
                    ack: be_u32(t, ack)?,
                })
            }
            ty::RX_TXCR_UPDATE => Ok(ToClient::TxCreditUpdate(be_i32(t, body)?)),
            ty::RX_METADATA => {
                let (name, value) = decode_metadata(t, body)?;
                Ok(ToClient::Metadata { name, value })
            }
            ty::PERF => Ok(ToClient::Perf(body.to_vec())),
            _ => Err(WireError::UnknownType(t)),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            ToClient::RxPayload(p) => encode_payload(ty::RX_PAYLOAD, p, out),
            ToClient::CreateResult {
                status,
                client_buflen,
                rideshare,
            } => {
                let t = ty::CREATE_RESULT;
                check_rideshare_list(t, rideshare)?;
                frame(out, t, |o| {
                    o.push(*status);
                    o.extend_from_slice(&client_buflen.to_be_bytes());
                    o.extend_from_slice(rideshare.as_bytes());
                    Ok(())
                })
            }
            ToClient::ConnState { state, ack } => {
                let t = ty::CONNSTATE;
                if StreamState::from_ordinal(*state).is_none() {
                    return Err(WireError::UnknownState(*state));
                }
                frame(out, t, |o| {
                    // one byte when it fits, else four (as the reference proxy)
                    match u8::try_from(*state) {
                        Ok(b) => o.push(b),
                        Err(_) => o.extend_from_slice(&state.to_be_bytes()),
                    }
                    o.extend_from_slice(&ack.to_be_bytes());
                    Ok(())
                })
            }
            ToClient::TxCreditUpdate(c) => encode_u32(ty::RX_TXCR_UPDATE, *c as u32, out),
            ToClient::Metadata { name, value } => {
                encode_metadata(ty::RX_METADATA, name, value, out)
            }
            ToClient::Perf(json) => {
                if json.is_empty() {
                    return Err(WireError::BadLength {
                        ty: ty::PERF,
                        len: 0,
                    });
                }
                frame(out, ty::PERF, |o| {
                    o.extend_from_slice(json);
                    Ok(())
                })
            }
        }
    }
}

// ---------------------------------------------------------------- decoding

/// Checks a frame header as far as `head` (1..=3 bytes) goes; returns the
/// rest-of-frame length once all three bytes are there.
fn check_head<M: WireMessage>(head: &[u8], limits: &Limits) -> Result<Option<usize>, WireError> {
    let Some(&t) = head.first() else {
        return Ok(None);
    };
    if !M::accepts(t) {
        return Err(WireError::UnknownType(t));
    }
    let (Some(&hi), Some(&lo)) = (head.get(1), head.get(2)) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    M::check_len(t, len)?;
    if len > limits.max_frame {
        return Err(WireError::TooLarge {
            ty: t,
            len,
            max: limits.max_frame,
        });
    }
    Ok(Some(len))
}

/// Decodes one frame from the front of `buf`: `Ok(None)` if `buf` holds only
/// part of a frame (nothing is wrong yet), else the message and the bytes it
/// used. Errors are reported as early as the bytes allow.
pub fn decode<M: WireMessage>(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(M, usize)>, WireError> {
    let Some(len) = check_head::<M>(buf, limits)? else {
        return Ok(None);
    };
    let end = FRAME_HEADER_LEN.saturating_add(len);
    let (Some(&t), Some(body)) = (buf.first(), buf.get(FRAME_HEADER_LEN..end)) else {
        return Ok(None);
    };
    Ok(Some((M::decode_body(t, body)?, end)))
}

/// Incremental decoder for one direction: takes the byte stream in any
/// pieces and yields whole messages.
///
/// It holds at most one frame (`3 + Limits::max_frame` bytes) and at most one
/// decoded message: [`Decoder::feed`] stops consuming input once a message is
/// ready, until [`Decoder::poll`] takes it. After an error every call returns
/// the same error (the stream's framing is lost).
#[derive(Debug)]
pub struct Decoder<M> {
    limits: Limits,
    buf: Vec<u8>,
    want: Option<usize>,
    ready: Option<M>,
    failed: Option<WireError>,
    _m: PhantomData<fn() -> M>,
}

/// Decoder the proxy runs on a client connection.
pub type ToProxyDecoder = Decoder<ToProxy>;
/// Decoder a client runs on its proxy connection.
pub type ToClientDecoder = Decoder<ToClient>;

impl<M: WireMessage> Default for Decoder<M> {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl<M: WireMessage> Decoder<M> {
    /// A decoder with `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            buf: Vec::new(),
            want: None,
            ready: None,
            failed: None,
            _m: PhantomData,
        }
    }

    /// Consumes bytes from the front of `input` up to the end of the current
    /// frame; returns how many it used. Uses nothing while a decoded message
    /// waits for [`Decoder::poll`]. Feed the rest of `input` after polling.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.ready.is_some() {
            return Ok(0);
        }
        match self.step(input) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.buf = Vec::new();
                self.want = None;
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn step(&mut self, input: &[u8]) -> Result<usize, WireError> {
        let mut used = 0;
        let mut rest = input;
        let len = loop {
            if let Some(len) = self.want {
                break len;
            }
            let Some((&b, tail)) = rest.split_first() else {
                return Ok(used);
            };
            self.buf.push(b);
            rest = tail;
            used += 1;
            self.want = check_head::<M>(&self.buf, &self.limits)?;
        };
        let total = FRAME_HEADER_LEN.saturating_add(len);
        let need = total.saturating_sub(self.buf.len());
        let n = need.min(rest.len());
        if let Some(chunk) = rest.get(..n) {
            self.buf.extend_from_slice(chunk);
        }
        used += n;
        if self.buf.len() >= total {
            let t = self.buf.first().copied().unwrap_or_default();
            let body = self.buf.get(FRAME_HEADER_LEN..total).unwrap_or_default();
            let msg = M::decode_body(t, body)?;
            self.buf.clear();
            self.want = None;
            self.ready = Some(msg);
        }
        Ok(used)
    }

    /// The message completed by the last [`Decoder::feed`], if any.
    pub fn poll(&mut self) -> Option<M> {
        self.ready.take()
    }

    /// Convenience loop step: feeds from `input` (advancing it) until a
    /// message is complete or `input` is used up.
    pub fn next(&mut self, input: &mut &[u8]) -> Result<Option<M>, WireError> {
        if let Some(m) = self.poll() {
            return Ok(Some(m));
        }
        let n = self.feed(input)?;
        *input = input.get(n..).unwrap_or_default();
        Ok(self.poll())
    }

    /// Whether the decoder sits between frames (no partial frame held).
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.failed.is_none()
    }

    /// Call when the byte stream ends: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let need = self
            .want
            .map_or(FRAME_HEADER_LEN, |l| FRAME_HEADER_LEN.saturating_add(l));
        Err(WireError::Truncated {
            have: self.buf.len(),
            need,
        })
    }
}
