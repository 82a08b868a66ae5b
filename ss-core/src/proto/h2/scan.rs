//! A frame-header scanner that sits between the wire and the `h2` crate.
//!
//! It never rejects anything (the `h2` crate does all validation); it only
//! watches frame boundaries so the machine can
//!
//! * report a peer's GOAWAY with its `last_stream_id` and error code (the
//!   `h2` crate reports the reason but not the last stream id), and
//! * with the `h2q_oflow_txcr` quirk, clamp a peer's WINDOW_UPDATE so that
//!   the send window never exceeds 2^31-1. The `h2` crate treats such an
//!   increment as a FLOW_CONTROL_ERROR (`h2/src/proto/streams/flow_control.rs`,
//!   `inc_window`) with no option to tolerate it, so the clamp happens before
//!   it sees the frame. To know the windows, the scanner also watches our
//!   outbound DATA frames and the peer's SETTINGS_INITIAL_WINDOW_SIZE. Its
//!   estimate is never below the window `h2` holds (`h2` deducts capacity
//!   before bytes reach the wire), so a clamp is conservative: an increment
//!   that passes can never overflow inside `h2`.

use std::collections::HashMap;

/// Length of the client connection preface `PRI * HTTP/2.0...`.
pub(crate) const PREFACE_LEN: usize = 24;
/// Largest legal flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: i64 = (1 << 31) - 1;
/// Default initial window (RFC 9113 §6.5.2).
const DEFAULT_WINDOW: i64 = 65_535;
/// Bound on the stream windows tracked for the quirk.
const MAX_TRACKED: usize = 4096;

const T_DATA: u8 = 0;
const T_HEADERS: u8 = 1;
const T_RST: u8 = 3;
const T_SETTINGS: u8 = 4;
const T_GOAWAY: u8 = 7;
const T_WINDOW_UPDATE: u8 = 8;
const F_END_STREAM: u8 = 1;
const F_ACK: u8 = 1;

#[derive(Clone, Copy, Debug, Default)]
struct Hdr {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
    raw: [u8; 9],
}

/// Splits a byte stream into preface, frame headers and payload pieces.
#[derive(Debug, Default)]
struct Splitter {
    preface_left: usize,
    hdr: [u8; 9],
    hdr_len: usize,
    cur: Option<Hdr>,
    done: usize,
}

enum Piece<'a> {
    Preface(&'a [u8]),
    Header(Hdr),
    /// Payload bytes of the current frame, and whether they end it.
    Payload(Hdr, &'a [u8], bool),
}

impl Splitter {
    fn feed<'a>(&mut self, mut data: &'a [u8], f: &mut dyn FnMut(Piece<'a>)) {
        // ok: every slice below is cut at `n <= data.len()` (a `min` with it),
        // and `hdr_len + n <= 9`, so no index can go out of range.
        while !data.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(data.len());
                f(Piece::Preface(&data[..n])); // ok: n <= data.len()
                self.preface_left -= n;
                data = &data[n..]; // ok: n <= data.len()
                continue;
            }
            match self.cur {
                None => {
                    let n = (9 - self.hdr_len).min(data.len());
                    self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&data[..n]); // ok: hdr_len + n <= 9, n <= data.len()
                    self.hdr_len += n;
                    data = &data[n..]; // ok: n <= data.len()
                    if self.hdr_len == 9 {
                        self.hdr_len = 0;
                        let b = self.hdr;
                        let h = Hdr {
                            len: (usize::from(b[0]) << 16)
                                | (usize::from(b[1]) << 8)
                                | usize::from(b[2]),
                            kind: b[3],
                            flags: b[4],
                            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
                            raw: b,
                        };
                        f(Piece::Header(h));
                        if h.len > 0 {
                            self.cur = Some(h);
                            self.done = 0;
                        } else {
                            f(Piece::Payload(h, &[], true));
                        }
                    }
                }
                Some(h) => {
                    let n = (h.len - self.done).min(data.len());
                    self.done += n;
                    let end = self.done == h.len;
                    f(Piece::Payload(h, &data[..n], end)); // ok: n <= data.len()
                    data = &data[n..]; // ok: n <= data.len()
                    if end {
                        self.cur = None;
                    }
                }
            }
        }
    }
}

