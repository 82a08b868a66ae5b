//! WebSocket (RFC 6455): the opening handshake helpers and a streaming frame
//! machine, both pure.
//!
//! Frame headers are parsed and written by tungstenite's `FrameHeader`;
//! payload streams through without being buffered whole: a frame's payload
//! is unmasked and handed up as it arrives, so memory stays bounded by the
//! input chunk plus one header (14 bytes) or one control frame (125 bytes),
//! whatever the frame or message size. Messages map to payload flags: SOM on
//! the first piece of a message, EOM on the last piece of its final frame
//! (so a fragmented message gives SOM on the first fragment, EOM on the last).
//!
//! Pings are answered inside; a peer's Close is answered with a Close and
//! reported; protocol violations send a Close with the RFC's code (1002
//! protocol error, 1007 invalid UTF-8 in text, 1009 too big) and return a
//! [`WsError`]. A client masks with a mask stream from the seed it is given
//! (the core has no randomness of its own), so runs replay.

use crate::proto::h1::{self, HeadBuf, HeadStep, Limits};
use crate::state::Flags;
use std::fmt;
use std::io::Cursor;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Default bound on one frame's payload (64 MiB): larger frames are refused (1009).
pub const DEFAULT_MAX_FRAME: u64 = 64 << 20;
/// Default bound on one message (all its fragments, 256 MiB).
pub const DEFAULT_MAX_MESSAGE: u64 = 256 << 20;
/// Largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

/// Which end of the connection the machine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Masks what it sends; refuses masked frames.
    Client,
    /// Requires masked frames; sends unmasked.
    Server,
}

/// Limits and identity of a frame machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WsConfig {
    /// Client or server.
    pub role: Role,
    /// Largest frame payload accepted.
    pub max_frame: u64,
    /// Largest message accepted (sum of its fragments).
    pub max_message: u64,
    /// Seed of the client's mask stream.
    pub mask_seed: u64,
}

impl WsConfig {
    /// Default limits for `role`.
    pub fn new(role: Role, mask_seed: u64) -> Self {
        WsConfig {
            role,
            max_frame: DEFAULT_MAX_FRAME,
            max_message: DEFAULT_MAX_MESSAGE,
            mask_seed,
        }
    }
}

/// What the frame machine reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// A piece of a message (SOM on its first piece, EOM on its last).
    Data {
        /// Payload bytes (unmasked).
        data: Vec<u8>,
        /// SOM / EOM.
        flags: Flags,
        /// The message is text (opcode 1) rather than binary.
        text: bool,
    },
    /// A Pong arrived (an answer to our ping).
    Pong(Vec<u8>),
    /// The closing handshake is complete or was started by the peer (our
    /// answering Close is already in the output).
    Closed {
        /// The peer's close code (1005 when it gave none).
        code: u16,
        /// The peer's reason.
        reason: String,
    },
}

/// Output of a machine call: bytes for the wire and events, in order.
#[derive(Debug, Default)]
pub struct WsOut {
    /// Bytes to send.
    pub transmit: Vec<u8>,
    /// Events for the engine.
    pub events: Vec<WsEvent>,
}

/// A WebSocket protocol violation or limit breach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsError {
    /// Framing or sequencing broke the protocol (close code 1002).
    Protocol(String),
    /// A text message was not UTF-8 (1007).
    InvalidUtf8,
    /// A frame or message exceeded its limit (1009).
    TooBig(&'static str),
    /// The opening handshake failed.
    Handshake(String),
    /// The call does not fit the machine's state (e.g. writing after Close).
    Closed,
}

impl WsError {
    /// The close code this error is reported to the peer with.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) | WsError::Handshake(_) | WsError::Closed => 1002,
            WsError::InvalidUtf8 => 1007,
            WsError::TooBig(_) => 1009,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Protocol(m) => write!(f, "ws: protocol error: {m}"),
            WsError::InvalidUtf8 => f.write_str("ws: text message is not valid UTF-8"),
            WsError::TooBig(what) => write!(f, "ws: {what} too big"),
            WsError::Handshake(m) => write!(f, "ws: handshake failed: {m}"),
            WsError::Closed => f.write_str("ws: connection is closing"),
        }
    }
}

impl std::error::Error for WsError {}

