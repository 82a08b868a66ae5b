//! HTTP/2 (RFC 9113): client and server machines built on the `h2` crate,
//! kept sans-IO.
//!
//! The `h2` crate is written as futures over a `tokio::io::AsyncRead +
//! AsyncWrite` transport. Here that transport is [`Pipe`]: two byte queues in
//! memory. Bytes from the peer go into the inbound queue
//! ([`H2Client::handle_input`]); a read with the queue empty returns
//! `Pending`. Writes append to the outbound queue until it holds
//! [`H2Config::max_transmit_buffer`] bytes, then return `Pending` (so `h2`
//! stops producing and stops reading: back-pressure). The futures are polled
//! with a waker that does nothing, every time input arrives, the application
//! acts or asks for output, until nothing moves any more. There is no
//! runtime, no spawned task and no timer: tokio is a dependency only for its
//! I/O traits and buffers (its `io-util` and `sync` features; no `rt`,
//! `net`, `time`, ...; `conformance/tests/purity.rs` checks that).
//!
//! The `h2` crate reads the clock in one place: when a stream we reset is
//! kept around to absorb the peer's in-flight frames
//! (`h2/src/proto/streams/stream.rs`, `set_queued`: `Instant::now()`, and
//! `recv.rs`, `clear_expired_reset_streams`). Both machines configure
//! `max_concurrent_reset_streams(0)`, so no stream ever enters that queue and
//! neither call runs; frames that arrive for a stream we reset are answered
//! by `h2` with RST_STREAM(STREAM_CLOSED) and their flow-control credit is
//! still returned (`streams.rs`, `may_have_forgotten_stream`). PING is
//! answered by `h2` without timers; keepalive pings are the engine's job.
//!
//! Flow control: received DATA is credited back to the peer (WINDOW_UPDATE)
//! when the application takes the [`H2Event::Data`] out with `poll_event`,
//! so a slow application holds the peer back instead of buffering; at most
//! [`H2Config::max_stream_rx_buffer`] bytes per stream wait in the event
//! queue. Sending, `send_data` takes what fits in the per-stream buffer
//! ([`H2Config::max_stream_tx_buffer`]) and reports how much it took; the
//! buffer drains into DATA frames as the peer grants window, and
//! [`H2Event::Writable`] says when a stream that refused bytes has room.
//!
//! Every API call returns typed [`H2Error`]s; no input panics (a fuzz target
//! per machine checks that).

/// The input and output half of the API, the same for [`H2Client`] and
/// [`H2Server`] (both hold `link`, `state`, `streams` and `error`, and
/// `drive` themselves); `$peer` names the other side in the docs.
macro_rules! machine_io {
    ($peer:literal) => {
        #[doc = concat!("Bytes from the ", $peer, ". Fails once the connection has failed (the")]
        /// GOAWAY `h2` queued for the peer is still in `poll_transmit`); after
        /// a clean close, input is ignored.
        pub fn handle_input(&mut self, data: &[u8]) -> Result<(), H2Error> {
            if let Some(e) = &self.error {
                return Err(e.clone());
            }
            if matches!(self.state, State::Closed) {
                // Closed cleanly: whatever the peer still sends has no stream
                // to go to.
                return Ok(());
            }
            self.link.input(data)?;
            self.drive();
            match &self.error {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
        }

        #[doc = concat!("The ", $peer, " closed its side of the transport.")]
        pub fn handle_eof(&mut self) {
            self.link.eof();
            self.drive();
        }

        /// Bytes for the wire, if any.
        pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
            self.drive();
            self.link.transmit()
        }

        /// The next event, if any. Taking a [`H2Event::Data`] credits its
        #[doc = concat!("bytes back to the ", $peer, " (unless the stream is held).")]
        pub fn poll_event(&mut self) -> Option<H2Event> {
            if self.link.events.is_empty() {
                self.drive();
            }
            let ev = self.link.events.pop_front()?;
            if let H2Event::Data { key, data, .. } = &ev {
                if let Some(s) = self.streams.get_mut(key) {
                    s.rx.taken(data.len());
                }
                self.drive();
            }
            Some(ev)
        }

        #[doc = concat!("Stop (`true`) or restart crediting the ", $peer, " for `key`'s received")]
        /// data: per-stream back-pressure, since HTTP/2 multiplexes many
        /// streams on one connection that must keep being read. While held,
        /// at most the stream's window (plus the per-stream event bound) is
        /// buffered.
        pub fn set_rx_held(&mut self, key: StreamKey, held: bool) {
            if let Some(s) = self.streams.get_mut(&key) {
                s.rx.set_held(held);
            }
            self.drive();
        }

        /// Streams open now (counting ones whose events are not all taken).
        pub fn active_streams(&self) -> usize {
            self.streams.len()
        }
    };
}