/// What the scanner noticed in the peer's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// A GOAWAY frame: last stream id, error code.
    GoAway(u32, u32),
    /// A WINDOW_UPDATE was clamped (quirk); the increment that was dropped.
    Clamped(u32),
}

#[derive(Clone, Copy, Debug)]
struct Win {
    win: i64,
    local_end: bool,
    remote_end: bool,
}

/// Both directions of one connection.
#[derive(Debug)]
pub(crate) struct Scanner {
    inbound: Splitter,
    outbound: Splitter,
    quirk_oflow: bool,
    capture: Vec<u8>,
    held: Option<Hdr>,
    conn_win: i64,
    initial: i64,
    streams: HashMap<u32, Win>,
}

impl Scanner {
    /// `server`: the inbound side starts with the client preface; otherwise
    /// the outbound side does.
    pub(crate) fn new(server: bool, quirk_oflow: bool) -> Self {
        Scanner {
            inbound: Splitter {
                preface_left: if server { PREFACE_LEN } else { 0 },
                ..Splitter::default()
            },
            outbound: Splitter {
                preface_left: if server { 0 } else { PREFACE_LEN },
                ..Splitter::default()
            },
            quirk_oflow,
            capture: Vec::new(),
            held: None,
            conn_win: DEFAULT_WINDOW,
            initial: DEFAULT_WINDOW,
            streams: HashMap::new(),
        }
    }

    /// Peer bytes in; bytes for `h2` appended to `out`, observations to `notes`.
    pub(crate) fn inbound(&mut self, data: &[u8], out: &mut Vec<u8>, notes: &mut Vec<Note>) {
        let mut sp = std::mem::take(&mut self.inbound);
        sp.feed(data, &mut |p| self.in_piece(p, out, notes));
        self.inbound = sp;
    }

    fn in_piece(&mut self, p: Piece<'_>, out: &mut Vec<u8>, notes: &mut Vec<Note>) {
        match p {
            Piece::Preface(b) => out.extend_from_slice(b),
            Piece::Header(h) => {
                self.capture.clear();
                if self.quirk_oflow && h.kind == T_WINDOW_UPDATE && h.len == 4 {
                    self.held = Some(h);
                } else {
                    out.extend_from_slice(&h.raw);
                }
            }
            Piece::Payload(h, b, end) => {
                let want: usize = match h.kind {
                    T_GOAWAY => 8,
                    T_WINDOW_UPDATE => 4,
                    T_SETTINGS if self.quirk_oflow => 6 * 64,
                    _ => 0,
                };
                let room = want.saturating_sub(self.capture.len()).min(b.len());
                self.capture.extend_from_slice(&b[..room]); // ok: room <= b.len()
                if self.held.is_none() {
                    out.extend_from_slice(b);
                }
                if end {
                    self.in_frame_end(h, out, notes);
                }
            }
        }
    }

