//! HTTP/2 client machine against the server machine, pumped in memory.

use proptest::prelude::*;
use ss_core::proto::h2::{H2Client, H2Config, H2Error, H2Event, H2Server, RequestHead, StreamKey};
use std::collections::{BTreeMap, HashMap};

trait Machine {
    fn input(&mut self, b: &[u8]) -> Result<(), H2Error>;
    fn data(&mut self, k: StreamKey, b: &[u8], eom: bool) -> Result<usize, H2Error>;
}

impl Machine for H2Client {
    fn input(&mut self, b: &[u8]) -> Result<(), H2Error> {
        self.handle_input(b)
    }
    fn data(&mut self, k: StreamKey, b: &[u8], eom: bool) -> Result<usize, H2Error> {
        self.send_data(k, b, eom)
    }
}

impl Machine for H2Server {
    fn input(&mut self, b: &[u8]) -> Result<(), H2Error> {
        self.handle_input(b)
    }
    fn data(&mut self, k: StreamKey, b: &[u8], eom: bool) -> Result<usize, H2Error> {
        self.send_data(k, b, eom)
    }
}

/// Bytes still to send per stream, and whether EOM follows them.
#[derive(Default)]
struct Outbox(BTreeMap<StreamKey, (Vec<u8>, bool)>);

impl Outbox {
    fn push(&mut self, m: &mut dyn Machine) -> bool {
        let mut moved = false;
        let mut done = vec![];
        for (k, (buf, eom)) in self.0.iter_mut() {
            if buf.is_empty() && !*eom {
                continue;
            }
            match m.data(*k, buf, *eom) {
                Ok(n) => {
                    if n > 0 || (buf.is_empty() && *eom) {
                        moved = true;
                    }
                    buf.drain(..n);
                    if buf.is_empty() {
                        done.push(*k);
                    }
                }
                Err(_) => done.push(*k),
            }
        }
        for k in done {
            if self.0.get(&k).is_some_and(|(_, eom)| *eom) {
                self.0.remove(&k);
            }
        }
        moved
    }
}

/// Test server: answers a request with `x-len` bytes of pattern, or echoes
/// the request body, after the request ends.
#[derive(Default)]
struct ServerApp {
    bodies: HashMap<StreamKey, (Vec<u8>, Option<usize>)>,
    out: Outbox,
    resets: Vec<(StreamKey, u32)>,
    requests: Vec<(StreamKey, String, bool)>,
}

fn pattern(seed: usize, n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + seed * 7) % 251) as u8).collect()
}

impl ServerApp {
    fn on(&mut self, s: &mut H2Server, ev: H2Event) {
        match ev {
            H2Event::Request {
                key,
                headers,
                path,
                end_stream,
                ..
            } => {
                let len = headers
                    .iter()
                    .find(|(k, _)| k == "x-len")
                    .and_then(|(_, v)| v.parse().ok());
                self.requests.push((key, path, end_stream));
                self.bodies.insert(key, (vec![], len));
            }
            H2Event::Data { key, data, eom } => {
                let (body, len) = self.bodies.get_mut(&key).expect("body for request");
                body.extend_from_slice(&data);
                if eom {
                    let reply = match len {
                        Some(n) => pattern(key.0 as usize, *n),
                        None => std::mem::take(body),
                    };
                    s.respond(key, 200, &[("x-k".into(), key.0.to_string())], false)
                        .expect("respond");
                    self.out.0.insert(key, (reply, true));
                }
            }
            H2Event::Reset { key, reason } => self.resets.push((key, reason)),
            _ => {}
        }
    }
}

struct Pair {
    c: H2Client,
    s: H2Server,
    app: ServerApp,
    cout: Outbox,
    cev: Vec<H2Event>,
    chunk: Box<dyn FnMut() -> usize>,
    /// Errors from handle_input (a test that expects none checks it is empty).
    errors: Vec<H2Error>,
}

impl Pair {
    fn new(ccfg: H2Config, scfg: H2Config) -> Self {
        Pair {
            c: H2Client::new(ccfg),
            s: H2Server::new(scfg),
            app: ServerApp::default(),
            cout: Outbox::default(),
            cev: vec![],
            chunk: Box::new(|| usize::MAX),
            errors: vec![],
        }
    }

    fn feed(
        chunk: &mut dyn FnMut() -> usize,
        errors: &mut Vec<H2Error>,
        to: &mut dyn Machine,
        b: &[u8],
    ) {
        let mut b = b;
        while !b.is_empty() {
            let n = chunk().clamp(1, b.len());
            if let Err(e) = to.input(&b[..n]) {
                errors.push(e);
                return;
            }
            b = &b[n..];
        }
    }

