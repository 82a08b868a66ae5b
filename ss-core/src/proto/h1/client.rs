//! The HTTP/1.1 client machine: one request at a time on a connection,
//! reusable after a keep-alive response.

use super::body::{Framing, Reader};
use super::multipart::{Spec, Writer};
use super::{
    chunked, content_length, keep_alive, map_parse_error, own_headers, transfer_chunked,
    with_header_slots, write_headers, BodyMode, H1Error, H1Event, HeadBuf, HeadStep, Limits, Out,
};

/// Client configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientConfig {
    /// Parsing limits for responses.
    pub limits: Limits,
}

/// A request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Method token, e.g. `GET`.
    pub method: String,
    /// Request target, e.g. `/path?x=1`.
    pub path: String,
    /// Value of the `Host` header; omitted if empty.
    pub host: String,
    /// Further header fields (not `Content-Length` / `Transfer-Encoding`,
    /// which come from `body`).
    pub headers: Vec<(String, String)>,
    /// How the body is framed. With `multipart`, a content length counts
    /// only the payload the application writes; the wrapping is added.
    pub body: BodyMode,
    /// Wrap the body as `multipart/form-data`, starting with this part
    /// (further parts: [`Client::next_part`], chunked bodies only).
    pub multipart: Option<Spec>,
    /// Mark the body `application/x-www-form-urlencoded` (ignored with
    /// `multipart` or when a `Content-Type` header is given).
    pub form_urlencoded: bool,
}

impl RequestHead {
    /// A request with no body and no extra headers.
    pub fn new(method: &str, path: &str, host: &str) -> Self {
        RequestHead {
            method: method.to_owned(),
            path: path.to_owned(),
            host: host.to_owned(),
            headers: Vec::new(),
            body: BodyMode::None,
            multipart: None,
            form_urlencoded: false,
        }
    }

    /// The `Content-Type` the request gets from `multipart` or
    /// `form_urlencoded`, unless `headers` already has one.
    pub fn implied_content_type(&self) -> Option<String> {
        if super::header(&self.headers, "content-type").is_some() {
            return None;
        }
        match &self.multipart {
            Some(mp) => Some(mp.content_type_header()),
            None if self.form_urlencoded => Some("application/x-www-form-urlencoded".into()),
            None => None,
        }
    }
}

#[derive(Debug)]
enum Tx {
    /// No request in progress.
    Idle,
    /// Body being written.
    Body {
        chunked: bool,
        /// Payload bytes still due (content-length mode).
        remaining: u64,
        /// Multipart framing of the payload.
        mp: Option<Writer>,
    },
    /// The request is fully written.
    Sent,
}

#[derive(Debug)]
enum Rx {
    /// No response expected.
    Idle,
    /// Waiting for (more of) a response head.
    Head,
    /// Reading a response body.
    Body { reader: Reader, keep_alive: bool },
    /// The response completed.
    Done { keep_alive: bool },
}

/// The client machine.
#[derive(Debug)]
pub struct Client {
    limits: Limits,
    head: HeadBuf,
    tx: Tx,
    rx: Rx,
    head_request: bool,
    request_close: bool,
    closed: bool,
    failed: Option<H1Error>,
}

impl Client {
    /// A client for a fresh connection.
    pub fn new(config: ClientConfig) -> Self {
        Client {
            limits: config.limits,
            head: HeadBuf::default(),
            tx: Tx::Idle,
            rx: Rx::Idle,
            head_request: false,
            request_close: false,
            closed: false,
            failed: None,
        }
    }

    /// Whether a new request may be started now (no request in progress and
    /// the connection is still usable).
    pub fn is_ready(&self) -> bool {
        self.failed.is_none()
            && !self.closed
            && matches!(self.tx, Tx::Idle)
            && matches!(self.rx, Rx::Idle)
    }

    /// Whether the request is fully written.
    pub fn is_request_sent(&self) -> bool {
        matches!(self.tx, Tx::Sent)
    }