    fn in_frame_end(&mut self, h: Hdr, out: &mut Vec<u8>, notes: &mut Vec<Note>) {
        let c = &self.capture;
        match h.kind {
            T_GOAWAY if c.len() == 8 => {
                let last = u32::from_be_bytes([c[0], c[1], c[2], c[3]]) & 0x7fff_ffff;
                let code = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
                notes.push(Note::GoAway(last, code));
            }
            T_WINDOW_UPDATE => {
                if let Some(held) = self.held.take() {
                    let inc = match c.get(..4) {
                        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff,
                        None => 0,
                    };
                    let win = if h.stream == 0 {
                        Some(&mut self.conn_win)
                    } else {
                        self.streams.get_mut(&h.stream).map(|w| &mut w.win)
                    };
                    match win {
                        Some(w) if inc > 0 => {
                            let allowed = (MAX_WINDOW - *w).clamp(0, i64::from(inc));
                            *w += allowed;
                            if allowed < i64::from(inc) {
                                notes.push(Note::Clamped(inc - allowed as u32));
                            }
                            if allowed > 0 {
                                out.extend_from_slice(&held.raw);
                                out.extend_from_slice(&(allowed as u32).to_be_bytes());
                            }
                        }
                        _ => {
                            out.extend_from_slice(&held.raw);
                            out.extend_from_slice(&self.capture);
                        }
                    }
                }
            }
            T_SETTINGS if self.quirk_oflow && h.flags & F_ACK == 0 => {
                for s in self.capture.chunks_exact(6) {
                    if u16::from_be_bytes([s[0], s[1]]) == 4 {
                        let v = i64::from(u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
                        let delta = v - self.initial;
                        self.initial = v;
                        for w in self.streams.values_mut() {
                            w.win += delta;
                        }
                    }
                }
            }
            T_DATA | T_HEADERS if self.quirk_oflow && h.flags & F_END_STREAM != 0 => {
                if let Some(w) = self.streams.get_mut(&h.stream) {
                    w.remote_end = true;
                    if w.local_end {
                        self.streams.remove(&h.stream);
                    }
                }
            }
            T_RST if self.quirk_oflow => {
                self.streams.remove(&h.stream);
            }
            _ => {}
        }
    }

    /// Bytes `h2` wrote for the wire (watched only with the quirk).
    pub(crate) fn outbound(&mut self, data: &[u8]) {
        if !self.quirk_oflow {
            return;
        }
        let mut sp = std::mem::take(&mut self.outbound);
        sp.feed(data, &mut |p| {
            if let Piece::Header(h) = p {
                self.out_header(h);
            }
        });
        self.outbound = sp;
    }

    fn out_header(&mut self, h: Hdr) {
        match h.kind {
            T_HEADERS if h.stream != 0 => {
                if !self.streams.contains_key(&h.stream) && self.streams.len() < MAX_TRACKED {
                    self.streams.insert(
                        h.stream,
                        Win {
                            win: self.initial,
                            local_end: false,
                            remote_end: false,
                        },
                    );
                }
                self.out_end(h);
            }
            T_DATA => {
                self.conn_win -= h.len as i64;
                if let Some(w) = self.streams.get_mut(&h.stream) {
                    w.win -= h.len as i64;
                }
                self.out_end(h);
            }
            T_RST => {
                self.streams.remove(&h.stream);
            }
            _ => {}
        }
    }

    fn out_end(&mut self, h: Hdr) {
        if h.flags & F_END_STREAM != 0 {
            if let Some(w) = self.streams.get_mut(&h.stream) {
                w.local_end = true;
                if w.remote_end {
                    self.streams.remove(&h.stream);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let l = payload.len();
        let mut v = vec![(l >> 16) as u8, (l >> 8) as u8, l as u8, kind, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn goaway_noted_at_any_split() {
        let mut wire = frame(T_SETTINGS, 0, 0, &[]);
        let mut p = 7u32.to_be_bytes().to_vec();
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(b"debug");
        wire.extend(frame(T_GOAWAY, 0, 0, &p));
        for cut in 0..wire.len() {
            let mut s = Scanner::new(false, false);
            let (mut out, mut notes) = (vec![], vec![]);
            s.inbound(&wire[..cut], &mut out, &mut notes);
            s.inbound(&wire[cut..], &mut out, &mut notes);
            assert_eq!(out, wire);
            assert_eq!(notes, vec![Note::GoAway(7, 2)]);
        }
    }

    #[test]
    fn quirk_clamps_connection_window_overflow() {
        let mut s = Scanner::new(false, true);
        let (mut out, mut notes) = (vec![], vec![]);
        let wu = frame(T_WINDOW_UPDATE, 0, 0, &0x7fff_0000u32.to_be_bytes());
        s.inbound(&wu, &mut out, &mut notes);
        // 65535 + 0x7fff0000 fits exactly below 2^31-1? 0x7fff0000 + 0xffff = 0x7fffffff.
        assert_eq!(out, wu);
        out.clear();
        s.inbound(&wu, &mut out, &mut notes);
        assert!(out.is_empty(), "an overflowing update is dropped");
        assert_eq!(notes, vec![Note::Clamped(0x7fff_0000)]);
    }
}
