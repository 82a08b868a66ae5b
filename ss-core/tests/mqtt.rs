//! MQTT 3.1.1 client session against an in-memory broker stub: packets are
//! hand-crafted with `mqttrs` and fed to [`Session`]; what it sends is decoded
//! back with `mqttrs`.

use mqttrs::{Packet, Pid, QosPid, SubscribeReturnCodes};
use proptest::prelude::*;
use ss_core::proto::mqtt::{
    codec, topic_matches, ConnectOptions, ConnectRefusal, MqttError, MqttEvent, NackReason, QoS,
    Session, Will,
};
use std::time::{Duration, Instant};

fn enc(p: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 20];
    let n = mqttrs::encode_slice(p, &mut buf).expect("encode");
    buf.truncate(n);
    buf
}

fn pid(n: u16) -> Pid {
    Pid::try_from(n).expect("pid")
}

/// Splits bytes a client sent into packets and decodes each.
fn split(bytes: &[u8]) -> Vec<Packet<'_>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let f = codec::frame(rest, usize::MAX)
            .expect("frame")
            .expect("whole header");
        let (one, tail) = rest.split_at(f.total());
        out.push(mqttrs::decode_slice(one).expect("decode").expect("whole"));
        rest = tail;
    }
    out
}

fn connack(present: bool, code: mqttrs::ConnectReturnCode) -> Vec<u8> {
    enc(&Packet::Connack(mqttrs::Connack {
        session_present: present,
        code,
    }))
}

fn events(s: &mut Session) -> Vec<MqttEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn tx(s: &mut Session) -> Vec<u8> {
    s.poll_transmit().unwrap_or_default()
}

fn connected(opts: ConnectOptions, now: Instant) -> Session {
    let mut s = Session::new(opts, now);
    s.start(now).expect("start");
    let _ = tx(&mut s);
    s.handle_input(now, &connack(false, mqttrs::ConnectReturnCode::Accepted))
        .expect("connack");
    assert_eq!(
        events(&mut s),
        vec![MqttEvent::Connected {
            session_present: false
        }]
    );
    s
}

fn session(now: Instant) -> Session {
    connected(ConnectOptions::new("client-1", 30), now)
}

fn publish_in(topic: &str, payload: &[u8], qospid: QosPid, retain: bool, dup: bool) -> Vec<u8> {
    enc(&Packet::Publish(mqttrs::Publish {
        dup,
        qospid,
        retain,
        topic_name: topic,
        payload,
    }))
}

fn suback(n: u16, code: SubscribeReturnCodes) -> Vec<u8> {
    enc(&Packet::Suback(mqttrs::Suback {
        pid: pid(n),
        return_codes: vec![code],
    }))
}

#[test]
fn connect_carries_every_option() {
    let now = Instant::now();
    let mut o = ConnectOptions::new("dev-42", 60);
    o.clean_session = false;
    o.will = Some(Will {
        topic: "status/dev-42".into(),
        message: b"offline".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: true,
    });
    o.username = Some("user".into());
    o.password = Some(b"secret".to_vec());
    let mut s = Session::new(o, now);
    assert_eq!(s.poll_timeout(), None);
    s.start(now).unwrap();
    let bytes = tx(&mut s);
    let pkts = split(&bytes);
    let Packet::Connect(c) = &pkts[0] else {
        panic!("{pkts:?}")
    };
    assert_eq!(c.protocol, mqttrs::Protocol::MQTT311);
    assert_eq!(c.client_id, "dev-42");
    assert_eq!(c.keep_alive, 60);
    assert!(!c.clean_session);
    let w = c.last_will.as_ref().unwrap();
    assert_eq!(
        (w.topic, w.message, w.qos, w.retain),
        (
            "status/dev-42",
            &b"offline"[..],
            mqttrs::QoS::AtLeastOnce,
            true
        )
    );
    assert_eq!(c.username, Some("user"));
    assert_eq!(c.password, Some(&b"secret"[..]));
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
    s.handle_input(now, &connack(true, mqttrs::ConnectReturnCode::Accepted))
        .unwrap();
    assert_eq!(
        events(&mut s),
        vec![MqttEvent::Connected {
            session_present: true
        }]
    );
    assert!(s.is_connected());
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(60)));
}

#[test]
fn bad_options_refused() {
    let now = Instant::now();
    let mut o = ConnectOptions::new("x".repeat(129), 0);
    assert!(matches!(
        Session::new(o.clone(), now).start(now),
        Err(MqttError::InvalidOptions(_))
    ));
    o.client_id = String::new();
    o.clean_session = false;
    assert!(matches!(
        Session::new(o.clone(), now).start(now),
        Err(MqttError::InvalidOptions(_))
    ));
    o.clean_session = true;
    o.password = Some(b"p".to_vec());
    assert!(matches!(
        Session::new(o.clone(), now).start(now),
        Err(MqttError::InvalidOptions(_))
    ));
    o.password = None;
    o.will = Some(Will {
        topic: "a/+".into(),
        message: vec![],
        qos: QoS::AtMostOnce,
        retain: false,
    });
    assert!(matches!(
        Session::new(o, now).start(now),
        Err(MqttError::InvalidTopic(_))
    ));
}

