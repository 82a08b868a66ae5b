//! [`Session`]: one MQTT connection's client state.

use super::codec::{self, Frame};
use super::topic::{topic_matches, validate_filter, validate_topic};
use super::{
    ConnectOptions, ConnectRefusal, MqttError, MqttEvent, NackReason, PacketId, QoS,
    MAX_CLIENT_ID_LEN,
};
use mqttrs::{ConnectReturnCode, Packet, Pid, QosPid, SubscribeReturnCodes};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Created, CONNECT not yet queued.
    Idle,
    /// CONNECT queued, awaiting CONNACK.
    Connecting,
    /// CONNACK accepted.
    Connected,
    /// Refused, disconnected or failed: nothing more is accepted.
    Closed,
}

/// An outgoing QoS 1/2 PUBLISH not yet fully acknowledged.
///
/// Kept whole so it can be retransmitted (with DUP set) on the next
/// connection of a non-clean session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlightPublish {
    /// Who published it.
    pub owner: u64,
    /// Its packet id, kept across reconnections.
    pub pkid: PacketId,
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS 1 or 2.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// QoS 2 only: PUBREC came and PUBREL was sent; awaiting PUBCOMP. Such a
    /// message is resumed by resending PUBREL, not the PUBLISH.
    pub released: bool,
}

/// The part of a session's state that outlives its connection when the
/// session is not clean: taken from the old [`Session`] with
/// [`Session::take_in_flight`], given to the new one with [`Session::restore`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Outgoing QoS 1/2 PUBLISHes awaiting PUBACK / PUBREC / PUBCOMP, in the
    /// order they were first sent.
    pub publishes: Vec<InFlightPublish>,
    /// Incoming QoS 2 packet ids delivered and awaiting PUBREL: a
    /// retransmission of these must not be delivered again.
    pub incoming_qos2: Vec<PacketId>,
}

/// A subscription the broker granted, shared by one or more owners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The filter.
    pub filter: String,
    /// Owners using it, each once, in the order they subscribed.
    pub owners: Vec<u64>,
    /// Highest QoS asked for.
    pub requested: QoS,
    /// QoS the broker granted.
    pub granted: QoS,
}

#[derive(Clone, Debug)]
struct PendingSub {
    pkid: PacketId,
    filter: String,
    qos: QoS,
    owners: Vec<u64>,
}

#[derive(Clone, Debug)]
struct PendingUnsub {
    pkid: PacketId,
    filter: String,
    owner: u64,
}

/// One MQTT 3.1.1 client connection's protocol state: sans-IO, shared by all
/// the owners (streams) that use the connection.
///
/// Drive it with [`start`](Session::start), [`handle_input`](Session::handle_input)
/// and [`handle_timeout`](Session::handle_timeout); collect
/// [`poll_transmit`](Session::poll_transmit) and
/// [`poll_event`](Session::poll_event) after each call. Any `Err` from an
/// input or timeout call means the connection is lost; the session is then
/// closed, and its [`InFlight`] state can be carried to the next one.
#[derive(Debug)]
pub struct Session {
    opts: ConnectOptions,
    state: State,
    rx: Vec<u8>,
    tx: Vec<u8>,
    events: VecDeque<MqttEvent>,
    out: Vec<InFlightPublish>,
    in_qos2: Vec<PacketId>,
    subs: Vec<Subscription>,
    pending_subs: Vec<PendingSub>,
    pending_unsubs: Vec<PendingUnsub>,
    next_pid: u16,
    connect_deadline: Option<Instant>,
    next_ping: Option<Instant>,
    ping_deadline: Option<Instant>,
    pings_acked: u64,
}

impl Session {
    /// A session that will connect with `opts`. Nothing is sent until
    /// [`start`](Session::start).
    pub fn new(opts: ConnectOptions, _now: Instant) -> Self {
        Session {
            opts,
            state: State::Idle,
            rx: Vec::new(),
            tx: Vec::new(),
            events: VecDeque::new(),
            out: Vec::new(),
            in_qos2: Vec::new(),
            subs: Vec::new(),
            pending_subs: Vec::new(),
            pending_unsubs: Vec::new(),
            next_pid: 1,
            connect_deadline: None,
            next_ping: None,
            ping_deadline: None,
            pings_acked: 0,
        }
    }

