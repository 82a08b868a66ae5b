//! HTTP/2 server glue: an accepted TLS connection whose ALPN settled on `h2`
//! carries one transaction per HTTP/2 stream.
//!
//! The accepted connection's stream (CREATING, CONNECTING, CONNECTED at
//! accept, as for HTTP/1.1) takes the first request and, once its response
//! is complete, any later one; a request arriving while it is busy gets a new
//! accepted stream (`Event::Accepted`, then CREATING, CONNECTING, CONNECTED)
//! that ends (DISCONNECTED, DESTROYING) when its response is complete. Each
//! request sets the same metadata as HTTP/1.1 and reports SERVER_TXN; the
//! application answers exactly as for HTTP/1.1 (`server_ack`, mapped
//! metadata as response headers, `request_tx_len`, writes with EOM).

use super::http::header_name;
use super::{ConnId, Engine, Error, Event, Proto, Role, Seq, StreamId};
use crate::proto::h2::{H2Config, H2Event, H2Server, StreamKey};
use crate::state::{Flags, StreamState};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// One request being answered.
#[derive(Debug, Default)]
struct Txn {
    key: Option<StreamKey>,
    responded: bool,
    bodiless: bool,
    done: bool,
    som_pending: bool,
    pending: Vec<u8>,
    pending_eom: bool,
    /// Request body that arrived while the stream's rx was paused, replayed
    /// on resume (bounded by the stream's window: it is not credited).
    parked: VecDeque<H2Event>,
}

/// An accepted HTTP/2 connection.
#[derive(Debug)]
pub(super) struct H2SrvConn {
    m: H2Server,
    /// The connection's own stream (reused between requests).
    home: StreamId,
    /// The server stream that accepted it.
    server: StreamId,
    txns: BTreeMap<StreamId, Txn>,
    by_key: BTreeMap<StreamKey, StreamId>,
}

impl H2SrvConn {
    /// The streams it carries.
    pub(super) fn members(&self) -> impl Iterator<Item = StreamId> + '_ {
        std::iter::once(self.home).chain(self.txns.keys().copied().filter(move |s| *s != self.home))
    }

    /// Whether stream `sid` may write its response now.
    pub(super) fn wants_response(&self, sid: StreamId) -> bool {
        self.txns
            .get(&sid)
            .is_some_and(|t| t.key.is_some() && !t.done && t.pending.is_empty())
    }
}

fn srv_of(p: &mut Proto) -> Option<&mut H2SrvConn> {
    match p {
        Proto::H2Srv(c) => Some(c),
        _ => None,
    }
}

impl Engine {
    /// ALPN settled on `h2` for an accepted connection: serve HTTP/2 on it.
    pub(super) fn h2s_upgrade(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(home) = c.stream else { return };
        let Some(Role::Accepted { server }) = self.streams.get(&home).map(|s| s.role) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.proto = Proto::H2Srv(Box::new(H2SrvConn {
            // As on the client: room for paused streams' windows.
            m: H2Server::new(H2Config {
                connection_window: super::h2::H2_CONNECTION_WINDOW,
                ..H2Config::default()
            }),
            home,
            server,
            txns: BTreeMap::new(),
            by_key: BTreeMap::new(),
        }));
        c.ready = true;
        self.h2s_pump(now, conn);
    }