#[test]
fn connack_refusal_codes() {
    use mqttrs::ConnectReturnCode as C;
    let cases = [
        (
            C::RefusedProtocolVersion,
            ConnectRefusal::ProtocolVersion,
            1,
        ),
        (
            C::RefusedIdentifierRejected,
            ConnectRefusal::IdentifierRejected,
            2,
        ),
        (C::ServerUnavailable, ConnectRefusal::ServerUnavailable, 3),
        (
            C::BadUsernamePassword,
            ConnectRefusal::BadUsernamePassword,
            4,
        ),
        (C::NotAuthorized, ConnectRefusal::NotAuthorized, 5),
    ];
    let now = Instant::now();
    for (wire, refusal, code) in cases {
        let mut s = Session::new(ConnectOptions::new("c", 10), now);
        s.start(now).unwrap();
        s.handle_input(now, &connack(false, wire)).unwrap();
        assert_eq!(events(&mut s), vec![MqttEvent::ConnectRefused(refusal)]);
        assert_eq!(refusal.code(), code);
        assert!(s.is_closed());
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.handle_input(now, &[0xd0, 0]), Err(MqttError::Closed));
        assert_eq!(
            s.publish(1, "t", b"", QoS::AtMostOnce, false),
            Err(MqttError::Closed)
        );
    }
    // Return code 6 does not exist.
    let mut s = Session::new(ConnectOptions::new("c", 10), now);
    s.start(now).unwrap();
    assert!(matches!(
        s.handle_input(now, &[0x20, 2, 0, 6]),
        Err(MqttError::Malformed(_))
    ));
}

#[test]
fn packets_before_connack_are_refused() {
    let now = Instant::now();
    let mut s = Session::new(ConnectOptions::new("c", 10), now);
    assert!(matches!(
        s.handle_input(now, &[0xd0, 0]),
        Err(MqttError::Protocol(_))
    ));
    let mut s = Session::new(ConnectOptions::new("c", 10), now);
    s.start(now).unwrap();
    assert_eq!(
        s.publish(1, "t", b"x", QoS::AtMostOnce, false),
        Err(MqttError::NotConnected)
    );
    assert!(matches!(
        s.handle_input(now, &[0xd0, 0]),
        Err(MqttError::Protocol(_))
    ));
    assert!(s.is_closed());
    // A second CONNACK is a violation too.
    let mut s = session(now);
    assert!(matches!(
        s.handle_input(now, &connack(false, mqttrs::ConnectReturnCode::Accepted)),
        Err(MqttError::Protocol(_))
    ));
}

#[test]
fn connect_timeout() {
    let now = Instant::now();
    let mut o = ConnectOptions::new("c", 10);
    o.response_timeout = Duration::from_secs(3);
    let mut s = Session::new(o, now);
    s.start(now).unwrap();
    let t = s.poll_timeout().unwrap();
    assert_eq!(t, now + Duration::from_secs(3));
    s.handle_timeout(now + Duration::from_secs(1)).unwrap();
    assert_eq!(s.handle_timeout(t), Err(MqttError::ConnectTimeout));
    assert!(s.is_closed());
}

#[test]
fn subscribe_suback_and_sharing() {
    let now = Instant::now();
    let mut s = session(now);
    let p1 = s
        .subscribe(1, "sensors/+/temp", QoS::AtLeastOnce)
        .unwrap()
        .unwrap();
    let pkts = split(&tx(&mut s))
        .into_iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>();
    assert_eq!(pkts.len(), 1);
    assert!(
        pkts[0].contains("sensors/+/temp") && pkts[0].contains("AtLeastOnce"),
        "{pkts:?}"
    );
    // A second owner joins the pending SUBSCRIBE: no new packet.
    assert_eq!(
        s.subscribe(2, "sensors/+/temp", QoS::AtMostOnce).unwrap(),
        Some(p1)
    );
    assert!(s.poll_transmit().is_none());
    s.handle_input(
        now,
        &suback(p1, SubscribeReturnCodes::Success(mqttrs::QoS::AtLeastOnce)),
    )
    .unwrap();
    let ev = events(&mut s);
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| matches!(
        e,
        MqttEvent::SubAcked {
            granted: QoS::AtLeastOnce,
            ..
        }
    )));
    // A third owner shares the granted subscription without any packet.
    assert_eq!(
        s.subscribe(3, "sensors/+/temp", QoS::AtLeastOnce).unwrap(),
        None
    );
    assert!(s.poll_transmit().is_none());
    assert_eq!(
        events(&mut s),
        vec![MqttEvent::SubAcked {
            owner: 3,
            filter: "sensors/+/temp".into(),
            granted: QoS::AtLeastOnce
        }]
    );
    // Another filter, refused by the broker.
    let p2 = s.subscribe(1, "#", QoS::AtMostOnce).unwrap().unwrap();
    let _ = tx(&mut s);
    s.handle_input(now, &suback(p2, SubscribeReturnCodes::Failure))
        .unwrap();
    assert_eq!(
        events(&mut s),
        vec![MqttEvent::SubRefused {
            owner: 1,
            filter: "#".into()
        }]
    );
    // A matching message goes to every owner once.
    s.handle_input(
        now,
        &publish_in(
            "sensors/kitchen/temp",
            b"21",
            QosPid::AtMostOnce,
            false,
            false,
        ),
    )
    .unwrap();
    assert_eq!(
        events(&mut s),
        vec![MqttEvent::Message {
            owners: vec![1, 2, 3],
            topic: "sensors/kitchen/temp".into(),
            payload: b"21".to_vec(),
            qos: QoS::AtMostOnce,
            retain: false
        }]
    );
    // Unsubscribing a shared filter sends nothing until the last owner leaves.
    assert_eq!(s.unsubscribe(1, "sensors/+/temp").unwrap(), None);
    assert_eq!(s.unsubscribe(2, "sensors/+/temp").unwrap(), None);
    assert!(s.poll_transmit().is_none());
    let p3 = s.unsubscribe(3, "sensors/+/temp").unwrap().unwrap();
    let pkts = split(&tx(&mut s))
        .into_iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>();
    assert!(
        pkts[0].starts_with("Unsubscribe") && pkts[0].contains("sensors/+/temp"),
        "{pkts:?}"
    );
    assert_eq!(events(&mut s).len(), 2);
    s.handle_input(now, &enc(&Packet::Unsuback(pid(p3))))
        .unwrap();
    assert_eq!(
        events(&mut s),
        vec![MqttEvent::Unsubscribed {
            owner: 3,
            filter: "sensors/+/temp".into()
        }]
    );
    assert!(s.subscriptions().is_empty());
    s.handle_input(
        now,
        &publish_in(
            "sensors/kitchen/temp",
            b"22",
            QosPid::AtMostOnce,
            false,
            false,
        ),
    )
    .unwrap();
    assert!(
        matches!(&events(&mut s)[..], [MqttEvent::Message { owners, .. }] if owners.is_empty())
    );
}