    /// The options the session connects with.
    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// Queues CONNECT; the transport is up. CONNACK is due within the
    /// response timeout.
    pub fn start(&mut self, now: Instant) -> Result<(), MqttError> {
        if self.state != State::Idle {
            return Err(MqttError::Protocol("start called twice"));
        }
        let o = &self.opts;
        if o.client_id.len() > MAX_CLIENT_ID_LEN {
            return Err(MqttError::InvalidOptions("client id too long"));
        }
        if o.client_id.is_empty() && !o.clean_session {
            return Err(MqttError::InvalidOptions(
                "an empty client id needs a clean session",
            ));
        }
        if o.password.is_some() && o.username.is_none() {
            return Err(MqttError::InvalidOptions("password without user name"));
        }
        let lim = o.limits.max_topic_len;
        let mut remaining = 10 + 2 + o.client_id.len();
        if let Some(w) = &o.will {
            validate_topic(&w.topic, lim)?;
            if w.message.len() > usize::from(u16::MAX) {
                return Err(MqttError::InvalidOptions("will message too long"));
            }
            remaining += 4 + w.topic.len() + w.message.len();
        }
        if let Some(u) = &o.username {
            if u.len() > usize::from(u16::MAX) {
                return Err(MqttError::InvalidOptions("user name too long"));
            }
            remaining += 2 + u.len();
        }
        if let Some(p) = &o.password {
            if p.len() > usize::from(u16::MAX) {
                return Err(MqttError::InvalidOptions("password too long"));
            }
            remaining += 2 + p.len();
        }
        let pkt = Packet::Connect(mqttrs::Connect {
            protocol: mqttrs::Protocol::MQTT311,
            keep_alive: o.keep_alive_s,
            client_id: &o.client_id,
            clean_session: o.clean_session,
            last_will: o.will.as_ref().map(|w| mqttrs::LastWill {
                topic: &w.topic,
                message: &w.message,
                qos: w.qos.to_mqttrs(),
                retain: w.retain,
            }),
            username: o.username.as_deref(),
            password: o.password.as_deref(),
        });
        let bytes = codec::encode(&pkt, remaining, o.limits.max_packet)?;
        self.tx.extend_from_slice(&bytes);
        self.state = State::Connecting;
        self.connect_deadline = Some(now + o.response_timeout);
        Ok(())
    }

    /// Whether CONNACK accepted the connection and it is still usable.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether the session is closed (refused, disconnected or failed).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// PINGRESPs received so far (for diagnostics and tests).
    pub fn pings_acked(&self) -> u64 {
        self.pings_acked
    }

    /// Bytes arrived from the broker. Events are queued for
    /// [`poll_event`](Session::poll_event), answers for
    /// [`poll_transmit`](Session::poll_transmit). An `Err` closes the session.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), MqttError> {
        match self.state {
            State::Closed => return Err(MqttError::Closed),
            State::Idle => return Err(MqttError::Protocol("input before CONNECT")),
            _ => {}
        }
        let mut rx = std::mem::take(&mut self.rx);
        rx.extend_from_slice(data);
        let r = self.process(now, &rx);
        match r {
            Ok(used) => {
                rx.drain(..used);
                self.rx = rx;
                Ok(())
            }
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }

    fn process(&mut self, now: Instant, rx: &[u8]) -> Result<usize, MqttError> {
        let mut pos = 0;
        while self.state != State::Closed {
            let rest = rx.get(pos..).unwrap_or_default();
            let Some(f) = codec::frame(rest, self.opts.limits.max_packet)? else {
                break;
            };
            let Some(packet) = rest.get(..f.total()) else {
                break;
            };
            self.handle_packet(now, &f, packet)?;
            pos += f.total();
        }
        Ok(pos)
    }

