//! HTTP/1.1 through the engine: a client engine against scripted server
//! bytes, and a client engine against a server engine, both in memory.

use ss_core::engine::SystemBlob;
use ss_core::{Action, ConnId, Engine, EngineConfig, Event, Flags, Policy, StreamId, StreamState};
use std::time::{Duration, Instant};

const POLICY: &str = r#"{
  "retry": [{"r": {"backoff": [100, 200], "conceal": 2, "jitterpc": 0}}],
  "s": [
    {"get": {"endpoint": "example.test", "port": 8080, "protocol": "h1",
             "http_method": "GET", "http_url": "items/${id}?x=1", "retry": "r",
             "metadata": [{"id": ""}, {"ctype": "content-type:"}, {"tag": "x-tag:"}],
             "http_resp_map": [{"530": 1530}]}},
    {"post": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1",
              "http_method": "POST", "http_url": "/up", "retry": "r",
              "http_auth_header": "authorization:", "http_auth_preamble": "bearer ",
              "http_dsn_header": "x-dsn:"}},
    {"follow": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1",
                "http_url": "/a", "allow_redirects": true, "retry": "r"}},
    {"cpd": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1", "http_url": "/gen",
             "http_expect": 204, "http_fail_redirect": true, "retry": "r"}},
    {"jar": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1", "http_url": "/",
             "http_cookies": true, "retry": "r"}},
    {"mp": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1", "http_url": "/",
            "http_multipart_ss_in": true, "retry": "r"}},
    {"upload": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1", "http_method": "POST",
                "http_url": "/form", "http_multipart_name": "file",
                "http_multipart_filename": "a.txt", "http_multipart_content_type": "text/plain",
                "retry": "r"}},
    {"ride": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1", "http_method": "POST",
              "http_url": "/form", "http_multipart_name": "meta",
              "http_multipart_content_type": "application/json", "rideshare": "ride_img",
              "retry": "r"}},
    {"ride_img": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1",
                  "http_multipart_name": "image", "http_multipart_filename": "pic.jpg",
                  "http_multipart_content_type": "image/jpeg", "rideshare": "ride_log"}},
    {"ride_log": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1",
                  "http_multipart_name": "log", "http_multipart_filename": "log.txt"}},
    {"ride2": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1", "http_method": "PUT",
               "http_url": "/two", "http_multipart_name": "first", "rideshare": "ride_log",
               "allow_redirects": true, "retry": "r"}},
    {"ride_plain": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1",
                    "http_method": "POST", "http_url": "/plain", "rideshare": "ride_plain2",
                    "retry": "r"}},
    {"ride_plain2": {"endpoint": "127.0.0.1", "port": 80, "protocol": "h1",
                     "rideshare": "ride_plain"}},
    {"srv": {"server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "h1",
             "metadata": [{"mime": "content-type:"}, {"method": ""}, {"path": ""},
                          {"q": ""}, {"agent": "user-agent:"}]}},
    {"local": {"endpoint": "127.0.0.1", "port": 9, "protocol": "h1", "http_method": "POST",
               "http_url": "/echo?q=42", "retry": "r",
               "metadata": [{"agent": "user-agent:"}, {"mime": "content-type:"}]}}
  ]
}"#;

/// A client engine whose peer is the test: it sees what the client sends
/// and feeds it canned responses.
struct Scripted {
    e: Engine,
    now: Instant,
    conns: Vec<ConnId>,
    sent: Vec<u8>,
    closed: Vec<ConnId>,
    events: Vec<Event>,
}

impl Scripted {
    fn new() -> Self {
        let policy = Policy::parse(POLICY).unwrap();
        Scripted {
            e: Engine::new(policy, EngineConfig::default()),
            now: Instant::now(),
            conns: vec![],
            sent: vec![],
            closed: vec![],
            events: vec![],
        }
    }

