//! WebSocket glue: the `ws` protocol's upgrade on client connections, the
//! upgrade of HTTP server transactions (an h1 server streamtype with
//! `ws_subprotocol`, or a `ws` server streamtype), and messages ↔ payload.
//!
//! Client, as the reference's `ss-ws.c`: CONNECTING while the upgrade is under
//! way (request from `http_url` with `${metadata}`, metadata and blob headers
//! as for h1, `Sec-WebSocket-Protocol` from `ws_subprotocol`), CONNECTED once
//! the server's 101 is verified (response headers set metadata first), then
//! each message is payload with SOM on its first piece and EOM on its last,
//! text unless `ws_binary`. A refused upgrade is a failed attempt
//! (UNREACHABLE, retry policy); a Close or drop after it is DISCONNECTED, then
//! reconnection per `nailed_up` / `opportunistic`, like raw.
//!
//! Server: the request's metadata is set, the 101 is sent, and the stream
//! reports SERVER_UPGRADE; from then on rx and tx are WebSocket messages.

use super::http::{client_of_ws, server_of};
use super::{ConnId, Engine, Event, Proto, StreamId, Timer};
use crate::proto::ws::{self, Role, Ws, WsConfig, WsEvent, WsOut};
use crate::state::{Flags, StreamState};
use std::time::Instant;

/// A client connection's WebSocket state.
#[derive(Debug)]
pub(super) struct WsClientConn {
    /// `Sec-WebSocket-Key` of the upgrade request.
    key: String,
    reader: ws::UpgradeReader,
    /// The frame machine, once upgraded.
    pub(super) ws: Option<Ws>,
}

impl WsClientConn {
    pub(super) fn new() -> Self {
        WsClientConn {
            key: String::new(),
            reader: ws::UpgradeReader::default(),
            ws: None,
        }
    }
}

impl Engine {
    fn ws_config(&mut self, role: Role) -> WsConfig {
        let mut cfg = WsConfig::new(role, self.rng.next_u64());
        cfg.max_frame = self.config.ws_max_frame;
        cfg.max_message = self.config.ws_max_message;
        cfg
    }