    fn handle_packet(&mut self, now: Instant, f: &Frame, packet: &[u8]) -> Result<(), MqttError> {
        let p = codec::decode(f, packet)?;
        if self.state == State::Connecting {
            let Packet::Connack(c) = p else {
                return Err(MqttError::Protocol("packet before CONNACK"));
            };
            return self.on_connack(now, c);
        }
        match p {
            Packet::Connack(_) => Err(MqttError::Protocol("second CONNACK")),
            Packet::Publish(p) => self.on_publish(p),
            Packet::Puback(pid) => self.on_ack(pid.get(), QoS::AtLeastOnce),
            Packet::Pubcomp(pid) => self.on_ack(pid.get(), QoS::ExactlyOnce),
            Packet::Pubrec(pid) => {
                let pkid = pid.get();
                if let Some(m) = self.out.iter_mut().find(|m| m.pkid == pkid) {
                    if m.qos != QoS::ExactlyOnce {
                        return Err(MqttError::Protocol("PUBREC for a QoS 1 publish"));
                    }
                    m.released = true;
                }
                self.push_small(Packet::Pubrel(pid))
            }
            Packet::Pubrel(pid) => {
                self.in_qos2.retain(|&p| p != pid.get());
                self.push_small(Packet::Pubcomp(pid))
            }
            Packet::Suback(s) => self.on_suback(s),
            Packet::Unsuback(pid) => {
                if let Some(i) = self.pending_unsubs.iter().position(|u| u.pkid == pid.get()) {
                    let u = self.pending_unsubs.remove(i);
                    self.events.push_back(MqttEvent::Unsubscribed {
                        owner: u.owner,
                        filter: u.filter,
                    });
                }
                Ok(())
            }
            Packet::Pingresp => {
                if self.ping_deadline.take().is_some() {
                    self.pings_acked += 1;
                }
                Ok(())
            }
            _ => Err(MqttError::Protocol("server sent a client-only packet")),
        }
    }

    fn on_connack(&mut self, now: Instant, c: mqttrs::Connack) -> Result<(), MqttError> {
        self.connect_deadline = None;
        let refusal = match c.code {
            ConnectReturnCode::Accepted => None,
            ConnectReturnCode::RefusedProtocolVersion => Some(ConnectRefusal::ProtocolVersion),
            ConnectReturnCode::RefusedIdentifierRejected => {
                Some(ConnectRefusal::IdentifierRejected)
            }
            ConnectReturnCode::ServerUnavailable => Some(ConnectRefusal::ServerUnavailable),
            ConnectReturnCode::BadUsernamePassword => Some(ConnectRefusal::BadUsernamePassword),
            ConnectReturnCode::NotAuthorized => Some(ConnectRefusal::NotAuthorized),
        };
        if let Some(r) = refusal {
            self.close();
            self.events.push_back(MqttEvent::ConnectRefused(r));
            return Ok(());
        }
        if c.session_present && self.opts.clean_session {
            return Err(MqttError::Protocol(
                "session present on a clean-session CONNACK",
            ));
        }
        self.state = State::Connected;
        if self.opts.keep_alive_s > 0 {
            self.next_ping = Some(now + self.keep_alive());
        }
        self.events.push_back(MqttEvent::Connected {
            session_present: c.session_present,
        });
        // Resume: every unacknowledged message again, in order, with its
        // original packet id (§4.4).
        let out = std::mem::take(&mut self.out);
        let mut r = Ok(());
        for m in &out {
            r = r.and_then(|_| self.send_in_flight(m, true));
        }
        self.out = out;
        r
    }

    fn keep_alive(&self) -> Duration {
        Duration::from_secs(u64::from(self.opts.keep_alive_s))
    }