    /// Carry out actions: DNS gives 127.0.0.1, connects succeed, bytes are captured.
    fn pump(&mut self) {
        loop {
            let mut any = false;
            while let Some(a) = self.e.poll_action() {
                any = true;
                match a {
                    Action::Resolve { conn, .. } => {
                        self.e
                            .handle_resolved(self.now, conn, &["127.0.0.1".parse().unwrap()])
                    }
                    Action::Connect { conn, .. } => {
                        self.conns.push(conn);
                        self.e.handle_connected(self.now, conn);
                    }
                    Action::Transmit { conn, data } => {
                        self.sent.extend_from_slice(&data);
                        self.e.handle_sent(self.now, conn, data.len());
                    }
                    Action::Close { conn } => self.closed.push(conn),
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

    fn conn(&self) -> ConnId {
        *self.conns.last().expect("a connection")
    }

    fn feed(&mut self, bytes: &[u8]) {
        let c = self.conn();
        self.e.handle_data(self.now, c, bytes);
        self.pump();
    }

    fn take_sent(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.sent)).unwrap()
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

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.e.handle_timeout(self.now);
        self.pump();
    }
}

use StreamState::*;

#[test]
fn get_sends_the_request_and_reports_the_reference_sequence() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "get").unwrap();
    t.e.set_metadata(s, "id", b"42").unwrap();
    t.e.set_metadata(s, "tag", b"blue").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    let req = t.take_sent();
    assert!(
        req.starts_with("GET /items/42?x=1 HTTP/1.1\r\nHost: example.test:8080\r\n"),
        "{req}"
    );
    assert!(req.contains("x-tag: blue\r\n"), "{req}");
    assert!(!req.to_ascii_lowercase().contains("content-type"), "{req}");
    // No CONNECTED until the response head, as in the reference.
    assert_eq!(t.states(s), [Creating, Poll, Connecting]);
    assert!(!t.events.iter().any(|e| matches!(e, Event::Writable { .. })));
    t.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhel");
    assert_eq!(
        t.e.get_metadata(s, "ctype").unwrap(),
        Some(&b"text/plain"[..])
    );
    t.feed(b"lo");
    assert_eq!(
        t.states(s),
        [
            Creating,
            Poll,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
    let rx = t.rx(s);
    assert_eq!(rx[0], (b"hel".to_vec(), Flags::SOM));
    let body: Vec<u8> = rx.iter().flat_map(|(d, _)| d.clone()).collect();
    assert_eq!(body, b"hello");
    assert!(rx.last().unwrap().1.contains(Flags::EOM));
    // Kept alive: the next transaction reuses the connection.
    assert!(t.closed.is_empty());
    assert_eq!(t.e.conn_count(), 1);
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    assert_eq!(t.conns.len(), 1, "no new connection");
    assert!(t.take_sent().starts_with("GET /items/42?x=1 "));
    t.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        &t.states(s)[6..],
        [Poll, Connecting, Connected, QosNackRemote, Disconnected]
    );
    // The idle connection is closed after the keep-alive period.
    t.advance(Duration::from_secs(6));
    assert_eq!(t.closed, vec![t.conn()]);
    assert_eq!(t.e.conn_count(), 0);
}

#[test]
fn resp_map_reports_the_mapped_state() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "get").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    t.feed(b"HTTP/1.1 530 Custom\r\nContent-Length: 0\r\n\r\n");
    let mapped: Vec<_> = t
        .events
        .iter()
        .filter_map(|e| match e {
            Event::State {
                state: User, ack, ..
            } => Some(*ack),
            _ => None,
        })
        .collect();
    assert_eq!(mapped, [1530]);
    assert_eq!(
        t.states(s),
        [
            Creating,
            Poll,
            Connecting,
            User,
            Connected,
            QosNackRemote,
            Disconnected
        ]
    );
}

#[test]
fn post_body_goes_out_with_blob_headers_before_connected() {
    let mut t = Scripted::new();
    t.e.set_system_blob(SystemBlob::Auth(0), b"tok").unwrap();
    t.e.set_system_blob(SystemBlob::DeviceSerial, b"SN1")
        .unwrap();
    let s = t.e.create(t.now, "post").unwrap();
    t.e.request_tx_len(t.now, s, 6).unwrap();
    t.pump();
    let head = t.take_sent();
    assert!(
        head.starts_with("POST /up HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(head.contains("authorization: bearer tok\r\n"), "{head}");
    assert!(head.contains("x-dsn: SN1\r\n"), "{head}");
    assert!(head.contains("Content-Length: 6\r\n"), "{head}");
    // Writable while still CONNECTING, as the reference's body-pending path.
    assert!(t
        .events
        .iter()
        .any(|e| matches!(e, Event::Writable { stream, .. } if *stream == s)));
    t.e.write(t.now, s, b"abc", Flags::SOM).unwrap();
    t.e.write(t.now, s, b"def", Flags::EOM).unwrap();
    t.pump();
    assert_eq!(t.take_sent(), "abcdef");
    t.feed(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        t.states(s),
        [
            Creating,
            Poll,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
}

#[test]
fn a_missing_blob_fails_the_attempt_with_a_reason() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "post").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    assert!(t.events.iter().any(|e| matches!(
        e,
        Event::ConnectionError { reason, .. } if reason.contains("Auth")
    )));
    assert_eq!(t.states(s), [Creating, Poll, Connecting, Unreachable]);
}

#[test]
fn unknown_length_post_is_chunked() {
    let mut t = Scripted::new();
    t.e.set_system_blob(SystemBlob::Auth(0), b"t").unwrap();
    t.e.set_system_blob(SystemBlob::DeviceSerial, b"s").unwrap();
    let s = t.e.create(t.now, "post").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    assert!(t.take_sent().contains("Transfer-Encoding: chunked\r\n"));
    t.e.write(t.now, s, b"hello", Flags::SOM | Flags::EOM)
        .unwrap();
    t.pump();
    assert_eq!(t.take_sent(), "5\r\nhello\r\n0\r\n\r\n");
}

#[test]
fn redirects_fail_by_default_and_with_fail_redirect() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "cpd").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    t.feed(
        b"HTTP/1.1 302 Found\r\nLocation: http://portal.example/login\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(t.states(s), [Creating, Poll, Connecting, Unreachable]);
    assert!(t.events.iter().any(|e| matches!(
        e,
        Event::ConnectionError { reason, .. } if reason.contains("redirect")
    )));
    // It backs off and tries again per the retry policy.
    t.advance(Duration::from_millis(150));
    assert_eq!(t.conns.len(), 2);
    // A 204 is success for this streamtype; a 200 would not be.
    t.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(t.states(s).last(), Some(&Disconnected));
    assert!(t.states(s).contains(&QosNackRemote));
}

#[test]
fn allowed_redirects_are_followed_to_the_new_target() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "follow").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    assert!(t
        .take_sent()
        .starts_with("GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
    t.feed(b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:8081/b\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(t.conns.len(), 2, "a new connection to the new port");
    assert!(t
        .take_sent()
        .starts_with("GET /b HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n"));
    t.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(
        t.states(s),
        [
            Creating,
            Poll,
            Connecting,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
    // A loop ends after the configured number of redirects.
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    for _ in 0..6 {
        t.feed(b"HTTP/1.1 302 Found\r\nLocation: /a\r\nContent-Length: 0\r\n\r\n");
    }
    assert!(t.events.iter().any(|e| matches!(
        e,
        Event::ConnectionError { reason, .. } if reason.contains("more than 5 redirects")
    )));
}

#[test]
fn unavailable_backs_off_silently_honouring_retry_after() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "follow").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    t.feed(b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(t.states(s), [Creating, Poll, Connecting]);
    t.advance(Duration::from_millis(1500));
    assert_eq!(
        t.conns.len(),
        1,
        "waits for Retry-After, not the 100 ms backoff"
    );
    t.advance(Duration::from_millis(600));
    assert_eq!(t.conns.len(), 2);
}

#[test]
fn cookies_are_stored_and_sent_back() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "jar").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    assert!(!t.take_sent().contains("Cookie"));
    t.feed(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n");
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    assert!(t.take_sent().contains("Cookie: a=1; b=2\r\n"));
    assert_eq!(t.e.cookies("jar").len(), 2);
}

#[test]
fn incoming_multipart_is_split_into_parts() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "mp").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    let body = "--XX\r\nContent-Type: text/plain\r\n\r\none\r\n--XX\r\n\r\ntwo!\r\n--XX--\r\n";
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=XX\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Split at every byte: the parts must come out the same.
    for b in resp.as_bytes() {
        t.feed(std::slice::from_ref(b));
    }
    let rx = t.rx(s);
    assert_eq!(rx.first().unwrap().1, Flags::RELATED_START);
    assert_eq!(rx.last().unwrap().1, Flags::RELATED_END);
    let mut parts: Vec<Vec<u8>> = vec![];
    for (d, f) in &rx {
        if f.contains(Flags::SOM) {
            parts.push(vec![]);
        }
        if let Some(p) = parts.last_mut() {
            p.extend_from_slice(d);
        }
    }
    assert_eq!(parts, [b"one".to_vec(), b"two!".to_vec()]);
    assert_eq!(t.states(s).last(), Some(&Disconnected));
}

