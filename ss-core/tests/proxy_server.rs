//! The proxy daemon's server side, all in memory: a daemon engine with a
//! `ProxyServer`, a peer engine running the onward servers (a raw echo server
//! and an HTTP/1 server), and link clients written with the wire codec.

use ss_core::engine::{ListenerId, Peer as Process, SockAddr};
use ss_core::proxy::server::{ProxyConfig, ProxyLog, ProxyServer};
use ss_core::proxy::wire::{
    Payload, ToClient, ToClientDecoder, ToProxy, WireMessage, PROTOCOL_VERSION, REF_CLIENT_RX_PIECE,
};
use ss_core::{Action, ConnId, Engine, EngineConfig, Event, Flags, Policy, StreamId, StreamState};
use std::collections::BTreeMap;
use std::time::Instant;

const DAEMON_POLICY: &str = r#"{
  "retry": [{"r": {"backoff": [100, 200], "conceal": 2, "jitterpc": 0}}],
  "s": [
    {"echo": {"endpoint": "+@echo", "protocol": "raw", "retry": "r"}},
    {"small": {"endpoint": "+@echo", "protocol": "raw", "retry": "r",
               "proxy_buflen": 1024, "client_buflen": 2048}},
    {"hget": {"endpoint": "127.0.0.1", "port": 9, "protocol": "h1", "retry": "r",
              "http_method": "GET", "http_url": "items/${id}",
              "metadata": [{"id": ""}, {"ctype": "content-type:"}, {"tag": "x-tag:"}]}},
    {"srv": {"server": true, "endpoint": "+@other", "protocol": "raw"}}
  ]
}"#;

const PEER_POLICY: &str = r#"{
  "s": [
    {"echo_srv": {"server": true, "endpoint": "+@echo", "protocol": "raw"}},
    {"http_srv": {"server": true, "endpoint": "127.0.0.1", "port": 9, "protocol": "h1",
                  "metadata": [{"path": ""}, {"mime": "content-type:"}]}}
  ]
}"#;

const LINK_BIND: &str = "+@proxy.ss.test";

#[derive(Default)]
struct LinkClient {
    dec: ToClientDecoder,
    got: Vec<ToClient>,
    closed: bool,
    /// The client is not reading: what the daemon wrote waits here, unsent.
    stalled: bool,
    unread: Vec<u8>,
}

/// The peer's application: echo raw payload, answer HTTP GETs with
/// `body:<path>` and a content-type.
#[derive(Default)]
struct Peer {
    echo: BTreeMap<StreamId, Vec<u8>>,
    paths: Vec<String>,
    http_body: BTreeMap<StreamId, Vec<u8>>,
}

impl Peer {
    fn on_event(&mut self, e: &mut Engine, now: Instant, ev: &Event) {
        let is_http = |e: &Engine, s: StreamId| e.streamtype(s) == Some("http_srv");
        match ev {
            Event::Rx { stream, data, .. } if !is_http(e, *stream) => {
                self.echo
                    .entry(*stream)
                    .or_default()
                    .extend_from_slice(data);
                e.request_tx(now, *stream).unwrap();
            }
            Event::State {
                stream,
                state: StreamState::ServerTxn,
                ..
            } => {
                let path = e.get_metadata(*stream, "path").unwrap().unwrap_or_default();
                let path = String::from_utf8_lossy(path).into_owned();
                self.paths.push(path.clone());
                let body = format!("body:{path}").into_bytes();
                e.server_ack(*stream, 200).unwrap();
                e.set_metadata(*stream, "mime", b"text/x-test").unwrap();
                if path.contains("chunked") {
                    // No length: a chunked body, whose end arrives on its own.
                    e.request_tx(now, *stream).unwrap();
                } else {
                    e.request_tx_len(now, *stream, body.len() as u64).unwrap();
                }
                self.http_body.insert(*stream, body);
            }
            Event::Writable { stream, .. } => {
                if let Some(b) = self.http_body.remove(stream) {
                    if b.ends_with(b"chunked") {
                        // The body, then its end on its own (the last chunk).
                        e.write(now, *stream, &b, Flags::SOM).unwrap();
                        e.write(now, *stream, &[], Flags::EOM).unwrap();
                    } else {
                        e.write(now, *stream, &b, Flags::SOM | Flags::EOM).unwrap();
                    }
                } else if let Some(b) = self.echo.remove(stream) {
                    e.write(now, *stream, &b, Flags::NONE).unwrap();
                }
            }
            _ => {}
        }
    }
}