pub mod client;
mod scan;
pub mod server;

pub use client::{H2Client, RequestHead};
pub use server::H2Server;

use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Default initial stream window advertised to the peer (RFC default).
pub const DEFAULT_WINDOW: u32 = 65_535;
/// Default bound on a received header list (decoded, RFC 9113 §6.5.2 size).
pub const DEFAULT_MAX_HEADER_LIST: u32 = 16 * 1024;
/// Default bound on streams open at once, both what we accept and what we open.
pub const DEFAULT_MAX_CONCURRENT: u32 = 100;
/// Default bound on received payload waiting in the event queue, per stream.
pub const DEFAULT_STREAM_RX_BUFFER: usize = 256 * 1024;
/// Default bound on payload accepted by `send_data` but not yet framed, per stream.
pub const DEFAULT_STREAM_TX_BUFFER: usize = 256 * 1024;
/// Default bound on bytes waiting for `poll_transmit`.
pub const DEFAULT_TRANSMIT_BUFFER: usize = 256 * 1024;
/// Default bound on peer bytes given to `handle_input` but not yet parsed.
pub const DEFAULT_INPUT_BACKLOG: usize = 4 << 20;

/// Identifies one stream of a machine (assigned by the machine, never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey(pub u64);

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Limits and quirks of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Config {
    /// Initial stream window we advertise (SETTINGS_INITIAL_WINDOW_SIZE).
    pub initial_window: u32,
    /// Connection-level receive window we grant.
    pub connection_window: u32,
    /// Largest header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE).
    pub max_header_list: u32,
    /// Streams we allow the peer to open (SETTINGS_MAX_CONCURRENT_STREAMS);
    /// on a client also the most it opens itself, whatever the server allows.
    pub max_concurrent_streams: u32,
    /// Received payload queued as events per stream before the machine
    /// stops reading it (and so stops crediting the peer).
    pub max_stream_rx_buffer: usize,
    /// Payload `send_data` accepts per stream ahead of the peer's window.
    pub max_stream_tx_buffer: usize,
    /// Bytes waiting for `poll_transmit` before the machine stops producing.
    pub max_transmit_buffer: usize,
    /// Peer bytes waiting to be parsed before `handle_input` refuses more.
    pub max_input_backlog: usize,
    /// Client quirk `nghttp2_quirk_end_stream`: a request that
    /// [`RequestHead::end_stream`] does not end is still sent with
    /// END_STREAM on its HEADERS when its method carries no body (GET, HEAD,
    /// DELETE, OPTIONS), for servers that answer only after END_STREAM.
    pub quirk_end_stream: bool,
    /// Client quirk `h2q_oflow_txcr`: a WINDOW_UPDATE that would take a send
    /// window past 2^31-1 is clamped (or dropped) instead of being a
    /// FLOW_CONTROL_ERROR.
    pub quirk_oflow_txcr: bool,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            initial_window: DEFAULT_WINDOW,
            connection_window: DEFAULT_WINDOW,
            max_header_list: DEFAULT_MAX_HEADER_LIST,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT,
            max_stream_rx_buffer: DEFAULT_STREAM_RX_BUFFER,
            max_stream_tx_buffer: DEFAULT_STREAM_TX_BUFFER,
            max_transmit_buffer: DEFAULT_TRANSMIT_BUFFER,
            max_input_backlog: DEFAULT_INPUT_BACKLOG,
            quirk_end_stream: false,
            quirk_oflow_txcr: false,
        }
    }
}

