//! HTTP/2 glue (client): streams of `h2` streamtypes whose endpoint, port and
//! TLS match share one connection once ALPN settled on `h2`, up to the peer's
//! concurrent-stream limit (the rest wait their turn).
//!
//! Each stream's transaction follows the HTTP/1.1 one (see `http.rs`): the
//! request is built from the same policy keys (method, URL with
//! `${metadata}`, metadata and blob headers, cookies), a body is asked for
//! with `Writable` while the stream is still CONNECTING, the response head
//! sets metadata and reports CONNECTED (after any `http_resp_map` state), the
//! body arrives SOM..EOM, then QOS_ACK_REMOTE / QOS_NACK_REMOTE and
//! DISCONNECTED as the stream leaves the connection (which stays up for the
//! others, and idles for `keepalive_idle` when it has none). A stream reset
//! or a lost connection fails its streams (UNREACHABLE, or DISCONNECTED after
//! CONNECTED) and they retry per policy; 503 / 429 conceal the attempt.
//! Like HTTP/1.1 too (and with the same code, in `http.rs`): redirects fail
//! the attempt unless `allow_redirects` (then the stream leaves with
//! RST_STREAM(CANCEL) and follows, riding an h2 connection to the new place
//! if there is one), `http_multipart_name` wraps the body as multipart parts
//! (following a `rideshare` chain part by part; HTTP/2 needs no length, so
//! the body is plain DATA), and `http_multipart_ss_in` splits a multipart
//! response into parts.
//!
//! Over plain TCP, or when ALPN picks `http/1.1`, an h2 streamtype speaks
//! HTTP/1.1 (the reference's fallback).

use super::http::{multipart_end, multipart_in, multipart_rx};
use super::{ConnId, Engine, Error, Event, Proto, Seq, StreamId, Timer};
use crate::proto::h1::{self, multipart};
use crate::proto::h2::{H2Client, H2Config, H2Error, H2Event, RequestHead, StreamKey};
use crate::state::{Flags, StreamState};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// RST_STREAM code CANCEL.
const CANCEL: u32 = 0x8;

/// One stream riding an HTTP/2 connection.
#[derive(Debug, Default)]
struct Member {
    key: Option<StreamKey>,
    body_open: bool,
    had_body: bool,
    good: bool,
    som_pending: bool,
    /// Body bytes the machine has not taken yet, and whether they end it.
    pending: Vec<u8>,
    pending_eom: bool,
    /// Multipart framing of the request body (`http_multipart_name`).
    mp: Option<multipart::Writer>,
    /// A multipart response being split into parts (`http_multipart_ss_in`).
    multipart: Option<multipart::Decoder>,
    /// Data that arrived while the stream's rx was paused, replayed on
    /// resume (bounded by the stream's window: it is not credited meanwhile).
    parked: VecDeque<H2Event>,
}

/// Connection-level receive window a client (or server) grants: sixteen default stream
/// windows, so paused streams (whose data is not credited back) leave room
/// for their neighbours.
pub(super) const H2_CONNECTION_WINDOW: u32 = 16 * 65_535;

/// A client HTTP/2 connection shared by several streams.
#[derive(Debug)]
pub(super) struct H2Conn {
    m: H2Client,
    members: BTreeMap<StreamId, Member>,
    by_key: BTreeMap<StreamKey, StreamId>,
    /// Streams waiting for the peer to allow another stream.
    waiting: VecDeque<StreamId>,
    /// GOAWAY arrived: no new streams.
    draining: bool,
}

impl H2Conn {
    /// The streams it carries.
    pub(super) fn members(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.members.keys().copied()
    }

    /// Whether stream `sid` may write request body now.
    pub(super) fn wants_body(&self, sid: StreamId) -> bool {
        self.members
            .get(&sid)
            .is_some_and(|m| m.key.is_some() && m.body_open && m.pending.is_empty())
    }
}

