//! HTTP/2 client streams through the engine, in memory, against a server the
//! test scripts: rustls (ALPN `h2`) around an [`H2Server`] per connection.
//! The test decides what each request gets (an answer, RST_STREAM, GOAWAY),
//! so resets, GOAWAY and the peer's concurrent-stream limit are exercised
//! deterministically.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use ss_core::policy::{Cert, TrustStore};
use ss_core::proto::h2::{H2Config, H2Event, H2Server, StreamKey};
use ss_core::proto::tls::{rustls, TlsContext, TlsSession, WallClock};
use ss_core::{Action, ConnId, Engine, EngineConfig, Event, Flags, Policy, StreamId, StreamState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 2025-01-01, inside the certificates' validity.
const NOW: u64 = 1_735_689_600;

const POLICY: &str = r#"{
  "retry": [{"r": {"backoff": [100, 200], "conceal": 3, "jitterpc": 0}}],
  "s": [
    {"get": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
             "http_url": "/${f}", "retry": "r",
             "metadata": [{"f": ""}]}},
    {"post": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
              "http_url": "/${f}", "http_method": "POST",
              "retry": "r", "metadata": [{"f": ""}]}},
    {"form": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
              "http_url": "/${f}", "http_method": "POST", "http_multipart_name": "file",
              "http_multipart_filename": "a.txt", "http_multipart_content_type": "text/plain",
              "retry": "r", "metadata": [{"f": ""}]}},
    {"up": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
            "http_url": "/${f}", "http_method": "POST", "http_multipart_name": "meta",
            "http_multipart_content_type": "application/json", "rideshare": "up_img",
            "allow_redirects": true, "retry": "r", "metadata": [{"f": ""}]}},
    {"up_img": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
                "http_multipart_name": "image", "http_multipart_filename": "pic.jpg",
                "http_multipart_content_type": "image/jpeg", "rideshare": "up_log"}},
    {"up_log": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
                "http_multipart_name": "log", "http_multipart_filename": "log.txt"}},
    {"mpin": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
              "http_url": "/${f}", "http_multipart_ss_in": true, "retry": "r",
              "metadata": [{"f": ""}]}},
    {"follow": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
                "http_url": "/${f}", "allow_redirects": true, "retry": "r",
                "metadata": [{"f": ""}]}},
    {"follow_post": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
                     "http_url": "/${f}", "http_method": "POST", "allow_redirects": true,
                     "retry": "r", "metadata": [{"f": ""}]}},
    {"full": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
              "http_url": "/${f}", "retry": "r", "http_cookies": true,
              "http_auth_header": "authorization:", "http_auth_preamble": "Bearer ",
              "http_resp_map": [{"530": 1530}],
              "metadata": [{"f": ""}, {"tag": "x-tag:"}, {"ctype": "content-type:"}]}},
    {"form_url": {"endpoint": "127.0.0.1", "port": 443, "protocol": "h2", "tls": true,
                  "http_url": "/${f}", "http_method": "POST", "http_www_form_urlencoded": true,
                  "http_dsn_header": "x-dsn:", "retry": "r", "metadata": [{"f": ""}]}},
    {"srv": {"server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "raw",
             "tls": true}}
  ]
}"#;

/// The policy with a throwaway CA the clients trust and a leaf for 127.0.0.1.
fn policy() -> Policy {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ss h2 test CA");
    let ca_der = ca.self_signed(&ca_key).unwrap().der().to_vec();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap()
        .der()
        .to_vec();
    let mut p = Policy::parse(POLICY).unwrap();
    let cert = |name: &str, der: Vec<u8>| Cert {
        name: name.into(),
        der,
    };
    p.certs = vec![
        cert("ca", ca_der),
        cert("leaf", leaf),
        cert("leaf_key", leaf_key.serialize_der()),
    ];
    p.trust_stores = vec![TrustStore {
        name: "ts".into(),
        stack: vec!["ca".into()],
    }];
    for st in &mut p.streamtypes {
        if st.name == "srv" {
            st.server_cert = Some("leaf".into());
            st.server_key = Some("leaf_key".into());
        } else {
            st.tls_trust_store = Some("ts".into());
        }
    }
    p
}

/// A canned answer: status, headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// One server connection: TLS around an HTTP/2 server machine.
struct SrvConn {
    tls: TlsSession,
    h2: H2Server,
    closed: bool,
}

/// A request the server received.
#[derive(Clone, Debug)]
struct Req {
    conn: ConnId,
    key: StreamKey,
    /// Its HTTP/2 stream id (client streams are odd, in arrival order).
    stream_id: u32,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The whole request (body included) has arrived.
    complete: bool,
    answered: bool,
}

/// The client engine and the scripted server side, in memory.
struct Net {
    e: Engine,
    now: Instant,
    srv_cfg: Arc<rustls::ServerConfig>,
    h2cfg: H2Config,
    conns: BTreeMap<ConnId, SrvConn>,
    /// Every connection the client opened, in order.
    opened: Vec<ConnId>,
    reqs: Vec<Req>,
    events: Vec<Event>,
    /// Request bodies the client writes when its stream is writable.
    bodies: BTreeMap<StreamId, Vec<u8>>,
    /// Answer complete requests at once with `resp:` + path + body.
    auto: bool,
    /// The most requests ever open at once on one connection.
    max_open: usize,
    /// Canned answers by path (status, headers, body), instead of the echo.
    routes: BTreeMap<String, Answer>,
    /// Send answer bodies in DATA pieces of at most this many bytes.
    piece: usize,
    /// Streams that upload a rideshare body: each part's payload by the
    /// streamtype `Engine::rideshare` names when the stream is writable.
    parts: BTreeMap<StreamId, Vec<(String, Vec<u8>)>>,
    /// What `Engine::rideshare` said at each of those `Writable`s.
    ride_seen: Vec<String>,
    /// Bytes the server sent the client (TLS records included).
    to_client: usize,
}

impl Net {
    fn new(h2cfg: H2Config) -> Net {
        let p = policy();
        let clock = WallClock::new();
        clock.set_unix_secs(NOW);
        let mut ctx = TlsContext::with_default_provider(clock);
        let st = p.streamtypes.iter().find(|s| s.name == "srv").unwrap();
        let srv_cfg = ctx.server_config(&p, st, &[b"h2"]).unwrap();
        let mut e = Engine::new(p, EngineConfig::default());
        e.set_unix_time(NOW);
        Net {
            e,
            now: Instant::now(),
            srv_cfg,
            h2cfg,
            conns: BTreeMap::new(),
            opened: vec![],
            reqs: vec![],
            events: vec![],
            bodies: BTreeMap::new(),
            auto: true,
            max_open: 0,
            routes: BTreeMap::new(),
            piece: usize::MAX,
            parts: BTreeMap::new(),
            ride_seen: vec![],
            to_client: 0,
        }
    }

    fn get(&mut self, f: &str) -> StreamId {
        let id = self.e.create(self.now, "get").unwrap();
        self.e.set_metadata(id, "f", f.as_bytes()).unwrap();
        self.e.request_tx(self.now, id).ok();
        id
    }

    fn post(&mut self, f: &str, body: Vec<u8>) -> StreamId {
        let id = self.e.create(self.now, "post").unwrap();
        self.e.set_metadata(id, "f", f.as_bytes()).unwrap();
        let len = body.len() as u64;
        self.bodies.insert(id, body);
        self.e.request_tx_len(self.now, id, len).unwrap();
        id
    }

