//! The proxy client ("SSPC"): with `EngineConfig::proxy` set, every client
//! stream is fulfilled by a Secure Streams proxy daemon instead of directly,
//! over its own link (a Unix socket, or TCP) speaking the reference's
//! serialization (`crate::proxy::wire`). The application API and events do
//! not change.
//!
//! The link opens like a connection (CONNECTING); then STREAMTYPE, and on
//! CREATE_RESULT the stream's metadata, its payload length hint and
//! ONWARD_CONNECT. From then on the daemon's CONNSTATE reports become the
//! stream's states (those that would repeat the last one, or break the
//! reference's transition table from where the stream is, are skipped),
//! RX_PAYLOAD is rx, METADATA sets metadata, and writes go out as TX_PAYLOAD
//! (split to fit a frame). A refused create or a dropped link fails the
//! attempt (ConnectionError, then UNREACHABLE or DISCONNECTED) and the
//! stream retries per its policy, re-creating itself on the daemon; so an
//! absent or restarting daemon means retries, not a crash.

use super::{ConnId, Engine, Error, Event, Proto, Seq, StreamId};
use crate::proxy::wire::{self, Payload, ToClient, ToClientDecoder, ToProxy, WireMessage};
use crate::state::{Flags, StreamState};
use std::time::Instant;

/// Largest payload carried in one TX_PAYLOAD frame (below the 16-bit body
/// limit with room for the frame's own fields).
const MAX_PIECE: usize = 60 * 1024;

/// A stream's link to the proxy daemon.
#[derive(Debug)]
pub(super) struct LinkConn {
    dec: ToClientDecoder,
    /// CREATE_RESULT accepted the stream.
    created: bool,
    /// The rideshare chain the daemon announced (the stream's streamtype
    /// first), empty without one.
    chain: Vec<String>,
}

impl LinkConn {
    /// Whether the daemon accepted the stream.
    pub(super) fn created(&self) -> bool {
        self.created
    }

    pub(super) fn new() -> Self {
        LinkConn {
            dec: ToClientDecoder::new(wire::Limits::default()),
            created: false,
            chain: Vec::new(),
        }
    }
}

fn link_of(p: &mut Proto) -> Option<&mut LinkConn> {
    match p {
        Proto::Link(l) => Some(l),
        _ => None,
    }
}

impl Engine {
    fn link_send(&mut self, conn: ConnId, msg: &ToProxy) -> Result<(), String> {
        let mut out = Vec::new();
        msg.encode(&mut out)
            .map_err(|e| format!("proxy link: {e}"))?;
        self.transmit(conn, out);
        Ok(())
    }

