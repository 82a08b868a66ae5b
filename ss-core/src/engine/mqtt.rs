//! MQTT glue: streams of `mqtt` streamtypes share one connection per
//! (endpoint, port, TLS), as the reference muxes them (at most
//! [`MAX_STREAMS_PER_CONN`] each), over one [`Session`].
//!
//! As in the reference's `ss-mqtt.c`: the connection's CONNECT uses the
//! client id from the opening stream's `client_id` metadata when the
//! streamtype declares and sets it (our addition), else the `MqttClientId`
//! system blob, else 23 random characters from the seeded source (which
//! forces a clean session), `mqtt_keep_alive`,
//! `mqtt_clean_start`, the will (`mqtt_will_*`, `${metadata}` substituted) and
//! `MqttUsername` / `MqttPassword` blobs. Each stream subscribes to
//! `mqtt_subscribe` (shared subscriptions are counted, not sent twice) and
//! reports CONNECTED once its SUBACK arrives (at once without a
//! subscription). Each message the application writes (SOM..EOM, assembled,
//! bounded by the packet limit) is a PUBLISH to `mqtt_topic` at `mqtt_qos` /
//! `mqtt_retain`: QoS 0 reports QOS_ACK_REMOTE at once, QoS 1/2 on PUBACK /
//! PUBCOMP, QOS_NACK_REMOTE when the message is lost (clean session after a
//! reconnect). An incoming PUBLISH goes to every stream whose filter matches
//! (wildcards `+` and `#`), SOM on its first piece, EOM on its last. The birth
//! message (`mqtt_birth_*`) is published once per connection at CONNACK.
//!
//! A lost connection (EOF, keep-alive timeout, protocol error) reports
//! DISCONNECTED (or UNREACHABLE before CONNACK) to every stream on it; each
//! retries per its policy. Unacknowledged QoS 1/2 messages are kept for the
//! next connection to the same place and retransmitted with DUP unless the
//! session is clean, in which case their streams hear QOS_NACK_REMOTE.