#[test]
fn subscription_limits() {
    let now = Instant::now();
    let mut o = ConnectOptions::new("c", 0);
    o.limits.max_subscriptions = 2;
    o.limits.max_topic_len = 8;
    let mut s = connected(o, now);
    assert!(matches!(
        s.subscribe(1, "a/#/b", QoS::AtMostOnce),
        Err(MqttError::InvalidTopic(_))
    ));
    assert!(matches!(
        s.subscribe(1, "a+", QoS::AtMostOnce),
        Err(MqttError::InvalidTopic(_))
    ));
    assert!(matches!(
        s.subscribe(1, "", QoS::AtMostOnce),
        Err(MqttError::InvalidTopic(_))
    ));
    assert!(matches!(
        s.subscribe(1, "123456789", QoS::AtMostOnce),
        Err(MqttError::InvalidTopic(_))
    ));
    s.subscribe(1, "a", QoS::AtMostOnce).unwrap();
    s.subscribe(1, "b", QoS::AtMostOnce).unwrap();
    assert_eq!(
        s.subscribe(1, "c", QoS::AtMostOnce),
        Err(MqttError::TooManySubscriptions)
    );
    assert!(matches!(
        s.publish(1, "a/+", b"", QoS::AtMostOnce, false),
        Err(MqttError::InvalidTopic(_))
    ));
    assert!(matches!(
        s.publish(1, "123456789", b"", QoS::AtMostOnce, false),
        Err(MqttError::InvalidTopic(_))
    ));
}

#[test]
fn publish_qos0_out() {
    let now = Instant::now();
    let mut s = session(now);
    assert_eq!(
        s.publish(7, "a/b", b"hello", QoS::AtMostOnce, true)
            .unwrap(),
        None
    );
    let bytes = tx(&mut s);
    assert_eq!(
        split(&bytes),
        vec![Packet::Publish(mqttrs::Publish {
            dup: false,
            qospid: QosPid::AtMostOnce,
            retain: true,
            topic_name: "a/b",
            payload: b"hello"
        })]
    );
    assert!(s.in_flight().is_empty());
}

#[test]
fn publish_qos1_out() {
    let now = Instant::now();
    let mut s = session(now);
    let p = s
        .publish(7, "a/b", b"one", QoS::AtLeastOnce, false)
        .unwrap()
        .unwrap();
    let bytes = tx(&mut s);
    assert_eq!(
        split(&bytes),
        vec![Packet::Publish(mqttrs::Publish {
            dup: false,
            qospid: QosPid::AtLeastOnce(pid(p)),
            retain: false,
            topic_name: "a/b",
            payload: b"one"
        })]
    );
    assert_eq!(s.in_flight().len(), 1);
    // A PUBREC for a QoS 1 message is a violation; check on a clone-free path:
    s.handle_input(now, &enc(&Packet::Puback(pid(p)))).unwrap();
    assert_eq!(events(&mut s), vec![MqttEvent::Acked { owner: 7, pkid: p }]);
    assert!(s.in_flight().is_empty());
    // Duplicate / unknown acks are ignored.
    s.handle_input(now, &enc(&Packet::Puback(pid(p)))).unwrap();
    assert!(events(&mut s).is_empty());
}