    /// The link is up: ask the daemon for the stream.
    pub(super) fn link_start(&mut self, now: Instant, conn: ConnId) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.stream) else {
            return;
        };
        let Some(name) = self.streams.get(&sid).map(|s| s.st.name.clone()) else {
            return;
        };
        // The reference client's default estimate of the proxy's credit when
        // no manual tx credit is in use: effectively unlimited (flow control
        // then rests on the transport).
        // The reference client sends getpid(); its proxy shows it in the
        // stream's log tag.
        let msg = ToProxy::StreamtypeCreate {
            pid: std::process::id(),
            initial_tx_credit: 500_000_000,
            streamtype: name,
        };
        if let Err(e) = self.link_send(conn, &msg) {
            self.attempt_fail(now, conn, e);
        }
    }

    /// Bytes from the daemon.
    pub(super) fn link_input(&mut self, now: Instant, conn: ConnId, mut data: &[u8]) {
        loop {
            let Some(l) = self
                .conns
                .get_mut(&conn)
                .and_then(|c| link_of(&mut c.proto))
            else {
                return;
            };
            match l.dec.next(&mut data) {
                Ok(Some(msg)) => self.link_message(now, conn, msg),
                Ok(None) => return,
                Err(e) => {
                    return self.attempt_fail(now, conn, format!("proxy link: {e}"));
                }
            }
        }
    }

    fn link_message(&mut self, now: Instant, conn: ConnId, msg: ToClient) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.stream) else {
            return;
        };
        let chain: Vec<String> = msg
            .rideshare_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        match msg {
            ToClient::CreateResult { status, .. } => {
                if status != 0 {
                    return self.attempt_fail(
                        now,
                        conn,
                        format!("proxy link: the daemon refused the stream (status {status})"),
                    );
                }
                if let Some(l) = self
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| link_of(&mut c.proto))
                {
                    l.created = true;
                    l.chain = chain;
                }
                if let Some(s) = self.streams.get_mut(&sid) {
                    s.ride.clear();
                    // The link is up: payload may flow (the daemon holds it
                    // for the onward stream), as the reference client's
                    // OPERATIONAL state allows; CONNECTED still follows the
                    // onward stream.
                    s.seq = Seq::Connected;
                }
                // The stream's metadata, its length hint, then connect.
                let mut msgs = vec![];
                if let Some(s) = self.streams.get(&sid) {
                    for (decl, v) in s.st.metadata.iter().zip(&s.metadata) {
                        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                            msgs.push(ToProxy::Metadata {
                                name: decl.name.clone(),
                                value: v.clone(),
                            });
                        }
                    }
                    if let Some(n) = s.tx_len {
                        msgs.push(ToProxy::PayloadLengthHint(
                            u32::try_from(n).unwrap_or(u32::MAX),
                        ));
                    }
                }
                msgs.push(ToProxy::OnwardConnect);
                for m in msgs {
                    if let Err(e) = self.link_send(conn, &m) {
                        return self.attempt_fail(now, conn, e);
                    }
                }
            }
            ToClient::ConnState { state, ack } => {
                let Some(state) = StreamState::from_ordinal(state) else {
                    return;
                };
                self.link_state(now, conn, sid, state, ack);
            }
            ToClient::RxPayload(p) => self.events.push_back(Event::Rx {
                stream: sid,
                data: p.data,
                flags: p.flags,
            }),
            ToClient::Metadata { name, value } => {
                let max = self.config.max_metadata_len;
                if let Some(s) = self.streams.get_mut(&sid) {
                    if let Some(i) = s.st.metadata_index(&name) {
                        if value.len() <= max {
                            if let Some(slot) = s.metadata.get_mut(i) {
                                *slot = Some(value);
                            }
                        }
                    }
                }
            }
            ToClient::TxCreditUpdate(_) | ToClient::Perf(_) => {}
        }
    }

    /// A state of the onward stream, as the daemon reports it.
    fn link_state(
        &mut self,
        now: Instant,
        conn: ConnId,
        sid: StreamId,
        state: StreamState,
        ack: u32,
    ) {
        let last = self.streams.get(&sid).and_then(|s| s.last_state);
        if state == StreamState::User {
            return self.emit_state(sid, state, ack);
        }
        // The daemon's own stream lifecycle (CREATING, DESTROYING) is not
        // ours, nor is the POLL that starts each of its retries (the link,
        // our connection, is up: a later loss of it must read as a failed
        // attempt, not follow a POLL).
        if matches!(
            state,
            StreamState::Creating | StreamState::Destroying | StreamState::Poll
        ) || last == Some(state)
            || !state.is_legal_after(last)
        {
            return;
        }
        if state == StreamState::Disconnected {
            // The onward connection is gone, and with it whatever was in
            // flight on it. End this link too, as a direct stream's
            // connection ends: the stream reconnects per its policy on a
            // fresh link, so nothing written before the drop (still on its
            // way through the old link) reaches the next onward connection.
            self.link_destroying(conn);
            self.close_conn(conn);
            return self.conn_lost(now, conn);
        }
        if state == StreamState::Connected {
            if let Some(s) = self.streams.get_mut(&sid) {
                s.seq = Seq::Connected;
                s.tries = 0;
            }
        }
        self.emit_state(sid, state, ack);
        if state == StreamState::Connected {
            self.service_tx();
        }
    }

    /// The application wrote payload: TX_PAYLOAD frames.
    pub(super) fn link_write(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: StreamId,
        data: &[u8],
        flags: Flags,
    ) -> Result<usize, Error> {
        if flags.contains(Flags::EOM) {
            self.link_ride_next(conn, id);
        }
        let pieces: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(MAX_PIECE).collect()
        };
        let n = pieces.len();
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut f = flags;
            if i > 0 {
                f = Flags(f.0 & !Flags::SOM.0);
            }
            if i + 1 < n {
                f = Flags(f.0 & !Flags::EOM.0);
            }
            let msg = ToProxy::TxPayload(Payload::new(piece.to_vec(), f));
            if let Err(e) = self.link_send(conn, &msg) {
                self.attempt_fail(now, conn, e.clone());
                return Err(Error::Protocol(e));
            }
        }
        Ok(data.len())
    }

    /// A part of the request body ended: the next streamtype of the chain the
    /// daemon announced is due (`Engine::rideshare`), or, after the last, the
    /// stream's own again. The daemon's engine walks the same chain itself.
    fn link_ride_next(&mut self, conn: ConnId, id: StreamId) {
        let Some(Proto::Link(l)) = self.conns.get(&conn).map(|c| &c.proto) else {
            return;
        };
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        match l.chain.get(s.ride.len() + 1) {
            Some(next) => s.ride.push(next.clone()),
            _ => s.ride.clear(),
        }
    }

    /// Whether the link's stream may write (the onward stream is CONNECTED).
    pub(super) fn link_wants_tx(&self, conn: ConnId) -> bool {
        matches!(self.conns.get(&conn).map(|c| &c.proto), Some(Proto::Link(l)) if l.created)
    }

    /// Tell the daemon the stream is going away (before the link closes).
    pub(super) fn link_destroying(&mut self, conn: ConnId) {
        // Only on a link that is up: one still connecting has nowhere to
        // write yet (it is just closed).
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| c.phase == super::Phase::Open && matches!(c.proto, Proto::Link(_)))
        {
            let _ = self.link_send(conn, &ToProxy::Destroying);
        }
    }

    /// Forward a metadata change to the daemon while the link is up.
    pub(super) fn link_metadata(&mut self, id: StreamId, name: &str, value: &[u8]) {
        let Some(conn) = self.streams.get(&id).and_then(|s| s.conn) else {
            return;
        };
        if self.link_wants_tx(conn) && !value.is_empty() {
            let _ = self.link_send(
                conn,
                &ToProxy::Metadata {
                    name: name.to_string(),
                    value: value.to_vec(),
                },
            );
        }
    }

    /// Forward `start_timeout` / `cancel_timeout` to the daemon.
    pub(super) fn link_timeout(&mut self, id: StreamId, ms: Option<u32>) {
        let Some(conn) = self.streams.get(&id).and_then(|s| s.conn) else {
            return;
        };
        if self.link_wants_tx(conn) {
            let v = ms.unwrap_or(u32::MAX);
            let _ = self.link_send(conn, &ToProxy::TimeoutUpdate(v));
        }
    }
}