#[test]
fn outgoing_multipart_wraps_the_body() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "upload").unwrap();
    t.e.request_tx_len(t.now, s, 4).unwrap();
    t.pump();
    t.e.write(t.now, s, b"data", Flags::SOM | Flags::EOM)
        .unwrap();
    t.pump();
    let req = t.take_sent();
    let ct = req
        .lines()
        .find(|l| l.starts_with("Content-Type: multipart/form-data; boundary="))
        .unwrap();
    let boundary = ct
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim()
        .trim_matches('"');
    let (_, body) = req.split_once("\r\n\r\n").unwrap();
    let cl: usize = req
        .lines()
        .find_map(|l| l.trim().strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cl, body.len());
    assert!(body.starts_with(&format!("--{boundary}\r\n")), "{body:?}");
    assert!(body.contains("name=\"file\"; filename=\"a.txt\""));
    assert!(body.contains("Content-Type: text/plain\r\n\r\ndata\r\n"));
    assert!(body.ends_with(&format!("--{boundary}--\r\n")));
}

#[test]
fn malformed_responses_fail_with_a_reason_and_retry() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "follow").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    t.feed(b"HTTP/1.1 2x0 What\r\n\r\n");
    assert_eq!(t.states(s), [Creating, Poll, Connecting, Unreachable]);
    assert!(t.events.iter().any(
        |e| matches!(e, Event::ConnectionError { reason, .. } if reason.starts_with("http:"))
    ));
    assert_eq!(t.closed.len(), 1);
    t.advance(Duration::from_millis(150));
    assert_eq!(t.conns.len(), 2);
    // Dropped mid-body after CONNECTED: DISCONNECTED, then retry.
    t.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    let c = t.conn();
    t.e.handle_closed(t.now, c);
    t.pump();
    assert_eq!(
        &t.states(s)[3..],
        [Unreachable, Poll, Connecting, Connected, Disconnected],
        "{:?}",
        t.states(s)
    );
}

#[test]
fn read_to_close_bodies_end_at_eof() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "follow").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    t.feed(b"HTTP/1.0 200 OK\r\n\r\nsome");
    t.feed(b" body");
    let c = t.conn();
    t.e.handle_closed(t.now, c);
    t.pump();
    let body: Vec<u8> = t.rx(s).iter().flat_map(|(d, _)| d.clone()).collect();
    assert_eq!(body, b"some body");
    assert_eq!(t.states(s).last(), Some(&Disconnected));
    assert!(t.states(s).contains(&QosAckRemote));
    assert!(t.closed.is_empty(), "the peer closed it: no Close action");
}

// ----- client engine against server engine --------------------------------

/// Two engines wired back to back in memory.
struct Pair {
    c: Engine,
    s: Engine,
    now: Instant,
    /// client conn -> server conn
    links: Vec<(ConnId, ConnId)>,
    listener: Option<ss_core::ListenerId>,
    cev: Vec<Event>,
    sev: Vec<Event>,
}

impl Pair {
    fn new() -> Self {
        let p = Policy::parse(POLICY).unwrap();
        Pair {
            c: Engine::new(p.clone(), EngineConfig::default()),
            s: Engine::new(p, EngineConfig::default()),
            now: Instant::now(),
            links: vec![],
            listener: None,
            cev: vec![],
            sev: vec![],
        }
    }