/// What a machine reports, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum H2Event {
    /// Server: a request head arrived on a new stream.
    Request {
        /// The new stream.
        key: StreamKey,
        /// `:method`.
        method: String,
        /// `:path` (with query).
        path: String,
        /// `:authority`, if sent.
        authority: Option<String>,
        /// Regular header fields (values decoded lossily as UTF-8).
        headers: Vec<(String, String)>,
        /// The request has no body (END_STREAM on its HEADERS).
        end_stream: bool,
    },
    /// Client: the final response head of a request arrived.
    Response {
        /// The request's stream.
        key: StreamKey,
        /// `:status`.
        status: u16,
        /// Regular header fields (values decoded lossily as UTF-8).
        headers: Vec<(String, String)>,
    },
    /// Payload of a request or response body. Every received message ends
    /// with exactly one `Data` whose `eom` is set (empty if the body was).
    Data {
        /// The stream.
        key: StreamKey,
        /// Payload bytes.
        data: Vec<u8>,
        /// The body ends here.
        eom: bool,
    },
    /// A stream that refused bytes in `send_data` has buffer room again.
    Writable {
        /// The stream.
        key: StreamKey,
    },
    /// The stream was reset (by the peer, or by a stream-level error); it is gone.
    Reset {
        /// The stream.
        key: StreamKey,
        /// HTTP/2 error code (RFC 9113 §7).
        reason: u32,
    },
    /// The peer sent GOAWAY: streams above `last_stream_id` were not processed.
    GoAway {
        /// Highest stream id the peer may have acted on.
        last_stream_id: u32,
        /// HTTP/2 error code.
        reason: u32,
    },
    /// The connection is over (cleanly or not); nothing more will happen.
    Closed,
}

/// Why a call failed. Display reads "h2: ...".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum H2Error {
    /// No stream can be opened now (the concurrent-stream limit is reached,
    /// or the handshake has not finished); try again after a stream ends.
    WouldBlock,
    /// The key names no open stream (or one whose sending side has ended).
    UnknownStream(StreamKey),
    /// A request or response head could not be built (bad method, path,
    /// header name or value).
    BadHead(String),
    /// A configured bound was exceeded.
    Limit(&'static str),
    /// The connection failed: the peer broke the protocol, or sent GOAWAY
    /// with an error. `reason` is the HTTP/2 error code when there is one.
    Connection {
        /// HTTP/2 error code, if any.
        reason: Option<u32>,
        /// What the `h2` crate said.
        detail: String,
    },
    /// The connection is closed (or closing after GOAWAY); no new streams.
    Closed,
}

impl fmt::Display for H2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H2Error::WouldBlock => f.write_str("h2: no stream available now (concurrency limit)"),
            H2Error::UnknownStream(k) => write!(f, "h2: unknown stream {k}"),
            H2Error::BadHead(s) => write!(f, "h2: bad message head: {s}"),
            H2Error::Limit(s) => write!(f, "h2: limit exceeded: {s}"),
            H2Error::Connection { reason, detail } => match reason {
                Some(r) => write!(f, "h2: connection error {r:#x}: {detail}"),
                None => write!(f, "h2: connection error: {detail}"),
            },
            H2Error::Closed => f.write_str("h2: connection closed"),
        }
    }
}

impl std::error::Error for H2Error {}

impl H2Error {
    /// An error from sending a head: with no reason and no I/O cause it is
    /// `h2` refusing what we asked (a malformed head), not the connection.
    fn from_h2_send(e: &::h2::Error) -> Self {
        if e.reason().is_none() && !e.is_io() {
            H2Error::BadHead(e.to_string())
        } else {
            H2Error::from_h2(e)
        }
    }

    fn from_h2(e: &::h2::Error) -> Self {
        H2Error::Connection {
            reason: e.reason().map(u32::from),
            detail: e.to_string(),
        }
    }
}

/// The two byte queues shared between a machine and the transport it hands
/// to `h2`.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    inbound: VecDeque<u8>,
    outbound: Vec<u8>,
    out_limit: usize,
    /// Bytes `h2` read, for progress detection.
    read_total: u64,
    /// The peer closed its side: reads return EOF once the queue is empty.
    eof: bool,
}

/// The in-memory transport `h2` runs over (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Pipe(Arc<Mutex<Queues>>);

impl Pipe {
    fn new(out_limit: usize) -> Self {
        Pipe(Arc::new(Mutex::new(Queues {
            out_limit: out_limit.max(16 * 1024),
            ..Queues::default()
        })))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Queues) -> R) -> R {
        // A poisoned lock only means a panic elsewhere; the queues are plain
        // data and stay consistent, so go on with them.
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }
}

impl tokio::io::AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.with(|q| {
            if q.inbound.is_empty() {
                return if q.eof {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            let n = buf.remaining().min(q.inbound.len());
            let (a, b) = q.inbound.as_slices();
            // ok: n <= a.len() + b.len() and na = min(n, a.len()), so both
            // slices are in range.
            let na = n.min(a.len());
            buf.put_slice(&a[..na]); // ok: see above
            buf.put_slice(&b[..n - na]); // ok: see above
            q.inbound.drain(..n);
            q.read_total += n as u64;
            Poll::Ready(Ok(()))
        })
    }
}

