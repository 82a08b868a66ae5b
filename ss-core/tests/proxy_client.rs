//! The proxy client mode (EngineConfig::proxy): a client engine whose
//! streams are fulfilled by a daemon, against a scripted daemon speaking the
//! wire format. The application sees the same API and events.

use ss_core::engine::SockAddr;
use ss_core::proxy::wire::{Payload, ToClient, ToProxy, ToProxyDecoder, WireMessage};
use ss_core::{Action, ConnId, Engine, EngineConfig, Event, Flags, Policy, StreamState};
use std::time::{Duration, Instant};

const POLICY: &str = r#"{
  "retry": [{"r": {"backoff": [100], "conceal": 3, "jitterpc": 0}}],
  "s": [{"tele": {"endpoint": "example.test", "port": 443, "protocol": "h1", "tls": true,
                  "retry": "r", "metadata": [{"region": ""}, {"ctype": "content-type:"}]}}]
}"#;

struct Daemon {
    e: Engine,
    now: Instant,
    conns: Vec<ConnId>,
    dec: ToProxyDecoder,
    got: Vec<ToProxy>,
    events: Vec<Event>,
    closed: Vec<ConnId>,
}

impl Daemon {
    fn new() -> Self {
        let cfg = EngineConfig {
            proxy: Some(SockAddr::UnixAbstract("ss-proxy-test".into())),
            ..Default::default()
        };
        Daemon {
            e: Engine::new(Policy::parse(POLICY).unwrap(), cfg),
            now: Instant::now(),
            conns: vec![],
            dec: ToProxyDecoder::new(Default::default()),
            got: vec![],
            events: vec![],
            closed: vec![],
        }
    }

    fn pump(&mut self) {
        loop {
            let mut any = false;
            while let Some(a) = self.e.poll_action() {
                any = true;
                match a {
                    Action::Connect { conn, addr } => {
                        assert_eq!(addr, SockAddr::UnixAbstract("ss-proxy-test".into()));
                        self.conns.push(conn);
                        self.dec = ToProxyDecoder::new(Default::default());
                        self.e.handle_connected(self.now, conn);
                    }
                    Action::Transmit { conn, data } => {
                        self.e.handle_sent(self.now, conn, data.len());
                        let mut d = &data[..];
                        while let Some(m) = self.dec.next(&mut d).unwrap() {
                            self.got.push(m);
                        }
                    }
                    Action::Close { conn } => self.closed.push(conn),
                    Action::Resolve { .. } => panic!("a proxied stream resolves nothing itself"),
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

    fn send(&mut self, m: ToClient) {
        let mut out = vec![];
        m.encode(&mut out).unwrap();
        let c = *self.conns.last().unwrap();
        self.e.handle_data(self.now, c, &out);
        self.pump();
    }

    fn states(&self) -> Vec<StreamState> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::State { state, .. } => Some(*state),
                _ => None,
            })
            .collect()
    }
}

use StreamState::*;

#[test]
fn a_stream_through_the_daemon_looks_like_a_direct_one() {
    let mut d = Daemon::new();
    let s = d.e.create(d.now, "tele").unwrap();
    d.e.set_metadata(s, "region", b"eu").unwrap();
    d.e.request_tx_len(d.now, s, 5).unwrap();
    d.pump();
    assert_eq!(
        d.got,
        [ToProxy::StreamtypeCreate {
            pid: std::process::id(),
            initial_tx_credit: 500_000_000,
            streamtype: "tele".into()
        }]
    );
    d.send(ToClient::CreateResult {
        status: 0,
        client_buflen: 32768,
        rideshare: String::new(),
    });
    assert_eq!(
        d.got[1..],
        [
            ToProxy::Metadata {
                name: "region".into(),
                value: b"eu".to_vec()
            },
            ToProxy::PayloadLengthHint(5),
            ToProxy::OnwardConnect
        ]
    );
    // The daemon's states become the stream's (repeats and CREATING skipped).
    d.send(ToClient::conn_state(Creating, 0));
    d.send(ToClient::conn_state(Connecting, 0));
    d.send(ToClient::Metadata {
        name: "ctype".into(),
        value: b"text/plain".to_vec(),
    });
    d.send(ToClient::conn_state(Connected, 0));
    assert_eq!(d.states(), [Creating, Poll, Connecting, Connected]);
    assert_eq!(
        d.e.get_metadata(s, "ctype").unwrap(),
        Some(&b"text/plain"[..])
    );
    // Writes go out as TX_PAYLOAD; RX_PAYLOAD comes back as rx.
    assert!(d.events.iter().any(|e| matches!(e, Event::Writable { .. })));
    d.e.write(d.now, s, b"hello", Flags::SOM | Flags::EOM)
        .unwrap();
    d.pump();
    assert_eq!(
        d.got.last(),
        Some(&ToProxy::TxPayload(Payload::new(
            b"hello".to_vec(),
            Flags::SOM | Flags::EOM
        )))
    );
    d.send(ToClient::RxPayload(Payload::new(
        b"world".to_vec(),
        Flags::SOM | Flags::EOM,
    )));
    assert!(d.events.iter().any(|e| matches!(
        e,
        Event::Rx { data, flags, .. } if data == b"world" && *flags == Flags::SOM | Flags::EOM
    )));
    d.send(ToClient::conn_state(QosAckRemote, 0));
    d.send(ToClient::conn_state(Disconnected, 0));
    assert_eq!(d.states()[3..], [Connected, QosAckRemote, Disconnected]);
    // Destroying tells the daemon.
    d.e.destroy(d.now, s).unwrap();
    d.pump();
    assert_eq!(d.got.last(), Some(&ToProxy::Destroying));
}

#[test]
fn a_lost_daemon_means_retries_and_a_fresh_create() {
    let mut d = Daemon::new();
    let s = d.e.create(d.now, "tele").unwrap();
    d.e.client_connect(d.now, s).unwrap();
    d.pump();
    d.send(ToClient::CreateResult {
        status: 0,
        client_buflen: 32768,
        rideshare: String::new(),
    });
    d.send(ToClient::conn_state(Connected, 0));
    // The daemon dies: DISCONNECTED, then a new link after the backoff.
    let c = *d.conns.last().unwrap();
    d.e.handle_closed(d.now, c);
    d.pump();
    assert_eq!(d.states(), [Creating, Connecting, Connected, Disconnected]);
    assert!(d
        .events
        .iter()
        .any(|e| matches!(e, Event::ConnectionError { .. })));
    d.now += Duration::from_millis(150);
    d.e.handle_timeout(d.now);
    d.pump();
    assert_eq!(d.conns.len(), 2);
    assert!(matches!(
        d.got.last(),
        Some(ToProxy::StreamtypeCreate { .. })
    ));
    // A refused create is a failed attempt.
    d.send(ToClient::CreateResult {
        status: 1,
        client_buflen: 0,
        rideshare: String::new(),
    });
    assert_eq!(d.states().last(), Some(&Unreachable));
    // Hostile bytes from the "daemon" fail the link, never panic.
    d.now += Duration::from_millis(150);
    d.e.handle_timeout(d.now);
    d.pump();
    let c = *d.conns.last().unwrap();
    d.e.handle_data(d.now, c, &[0x99, 0xff, 0xff, 1, 2, 3]);
    d.pump();
    assert!(
        d.events
            .iter()
            .filter(|e| matches!(e, Event::ConnectionError { .. }))
            .count()
            >= 3
    );
}