#[derive(Debug)]
enum Rx {
    /// Waiting for (the rest of) a frame header.
    Header,
    /// Streaming a data frame's payload.
    Data {
        remaining: u64,
        mask: Option<[u8; 4]>,
        mask_off: usize,
        fin: bool,
    },
    /// Collecting a control frame's payload (at most 125 bytes).
    Control {
        op: Control,
        remaining: usize,
        mask: Option<[u8; 4]>,
        payload: Vec<u8>,
    },
    /// A Close was received or a violation seen: input is ignored.
    Done,
}

/// The frame machine for one connection, after the opening handshake.
#[derive(Debug)]
pub struct Ws {
    cfg: WsConfig,
    inbuf: Vec<u8>,
    rx: Rx,
    /// Inside a received message, and whether it is text.
    rx_msg: Option<bool>,
    rx_msg_len: u64,
    rx_som_pending: bool,
    /// Bytes of an incomplete UTF-8 sequence at the end of the last text piece.
    utf8_carry: Vec<u8>,
    /// Inside a message we are sending.
    tx_in_msg: bool,
    close_sent: bool,
    mask_state: u64,
}

impl Ws {
    /// A machine for a connection whose handshake is done.
    pub fn new(cfg: WsConfig) -> Self {
        Ws {
            cfg,
            inbuf: Vec::new(),
            rx: Rx::Header,
            rx_msg: None,
            rx_msg_len: 0,
            rx_som_pending: false,
            utf8_carry: Vec::new(),
            tx_in_msg: false,
            close_sent: false,
            mask_state: cfg.mask_seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Whether we have sent a Close (no more data may be written).
    pub fn is_closing(&self) -> bool {
        self.close_sent
    }

    /// Whether a message we are sending is unfinished.
    pub fn in_message(&self) -> bool {
        self.tx_in_msg
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // splitmix64: a deterministic mask stream from the seed.
        self.mask_state = self.mask_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.mask_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let b = (z ^ (z >> 31)).to_le_bytes();
        [b[0], b[1], b[2], b[3]] // ok: b is an [u8; 8]
    }

    fn frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8], out: &mut Vec<u8>) {
        let mask = (self.cfg.role == Role::Client).then(|| self.next_mask());
        let header = FrameHeader {
            is_final: fin,
            opcode,
            mask,
            ..FrameHeader::default()
        };
        // ok: writing to a Vec cannot fail.
        let _ = header.format(payload.len() as u64, out);
        let start = out.len();
        out.extend_from_slice(payload);
        if let (Some(m), Some(p)) = (mask, out.get_mut(start..)) {
            apply_mask(p, m, 0);
        }
    }