    /// Run both sides until nothing moves.
    fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut any = false;
            while let Some(a) = self.e.poll_action() {
                any = true;
                match a {
                    Action::Resolve { conn, .. } => {
                        self.e
                            .handle_resolved(self.now, conn, &["127.0.0.1".parse().unwrap()]);
                    }
                    Action::Connect { conn, .. } => {
                        let tls = TlsSession::server(self.srv_cfg.clone()).unwrap();
                        let h2 = H2Server::new(self.h2cfg);
                        self.conns.insert(
                            conn,
                            SrvConn {
                                tls,
                                h2,
                                closed: false,
                            },
                        );
                        self.opened.push(conn);
                        self.e.handle_connected(self.now, conn);
                    }
                    Action::Transmit { conn, data } => {
                        self.e.handle_sent(self.now, conn, data.len());
                        self.server_input(conn, &data);
                    }
                    Action::Close { conn } => {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.closed = true;
                            c.h2.handle_eof();
                        }
                    }
                    _ => {}
                }
            }
            while let Some(ev) = self.e.poll_event() {
                any = true;
                if let Event::Writable { stream, .. } = &ev {
                    if let Some(b) = self.bodies.remove(stream) {
                        self.e
                            .write(self.now, *stream, &b, Flags::SOM | Flags::EOM)
                            .unwrap();
                    } else if let Some(parts) = self.parts.get(stream) {
                        let cur = self.e.rideshare(*stream).unwrap().to_string();
                        let (_, b) = parts
                            .iter()
                            .find(|(n, _)| *n == cur)
                            .unwrap_or_else(|| panic!("no part for {cur}"))
                            .clone();
                        self.ride_seen.push(cur);
                        // Each part in two writes, SOM then EOM.
                        let (a, z) = b.split_at(b.len() / 2);
                        self.e.write(self.now, *stream, a, Flags::SOM).unwrap();
                        self.e.write(self.now, *stream, z, Flags::EOM).unwrap();
                    }
                }
                self.events.push(ev);
            }
            any |= self.server_step();
            if !any {
                return;
            }
        }
        panic!("pump does not settle");
    }

    fn server_input(&mut self, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closed {
            return;
        }
        let (mut plain, mut wire) = (vec![], vec![]);
        c.tls
            .handle_input(data, &mut plain, &mut wire)
            .expect("server TLS");
        if !plain.is_empty() {
            c.h2.handle_input(&plain).expect("server h2");
        }
        if !wire.is_empty() {
            self.to_client += wire.len();
            self.e.handle_data(self.now, conn, &wire);
        }
    }

    /// Server machines: take events, answer, send bytes. Whether anything moved.
    fn server_step(&mut self) -> bool {
        let mut any = false;
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            while let Some(ev) = self
                .conns
                .get_mut(&conn)
                .filter(|c| !c.closed)
                .and_then(|c| c.h2.poll_event())
            {
                any = true;
                match ev {
                    H2Event::Request {
                        key,
                        method,
                        path,
                        headers,
                        end_stream,
                        ..
                    } => {
                        let n = self.reqs.iter().filter(|r| r.conn == conn).count() as u32;
                        self.reqs.push(Req {
                            conn,
                            key,
                            stream_id: 2 * n + 1,
                            method,
                            path,
                            headers,
                            body: vec![],
                            complete: end_stream,
                            answered: false,
                        });
                    }
                    H2Event::Data { key, data, eom } => {
                        if let Some(r) = self
                            .reqs
                            .iter_mut()
                            .find(|r| r.conn == conn && r.key == key)
                        {
                            r.body.extend(data);
                            r.complete |= eom;
                        }
                    }
                    _ => {}
                }
            }
            let open = self
                .reqs
                .iter()
                .filter(|r| r.conn == conn && !r.answered)
                .count();
            self.max_open = self.max_open.max(open);
            if self.auto {
                let ready: Vec<usize> = (0..self.reqs.len())
                    .filter(|&i| {
                        let r = &self.reqs[i];
                        r.conn == conn && r.complete && !r.answered
                    })
                    .collect();
                for i in ready {
                    self.answer(i);
                    any = true;
                }
            }
            any |= self.flush(conn);
        }
        any
    }

    /// Send what the server machine of `conn` queued.
    fn flush(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.closed {
            return false;
        }
        let mut wire = vec![];
        while let Some(b) = c.h2.poll_transmit() {
            c.tls.write(&b, &mut wire).unwrap();
        }
        if wire.is_empty() {
            return false;
        }
        self.to_client += wire.len();
        self.e.handle_data(self.now, conn, &wire);
        true
    }

    /// Answer request `i` from `routes`, else with 200 and `resp:` + path + body.
    fn answer(&mut self, i: usize) {
        let r = &mut self.reqs[i];
        r.answered = true;
        let (status, headers, body) = match self.routes.get(&r.path) {
            Some(a) => (a.0, a.1.clone(), a.2.clone()),
            None => {
                let mut body = format!("resp:{}:", r.path).into_bytes();
                body.extend_from_slice(&r.body);
                (200, vec![], body)
            }
        };
        let c = self.conns.get_mut(&r.conn).unwrap();
        c.h2.respond(r.key, status, &headers, body.is_empty())
            .unwrap();
        let mut off = 0;
        // Bodies here are small: all of it fits the machine's buffer.
        while off < body.len() {
            let end = body.len().min(off.saturating_add(self.piece));
            let n =
                c.h2.send_data(r.key, &body[off..end], end == body.len())
                    .unwrap();
            assert!(n > 0, "server send_data took nothing");
            off += n;
        }
    }

    /// Reset request `i` with `reason`.
    fn reset(&mut self, i: usize, reason: u32) {
        let r = &mut self.reqs[i];
        r.answered = true;
        let c = self.conns.get_mut(&r.conn).unwrap();
        c.h2.reset(r.key, reason).unwrap();
        let conn = r.conn;
        self.flush(conn);
    }

    /// Write raw frame bytes to the client on `conn` (after what is queued).
    fn inject(&mut self, conn: ConnId, frame: &[u8]) {
        self.flush(conn);
        let c = self.conns.get_mut(&conn).unwrap();
        let mut wire = vec![];
        c.tls.write(frame, &mut wire).unwrap();
        self.to_client += wire.len();
        self.e.handle_data(self.now, conn, &wire);
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.e.handle_timeout(self.now);
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

    fn rx(&self, id: StreamId) -> (Vec<u8>, Vec<Flags>) {
        let mut body = vec![];
        let mut flags = vec![];
        for e in &self.events {
            if let Event::Rx {
                stream,
                data,
                flags: f,
            } = e
            {
                if *stream == id {
                    body.extend_from_slice(data);
                    flags.push(*f);
                }
            }
        }
        (body, flags)
    }

    fn done(&self, id: StreamId) -> bool {
        matches!(
            self.states(id).last(),
            Some(StreamState::Disconnected | StreamState::AllRetriesFailed)
        ) && self.states(id).contains(&StreamState::QosAckRemote)
            || self.states(id).last() == Some(&StreamState::AllRetriesFailed)
    }

    /// Assert stream `id` got exactly `want` once, SOM first and EOM last.
    fn assert_got(&self, id: StreamId, want: &[u8]) {
        let (body, flags) = self.rx(id);
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(want),
            "{id:?}: {:?}",
            self.states(id)
        );
        assert!(flags[0].contains(Flags::SOM), "{flags:?}");
        assert!(flags.last().unwrap().contains(Flags::EOM), "{flags:?}");
        let soms = flags.iter().filter(|f| f.contains(Flags::SOM)).count();
        let eoms = flags.iter().filter(|f| f.contains(Flags::EOM)).count();
        assert_eq!((soms, eoms), (1, 1), "{flags:?}");
        let states = self.states(id);
        assert_eq!(
            states.last(),
            Some(&StreamState::Disconnected),
            "{id:?}: {states:?}"
        );
        let acks = states
            .iter()
            .filter(|s| **s == StreamState::QosAckRemote)
            .count();
        assert_eq!(acks, 1, "{id:?}: {states:?}");
    }
}