    /// Move everything until nothing moves.
    fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut moved = self.cout.push(&mut self.c);
            moved |= self.app.out.push(&mut self.s);
            while let Some(b) = self.c.poll_transmit() {
                Self::feed(&mut self.chunk, &mut self.errors, &mut self.s, &b);
                moved = true;
            }
            while let Some(b) = self.s.poll_transmit() {
                Self::feed(&mut self.chunk, &mut self.errors, &mut self.c, &b);
                moved = true;
            }
            while let Some(e) = self.s.poll_event() {
                self.app.on(&mut self.s, e);
                moved = true;
            }
            while let Some(e) = self.c.poll_event() {
                self.cev.push(e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("pump did not settle");
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        len: Option<usize>,
    ) -> StreamKey {
        let mut head = RequestHead::new(method, path, "example.com", body.is_none());
        if let Some(n) = len {
            head.headers.push(("x-len".into(), n.to_string()));
        }
        let k = self.c.start_request(&head).expect("start request");
        if let Some(b) = body {
            self.cout.0.insert(k, (b, true));
        }
        k
    }

    /// The response status and body of `k` seen by the client.
    fn response(&self, k: StreamKey) -> Option<(u16, Vec<u8>, bool)> {
        assert!(self.errors.is_empty(), "input errors: {:?}", self.errors);
        let mut status = None;
        let mut body = vec![];
        let mut eom = false;
        for e in &self.cev {
            match e {
                H2Event::Response { key, status: s, .. } if *key == k => status = Some(*s),
                H2Event::Data { key, data, eom: e } if *key == k => {
                    assert!(!eom, "data after eom");
                    body.extend_from_slice(data);
                    eom = *e;
                }
                _ => {}
            }
        }
        status.map(|s| (s, body, eom))
    }
}

fn pair() -> Pair {
    Pair::new(H2Config::default(), H2Config::default())
}

#[test]
fn get_roundtrip() {
    let mut p = pair();
    p.pump();
    let k = p.request("GET", "/hello?x=1", None, Some(5));
    p.pump();
    assert_eq!(
        p.app.requests,
        vec![(StreamKey(1), "/hello?x=1".to_string(), true)]
    );
    let (status, body, eom) = p.response(k).expect("response");
    assert_eq!((status, eom), (200, true));
    assert_eq!(body, pattern(1, 5));
    assert!(p.cev.iter().any(|e| matches!(e, H2Event::Response { headers, .. } if headers.contains(&("x-k".to_string(), "1".to_string())))));
    assert_eq!(p.c.active_streams(), 0);
    assert_eq!(p.s.active_streams(), 0);
}

#[test]
fn post_larger_than_window_both_ways() {
    let mut p = pair();
    let body = pattern(9, 300_000);
    let k = p.request("POST", "/up", Some(body.clone()), None);
    p.pump();
    let (status, got, eom) = p.response(k).expect("response");
    assert_eq!((status, eom), (200, true));
    assert_eq!(got.len(), body.len());
    assert!(got == body, "echoed body differs");
    // And a download much larger than the window on the same connection.
    let k2 = p.request("GET", "/down", None, Some(1_000_000));
    p.pump();
    let (_, got, eom) = p.response(k2).expect("response");
    assert!(eom);
    assert!(got == pattern(k2.0 as usize, 1_000_000));
}

#[test]
fn fifty_concurrent_streams_interleaved() {
    let mut p = pair();
    p.pump();
    let mut keys = vec![];
    for i in 0..50 {
        keys.push(p.request(
            "POST",
            &format!("/s{i}"),
            Some(pattern(i, 20_000 + i * 997)),
            None,
        ));
    }
    assert_eq!(p.c.active_streams(), 50);
    p.pump();
    for (i, k) in keys.iter().enumerate() {
        let (status, body, eom) = p.response(*k).expect("response");
        assert_eq!((status, eom), (200, true));
        assert!(body == pattern(i, 20_000 + i * 997), "stream {i}");
    }
    // Data of different streams interleaved on the client side.
    let order: Vec<StreamKey> = p
        .cev
        .iter()
        .filter_map(|e| match e {
            H2Event::Data { key, data, .. } if !data.is_empty() => Some(*key),
            _ => None,
        })
        .collect();
    let switches = order.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches > 50,
        "streams were not interleaved ({switches} switches)"
    );
    assert_eq!(p.c.active_streams(), 0);
}