#[test]
fn publish_qos2_out() {
    let now = Instant::now();
    let mut s = session(now);
    let p = s
        .publish(9, "x", b"two", QoS::ExactlyOnce, false)
        .unwrap()
        .unwrap();
    let _ = tx(&mut s);
    s.handle_input(now, &enc(&Packet::Pubrec(pid(p)))).unwrap();
    assert_eq!(split(&tx(&mut s)), vec![Packet::Pubrel(pid(p))]);
    assert!(events(&mut s).is_empty());
    assert!(s.in_flight()[0].released);
    // PUBACK for a QoS 2 message is a violation.
    let mut s2 = session(now);
    let p2 = s2
        .publish(9, "x", b"two", QoS::ExactlyOnce, false)
        .unwrap()
        .unwrap();
    assert!(matches!(
        s2.handle_input(now, &enc(&Packet::Puback(pid(p2)))),
        Err(MqttError::Protocol(_))
    ));
    s.handle_input(now, &enc(&Packet::Pubcomp(pid(p)))).unwrap();
    assert_eq!(events(&mut s), vec![MqttEvent::Acked { owner: 9, pkid: p }]);
    assert!(s.in_flight().is_empty());
}

#[test]
fn in_flight_limit_and_packet_ids() {
    let now = Instant::now();
    let mut o = ConnectOptions::new("c", 0);
    o.limits.max_in_flight = 3;
    let mut s = connected(o, now);
    let ids: Vec<u16> = (0..3)
        .map(|_| {
            s.publish(1, "t", b"", QoS::AtLeastOnce, false)
                .unwrap()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(
        s.publish(1, "t", b"", QoS::AtLeastOnce, false),
        Err(MqttError::TooManyInFlight)
    );
    // QoS 0 is never limited.
    assert_eq!(s.publish(1, "t", b"", QoS::AtMostOnce, false), Ok(None));
    s.handle_input(now, &enc(&Packet::Puback(pid(2)))).unwrap();
    assert_eq!(s.publish(1, "t", b"", QoS::AtLeastOnce, false), Ok(Some(4)));
}

#[test]
fn incoming_qos_flows() {
    let now = Instant::now();
    let mut s = session(now);
    s.subscribe(5, "in/#", QoS::ExactlyOnce).unwrap();
    let _ = tx(&mut s);
    s.handle_input(
        now,
        &suback(1, SubscribeReturnCodes::Success(mqttrs::QoS::ExactlyOnce)),
    )
    .unwrap();
    let _ = events(&mut s);
    // QoS 1: delivered, PUBACK sent.
    s.handle_input(
        now,
        &publish_in("in/1", b"a", QosPid::AtLeastOnce(pid(10)), false, false),
    )
    .unwrap();
    assert_eq!(split(&tx(&mut s)), vec![Packet::Puback(pid(10))]);
    assert!(
        matches!(&events(&mut s)[..], [MqttEvent::Message { qos: QoS::AtLeastOnce, owners, .. }] if owners == &[5])
    );
    // QoS 2: delivered once, PUBREC (again on the duplicate), PUBCOMP on PUBREL.
    let p = publish_in("in/2", b"b", QosPid::ExactlyOnce(pid(11)), true, false);
    s.handle_input(now, &p).unwrap();
    assert_eq!(split(&tx(&mut s)), vec![Packet::Pubrec(pid(11))]);
    assert_eq!(
        events(&mut s),
        vec![MqttEvent::Message {
            owners: vec![5],
            topic: "in/2".into(),
            payload: b"b".to_vec(),
            qos: QoS::ExactlyOnce,
            retain: true
        }]
    );
    let dup = publish_in("in/2", b"b", QosPid::ExactlyOnce(pid(11)), true, true);
    s.handle_input(now, &dup).unwrap();
    assert_eq!(split(&tx(&mut s)), vec![Packet::Pubrec(pid(11))]);
    assert!(events(&mut s).is_empty());
    s.handle_input(now, &enc(&Packet::Pubrel(pid(11)))).unwrap();
    assert_eq!(split(&tx(&mut s)), vec![Packet::Pubcomp(pid(11))]);
    // After PUBREL the id is free: the same id is a new message.
    s.handle_input(now, &p).unwrap();
    assert_eq!(events(&mut s).len(), 1);
    // A broker may not publish to a wildcard topic.
    assert!(matches!(
        s.handle_input(
            now,
            &publish_in("in/+", b"", QosPid::AtMostOnce, false, false)
        ),
        Err(MqttError::Protocol(_))
    ));
}

#[test]
fn incoming_qos2_bounded() {
    let now = Instant::now();
    let mut o = ConnectOptions::new("c", 0);
    o.limits.max_in_flight = 2;
    let mut s = connected(o, now);
    for n in 1..=2 {
        s.handle_input(
            now,
            &publish_in("t", b"", QosPid::ExactlyOnce(pid(n)), false, false),
        )
        .unwrap();
    }
    assert_eq!(
        s.handle_input(
            now,
            &publish_in("t", b"", QosPid::ExactlyOnce(pid(3)), false, false)
        ),
        Err(MqttError::TooManyInFlight)
    );
}

#[test]
fn keep_alive_ping_and_timeout() {
    let t0 = Instant::now();
    let mut o = ConnectOptions::new("c", 5);
    o.response_timeout = Duration::from_secs(2);
    let mut s = connected(o, t0);
    let due = s.poll_timeout().unwrap();
    assert_eq!(due, t0 + Duration::from_secs(5));
    s.handle_timeout(t0 + Duration::from_secs(1)).unwrap();
    assert!(s.poll_transmit().is_none());
    s.handle_timeout(due).unwrap();
    assert_eq!(split(&tx(&mut s)), vec![Packet::Pingreq]);
    assert_eq!(s.poll_timeout(), Some(due + Duration::from_secs(2)));
    s.handle_input(due, &[0xd0, 0]).unwrap();
    assert_eq!(s.pings_acked(), 1);
    let due2 = s.poll_timeout().unwrap();
    assert_eq!(due2, due + Duration::from_secs(5));
    s.handle_timeout(due2).unwrap();
    assert_eq!(split(&tx(&mut s)), vec![Packet::Pingreq]);
    let deadline = s.poll_timeout().unwrap();
    s.handle_timeout(deadline - Duration::from_millis(1))
        .unwrap();
    assert_eq!(s.handle_timeout(deadline), Err(MqttError::KeepAliveTimeout));
    assert!(s.is_closed());
    assert_eq!(s.poll_timeout(), None);
    // Keep-alive 0: no timer at all.
    let s = connected(ConnectOptions::new("c", 0), t0);
    assert_eq!(s.poll_timeout(), None);
}

fn resumable(now: Instant) -> (Session, u16, u16, u16) {
    let mut o = ConnectOptions::new("c", 0);
    o.clean_session = false;
    let mut s = connected(o, now);
    let a = s
        .publish(1, "t/a", b"A", QoS::AtLeastOnce, false)
        .unwrap()
        .unwrap();
    let b = s
        .publish(2, "t/b", b"B", QoS::ExactlyOnce, true)
        .unwrap()
        .unwrap();
    let c = s
        .publish(3, "t/c", b"C", QoS::ExactlyOnce, false)
        .unwrap()
        .unwrap();
    s.handle_input(now, &enc(&Packet::Pubrec(pid(c)))).unwrap();
    s.handle_input(
        now,
        &publish_in("in", b"", QosPid::ExactlyOnce(pid(77)), false, false),
    )
    .unwrap();
    let _ = tx(&mut s);
    let _ = events(&mut s);
    (s, a, b, c)
}

#[test]
fn resume_retransmits_with_dup() {
    let now = Instant::now();
    let (mut old, a, b, c) = resumable(now);
    let carried = old.take_in_flight();
    assert_eq!(carried.publishes.len(), 3);
    assert_eq!(carried.incoming_qos2, vec![77]);
    let mut o = ConnectOptions::new("c", 0);
    o.clean_session = false;
    let mut s = Session::new(o, now);
    s.restore(carried);
    s.start(now).unwrap();
    let connect = tx(&mut s);
    assert!(matches!(&split(&connect)[..], [Packet::Connect(_)]));
    s.handle_input(now, &connack(true, mqttrs::ConnectReturnCode::Accepted))
        .unwrap();
    assert_eq!(
        split(&tx(&mut s)),
        vec![
            Packet::Publish(mqttrs::Publish {
                dup: true,
                qospid: QosPid::AtLeastOnce(pid(a)),
                retain: false,
                topic_name: "t/a",
                payload: b"A"
            }),
            Packet::Publish(mqttrs::Publish {
                dup: true,
                qospid: QosPid::ExactlyOnce(pid(b)),
                retain: true,
                topic_name: "t/b",
                payload: b"B"
            }),
            Packet::Pubrel(pid(c)),
        ]
    );
    // The incoming QoS 2 id is still known: its retransmission is not
    // delivered again.
    s.handle_input(
        now,
        &publish_in("in", b"", QosPid::ExactlyOnce(pid(77)), false, true),
    )
    .unwrap();
    assert_eq!(
        events(&mut s),
        vec![MqttEvent::Connected {
            session_present: true
        }]
    );
    // New ids do not collide with carried ones.
    let n = s
        .publish(1, "t", b"", QoS::AtLeastOnce, false)
        .unwrap()
        .unwrap();
    assert!(![a, b, c].contains(&n));
    for (p, ack) in [
        (a, Packet::Puback(pid(a))),
        (b, Packet::Pubrec(pid(b))),
        (b, Packet::Pubcomp(pid(b))),
        (c, Packet::Pubcomp(pid(c))),
    ] {
        let _ = p;
        s.handle_input(now, &enc(&ack)).unwrap();
    }
    let acked: Vec<_> = events(&mut s);
    assert_eq!(
        acked,
        vec![
            MqttEvent::Acked { owner: 1, pkid: a },
            MqttEvent::Acked { owner: 2, pkid: b },
            MqttEvent::Acked { owner: 3, pkid: c },
        ]
    );
}

#[test]
fn resume_with_clean_session_nacks() {
    let now = Instant::now();
    let (mut old, a, b, c) = resumable(now);
    let mut s = Session::new(ConnectOptions::new("c", 0), now);
    s.restore(old.take_in_flight());
    assert_eq!(
        events(&mut s),
        [(1, a), (2, b), (3, c)]
            .map(|(owner, pkid)| MqttEvent::Nacked {
                owner,
                pkid,
                reason: NackReason::CleanSession
            })
            .to_vec()
    );
    s.start(now).unwrap();
    let _ = tx(&mut s);
    s.handle_input(now, &connack(false, mqttrs::ConnectReturnCode::Accepted))
        .unwrap();
    assert!(s.poll_transmit().is_none());
    // Abandoning reports the rest.
    let (mut old, ..) = resumable(now);
    old.abandon_in_flight(NackReason::Abandoned);
    assert_eq!(events(&mut old).len(), 3);
    assert!(old.in_flight().is_empty());
}

#[test]
fn disconnect_sends_disconnect() {
    let now = Instant::now();
    let mut s = session(now);
    s.disconnect();
    assert_eq!(split(&tx(&mut s)), vec![Packet::Disconnect]);
    assert!(s.is_closed());
}

/// A broker script after CONNACK: SUBACK, retained QoS 1 PUBLISH, QoS 2
/// PUBLISH, PUBREL, PINGRESP, a large QoS 0 PUBLISH, PUBACK.
fn script() -> Vec<u8> {
    let mut v = suback(1, SubscribeReturnCodes::Success(mqttrs::QoS::ExactlyOnce));
    v.extend(publish_in(
        "s/1",
        b"first",
        QosPid::AtLeastOnce(pid(3)),
        true,
        false,
    ));
    v.extend(publish_in(
        "s/2",
        b"second",
        QosPid::ExactlyOnce(pid(4)),
        false,
        false,
    ));
    v.extend(enc(&Packet::Pubrel(pid(4))));
    v.extend(enc(&Packet::Pingresp));
    v.extend(publish_in(
        "s/3",
        &[7u8; 300],
        QosPid::AtMostOnce,
        false,
        false,
    ));
    v.extend(enc(&Packet::Puback(pid(2))));
    v
}

fn run_script(chunks: &[&[u8]]) -> (Vec<MqttEvent>, Vec<u8>) {
    let now = Instant::now();
    let mut s = session(now);
    s.subscribe(1, "s/#", QoS::ExactlyOnce).unwrap();
    s.publish(1, "o", b"x", QoS::AtLeastOnce, false).unwrap();
    let mut ev = Vec::new();
    let mut out = tx(&mut s);
    for c in chunks {
        s.handle_input(now, c).unwrap();
        ev.extend(events(&mut s));
        out.extend(tx(&mut s));
    }
    (ev, out)
}

#[test]
fn split_at_every_byte() {
    let data = script();
    let (whole_ev, whole_out) = run_script(&[&data]);
    assert_eq!(whole_ev.len(), 5, "{whole_ev:?}");
    for i in 0..=data.len() {
        let (a, b) = data.split_at(i);
        assert_eq!(
            run_script(&[a, b]),
            (whole_ev.clone(), whole_out.clone()),
            "split at {i}"
        );
    }
    let chunks: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(run_script(&chunks), (whole_ev, whole_out));
}

#[test]
fn crafted_garbage_is_an_error() {
    let now = Instant::now();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("publish topic overruns", vec![0x30, 3, 0, 5, b'a']),
        ("publish pid missing", vec![0x32, 3, 0, 1, b'a']),
        ("publish no topic len", vec![0x30, 1, 0]),
        ("publish qos 3", vec![0x36, 3, 0, 1, b'a']),
        ("puback short", vec![0x40, 1, 0]),
        ("puback long", vec![0x40, 3, 0, 1, 0]),
        ("puback pid 0", vec![0x40, 2, 0, 0]),
        ("pubrel bad flags", vec![0x60, 2, 0, 1]),
        ("suback no codes", vec![0x90, 2, 0, 1]),
        ("suback bad code", vec![0x90, 3, 0, 1, 3]),
        ("suback two codes", vec![0x90, 4, 0, 1, 0, 0]),
        ("pingresp with body", vec![0xd0, 1, 0]),
        ("pingreq", vec![0xc0, 0]),
        ("connect", vec![0x10, 0]),
        ("subscribe", vec![0x82, 0]),
        ("disconnect", vec![0xe0, 0]),
        ("reserved 0", vec![0x00, 0]),
        ("reserved 15", vec![0xf0, 0]),
        ("length 5 bytes", vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ("length not minimal", vec![0x30, 0x80, 0x00]),
        ("bad utf8 topic", vec![0x30, 4, 0, 2, 0xff, 0xfe]),
        ("second connack", vec![0x20, 2, 0, 0]),
    ];
    for (what, bytes) in cases {
        let mut s = session(now);
        let r = s.handle_input(now, &bytes);
        assert!(r.is_err(), "{what}: {r:?}");
        assert!(r.unwrap_err().to_string().starts_with("mqtt: "));
        assert!(s.is_closed(), "{what}");
    }
}

#[test]
fn packet_size_limit() {
    let now = Instant::now();
    let mut o = ConnectOptions::new("c", 0);
    o.limits.max_packet = 1024;
    let mut s = connected(o.clone(), now);
    // Refused from the fixed header alone, before the body is awaited.
    let big = publish_in("t", &[0u8; 2000], QosPid::AtMostOnce, false, false);
    assert!(matches!(
        s.handle_input(now, &big[..4]),
        Err(MqttError::PacketTooLarge { max: 1024, .. })
    ));
    // Exactly at the limit is fine.
    let mut s = connected(o, now);
    let fits = publish_in("t", &[1u8; 1024 - 3 - 3], QosPid::AtMostOnce, false, false);
    assert_eq!(fits.len(), 1024);
    s.handle_input(now, &fits).unwrap();
    assert_eq!(events(&mut s).len(), 1);
    // Outgoing packets are bounded too.
    assert!(matches!(
        s.publish(1, "t", &[0u8; 2000], QoS::AtLeastOnce, false),
        Err(MqttError::PacketTooLarge { .. })
    ));
    assert!(s.in_flight().is_empty());
    assert_eq!(
        s.publish(1, "t", &[0u8; 1018], QoS::AtMostOnce, false),
        Ok(None)
    );
    assert_eq!(tx(&mut s).len(), 1024);
}

#[test]
fn remove_owner_unsubscribes_everything() {
    let now = Instant::now();
    let mut s = session(now);
    s.subscribe(1, "a", QoS::AtMostOnce).unwrap();
    s.subscribe(2, "a", QoS::AtMostOnce).unwrap();
    s.subscribe(1, "b", QoS::AtMostOnce).unwrap();
    s.handle_input(
        now,
        &suback(1, SubscribeReturnCodes::Success(mqttrs::QoS::AtMostOnce)),
    )
    .unwrap();
    s.handle_input(
        now,
        &suback(2, SubscribeReturnCodes::Success(mqttrs::QoS::AtMostOnce)),
    )
    .unwrap();
    let _ = tx(&mut s);
    s.remove_owner(1).unwrap();
    let pkts = split(&tx(&mut s))
        .into_iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>();
    assert_eq!(pkts.len(), 1, "{pkts:?}");
    assert!(pkts[0].contains("\"b\""));
    assert_eq!(s.subscriptions().len(), 1);
    assert_eq!(s.subscriptions()[0].owners, vec![2]);
}

#[test]
fn topic_matching_rules() {
    let yes = [
        ("a/b", "a/b"),
        ("a/+", "a/b"),
        ("a/+/c", "a/b/c"),
        ("+/+", "/x"),
        ("+", "x"),
        ("#", "a/b/c"),
        ("a/#", "a"),
        ("a/#", "a/b/c"),
        ("a/+", "a/"),
        ("$SYS/#", "$SYS/broker/clients/connected"),
        ("$SYS/+/x", "$SYS/a/x"),
    ];
    for (f, t) in yes {
        assert!(topic_matches(f, t), "{f} should match {t}");
    }
    let no = [
        ("a/b", "a/c"),
        ("a/+", "a/b/c"),
        ("a/+", "a"),
        ("+", "a/b"),
        ("#", "$SYS/x"),
        ("+/x", "$SYS/x"),
        ("a/b/#", "a"),
        ("a#", "a"),
        ("a/#/b", "a/x/b"),
        ("", "a"),
        ("a", ""),
    ];
    for (f, t) in no {
        assert!(!topic_matches(f, t), "{f} should not match {t}");
    }
}

fn level() -> impl Strategy<Value = String> {
    "[a-z0-9 _$-]{0,6}"
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5)
        .prop_map(|l| l.join("/"))
        .prop_filter("non-empty", |t| !t.is_empty())
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

proptest! {
    #[test]
    fn exact_filter_matches_itself(t in topic()) {
        prop_assert!(topic_matches(&t, &t));
    }

    #[test]
    fn hash_matches_all_but_dollar(t in topic()) {
        prop_assert_eq!(topic_matches("#", &t), !t.starts_with('$'));
    }

    #[test]
    fn plus_replaces_any_level(t in topic(), i in any::<prop::sample::Index>()) {
        let levels: Vec<&str> = t.split('/').collect();
        let k = i.index(levels.len());
        let mut f: Vec<&str> = levels.clone();
        f[k] = "+";
        let filter = f.join("/");
        let dollar_first = k == 0 && t.starts_with('$');
        prop_assert_eq!(topic_matches(&filter, &t), !dollar_first);
        // A prefix of levels followed by '#' matches too.
        let prefix = format!("{}/#", levels[..k].join("/"));
        if k > 0 {
            prop_assert!(topic_matches(&prefix, &t));
        }
    }

    #[test]
    fn outgoing_round_trip(t in topic(), payload in prop::collection::vec(any::<u8>(), 0..512),
                           q in qos(), retain in any::<bool>(), cid in "[a-zA-Z0-9]{1,23}",
                           ka in any::<u16>(), clean in any::<bool>()) {
        let now = Instant::now();
        let mut o = ConnectOptions::new(cid.clone(), ka);
        o.clean_session = clean;
        o.will = Some(Will { topic: t.clone(), message: payload.clone(), qos: q, retain });
        o.username = Some(cid.clone());
        o.password = Some(payload.clone());
        let mut s = Session::new(o, now);
        s.start(now).unwrap();
        let bytes = tx(&mut s);
        let p = split(&bytes);
        let Packet::Connect(c) = &p[0] else { panic!() };
        prop_assert_eq!(c.client_id, cid.as_str());
        prop_assert_eq!(c.keep_alive, ka);
        prop_assert_eq!(c.clean_session, clean);
        let w = c.last_will.as_ref().unwrap();
        prop_assert_eq!(w.topic, t.as_str());
        prop_assert_eq!(w.message, &payload[..]);
        prop_assert_eq!(c.password, Some(&payload[..]));
        s.handle_input(now, &connack(false, mqttrs::ConnectReturnCode::Accepted)).unwrap();
        let id = s.publish(3, &t, &payload, q, retain).unwrap();
        let sid = s.subscribe(3, &t, q).unwrap().unwrap();
        let bytes = tx(&mut s);
        let p = split(&bytes);
        let Packet::Publish(pb) = &p[0] else { panic!() };
        prop_assert_eq!(pb.topic_name, t.as_str());
        prop_assert_eq!(pb.payload, &payload[..]);
        prop_assert_eq!(pb.retain, retain);
        prop_assert!(!pb.dup);
        prop_assert_eq!(pb.qospid.pid().map(|p| p.get()), id);
        let Packet::Subscribe(sb) = &p[1] else { panic!() };
        prop_assert_eq!(sb.pid.get(), sid);
        prop_assert_eq!(&sb.topics[0].topic_path, &t);
        prop_assert_eq!(sb.topics[0].qos, q.to_mqttrs_for_test());
        s.handle_input(now, &suback(sid, SubscribeReturnCodes::Success(mqttrs::QoS::AtMostOnce))).unwrap();
        s.unsubscribe(3, &t).unwrap();
        let bytes = tx(&mut s);
        let p = split(&bytes);
        let Packet::Unsubscribe(u) = &p[0] else { panic!() };
        prop_assert_eq!(&u.topics, &vec![t.clone()]);
    }

    #[test]
    fn incoming_round_trip(t in topic(), payload in prop::collection::vec(any::<u8>(), 0..512),
                           q in qos(), retain in any::<bool>(), id in 1u16..) {
        let now = Instant::now();
        let mut s = session(now);
        let qospid = match q {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(pid(id)),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(pid(id)),
        };
        s.handle_input(now, &publish_in(&t, &payload, qospid, retain, false)).unwrap();
        prop_assert_eq!(events(&mut s), vec![MqttEvent::Message {
            owners: vec![], topic: t.clone(), payload: payload.clone(), qos: q, retain }]);
        let answer = tx(&mut s);
        let expect = match q {
            QoS::AtMostOnce => vec![],
            QoS::AtLeastOnce => vec![Packet::Puback(pid(id))],
            QoS::ExactlyOnce => vec![Packet::Pubrec(pid(id))],
        };
        prop_assert_eq!(split(&answer), expect);
    }

    #[test]
    fn random_input_never_panics(data in prop::collection::vec(any::<u8>(), 0..256),
                                 cut in any::<prop::sample::Index>()) {
        let now = Instant::now();
        let mut s = session(now);
        let k = cut.index(data.len() + 1);
        let _ = s.handle_input(now, &data[..k]).and_then(|_| s.handle_input(now, &data[k..]));
        while s.poll_event().is_some() {}
        let _ = s.poll_transmit();
    }
}

trait ToMqttrs {
    fn to_mqttrs_for_test(self) -> mqttrs::QoS;
}

impl ToMqttrs for QoS {
    fn to_mqttrs_for_test(self) -> mqttrs::QoS {
        match self {
            QoS::AtMostOnce => mqttrs::QoS::AtMostOnce,
            QoS::AtLeastOnce => mqttrs::QoS::AtLeastOnce,
            QoS::ExactlyOnce => mqttrs::QoS::ExactlyOnce,
        }
    }
}

#[test]
fn leaving_a_pending_subscription_unsubscribes_after_suback() {
    let now = Instant::now();
    let mut s = session(now);
    let p = s.subscribe(1, "x/#", QoS::AtLeastOnce).unwrap().unwrap();
    let _ = tx(&mut s);
    assert_eq!(s.unsubscribe(1, "x/#").unwrap(), None);
    assert_eq!(
        events(&mut s),
        vec![MqttEvent::Unsubscribed {
            owner: 1,
            filter: "x/#".into()
        }]
    );
    s.handle_input(
        now,
        &suback(p, SubscribeReturnCodes::Success(mqttrs::QoS::AtLeastOnce)),
    )
    .unwrap();
    // Nobody wants it any more: UNSUBSCRIBE goes out, no SubAcked event.
    let pkts = split(&tx(&mut s))
        .into_iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>();
    assert!(
        pkts.len() == 1 && pkts[0].starts_with("Unsubscribe"),
        "{pkts:?}"
    );
    assert!(events(&mut s).is_empty());
    assert!(s.subscriptions().is_empty());
    // A stronger QoS on a held filter re-subscribes; the weaker one shares.
    let p = s.subscribe(1, "y", QoS::AtMostOnce).unwrap().unwrap();
    s.handle_input(
        now,
        &suback(p, SubscribeReturnCodes::Success(mqttrs::QoS::AtMostOnce)),
    )
    .unwrap();
    let _ = tx(&mut s);
    let p2 = s.subscribe(2, "y", QoS::ExactlyOnce).unwrap().unwrap();
    assert!(split(&tx(&mut s)).len() == 1);
    s.handle_input(
        now,
        &suback(p2, SubscribeReturnCodes::Success(mqttrs::QoS::ExactlyOnce)),
    )
    .unwrap();
    assert_eq!(s.subscriptions().len(), 1);
    assert_eq!(s.subscriptions()[0].owners, vec![1, 2]);
    assert_eq!(s.subscriptions()[0].granted, QoS::ExactlyOnce);
}
