//! ss-core's MQTT [`Session`] over a real socket against mosquitto: connect,
//! subscribe, publish at every QoS to itself, will, retained messages,
//! keep-alive, `$SYS` client counts, and TLS.

use conformance::peers::{Mosquitto, MosquittoOpts};
use ss_core::proto::mqtt::{ConnectOptions, MqttEvent, QoS, Session, Will};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

/// Bytes in and out of a [`Session`]: plain TCP, or TLS over it.
trait Wire {
    fn send(&mut self, plain: &[u8]);
    /// Plaintext read within ~50 ms (empty if none); `None` on EOF.
    fn recv(&mut self) -> Option<Vec<u8>>;
}

impl Wire for TcpStream {
    fn send(&mut self, plain: &[u8]) {
        self.write_all(plain).expect("write to broker");
    }
    fn recv(&mut self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 16384];
        match self.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Some(Vec::new())
            }
            Err(e) => panic!("read from broker: {e}"),
        }
    }
}

/// A [`Session`] driven over a blocking socket with short read timeouts.
struct Client<W: Wire> {
    wire: W,
    s: Session,
    events: Vec<MqttEvent>,
}

fn tcp(port: u16) -> TcpStream {
    let sock = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect mosquitto");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    sock.set_nodelay(true).unwrap();
    sock
}

impl<W: Wire> Client<W> {
    /// Connects and waits for CONNACK.
    fn connect(wire: W, opts: ConnectOptions) -> Self {
        let now = Instant::now();
        let mut c = Client {
            wire,
            s: Session::new(opts, now),
            events: Vec::new(),
        };
        c.s.start(now).expect("start");
        c.flush();
        c.pump_until("CONNACK", |e| matches!(e, MqttEvent::Connected { .. }));
        c
    }

    fn flush(&mut self) {
        while let Some(b) = self.s.poll_transmit() {
            self.wire.send(&b);
        }
    }

    /// One round: read, feed, run timers, write; collects events.
    fn step(&mut self) {
        let data = self.wire.recv().expect("broker closed the connection");
        let now = Instant::now();
        if !data.is_empty() {
            self.s.handle_input(now, &data).expect("session input");
        }
        if self.s.poll_timeout().is_some_and(|t| t <= now) {
            self.s.handle_timeout(now).expect("session timeout");
        }
        self.flush();
        while let Some(e) = self.s.poll_event() {
            self.events.push(e);
        }
    }

    /// Steps until an event satisfies `pred` (removed and returned), 10 s max.
    fn pump_until(&mut self, what: &str, pred: impl Fn(&MqttEvent) -> bool) -> MqttEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = self.events.iter().position(&pred) {
                return self.events.remove(i);
            }
            assert!(
                Instant::now() < deadline,
                "no {what}; events so far: {:?}",
                self.events
            );
            self.step();
        }
    }

    /// Steps for `d`, whatever happens.
    fn pump_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.step();
        }
    }

    fn subscribe(&mut self, owner: u64, filter: &str, qos: QoS) -> QoS {
        self.s.subscribe(owner, filter, qos).expect("subscribe");
        self.flush();
        match self.pump_until("SUBACK", |e| {
            matches!(e, MqttEvent::SubAcked { owner: o, filter: f, .. } if *o == owner && f == filter)
        }) {
            MqttEvent::SubAcked { granted, .. } => granted,
            _ => unreachable!(),
        }
    }

    fn message(&mut self, topic: &str) -> (Vec<u64>, Vec<u8>, QoS, bool) {
        match self.pump_until(
            topic,
            |e| matches!(e, MqttEvent::Message { topic: t, .. } if t == topic),
        ) {
            MqttEvent::Message {
                owners,
                payload,
                qos,
                retain,
                ..
            } => (owners, payload, qos, retain),
            _ => unreachable!(),
        }
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:?}", std::process::id(), Instant::now())
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "")
}

