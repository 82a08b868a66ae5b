//! The HTTP/1.1 server machine: parses requests (pipelined ones in order),
//! answers `Expect: 100-continue`, and serialises responses in request order.

use super::body::{Framing, Reader};
use super::{
    chunked, content_length, keep_alive, map_parse_error, own_headers, reason_phrase,
    transfer_chunked, with_header_slots, write_headers, BodyMode, H1Error, H1Event, HeadBuf,
    HeadStep, Limits, Out,
};
use std::collections::VecDeque;

/// Server configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerConfig {
    /// Parsing limits for requests.
    pub limits: Limits,
}

/// A request parsed but not yet answered.
#[derive(Debug)]
struct Pending {
    head: bool,
    keep_alive: bool,
    http10: bool,
    /// `Expect: 100-continue` not yet answered.
    expect_continue: bool,
    body_done: bool,
}

#[derive(Debug)]
enum Rx {
    Head,
    Body(Reader),
    /// A request without keep-alive completed: nothing more is accepted.
    Closed,
}

#[derive(Debug)]
enum Tx {
    Idle,
    Body {
        mode: TxMode,
        /// Body bytes are dropped (response to HEAD).
        discard: bool,
        keep_alive: bool,
    },
}

#[derive(Debug)]
enum TxMode {
    Chunked,
    Length(u64),
    /// Delimited by closing the connection (HTTP/1.0 client).
    Close,
}