use StreamState::*;

/// A transaction asked for with `request_tx`.
const OK: [StreamState; 6] = [
    Creating,
    Poll,
    Connecting,
    Connected,
    QosAckRemote,
    Disconnected,
];

/// A GOAWAY frame: no error, streams above `last` not processed.
fn goaway(last: u32) -> Vec<u8> {
    let mut f = vec![0, 0, 8, 0x7, 0, 0, 0, 0, 0];
    f.extend_from_slice(&last.to_be_bytes());
    f.extend_from_slice(&0u32.to_be_bytes());
    f
}

#[test]
fn streams_over_one_tls_h2_connection_get_their_own_answers() {
    let mut n = Net::new(H2Config::default());
    let first = n.get("a");
    n.pump();
    n.assert_got(first, b"resp:/a:");
    assert_eq!(n.states(first), OK);
    let ids: Vec<StreamId> = (0..5).map(|i| n.get(&format!("g{i}"))).collect();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let p = n.post("up", big.clone());
    n.pump();
    for (i, id) in ids.iter().enumerate() {
        n.assert_got(*id, format!("resp:/g{i}:").as_bytes());
        assert_eq!(n.states(*id), OK);
    }
    let mut want = b"resp:/up:".to_vec();
    want.extend_from_slice(&big);
    n.assert_got(p, &want);
    assert_eq!(n.opened.len(), 1, "one connection");
    assert_eq!(n.reqs.len(), 7);
}

#[test]
fn a_reset_stream_fails_and_retries_while_its_neighbours_complete() {
    let mut n = Net::new(H2Config::default());
    let first = n.get("a");
    n.pump();
    n.assert_got(first, b"resp:/a:");
    n.auto = false;
    let ids: Vec<StreamId> = (0..4).map(|i| n.get(&format!("g{i}"))).collect();
    n.pump();
    assert_eq!(n.reqs.len(), 5);
    // The third of the four is reset (REFUSED_STREAM); the others answered.
    n.reset(3, 0x7);
    for i in [1, 2, 4] {
        n.answer(i);
    }
    n.auto = true;
    n.pump();
    for i in [0, 1, 3] {
        n.assert_got(ids[i], format!("resp:/g{i}:").as_bytes());
        assert_eq!(n.states(ids[i]), OK);
    }
    // The reset one failed unreached, backs off, retries on the same
    // connection and is answered.
    assert_eq!(n.states(ids[2]), [Creating, Poll, Connecting, Unreachable]);
    assert!(n
        .events
        .iter()
        .any(|e| matches!(e, Event::ConnectionError { stream, .. } if *stream == ids[2])));
    n.advance(Duration::from_millis(150));
    n.assert_got(ids[2], b"resp:/g2:");
    assert_eq!(
        n.states(ids[2]),
        [
            Creating,
            Poll,
            Connecting,
            Unreachable,
            Poll,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
    assert_eq!(n.opened.len(), 1, "the reset did not cost the connection");
    assert_eq!(n.reqs.len(), 6);
}

#[test]
fn goaway_fails_the_unprocessed_streams_which_retry_on_a_new_connection() {
    let mut n = Net::new(H2Config::default());
    let first = n.get("a");
    n.pump();
    n.assert_got(first, b"resp:/a:");
    n.auto = false;
    let ids: Vec<StreamId> = (0..4).map(|i| n.get(&format!("g{i}"))).collect();
    n.pump();
    assert_eq!(n.reqs.len(), 5);
    let conn = n.opened[0];
    // Streams 3 and 5 (g0, g1) are answered; GOAWAY says nothing above 5
    // was processed, so g2 and g3 (7, 9) must go elsewhere.
    assert_eq!(n.reqs[2].stream_id, 5);
    n.answer(1);
    n.answer(2);
    n.inject(conn, &goaway(5));
    n.reqs[3].answered = true;
    n.reqs[4].answered = true;
    n.auto = true;
    n.pump();
    n.assert_got(ids[0], b"resp:/g0:");
    n.assert_got(ids[1], b"resp:/g1:");
    // Within the policy's backoff the others are retried and answered.
    for _ in 0..10 {
        if ids.iter().all(|id| n.done(*id)) {
            break;
        }
        n.advance(Duration::from_millis(100));
    }
    for i in [2, 3] {
        n.assert_got(ids[i], format!("resp:/g{i}:").as_bytes());
        let st = n.states(ids[i]);
        assert_eq!(
            &st[..4],
            [Creating, Poll, Connecting, Unreachable],
            "{st:?}"
        );
    }
    // The retries went to new connections, none to the old one.
    assert!(n.opened.len() >= 2, "{:?}", n.opened);
    let retried: Vec<&Req> = n.reqs.iter().filter(|r| r.conn != conn).collect();
    assert_eq!(retried.len(), 2, "{retried:?}");
    let mut paths: Vec<&str> = retried.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/g2", "/g3"]);
    assert_eq!(n.reqs.iter().filter(|r| r.conn == conn).count(), 5);
    // And a new stream after that joins one of the new connections.
    let before = n.opened.len();
    let late = n.get("late");
    n.pump();
    n.assert_got(late, b"resp:/late:");
    assert_eq!(n.opened.len(), before);
    assert_ne!(n.reqs.last().unwrap().conn, conn);
}

#[test]
fn graceful_goaway_lets_processed_streams_finish() {
    let mut n = Net::new(H2Config::default());
    let first = n.get("a");
    n.pump();
    n.assert_got(first, b"resp:/a:");
    n.auto = false;
    let ids: Vec<StreamId> = (0..3).map(|i| n.get(&format!("g{i}"))).collect();
    n.pump();
    let conn = n.opened[0];
    n.conns.get_mut(&conn).unwrap().h2.go_away();
    n.flush(conn);
    n.pump();
    n.auto = true;
    n.pump();
    for (i, id) in ids.iter().enumerate() {
        n.assert_got(*id, format!("resp:/g{i}:").as_bytes());
        assert_eq!(n.states(*id), OK);
    }
    // A stream after GOAWAY opens a new connection.
    let late = n.get("late");
    n.pump();
    n.assert_got(late, b"resp:/late:");
    assert_eq!(n.opened.len(), 2);
}

#[test]
fn the_peers_concurrent_stream_limit_is_respected() {
    let mut n = Net::new(H2Config {
        max_concurrent_streams: 2,
        ..H2Config::default()
    });
    let first = n.get("a");
    n.pump();
    n.assert_got(first, b"resp:/a:");
    n.auto = false;
    n.max_open = 0;
    let ids: Vec<StreamId> = (0..6).map(|i| n.get(&format!("g{i}"))).collect();
    n.pump();
    // Answer the oldest open request one at a time.
    for _ in 0..20 {
        let Some(i) = n.reqs.iter().position(|r| r.complete && !r.answered) else {
            break;
        };
        let open = n.reqs.iter().filter(|r| !r.answered).count();
        assert!(open <= 2, "{open} requests open at once");
        n.answer(i);
        n.pump();
    }
    assert!(n.max_open <= 2, "{} open at once", n.max_open);
    assert_eq!(n.max_open, 2, "the limit was reached");
    for (i, id) in ids.iter().enumerate() {
        n.assert_got(*id, format!("resp:/g{i}:").as_bytes());
        assert_eq!(n.states(*id), OK);
    }
    assert_eq!(n.reqs.len(), 7, "no request refused and repeated");
    assert_eq!(n.opened.len(), 1);
}

#[test]
fn streams_started_together_share_one_connection() {
    // Three streams asked for at once, while no connection exists yet: like
    // the reference (which queues them on the connection in progress, to
    // learn its ALPN) they should all ride one connection.
    let mut n = Net::new(H2Config::default());
    let ids: Vec<StreamId> = (0..3).map(|i| n.get(&format!("g{i}"))).collect();
    n.pump();
    for (i, id) in ids.iter().enumerate() {
        n.assert_got(*id, format!("resp:/g{i}:").as_bytes());
        assert_eq!(n.states(*id), OK);
    }
    assert_eq!(n.opened.len(), 1, "connections for 3 streams from cold");
}

/// The boundary of a `multipart/form-data` request's `content-type`.
fn req_boundary(r: &Req) -> String {
    let ct = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no content-type: {:?}", r.headers));
    ct.strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {ct}"))
        .trim_matches('"')
        .to_string()
}

fn has_header(r: &Req, name: &str) -> bool {
    r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
}

#[test]
fn multipart_name_wraps_an_h2_request_body_as_one_part() {
    let mut n = Net::new(H2Config::default());
    let id = n.e.create(n.now, "form").unwrap();
    n.e.set_metadata(id, "f", b"form").unwrap();
    n.bodies.insert(id, b"hello, form".to_vec());
    n.e.request_tx_len(n.now, id, 11).unwrap();
    n.pump();
    assert_eq!(n.reqs.len(), 1);
    let r = n.reqs[0].clone();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/form"));
    let b = req_boundary(&r);
    assert!(!has_header(&r, "content-length"), "{:?}", r.headers);
    let want = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
         Content-Type: text/plain\r\n\r\nhello, form\r\n--{b}--\r\n"
    );
    assert_eq!(String::from_utf8(r.body).unwrap(), want);
    n.assert_got(id, format!("resp:/form:{want}").as_bytes());
    assert_eq!(n.states(id), OK);
}

#[test]
fn rideshare_parts_of_three_streamtypes_share_one_h2_request_body() {
    let mut n = Net::new(H2Config::default());
    let id = n.e.create(n.now, "up").unwrap();
    n.e.set_metadata(id, "f", b"up").unwrap();
    assert_eq!(n.e.rideshare(id), Some("up"));
    n.parts.insert(
        id,
        vec![
            ("up".into(), b"{\"k\":1}".to_vec()),
            ("up_img".into(), b"JPEGDATA".to_vec()),
            ("up_log".into(), b"log line\n".to_vec()),
        ],
    );
    n.e.request_tx(n.now, id).unwrap();
    n.pump();
    assert_eq!(n.ride_seen, ["up", "up_img", "up_log"]);
    assert_eq!(n.reqs.len(), 1);
    let r = n.reqs[0].clone();
    assert!(r.complete);
    let b = req_boundary(&r);
    let want = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"meta\"\r\n\
         Content-Type: application/json\r\n\r\n{{\"k\":1}}\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"pic.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\nJPEGDATA\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"log\"; filename=\"log.txt\"\r\n\
         \r\nlog line\n\r\n--{b}--\r\n"
    );
    assert_eq!(String::from_utf8(r.body).unwrap(), want);
    n.assert_got(id, format!("resp:/up:{want}").as_bytes());
    assert_eq!(n.states(id), OK);
    assert_eq!(n.e.rideshare(id), Some("up"));
}