    /// Send message payload: text unless `binary`; EOM ends the message.
    pub fn write(
        &mut self,
        data: &[u8],
        binary: bool,
        flags: Flags,
        out: &mut WsOut,
    ) -> Result<(), WsError> {
        if self.close_sent {
            return Err(WsError::Closed);
        }
        let fin = flags.contains(Flags::EOM);
        let opcode = if self.tx_in_msg {
            OpCode::Data(Data::Continue)
        } else if binary {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Text)
        };
        if !fin && data.is_empty() && self.tx_in_msg {
            return Ok(());
        }
        self.frame(opcode, fin, data, &mut out.transmit);
        self.tx_in_msg = !fin;
        Ok(())
    }

    /// Send a Ping.
    pub fn ping(&mut self, payload: &[u8], out: &mut WsOut) -> Result<(), WsError> {
        if self.close_sent {
            return Err(WsError::Closed);
        }
        let p = payload.get(..payload.len().min(MAX_CONTROL)).unwrap_or(&[]);
        self.frame(OpCode::Control(Control::Ping), true, p, &mut out.transmit);
        Ok(())
    }

    /// Start (or answer) the closing handshake with `code` and `reason`.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut WsOut) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        let mut p = code.to_be_bytes().to_vec();
        let mut r = reason;
        while r.len() > MAX_CONTROL - 2 {
            // Cut at a character boundary.
            let mut end = MAX_CONTROL - 2;
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r = r.get(..end).unwrap_or("");
        }
        p.extend_from_slice(r.as_bytes());
        self.frame(OpCode::Control(Control::Close), true, &p, &mut out.transmit);
    }

    /// Bytes from the peer. On a violation the matching Close is appended to
    /// `out.transmit` and the error returned; later input is ignored.
    pub fn handle_input(&mut self, data: &[u8], out: &mut WsOut) -> Result<(), WsError> {
        if matches!(self.rx, Rx::Done) {
            return Ok(());
        }
        self.inbuf.extend_from_slice(data);
        let r = self.run(out);
        if let Err(e) = &r {
            self.rx = Rx::Done;
            self.inbuf = Vec::new();
            let code = e.close_code();
            self.close(code, "", out);
        }
        r
    }

    fn run(&mut self, out: &mut WsOut) -> Result<(), WsError> {
        let mut pos = 0;
        let r = self.step_all(&mut pos, out);
        if pos > 0 {
            self.inbuf.drain(..pos.min(self.inbuf.len()));
        }
        r
    }

    fn step_all(&mut self, pos: &mut usize, out: &mut WsOut) -> Result<(), WsError> {
        loop {
            let avail = self.inbuf.get(*pos..).unwrap_or(&[]);
            match &mut self.rx {
                Rx::Done => return Ok(()),
                Rx::Header => {
                    let mut cur = Cursor::new(avail);
                    let parsed = FrameHeader::parse(&mut cur)
                        .map_err(|e| WsError::Protocol(e.to_string()))?;
                    let Some((h, len)) = parsed else {
                        return Ok(());
                    };
                    *pos += cur.position() as usize;
                    self.start_frame(h, len, out)?;
                }
                Rx::Data {
                    remaining,
                    mask,
                    mask_off,
                    fin,
                } => {
                    let take = (*remaining).min(avail.len() as u64) as usize;
                    if take == 0 && *remaining > 0 {
                        return Ok(());
                    }
                    let mut piece = avail.get(..take).unwrap_or(&[]).to_vec();
                    if let Some(m) = *mask {
                        apply_mask(&mut piece, m, *mask_off);
                        *mask_off = (*mask_off + take) % 4;
                    }
                    *remaining -= take as u64;
                    *pos += take;
                    let frame_done = *remaining == 0;
                    let eom = frame_done && *fin;
                    self.deliver(piece, eom, out)?;
                    if frame_done {
                        self.rx = Rx::Header;
                    }
                }
                Rx::Control {
                    op,
                    remaining,
                    mask,
                    payload,
                } => {
                    let take = (*remaining).min(avail.len());
                    payload.extend_from_slice(avail.get(..take).unwrap_or(&[]));
                    *remaining -= take;
                    *pos += take;
                    if *remaining > 0 {
                        return Ok(());
                    }
                    let (op, mask) = (*op, *mask);
                    let mut p = std::mem::take(payload);
                    if let Some(m) = mask {
                        apply_mask(&mut p, m, 0);
                    }
                    self.rx = Rx::Header;
                    self.control(op, p, out)?;
                }
            }
        }
    }

    fn start_frame(&mut self, h: FrameHeader, len: u64, out: &mut WsOut) -> Result<(), WsError> {
        if h.rsv1 || h.rsv2 || h.rsv3 {
            return Err(WsError::Protocol("reserved bits set".into()));
        }
        match (self.cfg.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(WsError::Protocol("unmasked client frame".into())),
            (Role::Client, true) => return Err(WsError::Protocol("masked server frame".into())),
            _ => {}
        }
        match h.opcode {
            OpCode::Control(op) => {
                if !h.is_final {
                    return Err(WsError::Protocol("fragmented control frame".into()));
                }
                if len > MAX_CONTROL as u64 {
                    return Err(WsError::Protocol("control frame over 125 bytes".into()));
                }
                self.rx = Rx::Control {
                    op,
                    remaining: len as usize,
                    mask: h.mask,
                    payload: Vec::with_capacity(len as usize),
                };
                Ok(())
            }
            OpCode::Data(d) => {
                if len > self.cfg.max_frame {
                    return Err(WsError::TooBig("frame"));
                }
                match (d, self.rx_msg) {
                    (Data::Continue, None) => {
                        return Err(WsError::Protocol("continuation outside a message".into()))
                    }
                    (Data::Text | Data::Binary, Some(_)) => {
                        return Err(WsError::Protocol(
                            "new message inside a fragmented one".into(),
                        ))
                    }
                    (Data::Text, None) | (Data::Binary, None) => {
                        self.rx_msg = Some(d == Data::Text);
                        self.rx_msg_len = 0;
                        self.rx_som_pending = true;
                        self.utf8_carry.clear();
                    }
                    _ => {}
                }
                self.rx_msg_len = self.rx_msg_len.saturating_add(len);
                if self.rx_msg_len > self.cfg.max_message {
                    return Err(WsError::TooBig("message"));
                }
                self.rx = Rx::Data {
                    remaining: len,
                    mask: h.mask,
                    mask_off: 0,
                    fin: h.is_final,
                };
                if len == 0 {
                    // An empty frame: ends the message if final.
                    self.rx = Rx::Header;
                    if h.is_final {
                        self.deliver(Vec::new(), true, out)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Hand a piece of the current message up.
    fn deliver(&mut self, piece: Vec<u8>, eom: bool, out: &mut WsOut) -> Result<(), WsError> {
        let text = self.rx_msg.unwrap_or(false);
        if text {
            self.check_utf8(&piece, eom)?;
        }
        if piece.is_empty() && !eom {
            return Ok(());
        }
        let mut flags = Flags::NONE;
        if self.rx_som_pending {
            flags |= Flags::SOM;
            self.rx_som_pending = false;
        }
        if eom {
            flags |= Flags::EOM;
            self.rx_msg = None;
        }
        out.events.push(WsEvent::Data {
            data: piece,
            flags,
            text,
        });
        Ok(())
    }

    /// Validate text across pieces, carrying an incomplete final sequence.
    fn check_utf8(&mut self, piece: &[u8], eom: bool) -> Result<(), WsError> {
        let mut buf = std::mem::take(&mut self.utf8_carry);
        buf.extend_from_slice(piece);
        match std::str::from_utf8(&buf) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() => {
                // Incomplete at the end: keep the tail (at most 3 bytes).
                self.utf8_carry = buf.get(e.valid_up_to()..).unwrap_or(&[]).to_vec();
            }
            Err(_) => return Err(WsError::InvalidUtf8),
        }
        if eom && !self.utf8_carry.is_empty() {
            return Err(WsError::InvalidUtf8);
        }
        Ok(())
    }

    fn control(&mut self, op: Control, p: Vec<u8>, out: &mut WsOut) -> Result<(), WsError> {
        match op {
            Control::Ping => {
                if !self.close_sent {
                    self.frame(OpCode::Control(Control::Pong), true, &p, &mut out.transmit);
                }
            }
            Control::Pong => out.events.push(WsEvent::Pong(p)),
            Control::Close => {
                let (code, reason) = match p.len() {
                    0 => (1005, String::new()),
                    1 => return Err(WsError::Protocol("close frame of one byte".into())),
                    _ => {
                        // ok: this arm has p.len() >= 2.
                        let code = u16::from_be_bytes([p[0], p[1]]);
                        if !CloseCode::from(code).is_allowed() || !(1000..5000).contains(&code) {
                            return Err(WsError::Protocol(format!("close code {code}")));
                        }
                        let reason = std::str::from_utf8(p.get(2..).unwrap_or(&[]))
                            .map_err(|_| WsError::InvalidUtf8)?;
                        (code, reason.to_string())
                    }
                };
                // Answer with the same code (1000 when none was given).
                let answer = if code == 1005 { 1000 } else { code };
                self.close(answer, "", out);
                self.rx = Rx::Done;
                out.events.push(WsEvent::Closed { code, reason });
            }
            Control::Reserved(b) => {
                return Err(WsError::Protocol(format!("reserved control opcode {b}")))
            }
        }
        Ok(())
    }
}

/// XOR `buf` with `mask`, starting `off` bytes into the mask.
fn apply_mask(buf: &mut [u8], mask: [u8; 4], off: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[(i + off) % 4];
    }
}

// ----- opening handshake -------------------------------------------------

/// A client's `Sec-WebSocket-Key`: base64 of 16 bytes from the caller's random source.
pub fn client_key(random: [u8; 16]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(random)
}

/// The `Sec-WebSocket-Accept` answering `key`.
pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.trim().as_bytes())
}