    /// Request bytes (plaintext) arrived.
    pub(super) fn h2s_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let res = match self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) {
            Some(h) => h.m.handle_input(data),
            None => return,
        };
        self.h2s_pump(now, conn);
        if let Err(e) = res {
            self.h2s_lost(now, conn, e.to_string());
        }
    }

    fn h2s_pump(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(h) = self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) else {
                return;
            };
            let out = h.m.poll_transmit();
            let ev = h.m.poll_event();
            if let Some(bytes) = out {
                self.transmit(conn, bytes);
            }
            match ev {
                Some(ev) => self.h2s_event(now, conn, ev),
                None => break,
            }
        }
        self.service_tx();
    }

    /// Pause or resume one request stream's rx on an accepted HTTP/2
    /// connection (as the client side does, see `h2_set_rx_paused`).
    pub(super) fn h2s_set_rx_paused(
        &mut self,
        now: Instant,
        conn: ConnId,
        sid: StreamId,
        paused: bool,
    ) {
        let Some(h) = self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) else {
            return;
        };
        let Some(t) = h.txns.get_mut(&sid) else {
            return;
        };
        let parked = if paused {
            VecDeque::new()
        } else {
            std::mem::take(&mut t.parked)
        };
        if let Some(key) = t.key {
            h.m.set_rx_held(key, paused);
        }
        for ev in parked {
            self.h2s_event(now, conn, ev);
        }
        self.h2s_pump(now, conn);
    }

    fn h2s_event(&mut self, now: Instant, conn: ConnId, ev: H2Event) {
        let sid_of = |e: &mut Engine, key: StreamKey| {
            e.conns
                .get_mut(&conn)
                .and_then(|c| srv_of(&mut c.proto))
                .and_then(|h| h.by_key.get(&key).copied())
        };
        match ev {
            H2Event::Request {
                key,
                method,
                path,
                headers,
                ..
            } => self.h2s_request(now, conn, key, &method, &path, &headers),
            H2Event::Data { key, data, eom } => {
                let Some(sid) = sid_of(self, key) else { return };
                if self.streams.get(&sid).is_some_and(|s| s.rx_paused) {
                    if let Some(t) = self
                        .conns
                        .get_mut(&conn)
                        .and_then(|c| srv_of(&mut c.proto))
                        .and_then(|h| h.txns.get_mut(&sid))
                    {
                        t.parked.push_back(H2Event::Data { key, data, eom });
                    }
                    return;
                }
                let Some(t) = self
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| srv_of(&mut c.proto))
                    .and_then(|h| h.txns.get_mut(&sid))
                else {
                    return;
                };
                let mut flags = Flags::NONE;
                if t.som_pending && (!data.is_empty() || eom) {
                    flags |= Flags::SOM;
                    t.som_pending = false;
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
            }
            H2Event::Writable { key } => {
                if let Some(sid) = sid_of(self, key) {
                    self.h2s_push(now, conn, sid);
                }
            }
            H2Event::Reset { key, reason } => {
                if let Some(sid) = sid_of(self, key) {
                    self.emit_error(sid, format!("h2: stream reset by the peer ({reason:#x})"));
                    self.h2s_txn_end(now, conn, sid);
                }
            }
            H2Event::Closed => self.h2s_lost(now, conn, "h2: connection closed".into()),
            H2Event::GoAway { .. } | H2Event::Response { .. } => {}
        }
    }

    /// A request: on the connection's stream if it is free, else on a new one.
    fn h2s_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        key: StreamKey,
        method: &str,
        path: &str,
        headers: &[(String, String)],
    ) {
        let Some(h) = self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) else {
            return;
        };
        let (home, server) = (h.home, h.server);
        let home_free = !h.txns.contains_key(&home) && self.streams.contains_key(&home);
        let sid = if home_free {
            home
        } else {
            // A new accepted stream for this request.
            let Some((st, retry)) = self
                .streams
                .get(&server)
                .map(|s| (s.st.clone(), s.retry.clone()))
            else {
                let _ = self
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| srv_of(&mut c.proto))
                    .map(|h| h.m.reset(key, 0x7));
                return;
            };
            if self.streams.len() >= self.config.max_streams {
                let _ = self
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| srv_of(&mut c.proto))
                    .map(|h| h.m.reset(key, 0x7));
                return;
            }
            let id = StreamId(self.alloc_id());
            self.insert_stream(id, st, retry, Role::Accepted { server });
            self.events
                .push_back(Event::Accepted { server, stream: id });
            self.emit_state(id, StreamState::Creating, 0);
            self.emit_state(id, StreamState::Connecting, 0);
            if let Some(s) = self.streams.get_mut(&id) {
                s.conn = Some(conn);
                s.seq = Seq::Connected;
            }
            self.emit_state(id, StreamState::Connected, 0);
            id
        };
        let paused = self.streams.get(&sid).is_some_and(|s| s.rx_paused);
        if let Some(h) = self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) {
            h.txns.insert(
                sid,
                Txn {
                    key: Some(key),
                    som_pending: true,
                    ..Txn::default()
                },
            );
            h.by_key.insert(key, sid);
            if paused {
                h.m.set_rx_held(key, true);
            }
        }
        self.h2s_metadata(sid, method, path, headers);
        if let Some(s) = self.streams.get_mut(&sid) {
            s.server_ack = None;
            s.tx_len = None;
        }
        self.reconnected_for_txn(sid);
        self.emit_state(sid, StreamState::ServerTxn, 0);
        let _ = now;
    }

    fn h2s_metadata(
        &mut self,
        sid: StreamId,
        method: &str,
        path: &str,
        headers: &[(String, String)],
    ) {
        self.h1s_request_metadata(sid, method, path, headers);
    }

    /// The application wrote response body (the head goes first).
    pub(super) fn h2s_write(
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
                    header_name(h).to_ascii_lowercase(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
        }
        if let Some(n) = s.tx_len {
            headers.push(("content-length".into(), n.to_string()));
        }
        let Some(h) = self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) else {
            return Err(Error::NotConnected(id));
        };
        let Some(t) = h.txns.get_mut(&id) else {
            return Err(Error::WrongKind("no request to answer"));
        };
        let Some(key) = t.key else {
            return Err(Error::WrongKind("no request to answer"));
        };
        if !t.responded {
            t.responded = true;
            t.bodiless = status == 204 || status == 304;
            let end = t.bodiless || (data.is_empty() && flags.contains(Flags::EOM));
            if let Err(e) = h.m.respond(key, status, &headers, end) {
                let msg = e.to_string();
                self.h2s_txn_end(now, conn, id);
                return Err(Error::Protocol(msg));
            }
            if end {
                t.done = true;
                self.h2s_pump(now, conn);
                self.h2s_txn_end(now, conn, id);
                return Ok(data.len());
            }
        }
        if t.bodiless {
            return Ok(data.len());
        }
        t.pending.extend_from_slice(data);
        t.pending_eom = flags.contains(Flags::EOM);
        self.h2s_push(now, conn, id);
        Ok(data.len())
    }

    /// Hand a response's pending body to the machine as far as it takes it.
    fn h2s_push(&mut self, now: Instant, conn: ConnId, sid: StreamId) {
        let Some(h) = self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) else {
            return;
        };
        let Some(t) = h.txns.get_mut(&sid) else {
            return;
        };
        let Some(key) = t.key else { return };
        if t.pending.is_empty() && !t.pending_eom {
            return;
        }
        let data = std::mem::take(&mut t.pending);
        let eom = t.pending_eom;
        let mut ended = false;
        match h.m.send_data(key, &data, eom) {
            Ok(n) => {
                t.pending = data.get(n..).unwrap_or(&[]).to_vec();
                if t.pending.is_empty() {
                    t.pending_eom = false;
                    if eom {
                        t.done = true;
                        ended = true;
                    }
                }
            }
            Err(_) => ended = true,
        }
        self.h2s_pump(now, conn);
        if ended {
            self.h2s_txn_end(now, conn, sid);
        }
    }

    /// A transaction is over: the connection's stream waits for the next
    /// request; any other stream ends.
    fn h2s_txn_end(&mut self, now: Instant, conn: ConnId, sid: StreamId) {
        let home = match self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) {
            Some(h) => {
                if let Some(k) = h.txns.remove(&sid).and_then(|t| t.key) {
                    h.by_key.remove(&k);
                }
                h.home
            }
            None => return,
        };
        if sid != home && self.streams.contains_key(&sid) {
            if let Some(s) = self.streams.get_mut(&sid) {
                s.conn = None;
                s.seq = Seq::Idle;
            }
            self.emit_state(sid, StreamState::Disconnected, 0);
            let _ = self.destroy(now, sid);
        }
    }

    /// A request stream is destroyed by the application: cancel its HTTP/2
    /// stream (the RST_STREAM goes out now), leaving the connection to the
    /// others.
    pub(super) fn h2s_forget(&mut self, now: Instant, conn: ConnId, sid: StreamId) {
        if let Some(h) = self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) {
            if let Some(k) = h.txns.remove(&sid).and_then(|t| t.key) {
                h.by_key.remove(&k);
                let _ = h.m.reset(k, 0x8);
            }
        }
        if let Some(s) = self.streams.get_mut(&sid) {
            s.conn = None;
        }
        self.h2s_pump(now, conn);
    }

    /// Whether `sid` is a request stream of an HTTP/2 connection other than its own stream.
    pub(super) fn is_h2s_child(&self, conn: ConnId, sid: StreamId) -> bool {
        matches!(self.conns.get(&conn).map(|c| &c.proto), Some(Proto::H2Srv(h)) if h.home != sid)
    }

    /// Whether `conn` is an accepted HTTP/2 connection.
    pub(super) fn is_h2s_conn(&self, conn: ConnId) -> bool {
        matches!(
            self.conns.get(&conn).map(|c| &c.proto),
            Some(Proto::H2Srv(_))
        )
    }

    /// The connection is going away: every request stream on it other than
    /// its own stream is told why and ends (DISCONNECTED, DESTROYING).
    pub(super) fn h2s_end_requests(&mut self, now: Instant, conn: ConnId, reason: &str) {
        let others: Vec<StreamId> =
            match self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) {
                Some(h) => {
                    let home = h.home;
                    h.txns.keys().copied().filter(|s| *s != home).collect()
                }
                None => vec![],
            };
        for sid in others {
            if let Some(h) = self.conns.get_mut(&conn).and_then(|c| srv_of(&mut c.proto)) {
                h.txns.remove(&sid);
            }
            if self.streams.contains_key(&sid) {
                self.emit_error(sid, reason.to_string());
                self.h2s_txn_end(now, conn, sid);
            }
        }
    }

    /// The connection is gone: every stream on it ends.
    pub(super) fn h2s_lost(&mut self, now: Instant, conn: ConnId, reason: String) {
        self.h2s_end_requests(now, conn, &reason);
        if let Some(c) = self.conns.get_mut(&conn) {
            // The connection's own stream ends as any accepted stream does.
            if let Some(h) = srv_of(&mut c.proto) {
                h.txns.clear();
                c.stream = Some(h.home);
            }
        }
        self.close_conn(conn);
        // As for any accepted connection: DISCONNECTED, DESTROYING.
        self.conn_lost(now, conn);
    }
}
