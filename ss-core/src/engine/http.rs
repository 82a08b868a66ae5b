//! HTTP/1.1 glue: maps the policy (`http_*` keys, metadata headers, system
//! blobs, cookies) and the stream lifecycle onto the pure [`h1`] machines.
//!
//! Client transaction, as in the reference (`ss-h1.c`): the request goes out
//! when the transport is up (the stream is still CONNECTING and may already
//! be given `Writable` for a body); the response head reports CONNECTED (after
//! header metadata and any `http_resp_map` state), the body arrives as rx with
//! SOM / EOM, and completion reports QOS_ACK_REMOTE or QOS_NACK_REMOTE, then
//! DISCONNECTED as the connection is released (kept alive for reuse when the
//! peer allows). 503 and 429 back off silently, honouring `Retry-After`.
//!
//! Server transaction: each request reports SERVER_TXN after its method, path,
//! `Authorization`, mapped headers and URL arguments are set as metadata; the
//! application answers with `server_ack` (status; 404 if never called, 200 for
//! 0), mapped metadata as response headers (e.g. `mime` → `Content-Type`),
//! `request_tx_len` (Content-Length; chunked without it) and its writes.

use super::{Conn, ConnId, Engine, Error, Event, Phase, Proto, Seq, StreamId, SystemBlob, Timer};
use crate::policy::{Protocol, StreamType};
use crate::proto::h1::{self, multipart, BodyMode, H1Event, RequestHead};
use crate::proto::ws;
use crate::state::{Flags, StreamState};
use crate::EngineConfig;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Longest `Retry-After` honoured, so a hostile server cannot park a stream for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Most bytes of pipelined requests a server connection holds while it answers one.
const MAX_HELD_BYTES: usize = 64 * 1024;

/// Where a followed redirect points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Redirect {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub path: String,
    /// The request method after the redirect (303 and most 301/302 turn into GET).
    pub method: Option<String>,
}

/// A client connection's HTTP/1.1 state.
#[derive(Debug)]
pub(super) struct ClientConn {
    m: h1::Client,
    /// A request was started on this connection for the current stream.
    started: bool,
    /// The request has a body still to be written.
    body_open: bool,
    /// The request carries a body: a retry must ask the application for it again.
    had_body: bool,
    /// The response status met the policy's idea of success.
    good: bool,
    /// Incoming multipart being split into parts (`http_multipart_ss_in`).
    multipart: Option<multipart::Decoder>,
}

impl ClientConn {
    pub(super) fn new(config: &EngineConfig) -> Self {
        ClientConn {
            m: h1::Client::new(h1::ClientConfig {
                limits: config.http_limits,
            }),
            started: false,
            body_open: false,
            had_body: false,
            good: false,
            multipart: None,
        }
    }

    /// Whether the application may write request body now.
    pub(super) fn wants_body(&self) -> bool {
        self.started && self.body_open
    }
}

/// A server connection's HTTP/1.1 state.
#[derive(Debug)]
pub(super) struct ServerConn {
    m: h1::Server,
    /// A request arrived and its response is not complete.
    in_txn: bool,
    /// The response head was written.
    responding: bool,
    /// The response can carry no body (HEAD-independent: 204, 304, 1xx).
    bodiless: bool,
    /// Events of pipelined requests waiting for the current response.
    held: VecDeque<H1Event>,
    held_bytes: usize,
}

impl ServerConn {
    pub(super) fn new(config: &EngineConfig) -> Self {
        ServerConn {
            m: h1::Server::new(h1::ServerConfig {
                limits: config.http_limits,
            }),
            in_txn: false,
            responding: false,
            bodiless: false,
            held: VecDeque::new(),
            held_bytes: 0,
        }
    }

    /// Whether the application may write the response now.
    pub(super) fn wants_response(&self) -> bool {
        self.in_txn
    }
}

fn client_of(c: &mut Conn) -> Option<&mut ClientConn> {
    match &mut c.proto {
        Proto::H1Client(t) => Some(t),
        _ => None,
    }
}

/// The WebSocket client state of a connection.
pub(super) fn client_of_ws(c: &mut Conn) -> Option<&mut super::websocket::WsClientConn> {
    match &mut c.proto {
        Proto::WsClient(t) => Some(t),
        _ => None,
    }
}

pub(super) fn server_of(c: &mut Conn) -> Option<&mut ServerConn> {
    match &mut c.proto {
        Proto::H1Server(t) => Some(t),
        _ => None,
    }
}

/// A header name from a policy value such as `content-type:`.
pub(super) fn header_name(policy_value: &str) -> &str {
    policy_value.trim().trim_end_matches(':').trim()
}

