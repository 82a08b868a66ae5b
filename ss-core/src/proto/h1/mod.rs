//! HTTP/1.1: pure client and server machines over bytes.
//!
//! The machines here know nothing of policy files or retry: the engine maps
//! policy (`http_method`, `http_url`, multipart keys, ...) onto the plain
//! [`RequestHead`] and [`Limits`] structs, feeds bytes in, and carries what
//! comes out in [`Out`] (bytes for the wire and [`H1Event`]s).
//!
//! * [`Client`]: serialises one request at a time, parses its response
//!   (content-length, chunked, read-to-close, no-body statuses, 1xx interim
//!   responses skipped), and tracks keep-alive so the connection can be reused.
//! * [`Server`]: parses requests (pipelined requests handled in order),
//!   answers `Expect: 100-continue`, and serialises responses.
//! * [`chunked`]: the chunked transfer coding, both ways.
//! * [`multipart`]: `multipart/form-data` wrapping for outgoing bodies and a
//!   streaming decoder for incoming ones.
//! * [`cookies`]: a small bounded cookie jar.
//!
//! Every buffer is bounded by [`Limits`]; any input gives a typed [`H1Error`],
//! never a panic.

pub mod body;
pub mod chunked;
pub mod client;
pub mod cookies;
pub mod multipart;
pub mod server;

pub use client::{Client, ClientConfig, RequestHead};
pub use server::{Server, ServerConfig};

use crate::state::Flags;
use std::fmt;

/// Default bound on the bytes of one message head (start line and headers).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default bound on the number of headers in one message head.
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// Default bound on one chunk-size line (size and extensions) in chunked bodies.
pub const DEFAULT_MAX_CHUNK_LINE: usize = 1024;
/// Default bound on requests a server holds without having answered them.
pub const DEFAULT_MAX_PIPELINED: usize = 16;

/// Size limits applied to everything a machine parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes in one message head, start line included; also bounds the
    /// trailer section of a chunked body.
    pub max_header_bytes: usize,
    /// Most header fields in one message head.
    pub max_headers: usize,
    /// Most bytes in one chunk-size line, extensions included.
    pub max_chunk_line: usize,
    /// Server only: most requests parsed but not yet answered.
    pub max_pipelined: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_chunk_line: DEFAULT_MAX_CHUNK_LINE,
            max_pipelined: DEFAULT_MAX_PIPELINED,
        }
    }
}

/// How a message body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// No body.
    None,
    /// A body of exactly this many payload bytes (`Content-Length`).
    ContentLength(u64),
    /// A body of unknown length sent with `Transfer-Encoding: chunked`.
    Chunked,
}

/// What a machine reports after an input or an output call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum H1Event {
    /// Client: the final response head arrived (1xx interim heads are skipped).
    ResponseHead {
        /// Status code.
        status: u16,
        /// Reason phrase as sent.
        reason: String,
        /// Header fields in order, names as sent.
        headers: Vec<(String, String)>,
    },
    /// Server: a request head arrived.
    RequestHead {
        /// Method token.
        method: String,
        /// Request target as sent.
        path: String,
        /// Header fields in order, names as sent.
        headers: Vec<(String, String)>,
    },
    /// Body payload. A message that has a body (even an empty one) yields at
    /// least one of these: SOM on the first, EOM on the last (possibly empty).
    /// Messages with no body by definition (HEAD, 204, 304, a request without
    /// framing headers) yield none.
    Body {
        /// Decoded payload bytes.
        data: Vec<u8>,
        /// [`Flags::SOM`] and / or [`Flags::EOM`].
        flags: Flags,
    },
    /// The incoming message is complete.
    Done {
        /// Whether the connection may carry another message afterwards.
        keep_alive: bool,
    },
    /// The outgoing message (client request or server response) is fully
    /// written to `transmit`.
    Sent {
        /// Whether the connection may carry another message afterwards; a
        /// server seeing `false` should close once the bytes are flushed.
        keep_alive: bool,
    },
}

/// Output of a machine call: bytes for the wire and events, both in order.
#[derive(Debug, Default)]
pub struct Out {
    /// Bytes to transmit to the peer.
    pub transmit: Vec<u8>,
    /// Events for the engine.
    pub events: Vec<H1Event>,
}