use super::{ConnId, Engine, Error, Event, Proto, Seq, StreamId, SystemBlob, Timer};
use crate::policy::StreamType;
use crate::proto::mqtt::{
    ConnectOptions, MqttError, MqttEvent, QoS, Session, Will, AWS_IOT_MAX_TOPIC_LEN,
};
use crate::state::{Flags, StreamState};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Most streams one MQTT connection carries (the reference's mux limit).
pub const MAX_STREAMS_PER_CONN: usize = 8;
/// Largest piece of an incoming PUBLISH handed up in one rx.
const RX_PIECE: usize = 16 * 1024;

/// One shared MQTT connection.
#[derive(Debug)]
pub(super) struct MqttConn {
    session: Session,
    /// The streams it carries.
    members: BTreeSet<StreamId>,
    /// Messages being assembled from SOM..EOM writes, per stream.
    partial: BTreeMap<StreamId, Vec<u8>>,
    /// The birth message went out on this connection.
    birth_done: bool,
    /// Whole messages waiting for an in-flight slot (bounded).
    backlog: std::collections::VecDeque<Queued>,
}

/// A message waiting for the session to accept another QoS 1/2 publish.
#[derive(Debug)]
struct Queued {
    owner: StreamId,
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
}

/// Most whole messages a connection holds while its in-flight window is full.
const MAX_BACKLOG: usize = 64;

impl MqttConn {
    /// Whether the session can take a publish now.
    pub(super) fn wants_tx(&self) -> bool {
        self.session.is_connected()
            && self.session.in_flight().len() + self.backlog.len()
                < self.session.options().limits.max_in_flight
    }
}

fn mqtt_of(p: &mut Proto) -> Option<&mut MqttConn> {
    match p {
        Proto::Mqtt(m) => Some(m),
        _ => None,
    }
}

fn qos(n: u8) -> QoS {
    QoS::from_u8(n).unwrap_or(QoS::AtMostOnce)
}

impl Engine {
    /// The streams a connection carries: its members for a shared MQTT
    /// connection, else its one stream.
    pub(super) fn conn_streams(&self, conn: ConnId) -> Vec<StreamId> {
        match self.conns.get(&conn) {
            Some(c) => match &c.proto {
                Proto::Mqtt(m) => m.members.iter().copied().collect(),
                Proto::H2(h) => h.members().collect(),
                Proto::H2Srv(h) => h.members().collect(),
                // A pending h2 connection also carries the streams waiting on it.
                _ => c
                    .stream
                    .into_iter()
                    .chain(self.h2_waiters.get(&conn).into_iter().flatten().copied())
                    .collect(),
            },
            None => vec![],
        }
    }

    /// Substitute `${metadata}` of stream `sid` into `template`.
    fn mqtt_subst(&self, sid: StreamId, template: &str) -> Result<String, String> {
        let s = self.streams.get(&sid).ok_or("stream gone")?;
        s.substitute(template).map_err(|e| e.to_string())
    }

    /// A new MQTT connection's session for the stream that opens it.
    pub(super) fn mqtt_new_conn(
        &mut self,
        now: Instant,
        sid: StreamId,
    ) -> Result<MqttConn, String> {
        let st = self.streams.get(&sid).ok_or("stream gone")?.st.clone();
        // The opening stream's `client_id` metadata, if declared and set,
        // else the system blob, else a random id.
        let from_metadata = self.streams.get(&sid).and_then(|s| {
            let i = s.st.metadata_index("client_id")?;
            s.metadata.get(i)?.clone().filter(|v| !v.is_empty())
        });
        let chosen = from_metadata.or_else(|| self.blobs.get(&SystemBlob::MqttClientId).cloned());
        let (client_id, random) = match chosen {
            Some(id) => (String::from_utf8_lossy(&id).into_owned(), false),
            None => {
                const ALNUM: &[u8] =
                    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
                let id: String = (0..23)
                    .map(|_| {
                        let i = (self.rng.next_u64() % ALNUM.len() as u64) as usize;
                        char::from(ALNUM.get(i).copied().unwrap_or(b'x'))
                    })
                    .collect();
                (id, true)
            }
        };
        let mut opts = ConnectOptions::new(client_id, st.mqtt.keep_alive);
        // A made-up client id cannot resume a session (as the reference).
        opts.clean_session = st.mqtt.clean_start || random;
        if let Some(t) = &st.mqtt.will_topic {
            let topic = self.mqtt_subst(sid, t)?;
            let message = self.mqtt_subst(sid, st.mqtt.will_message.as_deref().unwrap_or(""))?;
            opts.will = Some(Will {
                topic,
                message: message.into_bytes(),
                qos: qos(st.mqtt.will_qos),
                retain: st.mqtt.will_retain,
            });
        }
        opts.username = self
            .blobs
            .get(&SystemBlob::MqttUsername)
            .map(|u| String::from_utf8_lossy(u).into_owned());
        opts.password = self.blobs.get(&SystemBlob::MqttPassword).cloned();
        opts.limits.max_packet = self.config.mqtt_max_packet;
        if st.mqtt.aws_iot {
            opts.limits.max_topic_len = AWS_IOT_MAX_TOPIC_LEN;
        }
        let mut session = Session::new(opts, now);
        // Unacknowledged messages from the last connection to this place.
        let key = self.conns_key_for(sid);
        if let Some(prev) = key.and_then(|k| self.mqtt_resume.remove(&k)) {
            session.restore(prev);
        }
        Ok(MqttConn {
            session,
            members: BTreeSet::from([sid]),
            partial: BTreeMap::new(),
            birth_done: false,
            backlog: std::collections::VecDeque::new(),
        })
    }

    /// The shared-connection key of a stream (its pool key).
    fn conns_key_for(&self, sid: StreamId) -> Option<super::PoolKey> {
        let s = self.streams.get(&sid)?;
        let (target, tls) = super::resolve_endpoint(s).ok()?;
        let t = match target {
            super::Target::Addr(a) => a.to_string(),
            super::Target::Host(h) => h.to_ascii_lowercase(),
        };
        Some((t, s.st.port, tls))
    }

    /// Join an existing connection to the same place, if one has room.
    /// Returns true when the stream is now on it.
    pub(super) fn mqtt_join(&mut self, now: Instant, sid: StreamId) -> bool {
        let Some(key) = self.conns_key_for(sid) else {
            return false;
        };
        let Some(&conn) = self.mqtt_conns.get(&key) else {
            return false;
        };
        let Some(m) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| mqtt_of(&mut c.proto))
        else {
            return false;
        };
        if m.members.len() >= MAX_STREAMS_PER_CONN || m.session.is_closed() {
            return false;
        }
        m.members.insert(sid);
        let connected = m.session.is_connected();
        if let Some(s) = self.streams.get_mut(&sid) {
            s.conn = Some(conn);
        }
        if connected {
            if let Some(s) = self.streams.get_mut(&sid) {
                s.seq = Seq::Connected;
            }
            self.mqtt_stream_ready(now, conn, sid);
            self.mqtt_flush(now, conn);
        }
        true
    }

    /// Register a new MQTT connection under its key.
    pub(super) fn mqtt_register(&mut self, sid: StreamId, conn: ConnId) {
        if let Some(key) = self.conns_key_for(sid) {
            self.mqtt_conns.insert(key, conn);
        }
    }

    /// The transport is up: send CONNECT.
    pub(super) fn mqtt_start(&mut self, now: Instant, conn: ConnId) {
        let res = match self
            .conns
            .get_mut(&conn)
            .and_then(|c| mqtt_of(&mut c.proto))
        {
            Some(m) => m.session.start(now),
            None => return,
        };
        self.mqtt_flush(now, conn);
        if let Err(e) = res {
            self.mqtt_lost(now, conn, e);
        }
    }

    /// A stream on a connected session: subscribe, or report CONNECTED.
    fn mqtt_stream_ready(&mut self, now: Instant, conn: ConnId, sid: StreamId) {
        let Some(st) = self.streams.get(&sid).map(|s| s.st.clone()) else {
            return;
        };
        if let Some(s) = self.streams.get_mut(&sid) {
            s.tries = 0;
        }
        let filter = match st.mqtt.subscribe.as_deref().filter(|f| !f.is_empty()) {
            Some(f) => match self.mqtt_subst(sid, f) {
                Ok(f) => Some(f),
                Err(e) => return self.mqtt_stream_failed(now, conn, sid, e),
            },
            None => None,
        };
        match filter {
            Some(f) => {
                let res = self
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| mqtt_of(&mut c.proto))
                    .map(|m| m.session.subscribe(sid.0, &f, qos(st.mqtt.qos)));
                if let Some(Err(e)) = res {
                    self.mqtt_stream_failed(now, conn, sid, e.to_string());
                }
                // CONNECTED follows the SUBACK.
            }
            None => {
                if !self.streams.get(&sid).is_some_and(|s| s.connected_reported) {
                    self.mqtt_connected(sid);
                }
            }
        }
    }

    /// Report CONNECTED, then any verdict that waited for it.
    fn mqtt_connected(&mut self, sid: StreamId) {
        self.emit_state(sid, StreamState::Connected, 0);
        for v in self.mqtt_late.remove(&sid).unwrap_or_default() {
            self.emit_state(sid, v, 0);
        }
    }

    /// A QoS verdict for a stream's message. It is reported at once when the
    /// stream is CONNECTED; otherwise (a message carried over from a lost
    /// connection and acked, or nacked by a clean session, before the stream
    /// is back) it waits for the stream's next CONNECTED, so the sequence
    /// stays within the reference's transition table.
    fn mqtt_verdict(&mut self, sid: StreamId, verdict: StreamState) {
        let Some(s) = self.streams.get(&sid) else {
            return;
        };
        if s.connected_reported && verdict.is_legal_after(s.last_state) {
            self.emit_state(sid, verdict, 0);
        } else {
            let late = self.mqtt_late.entry(sid).or_default();
            if late.len() < self.config.mqtt_max_late_verdicts {
                late.push(verdict);
            }
        }
    }

    /// Publish messages that waited for an in-flight slot.
    fn mqtt_drain_backlog(&mut self, conn: ConnId) {
        loop {
            let Some(m) = self
                .conns
                .get_mut(&conn)
                .and_then(|c| mqtt_of(&mut c.proto))
            else {
                return;
            };
            if m.session.in_flight().len() >= m.session.options().limits.max_in_flight {
                return;
            }
            let Some(q) = m.backlog.pop_front() else {
                return;
            };
            match m
                .session
                .publish(q.owner.0, &q.topic, &q.payload, q.qos, q.retain)
            {
                Ok(None) => self.mqtt_verdict(q.owner, StreamState::QosAckRemote),
                Ok(Some(_)) => {}
                Err(_) => self.mqtt_verdict(q.owner, StreamState::QosNackRemote),
            }
        }
    }

    /// One stream cannot use the connection (e.g. its subscription was
    /// refused): it leaves it, reports why and retries per its policy.
    fn mqtt_stream_failed(&mut self, now: Instant, conn: ConnId, sid: StreamId, reason: String) {
        self.emit_error(sid, reason);
        self.mqtt_leave(now, conn, sid);
        let reported = self.streams.get(&sid).is_some_and(|s| s.connected_reported);
        if let Some(s) = self.streams.get_mut(&sid) {
            s.seq = Seq::Idle;
        }
        if reported {
            self.emit_state(sid, StreamState::Disconnected, 0);
        } else {
            self.emit_state(sid, StreamState::Unreachable, 0);
        }
        self.backoff(now, sid, reported, std::time::Duration::ZERO);
    }

    /// Stream `sid` leaves connection `conn` (unsubscribing what only it
    /// used); the last one out disconnects and closes it.
    pub(super) fn mqtt_leave(&mut self, now: Instant, conn: ConnId, sid: StreamId) {
        let last = match self
            .conns
            .get_mut(&conn)
            .and_then(|c| mqtt_of(&mut c.proto))
        {
            Some(m) => {
                m.members.remove(&sid);
                m.partial.remove(&sid);
                if m.session.is_connected() {
                    let _ = m.session.remove_owner(sid.0);
                }
                if m.members.is_empty() {
                    m.session.disconnect();
                    true
                } else {
                    false
                }
            }
            None => false,
        };
        if let Some(s) = self.streams.get_mut(&sid) {
            if s.conn == Some(conn) {
                s.conn = None;
            }
        }
        self.mqtt_flush(now, conn);
        if last {
            self.close_conn(conn);
            self.drop_conn(conn);
        }
    }

    /// Broker bytes arrived.
    pub(super) fn mqtt_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let res = match self
            .conns
            .get_mut(&conn)
            .and_then(|c| mqtt_of(&mut c.proto))
        {
            Some(m) => m.session.handle_input(now, data),
            None => return,
        };
        self.mqtt_flush(now, conn);
        if let Err(e) = res {
            self.mqtt_lost(now, conn, e);
        }
    }

    /// The session's timer fired.
    pub(super) fn mqtt_timeout(&mut self, now: Instant, conn: ConnId) {
        let res = match self
            .conns
            .get_mut(&conn)
            .and_then(|c| mqtt_of(&mut c.proto))
        {
            Some(m) => m.session.handle_timeout(now),
            None => return,
        };
        self.mqtt_flush(now, conn);
        if let Err(e) = res {
            self.mqtt_lost(now, conn, e);
        }
    }

    /// Send what the session queued, route its events, re-arm its timer.
    pub(super) fn mqtt_flush(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(m) = self
                .conns
                .get_mut(&conn)
                .and_then(|c| mqtt_of(&mut c.proto))
            else {
                return;
            };
            let out = m.session.poll_transmit();
            let ev = m.session.poll_event();
            let timeout = m.session.poll_timeout();
            match timeout {
                Some(at) => self.timers.set(Timer::Mqtt(conn), at),
                None => self.timers.cancel(Timer::Mqtt(conn)),
            }
            if let Some(bytes) = out {
                self.transmit(conn, bytes);
            }
            match ev {
                Some(ev) => self.mqtt_event(now, conn, ev),
                None => break,
            }
        }
        self.service_tx();
    }

    fn mqtt_event(&mut self, now: Instant, conn: ConnId, ev: MqttEvent) {
        let stream = |owner: u64| StreamId(owner);
        match ev {
            MqttEvent::Connected { .. } => {
                let members = self.conn_streams(conn);
                for sid in &members {
                    if let Some(s) = self.streams.get_mut(sid) {
                        s.seq = Seq::Connected;
                    }
                }
                self.mqtt_birth(conn);
                for sid in members {
                    self.mqtt_stream_ready(now, conn, sid);
                }
            }
            MqttEvent::ConnectRefused(code) => {
                let reason = format!("mqtt: the broker refused the connection ({code:?})");
                let auth = matches!(code.code(), 4 | 5);
                let members = self.conn_streams(conn);
                for sid in &members {
                    self.emit_error(*sid, reason.clone());
                }
                self.close_conn(conn);
                self.drop_conn(conn);
                for sid in members {
                    if let Some(s) = self.streams.get_mut(&sid) {
                        s.seq = Seq::Idle;
                    }
                    // AUTH_FAILED cannot follow every state (e.g. TIMEOUT in
                    // the reference's table): UNREACHABLE says it then.
                    let st = if auth
                        && StreamState::AuthFailed
                            .is_legal_after(self.streams.get(&sid).and_then(|s| s.last_state))
                    {
                        StreamState::AuthFailed
                    } else {
                        StreamState::Unreachable
                    };
                    self.emit_state(sid, st, 0);
                    self.backoff(now, sid, false, std::time::Duration::ZERO);
                }
            }
            MqttEvent::Message {
                owners, payload, ..
            } => {
                for owner in owners {
                    let sid = stream(owner);
                    if !self.streams.contains_key(&sid) {
                        continue;
                    }
                    let pieces: Vec<&[u8]> = if payload.is_empty() {
                        vec![&[]]
                    } else {
                        payload.chunks(RX_PIECE).collect()
                    };
                    let n = pieces.len();
                    for (i, p) in pieces.into_iter().enumerate() {
                        let mut flags = Flags::NONE;
                        if i == 0 {
                            flags |= Flags::SOM;
                        }
                        if i + 1 == n {
                            flags |= Flags::EOM;
                        }
                        self.events.push_back(Event::Rx {
                            stream: sid,
                            data: p.to_vec(),
                            flags,
                        });
                    }
                }
            }
            MqttEvent::Acked { owner, .. } => {
                self.mqtt_verdict(stream(owner), StreamState::QosAckRemote);
                self.mqtt_drain_backlog(conn);
            }
            MqttEvent::Nacked { owner, .. } => {
                self.mqtt_verdict(stream(owner), StreamState::QosNackRemote);
                self.mqtt_drain_backlog(conn);
            }
            MqttEvent::SubAcked { owner, .. } => {
                let sid = stream(owner);
                if self
                    .streams
                    .get(&sid)
                    .is_some_and(|s| !s.connected_reported)
                {
                    self.mqtt_connected(sid);
                }
            }
            MqttEvent::SubRefused { owner, filter } => {
                let sid = stream(owner);
                if self.streams.contains_key(&sid) {
                    let reason = format!("mqtt: the broker refused the subscription to {filter}");
                    self.mqtt_stream_failed(now, conn, sid, reason);
                }
            }
            MqttEvent::Unsubscribed { .. } => {}
        }
    }

    /// The birth message, once per connection, from the first member that has one.
    fn mqtt_birth(&mut self, conn: ConnId) {
        let members = self.conn_streams(conn);
        let Some((sid, st)) = members.iter().find_map(|sid| {
            let st = self.streams.get(sid)?.st.clone();
            st.mqtt.birth_topic.is_some().then_some((*sid, st))
        }) else {
            return;
        };
        if self
            .conns
            .get_mut(&conn)
            .and_then(|c| mqtt_of(&mut c.proto))
            .is_some_and(|m| m.birth_done)
        {
            return;
        }
        let topic = self.mqtt_subst(sid, st.mqtt.birth_topic.as_deref().unwrap_or(""));
        let msg = self.mqtt_subst(sid, st.mqtt.birth_message.as_deref().unwrap_or(""));
        if let (Ok(topic), Ok(msg), Some(m)) = (
            topic,
            msg,
            self.conns
                .get_mut(&conn)
                .and_then(|c| mqtt_of(&mut c.proto)),
        ) {
            m.birth_done = true;
            // The birth's own acknowledgement is not the stream's transaction:
            // owner 0 is no stream, so its ack reaches nobody.
            let _ = m.session.publish(
                0,
                &topic,
                msg.as_bytes(),
                qos(st.mqtt.birth_qos),
                st.mqtt.birth_retain,
            );
        }
    }

    /// The application wrote message payload.
    pub(super) fn mqtt_write(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: StreamId,
        data: &[u8],
        flags: Flags,
    ) -> Result<usize, Error> {
        let Some(st) = self.streams.get(&id).map(|s| s.st.clone()) else {
            return Err(Error::NoSuchStream(id));
        };
        let topic = match st.mqtt.topic.as_deref() {
            Some(t) => self.mqtt_subst(id, t).map_err(Error::Protocol)?,
            None => {
                return Err(Error::WrongKind(
                    "the streamtype has no mqtt_topic to publish to",
                ))
            }
        };
        let max = self.config.mqtt_max_packet;
        let Some(m) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| mqtt_of(&mut c.proto))
        else {
            return Err(Error::NotConnected(id));
        };
        let buf = m.partial.entry(id).or_default();
        if flags.contains(Flags::SOM) {
            buf.clear();
        }
        if buf.len() + data.len() > max {
            m.partial.remove(&id);
            return Err(Error::TooLarge {
                what: "mqtt message",
                len: data.len(),
                max,
            });
        }
        buf.extend_from_slice(data);
        if !flags.contains(Flags::EOM) {
            return Ok(data.len());
        }
        let payload = m.partial.remove(&id).unwrap_or_default();
        let res = m
            .session
            .publish(id.0, &topic, &payload, qos(st.mqtt.qos), st.mqtt.retain);
        match res {
            Ok(None) => {
                // QoS 0: nothing will acknowledge it; the reference reports success now.
                self.mqtt_flush(now, conn);
                self.mqtt_verdict(id, StreamState::QosAckRemote);
                Ok(data.len())
            }
            Ok(Some(_)) => {
                self.mqtt_flush(now, conn);
                Ok(data.len())
            }
            Err(MqttError::TooManyInFlight) if backlog_room(self, conn) => {
                // The window is full: the message waits for an acknowledgement.
                if let Some(m) = self
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| mqtt_of(&mut c.proto))
                {
                    m.backlog.push_back(Queued {
                        owner: id,
                        topic,
                        payload,
                        qos: qos(st.mqtt.qos),
                        retain: st.mqtt.retain,
                    });
                }
                Ok(data.len())
            }
            Err(e @ (MqttError::TooManyInFlight | MqttError::InvalidTopic(_))) => {
                self.mqtt_verdict(id, StreamState::QosNackRemote);
                Err(Error::Protocol(e.to_string()))
            }
            Err(e) => {
                let msg = e.to_string();
                self.mqtt_lost(now, conn, e);
                Err(Error::Protocol(msg))
            }
        }
    }

    /// Keep the unacknowledged messages of a connection about to be dropped
    /// for the next connection to the same place (nothing when no stream is
    /// left on it, or nothing is in flight).
    pub(super) fn mqtt_stash(&mut self, conn: ConnId) {
        let Some(first) = self.conn_streams(conn).first().copied() else {
            return;
        };
        let Some(key) = self.conns_key_for(first) else {
            return;
        };
        let Some(carried) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| mqtt_of(&mut c.proto))
            .map(|m| m.session.take_in_flight())
        else {
            return;
        };
        if carried.publishes.is_empty() && carried.incoming_qos2.is_empty() {
            return;
        }
        let kept = self.mqtt_resume.entry(key).or_default();
        kept.publishes.extend(carried.publishes);
        kept.incoming_qos2.extend(carried.incoming_qos2);
    }

    /// The connection is gone (EOF, timeout, protocol error): every stream
    /// on it hears it and retries per its policy; unacknowledged messages wait
    /// for the next connection to the same place.
    pub(super) fn mqtt_lost(&mut self, now: Instant, conn: ConnId, e: MqttError) {
        let members = self.conn_streams(conn);
        let carried = self
            .conns
            .get_mut(&conn)
            .and_then(|c| mqtt_of(&mut c.proto))
            .map(|m| m.session.take_in_flight());
        if let (Some(carried), Some(sid)) = (carried, members.first()) {
            if let Some(key) = self.conns_key_for(*sid) {
                if !carried.publishes.is_empty() || !carried.incoming_qos2.is_empty() {
                    self.mqtt_resume.insert(key, carried);
                }
            }
        }
        for sid in &members {
            self.emit_error(*sid, e.to_string());
        }
        self.close_conn(conn);
        self.drop_conn(conn);
        for sid in members {
            let Some(s) = self.streams.get_mut(&sid) else {
                continue;
            };
            s.seq = Seq::Idle;
            let reported = s.connected_reported;
            let reconnect = s.st.nailed_up || !s.st.opportunistic;
            if reported {
                self.emit_state(sid, StreamState::Disconnected, 0);
                if reconnect {
                    self.backoff(now, sid, true, std::time::Duration::ZERO);
                }
            } else {
                self.emit_state(sid, StreamState::Unreachable, 0);
                self.backoff(now, sid, false, std::time::Duration::ZERO);
            }
        }
    }
}

/// Whether `conn`'s backlog can take another message.
fn backlog_room(e: &mut Engine, conn: ConnId) -> bool {
    e.conns
        .get_mut(&conn)
        .and_then(|c| mqtt_of(&mut c.proto))
        .is_some_and(|m| m.backlog.len() < MAX_BACKLOG)
}

/// Whether a streamtype's streams share MQTT connections.
pub(super) fn is_mqtt(st: &StreamType) -> bool {
    st.protocol == crate::policy::Protocol::Mqtt && !st.server
}
