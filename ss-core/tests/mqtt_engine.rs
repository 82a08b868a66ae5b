//! MQTT streams through the engine against a scripted broker: the test sees
//! every packet the engine sends (decoded with `mqttrs`) and answers with
//! packets it encodes with `mqttrs`, all in memory with a virtual clock.

use mqttrs::{Packet, Pid, QosPid, SubscribeReturnCodes};
use ss_core::engine::SystemBlob;
use ss_core::proto::mqtt::codec;
use ss_core::{Action, ConnId, Engine, EngineConfig, Event, Flags, Policy, StreamId, StreamState};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use StreamState::*;

const POLICY: &str = r#"{
  "retry": [{"r": {"backoff": [100, 200], "conceal": 20, "jitterpc": 0}}],
  "s": [
    {"sensor": {"endpoint": "127.0.0.1", "port": 1883, "protocol": "mqtt", "retry": "r",
                "metadata": [{"id": ""}],
                "mqtt_topic": "sensor/${id}", "mqtt_subscribe": "cmd/+/${id}",
                "mqtt_qos": 1, "mqtt_keep_alive": 30,
                "mqtt_will_topic": "gone/${id}", "mqtt_will_message": "bye ${id}"}},
    {"ctl": {"endpoint": "127.0.0.1", "port": 1883, "protocol": "mqtt", "retry": "r",
             "nailed_up": true,
             "mqtt_topic": "cmd/ctl/s1", "mqtt_subscribe": "sensor/#", "mqtt_qos": 0}},
    {"twin": {"endpoint": "127.0.0.1", "port": 1883, "protocol": "mqtt", "retry": "r",
              "nailed_up": true,
              "mqtt_topic": "twin/out", "mqtt_subscribe": "sensor/#", "mqtt_qos": 0}},
    {"pub": {"endpoint": "127.0.0.1", "port": 1883, "protocol": "mqtt", "retry": "r",
             "nailed_up": true, "mqtt_topic": "pub/x", "mqtt_qos": 1}},
    {"durable": {"endpoint": "127.0.0.1", "port": 1883, "protocol": "mqtt", "retry": "r",
                 "nailed_up": true, "mqtt_topic": "d/x", "mqtt_qos": 1,
                 "mqtt_clean_start": false}},
    {"pinger": {"endpoint": "127.0.0.1", "port": 1883, "protocol": "mqtt", "retry": "r",
                "nailed_up": true, "mqtt_topic": "p/x", "mqtt_keep_alive": 2}}
  ]
}"#;

/// What the engine sent, decoded to owned values.
#[derive(Clone, Debug, PartialEq)]
enum Pkt {
    Connect {
        client_id: String,
        clean: bool,
        keep_alive: u16,
        will: Option<(String, Vec<u8>)>,
    },
    Subscribe {
        pid: u16,
        topics: Vec<String>,
    },
    Unsubscribe {
        pid: u16,
        topics: Vec<String>,
    },
    Publish {
        dup: bool,
        qos: u8,
        pid: Option<u16>,
        topic: String,
        payload: Vec<u8>,
    },
    Puback(u16),
    Pingreq,
    Disconnect,
    Other(String),
}

fn owned(p: &Packet<'_>) -> Pkt {
    match p {
        Packet::Connect(c) => Pkt::Connect {
            client_id: c.client_id.to_string(),
            clean: c.clean_session,
            keep_alive: c.keep_alive,
            will: c
                .last_will
                .as_ref()
                .map(|w| (w.topic.to_string(), w.message.to_vec())),
        },
        Packet::Subscribe(s) => Pkt::Subscribe {
            pid: s.pid.get(),
            topics: s.topics.iter().map(|t| t.topic_path.to_string()).collect(),
        },
        Packet::Unsubscribe(u) => Pkt::Unsubscribe {
            pid: u.pid.get(),
            topics: u.topics.iter().map(|t| t.to_string()).collect(),
        },
        Packet::Publish(p) => {
            let (qos, pid) = match p.qospid {
                QosPid::AtMostOnce => (0, None),
                QosPid::AtLeastOnce(pid) => (1, Some(pid.get())),
                QosPid::ExactlyOnce(pid) => (2, Some(pid.get())),
            };
            Pkt::Publish {
                dup: p.dup,
                qos,
                pid,
                topic: p.topic_name.to_string(),
                payload: p.payload.to_vec(),
            }
        }
        Packet::Puback(pid) => Pkt::Puback(pid.get()),
        Packet::Pingreq => Pkt::Pingreq,
        Packet::Disconnect => Pkt::Disconnect,
        other => Pkt::Other(format!("{other:?}")),
    }
}