/// An HTTP/1 protocol violation, limit breach or misuse of a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum H1Error {
    /// A message head exceeded [`Limits::max_header_bytes`].
    HeaderTooLarge,
    /// A message head had more than [`Limits::max_headers`] fields.
    TooManyHeaders,
    /// The response status line was malformed.
    BadStatusLine,
    /// The request line was malformed.
    BadRequestLine,
    /// The HTTP version was not HTTP/1.0 or HTTP/1.1.
    BadVersion,
    /// A header field was malformed.
    BadHeader,
    /// `Content-Length` was malformed or repeated with differing values.
    BadContentLength,
    /// A request carried both `Content-Length` and `Transfer-Encoding`.
    ConflictingFraming,
    /// A request used a transfer coding other than a final `chunked`.
    UnsupportedTransferEncoding,
    /// A chunk-size line was malformed.
    BadChunkSize,
    /// A chunk size did not fit in 64 bits.
    ChunkSizeOverflow,
    /// A chunk-size line exceeded [`Limits::max_chunk_line`].
    ChunkLineTooLong,
    /// Chunk data was not followed by CRLF, or a trailer line was malformed.
    BadChunkTerminator,
    /// Bytes arrived when no message was expected.
    UnexpectedData,
    /// The connection closed before the message was complete.
    Incomplete,
    /// More body bytes were written than the declared `Content-Length`.
    BodyTooLong,
    /// The body ended (EOM) before the declared `Content-Length` was written.
    BodyTooShort,
    /// A body was given for a message that cannot have one.
    BodyNotAllowed,
    /// A method, path, host, header name or value to send was invalid (for
    /// example it contained CR or LF), or a framing header was set by hand.
    InvalidOutgoing(String),
    /// The call does not fit the machine's state (e.g. a second request
    /// before the first response completed).
    InvalidState(&'static str),
    /// Server: more than [`Limits::max_pipelined`] unanswered requests.
    TooManyPipelined,
    /// Multipart: no usable boundary in the content type.
    MultipartBoundary,
    /// Multipart: a part's header block was too large.
    MultipartHeaderTooLarge,
    /// Multipart: the body did not follow the multipart syntax.
    MultipartMalformed,
    /// Cookie: a `Set-Cookie` value could not be used.
    BadCookie,
}

impl fmt::Display for H1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use H1Error::*;
        match self {
            HeaderTooLarge => f.write_str("http: header section too large"),
            TooManyHeaders => f.write_str("http: too many headers"),
            BadStatusLine => f.write_str("http: malformed status line"),
            BadRequestLine => f.write_str("http: malformed request line"),
            BadVersion => f.write_str("http: unsupported version"),
            BadHeader => f.write_str("http: malformed header"),
            BadContentLength => f.write_str("http: bad content-length"),
            ConflictingFraming => f.write_str("http: both content-length and transfer-encoding"),
            UnsupportedTransferEncoding => f.write_str("http: unsupported transfer-encoding"),
            BadChunkSize => f.write_str("http: malformed chunk size"),
            ChunkSizeOverflow => f.write_str("http: chunk size overflow"),
            ChunkLineTooLong => f.write_str("http: chunk size line too long"),
            BadChunkTerminator => f.write_str("http: malformed chunk terminator or trailer"),
            UnexpectedData => f.write_str("http: unexpected data"),
            Incomplete => f.write_str("http: connection closed mid-message"),
            BodyTooLong => f.write_str("http: body longer than content-length"),
            BodyTooShort => f.write_str("http: body shorter than content-length"),
            BodyNotAllowed => f.write_str("http: body not allowed"),
            InvalidOutgoing(what) => write!(f, "http: invalid outgoing {what}"),
            InvalidState(what) => write!(f, "http: invalid state: {what}"),
            TooManyPipelined => f.write_str("http: too many pipelined requests"),
            MultipartBoundary => f.write_str("multipart: missing or invalid boundary"),
            MultipartHeaderTooLarge => f.write_str("multipart: part header too large"),
            MultipartMalformed => f.write_str("multipart: malformed body"),
            BadCookie => f.write_str("cookie: malformed or too large"),
        }
    }
}

impl std::error::Error for H1Error {}

/// The first value of header `name` (case-insensitive), if any.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether any value of header `name` holds `token` in its comma list
/// (case-insensitive), as `Connection: close`.
pub fn header_has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Where a redirect response points: `Location` of a 301, 302, 303, 307 or
/// 308 response, if present and non-empty. Following it (and whether to) is
/// the engine's business.
pub fn redirect_target(status: u16, headers: &[(String, String)]) -> Option<String> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    header(headers, "location")
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
}

/// Whether a connection stays open after a message, by HTTP/1.x rules:
/// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
/// `Connection: keep-alive`.
pub fn keep_alive(version: u8, headers: &[(String, String)]) -> bool {
    if header_has_token(headers, "connection", "close") {
        return false;
    }
    version >= 1 || header_has_token(headers, "connection", "keep-alive")
}