/// Lower-case hex of `bytes` (`auth_hexify`).
fn hexify(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn method_has_body(method: &str) -> bool {
    matches!(
        method.to_ascii_uppercase().as_str(),
        "POST" | "PUT" | "PATCH"
    )
}

/// Parse a `Location` against the current target.
fn parse_location(loc: &str, cur_host: &str, cur_port: u16, cur_tls: bool) -> Option<Redirect> {
    let (tls, rest) = if let Some(r) = loc.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = loc.strip_prefix("http://") {
        (false, r)
    } else {
        let path = if loc.starts_with('/') {
            loc.to_string()
        } else {
            format!("/{loc}")
        };
        return Some(Redirect {
            host: cur_host.to_string(),
            port: cur_port,
            tls: cur_tls,
            path,
            method: None,
        });
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()), // ok: i from find('/'), an ASCII boundary
        None => (rest, "/".to_string()),
    };
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Some(Redirect {
        host,
        port,
        tls,
        path,
        method: None,
    })
}

/// The multipart part a streamtype's payload goes in (`http_multipart_name`,
/// `_filename`, `_content_type`), if it names one.
fn part_spec(st: &StreamType, boundary: &str) -> Option<multipart::Spec> {
    let name = st.http.multipart_name.as_deref()?;
    let mut spec = multipart::Spec::new(name);
    spec.boundary = boundary.to_string();
    spec.filename = st.http.multipart_filename.clone();
    spec.content_type = st.http.multipart_content_type.clone();
    Some(spec)
}

/// `http_multipart_ss_in`: a decoder for a `multipart/*` response of a
/// streamtype that asks for the split (`None` otherwise).
pub(super) fn multipart_in(
    st: &StreamType,
    headers: &[(String, String)],
) -> Result<Option<multipart::Decoder>, h1::H1Error> {
    if !st.http.multipart_ss_in {
        return Ok(None);
    }
    match h1::header(headers, "content-type") {
        Some(ct)
            if ct
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/") =>
        {
            multipart::Decoder::from_content_type(ct).map(Some)
        }
        _ => Ok(None),
    }
}

/// Response body bytes of a split multipart response: each part's payload
/// as rx SOM..EOM, `RELATED_END` after the closing boundary.
pub(super) fn multipart_rx(
    dec: &mut multipart::Decoder,
    sid: StreamId,
    data: &[u8],
    events: &mut VecDeque<Event>,
) -> Result<(), h1::H1Error> {
    let mut parts = Vec::new();
    let r = dec.feed(data, &mut parts);
    for p in parts {
        let (data, flags) = match p {
            multipart::Event::Part { .. } => continue,
            multipart::Event::Data { data, flags } => (data, flags),
            multipart::Event::End => (Vec::new(), Flags::RELATED_END),
        };
        events.push_back(Event::Rx {
            stream: sid,
            data,
            flags,
        });
    }
    r
}

/// The response ended: a split multipart body that lacked its closing
/// boundary still closes its group.
pub(super) fn multipart_end(dec: multipart::Decoder, sid: StreamId, events: &mut VecDeque<Event>) {
    if !dec.is_done() {
        events.push_back(Event::Rx {
            stream: sid,
            data: Vec::new(),
            flags: Flags::RELATED_END,
        });
    }
}

/// The value of URL argument `name` in a request target (`?a=1&b=2`).
fn url_arg<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

impl Engine {
    // ----- client --------------------------------------------------------