#[test]
fn multipart_responses_are_split_into_parts_over_h2() {
    let mut n = Net::new(H2Config::default());
    let body = "preamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\none\r\n\
                --XX\r\nX-Part: 2\r\n\r\ntwo, longer\r\n--XX--\r\nepilogue";
    n.routes.insert(
        "/parts".into(),
        (
            200,
            vec![("content-type".into(), "multipart/mixed; boundary=XX".into())],
            body.as_bytes().to_vec(),
        ),
    );
    // Small DATA frames, so delimiters straddle them.
    n.piece = 5;
    let id = n.e.create(n.now, "mpin").unwrap();
    n.e.set_metadata(id, "f", b"parts").unwrap();
    n.e.request_tx(n.now, id).unwrap();
    n.pump();
    assert_eq!(n.states(id), OK);
    let rx: Vec<(Vec<u8>, Flags)> = n
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Rx {
                stream,
                data,
                flags,
            } if *stream == id => Some((data.clone(), *flags)),
            _ => None,
        })
        .collect();
    assert_eq!(rx.first().unwrap(), &(vec![], Flags::RELATED_START));
    assert_eq!(rx.last().unwrap(), &(vec![], Flags::RELATED_END));
    let mut parts: Vec<Vec<u8>> = vec![];
    let mut open = false;
    for (d, f) in &rx[1..rx.len() - 1] {
        if f.contains(Flags::SOM) {
            assert!(!open, "SOM inside a part: {rx:?}");
            parts.push(vec![]);
            open = true;
        }
        assert!(open, "data outside a part: {rx:?}");
        parts.last_mut().unwrap().extend_from_slice(d);
        if f.contains(Flags::EOM) {
            open = false;
        }
    }
    assert!(!open);
    assert_eq!(parts, [b"one".to_vec(), b"two, longer".to_vec()]);
}

#[test]
fn redirects_fail_an_h2_attempt_unless_allowed() {
    let mut n = Net::new(H2Config::default());
    n.routes.insert(
        "/moved".into(),
        (
            302,
            vec![("location".into(), "/a".into())],
            b"gone".to_vec(),
        ),
    );
    let id = n.get("moved");
    n.pump();
    assert_eq!(n.states(id), [Creating, Poll, Connecting, Unreachable]);
    assert!(n.events.iter().any(|e| matches!(
        e,
        Event::ConnectionError { stream, reason }
            if *stream == id && reason.contains("redirect (302) to /a not followed")
    )));
    assert_eq!(n.reqs.len(), 1, "/a was not asked for");
    assert!(n.rx(id).0.is_empty(), "no payload of the redirect");
}