/// Serialise a client's upgrade request for `path` on `host`.
pub fn write_upgrade_request(
    host: &str,
    path: &str,
    key: &str,
    subprotocol: Option<&str>,
    headers: &[(String, String)],
    out: &mut Vec<u8>,
) -> Result<(), WsError> {
    let bad = |s: &str| s.bytes().any(|b| b <= b' ' || b == 0x7f);
    if path.is_empty() || bad(path) || bad(host) {
        return Err(WsError::Handshake(format!(
            "invalid path or host {path:?} {host:?}"
        )));
    }
    out.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n").as_bytes());
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    out.extend_from_slice(
        format!("Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n").as_bytes(),
    );
    if let Some(p) = subprotocol {
        if bad(p) {
            return Err(WsError::Handshake(format!("invalid subprotocol {p:?}")));
        }
        out.extend_from_slice(format!("Sec-WebSocket-Protocol: {p}\r\n").as_bytes());
    }
    for (n, v) in headers {
        if !h1::is_token(n) || v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(WsError::Handshake(format!("invalid header {n:?}")));
        }
        out.extend_from_slice(format!("{n}: {}\r\n", v.trim()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The accepted upgrade: the server's headers and the subprotocol it chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgraded {
    /// Response header fields.
    pub headers: Vec<(String, String)>,
    /// `Sec-WebSocket-Protocol` of the response.
    pub protocol: Option<String>,
}

/// Reads the server's answer to an upgrade request (bounded by `limits`).
#[derive(Debug, Default)]
pub struct UpgradeReader {
    head: HeadBuf,
}

impl UpgradeReader {
    /// Feed response bytes. `Ok(None)`: need more. `Ok(Some((up, used)))`:
    /// upgraded; bytes of `data` past `used` are already WebSocket frames.
    /// A status other than 101, a wrong accept key, or a subprotocol we did
    /// not ask for is an error (with the status in the message).
    pub fn feed(
        &mut self,
        data: &[u8],
        key: &str,
        wanted: Option<&str>,
        limits: &Limits,
    ) -> Result<Option<(Upgraded, usize)>, WsError> {
        let max_headers = limits.max_headers;
        let step = self
            .head
            .feed(data, limits.max_header_bytes, |buf| {
                let mut hs = vec![httparse::EMPTY_HEADER; max_headers];
                let mut resp = httparse::Response::new(&mut hs);
                match resp.parse(buf) {
                    Ok(httparse::Status::Complete(n)) => Ok(Some((
                        (resp.code.unwrap_or(0), h1::own_headers(resp.headers)),
                        n,
                    ))),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(h1::map_parse_error(e, false)),
                }
            })
            .map_err(|e| WsError::Handshake(e.to_string()))?;
        let ((status, headers), used) = match step {
            HeadStep::NeedMore => return Ok(None),
            HeadStep::Complete(v, used) => (v, used),
        };
        if status != 101 {
            return Err(WsError::Handshake(format!(
                "server answered {status}, not 101"
            )));
        }
        if !h1::header_has_token(&headers, "upgrade", "websocket")
            || !h1::header_has_token(&headers, "connection", "upgrade")
        {
            return Err(WsError::Handshake(
                "missing Upgrade/Connection headers".into(),
            ));
        }
        if h1::header(&headers, "sec-websocket-accept").map(str::trim) != Some(&accept_key(key)) {
            return Err(WsError::Handshake("wrong Sec-WebSocket-Accept".into()));
        }
        let protocol = h1::header(&headers, "sec-websocket-protocol").map(|p| p.trim().to_string());
        match (&protocol, wanted) {
            (Some(p), Some(w)) if p == w => {}
            (None, None) => {}
            (None, Some(w)) => {
                return Err(WsError::Handshake(format!(
                    "server did not accept subprotocol {w}"
                )))
            }
            (Some(p), _) => {
                return Err(WsError::Handshake(format!(
                    "server chose subprotocol {p} we did not offer"
                )))
            }
        }
        Ok(Some((Upgraded { headers, protocol }, used)))
    }
}

/// Whether a request asks to upgrade to WebSocket; its key if so.
pub fn upgrade_key(headers: &[(String, String)]) -> Option<&str> {
    let upgrade = h1::header_has_token(headers, "upgrade", "websocket")
        && h1::header_has_token(headers, "connection", "upgrade")
        && h1::header(headers, "sec-websocket-version").map(str::trim) == Some("13");
    upgrade
        .then(|| h1::header(headers, "sec-websocket-key"))
        .flatten()
}

/// Whether the client offered `protocol` in `Sec-WebSocket-Protocol`.
pub fn offers_protocol(headers: &[(String, String)], protocol: &str) -> bool {
    h1::header_has_token(headers, "sec-websocket-protocol", protocol)
}

/// The server's 101 answer accepting `key` with `protocol`.
pub fn upgrade_response(key: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(p) = protocol {
        out.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Ws, Ws) {
        (
            Ws::new(WsConfig::new(Role::Client, 1)),
            Ws::new(WsConfig::new(Role::Server, 2)),
        )
    }

    fn data(evs: &[WsEvent]) -> Vec<(Vec<u8>, Flags)> {
        evs.iter()
            .filter_map(|e| match e {
                WsEvent::Data { data, flags, .. } => Some((data.clone(), *flags)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rfc_accept_key_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn fragmented_message_gives_som_then_eom() {
        let (mut c, mut s) = pair();
        let mut out = WsOut::default();
        c.write(b"hel", false, Flags::SOM, &mut out).unwrap();
        c.write(b"lo", false, Flags::EOM, &mut out).unwrap();
        let mut got = WsOut::default();
        for b in &out.transmit {
            s.handle_input(std::slice::from_ref(b), &mut got).unwrap();
        }
        let d = data(&got.events);
        let joined: Vec<u8> = d.iter().flat_map(|(x, _)| x.clone()).collect();
        assert_eq!(joined, b"hello");
        assert!(d.first().unwrap().1.contains(Flags::SOM));
        assert!(d.last().unwrap().1.contains(Flags::EOM));
        assert_eq!(d.iter().filter(|(_, f)| f.contains(Flags::SOM)).count(), 1);
    }

    #[test]
    fn ping_is_answered_and_close_is_echoed() {
        let (mut c, mut s) = pair();
        let mut out = WsOut::default();
        c.ping(b"p", &mut out).unwrap();
        c.close(1001, "bye", &mut out);
        let mut got = WsOut::default();
        s.handle_input(&out.transmit, &mut got).unwrap();
        assert_eq!(
            got.events.last(),
            Some(&WsEvent::Closed {
                code: 1001,
                reason: "bye".into()
            })
        );
        let mut back = WsOut::default();
        c.handle_input(&got.transmit, &mut back).unwrap();
        assert_eq!(back.events.first(), Some(&WsEvent::Pong(b"p".to_vec())));
    }

    #[test]
    fn violations_close_with_the_rfc_code() {
        let (_, mut s) = pair();
        let mut out = WsOut::default();
        // Unmasked text frame to a server: 1002.
        let e = s.handle_input(&[0x81, 0x01, b'a'], &mut out).unwrap_err();
        assert_eq!(e.close_code(), 1002);
        assert_eq!(&out.transmit[..4], &[0x88, 0x02, 0x03, 0xea]);
        // Invalid UTF-8 in text: 1007.
        let mut c = Ws::new(WsConfig::new(Role::Client, 3));
        let mut out = WsOut::default();
        let e = c
            .handle_input(&[0x81, 0x02, 0xc3, 0x28], &mut out)
            .unwrap_err();
        assert_eq!(e, WsError::InvalidUtf8);
        // A frame over the limit: 1009, before any payload is read.
        let mut cfg = WsConfig::new(Role::Client, 3);
        cfg.max_frame = 10;
        let mut c = Ws::new(cfg);
        let mut out = WsOut::default();
        let e = c
            .handle_input(&[0x82, 0x7e, 0x01, 0x00], &mut out)
            .unwrap_err();
        assert_eq!(e.close_code(), 1009);
    }

    #[test]
    fn utf8_split_across_fragments_is_fine() {
        let (mut c, mut s) = pair();
        let mut out = WsOut::default();
        let text = "héllo €".as_bytes();
        c.write(&text[..2], false, Flags::SOM, &mut out).unwrap();
        c.write(&text[2..9], false, Flags::NONE, &mut out).unwrap();
        c.write(&text[9..], false, Flags::EOM, &mut out).unwrap();
        let mut got = WsOut::default();
        s.handle_input(&out.transmit, &mut got).unwrap();
        let joined: Vec<u8> = data(&got.events).into_iter().flat_map(|(d, _)| d).collect();
        assert_eq!(joined, text);
    }
}