struct Net {
    d: Engine,
    px: ProxyServer,
    p: Engine,
    peer: Peer,
    now: Instant,
    d_listener: Option<ListenerId>,
    p_listeners: BTreeMap<String, ListenerId>,
    /// daemon conn -> peer conn
    pairs: Vec<(ConnId, ConnId)>,
    clients: BTreeMap<ConnId, LinkClient>,
    log: Vec<ProxyLog>,
    peer_closed: Vec<ConnId>,
    /// Daemon connections it stopped reading, and what waits in their
    /// socket buffers meanwhile.
    paused: BTreeMap<ConnId, Vec<u8>>,
    /// Most bytes ever waiting unread for one daemon connection.
    max_parked: usize,
    /// Onward connections (daemon side) whose peer does not read: what the
    /// daemon wrote waits here, unsent.
    stalled_onward: BTreeMap<ConnId, Vec<u8>>,
}

impl Net {
    fn new() -> Self {
        Self::with(ProxyConfig::default())
    }

    fn with(config: ProxyConfig) -> Self {
        let mut policy = Policy::parse(DAEMON_POLICY).unwrap();
        ProxyServer::install(&mut policy, LINK_BIND).unwrap();
        assert!(ProxyServer::install(&mut policy, LINK_BIND).is_err());
        let now = Instant::now();
        let mut d = Engine::new(policy, EngineConfig::default());
        let mut px = ProxyServer::new(config);
        px.start(&mut d, now).unwrap();
        let mut p = Engine::new(Policy::parse(PEER_POLICY).unwrap(), EngineConfig::default());
        p.create(now, "echo_srv").unwrap();
        p.create(now, "http_srv").unwrap();
        let mut n = Net {
            d,
            px,
            p,
            peer: Peer::default(),
            now,
            d_listener: None,
            p_listeners: BTreeMap::new(),
            pairs: vec![],
            clients: BTreeMap::new(),
            log: vec![],
            peer_closed: vec![],
            paused: BTreeMap::new(),
            max_parked: 0,
            stalled_onward: BTreeMap::new(),
        };
        n.pump();
        assert_eq!(n.px.listening(), Some("unix:@proxy.ss.test"));
        assert!(n.log.contains(&ProxyLog::Listening {
            addr: "unix:@proxy.ss.test".into()
        }));
        n
    }