#[test]
fn allowed_redirects_are_followed_over_h2() {
    let mut n = Net::new(H2Config::default());
    let redirect = |to: &str| (302, vec![("location".into(), to.to_string())], vec![]);
    n.routes.insert("/r1".into(), redirect("/r2"));
    n.routes.insert(
        "/r2".into(),
        (
            301,
            vec![("location".into(), "https://127.0.0.1/final?x=1".into())],
            b"moved".to_vec(),
        ),
    );
    n.routes.insert("/loop".into(), redirect("/loop"));
    let id = n.e.create(n.now, "follow").unwrap();
    n.e.set_metadata(id, "f", b"r1").unwrap();
    n.e.request_tx(n.now, id).unwrap();
    n.pump();
    n.assert_got(id, b"resp:/final?x=1:");
    assert_eq!(
        n.states(id),
        [
            Creating,
            Poll,
            Connecting,
            Connecting,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
    let paths: Vec<&str> = n.reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/r1", "/r2", "/final?x=1"]);
    assert_eq!(n.opened.len(), 1, "every hop rode the same h2 connection");
    // The next transaction starts from the policy's URL again; a loop ends
    // after five hops.
    n.e.set_metadata(id, "f", b"loop").unwrap();
    n.e.request_tx(n.now, id).unwrap();
    n.pump();
    assert!(n.events.iter().any(|e| matches!(
        e,
        Event::ConnectionError { stream, reason }
            if *stream == id && reason.contains("more than 5 redirects")
    )));
    let loops = n.reqs.iter().filter(|r| r.path == "/loop").count();
    assert_eq!(loops, 6, "the first request and five hops");
    assert_eq!(n.opened.len(), 1);
}

#[test]
fn a_307_resends_the_rideshare_body_and_a_303_turns_post_into_get_over_h2() {
    let mut n = Net::new(H2Config::default());
    n.routes.insert(
        "/up307".into(),
        (307, vec![("location".into(), "/up-again".into())], vec![]),
    );
    n.routes.insert(
        "/see".into(),
        (303, vec![("location".into(), "/seen".into())], vec![]),
    );
    let id = n.e.create(n.now, "up").unwrap();
    n.e.set_metadata(id, "f", b"up307").unwrap();
    n.parts.insert(
        id,
        vec![
            ("up".into(), b"{}".to_vec()),
            ("up_img".into(), b"IMG".to_vec()),
            ("up_log".into(), b"LOG".to_vec()),
        ],
    );
    n.e.request_tx(n.now, id).unwrap();
    n.pump();
    // Each part was asked for twice: once per request.
    assert_eq!(
        n.ride_seen,
        ["up", "up_img", "up_log", "up", "up_img", "up_log"]
    );
    assert_eq!(n.reqs.len(), 2);
    let (a, b) = (n.reqs[0].clone(), n.reqs[1].clone());
    assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/up307"));
    assert_eq!((b.method.as_str(), b.path.as_str()), ("POST", "/up-again"));
    let bd = req_boundary(&b);
    let want = format!(
        "--{bd}\r\nContent-Disposition: form-data; name=\"meta\"\r\n\
         Content-Type: application/json\r\n\r\n{{}}\r\n\
         --{bd}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"pic.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\nIMG\r\n\
         --{bd}\r\nContent-Disposition: form-data; name=\"log\"; filename=\"log.txt\"\r\n\
         \r\nLOG\r\n--{bd}--\r\n"
    );
    assert_eq!(String::from_utf8(b.body.clone()).unwrap(), want);
    n.assert_got(id, format!("resp:/up-again:{want}").as_bytes());

    let p = n.e.create(n.now, "follow_post").unwrap();
    n.e.set_metadata(p, "f", b"see").unwrap();
    n.bodies.insert(p, b"form=1".to_vec());
    n.e.request_tx_len(n.now, p, 6).unwrap();
    n.pump();
    let r: Vec<&Req> = n.reqs.iter().skip(2).collect();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].method.as_str(), r[0].body.as_slice()),
        ("POST", &b"form=1"[..])
    );
    assert_eq!((r[1].method.as_str(), r[1].path.as_str()), ("GET", "/seen"));
    assert!(r[1].body.is_empty());
    n.assert_got(p, b"resp:/seen:");
}

#[test]
fn streams_waiting_on_a_connection_lost_in_its_handshake_retry() {
    // Found by the HTTP/2 simulation (conformance/tests/sim_h2.rs, seed 5):
    // three streams started together wait on the first one's connection to
    // learn its ALPN; the connection closes during the TLS handshake. The
    // first stream failed (UNREACHABLE, backoff) but the two waiting on it
    // were dropped with the connection and stayed CONNECTING forever.
    let mut n = Net::new(H2Config::default());
    let ids: Vec<StreamId> = (0..3).map(|i| n.get(&format!("g{i}"))).collect();
    // Connect, but the peer closes before the handshake completes.
    let mut conn = None;
    while let Some(a) = n.e.poll_action() {
        if let Action::Connect { conn: c, .. } = a {
            assert!(conn.is_none(), "one connection for the three");
            conn = Some(c);
        }
    }
    let conn = conn.expect("a Connect");
    n.e.handle_connected(n.now, conn);
    while n.e.poll_action().is_some() {}
    n.e.handle_closed(n.now, conn);
    n.pump();
    for id in &ids {
        assert_eq!(
            n.states(*id),
            [Creating, Poll, Connecting, Unreachable],
            "{id:?}"
        );
    }
    // All three retry (together, on one new connection) and are answered.
    for _ in 0..10 {
        if ids.iter().all(|id| n.done(*id)) {
            break;
        }
        n.advance(Duration::from_millis(100));
    }
    for (i, id) in ids.iter().enumerate() {
        n.assert_got(*id, format!("resp:/g{i}:").as_bytes());
    }
    assert_eq!(n.opened.len(), 1, "{:?}", n.opened);
}

#[test]
fn destroying_the_stream_whose_connection_others_wait_on_lets_them_go_on() {
    // The same class as above: destroying the stream that opened the
    // pending connection dropped it with the streams waiting on it.
    let mut n = Net::new(H2Config::default());
    let ids: Vec<StreamId> = (0..3).map(|i| n.get(&format!("g{i}"))).collect();
    n.e.destroy(n.now, ids[0]).unwrap();
    n.pump();
    for (i, id) in ids.iter().enumerate().skip(1) {
        n.assert_got(*id, format!("resp:/g{i}:").as_bytes());
    }
    // Both on one new connection (the destroyed stream's attempt was closed).
    assert_eq!(n.reqs.len(), 2);
    assert_eq!(n.reqs[0].conn, n.reqs[1].conn);
    assert_ne!(n.reqs[0].conn, n.opened[0]);
}

// ----- the h2 server streamtype, client engine against server engine -----

/// What the server application does with a complete request, by path.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Srv {
    /// Answer 200 `ok:` + path + body.
    Answer,
    /// Destroy the stream the request came on (the first time).
    Destroy,
    /// Disconnect the stream the request came on (the first time).
    Disconnect,
    /// Do not answer yet (the first time): kept in `held`.
    Hold,
}

