//! Our proxy client mode against our proxy daemon, end to end in memory: an
//! application engine with `EngineConfig::proxy`, a daemon engine running
//! `ProxyServer`, and a raw echo server the daemon's onward streams reach.
//! The application uses the plain engine API and sees a direct-looking stream.

use ss_core::engine::{ListenerId, SockAddr};
use ss_core::proxy::server::{ProxyConfig, ProxyServer};
use ss_core::{Action, ConnId, Engine, EngineConfig, Event, Flags, Policy, StreamState};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const APP: usize = 0;
const DAEMON: usize = 1;
const PEER: usize = 2;

struct Net {
    e: Vec<Engine>,
    px: ProxyServer,
    now: Instant,
    listeners: BTreeMap<String, (usize, ListenerId)>,
    /// (engine, conn) -> (engine, conn) for both directions.
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    app_events: Vec<Event>,
    echo: BTreeMap<ss_core::StreamId, Vec<u8>>,
    /// HTTP request bodies the peer's `hsrv` server received, whole.
    bodies: Vec<Vec<u8>>,
}

const DAEMON_POLICY: &str = r#"{"retry": [{"r": {"backoff": [100], "conceal": 5, "jitterpc": 0}}],
    "s": [{"echo": {"endpoint": "+@echo.e2e", "protocol": "raw", "retry": "r"}}]}"#;
const PEER_POLICY: &str =
    r#"{"s": [{"srv": {"server": true, "endpoint": "+@echo.e2e", "protocol": "raw"}}]}"#;