    /// The transport is up: send the upgrade request.
    pub(super) fn ws_start(&mut self, now: Instant, conn: ConnId) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.stream) else {
            return;
        };
        let head = match self.h1_request(sid, false) {
            Ok(h) => h,
            Err(reason) => return self.attempt_fail(now, conn, reason),
        };
        let subprotocol = self
            .streams
            .get(&sid)
            .and_then(|s| s.st.ws.subprotocol.clone());
        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes()); // ok: a 16-byte array
        random[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes()); // ok: a 16-byte array
        let key = ws::client_key(random);
        let mut out = Vec::new();
        if let Err(e) = ws::write_upgrade_request(
            &head.host,
            &head.path,
            &key,
            subprotocol.as_deref(),
            &head.headers,
            &mut out,
        ) {
            return self.attempt_fail(now, conn, e.to_string());
        }
        if let Some(t) = self.conns.get_mut(&conn).and_then(client_of_ws) {
            t.key = key;
        }
        self.transmit(conn, out);
    }

    /// Bytes from the server: the upgrade response, then frames.
    pub(super) fn ws_client_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.stream) else {
            return;
        };
        let wanted = self
            .streams
            .get(&sid)
            .and_then(|s| s.st.ws.subprotocol.clone());
        let limits = self.config.http_limits;
        let Some(t) = self.conns.get_mut(&conn).and_then(client_of_ws) else {
            return;
        };
        if t.ws.is_some() {
            return self.ws_input(now, conn, data);
        }
        let key = t.key.clone();
        let (up, used) = match t.reader.feed(data, &key, wanted.as_deref(), &limits) {
            Ok(None) => return,
            Ok(Some(x)) => x,
            Err(e) => return self.attempt_fail(now, conn, e.to_string()),
        };
        let cfg = self.ws_config(Role::Client);
        if let Some(t) = self.conns.get_mut(&conn).and_then(client_of_ws) {
            t.ws = Some(Ws::new(cfg));
        }
        self.metadata_from_headers(sid, &up.headers);
        if let Some(s) = self.streams.get_mut(&sid) {
            s.tries = 0;
        }
        self.emit_state(sid, StreamState::Connected, 0);
        self.service_tx();
        if let Some(rest) = data.get(used..).filter(|r| !r.is_empty()) {
            self.ws_input(now, conn, rest);
        }
    }

    /// Frames from the peer on an upgraded connection (either role).
    pub(super) fn ws_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(sid) = c.stream else { return };
        let Some(m) = ws_of(&mut c.proto) else { return };
        let mut out = WsOut::default();
        let res = m.handle_input(data, &mut out);
        self.transmit(conn, out.transmit);
        let mut closed = false;
        for ev in out.events {
            match ev {
                WsEvent::Data { data, flags, .. } => self.events.push_back(Event::Rx {
                    stream: sid,
                    data,
                    flags,
                }),
                WsEvent::Pong(_) => {}
                WsEvent::Closed { code, reason } => {
                    closed = true;
                    if code != 1000 && code != 1005 {
                        self.emit_error(sid, format!("ws: peer closed with {code} {reason}"));
                    }
                }
            }
        }
        if let Err(e) = res {
            self.protocol_failed(now, conn, e.to_string());
        } else if closed {
            // Our answering Close is queued: close after it.
            self.close_conn(conn);
            self.conn_lost(now, conn);
        }
    }

    /// The application wrote a message piece.
    pub(super) fn ws_write(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: StreamId,
        data: &[u8],
        flags: Flags,
    ) -> Result<usize, super::Error> {
        let binary = self.streams.get(&id).is_some_and(|s| s.st.ws.binary);
        let Some(c) = self.conns.get_mut(&conn) else {
            return Err(super::Error::NotConnected(id));
        };
        let Some(m) = ws_of(&mut c.proto) else {
            return Err(super::Error::NotConnected(id));
        };
        let mut out = WsOut::default();
        let res = m.write(data, binary, flags, &mut out);
        self.transmit(conn, out.transmit);
        let _ = now;
        res.map(|()| data.len())
            .map_err(|e| super::Error::Protocol(e.to_string()))
    }

    /// A server transaction asks to upgrade: answer 101 and switch protocols.
    pub(super) fn ws_accept(
        &mut self,
        _now: Instant,
        conn: ConnId,
        sid: StreamId,
        key: &str,
        headers: &[(String, String)],
    ) {
        let wanted = self
            .streams
            .get(&sid)
            .and_then(|s| s.st.ws.subprotocol.clone());
        let protocol = wanted.filter(|p| ws::offers_protocol(headers, p));
        let cfg = self.ws_config(Role::Server);
        if let Some(c) = self.conns.get_mut(&conn) {
            if server_of(c).is_none() {
                return;
            }
            c.proto = Proto::WsServer(Box::new(Ws::new(cfg)));
        }
        self.timers.cancel(Timer::PoolIdle(conn));
        self.transmit(conn, ws::upgrade_response(key, protocol.as_deref()));
        let last = self.streams.get(&sid).and_then(|s| s.last_state);
        if last != Some(StreamState::Connected) {
            self.emit_state(sid, StreamState::Connected, 0);
        }
        self.emit_state(sid, StreamState::ServerUpgrade, 0);
        self.service_tx();
    }

    /// Send a validity ping on an upgraded connection (nothing otherwise).
    pub(super) fn ws_ping(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(m) = ws_of(&mut c.proto) else { return };
        let mut out = WsOut::default();
        let _ = m.ping(b"", &mut out);
        self.transmit(conn, out.transmit);
    }

    /// Start the closing handshake on an upgraded connection (before closing it).
    pub(super) fn ws_close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(m) = ws_of(&mut c.proto) else { return };
        let mut out = WsOut::default();
        m.close(1000, "", &mut out);
        self.transmit(conn, out.transmit);
    }
}

/// The frame machine of an upgraded connection, either role.
pub(super) fn ws_of(p: &mut Proto) -> Option<&mut Ws> {
    match p {
        Proto::WsClient(t) => t.ws.as_mut(),
        Proto::WsServer(m) => Some(m),
        _ => None,
    }
}