fn enc(p: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 20];
    let n = mqttrs::encode_slice(p, &mut buf).expect("encode");
    buf.truncate(n);
    buf
}

fn pid(n: u16) -> Pid {
    Pid::try_from(n).expect("pid")
}

fn connack(code: mqttrs::ConnectReturnCode, present: bool) -> Vec<u8> {
    enc(&Packet::Connack(mqttrs::Connack {
        session_present: present,
        code,
    }))
}

fn accepted() -> Vec<u8> {
    connack(mqttrs::ConnectReturnCode::Accepted, false)
}

fn suback(p: u16, n: usize) -> Vec<u8> {
    enc(&Packet::Suback(mqttrs::Suback {
        pid: pid(p),
        return_codes: vec![SubscribeReturnCodes::Success(mqttrs::QoS::AtLeastOnce); n],
    }))
}

fn publish(topic: &str, payload: &[u8], qospid: QosPid) -> Vec<u8> {
    enc(&Packet::Publish(mqttrs::Publish {
        dup: false,
        qospid,
        retain: false,
        topic_name: topic,
        payload,
    }))
}

/// The engine and a scripted broker: connects succeed at once, bytes each
/// connection sends are kept per connection for the test to decode.
struct Broker {
    e: Engine,
    now: Instant,
    connects: Vec<ConnId>,
    sent: BTreeMap<ConnId, Vec<u8>>,
    closed: Vec<ConnId>,
    events: Vec<Event>,
}

impl Broker {
    fn new() -> Self {
        Broker {
            e: Engine::new(Policy::parse(POLICY).unwrap(), EngineConfig::default()),
            now: Instant::now(),
            connects: vec![],
            sent: BTreeMap::new(),
            closed: vec![],
            events: vec![],
        }
    }

    fn pump(&mut self) {
        loop {
            let mut any = false;
            while let Some(a) = self.e.poll_action() {
                any = true;
                match a {
                    Action::Connect { conn, .. } => {
                        self.connects.push(conn);
                        self.e.handle_connected(self.now, conn);
                    }
                    Action::Transmit { conn, data } => {
                        self.sent.entry(conn).or_default().extend_from_slice(&data);
                        self.e.handle_sent(self.now, conn, data.len());
                    }
                    Action::Close { conn } => self.closed.push(conn),
                    Action::Resolve { .. } => panic!("the policy names an address"),
                    _ => {}
                }
            }
            while let Some(ev) = self.e.poll_event() {
                any = true;
                self.events.push(ev);
            }
            if !any {
                break;
            }
        }
    }

    fn create(&mut self, st: &str) -> StreamId {
        let s = self.e.create(self.now, st).unwrap();
        self.pump();
        s
    }

    fn conn(&self) -> ConnId {
        *self.connects.last().expect("a connection")
    }