    /// Build the request for stream `sid` from its policy, metadata, blobs and cookies.
    pub(super) fn h1_request(
        &mut self,
        sid: StreamId,
        body_wanted: bool,
    ) -> Result<RequestHead, String> {
        let s = self.streams.get(&sid).ok_or("stream gone")?;
        let st: &StreamType = &s.st;
        let (host, port, tls, path, method) = match &s.redirect {
            Some(r) => (
                r.host.clone(),
                r.port,
                r.tls,
                r.path.clone(),
                r.method
                    .clone()
                    .unwrap_or_else(|| st.http.method.clone().unwrap_or_else(|| "GET".into())),
            ),
            None => {
                let ep = st.endpoint.as_deref().unwrap_or("");
                let host = s.substitute(ep).map_err(|e| e.to_string())?;
                let url = st.http.url.as_deref().unwrap_or("/");
                let url = s.substitute(url).map_err(|e| e.to_string())?;
                let path = if url.starts_with('/') {
                    url
                } else {
                    format!("/{url}")
                };
                let method = st.http.method.clone().unwrap_or_else(|| "GET".into());
                (host, st.port, st.tls, path, method)
            }
        };
        let default_port = if tls { 443 } else { 80 };
        let host_header = if host.starts_with('+') {
            "localhost".to_string()
        } else if host.contains(':') && !host.starts_with('[') {
            // An IPv6 literal.
            format!("[{host}]")
        } else {
            host.clone()
        };
        let host_header = if port == default_port || host.starts_with('+') {
            host_header
        } else {
            format!("{host_header}:{port}")
        };
        let mut head = RequestHead::new(&method, &path, &host_header);
        // Blob-based headers: a named header whose blob is missing fails the
        // transaction, as in the reference.
        let auth_blob = st
            .use_auth
            .as_deref()
            .and_then(|n| self.policy.auth.iter().find(|a| a.name == n))
            .map_or(0, |a| a.blob);
        let blob_headers = [
            (&st.http.auth_header, SystemBlob::Auth(auth_blob)),
            (&st.http.dsn_header, SystemBlob::DeviceSerial),
            (&st.http.fwv_header, SystemBlob::FirmwareVersion),
            (&st.http.devtype_header, SystemBlob::DeviceType),
        ];
        for (name, blob) in blob_headers {
            let Some(name) = name else { continue };
            let value = self
                .blobs
                .get(&blob)
                .ok_or_else(|| format!("http: no {blob:?} blob set for header {name}"))?;
            let mut v = String::new();
            if let (SystemBlob::Auth(_), Some(pre)) = (blob, &st.http.auth_preamble) {
                v.push_str(pre);
            }
            if matches!(blob, SystemBlob::Auth(_)) && st.http.auth_hexify {
                v.push_str(&hexify(value));
            } else {
                v.push_str(&String::from_utf8_lossy(value));
            }
            head.headers.push((header_name(name).to_string(), v));
        }
        // Metadata-based headers: each set item with a header mapping.
        for (decl, value) in st.metadata.iter().zip(&s.metadata) {
            if let (Some(h), Some(v)) = (&decl.header, value) {
                head.headers.push((
                    header_name(h).to_string(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
        }
        if st.http.cookies {
            if let Some(c) = self.cookies.get(&st.name).and_then(|j| j.render()) {
                head.headers.push(("Cookie".into(), c));
            }
        }
        head.body = match s.tx_len {
            // `http_no_content_length`: the length is known but not announced.
            Some(_) if st.http.no_content_length && method_has_body(&method) => BodyMode::Chunked,
            Some(n) if method_has_body(&method) || n > 0 => BodyMode::ContentLength(n),
            _ if body_wanted && method_has_body(&method) => BodyMode::Chunked,
            _ => BodyMode::None,
        };
        if st.http.rideshare.is_some() && head.body != BodyMode::None {
            // Parts of further streamtypes follow: the total is not known.
            head.body = BodyMode::Chunked;
        }
        if st.http.multipart_name.is_some() {
            let boundary = format!(
                "ss-{:016x}{:016x}",
                self.rng.next_u64(),
                self.rng.next_u64()
            );
            head.multipart = part_spec(st, &boundary);
        }
        head.form_urlencoded = st.http.www_form_urlencoded;
        // A new body starts with the stream's own streamtype.
        let boundary = head.multipart.as_ref().map(|m| m.boundary.clone());
        if let Some(s) = self.streams.get_mut(&sid) {
            s.ride.clear();
            s.boundary = boundary;
        }
        Ok(head)
    }

    /// The application ended a part of `sid`'s request body with EOM: move
    /// on down the `rideshare` chain. `None` when the body ends here (the
    /// current streamtype names no `rideshare`, or the next one was already
    /// used in this body, so a cycle cannot make it endless); otherwise the
    /// next part's header, if the body is multipart and the next streamtype
    /// has `http_multipart_name` (without one, as in the reference, its
    /// payload just follows in the current part).
    pub(super) fn ride_next(&mut self, sid: StreamId) -> Option<Option<multipart::Spec>> {
        let s = self.streams.get(&sid)?;
        let cur = match s.ride.last() {
            Some(name) => self.shared.get(name).map(|(st, _)| st.clone())?,
            None => s.st.clone(),
        };
        let next = cur.http.rideshare.as_deref()?;
        if next == s.st.name || s.ride.iter().any(|r| r == next) {
            return None;
        }
        let (next_st, _) = self.shared.get(next)?;
        let spec = s.boundary.as_deref().and_then(|b| part_spec(next_st, b));
        let name = next_st.name.clone();
        if let Some(s) = self.streams.get_mut(&sid) {
            s.ride.push(name);
        }
        Some(spec)
    }

    /// The transport is up: send the request.
    pub(super) fn h1c_start(&mut self, now: Instant, conn: ConnId) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.stream) else {
            return;
        };
        let body_wanted = self.tx_pending.contains(&sid);
        let head = match self.h1_request(sid, body_wanted) {
            Ok(h) => h,
            Err(reason) => return self.attempt_fail(now, conn, reason),
        };
        self.timers.set(
            Timer::HttpSilence(conn),
            now + self.config.http_silence_timeout,
        );
        let mut out = h1::Out::default();
        let res = self.conns.get_mut(&conn).and_then(client_of).map(|t| {
            t.started = true;
            t.good = false;
            t.multipart = None;
            let r = t.m.start(&head, &mut out);
            t.body_open = r.is_ok() && !t.m.is_request_sent();
            t.had_body = t.body_open;
            r
        });
        self.transmit(conn, std::mem::take(&mut out.transmit));
        match res {
            Some(Ok(())) => {
                let body_open = self
                    .conns
                    .get_mut(&conn)
                    .and_then(client_of)
                    .is_some_and(|t| t.body_open);
                if !body_open {
                    // Nothing for the application to write in this transaction.
                    self.tx_pending.remove(&sid);
                }
            }
            Some(Err(e)) => self.attempt_fail(now, conn, e.to_string()),
            None => {}
        }
    }

    /// The application wrote request body.
    pub(super) fn h1c_write(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: StreamId,
        data: &[u8],
        flags: Flags,
    ) -> Result<usize, Error> {
        match self.conns.get_mut(&conn).and_then(client_of) {
            None => return Err(Error::NotConnected(id)),
            Some(t) if !t.wants_body() => {
                return Err(Error::WrongKind("this request has no body to write"))
            }
            Some(_) => {}
        }
        // An EOM ends the body, or only this part of a rideshare chain.
        let next = if flags.contains(Flags::EOM) {
            self.ride_next(id)
        } else {
            None
        };
        let Some(t) = self.conns.get_mut(&conn).and_then(client_of) else {
            return Err(Error::NotConnected(id));
        };
        let mut out = h1::Out::default();
        let eom = flags.contains(Flags::EOM) && next.is_none();
        let mut res = t.m.write_body(data, eom, &mut out);
        if let (Ok(()), Some(Some(spec))) = (&res, &next) {
            res = t.m.next_part(spec);
        }
        t.body_open = res.is_ok() && !t.m.is_request_sent();
        self.transmit(conn, out.transmit);
        if res.is_ok() && next.is_some() {
            // The next streamtype's part is asked for at once.
            self.tx_pending.insert(id);
            self.service_tx();
        }
        match res {
            Ok(()) => Ok(data.len()),
            Err(e) => {
                let msg = e.to_string();
                self.attempt_fail(now, conn, msg.clone());
                Err(Error::Protocol(msg))
            }
        }
    }

    /// Response bytes arrived.
    pub(super) fn h1c_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        self.timers.set(
            Timer::HttpSilence(conn),
            now + self.config.http_silence_timeout,
        );
        let mut out = h1::Out::default();
        let Some(t) = self.conns.get_mut(&conn).and_then(client_of) else {
            return;
        };
        let res = t.m.handle_input(data, &mut out);
        self.transmit(conn, out.transmit);
        for ev in out.events {
            if !self.h1c_event(now, conn, ev) {
                return;
            }
        }
        if let Err(e) = res {
            self.attempt_fail(now, conn, e.to_string());
        }
    }

    /// Handle one machine event; false once the connection no longer carries the stream.
    fn h1c_event(&mut self, now: Instant, conn: ConnId, ev: H1Event) -> bool {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.stream) else {
            return false;
        };
        match ev {
            H1Event::ResponseHead {
                status, headers, ..
            } => self.h1c_head(now, conn, sid, status, headers),
            H1Event::Body { data, flags } => {
                let Some(t) = self.conns.get_mut(&conn).and_then(client_of) else {
                    return false;
                };
                if let Some(dec) = t.multipart.as_mut() {
                    if let Err(e) = multipart_rx(dec, sid, &data, &mut self.events) {
                        self.attempt_fail(now, conn, e.to_string());
                        return false;
                    }
                } else {
                    self.events.push_back(Event::Rx {
                        stream: sid,
                        data,
                        flags,
                    });
                }
                true
            }
            H1Event::Done { keep_alive } => {
                self.h1c_done(now, conn, sid, keep_alive);
                false
            }
            H1Event::Sent { .. } | H1Event::RequestHead { .. } => true,
        }
    }