#[test]
fn publish_to_self_at_every_qos() {
    let m = Mosquitto::start(MosquittoOpts::default());
    let mut c = Client::connect(tcp(m.port()), ConnectOptions::new(unique("self"), 30));
    assert_eq!(
        c.subscribe(1, "ss/self/#", QoS::ExactlyOnce),
        QoS::ExactlyOnce
    );
    // A second owner sharing the connection with an overlapping filter.
    assert_eq!(
        c.subscribe(2, "ss/+/q2", QoS::AtLeastOnce),
        QoS::AtLeastOnce
    );
    for (n, qos) in [
        (0u8, QoS::AtMostOnce),
        (1, QoS::AtLeastOnce),
        (2, QoS::ExactlyOnce),
    ] {
        let topic = format!("ss/self/q{n}");
        let payload = format!("payload at qos {n}").into_bytes();
        let pkid =
            c.s.publish(1, &topic, &payload, qos, false)
                .expect("publish");
        c.flush();
        assert_eq!(pkid.is_some(), qos != QoS::AtMostOnce);
        if let Some(pkid) = pkid {
            c.pump_until("ack", |e| *e == MqttEvent::Acked { owner: 1, pkid });
        }
        let (owners, got, got_qos, retain) = c.message(&topic);
        assert_eq!(got, payload, "{}", m.logs());
        assert_eq!(got_qos, qos);
        assert!(!retain);
        let expect_owners = if n == 2 { vec![1, 2] } else { vec![1] };
        assert_eq!(owners, expect_owners);
    }
    assert!(c.s.in_flight().is_empty());
    // The broker's PUBREL for the QoS 2 delivery to us may still be on its
    // way: keep answering until it has our PUBCOMP.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !m.log_text().contains("Received PUBCOMP") {
        assert!(
            Instant::now() < deadline,
            "no PUBCOMP reached the broker\n{}",
            m.logs()
        );
        c.step();
    }
    c.s.disconnect();
    c.flush();
    // Both QoS 2 flows ran to completion on the broker's side too.
    for needle in [
        "Received PUBREL",
        "Sending PUBCOMP",
        "Received PUBACK",
        "Received PUBCOMP",
        "Received DISCONNECT",
    ] {
        wait_log(&m, needle);
    }
}