    /// Packets the current connection sent since the last call.
    fn take(&mut self) -> Vec<Pkt> {
        let c = self.conn();
        let bytes = self.sent.remove(&c).unwrap_or_default();
        let mut out = vec![];
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let f = codec::frame(rest, usize::MAX)
                .expect("frame")
                .expect("whole packet");
            let (one, tail) = rest.split_at(f.total());
            out.push(owned(
                &mqttrs::decode_slice(one).expect("decode").expect("whole"),
            ));
            rest = tail;
        }
        out
    }

    fn feed(&mut self, bytes: &[u8]) {
        let c = self.conn();
        self.e.handle_data(self.now, c, bytes);
        self.pump();
    }

    /// Run the clock to the engine's next deadline (at most `max` ahead).
    fn run_timers_for(&mut self, max: Duration) {
        let end = self.now + max;
        while let Some(at) = self.e.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.e.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
    }

    fn write(&mut self, s: StreamId, data: &[u8]) {
        self.e
            .write(self.now, s, data, Flags::SOM | Flags::EOM)
            .unwrap();
        self.pump();
    }

    fn states(&self, id: StreamId) -> Vec<StreamState> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::State { stream, state, .. } if *stream == id => Some(*state),
                _ => None,
            })
            .collect()
    }

    fn rx(&self, id: StreamId) -> Vec<(Vec<u8>, Flags)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Rx {
                    stream,
                    data,
                    flags,
                } if *stream == id => Some((data.clone(), *flags)),
                _ => None,
            })
            .collect()
    }

    /// Every stream's reported states form a legal sequence.
    fn assert_legal(&self) {
        let mut last: BTreeMap<StreamId, StreamState> = BTreeMap::new();
        for e in &self.events {
            if let Event::State { stream, state, .. } = e {
                let prev = last.get(stream).copied();
                assert!(
                    state.is_legal_after(prev),
                    "{stream:?}: {state:?} after {prev:?} in {:?}",
                    self.states(*stream)
                );
                last.insert(*stream, *state);
            }
        }
    }
}