fn h2_of(p: &mut Proto) -> Option<&mut H2Conn> {
    match p {
        Proto::H2(c) => Some(c),
        _ => None,
    }
}

impl Engine {
    /// TLS settled on `h2` for `conn`: turn it into a shared HTTP/2 connection
    /// carrying the stream that opened it.
    pub(super) fn h2_upgrade(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(sid) = c.stream.take() else { return };
        let st = self.streams.get(&sid).map(|s| s.st.clone());
        let cfg = H2Config {
            quirk_end_stream: st.as_ref().is_some_and(|s| s.http.quirk_end_stream),
            quirk_oflow_txcr: st
                .as_ref()
                .is_some_and(|s| s.http.h2_quirk_overflow_tx_credit),
            // Room for several paused streams' windows before the
            // connection window (shared by all streams) runs out.
            connection_window: H2_CONNECTION_WINDOW,
            ..H2Config::default()
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.proto = Proto::H2(Box::new(H2Conn {
            m: H2Client::new(cfg),
            members: BTreeMap::new(),
            by_key: BTreeMap::new(),
            waiting: VecDeque::new(),
            draining: false,
        }));
        c.ready = true;
        c.pool = None;
        if let Some(key) = self.h2_key_of(sid) {
            self.h2_conns.insert(key, conn);
        }
        self.h2_attach(now, conn, sid);
    }

    /// Ride an existing HTTP/2 connection to the same place, if there is one.
    pub(super) fn h2_join(&mut self, now: Instant, sid: StreamId) -> bool {
        let Some(key) = self.h2_key_of(sid) else {
            return false;
        };
        let Some(&conn) = self.h2_conns.get(&key) else {
            return false;
        };
        let usable = self
            .conns
            .get_mut(&conn)
            .and_then(|c| h2_of(&mut c.proto))
            .is_some_and(|h| !h.draining);
        if !usable {
            return false;
        }
        self.timers.cancel(Timer::PoolIdle(conn));
        if let Some(s) = self.streams.get_mut(&sid) {
            s.conn = Some(conn);
            s.seq = Seq::Connected;
        }
        self.h2_attach(now, conn, sid);
        true
    }

    /// A stream that waited on `conn` joins it now that it speaks h2.
    pub(super) fn h2_join_conn(&mut self, now: Instant, conn: ConnId, sid: StreamId) {
        self.h2_attach(now, conn, sid);
    }

    fn h2_attach(&mut self, now: Instant, conn: ConnId, sid: StreamId) {
        if let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) {
            h.members.insert(sid, Member::default());
            h.waiting.push_back(sid);
        }
        if let Some(s) = self.streams.get_mut(&sid) {
            s.conn = Some(conn);
            s.seq = Seq::Connected;
        }
        self.h2_pump(now, conn);
    }