    /// The response head: redirects, back-pressure statuses, metadata, CONNECTED.
    fn h1c_head(
        &mut self,
        now: Instant,
        conn: ConnId,
        sid: StreamId,
        status: u16,
        headers: Vec<(String, String)>,
    ) -> bool {
        let Some(s) = self.streams.get(&sid) else {
            return false;
        };
        let st = s.st.clone();
        if status == 503 || status == 429 {
            // The server asks us to come back later: conceal this attempt
            // and retry per policy, no sooner than its Retry-After.
            let after = h1::header(&headers, "retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(Duration::ZERO, Duration::from_secs)
                .min(MAX_RETRY_AFTER);
            self.rerequest_body(conn, sid);
            self.close_conn(conn);
            self.drop_conn(conn);
            let reported = self.streams.get(&sid).is_some_and(|s| s.connected_reported);
            if reported {
                self.emit_state(sid, StreamState::Disconnected, 0);
            }
            self.backoff(now, sid, reported, after);
            return false;
        }
        if let Some(loc) = h1::redirect_target(status, &headers) {
            return self.h1c_redirect(now, conn, sid, status, &loc);
        }
        if let Some(s) = self.streams.get_mut(&sid) {
            // A usable response: the connection counts as a success.
            s.tries = 0;
        }
        self.metadata_from_headers(sid, &headers);
        if st.http.cookies {
            self.cookies
                .entry(st.name.clone())
                .or_default()
                .ingest(&headers);
        }
        if let Some(&(_, mapped)) = st.http.resp_map.iter().find(|(c, _)| *c == status) {
            self.emit_state(sid, StreamState::User, mapped);
        }
        let good = match st.http.expect {
            Some(e) => status == e,
            None => (200..300).contains(&status),
        };
        let dec = match multipart_in(&st, &headers) {
            Ok(d) => d,
            Err(e) => {
                self.attempt_fail(now, conn, e.to_string());
                return false;
            }
        };
        let related = dec.is_some();
        if let Some(t) = self.conns.get_mut(&conn).and_then(client_of) {
            t.good = good;
            t.multipart = dec;
        }
        if !self.streams.get(&sid).is_some_and(|s| s.connected_reported) {
            self.emit_state(sid, StreamState::Connected, 0);
        }
        if related {
            self.events.push_back(Event::Rx {
                stream: sid,
                data: Vec::new(),
                flags: Flags::RELATED_START,
            });
        }
        true
    }

    /// Response headers named by metadata set it (before any rx).
    pub(super) fn metadata_from_headers(&mut self, sid: StreamId, headers: &[(String, String)]) {
        let max = self.config.max_metadata_len;
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        let st = s.st.clone();
        for (i, decl) in st.metadata.iter().enumerate() {
            let Some(h) = &decl.header else { continue };
            if let Some(v) = h1::header(headers, header_name(h)) {
                if v.len() <= max {
                    if let Some(slot) = s.metadata.get_mut(i) {
                        *slot = Some(v.as_bytes().to_vec());
                    }
                }
            }
        }
    }

    /// A redirect: fail (the default, and `http_fail_redirect`) or follow it.
    fn h1c_redirect(
        &mut self,
        now: Instant,
        conn: ConnId,
        sid: StreamId,
        status: u16,
        loc: &str,
    ) -> bool {
        match self.redirect_plan(sid, status, loc) {
            Err(reason) => self.attempt_fail(now, conn, reason),
            Ok((target, resend_body)) => {
                self.close_conn(conn);
                self.drop_conn(conn);
                self.redirect_follow(now, sid, target, resend_body);
            }
        }
        false
    }

    /// Whether and where stream `sid` follows a redirect (`status` to
    /// `loc`), for HTTP/1.1 and HTTP/2 alike: not unless `allow_redirects`
    /// (and never with `http_fail_redirect`), at most
    /// `EngineConfig::max_redirects` hops; 303, and 301/302 except for HEAD,
    /// turn the method into GET, 307/308 keep it (and the body, which must be
    /// written again). The target and whether the body is resent, or why not.
    pub(super) fn redirect_plan(
        &self,
        sid: StreamId,
        status: u16,
        loc: &str,
    ) -> Result<(Redirect, bool), String> {
        let s = self.streams.get(&sid).ok_or("stream gone")?;
        let st = &s.st;
        if st.http.fail_redirect || !st.http.allow_redirects {
            return Err(format!("http: redirect ({status}) to {loc} not followed"));
        }
        if s.redirects >= self.config.max_redirects {
            return Err(format!("http: more than {} redirects", s.redirects));
        }
        let (cur_host, cur_port, cur_tls) = match &s.redirect {
            Some(r) => (r.host.clone(), r.port, r.tls),
            None => {
                let ep = st.endpoint.as_deref().unwrap_or("");
                let host = s.substitute(ep).unwrap_or_default();
                (host, st.port, st.tls)
            }
        };
        let Some(mut target) = parse_location(loc, &cur_host, cur_port, cur_tls) else {
            return Err(format!("http: unusable redirect location {loc:?}"));
        };
        let method = s
            .redirect
            .as_ref()
            .and_then(|r| r.method.clone())
            .unwrap_or_else(|| st.http.method.clone().unwrap_or_else(|| "GET".into()));
        let keep_method = matches!(status, 307 | 308);
        if !keep_method && !method.eq_ignore_ascii_case("HEAD") {
            target.method = Some("GET".into());
        } else {
            target.method = Some(method.clone());
        }
        let resend_body = keep_method && method_has_body(&method);
        Ok((target, resend_body))
    }

    /// Follow a planned redirect once the stream has left its connection:
    /// count the hop and connect to the new target (CONNECTING again).
    pub(super) fn redirect_follow(
        &mut self,
        now: Instant,
        sid: StreamId,
        target: Redirect,
        resend_body: bool,
    ) {
        if let Some(s) = self.streams.get_mut(&sid) {
            s.redirects += 1;
            s.redirect = Some(target);
            if !resend_body {
                s.tx_len = None;
            }
        }
        if resend_body {
            // The body must be written again for the new target.
            self.tx_pending.insert(sid);
        } else {
            self.tx_pending.remove(&sid);
        }
        self.start_connect(now, sid, false);
    }

    /// The response completed: ACK / NACK, release the connection, DISCONNECTED.
    fn h1c_done(&mut self, now: Instant, conn: ConnId, sid: StreamId, keep_alive: bool) {
        let (good, reusable) = match self.conns.get_mut(&conn).and_then(client_of) {
            Some(t) => {
                if let Some(d) = t.multipart.take() {
                    multipart_end(d, sid, &mut self.events);
                }
                t.started = false;
                t.body_open = false;
                (t.good, keep_alive && t.m.is_ready())
            }
            None => return,
        };
        if !self.streams.get(&sid).is_some_and(|s| s.connected_reported) {
            self.emit_state(sid, StreamState::Connected, 0);
        }
        self.emit_state(
            sid,
            if good {
                StreamState::QosAckRemote
            } else {
                StreamState::QosNackRemote
            },
            0,
        );
        // Release the connection: back to the pool, or closed.
        self.timers.cancel(Timer::HttpSilence(conn));
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stream = None;
            c.reused = false;
        }
        if let Some(s) = self.streams.get_mut(&sid) {
            if s.conn == Some(conn) {
                s.conn = None;
            }
            s.seq = Seq::Idle;
            s.tries = 0;
            s.redirects = 0;
            s.redirect = None;
            s.tx_len = None;
            s.ride.clear();
        }
        let open = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.phase == Phase::Open && !c.peer_closed);
        if reusable && open {
            self.pool_conn(now, conn);
        } else {
            self.close_conn(conn);
            self.drop_conn(conn);
        }
        self.emit_state(sid, StreamState::Disconnected, 0);
        // The application asked for another transaction meanwhile.
        if self.tx_pending.contains(&sid) {
            self.poll_and_connect(now, sid);
        }
    }

    /// A transaction with a body is abandoned on `conn`: its retry must ask
    /// the application for the body again (as the reference's tx callback
    /// is called again on the new connection).
    fn rerequest_body(&mut self, conn: ConnId, sid: StreamId) {
        if self
            .conns
            .get_mut(&conn)
            .and_then(client_of)
            .is_some_and(|t| t.had_body)
        {
            self.tx_pending.insert(sid);
        }
    }

    /// The peer closed the connection.
    pub(super) fn h1c_closed(&mut self, now: Instant, conn: ConnId) {
        let mut out = h1::Out::default();
        let Some(t) = self.conns.get_mut(&conn).and_then(client_of) else {
            return;
        };
        let res = t.m.handle_eof(&mut out);
        for ev in out.events {
            if !self.h1c_event(now, conn, ev) {
                break;
            }
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Some(sid) = c.stream else {
            self.drop_conn(conn);
            return;
        };
        if c.reused && !c.rx_any {
            // A kept-alive connection the server had already dropped: try
            // again on a fresh one, without counting it as a failure.
            self.rerequest_body(conn, sid);
            self.drop_conn(conn);
            self.start_connect(now, sid, false);
            return;
        }
        let reason = match res {
            Err(e) => e.to_string(),
            Ok(()) => "http: connection closed mid-transaction".into(),
        };
        self.attempt_fail(now, conn, reason);
    }

    /// The transaction failed on `conn`: tell why, close, report, back off.
    /// Streams waiting on it to settle on h2 (it failed in its TLS
    /// handshake) fail with it.
    pub(super) fn attempt_fail(&mut self, now: Instant, conn: ConnId, reason: String) {
        let waiters = self.h2_take_waiters(conn);
        self.attempt_fail_owner(now, conn, reason.clone());
        self.h2_fail_waiters(now, waiters, &reason);
    }

    fn attempt_fail_owner(&mut self, now: Instant, conn: ConnId, reason: String) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.stream) else {
            self.close_conn(conn);
            self.drop_conn(conn);
            return;
        };
        self.emit_error(sid, reason);
        self.rerequest_body(conn, sid);
        self.close_conn(conn);
        self.drop_conn(conn);
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        s.seq = Seq::Idle;
        s.redirect = None;
        s.redirects = 0;
        let reported = s.connected_reported;
        let opportunistic = s.st.opportunistic;
        if reported {
            self.emit_state(sid, StreamState::Disconnected, 0);
            if !opportunistic {
                self.backoff(now, sid, true, Duration::ZERO);
            }
        } else {
            self.emit_state(sid, StreamState::Unreachable, 0);
            self.backoff(now, sid, false, Duration::ZERO);
        }
    }

    // ----- server --------------------------------------------------------

    /// Request bytes arrived on an accepted connection.
    pub(super) fn h1s_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let mut out = h1::Out::default();
        let Some(t) = self.conns.get_mut(&conn).and_then(server_of) else {
            return;
        };
        let res = t.m.handle_input(data, &mut out);
        self.transmit(conn, out.transmit);
        for ev in out.events {
            self.h1s_event(now, conn, ev);
        }
        if let Err(e) = res {
            self.protocol_failed(now, conn, e.to_string());
        }
    }

    fn h1s_event(&mut self, now: Instant, conn: ConnId, ev: H1Event) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(sid) = c.stream else { return };
        let Some(t) = server_of(c) else { return };
        // While a response is due, later pipelined requests wait their turn.
        let busy = t.in_txn && matches!(ev, H1Event::RequestHead { .. });
        if busy || !t.held.is_empty() {
            let n = match &ev {
                H1Event::Body { data, .. } => data.len(),
                _ => 64,
            };
            t.held_bytes += n;
            t.held.push_back(ev);
            if t.held_bytes > MAX_HELD_BYTES {
                self.protocol_failed(now, conn, "http: too much pipelined input".into());
            }
            return;
        }
        match ev {
            H1Event::RequestHead {
                method,
                path,
                headers,
            } => {
                let st = self.streams.get(&sid).map(|s| s.st.clone());
                if let Some(key) = st
                    .filter(|st| st.ws.subprotocol.is_some() || st.protocol == Protocol::Ws)
                    .and_then(|_| ws::upgrade_key(&headers))
                {
                    let key = key.to_string();
                    self.h1s_request_metadata(sid, &method, &path, &headers);
                    return self.ws_accept(now, conn, sid, &key, &headers);
                }
                let Some(t) = self.conns.get_mut(&conn).and_then(server_of) else {
                    return;
                };
                t.in_txn = true;
                t.responding = false;
                t.bodiless = false;
                self.h1s_request_metadata(sid, &method, &path, &headers);
                if let Some(s) = self.streams.get_mut(&sid) {
                    s.server_ack = None;
                    s.tx_len = None;
                }
                self.reconnected_for_txn(sid);
                self.emit_state(sid, StreamState::ServerTxn, 0);
                self.service_tx();
            }
            H1Event::Body { data, flags } => self.events.push_back(Event::Rx {
                stream: sid,
                data,
                flags,
            }),
            H1Event::Sent { keep_alive } => {
                t.in_txn = false;
                t.responding = false;
                if !keep_alive {
                    self.close_conn(conn);
                    self.conn_lost(now, conn);
                    return;
                }
                // Let the next pipelined request in.
                let held: Vec<H1Event> = t.held.drain(..).collect();
                t.held_bytes = 0;
                for ev in held {
                    self.h1s_event(now, conn, ev);
                }
            }
            H1Event::Done { .. } | H1Event::ResponseHead { .. } => {}
        }
    }

    /// A server transaction starts from CONNECTED: report it again when the
    /// stream's last state cannot lead to SERVER_TXN / SERVER_UPGRADE (e.g.
    /// after a TIMEOUT), so the sequence stays within the reference's table.
    pub(super) fn reconnected_for_txn(&mut self, sid: StreamId) {
        let last = self.streams.get(&sid).and_then(|s| s.last_state);
        if !matches!(last, Some(StreamState::Connected | StreamState::ServerTxn)) {
            self.emit_state(sid, StreamState::Connected, 0);
        }
    }

    /// Set a request's method, path, auth, mapped headers and URL arguments as metadata.
    pub(super) fn h1s_request_metadata(
        &mut self,
        sid: StreamId,
        method: &str,
        path: &str,
        headers: &[(String, String)],
    ) {
        let max = self.config.max_metadata_len;
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        let st = s.st.clone();
        for (i, decl) in st.metadata.iter().enumerate() {
            let value = match decl.name.as_str() {
                "method" => Some(method),
                "path" => Some(path),
                "auth" => h1::header(headers, "authorization"),
                _ => None,
            }
            .or_else(|| {
                decl.header
                    .as_deref()
                    .and_then(|h| h1::header(headers, header_name(h)))
            })
            .or_else(|| url_arg(path, &decl.name));
            let Some(slot) = s.metadata.get_mut(i) else {
                continue;
            };
            *slot = value
                .filter(|v| v.len() <= max)
                .map(|v| v.as_bytes().to_vec());
        }
    }

    /// The application wrote response body (the head goes first).
    pub(super) fn h1s_write(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: StreamId,
        data: &[u8],
        flags: Flags,
    ) -> Result<usize, Error> {
        let Some(s) = self.streams.get(&id) else {
            return Err(Error::NoSuchStream(id));
        };
        let status: u16 = match s.server_ack {
            None => 404,
            Some(0) => 200,
            Some(c) if (200..=999).contains(&c) => c as u16,
            Some(_) => 500,
        };
        let mut headers = Vec::new();
        for (decl, value) in s.st.metadata.iter().zip(&s.metadata) {
            if let (Some(h), Some(v)) = (&decl.header, value) {
                headers.push((
                    header_name(h).to_string(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
        }
        // `http_no_content_length`: never announce a length (chunked instead).
        let tx_len = s.tx_len.filter(|_| !s.st.http.no_content_length);
        let Some(t) = self.conns.get_mut(&conn).and_then(server_of) else {
            return Err(Error::NotConnected(id));
        };
        if !t.in_txn {
            return Err(Error::WrongKind("no request to answer"));
        }
        let mut out = h1::Out::default();
        let mut res = Ok(());
        if !t.responding {
            t.responding = true;
            t.bodiless = status == 204 || status == 304;
            let body = match tx_len {
                _ if t.bodiless => BodyMode::None,
                Some(n) => BodyMode::ContentLength(n),
                None => BodyMode::Chunked,
            };
            res = t.m.respond(status, &headers, body, &mut out);
        }
        if res.is_ok() && !t.bodiless {
            res = t.m.write_body(data, flags.contains(Flags::EOM), &mut out);
        }
        self.transmit(conn, out.transmit);
        for ev in out.events {
            self.h1s_event(now, conn, ev);
        }
        match res {
            Ok(()) => Ok(data.len()),
            Err(e) => {
                let msg = e.to_string();
                self.protocol_failed(now, conn, msg.clone());
                Err(Error::Protocol(msg))
            }
        }
    }

    /// The client closed an accepted connection.
    pub(super) fn h1s_closed(&mut self, now: Instant, conn: ConnId) {
        if let Some(t) = self.conns.get_mut(&conn).and_then(server_of) {
            let _ = t.m.handle_eof();
        }
        self.conn_lost(now, conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_current_target() {
        let r = parse_location("/a?b", "h", 8080, false).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.tls, r.path.as_str()),
            ("h", 8080, false, "/a?b")
        );
        let r = parse_location("https://x.example/p", "h", 80, false).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.tls, r.path.as_str()),
            ("x.example", 443, true, "/p")
        );
        let r = parse_location("http://[::1]:81", "h", 80, false).unwrap();
        assert_eq!((r.host.as_str(), r.port, r.path.as_str()), ("::1", 81, "/"));
        assert!(parse_location("http://u@evil/", "h", 80, false).is_none());
        assert!(parse_location("http://h:notaport/", "h", 80, false).is_none());
    }

    #[test]
    fn url_args_are_found_by_name() {
        assert_eq!(url_arg("/x?a=1&b=two", "b"), Some("two"));
        assert_eq!(url_arg("/x?a", "a"), Some(""));
        assert_eq!(url_arg("/x", "a"), None);
    }
}