#[test]
fn concurrency_limit_is_a_typed_error_then_clears() {
    let scfg = H2Config {
        max_concurrent_streams: 5,
        ..H2Config::default()
    };
    let mut p = Pair::new(H2Config::default(), scfg);
    p.pump();
    let mut keys = vec![];
    for i in 0..5 {
        let head = RequestHead::new("POST", &format!("/{i}"), "h", false);
        keys.push(p.c.start_request(&head).expect("under the limit"));
    }
    p.pump();
    let head = RequestHead::new("POST", "/6", "h", false);
    let err = p.c.start_request(&head).expect_err("limit reached");
    assert_eq!(err, H2Error::WouldBlock);
    assert!(err.to_string().starts_with("h2: "));
    // Finish one stream: the next request goes through.
    p.cout.0.insert(keys[0], (b"done".to_vec(), true));
    p.pump();
    assert!(p.response(keys[0]).is_some_and(|r| r.2));
    let k6 = p.c.start_request(&head).expect("a stream finished");
    // Client-side limit too.
    let ccfg = H2Config {
        max_concurrent_streams: 2,
        ..H2Config::default()
    };
    let mut q = Pair::new(ccfg, H2Config::default());
    q.pump();
    q.c.start_request(&head).expect("1");
    q.c.start_request(&head).expect("2");
    assert_eq!(q.c.start_request(&head), Err(H2Error::WouldBlock));
    let _ = k6;
}

#[test]
fn reset_one_stream_others_continue() {
    let mut p = pair();
    p.pump();
    let ks: Vec<_> = (0..3)
        .map(|i| p.request("GET", &format!("/r{i}"), None, Some(400_000)))
        .collect();
    // Let some data flow, then reset the middle stream from the client.
    for _ in 0..3 {
        if let Some(b) = p.c.poll_transmit() {
            p.s.handle_input(&b).expect("in");
        }
        while let Some(e) = p.s.poll_event() {
            p.app.on(&mut p.s, e);
        }
        p.app.out.push(&mut p.s);
        if let Some(b) = p.s.poll_transmit() {
            p.c.handle_input(&b).expect("in");
        }
    }
    p.c.reset(ks[1], 0x8).expect("reset");
    assert_eq!(p.c.reset(ks[1], 0x8), Err(H2Error::UnknownStream(ks[1])));
    p.pump();
    for k in [ks[0], ks[2]] {
        let (_, body, eom) = p.response(k).expect("response");
        assert!(eom && body == pattern(k.0 as usize, 400_000));
    }
    assert!(p.response(ks[1]).is_none_or(|r| !r.2));
    assert_eq!(p.app.resets, vec![(StreamKey(2), 0x8)]);
    // The server resets a stream: the client sees it, the others are fine.
    let a = p.request("GET", "/a", None, Some(10));
    let b =
        p.c.start_request(&RequestHead::new("POST", "/b", "h", false))
            .expect("b");
    p.pump();
    p.s.reset(StreamKey(5), 0x7).expect("server reset");
    p.pump();
    assert!(p.cev.contains(&H2Event::Reset {
        key: b,
        reason: 0x7
    }));
    assert!(p.response(a).is_some_and(|r| r.2));
    let c = p.request("GET", "/c", None, Some(3));
    p.pump();
    assert!(p.response(c).is_some_and(|r| r.2));
}

#[test]
fn goaway_finishes_open_streams_and_refuses_new() {
    let mut p = pair();
    p.pump();
    let k =
        p.c.start_request(&RequestHead::new("POST", "/slow", "h", false))
            .expect("start");
    p.pump();
    p.s.go_away();
    p.pump();
    assert!(p
        .cev
        .iter()
        .any(|e| matches!(e, H2Event::GoAway { reason: 0, .. })));
    // The open stream still completes.
    p.cout.0.insert(k, (b"tail".to_vec(), true));
    p.pump();
    let (_, body, eom) = p.response(k).expect("response");
    assert!(eom && body == b"tail", "{:?} {:?}", p.cev, p.app.requests);
    assert!(p
        .c
        .start_request(&RequestHead::new("GET", "/", "h", true))
        .is_err());
    assert!(p.cev.contains(&H2Event::Closed));
}

#[test]
fn goaway_reports_last_stream_id() {
    let mut p = pair();
    p.pump();
    p.request("GET", "/", None, Some(1));
    p.pump();
    p.s.abort(0xb);
    p.pump();
    assert!(
        matches!(
            p.errors[..],
            [H2Error::Connection {
                reason: Some(0xb),
                ..
            }]
        ),
        "{:?}",
        p.errors
    );
    assert!(
        p.cev.contains(&H2Event::GoAway {
            last_stream_id: 1,
            reason: 0xb
        }),
        "{:?}",
        p.cev
    );
}