/// Waits (5 s max) until the broker's log holds `needle`.
fn wait_log(m: &Mosquitto, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !m.log_text().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "broker log lacks {needle}:\n{}",
            m.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn will_is_published_when_the_socket_drops() {
    let m = Mosquitto::start(MosquittoOpts::default());
    let topic = unique("ss/will");
    let sub = m.subscriber(&topic, 1, Duration::from_secs(8));
    let mut o = ConnectOptions::new(unique("will"), 30);
    o.will = Some(Will {
        topic: topic.clone(),
        message: b"gone".to_vec(),
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    let c = Client::connect(tcp(m.port()), o);
    drop(c); // no DISCONNECT: the broker must publish the will
    let lines = sub.wait();
    assert_eq!(lines, vec![format!("{topic} gone")], "{}", m.logs());
}

#[test]
fn clean_disconnect_suppresses_the_will() {
    let m = Mosquitto::start(MosquittoOpts::default());
    let topic = unique("ss/nowill");
    let sub = m.subscriber(&topic, 1, Duration::from_secs(2));
    let mut o = ConnectOptions::new(unique("nowill"), 30);
    o.will = Some(Will {
        topic: topic.clone(),
        message: b"gone".to_vec(),
        qos: QoS::AtMostOnce,
        retain: false,
    });
    let mut c = Client::connect(tcp(m.port()), o);
    c.s.disconnect();
    c.flush();
    drop(c);
    assert!(sub.wait().is_empty(), "{}", m.logs());
}

#[test]
fn retained_message_reaches_later_subscribers() {
    let m = Mosquitto::start(MosquittoOpts::default());
    let topic = unique("ss/retained");
    let mut a = Client::connect(tcp(m.port()), ConnectOptions::new(unique("pub"), 30));
    let pkid =
        a.s.publish(7, &topic, b"kept", QoS::AtLeastOnce, true)
            .unwrap()
            .unwrap();
    a.flush();
    a.pump_until("PUBACK", |e| *e == MqttEvent::Acked { owner: 7, pkid });
    // A later subscriber of ours gets it flagged retained...
    let mut b = Client::connect(tcp(m.port()), ConnectOptions::new(unique("late"), 30));
    b.subscribe(9, &topic, QoS::AtLeastOnce);
    let (owners, payload, _, retain) = b.message(&topic);
    assert_eq!((owners, payload, retain), (vec![9], b"kept".to_vec(), true));
    // ...and so does an independent client.
    let lines = m.subscriber(&topic, 1, Duration::from_secs(5)).wait();
    assert_eq!(lines, vec![format!("{topic} kept")]);
}

#[test]
fn keep_alive_pings_are_answered() {
    let m = Mosquitto::start(MosquittoOpts::default());
    let id = unique("ka");
    let mut o = ConnectOptions::new(id.clone(), 1);
    o.response_timeout = Duration::from_secs(1);
    let mut c = Client::connect(tcp(m.port()), o);
    c.pump_for(Duration::from_millis(2500));
    assert!(c.s.is_connected());
    assert!(c.s.pings_acked() >= 2, "pings acked: {}", c.s.pings_acked());
    let log = m.log_text();
    let pings = log.matches(&format!("Received PINGREQ from {id}")).count();
    assert!(pings >= 2, "{log}");
    assert!(log.contains(&format!("Sending PINGRESP to {id}")));
}

#[test]
fn sys_topic_counts_connected_clients() {
    let m = Mosquitto::start(MosquittoOpts::default());
    let a = Client::connect(tcp(m.port()), ConnectOptions::new(unique("a"), 30));
    let b = Client::connect(tcp(m.port()), ConnectOptions::new(unique("b"), 30));
    // Ours two (plus perhaps the asking mosquitto_sub, depending on when the
    // retained value was refreshed; $SYS refreshes every second).
    wait_clients(&m, |n| n >= 2);
    drop((a, b));
    wait_clients(&m, |n| n <= 1);
}

fn wait_clients(m: &Mosquitto, ok: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let n = m.clients_connected();
        if n.is_some_and(&ok) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "clients connected: {n:?}\n{}",
            m.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

mod tls {
    use super::*;
    use ss_core::policy::{Cert, Policy, StreamType, TrustStore};
    use ss_core::proto::tls::{TlsContext, TlsError, TlsSession, WallClock};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// MQTT over ss-core's TLS machine over a socket.
    struct TlsWire {
        sock: TcpStream,
        tls: TlsSession,
    }

    impl TlsWire {
        /// Starts a handshake with 127.0.0.1:`port` for "localhost", trusting
        /// only `ca_der`.
        fn connect(port: u16, ca_der: Vec<u8>) -> TlsWire {
            let clock = WallClock::new();
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970")
                .as_secs();
            clock.set_unix_secs(secs);
            let mut ctx = TlsContext::with_default_provider(clock);
            let policy = Policy {
                certs: vec![Cert {
                    name: "ca".into(),
                    der: ca_der,
                }],
                trust_stores: vec![TrustStore {
                    name: "ts".into(),
                    stack: vec!["ca".into()],
                }],
                ..Default::default()
            };
            let st = StreamType {
                name: "mqtt".into(),
                tls: true,
                tls_trust_store: Some("ts".into()),
                ..Default::default()
            };
            let cfg = ctx.client_config(&policy, &st, &[]).expect("client config");
            let mut tls = TlsSession::client(cfg, "localhost").expect("tls client");
            let mut wire = Vec::new();
            tls.start(&mut wire).expect("tls start");
            let mut sock = tcp(port);
            sock.write_all(&wire).expect("send ClientHello");
            TlsWire { sock, tls }
        }

        /// Reads and processes one chunk of ciphertext.
        fn pump(&mut self) -> Result<Option<Vec<u8>>, TlsError> {
            let Some(data) = Wire::recv(&mut self.sock) else {
                return Ok(None);
            };
            let (mut plain, mut wire) = (Vec::new(), Vec::new());
            let r = self.tls.handle_input(&data, &mut plain, &mut wire);
            if !wire.is_empty() {
                let _ = self.sock.write_all(&wire);
            }
            r.map(|_| Some(plain))
        }
    }

    impl Wire for TlsWire {
        fn send(&mut self, plain: &[u8]) {
            let mut wire = Vec::new();
            self.tls.write(plain, &mut wire).expect("tls write");
            self.sock.write_all(&wire).expect("write to broker");
        }
        fn recv(&mut self) -> Option<Vec<u8>> {
            self.pump().expect("tls input")
        }
    }

    #[test]
    fn mqtt_over_tls() {
        let m = Mosquitto::start(MosquittoOpts {
            tls: true,
            ..Default::default()
        });
        let wire = TlsWire::connect(m.tls_port(), m.pki().ca_der.clone());
        let mut c = Client::connect(wire, ConnectOptions::new(unique("tls"), 30));
        assert!(!c.wire.tls.is_handshaking());
        c.subscribe(1, "ss/tls/#", QoS::AtLeastOnce);
        let pkid =
            c.s.publish(1, "ss/tls/x", b"secret", QoS::AtLeastOnce, false)
                .unwrap()
                .unwrap();
        c.flush();
        c.pump_until("PUBACK", |e| *e == MqttEvent::Acked { owner: 1, pkid });
        let (owners, payload, qos, _) = c.message("ss/tls/x");
        assert_eq!(
            (owners, payload, qos),
            (vec![1], b"secret".to_vec(), QoS::AtLeastOnce)
        );
        // An independent plain subscriber sees what went in over TLS.
        let sub = m.subscriber("ss/tls/y", 1, Duration::from_secs(5));
        c.s.publish(1, "ss/tls/y", b"cross", QoS::AtMostOnce, false)
            .unwrap();
        c.flush();
        assert_eq!(sub.wait(), vec!["ss/tls/y cross".to_string()]);
    }

    #[test]
    fn untrusted_broker_certificate_fails_the_handshake() {
        let m = Mosquitto::start(MosquittoOpts {
            tls: true,
            ..Default::default()
        });
        let other = conformance::peers::TestPki::other_ca();
        let mut w = TlsWire::connect(m.tls_port(), other.der);
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = loop {
            assert!(
                Instant::now() < deadline,
                "handshake neither failed nor finished"
            );
            match w.pump() {
                Err(e) => break e,
                Ok(None) => panic!("broker closed before the client rejected it"),
                Ok(Some(_)) => assert!(w.tls.is_handshaking(), "handshake succeeded"),
            }
        };
        assert!(err.to_string().to_lowercase().contains("cert"), "{err}");
    }
}