    fn pump(&mut self, mut server_app: impl FnMut(&mut Engine, Instant, &Event)) {
        loop {
            let mut any = false;
            while let Some(a) = self.s.poll_action() {
                any = true;
                match a {
                    Action::Listen { listener, .. } => {
                        self.listener = Some(listener);
                        self.s.handle_listening(self.now, listener, "127.0.0.1:9");
                    }
                    Action::Transmit { conn, data } => {
                        self.s.handle_sent(self.now, conn, data.len());
                        if let Some(&(cc, _)) = self.links.iter().find(|(_, sc)| *sc == conn) {
                            self.c.handle_data(self.now, cc, &data);
                        }
                    }
                    Action::Close { conn } => {
                        if let Some(&(cc, _)) = self.links.iter().find(|(_, sc)| *sc == conn) {
                            self.c.handle_closed(self.now, cc);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(a) = self.c.poll_action() {
                any = true;
                match a {
                    Action::Resolve { conn, .. } => {
                        self.c
                            .handle_resolved(self.now, conn, &["127.0.0.1".parse().unwrap()]);
                    }
                    Action::Connect { conn, .. } => {
                        let sc = self
                            .s
                            .handle_accepted(self.now, self.listener.unwrap())
                            .unwrap();
                        self.links.push((conn, sc));
                        self.c.handle_connected(self.now, conn);
                    }
                    Action::Transmit { conn, data } => {
                        self.c.handle_sent(self.now, conn, data.len());
                        if let Some(&(_, sc)) = self.links.iter().find(|(cc, _)| *cc == conn) {
                            self.s.handle_data(self.now, sc, &data);
                        }
                    }
                    Action::Close { conn } => {
                        if let Some(&(_, sc)) = self.links.iter().find(|(cc, _)| *cc == conn) {
                            self.s.handle_closed(self.now, sc);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(ev) = self.s.poll_event() {
                any = true;
                server_app(&mut self.s, self.now, &ev);
                self.sev.push(ev);
            }
            while let Some(ev) = self.c.poll_event() {
                any = true;
                self.cev.push(ev);
            }
            if !any {
                break;
            }
        }
    }
}

#[test]
fn our_client_against_our_server() {
    let mut p = Pair::new();
    let now = p.now;
    p.s.create(now, "srv").unwrap();
    let mut got_body = Vec::new();
    let mut app = |s: &mut Engine, now: Instant, ev: &Event| match ev {
        Event::State {
            stream,
            state: ServerTxn,
            ..
        } => {
            assert_eq!(
                s.get_metadata(*stream, "method").unwrap(),
                Some(&b"POST"[..])
            );
            assert_eq!(
                s.get_metadata(*stream, "path").unwrap(),
                Some(&b"/echo?q=42"[..])
            );
            assert_eq!(s.get_metadata(*stream, "q").unwrap(), Some(&b"42"[..]));
            assert_eq!(
                s.get_metadata(*stream, "agent").unwrap(),
                Some(&b"ss-test"[..])
            );
        }
        Event::Rx {
            stream,
            data,
            flags,
        } => {
            got_body.extend_from_slice(data);
            if flags.contains(Flags::EOM) {
                s.server_ack(*stream, 0).unwrap();
                s.set_metadata(*stream, "mime", b"text/x-echo").unwrap();
                s.request_tx_len(now, *stream, got_body.len() as u64)
                    .unwrap();
            }
        }
        Event::Writable { stream, .. } => {
            s.write(now, *stream, &got_body.clone(), Flags::SOM | Flags::EOM)
                .unwrap();
        }
        _ => {}
    };
    p.pump(&mut app);
    let c = p.c.create(now, "local").unwrap();
    p.c.set_metadata(c, "agent", b"ss-test").unwrap();
    p.c.request_tx_len(now, c, 11).unwrap();
    p.pump(&mut app);
    p.c.write(now, c, b"hello world", Flags::SOM | Flags::EOM)
        .unwrap();
    p.pump(&mut app);
    let body: Vec<u8> = p
        .cev
        .iter()
        .filter_map(|e| match e {
            Event::Rx { data, .. } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(body, b"hello world");
    assert_eq!(
        p.c.get_metadata(c, "mime").unwrap(),
        Some(&b"text/x-echo"[..])
    );
    let cs: Vec<_> = p
        .cev
        .iter()
        .filter_map(|e| match e {
            Event::State { state, .. } => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(
        cs,
        [
            Creating,
            Poll,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
    let ss: Vec<_> = p
        .sev
        .iter()
        .filter_map(|e| match e {
            Event::State { stream, state, .. } if stream.0 != 1 => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(ss, [Creating, Connecting, Connected, ServerTxn]);
}

#[test]
fn a_server_that_never_acks_answers_404() {
    let mut p = Pair::new();
    let now = p.now;
    p.s.create(now, "srv").unwrap();
    let mut app = |s: &mut Engine, now: Instant, ev: &Event| match ev {
        Event::State {
            stream,
            state: ServerTxn,
            ..
        } => {
            s.request_tx(now, *stream).unwrap();
        }
        Event::Writable { stream, .. } => {
            s.write(now, *stream, b"nope", Flags::SOM | Flags::EOM)
                .unwrap();
        }
        _ => {}
    };
    p.pump(&mut app);
    let c = p.c.create(now, "get").unwrap();
    // "get" points at example.test:8080; our pair ignores addresses.
    p.c.request_tx(now, c).unwrap();
    p.pump(&mut app);
    let cs: Vec<_> = p
        .cev
        .iter()
        .filter_map(|e| match e {
            Event::State { state, .. } => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(
        cs,
        [
            Creating,
            Poll,
            Connecting,
            Connected,
            QosNackRemote,
            Disconnected
        ]
    );
}

// ----- HTTPS: the same pair over TLS ----------------------------------------

mod https {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use ss_core::policy::{Cert, TrustStore};

    /// 2025-01-01, inside the certificates' validity.
    const NOW: u64 = 1_735_689_600;

    /// A policy whose "local" client and "srv" server use TLS; the client
    /// trusts `trusted_ca`, the server presents a leaf issued by the real CA.
    fn tls_policy(trust_real_ca: bool) -> Policy {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "ss test CA");
        let ca_der = ca.self_signed(&ca_key).unwrap().der().to_vec();
        let other_key = KeyPair::generate().unwrap();
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other_der = other.self_signed(&other_key).unwrap().der().to_vec();
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
            cert("other", other_der),
            cert("leaf", leaf),
            cert("leaf_key", leaf_key.serialize_der()),
        ];
        p.trust_stores = vec![TrustStore {
            name: "ts".into(),
            stack: vec![if trust_real_ca { "ca" } else { "other" }.into()],
        }];
        for st in &mut p.streamtypes {
            match st.name.as_str() {
                "srv" => {
                    st.tls = true;
                    st.server_cert = Some("leaf".into());
                    st.server_key = Some("leaf_key".into());
                }
                "local" => {
                    st.tls = true;
                    st.tls_trust_store = Some("ts".into());
                }
                _ => {}
            }
        }
        p
    }

    fn pair(trust_real_ca: bool) -> Pair {
        pair_with_clock(trust_real_ca, NOW)
    }

    fn pair_with_clock(trust_real_ca: bool, client_clock: u64) -> Pair {
        let p = tls_policy(trust_real_ca);
        let mut pair = Pair::new();
        pair.c = Engine::new(p.clone(), EngineConfig::default());
        pair.s = Engine::new(p, EngineConfig::default());
        if client_clock != 0 {
            pair.c.set_unix_time(client_clock);
        }
        pair.s.set_unix_time(NOW);
        pair
    }

    fn echo_app() -> impl FnMut(&mut Engine, Instant, &Event) {
        let mut body = Vec::new();
        move |s: &mut Engine, now: Instant, ev: &Event| match ev {
            Event::Rx {
                stream,
                data,
                flags,
            } => {
                body.extend_from_slice(data);
                if flags.contains(Flags::EOM) {
                    s.server_ack(*stream, 0).unwrap();
                    s.request_tx_len(now, *stream, body.len() as u64).unwrap();
                }
            }
            Event::Writable { stream, .. } => {
                s.write(now, *stream, &body, Flags::SOM | Flags::EOM)
                    .unwrap();
            }
            _ => {}
        }
    }

    fn client_states(p: &Pair) -> Vec<StreamState> {
        p.cev
            .iter()
            .filter_map(|e| match e {
                Event::State { state, .. } => Some(*state),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn https_post_echo_with_the_policy_trust_store() {
        let mut p = pair(true);
        let now = p.now;
        let mut app = echo_app();
        p.s.create(now, "srv").unwrap();
        p.pump(&mut app);
        let c = p.c.create(now, "local").unwrap();
        let msg = vec![7u8; 100_000];
        p.c.request_tx_len(now, c, msg.len() as u64).unwrap();
        p.pump(&mut app);
        for chunk in msg.chunks(16 * 1024) {
            let eom = chunk.as_ptr_range().end == msg.as_ptr_range().end;
            let f = if eom { Flags::EOM } else { Flags::NONE };
            p.c.write(now, c, chunk, f).unwrap();
            p.pump(&mut app);
        }
        let got: Vec<u8> = p
            .cev
            .iter()
            .filter_map(|e| match e {
                Event::Rx { data, .. } => Some(data.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(got, msg);
        assert_eq!(
            client_states(&p),
            [
                Creating,
                Poll,
                Connecting,
                Connected,
                QosAckRemote,
                Disconnected
            ]
        );
    }

    #[test]
    fn a_trust_store_without_the_issuer_fails_verification() {
        let mut p = pair(false);
        let now = p.now;
        let mut app = echo_app();
        p.s.create(now, "srv").unwrap();
        p.pump(&mut app);
        let c = p.c.create(now, "local").unwrap();
        p.c.request_tx(now, c).unwrap();
        p.pump(&mut app);
        let reason = p
            .cev
            .iter()
            .find_map(|e| match e {
                Event::ConnectionError { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .expect("a connection error");
        assert!(reason.starts_with("tls:"), "{reason}");
        assert!(reason.to_lowercase().contains("issuer"), "{reason}");
        assert_eq!(client_states(&p), [Creating, Poll, Connecting, Unreachable]);
        assert!(!p.cev.iter().any(|e| matches!(e, Event::Rx { .. })));
    }

    #[test]
    fn an_unset_clock_fails_verification() {
        let mut p = pair_with_clock(true, 0);
        let now = p.now;
        let mut app = echo_app();
        p.s.create(now, "srv").unwrap();
        p.pump(&mut app);
        let c = p.c.create(now, "local").unwrap();
        p.c.request_tx(now, c).unwrap();
        p.pump(&mut app);
        assert!(p.cev.iter().any(|e| matches!(
            e,
            Event::ConnectionError { reason, .. } if reason.contains("clock")
        )));
        assert_eq!(client_states(&p), [Creating, Poll, Connecting, Unreachable]);
    }
}

#[test]
fn no_content_length_sends_chunked_even_with_a_known_length() {
    let p = POLICY.replace(
        r#""http_dsn_header": "x-dsn:"}}"#,
        r#""http_dsn_header": "x-dsn:", "http_no_content_length": true}}"#,
    );
    let mut t = Scripted::new();
    t.e = Engine::new(Policy::parse(&p).unwrap(), EngineConfig::default());
    t.e.set_system_blob(SystemBlob::Auth(0), b"t").unwrap();
    t.e.set_system_blob(SystemBlob::DeviceSerial, b"s").unwrap();
    let s = t.e.create(t.now, "post").unwrap();
    t.e.request_tx_len(t.now, s, 5).unwrap();
    t.pump();
    let head = t.take_sent();
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert!(!head.contains("Content-Length"), "{head}");
}

// ----- WebSocket: our client against our server's upgrade -------------------

mod websocket {
    use super::*;

    pub(super) const WS_POLICY: &str = r#"{
      "retry": [{"r": {"backoff": [100], "conceal": 1, "jitterpc": 0}}],
      "s": [
        {"srv": {"server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "h1",
                 "ws_subprotocol": "chat", "metadata": [{"path": ""}, {"room": ""}]}},
        {"wsc": {"endpoint": "127.0.0.1", "port": 9, "protocol": "ws", "retry": "r",
                 "http_url": "/chat?room=${room}", "ws_subprotocol": "chat",
                 "metadata": [{"room": ""}, {"tag": "x-tag:"}]}},
        {"wsbin": {"endpoint": "127.0.0.1", "port": 9, "protocol": "ws", "retry": "r",
                   "http_url": "/bin", "ws_subprotocol": "chat", "ws_binary": true}},
        {"wrongproto": {"endpoint": "127.0.0.1", "port": 9, "protocol": "ws", "retry": "r",
                        "http_url": "/x", "ws_subprotocol": "other"}}
      ]
    }"#;

    fn pair() -> Pair {
        let p = Policy::parse(WS_POLICY).unwrap();
        let mut pair = Pair::new();
        pair.c = Engine::new(p.clone(), EngineConfig::default());
        pair.s = Engine::new(p, EngineConfig::default());
        pair
    }

    /// Server app: echoes each message back, uppercased, keeping SOM/EOM.
    fn upper_echo() -> impl FnMut(&mut Engine, Instant, &Event) {
        let mut pending: Vec<(Vec<u8>, Flags)> = vec![];
        move |s: &mut Engine, now: Instant, ev: &Event| match ev {
            Event::Rx {
                stream,
                data,
                flags,
            } => {
                pending.push((data.to_ascii_uppercase(), *flags));
                s.request_tx(now, *stream).unwrap();
            }
            Event::Writable { stream, .. } => {
                for (d, f) in pending.drain(..) {
                    s.write(now, *stream, &d, f).unwrap();
                }
            }
            _ => {}
        }
    }

    fn states(evs: &[Event], id: StreamId) -> Vec<StreamState> {
        evs.iter()
            .filter_map(|e| match e {
                Event::State { stream, state, .. } if *stream == id => Some(*state),
                _ => None,
            })
            .collect()
    }

    fn rx(evs: &[Event], id: StreamId) -> Vec<(Vec<u8>, Flags)> {
        evs.iter()
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

    #[test]
    fn upgrade_then_messages_both_ways_with_som_eom() {
        let mut p = pair();
        let now = p.now;
        let mut app = upper_echo();
        p.s.create(now, "srv").unwrap();
        p.pump(&mut app);
        let c = p.c.create(now, "wsc").unwrap();
        p.c.set_metadata(c, "room", b"r1").unwrap();
        p.c.set_metadata(c, "tag", b"blue").unwrap();
        p.c.client_connect(now, c).unwrap();
        p.pump(&mut app);
        assert_eq!(states(&p.cev, c), [Creating, Connecting, Connected]);
        let accepted = p
            .sev
            .iter()
            .find_map(|e| match e {
                Event::Accepted { stream, .. } => Some(*stream),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            states(&p.sev, accepted),
            [Creating, Connecting, Connected, ServerUpgrade]
        );
        assert_eq!(
            p.s.get_metadata(accepted, "path").unwrap(),
            Some(&b"/chat?room=r1"[..])
        );
        assert_eq!(
            p.s.get_metadata(accepted, "room").unwrap(),
            Some(&b"r1"[..])
        );
        // A message in two pieces (one fragmented message), then a whole one.
        p.c.write(now, c, b"hello ", Flags::SOM).unwrap();
        p.c.write(now, c, b"world", Flags::EOM).unwrap();
        p.c.write(now, c, b"again", Flags::SOM | Flags::EOM)
            .unwrap();
        p.pump(&mut app);
        let got = rx(&p.cev, c);
        let text: Vec<u8> = got.iter().flat_map(|(d, _)| d.clone()).collect();
        assert_eq!(text, b"HELLO WORLDAGAIN");
        let soms = got.iter().filter(|(_, f)| f.contains(Flags::SOM)).count();
        let eoms = got.iter().filter(|(_, f)| f.contains(Flags::EOM)).count();
        assert_eq!((soms, eoms), (2, 2), "{got:?}");
        // The client disconnects: a Close handshake, the server stream ends.
        p.c.disconnect(now, c).unwrap();
        p.pump(&mut app);
        assert_eq!(states(&p.cev, c).last(), Some(&Disconnected));
        assert_eq!(states(&p.sev, accepted).last(), Some(&Destroying));
    }

    #[test]
    fn a_refused_subprotocol_is_a_failed_attempt() {
        let mut p = pair();
        let now = p.now;
        let mut app = upper_echo();
        p.s.create(now, "srv").unwrap();
        p.pump(&mut app);
        let c = p.c.create(now, "wrongproto").unwrap();
        p.c.client_connect(now, c).unwrap();
        p.pump(&mut app);
        assert!(p.cev.iter().any(|e| matches!(
            e,
            Event::ConnectionError { reason, .. } if reason.contains("subprotocol")
        )));
        assert_eq!(states(&p.cev, c), [Creating, Connecting, Unreachable]);
    }

    #[test]
    fn a_plain_http_server_refuses_the_upgrade() {
        let mut t = Scripted::new();
        let p = Policy::parse(WS_POLICY).unwrap();
        t.e = Engine::new(p, EngineConfig::default());
        let s = t.e.create(t.now, "wsbin").unwrap();
        t.e.client_connect(t.now, s).unwrap();
        t.pump();
        let req = t.take_sent();
        assert!(req.starts_with("GET /bin HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Upgrade: websocket\r\n"), "{req}");
        assert!(req.contains("Sec-WebSocket-Protocol: chat\r\n"), "{req}");
        t.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(t.events.iter().any(|e| matches!(
            e,
            Event::ConnectionError { reason, .. } if reason.contains("not 101")
        )));
        assert_eq!(t.states(s), [Creating, Connecting, Unreachable]);
    }
}

#[test]
fn a_silent_server_fails_the_transaction_after_the_silence_timeout() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "follow").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    t.advance(Duration::from_secs(29));
    assert_eq!(t.states(s), [Creating, Poll, Connecting]);
    t.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    t.advance(Duration::from_secs(29));
    assert_eq!(
        t.states(s).last(),
        Some(&Connected),
        "input restarts the timer"
    );
    t.advance(Duration::from_secs(2));
    assert!(t.events.iter().any(|e| matches!(
        e,
        Event::ConnectionError { reason, .. } if reason.contains("no answer")
    )));
    assert_eq!(t.states(s).last(), Some(&Disconnected));
}

#[test]
fn validity_pings_and_hangup_follow_the_retry_policy() {
    let json = websocket::WS_POLICY.replace(
        r#""r": {"backoff": [100], "conceal": 1, "jitterpc": 0}"#,
        r#""r": {"backoff": [100], "conceal": 1, "jitterpc": 0, "svalidping": 2, "svalidhup": 5}"#,
    );
    let mut t = Scripted::new();
    t.e = Engine::new(Policy::parse(&json).unwrap(), EngineConfig::default());
    let s = t.e.create(t.now, "wsbin").unwrap();
    t.e.client_connect(t.now, s).unwrap();
    t.pump();
    let req = t.take_sent();
    let key = req
        .lines()
        .find_map(|l| l.trim().strip_prefix("Sec-WebSocket-Key: "))
        .unwrap()
        .to_string();
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
        ss_core::proto::ws::accept_key(&key)
    );
    t.feed(resp.as_bytes());
    assert_eq!(t.states(s), [Creating, Connecting, Connected]);
    // 2 s of silence: a ping (masked, opcode 9) goes out.
    t.advance(Duration::from_secs(2));
    let sent = std::mem::take(&mut t.sent);
    assert_eq!(sent.first(), Some(&0x89), "{sent:?}");
    // Input restarts the count; 5 s of silence after it: hang up.
    t.feed(&[0x8a, 0x00]); // a pong
    t.advance(Duration::from_secs(4));
    assert_eq!(t.states(s).last(), Some(&Connected));
    t.advance(Duration::from_secs(1));
    assert!(t.events.iter().any(|e| matches!(
        e,
        Event::ConnectionError { reason, .. } if reason.contains("svalidhup")
    )));
    assert_eq!(t.states(s).last(), Some(&Disconnected));
}

/// The payload of a chunked body (the whole body must be there).
fn dechunk(mut wire: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = wire.split_once("\r\n").expect("chunk size line");
        let n = usize::from_str_radix(size, 16).expect("hex chunk size");
        if n == 0 {
            assert_eq!(rest, "\r\n", "nothing after the last chunk");
            return out;
        }
        out.push_str(&rest[..n]);
        assert_eq!(&rest[n..n + 2], "\r\n");
        wire = &rest[n + 2..];
    }
}

/// The boundary of a request's `multipart/form-data` Content-Type.
fn boundary_of(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Type: multipart/form-data; boundary="))
        .expect("multipart content type")
        .trim_matches('"')
        .to_string()
}

/// The application side of a rideshare upload: on each `Writable` of `s`
/// it asks `Engine::rideshare` which streamtype's part is due and writes
/// that part's payload (from `parts`, in one or more writes, EOM on the
/// last). Returns the streamtype names seen, one per `Writable`.
fn ride_app(t: &mut Scripted, s: StreamId, parts: &[(&str, &[&[u8]])]) -> Vec<String> {
    let writables = |t: &Scripted| {
        t.events
            .iter()
            .filter(|e| matches!(e, Event::Writable { stream, .. } if *stream == s))
            .count()
    };
    // Writables before the latest one were for earlier bodies.
    let mut handled = writables(t).saturating_sub(1);
    let mut seen = vec![];
    loop {
        let n = writables(t);
        if n == handled {
            return seen;
        }
        assert_eq!(n, handled + 1, "one Writable per part");
        handled = n;
        let cur = t.e.rideshare(s).unwrap().to_string();
        let (_, writes) = parts
            .iter()
            .find(|(name, _)| *name == cur)
            .unwrap_or_else(|| panic!("no part for {cur}"));
        for (i, w) in writes.iter().enumerate() {
            let mut f = if i == 0 { Flags::SOM } else { Flags::NONE };
            if i + 1 == writes.len() {
                f |= Flags::EOM;
            }
            t.e.write(t.now, s, w, f).unwrap();
        }
        seen.push(cur);
        t.pump();
    }
}

const OK_POST: [StreamState; 6] = [
    Creating,
    Poll,
    Connecting,
    Connected,
    QosAckRemote,
    Disconnected,
];

#[test]
fn rideshare_chains_three_streamtypes_into_one_chunked_multipart_body() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "ride").unwrap();
    assert_eq!(t.e.rideshare(s), Some("ride"));
    // A length is announced, but with a rideshare chain the total is not
    // known: chunked, no Content-Length.
    t.e.request_tx_len(t.now, s, 7).unwrap();
    t.pump();
    let head = t.take_sent();
    assert!(
        head.starts_with("POST /form HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert!(!head.contains("Content-Length"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    let b = boundary_of(&head);
    let seen = ride_app(
        &mut t,
        s,
        &[
            ("ride", &[b"{\"k\":1}"]),
            ("ride_img", &[b"JPEG", b"", b"DATA"]),
            ("ride_log", &[b"log line\n"]),
        ],
    );
    assert_eq!(seen, ["ride", "ride_img", "ride_log"]);
    assert_eq!(t.e.rideshare(s), Some("ride_log"));
    let wire = t.take_sent();
    assert!(wire.ends_with("\r\n0\r\n\r\n"), "{wire:?}");
    assert_eq!(
        dechunk(&wire),
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"meta\"\r\n\
             Content-Type: application/json\r\n\r\n{{\"k\":1}}\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"pic.jpg\"\r\n\
             Content-Type: image/jpeg\r\n\r\nJPEGDATA\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"log\"; filename=\"log.txt\"\r\n\
             \r\nlog line\n\r\n--{b}--\r\n"
        )
    );
    // Nothing more may be written: the body ended with the last streamtype.
    assert!(t.e.write(t.now, s, b"late", Flags::EOM).is_err());
    t.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(t.states(s), OK_POST);
    assert_eq!(t.e.rideshare(s), Some("ride"), "back to its own");
    // The next transaction starts the chain again; an empty last part.
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    let seen = ride_app(
        &mut t,
        s,
        &[
            ("ride", &[b"a"]),
            ("ride_img", &[b"b"]),
            ("ride_log", &[b""]),
        ],
    );
    assert_eq!(seen, ["ride", "ride_img", "ride_log"]);
    let sent = t.take_sent();
    let (head, wire) = sent.split_once("\r\n\r\n").unwrap();
    let b = boundary_of(head);
    let body = dechunk(wire);
    assert!(
        body.ends_with(&format!(
            "filename=\"pic.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nb\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"log\"; filename=\"log.txt\"\r\n\
             \r\n\r\n--{b}--\r\n"
        )),
        "{body:?}"
    );
}

#[test]
fn a_307_asks_for_the_whole_rideshare_body_again_from_the_first_part() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "ride2").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    let parts: &[(&str, &[&[u8]])] = &[("ride2", &[b"one"]), ("ride_log", &[b"two"])];
    assert_eq!(ride_app(&mut t, s, parts), ["ride2", "ride_log"]);
    let first = t.take_sent();
    assert!(first.starts_with("PUT /two HTTP/1.1\r\n"), "{first}");
    t.feed(b"HTTP/1.1 307 Again\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(t.conns.len(), 2);
    assert_eq!(t.e.rideshare(s), Some("ride2"), "the chain starts over");
    assert_eq!(ride_app(&mut t, s, parts), ["ride2", "ride_log"]);
    let sent = t.take_sent();
    let (head, wire) = sent.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("PUT /again HTTP/1.1\r\n"), "{head}");
    let b = boundary_of(head);
    assert_eq!(
        dechunk(wire),
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"first\"\r\n\r\none\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"log\"; filename=\"log.txt\"\r\n\
             \r\ntwo\r\n--{b}--\r\n"
        )
    );
    t.feed(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(
        t.states(s),
        [
            Creating,
            Poll,
            Connecting,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
}

#[test]
fn rideshare_without_multipart_concatenates_and_a_cycle_ends_the_body() {
    let mut t = Scripted::new();
    let s = t.e.create(t.now, "ride_plain").unwrap();
    t.e.request_tx(t.now, s).unwrap();
    t.pump();
    let head = t.take_sent();
    assert!(!head.contains("Content-Type"), "{head}");
    let seen = ride_app(
        &mut t,
        s,
        &[("ride_plain", &[b"aa"]), ("ride_plain2", &[b"b"])],
    );
    // ride_plain2 names ride_plain again: the body ends there.
    assert_eq!(seen, ["ride_plain", "ride_plain2"]);
    assert_eq!(t.take_sent(), "2\r\naa\r\n1\r\nb\r\n0\r\n\r\n");
    t.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(t.states(s), OK_POST);
}