#[test]
fn every_byte_split() {
    let mut p = pair();
    p.chunk = Box::new(|| 1);
    let k1 = p.request("GET", "/a", None, Some(70_000));
    let k2 = p.request("POST", "/b", Some(pattern(2, 70_000)), None);
    p.pump();
    assert!(p
        .response(k1)
        .is_some_and(|r| r.2 && r.1 == pattern(1, 70_000)));
    assert!(p
        .response(k2)
        .is_some_and(|r| r.2 && r.1 == pattern(2, 70_000)));
}

#[test]
fn quirk_end_stream_on_get() {
    let ccfg = H2Config {
        quirk_end_stream: true,
        ..H2Config::default()
    };
    let mut p = Pair::new(ccfg, H2Config::default());
    let head = RequestHead::new("GET", "/q", "h", false);
    p.c.start_request(&head).expect("start");
    p.pump();
    assert_eq!(p.app.requests, vec![(StreamKey(1), "/q".to_string(), true)]);
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let l = payload.len();
    let mut v = vec![(l >> 16) as u8, (l >> 8) as u8, l as u8, kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn quirk_oflow_txcr_tolerates_window_overflow() {
    // A server that grants the largest window, then adds more.
    let mut wire = frame(4, 0, 0, &[]);
    wire.extend(frame(8, 0, 0, &0x7fff_0000u32.to_be_bytes()));
    wire.extend(frame(8, 0, 0, &0x7fff_0000u32.to_be_bytes()));
    let mut plain = H2Client::new(H2Config::default());
    assert!(matches!(
        plain.handle_input(&wire),
        Err(H2Error::Connection {
            reason: Some(0x3),
            ..
        })
    ));
    let mut quirky = H2Client::new(H2Config {
        quirk_oflow_txcr: true,
        ..H2Config::default()
    });
    quirky.handle_input(&wire).expect("tolerated");
    quirky
        .start_request(&RequestHead::new("GET", "/", "h", true))
        .expect("still usable");
}

#[test]
fn garbage_is_a_typed_error() {
    let mut c = H2Client::new(H2Config::default());
    let e = c
        .handle_input(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        .expect_err("not h2");
    assert!(e.to_string().starts_with("h2: "), "{e}");
    assert!(c.handle_input(b"more").is_err());
    let mut s = H2Server::new(H2Config::default());
    assert!(s
        .handle_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err());
    // A GOAWAY is still offered to the peer.
    let out: Vec<u8> = std::iter::from_fn(|| s.poll_transmit()).flatten().collect();
    assert!(!out.is_empty());
}

#[test]
fn bad_heads_are_typed() {
    let mut p = pair();
    p.pump();
    let mut h = RequestHead::new("GET", "/", "h", true);
    h.headers.push(("bad header".into(), "v".into()));
    assert!(matches!(p.c.start_request(&h), Err(H2Error::BadHead(_))));
    let h = RequestHead::new("G ET", "/", "h", true);
    assert!(matches!(p.c.start_request(&h), Err(H2Error::BadHead(_))));
    let mut h = RequestHead::new("GET", "/", "h", true);
    h.headers.push(("connection".into(), "close".into()));
    assert!(matches!(p.c.start_request(&h), Err(H2Error::BadHead(_))));
    assert_eq!(
        p.c.send_data(StreamKey(99), b"x", true),
        Err(H2Error::UnknownStream(StreamKey(99)))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_chunking_delivers_same_bodies(sizes in proptest::collection::vec(1usize..3000, 1..40), up in 0usize..150_000, down in 0usize..150_000) {
        let mut p = pair();
        let mut i = 0;
        p.chunk = Box::new(move || { i += 1; sizes[i % sizes.len()] });
        let k1 = p.request("POST", "/u", Some(pattern(3, up)), None);
        let k2 = p.request("GET", "/d", None, Some(down));
        p.pump();
        let r1 = p.response(k1).expect("r1");
        let r2 = p.response(k2).expect("r2");
        prop_assert!(r1.2 && r1.1 == pattern(3, up));
        prop_assert!(r2.2 && r2.1 == pattern(k2.0 as usize, down));
    }

    #[test]
    fn random_input_never_panics(prefix in any::<bool>(), data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut s = H2Server::new(H2Config::default());
        let mut c = H2Client::new(H2Config::default());
        if prefix {
            let _ = s.handle_input(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        }
        for piece in data.chunks(7) {
            let _ = s.handle_input(piece);
            let _ = c.handle_input(piece);
            while s.poll_event().is_some() {}
            while c.poll_event().is_some() {}
            while s.poll_transmit().is_some() {}
            while c.poll_transmit().is_some() {}
        }
    }
}