    fn send_in_flight(&mut self, m: &InFlightPublish, dup: bool) -> Result<(), MqttError> {
        let pid = to_pid(m.pkid)?;
        if m.released {
            return self.push_small(Packet::Pubrel(pid));
        }
        let qospid = match m.qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(pid),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(pid),
        };
        self.push_publish(dup, qospid, m.retain, &m.topic, &m.payload)
    }

    fn push_publish(
        &mut self,
        dup: bool,
        qospid: QosPid,
        retain: bool,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), MqttError> {
        let pid_len = if qospid == QosPid::AtMostOnce { 0 } else { 2 };
        let remaining = 2 + topic.len() + pid_len + payload.len();
        let pkt = Packet::Publish(mqttrs::Publish {
            dup,
            qospid,
            retain,
            topic_name: topic,
            payload,
        });
        let bytes = codec::encode(&pkt, remaining, self.opts.limits.max_packet)?;
        self.tx.extend_from_slice(&bytes);
        Ok(())
    }

    fn push_small(&mut self, pkt: Packet<'_>) -> Result<(), MqttError> {
        let remaining = match pkt {
            Packet::Pingreq | Packet::Disconnect => 0,
            _ => 2,
        };
        let bytes = codec::encode(&pkt, remaining, usize::MAX)?;
        self.tx.extend_from_slice(&bytes);
        Ok(())
    }

    fn on_publish(&mut self, p: mqttrs::Publish<'_>) -> Result<(), MqttError> {
        if p.topic_name.is_empty() || p.topic_name.contains(['+', '#']) {
            return Err(MqttError::Protocol("PUBLISH to an empty or wildcard topic"));
        }
        validate_topic(p.topic_name, self.opts.limits.max_topic_len)?;
        let deliver = match p.qospid {
            QosPid::AtMostOnce => true,
            QosPid::AtLeastOnce(pid) => {
                self.push_small(Packet::Puback(pid))?;
                true
            }
            QosPid::ExactlyOnce(pid) => {
                let fresh = !self.in_qos2.contains(&pid.get());
                if fresh {
                    if self.in_qos2.len() >= self.opts.limits.max_in_flight {
                        return Err(MqttError::TooManyInFlight);
                    }
                    self.in_qos2.push(pid.get());
                }
                self.push_small(Packet::Pubrec(pid))?;
                fresh
            }
        };
        if deliver {
            let qos = match p.qospid {
                QosPid::AtMostOnce => QoS::AtMostOnce,
                QosPid::AtLeastOnce(_) => QoS::AtLeastOnce,
                QosPid::ExactlyOnce(_) => QoS::ExactlyOnce,
            };
            self.events.push_back(MqttEvent::Message {
                owners: self.owners_for(p.topic_name),
                topic: p.topic_name.to_owned(),
                payload: p.payload.to_vec(),
                qos,
                retain: p.retain,
            });
        }
        Ok(())
    }

    /// Owners whose granted or pending subscription matches `topic`, each
    /// once, in subscription order.
    pub fn owners_for(&self, topic: &str) -> Vec<u64> {
        let mut owners = Vec::new();
        let granted = self.subs.iter().map(|s| (&s.filter, &s.owners));
        let pending = self.pending_subs.iter().map(|s| (&s.filter, &s.owners));
        for (filter, os) in granted.chain(pending) {
            if topic_matches(filter, topic) {
                for o in os {
                    if !owners.contains(o) {
                        owners.push(*o);
                    }
                }
            }
        }
        owners
    }

    fn on_ack(&mut self, pkid: PacketId, qos: QoS) -> Result<(), MqttError> {
        let Some(i) = self.out.iter().position(|m| m.pkid == pkid) else {
            return Ok(()); // unknown id: already settled, ignore
        };
        if self.out[i].qos != qos {
            // ok: i from position() above
            return Err(MqttError::Protocol("acknowledgement of the wrong QoS"));
        }
        let m = self.out.remove(i);
        self.events.push_back(MqttEvent::Acked {
            owner: m.owner,
            pkid,
        });
        Ok(())
    }

    fn on_suback(&mut self, s: mqttrs::Suback) -> Result<(), MqttError> {
        let [code] = s.return_codes[..] else {
            // ok: a slice pattern, not an index
            return Err(MqttError::Protocol("SUBACK return codes do not match"));
        };
        let Some(i) = self.pending_subs.iter().position(|p| p.pkid == s.pid.get()) else {
            return Ok(());
        };
        let p = self.pending_subs.remove(i);
        match code {
            SubscribeReturnCodes::Success(q) => {
                let granted = QoS::from_mqttrs(q);
                let idx = match self.subs.iter().position(|s| s.filter == p.filter) {
                    Some(idx) => idx,
                    None => {
                        self.subs.push(Subscription {
                            filter: p.filter.clone(),
                            owners: Vec::new(),
                            requested: p.qos,
                            granted,
                        });
                        self.subs.len() - 1
                    }
                };
                let sub = &mut self.subs[idx]; // ok: idx found or just pushed
                sub.requested = sub.requested.max(p.qos);
                sub.granted = granted;
                for o in &p.owners {
                    if !sub.owners.contains(o) {
                        sub.owners.push(*o);
                    }
                    self.events.push_back(MqttEvent::SubAcked {
                        owner: *o,
                        filter: p.filter.clone(),
                        granted,
                    });
                }
                if sub.owners.is_empty() {
                    // Everyone left while the SUBSCRIBE was in flight.
                    self.subs.remove(idx);
                    self.send_unsubscribe(u64::MAX, p.filter, false)?;
                }
            }
            SubscribeReturnCodes::Failure => {
                for o in p.owners {
                    self.events.push_back(MqttEvent::SubRefused {
                        owner: o,
                        filter: p.filter.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn pid_in_use(&self, pid: u16) -> bool {
        self.out.iter().any(|m| m.pkid == pid)
            || self.pending_subs.iter().any(|p| p.pkid == pid)
            || self.pending_unsubs.iter().any(|p| p.pkid == pid)
    }

    fn alloc_pid(&mut self) -> Result<u16, MqttError> {
        for _ in 0..u16::MAX {
            let pid = self.next_pid;
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if pid != 0 && !self.pid_in_use(pid) {
                return Ok(pid);
            }
        }
        Err(MqttError::TooManyInFlight)
    }

    fn check_connected(&self) -> Result<(), MqttError> {
        match self.state {
            State::Connected => Ok(()),
            State::Closed => Err(MqttError::Closed),
            _ => Err(MqttError::NotConnected),
        }
    }

    fn subscription_count(&self) -> usize {
        self.subs.iter().map(|s| s.owners.len()).sum::<usize>()
            + self
                .pending_subs
                .iter()
                .map(|s| s.owners.len())
                .sum::<usize>()
    }

    /// `owner` subscribes to `filter`. Owners share subscriptions: if the
    /// session already holds `filter` at `qos` or above, no SUBSCRIBE is sent,
    /// `SubAcked` is queued at once and `Ok(None)` returned; if one is in
    /// flight, the owner joins it. Otherwise SUBSCRIBE goes out and its packet
    /// id is returned.
    pub fn subscribe(
        &mut self,
        owner: u64,
        filter: &str,
        qos: QoS,
    ) -> Result<Option<PacketId>, MqttError> {
        self.check_connected()?;
        validate_filter(filter, self.opts.limits.max_topic_len)?;
        if let Some(s) = self
            .subs
            .iter()
            .find(|s| s.filter == filter && s.requested >= qos && s.owners.contains(&owner))
        {
            self.events.push_back(MqttEvent::SubAcked {
                owner,
                filter: filter.to_owned(),
                granted: s.granted,
            });
            return Ok(None);
        }
        if self.subscription_count() >= self.opts.limits.max_subscriptions {
            return Err(MqttError::TooManySubscriptions);
        }
        if let Some(s) = self
            .subs
            .iter_mut()
            .find(|s| s.filter == filter && s.requested >= qos)
        {
            s.owners.push(owner);
            let granted = s.granted;
            self.events.push_back(MqttEvent::SubAcked {
                owner,
                filter: filter.to_owned(),
                granted,
            });
            return Ok(None);
        }
        if let Some(p) = self
            .pending_subs
            .iter_mut()
            .find(|p| p.filter == filter && p.qos >= qos)
        {
            if !p.owners.contains(&owner) {
                p.owners.push(owner);
            }
            return Ok(Some(p.pkid));
        }
        if self.pending_subs.len() + self.pending_unsubs.len() >= self.opts.limits.max_subscriptions
        {
            return Err(MqttError::TooManySubscriptions);
        }
        let pkid = self.alloc_pid()?;
        let pkt = Packet::Subscribe(mqttrs::Subscribe {
            pid: to_pid(pkid)?,
            topics: vec![mqttrs::SubscribeTopic {
                topic_path: filter.to_owned(),
                qos: qos.to_mqttrs(),
            }],
        });
        let bytes = codec::encode(&pkt, 2 + 2 + filter.len() + 1, self.opts.limits.max_packet)?;
        self.tx.extend_from_slice(&bytes);
        self.pending_subs.push(PendingSub {
            pkid,
            filter: filter.to_owned(),
            qos,
            owners: vec![owner],
        });
        Ok(Some(pkid))
    }

    /// `owner` drops its subscription to `filter`. UNSUBSCRIBE goes out (and
    /// its packet id is returned) only when no other owner still uses the
    /// filter; otherwise `Unsubscribed` is queued at once and `Ok(None)`
    /// returned. Unsubscribing from a filter the owner does not hold also
    /// just queues `Unsubscribed`.
    pub fn unsubscribe(&mut self, owner: u64, filter: &str) -> Result<Option<PacketId>, MqttError> {
        self.check_connected()?;
        let done = MqttEvent::Unsubscribed {
            owner,
            filter: filter.to_owned(),
        };
        for p in &mut self.pending_subs {
            if p.filter == filter {
                p.owners.retain(|&o| o != owner);
            }
        }
        let Some(i) = self
            .subs
            .iter()
            .position(|s| s.filter == filter && s.owners.contains(&owner))
        else {
            self.events.push_back(done);
            return Ok(None);
        };
        let sub = &mut self.subs[i]; // ok: i from position() above
        sub.owners.retain(|&o| o != owner);
        if !sub.owners.is_empty() {
            self.events.push_back(done);
            return Ok(None);
        }
        self.subs.remove(i);
        self.send_unsubscribe(owner, filter.to_owned(), true)
    }

    fn send_unsubscribe(
        &mut self,
        owner: u64,
        filter: String,
        report: bool,
    ) -> Result<Option<PacketId>, MqttError> {
        if self.pending_unsubs.len() >= self.opts.limits.max_subscriptions {
            return Err(MqttError::TooManySubscriptions);
        }
        let pkid = self.alloc_pid()?;
        let pkt = Packet::Unsubscribe(mqttrs::Unsubscribe {
            pid: to_pid(pkid)?,
            topics: vec![filter.clone()],
        });
        let bytes = codec::encode(&pkt, 2 + 2 + filter.len(), self.opts.limits.max_packet)?;
        self.tx.extend_from_slice(&bytes);
        if report {
            self.pending_unsubs.push(PendingUnsub {
                pkid,
                filter,
                owner,
            });
        }
        Ok(Some(pkid))
    }

    /// Drops every subscription `owner` holds (its stream is going away),
    /// sending UNSUBSCRIBE for filters nobody else uses.
    pub fn remove_owner(&mut self, owner: u64) -> Result<(), MqttError> {
        let filters: Vec<String> = self
            .subs
            .iter()
            .filter(|s| s.owners.contains(&owner))
            .map(|s| s.filter.clone())
            .chain(
                self.pending_subs
                    .iter()
                    .filter(|s| s.owners.contains(&owner))
                    .map(|s| s.filter.clone()),
            )
            .collect();
        for f in filters {
            self.unsubscribe(owner, &f)?;
        }
        Ok(())
    }

    /// The subscriptions the broker granted, with their owners (to
    /// re-subscribe on a new connection when the broker kept no session).
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subs
    }

    /// `owner` publishes `payload` to `topic`. QoS 0 returns `Ok(None)`: there
    /// is nothing to wait for (the reference reports `QOS_ACK_REMOTE` at
    /// once). QoS 1/2 returns the packet id; `Acked` follows on PUBACK /
    /// PUBCOMP, and until then the message is kept for resumption.
    pub fn publish(
        &mut self,
        owner: u64,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<Option<PacketId>, MqttError> {
        self.check_connected()?;
        validate_topic(topic, self.opts.limits.max_topic_len)?;
        if qos == QoS::AtMostOnce {
            self.push_publish(false, QosPid::AtMostOnce, retain, topic, payload)?;
            return Ok(None);
        }
        if self.out.len() >= self.opts.limits.max_in_flight {
            return Err(MqttError::TooManyInFlight);
        }
        let pkid = self.alloc_pid()?;
        let m = InFlightPublish {
            owner,
            pkid,
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            qos,
            retain,
            released: false,
        };
        self.send_in_flight(&m, false)?;
        self.out.push(m);
        Ok(Some(pkid))
    }

    /// Outgoing QoS 1/2 messages not yet fully acknowledged, in send order.
    pub fn in_flight(&self) -> &[InFlightPublish] {
        &self.out
    }

    /// Takes the state a non-clean session carries to the next connection,
    /// leaving this session with none.
    pub fn take_in_flight(&mut self) -> InFlight {
        InFlight {
            publishes: std::mem::take(&mut self.out),
            incoming_qos2: std::mem::take(&mut self.in_qos2),
        }
    }

    /// Carries a previous connection's [`InFlight`] state into this session,
    /// before [`start`](Session::start). Without a clean session the
    /// publishes are retransmitted (DUP set, PUBREL for released QoS 2 ones)
    /// once CONNACK accepts the connection. With a clean session the broker
    /// has forgotten them: each is reported `Nacked` now. Publishes beyond
    /// [`Limits::max_in_flight`](super::Limits::max_in_flight) are nacked too.
    pub fn restore(&mut self, previous: InFlight) {
        let max = self.opts.limits.max_in_flight;
        for m in previous.publishes {
            if self.opts.clean_session || self.out.len() >= max || self.pid_in_use(m.pkid) {
                self.events.push_back(MqttEvent::Nacked {
                    owner: m.owner,
                    pkid: m.pkid,
                    reason: NackReason::CleanSession,
                });
            } else {
                self.next_pid = m.pkid.checked_add(1).unwrap_or(1);
                self.out.push(m);
            }
        }
        if !self.opts.clean_session {
            for p in previous.incoming_qos2 {
                if self.in_qos2.len() < max && !self.in_qos2.contains(&p) {
                    self.in_qos2.push(p);
                }
            }
        }
    }

    /// Gives up on every unacknowledged publish (no further connection will
    /// carry them): each is reported `Nacked` with `reason`.
    pub fn abandon_in_flight(&mut self, reason: NackReason) {
        for m in std::mem::take(&mut self.out) {
            self.events.push_back(MqttEvent::Nacked {
                owner: m.owner,
                pkid: m.pkid,
                reason,
            });
        }
    }

    /// Queues DISCONNECT (the broker then discards the will) and closes the
    /// session. In-flight state stays for [`take_in_flight`](Session::take_in_flight).
    pub fn disconnect(&mut self) {
        if matches!(self.state, State::Connecting | State::Connected) {
            let _ = self.push_small(Packet::Disconnect);
        }
        self.close();
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.connect_deadline = None;
        self.next_ping = None;
        self.ping_deadline = None;
        self.rx = Vec::new();
    }

    /// Bytes for the wire, all queued so far, in order; `None` if none.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.tx.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.tx))
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<MqttEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Session::handle_timeout) must next be called:
    /// the CONNACK deadline while connecting; then the PINGRESP deadline while
    /// a PINGREQ is outstanding, else when the next PINGREQ is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connecting => self.connect_deadline,
            State::Connected => self.ping_deadline.or(self.next_ping),
            _ => None,
        }
    }

    /// Time passed. Sends PINGREQ every keep-alive period; a missing CONNACK
    /// or PINGRESP is an `Err` (the connection is lost, the session closed).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), MqttError> {
        match self.state {
            State::Connecting if self.connect_deadline.is_some_and(|d| now >= d) => {
                self.close();
                return Err(MqttError::ConnectTimeout);
            }
            State::Connected => {
                if let Some(d) = self.ping_deadline {
                    if now >= d {
                        self.close();
                        return Err(MqttError::KeepAliveTimeout);
                    }
                } else if self.next_ping.is_some_and(|d| now >= d) {
                    self.push_small(Packet::Pingreq)?;
                    self.ping_deadline = Some(now + self.opts.response_timeout);
                    self.next_ping = Some(now + self.keep_alive());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn to_pid(pkid: PacketId) -> Result<Pid, MqttError> {
    Pid::try_from(pkid).map_err(|_| MqttError::Protocol("packet id 0"))
}