    fn fail<T>(&mut self, r: Result<T, H1Error>) -> Result<T, H1Error> {
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn check(&self) -> Result<(), H1Error> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Serialise the request head into `out.transmit`. With
    /// [`BodyMode::None`] the request is complete at once (`Sent`).
    pub fn start(&mut self, head: &RequestHead, out: &mut Out) -> Result<(), H1Error> {
        self.check()?;
        if !self.is_ready() {
            return Err(H1Error::InvalidState(
                "request already in progress or connection closed",
            ));
        }
        if !super::is_token(&head.method) {
            return Err(H1Error::InvalidOutgoing(format!(
                "method {:?}",
                head.method
            )));
        }
        if head.path.is_empty() || head.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(H1Error::InvalidOutgoing(format!("path {:?}", head.path)));
        }
        if head
            .host
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'/')
        {
            return Err(H1Error::InvalidOutgoing(format!("host {:?}", head.host)));
        }
        let mp = head.multipart.as_ref().map(Writer::new).transpose()?;
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(head.method.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(head.path.as_bytes());
        buf.extend_from_slice(b" HTTP/1.1\r\n");
        if !head.host.is_empty() {
            buf.extend_from_slice(b"Host: ");
            buf.extend_from_slice(head.host.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        write_headers(&head.headers, &mut buf)?;
        if let Some(ct) = head.implied_content_type() {
            buf.extend_from_slice(b"Content-Type: ");
            buf.extend_from_slice(ct.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        let overhead = head.multipart.as_ref().map_or(0, Spec::overhead);
        let tx = match head.body {
            BodyMode::None if head.multipart.is_some() => {
                buf.extend_from_slice(format!("Content-Length: {overhead}\r\n").as_bytes());
                None
            }
            BodyMode::None => {
                let m = head.method.to_ascii_uppercase();
                if m == "POST" || m == "PUT" || m == "PATCH" {
                    buf.extend_from_slice(b"Content-Length: 0\r\n");
                }
                None
            }
            BodyMode::ContentLength(n) => {
                let total = n
                    .checked_add(overhead)
                    .ok_or(H1Error::InvalidOutgoing("content length".into()))?;
                buf.extend_from_slice(format!("Content-Length: {total}\r\n").as_bytes());
                Some((false, n))
            }
            BodyMode::Chunked => {
                buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                Some((true, 0))
            }
        };
        buf.extend_from_slice(b"\r\n");
        out.transmit.extend_from_slice(&buf);

        self.head_request = head.method.eq_ignore_ascii_case("HEAD");
        self.request_close = super::header_has_token(&head.headers, "connection", "close");
        self.rx = Rx::Head;
        match tx {
            None => {
                if let Some(mut mp) = mp {
                    mp.finish(&mut out.transmit);
                }
                self.tx = Tx::Sent;
                out.events.push(H1Event::Sent {
                    keep_alive: !self.request_close,
                });
            }
            Some((chunked, remaining)) => {
                self.tx = Tx::Body {
                    chunked,
                    remaining,
                    mp,
                };
                if !chunked && remaining == 0 {
                    // Nothing to wait for: finish the body now.
                    self.write_body(&[], true, out)?;
                }
            }
        }
        Ok(())
    }

    /// Write body payload, framed as declared by [`Client::start`]; `eom`
    /// ends the body. Writing past a content length, or ending short of it,
    /// is an error. A content-length body ends by itself once complete.
    pub fn write_body(&mut self, data: &[u8], eom: bool, out: &mut Out) -> Result<(), H1Error> {
        self.check()?;
        let Tx::Body {
            chunked,
            remaining,
            mp,
        } = &mut self.tx
        else {
            if data.is_empty() && matches!(self.tx, Tx::Sent) {
                return Ok(());
            }
            return Err(H1Error::InvalidState("no request body in progress"));
        };
        let done = if *chunked {
            let mut payload = Vec::new();
            match mp {
                Some(mp) => {
                    mp.data(data, &mut payload)?;
                    if eom {
                        mp.finish(&mut payload);
                    }
                }
                None => payload.extend_from_slice(data),
            }
            chunked::encode_chunk(&payload, &mut out.transmit);
            if eom {
                chunked::encode_last(&mut out.transmit);
            }
            eom
        } else {
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
            let done = *remaining == 0;
            match mp {
                Some(mp) => {
                    mp.data(data, &mut out.transmit)?;
                    if done {
                        mp.finish(&mut out.transmit);
                    }
                }
                None => out.transmit.extend_from_slice(data),
            }
            done
        };
        if done {
            self.tx = Tx::Sent;
            out.events.push(H1Event::Sent {
                keep_alive: !self.request_close,
            });
            self.maybe_reset();
        }
        Ok(())
    }

    /// End the current multipart part of a chunked request body: the next
    /// payload goes into a new part described by `spec` (same boundary as
    /// the request's [`RequestHead::multipart`]). The part header goes out
    /// with the next payload, or with the end of the body.
    pub fn next_part(&mut self, spec: &Spec) -> Result<(), H1Error> {
        self.check()?;
        match &mut self.tx {
            Tx::Body {
                chunked: true,
                mp: Some(mp),
                ..
            } => {
                let r = mp.next_part(spec);
                self.fail(r)
            }
            Tx::Body { mp: Some(_), .. } => Err(H1Error::InvalidState(
                "further multipart parts need a chunked body",
            )),
            _ => Err(H1Error::InvalidState(
                "no multipart request body in progress",
            )),
        }
    }

    /// Once request and response are both complete on a kept-alive
    /// connection, get ready for the next request.
    fn maybe_reset(&mut self) {
        if let (Tx::Sent, Rx::Done { keep_alive }) = (&self.tx, &self.rx) {
            if *keep_alive {
                self.tx = Tx::Idle;
                self.rx = Rx::Idle;
            } else {
                self.closed = true;
            }
        }
    }

    /// Bytes arrived from the server.
    pub fn handle_input(&mut self, data: &[u8], out: &mut Out) -> Result<(), H1Error> {
        self.check()?;
        let r = self.input(data, out);
        self.fail(r)
    }

    fn input(&mut self, mut data: &[u8], out: &mut Out) -> Result<(), H1Error> {
        while !data.is_empty() {
            match &mut self.rx {
                Rx::Idle | Rx::Done { .. } => return Err(H1Error::UnexpectedData),
                Rx::Head => {
                    let max_headers = self.limits.max_headers;
                    let step = self.head.feed(data, self.limits.max_header_bytes, |buf| {
                        with_header_slots(max_headers, |hs| {
                            let mut resp = httparse::Response::new(hs);
                            match resp.parse(buf) {
                                Ok(httparse::Status::Complete(n)) => {
                                    let status = resp.code.ok_or(H1Error::BadStatusLine)?;
                                    let version = resp.version.ok_or(H1Error::BadVersion)?;
                                    let reason = resp.reason.unwrap_or_default().to_owned();
                                    Ok(Some((
                                        (status, version, reason, own_headers(resp.headers)),
                                        n,
                                    )))
                                }
                                Ok(httparse::Status::Partial) => Ok(None),
                                Err(e) => Err(map_parse_error(e, false)),
                            }
                        })
                    })?;
                    match step {
                        HeadStep::NeedMore => return Ok(()),
                        HeadStep::Complete((status, version, reason, headers), used) => {
                            data = data.get(used..).unwrap_or_default();
                            self.on_head(status, version, reason, headers, out)?;
                        }
                    }
                }
                Rx::Body { reader, keep_alive } => {
                    let keep_alive = *keep_alive;
                    let (used, done) = reader.feed(data, &mut out.events)?;
                    data = data.get(used..).unwrap_or_default();
                    if done {
                        self.finish(keep_alive, out);
                    }
                }
            }
        }
        Ok(())
    }

    fn on_head(
        &mut self,
        status: u16,
        version: u8,
        reason: String,
        headers: Vec<(String, String)>,
        out: &mut Out,
    ) -> Result<(), H1Error> {
        if !(100..=999).contains(&status) {
            return Err(H1Error::BadStatusLine);
        }
        if (100..200).contains(&status) && status != 101 {
            // Interim response: skip it and wait for the final one.
            return Ok(());
        }
        let mut ka = keep_alive(version, &headers) && !self.request_close;
        let no_body = self.head_request || status == 101 || status == 204 || status == 304;
        let framing = if no_body {
            None
        } else {
            match transfer_chunked(&headers) {
                Some(true) => Some(Reader::chunked(&self.limits)),
                Some(false) => Some(Reader::new(Framing::ToClose)),
                None => match content_length(&headers)? {
                    Some(n) => Some(Reader::new(Framing::Length(n))),
                    None => Some(Reader::new(Framing::ToClose)),
                },
            }
        };
        if status == 101 || framing.as_ref().is_some_and(Reader::is_to_close) {
            ka = false;
        }
        out.events.push(H1Event::ResponseHead {
            status,
            reason,
            headers,
        });
        match framing {
            None => self.finish(ka, out),
            Some(mut reader) => {
                // A zero-length body completes at once.
                let (_, done) = reader.feed(&[], &mut out.events)?;
                if done {
                    self.finish(ka, out);
                } else {
                    self.rx = Rx::Body {
                        reader,
                        keep_alive: ka,
                    };
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, keep_alive: bool, out: &mut Out) {
        out.events.push(H1Event::Done { keep_alive });
        self.rx = Rx::Done { keep_alive };
        if !keep_alive {
            self.closed = true;
        }
        self.maybe_reset();
    }

    /// The server closed the connection: ends a read-to-close body; an
    /// error if a response was due or incomplete.
    pub fn handle_eof(&mut self, out: &mut Out) -> Result<(), H1Error> {
        self.check()?;
        self.closed = true;
        let r = match &mut self.rx {
            Rx::Idle | Rx::Done { .. } => Ok(()),
            Rx::Head => Err(H1Error::Incomplete),
            Rx::Body { reader, .. } => match reader.eof(&mut out.events) {
                Ok(()) => {
                    self.finish(false, out);
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        self.fail(r)
    }
}