impl Net {
    fn new() -> Self {
        let app_policy = r#"{"retry": [{"r": {"backoff": [100], "conceal": 5, "jitterpc": 0}}],
                "s": [{"echo": {"endpoint": "never.resolved.here", "port": 1,
                                "protocol": "raw", "retry": "r"}}]}"#;
        Self::with(app_policy, DAEMON_POLICY, PEER_POLICY)
    }

    fn with(app_policy: &str, daemon_policy: &str, peer_policy: &str) -> Self {
        let now = Instant::now();
        let app_policy = Policy::parse(app_policy).unwrap();
        let app = Engine::new(
            app_policy,
            EngineConfig {
                proxy: Some(SockAddr::UnixAbstract("proxy.e2e".into())),
                ..Default::default()
            },
        );
        let mut dp = Policy::parse(daemon_policy).unwrap();
        ProxyServer::install(&mut dp, "+@proxy.e2e").unwrap();
        let mut daemon = Engine::new(dp, EngineConfig::default());
        let mut px = ProxyServer::new(ProxyConfig::default());
        px.start(&mut daemon, now).unwrap();
        let peer_policy = Policy::parse(peer_policy).unwrap();
        let servers: Vec<String> = peer_policy
            .streamtypes
            .iter()
            .filter(|s| s.server)
            .map(|s| s.name.clone())
            .collect();
        let mut peer = Engine::new(peer_policy, EngineConfig::default());
        for name in servers {
            peer.create(now, &name).unwrap();
        }
        let mut n = Net {
            e: vec![app, daemon, peer],
            px,
            now,
            listeners: BTreeMap::new(),
            links: BTreeMap::new(),
            app_events: vec![],
            echo: BTreeMap::new(),
            bodies: vec![],
        };
        n.pump();
        n
    }

    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut any = false;
            for i in 0..self.e.len() {
                while let Some(a) = self.e[i].poll_action() {
                    any = true;
                    self.act(i, a);
                }
                while let Some(ev) = self.e[i].poll_event() {
                    any = true;
                    let now = self.now;
                    match i {
                        APP => self.app_events.push(ev),
                        DAEMON => {
                            let _ = self.px.handle_event(&mut self.e[DAEMON], now, &ev);
                        }
                        _ => self.peer_event(ev),
                    }
                }
            }
            if !any {
                return;
            }
        }
        panic!("the network never went quiet");
    }

    fn act(&mut self, i: usize, a: Action) {
        let now = self.now;
        match a {
            Action::Listen { listener, bind } => {
                let name = bind.to_string();
                self.listeners.insert(name.clone(), (i, listener));
                self.e[i].handle_listening(now, listener, &name);
            }
            Action::Connect { conn, addr } => {
                match self.listeners.get(&addr.to_string()).copied() {
                    Some((j, l)) => match self.e[j].handle_accepted(now, l) {
                        Some(c2) => {
                            self.links.insert((i, conn), (j, c2));
                            self.links.insert((j, c2), (i, conn));
                            self.e[i].handle_connected(now, conn);
                        }
                        None => self.e[i].handle_connect_failed(now, conn, "refused"),
                    },
                    None => self.e[i].handle_connect_failed(now, conn, "refused"),
                }
            }
            Action::Transmit { conn, data } => {
                self.e[i].handle_sent(now, conn, data.len());
                if let Some(&(j, c2)) = self.links.get(&(i, conn)) {
                    self.e[j].handle_data(now, c2, &data);
                }
            }
            Action::Close { conn } => {
                if let Some((j, c2)) = self.links.remove(&(i, conn)) {
                    self.links.remove(&(j, c2));
                    self.e[j].handle_closed(now, c2);
                }
            }
            _ => {}
        }
    }

    fn peer_event(&mut self, ev: Event) {
        let now = self.now;
        let http = |e: &Engine, s| e.streamtype(s) == Some("hsrv");
        match ev {
            // An HTTP server: keep the body, answer "ok" at its end.
            Event::Rx {
                stream,
                data,
                flags,
            } if http(&self.e[PEER], stream) => {
                self.echo
                    .entry(stream)
                    .or_default()
                    .extend_from_slice(&data);
                if flags.contains(Flags::EOM) {
                    self.bodies
                        .push(self.echo.remove(&stream).unwrap_or_default());
                    self.e[PEER].server_ack(stream, 200).unwrap();
                    self.e[PEER].request_tx_len(now, stream, 2).unwrap();
                }
            }
            Event::Writable { stream, .. } if http(&self.e[PEER], stream) => {
                let _ = self.e[PEER].write(now, stream, b"ok", Flags::SOM | Flags::EOM);
            }
            Event::Rx { stream, data, .. } => {
                self.echo
                    .entry(stream)
                    .or_default()
                    .extend_from_slice(&data);
                let _ = self.e[PEER].request_tx(now, stream);
            }
            Event::Writable { stream, .. } => {
                if let Some(b) = self.echo.remove(&stream) {
                    let _ = self.e[PEER].write(now, stream, &b, Flags::NONE);
                }
            }
            _ => {}
        }
    }

    fn app_states(&self) -> Vec<StreamState> {
        self.app_events
            .iter()
            .filter_map(|e| match e {
                Event::State { state, .. } => Some(*state),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn an_application_stream_through_our_daemon() {
    let mut n = Net::new();
    let now = n.now;
    let s = n.e[APP].create(now, "echo").unwrap();
    n.e[APP].request_tx(now, s).unwrap();
    n.pump();
    use StreamState::*;
    assert_eq!(n.app_states(), [Creating, Poll, Connecting, Connected]);
    assert!(n
        .app_events
        .iter()
        .any(|e| matches!(e, Event::Writable { .. })));
    let msg: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    for chunk in msg.chunks(16 * 1024) {
        n.e[APP].write(now, s, chunk, Flags::NONE).unwrap();
        n.pump();
    }
    let got: Vec<u8> = n
        .app_events
        .iter()
        .filter_map(|e| match e {
            Event::Rx { data, .. } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(got == msg, "{} of {} bytes echoed", got.len(), msg.len());
    // The application's destroy reaches the daemon, which lets go of the onward stream.
    n.e[APP].destroy(now, s).unwrap();
    n.pump();
    n.now += Duration::from_secs(10);
    for i in 0..3 {
        n.e[i].handle_timeout(n.now);
    }
    n.pump();
    assert_eq!(n.e[APP].conn_count(), 0);
    assert_eq!(n.e[DAEMON].conn_count(), 0, "daemon leaked a connection");
    assert_eq!(n.px.link_count(), 0);
}

/// A rideshare chain through the daemon: the daemon announces the chain in
/// CREATE_RESULT, the application (in proxy mode, with no HTTP settings of
/// its own) learns from `Engine::rideshare` which streamtype's part is due,
/// and the daemon's onward HTTP stream sends one multipart body with a part
/// per streamtype.
#[test]
fn a_rideshare_upload_through_our_daemon() {
    let app = r#"{"retry": [{"r": {"backoff": [100], "conceal": 5, "jitterpc": 0}}],
        "s": [{"up": {"endpoint": "never.resolved.here", "port": 1,
                      "protocol": "h1", "retry": "r"}}]}"#;
    let daemon = r#"{"retry": [{"r": {"backoff": [100], "conceal": 5, "jitterpc": 0}}],
        "s": [
          {"up": {"endpoint": "+@up.e2e", "protocol": "h1", "retry": "r",
                  "http_method": "POST", "http_url": "/up", "rideshare": "audio",
                  "http_multipart_name": "meta", "http_multipart_content_type": "application/json"}},
          {"audio": {"endpoint": "+@up.e2e", "protocol": "h1", "retry": "r",
                     "http_multipart_name": "audio", "http_multipart_filename": "a.raw",
                     "http_multipart_content_type": "application/octet-stream"}}]}"#;
    let peer = r#"{"s": [{"hsrv": {"server": true, "endpoint": "+@up.e2e", "protocol": "h1"}}]}"#;
    let mut n = Net::with(app, daemon, peer);
    let now = n.now;
    let s = n.e[APP].create(now, "up").unwrap();
    assert_eq!(n.e[APP].rideshare(s), Some("up"));
    n.e[APP].request_tx(now, s).unwrap();
    n.pump();
    let parts: [(&str, &[u8]); 2] = [("up", b"{\"k\":1}"), ("audio", &[0xA5; 3000])];
    let mut seen = vec![];
    for (_, data) in parts {
        assert!(
            n.app_events
                .iter()
                .any(|e| matches!(e, Event::Writable { .. })),
            "{:?}",
            n.app_states()
        );
        n.app_events
            .retain(|e| !matches!(e, Event::Writable { .. }));
        seen.push(n.e[APP].rideshare(s).unwrap().to_string());
        n.e[APP]
            .write(now, s, data, Flags::SOM | Flags::EOM)
            .unwrap();
        n.e[APP].request_tx(now, s).unwrap();
        n.pump();
    }
    assert_eq!(seen, ["up", "audio"], "the part each write belonged to");
    assert_eq!(
        n.bodies.len(),
        1,
        "one transaction: {:?}",
        n.bodies
            .iter()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned())
            .collect::<Vec<_>>()
    );
    let body = String::from_utf8_lossy(&n.bodies[0]).into_owned();
    assert!(
        body.contains("name=\"meta\"") && body.contains("{\"k\":1}"),
        "{body}"
    );
    assert!(
        body.contains("name=\"audio\"; filename=\"a.raw\"")
            && body.contains("application/octet-stream"),
        "{body}"
    );
    let audio_at = body.find("a.raw").unwrap();
    assert!(
        body.find("{\"k\":1}").unwrap() < audio_at,
        "parts in chain order"
    );
    assert!(n.bodies[0].windows(3000).any(|w| w == [0xA5; 3000]));
    use StreamState::*;
    assert!(
        n.app_states().contains(&QosAckRemote),
        "{:?}",
        n.app_states()
    );
    assert_eq!(
        n.e[APP].rideshare(s),
        Some("up"),
        "back to its own after the body"
    );
}