/// A client engine and a server engine (an h2 TLS server streamtype)
/// connected in memory; the server application answers per `plan`.
struct Pair {
    c: Net,
    s: Engine,
    listener: ss_core::ListenerId,
    /// Client connection -> server connection, and back.
    c2s: BTreeMap<ConnId, ConnId>,
    s2c: BTreeMap<ConnId, ConnId>,
    s_events: Vec<Event>,
    plan: BTreeMap<String, Srv>,
    /// Requests being received (stream -> path, body) and answers to write.
    s_req: BTreeMap<StreamId, (String, Vec<u8>)>,
    s_out: BTreeMap<StreamId, Vec<u8>>,
    /// The server streams accepted with a connection (each connection's own).
    homes: Vec<StreamId>,
    seen_conns: std::collections::BTreeSet<ConnId>,
    /// Server streams the application destroyed.
    destroyed: Vec<StreamId>,
    /// Requests held unanswered (stream, path, body).
    held: Vec<(StreamId, String, Vec<u8>)>,
    /// Paths whose request stream the server pauses at SERVER_TXN.
    pause: std::collections::BTreeSet<String>,
    /// Bytes the client sent the server.
    c2s_bytes: usize,
}

impl Pair {
    fn new() -> Pair {
        let c = Net::new(H2Config::default());
        // The same certificates as the client's.
        let mut p = c.e.policy().clone();
        for st in &mut p.streamtypes {
            if st.name == "srv" {
                st.protocol = ss_core::policy::Protocol::H2;
                st.metadata = vec![ss_core::policy::MetadataDecl {
                    name: "path".into(),
                    header: None,
                }];
            }
        }
        let mut s = Engine::new(p, EngineConfig::default());
        s.set_unix_time(NOW);
        let srv = s.create(c.now, "srv").unwrap();
        let mut listener = None;
        while let Some(a) = s.poll_action() {
            if let Action::Listen { listener: l, .. } = a {
                listener = Some(l);
            }
        }
        let listener = listener.unwrap();
        s.handle_listening(c.now, listener, "127.0.0.1:443");
        let _ = srv;
        Pair {
            c,
            s,
            listener,
            c2s: BTreeMap::new(),
            s2c: BTreeMap::new(),
            s_events: vec![],
            plan: BTreeMap::new(),
            s_req: BTreeMap::new(),
            s_out: BTreeMap::new(),
            homes: vec![],
            seen_conns: Default::default(),
            destroyed: vec![],
            held: vec![],
            pause: Default::default(),
            c2s_bytes: 0,
        }
    }