    fn pump(&mut self) {
        loop {
            let mut any = false;
            while let Some(a) = self.d.poll_action() {
                any = true;
                match a {
                    Action::Listen { listener, bind } => {
                        assert_eq!(bind, SockAddr::UnixAbstract("proxy.ss.test".into()));
                        self.d_listener = Some(listener);
                        self.d
                            .handle_listening(self.now, listener, &bind.to_string());
                    }
                    Action::Resolve { conn, .. } => {
                        self.d
                            .handle_resolved(self.now, conn, &["127.0.0.1".parse().unwrap()]);
                    }
                    Action::Connect { conn, addr } => {
                        match self.p_listeners.get(&addr.to_string()) {
                            Some(&l) => {
                                let pc = self.p.handle_accepted(self.now, l).unwrap();
                                self.pairs.push((conn, pc));
                                self.d.handle_connected(self.now, conn);
                            }
                            None => self.d.handle_connect_failed(self.now, conn, "refused"),
                        }
                    }
                    Action::PauseReading { conn, paused } => {
                        if paused {
                            self.paused.entry(conn).or_default();
                        } else if let Some(parked) = self.paused.remove(&conn) {
                            if !parked.is_empty() {
                                self.d.handle_data(self.now, conn, &parked);
                            }
                        }
                    }
                    Action::Transmit { conn, data } => {
                        if let Some(c) = self.clients.get_mut(&conn).filter(|c| c.stalled) {
                            c.unread.extend_from_slice(&data);
                            continue;
                        }
                        if let Some(w) = self.stalled_onward.get_mut(&conn) {
                            w.extend_from_slice(&data);
                            continue;
                        }
                        self.d.handle_sent(self.now, conn, data.len());
                        if let Some(c) = self.clients.get_mut(&conn) {
                            let mut input = &data[..];
                            while let Some(m) = c.dec.next(&mut input).expect("daemon frames") {
                                c.got.push(m);
                            }
                        } else if let Some(&(_, pc)) = self.pairs.iter().find(|(dc, _)| *dc == conn)
                        {
                            self.p.handle_data(self.now, pc, &data);
                        }
                    }
                    Action::Close { conn } => {
                        if let Some(c) = self.clients.get_mut(&conn) {
                            c.closed = true;
                        } else if let Some(&(_, pc)) = self.pairs.iter().find(|(dc, _)| *dc == conn)
                        {
                            self.p.handle_closed(self.now, pc);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(a) = self.p.poll_action() {
                any = true;
                match a {
                    Action::Listen { listener, bind } => {
                        self.p_listeners.insert(bind.to_string(), listener);
                        self.p
                            .handle_listening(self.now, listener, &bind.to_string());
                    }
                    Action::Transmit { conn, data } => {
                        self.p.handle_sent(self.now, conn, data.len());
                        if let Some(&(dc, _)) = self.pairs.iter().find(|(_, pc)| *pc == conn) {
                            self.deliver_to_daemon(dc, &data);
                        }
                    }
                    Action::Close { conn } => {
                        self.peer_closed.push(conn);
                        if let Some(&(dc, _)) = self.pairs.iter().find(|(_, pc)| *pc == conn) {
                            self.d.handle_closed(self.now, dc);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(ev) = self.d.poll_event() {
                any = true;
                self.px.handle_event(&mut self.d, self.now, &ev);
            }
            while let Some(ev) = self.p.poll_event() {
                any = true;
                self.peer.on_event(&mut self.p, self.now, &ev);
            }
            while let Some(r) = self.px.poll_log() {
                self.log.push(r);
            }
            if !any {
                break;
            }
        }
    }

    /// A client connects to the daemon.
    fn connect(&mut self) -> ConnId {
        self.connect_from(None)
    }

    /// A client connects to the daemon, the adapter telling which process.
    fn connect_from(&mut self, peer: Option<Process>) -> ConnId {
        let c = self
            .d
            .handle_accepted(self.now, self.d_listener.unwrap())
            .unwrap();
        if let Some(p) = peer {
            self.d.set_peer(c, p);
        }
        self.clients.insert(c, LinkClient::default());
        self.pump();
        c
    }

    /// Bytes arrive for daemon connection `dc`: read at once, or left in
    /// its socket buffer while the daemon does not read it.
    fn deliver_to_daemon(&mut self, dc: ConnId, data: &[u8]) {
        match self.paused.get_mut(&dc) {
            Some(parked) => {
                parked.extend_from_slice(data);
                self.max_parked = self.max_parked.max(parked.len());
            }
            None => self.d.handle_data(self.now, dc, data),
        }
    }

    fn send_raw(&mut self, c: ConnId, bytes: &[u8]) {
        self.deliver_to_daemon(c, bytes);
        self.pump();
    }

    /// The client stops or starts reading its link.
    fn stall(&mut self, c: ConnId, stalled: bool) {
        let cl = self.clients.get_mut(&c).unwrap();
        cl.stalled = stalled;
        if !stalled {
            let data = std::mem::take(&mut cl.unread);
            let mut input = &data[..];
            while let Some(m) = cl.dec.next(&mut input).expect("daemon frames") {
                cl.got.push(m);
            }
            self.d.handle_sent(self.now, c, data.len());
        }
        self.pump();
    }

    /// The onward peer behind daemon connection `dc` stops or starts reading.
    fn stall_onward(&mut self, dc: ConnId, stalled: bool) {
        if stalled {
            self.stalled_onward.entry(dc).or_default();
        } else if let Some(data) = self.stalled_onward.remove(&dc) {
            self.d.handle_sent(self.now, dc, data.len());
            let pc = self.pairs.iter().find(|(d, _)| *d == dc).unwrap().1;
            self.p.handle_data(self.now, pc, &data);
        }
        self.pump();
    }

    /// Bytes the daemon wrote to `c` that the client has not read.
    fn unread(&self, c: ConnId) -> usize {
        self.clients[&c].unread.len()
    }

    /// The daemon stopped reading `c`.
    fn reading_paused(&self, c: ConnId) -> bool {
        self.paused.contains_key(&c)
    }

    fn send(&mut self, c: ConnId, msgs: &[ToProxy]) {
        let mut b = vec![];
        for m in msgs {
            m.encode(&mut b).unwrap();
        }
        self.send_raw(c, &b);
    }

    fn take(&mut self, c: ConnId) -> Vec<ToClient> {
        std::mem::take(&mut self.clients.get_mut(&c).unwrap().got)
    }

    fn closed(&self, c: ConnId) -> bool {
        self.clients[&c].closed
    }

    /// A client opens a link of `streamtype` and connects it onward; returns
    /// the link once CONNECTED was reported.
    fn open(&mut self, streamtype: &str) -> ConnId {
        let c = self.connect();
        self.send(c, &[create(streamtype)]);
        let got = self.take(c);
        assert!(
            matches!(got[..], [ToClient::CreateResult { status: 0, .. }]),
            "{got:?}"
        );
        self.send(c, &[ToProxy::OnwardConnect]);
        assert_eq!(
            states(&self.take(c)),
            [StreamState::Connecting, StreamState::Connected]
        );
        c
    }

    fn dropped(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|r| match r {
                ProxyLog::LinkDropped { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

fn create(streamtype: &str) -> ToProxy {
    ToProxy::StreamtypeCreate {
        pid: 42,
        initial_tx_credit: 0,
        streamtype: streamtype.into(),
    }
}

fn tx(data: &[u8], flags: Flags) -> ToProxy {
    ToProxy::TxPayload(Payload::new(data.to_vec(), flags))
}

fn states(msgs: &[ToClient]) -> Vec<StreamState> {
    msgs.iter().filter_map(|m| m.stream_state()).collect()
}

fn rx_bytes(msgs: &[ToClient]) -> Vec<u8> {
    msgs.iter()
        .filter_map(|m| match m {
            ToClient::RxPayload(p) => Some(p.data.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_link_creates_connects_and_echoes() {
    let mut n = Net::new();
    let c = n.connect();
    n.send(c, &[create("echo")]);
    assert_eq!(
        n.take(c),
        [ToClient::CreateResult {
            status: 0,
            client_buflen: 32 * 1024,
            rideshare: String::new()
        }]
    );
    n.send(c, &[ToProxy::OnwardConnect]);
    assert_eq!(
        n.take(c),
        [
            ToClient::conn_state(StreamState::Connecting, 0),
            ToClient::conn_state(StreamState::Connected, 0)
        ]
    );
    n.send(c, &[tx(b"hello", Flags::SOM | Flags::EOM)]);
    let got = n.take(c);
    assert_eq!(
        got,
        [ToClient::RxPayload(Payload::new(
            b"hello".to_vec(),
            Flags::NONE
        ))]
    );
    // A payload bigger than one rx frame can hold comes back split.
    let big: Vec<u8> = (0..150_000u32).map(|i| i as u8).collect();
    let mut msgs = vec![];
    for chunk in big.chunks(60_000) {
        msgs.push(tx(chunk, Flags::NONE));
    }
    for m in msgs {
        n.send(c, &[m]);
    }
    let got = n.take(c);
    assert_eq!(rx_bytes(&got), big);
    // At most REF_CLIENT_RX_PIECE per frame: the reference client repeats a
    // frame's SOM/EOM on every 1380-byte piece of a bigger one.
    assert!(got.iter().all(|m| match m {
        ToClient::RxPayload(p) => !p.data.is_empty() && p.data.len() <= REF_CLIENT_RX_PIECE,
        _ => true,
    }));
    assert!(!n.closed(c));
    assert!(n.dropped().is_empty(), "{:?}", n.log);
}

#[test]
fn a_streamtype_s_buflens_are_used() {
    let mut n = Net::new();
    let c = n.connect();
    n.send(c, &[create("small")]);
    assert_eq!(
        n.take(c),
        [ToClient::CreateResult {
            status: 0,
            client_buflen: 2048,
            rideshare: String::new()
        }]
    );
}

#[test]
fn two_links_work_at_once() {
    let mut n = Net::new();
    let a = n.connect();
    let b = n.connect();
    n.send(a, &[create("echo")]);
    n.send(b, &[create("echo")]);
    n.send(b, &[ToProxy::OnwardConnect]);
    n.send(a, &[ToProxy::OnwardConnect]);
    assert_eq!(n.px.link_count(), 2);
    n.send(a, &[tx(b"from a", Flags::NONE)]);
    n.send(b, &[tx(b"from b", Flags::NONE)]);
    n.send(a, &[tx(b" again", Flags::NONE)]);
    assert_eq!(rx_bytes(&n.take(a)), b"from a again");
    assert_eq!(rx_bytes(&n.take(b)), b"from b");
}

#[test]
fn destroying_closes_the_link_and_the_onward_stream() {
    let mut n = Net::new();
    let a = n.open("echo");
    let b = n.open("echo");
    let streams = n.d.stream_count();
    n.send(a, &[ToProxy::Destroying]);
    assert!(n.closed(a));
    assert_eq!(n.px.link_count(), 1);
    // Link and onward stream are gone; the peer saw its connection close.
    assert_eq!(n.d.stream_count(), streams - 2);
    assert_eq!(n.p.stream_count(), 3);
    assert!(n
        .log
        .iter()
        .any(|r| matches!(r, ProxyLog::LinkClosed { .. })));
    // The other link is untouched.
    n.send(b, &[tx(b"still here", Flags::NONE)]);
    assert_eq!(rx_bytes(&n.take(b)), b"still here");
    // A client hanging up does the same.
    n.d.handle_closed(n.now, b);
    n.pump();
    assert_eq!(n.px.link_count(), 0);
    assert_eq!(n.d.stream_count(), 1, "only the listener");
    assert_eq!(n.p.stream_count(), 2, "only the peer's listeners");
}

#[test]
fn the_onward_connection_dropping_is_reported() {
    let mut n = Net::new();
    let a = n.open("echo");
    // The peer's side of the onward connection goes away.
    n.d.handle_closed(n.now, n.pairs[0].0);
    n.pump();
    assert!(states(&n.take(a)).contains(&StreamState::Disconnected));
    assert!(!n.closed(a), "the client decides what to do");
}

#[test]
fn hostile_links_are_dropped_and_a_good_link_keeps_working() {
    let mut n = Net::with(ProxyConfig {
        max_links: 8,
        max_frame: 4096,
        ..ProxyConfig::default()
    });
    let good = n.open("echo");
    let check_good = |n: &mut Net, what: &str| {
        n.send(good, &[tx(what.as_bytes(), Flags::NONE)]);
        assert_eq!(rx_bytes(&n.take(good)), what.as_bytes(), "after {what}");
        assert!(!n.closed(good));
    };

    // Random bytes.
    let c = n.connect();
    n.send_raw(c, &[0x13, 0x37, 0xff, 0x00, 0x42]);
    assert!(n.closed(c));
    assert!(n.dropped().last().unwrap().contains("malformed"));
    check_good(&mut n, "random");

    // A frame before STREAMTYPE.
    let c = n.connect();
    n.send(c, &[ToProxy::OnwardConnect]);
    assert!(n.closed(c));
    assert!(n.dropped().last().unwrap().contains("before STREAMTYPE"));
    check_good(&mut n, "early");

    // A second STREAMTYPE.
    let c = n.connect();
    n.send(c, &[create("echo"), create("echo")]);
    assert!(n.closed(c));
    assert!(n.dropped().last().unwrap().contains("second STREAMTYPE"));
    check_good(&mut n, "twice");

    // Unknown, server and link streamtypes: a failed create result, then closed.
    for st in ["nope", "srv", "ss-proxy-link"] {
        let c = n.connect();
        n.send(c, &[create(st)]);
        assert!(
            matches!(n.take(c)[..], [ToClient::CreateResult { status: 1, .. }]),
            "{st}"
        );
        assert!(n.closed(c), "{st}");
        check_good(&mut n, st);
    }
    assert!(n.dropped().iter().any(|r| r.contains("unknown streamtype")));
    assert!(n.dropped().iter().any(|r| r.contains("is a server")));

    // Unsupported protocol version.
    let c = n.connect();
    let mut b = vec![];
    create("echo").encode(&mut b).unwrap();
    assert_eq!(b[3], PROTOCOL_VERSION);
    b[3] = 2;
    n.send_raw(c, &b);
    assert!(n.closed(c));
    check_good(&mut n, "version");

    // A frame longer than max_frame, refused from its header.
    let c = n.connect();
    n.send(c, &[create("echo")]);
    n.take(c);
    n.send_raw(c, &[0xad, 0x13, 0x88]);
    assert!(n.closed(c));
    assert!(n.dropped().last().unwrap().contains("malformed"));
    check_good(&mut n, "oversize");

    // Only the good link is left, and nothing leaked on either engine.
    assert_eq!(n.px.link_count(), 1);
    assert_eq!(n.d.stream_count(), 3, "listener, good link, its onward");
}

/// The onward peer is slower than the client: the daemon stops reading the
/// link beyond `proxy_buflen` and resumes as the onward stream drains, so
/// everything arrives and the daemon never holds much.
#[test]
fn a_client_faster_than_the_onward_peer_is_slowed_not_dropped() {
    let mut n = Net::new();
    let c = n.open("small");
    let onward_conn = n.pairs.last().unwrap().0;
    n.stall_onward(onward_conn, true);
    let sent: Vec<u8> = (0..96 * 1024u32).map(|i| (i % 251) as u8).collect();
    for piece in sent.chunks(500) {
        n.send(c, &[tx(piece, Flags::NONE)]);
    }
    assert!(n.reading_paused(c), "the daemon stopped reading the link");
    // The daemon holds what fits its bounds (the onward transmit window and
    // proxy_buflen); the rest waits in the client's socket.
    assert!(n.max_parked > 16 * 1024, "parked {}", n.max_parked);
    // Another client on the same daemon does not notice.
    let other = n.open("echo");
    n.send(other, &[tx(b"still here", Flags::NONE)]);
    assert_eq!(rx_bytes(&n.take(other)), b"still here");
    n.stall_onward(onward_conn, false);
    let got = n.take(c);
    assert!(!n.closed(c));
    assert!(n.dropped().is_empty(), "{:?}", n.dropped());
    assert_eq!(rx_bytes(&got), sent, "every byte echoed, in order");
    assert!(!n.reading_paused(c));
}

/// The client reads slower than the onward peer sends: beyond
/// `proxy_buflen_rxflow_on_above` the daemon stops reading the onward
/// connection, and resumes below `_off_below` as the client catches up.
#[test]
fn a_client_slower_than_the_onward_peer_pauses_the_onward_stream() {
    let mut n = Net::new();
    let c = n.open("small");
    let onward_conn = n.pairs.last().unwrap().0;
    n.stall(c, true);
    let sent: Vec<u8> = (0..200 * 1024u32).map(|i| (i % 253) as u8).collect();
    for piece in sent.chunks(4096) {
        n.send(c, &[tx(piece, Flags::NONE)]);
    }
    assert!(!n.closed(c));
    assert!(n.dropped().is_empty(), "{:?}", n.dropped());
    assert!(
        n.reading_paused(onward_conn),
        "the daemon stopped reading the onward connection"
    );
    // What the daemon holds for the stalled client stays near proxy_buflen
    // (1 KiB) plus the engine's transmit window, however much was echoed.
    let held = n.unread(c);
    assert!(
        held < 256 * 1024,
        "daemon wrote {held} bytes to a stalled client"
    );
    n.stall(c, false);
    let got = n.take(c);
    assert_eq!(rx_bytes(&got), sent, "every byte echoed, in order");
    assert!(!n.reading_paused(onward_conn));
}

#[test]
fn links_beyond_max_links_are_refused() {
    let mut n = Net::with(ProxyConfig {
        max_links: 2,
        ..ProxyConfig::default()
    });
    let a = n.open("echo");
    let b = n.connect();
    let c = n.connect();
    assert!(!n.closed(b));
    assert!(n.closed(c));
    assert!(n.dropped().last().unwrap().contains("more than 2 links"));
    n.send(a, &[tx(b"ok", Flags::NONE)]);
    assert_eq!(rx_bytes(&n.take(a)), b"ok");
    // Once a link ends, a new one is welcome.
    n.send(b, &[ToProxy::Destroying]);
    let d = n.connect();
    assert!(!n.closed(d));
}

#[test]
fn metadata_goes_both_ways_over_http() {
    let mut n = Net::new();
    let c = n.connect();
    n.send(c, &[create("hget")]);
    n.take(c);
    n.send(
        c,
        &[
            ToProxy::Metadata {
                name: "id".into(),
                value: b"42".to_vec(),
            },
            ToProxy::OnwardConnect,
        ],
    );
    // ONWARD_CONNECT alone sends the GET (the h1 client runs its
    // transaction on connect).
    assert_eq!(n.peer.paths, ["/items/42"]);
    let got = n.take(c);
    let md: Vec<_> = got
        .iter()
        .filter_map(|m| match m {
            ToClient::Metadata { name, value } => Some((name.clone(), value.clone())),
            _ => None,
        })
        .collect();
    // The response header comes back; the client's own metadata does not.
    assert_eq!(md, [("ctype".to_string(), b"text/x-test".to_vec())]);
    let md_at = got
        .iter()
        .position(|m| matches!(m, ToClient::Metadata { .. }))
        .unwrap();
    let connected_at = got
        .iter()
        .position(|m| m.stream_state() == Some(StreamState::Connected))
        .unwrap();
    let rx_at = got
        .iter()
        .position(|m| matches!(m, ToClient::RxPayload(_)))
        .unwrap();
    assert!(md_at < connected_at && connected_at < rx_at, "{got:?}");
    assert_eq!(rx_bytes(&got), b"body:/items/42");
    assert!(states(&got).contains(&StreamState::QosAckRemote), "{got:?}");
    // Unknown metadata is refused but not fatal.
    n.send(
        c,
        &[ToProxy::Metadata {
            name: "nope".into(),
            value: b"x".to_vec(),
        }],
    );
    assert!(!n.closed(c));
    assert!(n
        .log
        .iter()
        .any(|r| matches!(r, ProxyLog::Note { text, .. } if text.contains("nope"))));
}

#[test]
fn timeout_updates_reach_the_onward_stream() {
    let mut n = Net::new();
    let c = n.open("echo");
    n.send(c, &[ToProxy::TimeoutUpdate(50)]);
    n.now += std::time::Duration::from_millis(60);
    n.d.handle_timeout(n.now);
    n.pump();
    assert!(states(&n.take(c)).contains(&StreamState::Timeout));
    n.send(c, &[ToProxy::TimeoutUpdate(50)]);
    n.send(
        c,
        &[ToProxy::TimeoutUpdate(ss_core::proxy::wire::TIMEOUT_CANCEL)],
    );
    n.now += std::time::Duration::from_millis(60);
    n.d.handle_timeout(n.now);
    n.pump();
    assert!(!states(&n.take(c)).contains(&StreamState::Timeout));
}

/// The end of a chunked body arrives as an empty EOM from the onward
/// stream; the daemon folds it into the payload frame before it, since the
/// reference client mishandles empty RX_PAYLOAD frames.
#[test]
fn a_bare_eom_joins_the_last_payload_frame() {
    let mut n = Net::new();
    let c = n.connect();
    n.send(c, &[create("hget")]);
    n.take(c);
    n.send(
        c,
        &[
            ToProxy::Metadata {
                name: "id".into(),
                value: b"chunked".to_vec(),
            },
            ToProxy::OnwardConnect,
        ],
    );
    let got = n.take(c);
    let payloads: Vec<&Payload> = got
        .iter()
        .filter_map(|m| match m {
            ToClient::RxPayload(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(rx_bytes(&got), b"body:/items/chunked");
    assert!(
        payloads.iter().all(|p| !p.data.is_empty()),
        "an empty RX_PAYLOAD went out: {payloads:?}"
    );
    assert!(payloads.last().unwrap().flags.contains(Flags::EOM));
    assert!(payloads[0].flags.contains(Flags::SOM));
}

/// One client process cannot take every link: beyond
/// `max_links_per_client` its further links are dropped, while another
/// process (and the first one, once a link closes) still gets through.
#[test]
fn links_per_client_process_are_bounded() {
    let mut n = Net::with(ProxyConfig {
        max_links_per_client: 2,
        ..ProxyConfig::default()
    });
    let greedy = Process {
        pid: 700,
        uid: 1000,
    };
    let other = Process {
        pid: 701,
        uid: 1000,
    };
    let a = n.connect_from(Some(greedy));
    let b = n.connect_from(Some(greedy));
    let c = n.connect_from(Some(greedy));
    assert!(!n.closed(a) && !n.closed(b));
    assert!(n.closed(c), "a third link from the same process");
    assert!(
        n.dropped()
            .last()
            .unwrap()
            .contains("more than 2 links from process 700"),
        "{:?}",
        n.dropped()
    );
    let d = n.connect_from(Some(other));
    assert!(!n.closed(d), "another process is not affected");
    // The first process closes a link: it may open another.
    n.send(a, &[ToProxy::Destroying]);
    assert!(n.closed(a));
    let e = n.connect_from(Some(greedy));
    assert!(!n.closed(e));
    n.send(e, &[create("echo"), ToProxy::OnwardConnect]);
    n.take(e);
    n.send(e, &[tx(b"still fine", Flags::NONE)]);
    assert_eq!(rx_bytes(&n.take(e)), b"still fine");
}