    /// Start waiting requests, send what the machine queued, route its events.
    fn h2_pump(&mut self, now: Instant, conn: ConnId) {
        // Requests for streams waiting their turn.
        loop {
            let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) else {
                return;
            };
            let Some(&sid) = h.waiting.front() else { break };
            if !h.members.contains_key(&sid) {
                h.waiting.pop_front();
                continue;
            }
            if !self.h2_start_request(now, conn, sid) {
                break;
            }
        }
        loop {
            let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) else {
                return;
            };
            let out = h.m.poll_transmit();
            let ev = h.m.poll_event();
            if let Some(bytes) = out {
                self.transmit(conn, bytes);
            }
            match ev {
                Some(ev) => self.h2_event(now, conn, ev),
                None => break,
            }
        }
        self.service_tx();
    }

    /// Send stream `sid`'s request; false if the peer allows no more streams now.
    fn h2_start_request(&mut self, now: Instant, conn: ConnId, sid: StreamId) -> bool {
        let body_wanted = self.tx_pending.contains(&sid);
        let head = match self.h1_request(sid, body_wanted) {
            Ok(h) => h,
            Err(reason) => {
                if let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) {
                    h.waiting.pop_front();
                }
                self.h2_member_fail(now, conn, sid, reason);
                return true;
            }
        };
        let tls = self.conns.get(&conn).is_some_and(|c| c.tls.is_some());
        let no_body = head.body == h1::BodyMode::None;
        let mut mp = match head.multipart.as_ref().map(multipart::Writer::new) {
            Some(Err(e)) => {
                if let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) {
                    h.waiting.pop_front();
                }
                self.h2_member_fail(now, conn, sid, e.to_string());
                return true;
            }
            Some(Ok(w)) => Some(w),
            None => None,
        };
        // A bodiless multipart request still carries its (empty) part.
        let end_stream = no_body && mp.is_none();
        let mut headers = head.headers.clone();
        if let Some(ct) = head.implied_content_type() {
            headers.push(("content-type".into(), ct));
        }
        // `request_tx_len` announces the body's length, as on HTTP/1.1 (a
        // multipart body's framing is added here, so it goes without).
        if let (h1::BodyMode::ContentLength(n), None) = (head.body, &mp) {
            headers.push(("content-length".into(), n.to_string()));
        }
        let req = RequestHead {
            method: head.method.clone(),
            path: head.path.clone(),
            authority: head.host.clone(),
            scheme: if tls { "https" } else { "http" }.into(),
            headers,
            end_stream,
        };
        let paused = self.streams.get(&sid).is_some_and(|s| s.rx_paused);
        let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) else {
            return false;
        };
        match h.m.start_request(&req) {
            Ok(key) => {
                h.waiting.pop_front();
                h.by_key.insert(key, sid);
                if paused {
                    h.m.set_rx_held(key, true);
                }
                if let Some(m) = h.members.get_mut(&sid) {
                    m.key = Some(key);
                    m.body_open = !end_stream;
                    m.had_body = !no_body;
                    m.som_pending = true;
                    if no_body {
                        if let Some(w) = mp.as_mut() {
                            w.finish(&mut m.pending);
                            m.pending_eom = true;
                        }
                    }
                    m.mp = mp;
                }
                if no_body {
                    self.tx_pending.remove(&sid);
                }
                self.timers.set(
                    Timer::HttpSilence(conn),
                    now + self.config.http_silence_timeout,
                );
                if no_body && !end_stream {
                    self.h2_push_pending(now, conn, sid);
                }
                true
            }
            Err(H2Error::WouldBlock) => false,
            Err(e) => {
                h.waiting.pop_front();
                self.h2_member_fail(now, conn, sid, e.to_string());
                true
            }
        }
    }

    /// Response bytes (plaintext) arrived.
    pub(super) fn h2_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let res = match self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) {
            Some(h) => h.m.handle_input(data),
            None => return,
        };
        self.timers.set(
            Timer::HttpSilence(conn),
            now + self.config.http_silence_timeout,
        );
        self.h2_pump(now, conn);
        if let Err(e) = res {
            self.h2_lost(now, conn, e.to_string());
        }
    }

    /// Pause or resume one stream's rx on a shared connection: its received
    /// data is no longer credited to the server (which stops sending on that
    /// stream only) and what arrives is parked; on resume the parked data is
    /// delivered in order and credited.
    pub(super) fn h2_set_rx_paused(
        &mut self,
        now: Instant,
        conn: ConnId,
        sid: StreamId,
        paused: bool,
    ) {
        let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) else {
            return;
        };
        let Some(m) = h.members.get_mut(&sid) else {
            return;
        };
        let parked = if paused {
            VecDeque::new()
        } else {
            std::mem::take(&mut m.parked)
        };
        if let Some(key) = m.key {
            h.m.set_rx_held(key, paused);
        }
        for ev in parked {
            self.h2_event(now, conn, ev);
        }
        self.h2_pump(now, conn);
    }

    /// Whether a stream on this HTTP/2 connection has its rx paused (the
    /// server's silence is then ours).
    pub(super) fn h2_any_paused(&self, conn: ConnId) -> bool {
        self.rx_paused > 0
            && matches!(self.conns.get(&conn).map(|c| &c.proto), Some(Proto::H2(h))
                if h.members.keys().any(|sid| self.streams.get(sid).is_some_and(|s| s.rx_paused)))
    }

    fn h2_event(&mut self, now: Instant, conn: ConnId, ev: H2Event) {
        let sid_of = |e: &Engine, key: StreamKey| {
            e.conns.get(&conn).and_then(|c| match &c.proto {
                Proto::H2(h) => h.by_key.get(&key).copied(),
                _ => None,
            })
        };
        match ev {
            H2Event::Response {
                key,
                status,
                headers,
            } => {
                let Some(sid) = sid_of(self, key) else { return };
                self.h2_response(now, conn, sid, key, status, headers);
            }
            H2Event::Data { key, data, eom } => {
                let Some(sid) = sid_of(self, key) else { return };
                if self.streams.get(&sid).is_some_and(|s| s.rx_paused) {
                    if let Some(m) = self
                        .conns
                        .get_mut(&conn)
                        .and_then(|c| h2_of(&mut c.proto))
                        .and_then(|h| h.members.get_mut(&sid))
                    {
                        m.parked.push_back(H2Event::Data { key, data, eom });
                    }
                    return;
                }
                let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) else {
                    return;
                };
                let Some(m) = h.members.get_mut(&sid) else {
                    return;
                };
                if let Some(dec) = m.multipart.as_mut() {
                    let res = multipart_rx(dec, sid, &data, &mut self.events);
                    if let Err(e) = res {
                        let _ = h.m.reset(key, CANCEL);
                        self.h2_member_fail(now, conn, sid, e.to_string());
                        return;
                    }
                    if eom {
                        if let Some(dec) = m.multipart.take() {
                            multipart_end(dec, sid, &mut self.events);
                        }
                        self.h2_done(now, conn, sid);
                    }
                    return;
                }
                let mut flags = Flags::NONE;
                if m.som_pending && (!data.is_empty() || eom) {
                    flags |= Flags::SOM;
                    m.som_pending = false;
                }
                if eom {
                    flags |= Flags::EOM;
                }
                if !data.is_empty() || eom {
                    self.events.push_back(Event::Rx {
                        stream: sid,
                        data,
                        flags,
                    });
                }
                if eom {
                    self.h2_done(now, conn, sid);
                }
            }
            H2Event::Writable { key } => {
                let Some(sid) = sid_of(self, key) else { return };
                self.h2_push_pending(now, conn, sid);
            }
            H2Event::Reset { key, reason } => {
                let Some(sid) = sid_of(self, key) else { return };
                self.h2_member_fail(
                    now,
                    conn,
                    sid,
                    format!("h2: stream reset by the peer ({reason:#x})"),
                );
            }
            H2Event::GoAway { .. } => {
                if let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) {
                    h.draining = true;
                }
                self.h2_conns.retain(|_, c| *c != conn);
                // Streams not started yet go elsewhere.
                let waiting: Vec<StreamId> = self
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| h2_of(&mut c.proto))
                    .map(|h| h.waiting.drain(..).collect())
                    .unwrap_or_default();
                for sid in waiting {
                    self.h2_member_fail(now, conn, sid, "h2: the server is going away".into());
                }
            }
            H2Event::Closed => self.h2_lost(now, conn, "h2: connection closed".into()),
            H2Event::Request { .. } => {}
        }
    }

    fn h2_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        sid: StreamId,
        key: StreamKey,
        status: u16,
        headers: Vec<(String, String)>,
    ) {
        let Some(st) = self.streams.get(&sid).map(|s| s.st.clone()) else {
            return;
        };
        let redirect = h1::redirect_target(status, &headers);
        if status == 503 || status == 429 || redirect.is_some() {
            if let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) {
                let _ = h.m.reset(key, CANCEL);
            }
            if status == 503 || status == 429 {
                let after = h1::header(&headers, "retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::ZERO, Duration::from_secs)
                    .min(Duration::from_secs(3600));
                let had_body = self.h2_detach(now, conn, sid);
                if had_body {
                    self.tx_pending.insert(sid);
                }
                if let Some(s) = self.streams.get_mut(&sid) {
                    s.seq = Seq::Idle;
                }
                self.backoff(now, sid, false, after);
            } else if let Some(loc) = redirect {
                match self.redirect_plan(sid, status, &loc) {
                    Err(reason) => self.h2_member_fail(now, conn, sid, reason),
                    Ok((target, resend_body)) => {
                        // The connection stays for its other streams.
                        self.h2_detach(now, conn, sid);
                        self.redirect_follow(now, sid, target, resend_body);
                    }
                }
            }
            return;
        }
        if let Some(s) = self.streams.get_mut(&sid) {
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
                if let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) {
                    let _ = h.m.reset(key, CANCEL);
                }
                self.h2_member_fail(now, conn, sid, e.to_string());
                return;
            }
        };
        let related = dec.is_some();
        if let Some(m) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| h2_of(&mut c.proto))
            .and_then(|h| h.members.get_mut(&sid))
        {
            m.good = good;
            m.multipart = dec;
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
    }

    /// Stream `sid` leaves the connection; whether its request had a body.
    fn h2_detach(&mut self, now: Instant, conn: ConnId, sid: StreamId) -> bool {
        let mut had_body = false;
        let mut empty = false;
        if let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) {
            if let Some(m) = h.members.remove(&sid) {
                had_body = m.had_body;
                if let Some(k) = m.key {
                    h.by_key.remove(&k);
                }
            }
            h.waiting.retain(|s| *s != sid);
            empty = h.members.is_empty();
        }
        if let Some(s) = self.streams.get_mut(&sid) {
            if s.conn == Some(conn) {
                s.conn = None;
            }
        }
        if empty {
            self.timers.cancel(Timer::HttpSilence(conn));
            self.timers
                .set(Timer::PoolIdle(conn), now + self.config.keepalive_idle);
        }
        had_body
    }

    /// The response completed: ACK / NACK, the stream leaves, DISCONNECTED.
    fn h2_done(&mut self, now: Instant, conn: ConnId, sid: StreamId) {
        let good = self
            .conns
            .get_mut(&conn)
            .and_then(|c| h2_of(&mut c.proto))
            .and_then(|h| h.members.get(&sid))
            .is_some_and(|m| m.good);
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
        self.h2_detach(now, conn, sid);
        if let Some(s) = self.streams.get_mut(&sid) {
            s.seq = Seq::Idle;
            s.tries = 0;
            s.tx_len = None;
            s.redirects = 0;
            s.redirect = None;
            s.ride.clear();
        }
        self.emit_state(sid, StreamState::Disconnected, 0);
        if self.tx_pending.contains(&sid) {
            self.poll_and_connect(now, sid);
        }
    }

    /// One stream failed on the connection (reset, bad request, refused).
    fn h2_member_fail(&mut self, now: Instant, conn: ConnId, sid: StreamId, reason: String) {
        self.emit_error(sid, reason);
        if self.h2_detach(now, conn, sid) {
            self.tx_pending.insert(sid);
        }
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        s.seq = Seq::Idle;
        s.redirect = None;
        s.redirects = 0;
        let reported = s.connected_reported;
        if reported {
            self.emit_state(sid, StreamState::Disconnected, 0);
        } else {
            self.emit_state(sid, StreamState::Unreachable, 0);
        }
        self.backoff(now, sid, reported, Duration::ZERO);
    }

    /// The connection is gone: every stream on it fails and retries.
    pub(super) fn h2_lost(&mut self, now: Instant, conn: ConnId, reason: String) {
        let members: Vec<StreamId> = match self.conns.get(&conn).map(|c| &c.proto) {
            Some(Proto::H2(h)) => h.members().collect(),
            _ => vec![],
        };
        for sid in members {
            self.h2_member_fail(now, conn, sid, reason.clone());
        }
        self.close_conn(conn);
        self.drop_conn(conn);
    }

    /// The application wrote request body.
    pub(super) fn h2_write(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: StreamId,
        data: &[u8],
        flags: Flags,
    ) -> Result<usize, Error> {
        let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) else {
            return Err(Error::NotConnected(id));
        };
        let Some(m) = h.members.get_mut(&id) else {
            return Err(Error::NotConnected(id));
        };
        if m.key.is_none() || !m.body_open || m.pending_eom {
            return Err(Error::WrongKind("this request has no body to write"));
        }
        // An EOM ends the body, or only this part of a rideshare chain.
        let next = if flags.contains(Flags::EOM) {
            self.ride_next(id)
        } else {
            None
        };
        let eom = flags.contains(Flags::EOM) && next.is_none();
        let Some(m) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| h2_of(&mut c.proto))
            .and_then(|h| h.members.get_mut(&id))
        else {
            return Err(Error::NotConnected(id));
        };
        let mut res = Ok(());
        match m.mp.as_mut() {
            Some(w) => {
                res = w.data(data, &mut m.pending);
                if res.is_ok() {
                    if let Some(Some(spec)) = &next {
                        res = w.next_part(spec);
                    }
                    if eom {
                        w.finish(&mut m.pending);
                    }
                }
            }
            None => m.pending.extend_from_slice(data),
        }
        m.pending_eom = eom;
        if let Err(e) = res {
            let msg = e.to_string();
            if let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) {
                if let Some(key) = h.members.get(&id).and_then(|m| m.key) {
                    let _ = h.m.reset(key, CANCEL);
                }
            }
            self.h2_member_fail(now, conn, id, msg.clone());
            return Err(Error::Protocol(msg));
        }
        self.h2_push_pending(now, conn, id);
        if next.is_some() {
            // The next streamtype's part is asked for once this one is taken.
            self.tx_pending.insert(id);
            self.service_tx();
        }
        Ok(data.len())
    }

    /// Hand a stream's pending body to the machine as far as it takes it.
    fn h2_push_pending(&mut self, now: Instant, conn: ConnId, sid: StreamId) {
        let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) else {
            return;
        };
        let Some(m) = h.members.get_mut(&sid) else {
            return;
        };
        let Some(key) = m.key else { return };
        if m.pending.is_empty() && !m.pending_eom {
            return;
        }
        let data = std::mem::take(&mut m.pending);
        let eom = m.pending_eom;
        match h.m.send_data(key, &data, eom) {
            Ok(n) => {
                let rest = data.get(n..).unwrap_or(&[]).to_vec();
                if rest.is_empty() {
                    m.pending_eom = false;
                    if eom {
                        m.body_open = false;
                    }
                }
                m.pending = rest;
            }
            Err(e) => {
                self.h2_member_fail(now, conn, sid, e.to_string());
                return;
            }
        }
        self.h2_pump(now, conn);
    }

    /// A stream on an HTTP/2 connection is destroyed or disconnected: cancel
    /// its request; the connection stays for the others.
    pub(super) fn h2_leave(&mut self, now: Instant, conn: ConnId, sid: StreamId) {
        if let Some(h) = self.conns.get_mut(&conn).and_then(|c| h2_of(&mut c.proto)) {
            if let Some(key) = h.members.get(&sid).and_then(|m| m.key) {
                let _ = h.m.reset(key, CANCEL);
            }
        }
        self.h2_detach(now, conn, sid);
        self.h2_pump(now, conn);
    }
}