/// The server machine.
#[derive(Debug)]
pub struct Server {
    limits: Limits,
    head: HeadBuf,
    rx: Rx,
    tx: Tx,
    pending: VecDeque<Pending>,
    failed: Option<H1Error>,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Server {
    /// A server for a freshly accepted connection.
    pub fn new(config: ServerConfig) -> Self {
        Server {
            limits: config.limits,
            head: HeadBuf::default(),
            rx: Rx::Head,
            tx: Tx::Idle,
            pending: VecDeque::new(),
            failed: None,
        }
    }

    /// Requests parsed and not yet fully answered.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn check(&self) -> Result<(), H1Error> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn fail<T>(&mut self, r: Result<T, H1Error>) -> Result<T, H1Error> {
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// Bytes arrived from the client.
    pub fn handle_input(&mut self, data: &[u8], out: &mut Out) -> Result<(), H1Error> {
        self.check()?;
        let r = self.input(data, out);
        self.fail(r)
    }

    fn input(&mut self, mut data: &[u8], out: &mut Out) -> Result<(), H1Error> {
        while !data.is_empty() {
            match &mut self.rx {
                Rx::Closed => return Err(H1Error::UnexpectedData),
                Rx::Head => {
                    if self.head.is_empty() && self.pending.len() >= self.limits.max_pipelined {
                        return Err(H1Error::TooManyPipelined);
                    }
                    let max_headers = self.limits.max_headers;
                    let step = self.head.feed(data, self.limits.max_header_bytes, |buf| {
                        with_header_slots(max_headers, |hs| {
                            let mut req = httparse::Request::new(hs);
                            match req.parse(buf) {
                                Ok(httparse::Status::Complete(n)) => {
                                    let method =
                                        req.method.ok_or(H1Error::BadRequestLine)?.to_owned();
                                    let path = req.path.ok_or(H1Error::BadRequestLine)?.to_owned();
                                    let version = req.version.ok_or(H1Error::BadVersion)?;
                                    Ok(Some(((method, path, version, own_headers(req.headers)), n)))
                                }
                                Ok(httparse::Status::Partial) => Ok(None),
                                Err(e) => Err(map_parse_error(e, true)),
                            }
                        })
                    })?;
                    match step {
                        HeadStep::NeedMore => return Ok(()),
                        HeadStep::Complete((method, path, version, headers), used) => {
                            data = data.get(used..).unwrap_or_default();
                            self.on_head(method, path, version, headers, out)?;
                        }
                    }
                }
                Rx::Body(reader) => {
                    let (used, done) = reader.feed(data, &mut out.events)?;
                    data = data.get(used..).unwrap_or_default();
                    if done {
                        self.request_done(out);
                    }
                }
            }
        }
        Ok(())
    }

    fn on_head(
        &mut self,
        method: String,
        path: String,
        version: u8,
        headers: Vec<(String, String)>,
        out: &mut Out,
    ) -> Result<(), H1Error> {
        let te = transfer_chunked(&headers);
        let cl = content_length(&headers)?;
        let framing = match (te, cl) {
            (Some(_), Some(_)) => return Err(H1Error::ConflictingFraming),
            (Some(true), None) if version >= 1 => Some(Reader::chunked(&self.limits)),
            (Some(_), None) => return Err(H1Error::UnsupportedTransferEncoding),
            (None, Some(n)) => Some(Reader::new(Framing::Length(n))),
            (None, None) => None,
        };
        let expect = version >= 1
            && super::header(&headers, "expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && !matches!(cl, Some(0));
        let ka = keep_alive(version, &headers);
        self.pending.push_back(Pending {
            head: method.eq_ignore_ascii_case("HEAD"),
            keep_alive: ka,
            http10: version == 0,
            expect_continue: expect && framing.is_some(),
            body_done: false,
        });
        out.events.push(H1Event::RequestHead {
            method,
            path,
            headers,
        });
        match framing {
            None => self.request_done(out),
            Some(mut reader) => {
                let (_, done) = reader.feed(&[], &mut out.events)?;
                if done {
                    self.request_done(out);
                } else {
                    self.rx = Rx::Body(reader);
                    self.maybe_continue(out);
                }
            }
        }
        Ok(())
    }

    fn request_done(&mut self, out: &mut Out) {
        let ka = match self.pending.back_mut() {
            Some(p) => {
                p.body_done = true;
                p.expect_continue = false;
                p.keep_alive
            }
            None => false,
        };
        out.events.push(H1Event::Done { keep_alive: ka });
        self.rx = if ka { Rx::Head } else { Rx::Closed };
    }

    /// Send `100 Continue` if the oldest request awaits it and no response
    /// is in progress.
    fn maybe_continue(&mut self, out: &mut Out) {
        if !matches!(self.tx, Tx::Idle) {
            return;
        }
        if let Some(p) = self.pending.front_mut() {
            if p.expect_continue && !p.body_done {
                p.expect_continue = false;
                out.transmit.extend_from_slice(CONTINUE);
            }
        }
    }

    /// Begin the response to the oldest unanswered request. `Content-Length`
    /// / `Transfer-Encoding` come from `body`; `Connection: close` is added
    /// when the connection will not be kept. A 1xx status is sent as an
    /// interim response. With [`BodyMode::None`] the response is complete
    /// at once.
    pub fn respond(
        &mut self,
        status: u16,
        headers: &[(String, String)],
        body: BodyMode,
        out: &mut Out,
    ) -> Result<(), H1Error> {
        self.check()?;
        if !matches!(self.tx, Tx::Idle) {
            return Err(H1Error::InvalidState("response already in progress"));
        }
        let Some(front) = self.pending.front_mut() else {
            return Err(H1Error::InvalidState("no request to respond to"));
        };
        if !(100..=999).contains(&status) {
            return Err(H1Error::InvalidOutgoing(format!("status {status}")));
        }
        let interim = (100..200).contains(&status) && status != 101;
        let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
        if bodiless && body != BodyMode::None {
            return Err(H1Error::BodyNotAllowed);
        }
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(
            format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes(),
        );
        write_headers(headers, &mut buf)?;
        if interim {
            buf.extend_from_slice(b"\r\n");
            out.transmit.extend_from_slice(&buf);
            if status == 100 {
                front.expect_continue = false;
            }
            return Ok(());
        }
        front.expect_continue = false;
        let mut ka = front.keep_alive
            && status != 101
            && !super::header_has_token(headers, "connection", "close");
        let chunked = match body {
            BodyMode::None => {
                if !bodiless {
                    buf.extend_from_slice(b"Content-Length: 0\r\n");
                }
                false
            }
            BodyMode::ContentLength(n) => {
                buf.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
                false
            }
            BodyMode::Chunked if front.http10 => {
                // HTTP/1.0 has no chunked coding: delimit by closing.
                ka = false;
                false
            }
            BodyMode::Chunked => {
                buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                true
            }
        };
        if !ka && !super::header_has_token(headers, "connection", "close") {
            buf.extend_from_slice(b"Connection: close\r\n");
        } else if ka && front.http10 {
            buf.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        buf.extend_from_slice(b"\r\n");
        out.transmit.extend_from_slice(&buf);
        let discard = front.head;
        let mode = match body {
            BodyMode::None | BodyMode::ContentLength(0) => {
                self.response_done(ka, out);
                return Ok(());
            }
            BodyMode::ContentLength(n) => TxMode::Length(n),
            BodyMode::Chunked if chunked => TxMode::Chunked,
            BodyMode::Chunked => TxMode::Close,
        };
        self.tx = Tx::Body {
            mode,
            discard,
            keep_alive: ka,
        };
        Ok(())
    }

    /// Write response body payload; `eom` ends it. Writing past a content
    /// length, or ending short of it, is an error. For a HEAD request the
    /// bytes are dropped.
    pub fn write_body(&mut self, data: &[u8], eom: bool, out: &mut Out) -> Result<(), H1Error> {
        self.check()?;
        let Tx::Body {
            mode,
            discard,
            keep_alive,
        } = &mut self.tx
        else {
            if data.is_empty() {
                return Ok(());
            }
            return Err(H1Error::InvalidState("no response body in progress"));
        };
        let ka = *keep_alive;
        let mut wire = Vec::new();
        let done = match mode {
            TxMode::Chunked => {
                chunked::encode_chunk(data, &mut wire);
                if eom {
                    chunked::encode_last(&mut wire);
                }
                eom
            }
            TxMode::Close => {
                wire.extend_from_slice(data);
                eom
            }
            TxMode::Length(remaining) => {
                let len = data.len() as u64;
                if len > *remaining {
                    let e = Err(H1Error::BodyTooLong);
                    return self.fail(e);
                }
                *remaining -= len;
                if eom && *remaining > 0 {
                    let e = Err(H1Error::BodyTooShort);
                    return self.fail(e);
                }
                wire.extend_from_slice(data);
                *remaining == 0
            }
        };
        if !*discard {
            out.transmit.extend_from_slice(&wire);
        }
        if done {
            self.response_done(ka, out);
        }
        Ok(())
    }

    fn response_done(&mut self, keep_alive: bool, out: &mut Out) {
        self.tx = Tx::Idle;
        self.pending.pop_front();
        out.events.push(H1Event::Sent { keep_alive });
        if !keep_alive {
            self.rx = Rx::Closed;
            self.pending.clear();
        } else {
            self.maybe_continue(out);
        }
    }

    /// The client closed the connection: an error if a request was
    /// incomplete.
    pub fn handle_eof(&mut self) -> Result<(), H1Error> {
        self.check()?;
        let r = match &self.rx {
            Rx::Head if !self.head.is_empty() => Err(H1Error::Incomplete),
            Rx::Body(_) => Err(H1Error::Incomplete),
            _ => Ok(()),
        };
        self.fail(r)
    }
}