/// The standard reason phrase for a status code ("" if unknown).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Whether `s` is a non-empty RFC 9110 token (method, header name).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `s` may go into a header value (no CR, LF or NUL).
pub(crate) fn is_field_value(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// Append validated header fields, refusing hand-set framing headers.
pub(crate) fn write_headers(
    headers: &[(String, String)],
    buf: &mut Vec<u8>,
) -> Result<(), H1Error> {
    for (n, v) in headers {
        if !is_token(n) {
            return Err(H1Error::InvalidOutgoing(format!("header name {n:?}")));
        }
        if !is_field_value(v) {
            return Err(H1Error::InvalidOutgoing(format!("header value for {n}")));
        }
        if n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding") {
            return Err(H1Error::InvalidOutgoing(format!(
                "framing header {n} (set by the body mode)"
            )));
        }
        buf.extend_from_slice(n.as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(v.trim().as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// Convert httparse headers into owned pairs (values lossily as UTF-8).
pub(crate) fn own_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect()
}

/// The value of `Content-Length`, rejecting malformed or differing repeats.
pub(crate) fn content_length(headers: &[(String, String)]) -> Result<Option<u64>, H1Error> {
    let mut found: Option<u64> = None;
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        for part in v.split(',') {
            let p = part.trim();
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(H1Error::BadContentLength);
            }
            let n: u64 = p.parse().map_err(|_| H1Error::BadContentLength)?;
            match found {
                Some(prev) if prev != n => return Err(H1Error::BadContentLength),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// Transfer-Encoding of a message: `None` if absent, `Some(true)` if the
/// final coding is `chunked`, `Some(false)` otherwise.
pub(crate) fn transfer_chunked(headers: &[(String, String)]) -> Option<bool> {
    let mut last: Option<String> = None;
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
    {
        for t in v.split(',') {
            let t = t.trim();
            if !t.is_empty() {
                last = Some(t.to_ascii_lowercase());
            }
        }
        if last.is_none() {
            last = Some(String::new());
        }
    }
    last.map(|l| l == "chunked")
}

/// Run `f` with `max` empty header slots for one httparse call. Up to
/// [`DEFAULT_MAX_HEADERS`] they live on the stack: a heap `Vec` here cost a
/// 2 KiB allocation (and glibc's `malloc_consolidate`) per message head.
pub(crate) fn with_header_slots<'b, R>(
    max: usize,
    f: impl FnOnce(&mut [httparse::Header<'b>]) -> R,
) -> R {
    if max <= DEFAULT_MAX_HEADERS {
        let mut hs = [httparse::EMPTY_HEADER; DEFAULT_MAX_HEADERS];
        f(&mut hs[..max]) // ok: max <= DEFAULT_MAX_HEADERS here
    } else {
        f(&mut vec![httparse::EMPTY_HEADER; max])
    }
}

/// Map an httparse error to ours; `request` picks the start-line error.
pub(crate) fn map_parse_error(e: httparse::Error, request: bool) -> H1Error {
    match e {
        httparse::Error::TooManyHeaders => H1Error::TooManyHeaders,
        httparse::Error::Version => H1Error::BadVersion,
        httparse::Error::HeaderName | httparse::Error::HeaderValue | httparse::Error::NewLine => {
            H1Error::BadHeader
        }
        _ if request => H1Error::BadRequestLine,
        _ => H1Error::BadStatusLine,
    }
}

/// Accumulates a message head up to the limit without copying the rest of
/// the input. `feed` returns how many bytes of `data` it took and, once the
/// head is complete, hands the buffer to `parse` which returns the head
/// length; bytes past the head are given back (not consumed).
#[derive(Debug, Default)]
pub(crate) struct HeadBuf {
    buf: Vec<u8>,
}

/// Result of one [`HeadBuf::feed`] step.
pub(crate) enum HeadStep<T> {
    /// Took all offered bytes; the head is not complete yet.
    NeedMore,
    /// The head is complete: the parsed value and how many bytes of the
    /// offered data belonged to it.
    Complete(T, usize),
}

impl HeadBuf {
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Offer `data`; `parse` is called on the accumulated head and returns
    /// `Ok(None)` for partial, `Ok(Some((value, head_len)))` when complete.
    pub(crate) fn feed<T>(
        &mut self,
        data: &[u8],
        max: usize,
        parse: impl FnOnce(&[u8]) -> Result<Option<(T, usize)>, H1Error>,
    ) -> Result<HeadStep<T>, H1Error> {
        let room = max.saturating_sub(self.buf.len());
        if room == 0 {
            return Err(H1Error::HeaderTooLarge);
        }
        let take = room.min(data.len());
        let (taken, _) = data.split_at(take);
        let before = self.buf.len();
        self.buf.extend_from_slice(taken);
        // A head ends with LF: don't reparse until one arrives.
        if !taken.contains(&b'\n') {
            if self.buf.len() >= max {
                return Err(H1Error::HeaderTooLarge);
            }
            return Ok(HeadStep::NeedMore);
        }
        match parse(&self.buf)? {
            Some((v, head_len)) => {
                if head_len > max || head_len < before {
                    return Err(H1Error::HeaderTooLarge);
                }
                self.buf.clear();
                Ok(HeadStep::Complete(v, head_len - before))
            }
            None if self.buf.len() >= max => Err(H1Error::HeaderTooLarge),
            None => Ok(HeadStep::NeedMore),
        }
    }
}