    fn pump(&mut self) {
        let now = self.c.now;
        for _ in 0..100_000 {
            let mut any = false;
            while let Some(a) = self.c.e.poll_action() {
                any = true;
                match a {
                    Action::Connect { conn, .. } => {
                        let sc = self.s.handle_accepted(now, self.listener).unwrap();
                        self.c2s.insert(conn, sc);
                        self.s2c.insert(sc, conn);
                        self.c.opened.push(conn);
                        self.c.e.handle_connected(now, conn);
                    }
                    Action::Transmit { conn, data } => {
                        self.c.e.handle_sent(now, conn, data.len());
                        self.c2s_bytes += data.len();
                        if let Some(&sc) = self.c2s.get(&conn) {
                            self.s.handle_data(now, sc, &data);
                        }
                    }
                    Action::Close { conn } => {
                        if let Some(sc) = self.c2s.remove(&conn) {
                            self.s2c.remove(&sc);
                            self.s.handle_closed(now, sc);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(a) = self.s.poll_action() {
                any = true;
                match a {
                    Action::Transmit { conn, data } => {
                        self.s.handle_sent(now, conn, data.len());
                        if let Some(&cc) = self.s2c.get(&conn) {
                            self.c.e.handle_data(now, cc, &data);
                        }
                    }
                    Action::Close { conn } => {
                        if let Some(cc) = self.s2c.remove(&conn) {
                            self.c2s.remove(&cc);
                            self.c.e.handle_closed(now, cc);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(ev) = self.c.e.poll_event() {
                any = true;
                if let Event::Writable { stream, .. } = &ev {
                    if let Some(b) = self.c.bodies.get(stream).cloned() {
                        self.c
                            .e
                            .write(now, *stream, &b, Flags::SOM | Flags::EOM)
                            .unwrap();
                    }
                }
                self.c.events.push(ev);
            }
            while let Some(ev) = self.s.poll_event() {
                any = true;
                self.server_event(&ev);
                self.s_events.push(ev);
            }
            if !any {
                return;
            }
        }
        panic!("pump does not settle");
    }

    fn server_event(&mut self, ev: &Event) {
        let now = self.c.now;
        match ev {
            Event::Accepted { stream, .. } => {
                // The first stream of a connection is its own.
                if let Some(c) = self.s.conn_of(*stream) {
                    if self.seen_conns.insert(c) {
                        self.homes.push(*stream);
                    }
                }
            }
            Event::State {
                stream,
                state: ServerTxn,
                ..
            } => {
                let path = self
                    .s
                    .get_metadata(*stream, "path")
                    .unwrap()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default();
                if self.pause.contains(&path) {
                    self.s.set_rx_paused(now, *stream, true).unwrap();
                }
                self.s_req.insert(*stream, (path, vec![]));
            }
            Event::Rx {
                stream,
                data,
                flags,
            } => {
                let Some((_, body)) = self.s_req.get_mut(stream) else {
                    return;
                };
                body.extend_from_slice(data);
                if !flags.contains(Flags::EOM) {
                    return;
                }
                let (path, body) = self.s_req.remove(stream).unwrap();
                match self.plan.insert(path.clone(), Srv::Answer) {
                    Some(Srv::Destroy) => {
                        self.destroyed.push(*stream);
                        self.s.destroy(now, *stream).unwrap()
                    }
                    Some(Srv::Disconnect) => self.s.disconnect(now, *stream).unwrap(),
                    Some(Srv::Hold) => self.held.push((*stream, path, body)),
                    _ => self.answer(*stream, &path, &body),
                }
            }
            Event::Writable { stream, .. } => {
                if let Some(out) = self.s_out.remove(stream) {
                    // Refused if its connection went in the meantime.
                    let _ = self.s.write(now, *stream, &out, Flags::SOM | Flags::EOM);
                }
            }
            _ => {}
        }
    }

    /// Answer 200 `ok:` + path + body on server stream `stream`.
    fn answer(&mut self, stream: StreamId, path: &str, body: &[u8]) {
        let now = self.c.now;
        let mut out = format!("ok:{path}:").into_bytes();
        out.extend_from_slice(body);
        self.s.server_ack(stream, 0).unwrap();
        self.s
            .request_tx_len(now, stream, out.len() as u64)
            .unwrap();
        self.s_out.insert(stream, out);
    }

    fn advance(&mut self, d: Duration) {
        self.c.now += d;
        self.c.e.handle_timeout(self.c.now);
        self.s.handle_timeout(self.c.now);
        self.pump();
    }

    fn s_states(&self, id: StreamId) -> Vec<StreamState> {
        self.s_events
            .iter()
            .filter_map(|e| match e {
                Event::State { stream, state, .. } if *stream == id => Some(*state),
                _ => None,
            })
            .collect()
    }

    /// Posts `/p0`.. with small bodies, started together, run to the end.
    fn run(&mut self, n: usize) -> Vec<StreamId> {
        let ids: Vec<StreamId> = (0..n)
            .map(|i| {
                self.c
                    .post(&format!("p{i}"), format!("body{i}").into_bytes())
            })
            .collect();
        self.pump();
        for _ in 0..20 {
            if ids.iter().all(|id| self.c.done(*id)) {
                break;
            }
            self.advance(Duration::from_millis(100));
        }
        for (i, id) in ids.iter().enumerate() {
            self.c
                .assert_got(*id, format!("ok:/p{i}:body{i}").as_bytes());
        }
        ids
    }

    /// Every server stream that reported CREATING also reported
    /// DESTROYING, after DISCONNECTED unless the application destroyed it
    /// (the listener aside), and the server engine holds the listener alone.
    fn assert_server_streams_ended(&self) {
        let mut seen = BTreeMap::new();
        for e in &self.s_events {
            if let Event::State { stream, state, .. } = e {
                seen.entry(*stream).or_insert_with(Vec::new).push(*state);
            }
        }
        for (id, states) in seen.iter().skip(1) {
            let n = states.len();
            let end: &[StreamState] = if self.destroyed.contains(id) {
                &[Destroying]
            } else {
                &[Disconnected, Destroying]
            };
            assert!(
                n >= end.len() && states[n - end.len()..] == *end,
                "{id:?}: {states:?}"
            );
        }
        assert_eq!(self.s.stream_count(), 1, "streams left on the server");
        assert_eq!(self.s.conn_count(), 0, "connections left on the server");
    }
}

/// Close every client connection (its streams are done) and let the
/// server see it.
fn close_all(p: &mut Pair) {
    p.advance(Duration::from_secs(6)); // keepalive_idle: idle h2 connections close
}

#[test]
fn h2_server_answers_concurrent_requests_on_one_connection() {
    let mut p = Pair::new();
    p.plan.clear();
    p.run(4);
    assert_eq!(p.c.opened.len(), 1);
    assert_eq!(p.homes.len(), 1);
    close_all(&mut p);
    p.assert_server_streams_ended();
}

#[test]
fn h2_server_destroying_a_request_stream_resets_it_alone() {
    // The second request arrives while the connection's own stream is busy
    // with the first, so it gets a stream of its own; destroying that one
    // resets its HTTP/2 stream only, and the others complete on the
    // connection (the reset one retries there too).
    let mut p = Pair::new();
    p.plan.insert("/p1".into(), Srv::Destroy);
    let ids = p.run(3);
    assert_eq!(p.c.opened.len(), 1, "the reset did not cost the connection");
    assert!(p.c.states(ids[1]).contains(&Unreachable));
    assert_eq!(p.c.states(ids[0]), OK);
    assert_eq!(p.c.states(ids[2]), OK);
    close_all(&mut p);
    p.assert_server_streams_ended();
}

#[test]
fn h2_server_destroying_the_connections_own_stream_ends_every_stream_on_it() {
    // Found by the HTTP/2 simulation (conformance/tests/sim_h2.rs, seed 1):
    // destroying the connection's own stream closes the connection, but the
    // request streams on it were never told (no DISCONNECTED, no
    // DESTROYING) and stayed in the engine until the server was destroyed.
    let mut p = Pair::new();
    p.plan.insert("/p0".into(), Srv::Destroy);
    p.run(3);
    assert!(p.c.opened.len() >= 2, "the connection closed");
    let home = p.homes[0];
    assert_eq!(*p.s_states(home).last().unwrap(), Destroying);
    close_all(&mut p);
    p.assert_server_streams_ended();
}

#[test]
fn h2_server_disconnecting_a_request_stream_closes_the_connection_and_ends_its_streams() {
    // `disconnect` closes the stream's connection; on an h2 server
    // connection every stream on it must end (the one that asked
    // included), not only the connection's own stream.
    let mut p = Pair::new();
    p.plan.insert("/p2".into(), Srv::Disconnect);
    p.run(3);
    assert!(p.c.opened.len() >= 2, "the connection closed");
    close_all(&mut p);
    p.assert_server_streams_ended();
}

#[test]
fn h2_server_destroying_a_request_stream_sends_its_reset_at_once() {
    // Found by the HTTP/2 simulation (conformance/tests/sim_h2.rs, seed
    // 405): destroying a request stream queued its RST_STREAM in the h2
    // machine without sending it; with nothing else happening on the
    // connection the client never heard of it and waited for the rest of
    // the response.
    let mut p = Pair::new();
    p.plan.insert("/p0".into(), Srv::Hold);
    p.plan.insert("/p1".into(), Srv::Hold);
    let ids: Vec<StreamId> = (0..2)
        .map(|i| p.c.post(&format!("p{i}"), format!("body{i}").into_bytes()))
        .collect();
    p.pump();
    assert_eq!(p.held.len(), 2);
    // /p1 came on a request stream of its own; the network is quiet.
    let (child, _, _) = p.held.remove(1);
    assert!(!p.homes.contains(&child));
    let now = p.c.now;
    p.s.destroy(now, child).unwrap();
    p.destroyed.push(child);
    p.pump();
    assert_eq!(
        p.c.states(ids[1]),
        [Creating, Poll, Connecting, Unreachable],
        "the reset reached the client at once"
    );
    // It retries on the same connection and is answered; so is /p0.
    p.advance(Duration::from_millis(150));
    p.c.assert_got(ids[1], b"ok:/p1:body1");
    let (s, path, body) = p.held.remove(0);
    p.answer(s, &path, &body);
    p.pump();
    p.c.assert_got(ids[0], b"ok:/p0:body0");
    assert_eq!(p.c.opened.len(), 1);
    close_all(&mut p);
    p.assert_server_streams_ended();
}

#[test]
fn h2_streams_with_no_answer_fail_after_the_silence_timeout() {
    // An h2 connection whose server stops answering: the streams waiting on
    // it fail after `http_silence_timeout` (30 s) and retry, as HTTP/1.1
    // transactions do; the timer used to be ignored for h2 connections.
    let mut n = Net::new(H2Config::default());
    n.auto = false;
    let ids: Vec<StreamId> = (0..2).map(|i| n.get(&format!("g{i}"))).collect();
    n.pump();
    assert_eq!(n.reqs.len(), 2);
    n.advance(Duration::from_secs(29));
    for id in &ids {
        assert_eq!(n.states(*id), [Creating, Poll, Connecting], "{id:?}");
    }
    n.advance(Duration::from_secs(2));
    for id in &ids {
        assert_eq!(
            n.states(*id),
            [Creating, Poll, Connecting, Unreachable],
            "{id:?}"
        );
    }
    // The silent connection is closed; the retries go to a new one.
    assert!(n.conns[&n.opened[0]].closed);
    for r in &mut n.reqs {
        r.answered = true;
    }
    n.auto = true;
    n.advance(Duration::from_millis(150));
    for (i, id) in ids.iter().enumerate() {
        n.assert_got(*id, format!("resp:/g{i}:").as_bytes());
    }
    assert_eq!(n.opened.len(), 2);
}

/// `Engine::set_rx_paused` on one stream of a shared HTTP/2 connection
/// pauses that stream only: its data is not credited to the server, which
/// stops sending on it when its window runs out, while a neighbour on the
/// same connection completes; on resume the paused stream gets every byte.
#[test]
fn pausing_one_h2_stream_leaves_its_neighbours_running() {
    let mut n = Net::new(H2Config::default());
    let big = |c: u8| -> Vec<u8> { (0..300_000u32).map(|i| c ^ (i % 251) as u8).collect() };
    let a = n.post("a", big(1));
    n.e.set_rx_paused(n.now, a, true).unwrap();
    let b = n.post("b", big(2));
    n.pump();
    assert_eq!(n.opened.len(), 1, "both streams share one connection");
    let mut want_b = b"resp:/b:".to_vec();
    want_b.extend(big(2));
    n.assert_got(b, &want_b);
    assert!(n.rx(a).0.is_empty(), "no payload for the paused stream");
    // The server got no credit for the paused stream's data: it stopped
    // within that stream's 64 KiB window, well short of its 300 KB answer.
    assert!(
        n.to_client < 300_000 + 160_000,
        "the server sent {} bytes while a stream was paused",
        n.to_client
    );
    assert!(!n.states(a).contains(&QosAckRemote), "{:?}", n.states(a));
    // Time passes: a paused stream is not a silent server.
    n.now += Duration::from_secs(120);
    n.e.handle_timeout(n.now);
    n.pump();
    assert!(!n.states(a).contains(&Disconnected), "{:?}", n.states(a));
    n.e.set_rx_paused(n.now, a, false).unwrap();
    n.pump();
    let mut want_a = b"resp:/a:".to_vec();
    want_a.extend(big(1));
    n.assert_got(a, &want_a);
    assert_eq!(n.opened.len(), 1);
}

/// The server pauses one request stream's rx: the client's upload on it
/// stops within its flow-control window while another upload on the same
/// connection completes; resumed, the paused one completes too.
#[test]
fn h2_server_pauses_one_upload_and_not_its_neighbour() {
    let mut p = Pair::new();
    p.pause.insert("/a".into());
    let big = |c: u8| -> Vec<u8> { (0..300_000u32).map(|i| c ^ (i % 251) as u8).collect() };
    let a = p.c.post("a", big(1));
    let b = p.c.post("b", big(2));
    p.pump();
    assert_eq!(p.c.opened.len(), 1, "one connection");
    let mut want_b = b"ok:/b:".to_vec();
    want_b.extend(big(2));
    p.c.assert_got(b, &want_b);
    assert!(p.c.rx(a).0.is_empty(), "the paused upload was not answered");
    assert!(
        p.c2s_bytes < 300_000 + 200_000,
        "the client sent {} bytes while one upload was paused",
        p.c2s_bytes
    );
    let sa = *p.s_req.keys().next().expect("the paused request is open");
    p.s.set_rx_paused(p.c.now, sa, false).unwrap();
    p.pump();
    let mut want_a = b"ok:/a:".to_vec();
    want_a.extend(big(1));
    p.c.assert_got(a, &want_a);
}

/// The HTTP/1.1 policy keys carry over to HTTP/2: metadata to request
/// headers and response headers to metadata, the auth header from its blob
/// with its preamble, cookies kept and sent back, `http_resp_map`, and
/// `request_tx_len` as content-length.
#[test]
fn http_policy_keys_carry_over_to_h2() {
    let mut n = Net::new(H2Config::default());
    n.e.set_system_blob(ss_core::engine::SystemBlob::Auth(0), b"tok")
        .unwrap();
    n.routes.insert(
        "/one".into(),
        (
            200,
            vec![
                ("content-type".into(), "text/x-one".into()),
                ("set-cookie".into(), "sid=abc".into()),
            ],
            b"one".to_vec(),
        ),
    );
    n.routes
        .insert("/two".into(), (200, vec![], b"two".to_vec()));
    n.routes.insert("/mapped".into(), (530, vec![], vec![]));
    let full = |n: &mut Net, f: &str, tag: &str| {
        let id = n.e.create(n.now, "full").unwrap();
        n.e.set_metadata(id, "f", f.as_bytes()).unwrap();
        n.e.set_metadata(id, "tag", tag.as_bytes()).unwrap();
        n.e.request_tx(n.now, id).unwrap();
        n.pump();
        id
    };
    let header = |r: &Req, name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };

    let one = full(&mut n, "one", "t1");
    n.assert_got(one, b"one");
    let r = n.reqs.iter().find(|r| r.path == "/one").unwrap().clone();
    assert_eq!(
        header(&r, "x-tag").as_deref(),
        Some("t1"),
        "{:?}",
        r.headers
    );
    assert_eq!(header(&r, "authorization").as_deref(), Some("Bearer tok"));
    assert_eq!(
        n.e.get_metadata(one, "ctype").unwrap(),
        Some(&b"text/x-one"[..]),
        "a response header sets its metadata"
    );

    let two = full(&mut n, "two", "t2");
    n.assert_got(two, b"two");
    let r = n.reqs.iter().find(|r| r.path == "/two").unwrap().clone();
    assert_eq!(
        header(&r, "cookie").as_deref(),
        Some("sid=abc"),
        "{:?}",
        r.headers
    );

    let mapped = full(&mut n, "mapped", "t3");
    let user: Vec<(StreamState, u32)> = n
        .events
        .iter()
        .filter_map(|e| match e {
            Event::State { stream, state, ack } if *stream == mapped => Some((*state, *ack)),
            _ => None,
        })
        .collect();
    assert!(user.contains(&(User, 1530)), "{user:?}");
    assert!(user.iter().any(|(s, _)| *s == QosNackRemote), "{user:?}");

    let body = vec![b'z'; 70_000];
    let p = n.post("len", body.clone());
    n.pump();
    let r = n.reqs.iter().find(|r| r.path == "/len").unwrap().clone();
    assert_eq!(header(&r, "content-length").as_deref(), Some("70000"));
    assert!(r.body == body);
    assert!(n.states(p).contains(&QosAckRemote));
}

/// More HTTP/1.1 keys on HTTP/2: `http_www_form_urlencoded` sets the body's
/// content type, a device-serial blob header goes out, and a 503 with
/// Retry-After delays the next attempt by at least that long.
#[test]
fn form_urlencoded_blob_header_and_retry_after_on_h2() {
    let mut n = Net::new(H2Config::default());
    n.e.set_system_blob(ss_core::engine::SystemBlob::DeviceSerial, b"SN42")
        .unwrap();
    let id = n.e.create(n.now, "form_url").unwrap();
    n.e.set_metadata(id, "f", b"form").unwrap();
    n.bodies.insert(id, b"a=1&b=2".to_vec());
    n.e.request_tx_len(n.now, id, 7).unwrap();
    n.pump();
    let r = n.reqs.iter().find(|r| r.path == "/form").unwrap().clone();
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded"),
        "{:?}",
        r.headers
    );
    assert_eq!(header("x-dsn").as_deref(), Some("SN42"));
    assert_eq!(r.body, b"a=1&b=2");

    // 503 with Retry-After: 1 (longer than the 100 ms backoff).
    n.routes.insert(
        "/busy".into(),
        (503, vec![("retry-after".into(), "1".into())], vec![]),
    );
    let busy = n.get("busy");
    n.pump();
    let tries = |n: &Net| n.reqs.iter().filter(|r| r.path == "/busy").count();
    assert_eq!(tries(&n), 1);
    n.advance(Duration::from_millis(600));
    assert_eq!(tries(&n), 1, "retried before Retry-After");
    n.advance(Duration::from_millis(500));
    assert_eq!(tries(&n), 2, "retried once Retry-After passed");
    let _ = busy;
}