impl tokio::io::AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|q| {
            let room = q.out_limit.saturating_sub(q.outbound.len());
            if room == 0 {
                return Poll::Pending;
            }
            let n = room.min(data.len());
            q.outbound.extend_from_slice(&data[..n]); // ok: n <= data.len()
            Poll::Ready(Ok(n))
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // "Flushed" means handed to the machine's caller; a full queue is
        // back-pressure.
        self.with(|q| {
            if q.outbound.len() >= q.out_limit {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        })
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A waker that does nothing: the machine re-polls everything itself.
struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn noop_waker() -> Waker {
    Waker::from(Arc::new(Noop))
}

/// What the connection side shares between client and server.
#[derive(Debug)]
pub(crate) struct Link {
    pipe: Pipe,
    scan: scan::Scanner,
    notes: Vec<scan::Note>,
    staged: Vec<u8>,
    max_backlog: usize,
    pub(crate) events: VecDeque<H2Event>,
    waker: Waker,
}

impl Link {
    fn new(server: bool, cfg: &H2Config) -> Self {
        Link {
            pipe: Pipe::new(cfg.max_transmit_buffer),
            scan: scan::Scanner::new(server, !server && cfg.quirk_oflow_txcr),
            notes: Vec::new(),
            staged: Vec::new(),
            max_backlog: cfg.max_input_backlog,
            events: VecDeque::new(),
            waker: noop_waker(),
        }
    }

    /// Peer bytes: through the scanner into the inbound queue.
    fn input(&mut self, data: &[u8]) -> Result<(), H2Error> {
        let backlog = self.pipe.with(|q| q.inbound.len());
        if backlog.saturating_add(data.len()) > self.max_backlog {
            return Err(H2Error::Limit("input backlog"));
        }
        self.staged.clear();
        self.scan.inbound(data, &mut self.staged, &mut self.notes);
        let staged = &self.staged;
        self.pipe.with(|q| q.inbound.extend(staged.iter().copied()));
        for n in self.notes.drain(..) {
            if let scan::Note::GoAway(last_stream_id, reason) = n {
                self.events.push_back(H2Event::GoAway {
                    last_stream_id,
                    reason,
                });
            }
        }
        Ok(())
    }

    fn eof(&mut self) {
        self.pipe.with(|q| q.eof = true);
    }

    /// Everything `h2` wrote, watched by the scanner.
    fn transmit(&mut self) -> Option<Vec<u8>> {
        let out = self.pipe.with(|q| std::mem::take(&mut q.outbound));
        if out.is_empty() {
            return None;
        }
        self.scan.outbound(&out);
        Some(out)
    }

    /// A fingerprint that changes whenever anything moved.
    fn progress_mark(&self) -> (u64, usize, usize) {
        let (r, w) = self.pipe.with(|q| (q.read_total, q.outbound.len()));
        (r, w, self.events.len())
    }
}

/// Sending half of a stream: bytes accepted but not yet framed.
#[derive(Debug, Default)]
pub(crate) struct Tx {
    send: Option<::h2::SendStream<Bytes>>,
    pending: VecDeque<Bytes>,
    pending_len: usize,
    eom_pending: bool,
    /// END_STREAM sent (or the send side is gone).
    done: bool,
    /// `send_data` refused bytes; report Writable when room returns.
    refused: bool,
}

impl Tx {
    fn new(send: ::h2::SendStream<Bytes>, done: bool) -> Self {
        Tx {
            send: Some(send),
            done,
            ..Tx::default()
        }
    }

    /// Accept what fits; returns bytes taken.
    fn accept(&mut self, data: &[u8], eom: bool, limit: usize) -> usize {
        let room = limit.saturating_sub(self.pending_len);
        let n = room.min(data.len());
        if n > 0 {
            self.pending.push_back(Bytes::copy_from_slice(&data[..n])); // ok: n <= data.len()
            self.pending_len += n;
        }
        if n < data.len() {
            self.refused = true;
        } else if eom {
            self.eom_pending = true;
        }
        n
    }

    /// Move pending bytes into DATA frames as window allows. Returns the
    /// peer's reset reason if the stream was reset.
    fn pump(&mut self, cx: &mut Context<'_>, limit: usize) -> Result<bool, u32> {
        let Some(send) = self.send.as_mut() else {
            return Ok(false);
        };
        let mut writable = false;
        if self.done {
            return Ok(false);
        }
        if let Poll::Ready(r) = send.poll_reset(cx) {
            return Err(r.map(u32::from).unwrap_or(0x2));
        }
        if self.pending_len > 0 {
            send.reserve_capacity(self.pending_len);
            match send.poll_capacity(cx) {
                Poll::Ready(Some(Err(e))) => {
                    return Err(e.reason().map(u32::from).unwrap_or(0x2));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return Ok(false);
                }
                _ => {}
            }
            let mut cap = send.capacity();
            while cap > 0 {
                let Some(mut b) = self.pending.pop_front() else {
                    break;
                };
                if b.len() > cap {
                    let rest = b.split_off(cap);
                    self.pending.push_front(rest);
                }
                cap -= b.len();
                self.pending_len -= b.len();
                let last = self.pending_len == 0 && self.eom_pending;
                if let Err(e) = send.send_data(b, last) {
                    return Err(e.reason().map(u32::from).unwrap_or(0x2));
                }
                if last {
                    self.done = true;
                    self.eom_pending = false;
                }
            }
            if self.refused && self.pending_len < limit {
                self.refused = false;
                writable = true;
            }
        } else if self.eom_pending {
            self.eom_pending = false;
            self.done = true;
            if let Err(e) = send.send_data(Bytes::new(), true) {
                return Err(e.reason().map(u32::from).unwrap_or(0x2));
            }
        }
        Ok(writable)
    }
}

/// Receiving half of a stream.
#[derive(Debug, Default)]
pub(crate) struct Rx {
    body: Option<::h2::RecvStream>,
    /// Bytes handed to the event queue but not yet taken by the application.
    queued: usize,
    /// The final Data (eom) was queued.
    done: bool,
    /// The application paused this stream: taken Data is not credited back
    /// to the peer (so its window runs out and it stops sending on this
    /// stream only) until resumed.
    held: bool,
    /// Bytes taken while held, credited on resume.
    unreleased: usize,
}

impl Rx {
    /// Read body data into events while the per-stream bound allows.
    /// Returns the reset reason if the stream failed.
    fn pump(
        &mut self,
        key: StreamKey,
        cx: &mut Context<'_>,
        limit: usize,
        events: &mut VecDeque<H2Event>,
    ) -> Result<(), u32> {
        let Some(body) = self.body.as_mut() else {
            return Ok(());
        };
        while !self.done && self.queued < limit {
            match body.poll_data(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    if b.is_empty() {
                        continue;
                    }
                    self.queued += b.len();
                    events.push_back(H2Event::Data {
                        key,
                        data: b.to_vec(),
                        eom: false,
                    });
                }
                Poll::Ready(None) => {
                    self.done = true;
                    events.push_back(H2Event::Data {
                        key,
                        data: Vec::new(),
                        eom: true,
                    });
                }
                Poll::Ready(Some(Err(e))) => {
                    return Err(e.reason().map(u32::from).unwrap_or(0x2));
                }
                Poll::Pending => break,
            }
        }
        Ok(())
    }

    /// The application took `n` bytes: credit them back to the peer, unless
    /// the stream is held.
    fn taken(&mut self, n: usize) {
        if self.held {
            self.unreleased = self.unreleased.saturating_add(n);
        } else {
            self.release(n);
        }
    }

    /// Hold or resume crediting; resuming credits what was held back.
    fn set_held(&mut self, held: bool) {
        self.held = held;
        if !held {
            let n = std::mem::take(&mut self.unreleased);
            if n > 0 {
                self.release(n);
            }
        }
    }

    /// The application took `n` bytes: credit them back to the peer.
    fn release(&mut self, n: usize) {
        self.queued = self.queued.saturating_sub(n);
        if let Some(body) = self.body.as_mut() {
            // Fails only if the stream is already gone, when h2 returns the
            // credit itself as the handle drops.
            let _ = body.flow_control().release_capacity(n);
        }
    }
}

/// Header fields of `map` as (name, value) strings.
fn header_list(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Build a header map from (name, value) pairs.
fn build_headers(list: &[(String, String)]) -> Result<http::HeaderMap, H2Error> {
    let mut map = http::HeaderMap::new();
    for (k, v) in list {
        let name = http::header::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| H2Error::BadHead(format!("header name {k:?}")))?;
        let value = http::header::HeaderValue::from_str(v)
            .map_err(|_| H2Error::BadHead(format!("header value for {k}")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Bound on the passes of one drive loop: each pass moves something, and
/// inputs are bounded, so this only guards against a bug looping forever.
const MAX_PASSES: usize = 10_000;