fn sub_pid(p: &[Pkt], topic: &str) -> u16 {
    p.iter()
        .find_map(|p| match p {
            Pkt::Subscribe { pid, topics } if topics.iter().any(|t| t == topic) => Some(*pid),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no SUBSCRIBE to {topic} in {p:?}"))
}

/// `sensor` (id "s1") and `ctl` on one connection, both CONNECTED.
fn two_streams(b: &mut Broker) -> (StreamId, StreamId) {
    // Not nailed up: metadata is set before it connects (the will uses it).
    let s = b.create("sensor");
    b.e.set_metadata(s, "id", b"s1").unwrap();
    b.e.client_connect(b.now, s).unwrap();
    b.pump();
    let c = b.create("ctl");
    assert_eq!(b.connects.len(), 1, "one connection for both streams");
    let p = b.take();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        matches!(&p[0], Pkt::Connect { keep_alive: 30, clean: true, will: Some((t, m)), .. }
            if t == "gone/s1" && m == b"bye s1"),
        "{p:?}"
    );
    b.feed(&accepted());
    let p = b.take();
    let subs: Vec<_> = p
        .iter()
        .filter(|p| matches!(p, Pkt::Subscribe { .. }))
        .collect();
    assert_eq!(subs.len(), 2, "{p:?}");
    let ps = sub_pid(&p, "cmd/+/s1");
    let pc = sub_pid(&p, "sensor/#");
    // Neither is CONNECTED before its SUBACK.
    assert!(!b.states(s).contains(&Connected));
    assert!(!b.states(c).contains(&Connected));
    b.feed(&suback(pc, 1));
    assert!(b.states(c).contains(&Connected));
    assert!(!b.states(s).contains(&Connected));
    b.feed(&suback(ps, 1));
    assert!(b.states(s).contains(&Connected));
    assert_eq!(b.states(s), [Creating, Connecting, Connected]);
    assert_eq!(b.states(c), [Creating, Connecting, Connected]);
    b.assert_legal();
    (s, c)
}

#[test]
fn two_streamtypes_share_one_connection_and_connect_at_their_subacks() {
    let mut b = Broker::new();
    two_streams(&mut b);
    assert_eq!(b.e.conn_count(), 1);
}

#[test]
fn a_filter_two_streams_share_is_subscribed_once() {
    let mut b = Broker::new();
    let c = b.create("ctl");
    let t = b.create("twin");
    assert_eq!(b.connects.len(), 1);
    b.take();
    b.feed(&accepted());
    let p = b.take();
    let n = p
        .iter()
        .filter(|p| matches!(p, Pkt::Subscribe { .. }))
        .count();
    assert_eq!(n, 1, "{p:?}");
    b.feed(&suback(sub_pid(&p, "sensor/#"), 1));
    assert_eq!(b.states(c), [Creating, Connecting, Connected]);
    assert_eq!(b.states(t), [Creating, Connecting, Connected]);
    // Both hear a message to the shared filter.
    b.feed(&publish("sensor/a", b"hi", QosPid::AtMostOnce));
    assert_eq!(b.rx(c), [(b"hi".to_vec(), Flags::SOM | Flags::EOM)]);
    assert_eq!(b.rx(t), [(b"hi".to_vec(), Flags::SOM | Flags::EOM)]);
    b.assert_legal();
}

#[test]
fn a_stream_without_a_subscription_is_connected_at_connack() {
    let mut b = Broker::new();
    let s = b.create("pub");
    assert_eq!(b.states(s), [Creating, Connecting]);
    b.take();
    b.feed(&accepted());
    assert_eq!(b.states(s), [Creating, Connecting, Connected]);
    assert!(b.take().is_empty(), "no SUBSCRIBE");
}

#[test]
fn qos0_is_acked_at_once_and_qos1_at_puback() {
    let mut b = Broker::new();
    let (s, c) = two_streams(&mut b);
    // ctl publishes at QoS 0.
    b.write(c, b"zero");
    assert_eq!(
        b.take(),
        [Pkt::Publish {
            dup: false,
            qos: 0,
            pid: None,
            topic: "cmd/ctl/s1".into(),
            payload: b"zero".to_vec()
        }]
    );
    assert_eq!(b.states(c).last(), Some(&QosAckRemote));
    // sensor publishes at QoS 1: no ack until PUBACK.
    b.write(s, b"one");
    let p = b.take();
    let Pkt::Publish {
        qos: 1,
        pid: Some(id),
        ref topic,
        ref payload,
        dup: false,
    } = p[0]
    else {
        panic!("{p:?}")
    };
    assert_eq!((topic.as_str(), &payload[..]), ("sensor/s1", &b"one"[..]));
    assert_eq!(b.states(s).last(), Some(&Connected));
    b.feed(&enc(&Packet::Puback(pid(id))));
    assert_eq!(b.states(s).last(), Some(&QosAckRemote));
    b.assert_legal();
}

#[test]
fn a_message_written_in_pieces_is_one_publish() {
    let mut b = Broker::new();
    let (_, c) = two_streams(&mut b);
    b.e.write(b.now, c, b"ab", Flags::SOM).unwrap();
    b.e.write(b.now, c, b"cd", Flags::NONE).unwrap();
    b.pump();
    assert!(b.take().is_empty(), "nothing before EOM");
    b.e.write(b.now, c, b"ef", Flags::EOM).unwrap();
    b.pump();
    let p = b.take();
    assert!(
        matches!(&p[..], [Pkt::Publish { payload, .. }] if payload == b"abcdef"),
        "{p:?}"
    );
}

#[test]
fn incoming_publish_goes_only_to_matching_streams() {
    let mut b = Broker::new();
    let (s, c) = two_streams(&mut b);
    // `cmd/+/s1` matches sensor only.
    b.feed(&publish("cmd/x/s1", b"for sensor", QosPid::AtMostOnce));
    // `sensor/#` matches ctl only (also the bare parent).
    b.feed(&publish(
        "sensor/s1/temp",
        b"for ctl",
        QosPid::AtLeastOnce(pid(7)),
    ));
    b.feed(&publish("sensor", b"parent", QosPid::AtMostOnce));
    // Matches nobody.
    b.feed(&publish("cmd/x/s2", b"nobody", QosPid::AtMostOnce));
    b.feed(&publish("cmd/x/y/s1", b"nobody", QosPid::AtMostOnce));
    assert_eq!(b.rx(s), [(b"for sensor".to_vec(), Flags::SOM | Flags::EOM)]);
    assert_eq!(
        b.rx(c),
        [
            (b"for ctl".to_vec(), Flags::SOM | Flags::EOM),
            (b"parent".to_vec(), Flags::SOM | Flags::EOM)
        ]
    );
    // The QoS 1 one was acknowledged.
    assert!(b.take().contains(&Pkt::Puback(7)));
}

#[test]
fn a_large_incoming_publish_arrives_in_pieces() {
    let mut b = Broker::new();
    let (s, _) = two_streams(&mut b);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let bytes = publish("cmd/a/s1", &big, QosPid::AtMostOnce);
    // Fed in awkward slices, as a socket might.
    for chunk in bytes.chunks(4093) {
        b.feed(chunk);
    }
    let rx = b.rx(s);
    assert!(rx.len() >= 2, "{} pieces", rx.len());
    assert!(rx[0].1.contains(Flags::SOM));
    assert!(rx.last().unwrap().1.contains(Flags::EOM));
    for (i, (d, f)) in rx.iter().enumerate() {
        assert!(d.len() <= 16 * 1024);
        assert_eq!(f.contains(Flags::SOM), i == 0);
        assert_eq!(f.contains(Flags::EOM), i + 1 == rx.len());
    }
    let all: Vec<u8> = rx.into_iter().flat_map(|(d, _)| d).collect();
    assert_eq!(all, big);
}

#[test]
fn a_dropped_connection_disconnects_both_and_one_new_connection_carries_them() {
    let mut b = Broker::new();
    let (s, c) = two_streams(&mut b);
    let first = b.conn();
    b.e.handle_closed(b.now, first);
    b.pump();
    assert_eq!(b.states(s).last(), Some(&Disconnected));
    assert_eq!(b.states(c).last(), Some(&Disconnected));
    assert_eq!(b.e.conn_count(), 0);
    // Nailed up: they retry after the backoff, on one new connection.
    b.run_timers_for(Duration::from_secs(1));
    assert_eq!(b.connects.len(), 2, "one new connection");
    assert_ne!(b.conn(), first);
    let p = b.take();
    assert!(matches!(&p[..], [Pkt::Connect { .. }]), "{p:?}");
    b.feed(&accepted());
    let p = b.take();
    b.feed(&suback(sub_pid(&p, "sensor/#"), 1));
    b.feed(&suback(sub_pid(&p, "cmd/+/s1"), 1));
    assert_eq!(
        b.states(s),
        [
            Creating,
            Connecting,
            Connected,
            Disconnected,
            Poll,
            Connecting,
            Connected
        ]
    );
    assert_eq!(
        b.states(c),
        [
            Creating,
            Connecting,
            Connected,
            Disconnected,
            Poll,
            Connecting,
            Connected
        ]
    );
    b.assert_legal();
}

#[test]
fn unacked_qos1_is_resent_with_dup_on_the_next_connection() {
    let mut b = Broker::new();
    b.e.set_system_blob(SystemBlob::MqttClientId, b"dev-1")
        .unwrap();
    let d = b.create("durable");
    let p = b.take();
    assert!(
        matches!(&p[..], [Pkt::Connect { client_id, clean: false, .. }] if client_id == "dev-1"),
        "{p:?}"
    );
    b.feed(&accepted());
    b.write(d, b"keep me");
    let p = b.take();
    let Pkt::Publish { pid: Some(id), .. } = p[0] else {
        panic!("{p:?}")
    };
    b.e.handle_closed(b.now, b.conn());
    b.pump();
    assert_eq!(b.states(d).last(), Some(&Disconnected));
    b.run_timers_for(Duration::from_secs(1));
    assert_eq!(b.connects.len(), 2);
    let p = b.take();
    assert!(
        matches!(&p[..], [Pkt::Connect { clean: false, .. }]),
        "{p:?}"
    );
    b.feed(&connack(mqttrs::ConnectReturnCode::Accepted, true));
    let p = b.take();
    assert_eq!(
        p,
        [Pkt::Publish {
            dup: true,
            qos: 1,
            pid: Some(id),
            topic: "d/x".into(),
            payload: b"keep me".to_vec()
        }]
    );
    b.feed(&enc(&Packet::Puback(pid(id))));
    assert_eq!(
        b.states(d),
        [
            Creating,
            Connecting,
            Connected,
            Disconnected,
            Poll,
            Connecting,
            Connected,
            QosAckRemote
        ]
    );
    b.assert_legal();
}

#[test]
fn unacked_qos1_is_nacked_when_the_session_is_clean() {
    let mut b = Broker::new();
    // No client id blob: a random id, so a clean session.
    let p_ = b.create("pub");
    b.take();
    b.feed(&accepted());
    b.write(p_, b"lost");
    assert!(matches!(&b.take()[..], [Pkt::Publish { qos: 1, .. }]));
    b.e.handle_closed(b.now, b.conn());
    b.pump();
    b.run_timers_for(Duration::from_secs(1));
    assert_eq!(b.connects.len(), 2);
    let p = b.take();
    assert!(
        matches!(&p[..], [Pkt::Connect { clean: true, .. }]),
        "{p:?}"
    );
    b.feed(&accepted());
    assert!(b.take().is_empty(), "nothing resent");
    let st = b.states(p_);
    assert_eq!(
        st,
        [
            Creating,
            Connecting,
            Connected,
            Disconnected,
            Poll,
            Connecting,
            Connected,
            QosNackRemote
        ]
    );
    b.assert_legal();
}

#[test]
fn keep_alive_pings_on_engine_timers_and_a_missing_pingresp_drops_the_connection() {
    let mut b = Broker::new();
    let s = b.create("pinger");
    let p = b.take();
    assert!(
        matches!(&p[..], [Pkt::Connect { keep_alive: 2, .. }]),
        "{p:?}"
    );
    b.feed(&accepted());
    // Nothing before the keep-alive period.
    b.run_timers_for(Duration::from_millis(1500));
    assert!(b.take().is_empty());
    b.run_timers_for(Duration::from_millis(600));
    assert_eq!(b.take(), [Pkt::Pingreq]);
    b.feed(&enc(&Packet::Pingresp));
    // Answered: the next one follows a period later, still connected.
    b.run_timers_for(Duration::from_millis(2100));
    assert_eq!(b.take(), [Pkt::Pingreq]);
    assert_eq!(b.states(s).last(), Some(&Connected));
    // Unanswered this time: the connection is lost.
    let c = b.conn();
    b.run_timers_for(Duration::from_secs(11));
    assert!(b.closed.contains(&c), "closed {:?}", b.closed);
    let st = b.states(s);
    assert_eq!(&st[..4], [Creating, Connecting, Connected, Disconnected]);
    b.assert_legal();
}

#[test]
fn a_refused_connack_for_bad_credentials_is_auth_failed() {
    let mut b = Broker::new();
    b.e.set_system_blob(SystemBlob::MqttUsername, b"who")
        .unwrap();
    b.e.set_system_blob(SystemBlob::MqttPassword, b"wrong")
        .unwrap();
    let s = b.create("pub");
    b.take();
    let c = b.conn();
    b.feed(&connack(
        mqttrs::ConnectReturnCode::BadUsernamePassword,
        false,
    ));
    assert_eq!(b.states(s), [Creating, Connecting, AuthFailed]);
    assert!(b.closed.contains(&c));
    assert!(b.events.iter().any(
        |e| matches!(e, Event::ConnectionError { stream, reason } if *stream == s && reason.contains("refused"))
    ));
    b.assert_legal();
}

#[test]
fn destroying_one_stream_unsubscribes_it_and_the_last_closes_the_connection() {
    let mut b = Broker::new();
    let (s, c) = two_streams(&mut b);
    let conn = b.conn();
    b.e.destroy(b.now, s).unwrap();
    b.pump();
    let p = b.take();
    assert!(
        matches!(&p[..], [Pkt::Unsubscribe { topics, .. }] if topics == &["cmd/+/s1"]),
        "{p:?}"
    );
    assert!(b.closed.is_empty());
    assert_eq!(b.e.conn_count(), 1);
    // The other stream still works.
    b.write(c, b"still here");
    assert!(matches!(&b.take()[..], [Pkt::Publish { .. }]));
    b.e.destroy(b.now, c).unwrap();
    b.pump();
    let p = b.take();
    assert_eq!(p.last(), Some(&Pkt::Disconnect), "{p:?}");
    assert_eq!(b.closed, [conn]);
    assert_eq!(b.e.conn_count(), 0);
    assert_eq!(b.states(s).last(), Some(&Destroying));
    assert_eq!(b.states(c).last(), Some(&Destroying));
    assert_eq!(b.connects.len(), 1, "no reconnect after destroy");
    b.run_timers_for(Duration::from_secs(2));
    assert_eq!(b.connects.len(), 1, "no reconnect after destroy");
    b.assert_legal();
}

#[test]
fn unacked_qos1_survives_a_reconnect_attempt_that_fails_before_connack() {
    let mut b = Broker::new();
    b.e.set_system_blob(SystemBlob::MqttClientId, b"dev-2")
        .unwrap();
    let d = b.create("durable");
    b.take();
    b.feed(&accepted());
    b.write(d, b"precious");
    let p = b.take();
    let Pkt::Publish { pid: Some(id), .. } = p[0] else {
        panic!("{p:?}")
    };
    b.e.handle_closed(b.now, b.conn());
    b.pump();
    // The next attempt is refused by the broker (server unavailable)...
    b.run_timers_for(Duration::from_secs(1));
    assert_eq!(b.connects.len(), 2);
    b.take();
    b.feed(&connack(
        mqttrs::ConnectReturnCode::ServerUnavailable,
        false,
    ));
    assert_eq!(b.states(d).last(), Some(&Unreachable));
    // ...and the one after that fails to connect at all...
    b.now += Duration::from_secs(1);
    b.e.handle_timeout(b.now);
    while let Some(a) = b.e.poll_action() {
        if let Action::Connect { conn, .. } = a {
            b.e.handle_connect_failed(b.now, conn, "refused");
        }
    }
    b.pump();
    assert_eq!(b.states(d).last(), Some(&Unreachable));
    // ...the message is still retransmitted on the next connection.
    b.run_timers_for(Duration::from_secs(2));
    assert_eq!(b.connects.len(), 3);
    b.take();
    b.feed(&accepted());
    let p = b.take();
    assert!(
        matches!(&p[..], [Pkt::Publish { dup: true, pid: Some(x), payload, .. }]
            if *x == id && payload == b"precious"),
        "{p:?}"
    );
    b.feed(&enc(&Packet::Puback(pid(id))));
    assert_eq!(b.states(d).last(), Some(&QosAckRemote));
    b.assert_legal();
}

#[test]
fn a_carried_message_acked_on_another_streams_connection_is_reported_legally() {
    let mut b = Broker::new();
    b.e.set_system_blob(SystemBlob::MqttClientId, b"dev-3")
        .unwrap();
    let a = b.create("durable");
    b.take();
    b.feed(&accepted());
    b.write(a, b"carried");
    b.take();
    b.e.handle_closed(b.now, b.conn());
    b.pump();
    assert_eq!(b.states(a).last(), Some(&Disconnected));
    // While `a` waits out its backoff, another stream opens a connection to
    // the same broker; the carried message goes out on it and is acked.
    let other = b.create("pub");
    assert_eq!(b.connects.len(), 2);
    b.take();
    b.feed(&accepted());
    let p = b.take();
    let Some(Pkt::Publish { pid: Some(id), .. }) = p.first().cloned() else {
        panic!("{p:?}")
    };
    b.feed(&enc(&Packet::Puback(pid(id))));
    b.run_timers_for(Duration::from_secs(1));
    // Whenever `a` hears its ack, it is in a legal place (after CONNECTED).
    b.assert_legal();
    assert!(b.states(a).contains(&QosAckRemote), "{:?}", b.states(a));
    assert_eq!(b.states(other), [Creating, Connecting, Connected]);
}

/// The client id comes from the opening stream's `client_id` metadata when set.
#[test]
fn client_id_from_metadata() {
    use ss_core::{Action, Engine, EngineConfig, Policy};
    let p = Policy::parse(
        r#"{"s": [{"m": {"endpoint": "127.0.0.1", "port": 1883, "protocol": "mqtt",
            "mqtt_topic": "t", "metadata": [{"client_id": ""}]}}]}"#,
    )
    .unwrap();
    let mut e = Engine::new(p, EngineConfig::default());
    let now = std::time::Instant::now();
    let s = e.create(now, "m").unwrap();
    e.set_metadata(s, "client_id", b"device-42").unwrap();
    e.client_connect(now, s).unwrap();
    let conn = std::iter::from_fn(|| e.poll_action())
        .find_map(|a| match a {
            Action::Connect { conn, .. } => Some(conn),
            _ => None,
        })
        .unwrap();
    e.handle_connected(now, conn);
    let sent: Vec<u8> = std::iter::from_fn(|| e.poll_action())
        .filter_map(|a| match a {
            Action::Transmit { data, .. } => Some(data),
            _ => None,
        })
        .flatten()
        .collect();
    match mqttrs::decode_slice(&sent).unwrap().unwrap() {
        mqttrs::Packet::Connect(c) => assert_eq!(c.client_id, "device-42"),
        other => panic!("{other:?}"),
    }
}
