//! Engine behaviour through its public API: lifecycle, retry, servers, callbacks.

use ss_core::engine::SockAddr;
use ss_core::policy::{MetadataDecl, Policy, Protocol, StreamType};
use ss_core::{
    Action, ConnId, Engine, EngineConfig, Error, Event, Flags, Handler, Host, ListenerId,
    RetryPolicy, SsRet, StreamCtx, StreamId, StreamState,
};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn policy() -> Policy {
    let retry = RetryPolicy {
        name: "default".into(),
        backoff_ms: vec![1000, 2000, 3000],
        conceal: 3,
        jitter_pc: Some(0),
        svalidping_s: None,
        svalidhup_s: None,
    };
    let client = StreamType {
        name: "client".into(),
        endpoint: Some("127.0.0.1".into()),
        port: 7000,
        protocol: Protocol::Raw,
        retry: Some("default".into()),
        opportunistic: true,
        timeout_ms: Some(500),
        ..Default::default()
    };
    let nailed = StreamType {
        name: "nailed".into(),
        nailed_up: true,
        opportunistic: false,
        ..client.clone()
    };
    let templ = StreamType {
        name: "templ".into(),
        endpoint: Some("${region}.example.com".into()),
        metadata: vec![MetadataDecl {
            name: "region".into(),
            header: None,
        }],
        ..client.clone()
    };
    let unix = StreamType {
        name: "unix".into(),
        endpoint: Some("+@ss-test".into()),
        ..client.clone()
    };
    let server = StreamType {
        name: "server".into(),
        endpoint: Some("127.0.0.1".into()),
        port: 7000,
        server: true,
        ..Default::default()
    };
    Policy {
        retry: vec![retry],
        streamtypes: vec![client, nailed, templ, unix, server],
        ..Default::default()
    }
}

fn engine() -> Engine {
    Engine::new(
        policy(),
        EngineConfig {
            seed: 1,
            ..Default::default()
        },
    )
}

fn states(e: &mut Engine) -> Vec<StreamState> {
    let mut v = vec![];
    while let Some(ev) = e.poll_event() {
        if let Event::State { state, .. } = ev {
            v.push(state);
        }
    }
    v
}

fn actions(e: &mut Engine) -> Vec<Action> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

fn connect_conn(acts: &[Action]) -> ConnId {
    acts.iter()
        .find_map(|a| match a {
            Action::Connect { conn, .. } | Action::Resolve { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("a connect or resolve action")
}

#[test]
fn retries_with_backoff_then_all_retries_failed() {
    use StreamState::*;
    let mut e = engine();
    let t0 = Instant::now();
    let s = e.create(t0, "client").unwrap();
    e.client_connect(t0, s).unwrap();
    let mut now = t0;
    let mut seen = states(&mut e);
    let mut waits = vec![];
    loop {
        let acts = actions(&mut e);
        if let Some(conn) = acts.iter().find_map(|a| match a {
            Action::Connect { conn, .. } => Some(*conn),
            _ => None,
        }) {
            e.handle_connect_failed(now, conn, "refused");
        }
        seen.extend(states(&mut e));
        match e.poll_timeout() {
            Some(at) => {
                waits.push(at - now);
                now = at;
                e.handle_timeout(now);
                seen.extend(states(&mut e));
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            Creating,
            Connecting,
            Unreachable,
            Poll,
            Connecting,
            Unreachable,
            Poll,
            Connecting,
            Unreachable,
            Poll,
            Connecting,
            Unreachable,
            AllRetriesFailed
        ]
    );
    assert_eq!(
        waits,
        [
            Duration::from_millis(1000),
            Duration::from_millis(2000),
            Duration::from_millis(3000)
        ]
    );
    // Idle afterwards: no timers, and the transitions were all legal.
    assert_eq!(e.poll_timeout(), None);
    let mut prev = None;
    for s in seen {
        assert!(s.is_legal_after(prev), "{prev:?} -> {s:?}");
        prev = Some(s);
    }
    // An explicit connect starts over with a fresh retry count.
    e.client_connect(now, s).unwrap();
    assert_eq!(states(&mut e), [Connecting]);
}

#[test]
fn request_tx_on_idle_stream_polls_and_connects_then_writable() {
    use StreamState::*;
    let mut e = engine();
    let t = Instant::now();
    let s = e.create(t, "client").unwrap();
    e.request_tx(t, s).unwrap();
    let acts = actions(&mut e);
    assert!(
        matches!(&acts[..], [Action::Connect { addr: SockAddr::Ip(a), .. }] if a.port() == 7000)
    );
    let conn = connect_conn(&acts);
    e.handle_connected(t, conn);
    let evs: Vec<Event> = std::iter::from_fn(|| e.poll_event()).collect();
    let st: Vec<_> = evs
        .iter()
        .filter_map(|ev| match ev {
            Event::State { state, .. } => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(st, [Creating, Poll, Connecting, Connected]);
    assert!(matches!(evs.last(), Some(Event::Writable { stream, .. }) if *stream == s));
    assert_eq!(e.write(t, s, b"hello", Flags::NONE).unwrap(), 5);
    assert_eq!(
        actions(&mut e),
        [Action::Transmit {
            conn,
            data: b"hello".to_vec()
        }]
    );
    e.handle_data(t, conn, b"world");
    assert!(matches!(e.poll_event(), Some(Event::Rx { data, .. }) if data == b"world"));
}

#[test]
fn tx_is_flow_controlled_by_unsent_bytes() {
    let mut e = Engine::new(
        policy(),
        EngineConfig {
            tx_high_water: 10,
            ..Default::default()
        },
    );
    let t = Instant::now();
    let s = e.create(t, "client").unwrap();
    e.client_connect(t, s).unwrap();
    let conn = connect_conn(&actions(&mut e));
    e.handle_connected(t, conn);
    states(&mut e);
    e.write(t, s, &[0; 20], Flags::NONE).unwrap();
    e.request_tx(t, s).unwrap();
    assert_eq!(
        e.poll_event(),
        None,
        "no Writable while 20 bytes are unsent"
    );
    e.handle_sent(t, conn, 15);
    assert!(matches!(e.poll_event(), Some(Event::Writable { .. })));
}

#[test]
fn nailed_up_connects_on_create_and_reconnects_after_drop() {
    use StreamState::*;
    let mut e = engine();
    let t = Instant::now();
    let s = e.create(t, "nailed").unwrap();
    let conn = connect_conn(&actions(&mut e));
    e.handle_connected(t, conn);
    e.handle_closed(t, conn);
    assert_eq!(
        states(&mut e),
        [Creating, Connecting, Connected, Disconnected]
    );
    let at = e.poll_timeout().unwrap();
    assert_eq!(at - t, Duration::from_millis(1000));
    e.handle_timeout(at);
    assert_eq!(states(&mut e), [Poll, Connecting]);
    let conn2 = connect_conn(&actions(&mut e));
    assert_ne!(conn, conn2);
    e.handle_connected(at, conn2);
    assert_eq!(states(&mut e), [Connected]);
    assert_eq!(e.state(s), Some(Connected));
}

#[test]
fn opportunistic_stays_down_after_drop() {
    let mut e = engine();
    let t = Instant::now();
    let s = e.create(t, "client").unwrap();
    e.client_connect(t, s).unwrap();
    let conn = connect_conn(&actions(&mut e));
    e.handle_connected(t, conn);
    e.handle_closed(t, conn);
    states(&mut e);
    assert_eq!(e.poll_timeout(), None);
    assert_eq!(e.state(s), Some(StreamState::Disconnected));
}

#[test]
fn metadata_substituted_into_endpoint_and_resolved() {
    let mut e = engine();
    let t = Instant::now();
    let s = e.create(t, "templ").unwrap();
    e.set_metadata(s, "region", b"uk").unwrap();
    assert_eq!(e.get_metadata(s, "region").unwrap(), Some(&b"uk"[..]));
    assert!(matches!(
        e.set_metadata(s, "nope", b"x"),
        Err(Error::UnknownMetadata(_))
    ));
    e.client_connect(t, s).unwrap();
    let acts = actions(&mut e);
    let [Action::Resolve { conn, host }] = &acts[..] else {
        panic!("{acts:?}")
    };
    assert_eq!(host, "uk.example.com");
    e.handle_resolved(
        t,
        *conn,
        &["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
    );
    let acts = actions(&mut e);
    assert!(
        matches!(&acts[..], [Action::Connect { addr: SockAddr::Ip(a), .. }] if a.to_string() == "10.0.0.1:7000")
    );
    // The first address fails: the second is tried before UNREACHABLE.
    e.handle_connect_failed(t, *conn, "refused");
    let acts = actions(&mut e);
    assert!(
        matches!(&acts[..], [Action::Connect { addr: SockAddr::Ip(a), .. }] if a.to_string() == "10.0.0.2:7000")
    );
    assert!(!states(&mut e).contains(&StreamState::Unreachable));
}

#[test]
fn dns_failure_and_connect_timeout_are_unreachable() {
    let mut e = engine();
    let t = Instant::now();
    let s = e.create(t, "templ").unwrap();
    e.client_connect(t, s).unwrap();
    let conn = connect_conn(&actions(&mut e));
    e.handle_resolved(t, conn, &[]);
    assert_eq!(states(&mut e).last(), Some(&StreamState::Unreachable));
    // Retry timer then a connect that never completes: the deadline fails it.
    let at = e.poll_timeout().unwrap();
    e.handle_timeout(at);
    let conn = connect_conn(&actions(&mut e));
    let deadline = e.poll_timeout().unwrap();
    assert_eq!(deadline - at, e.config().connect_timeout);
    e.handle_timeout(deadline);
    assert!(actions(&mut e).contains(&Action::Close { conn }));
    assert_eq!(states(&mut e).last(), Some(&StreamState::Unreachable));
}

#[test]
fn unix_abstract_endpoint() {
    let mut e = engine();
    let t = Instant::now();
    let s = e.create(t, "unix").unwrap();
    e.client_connect(t, s).unwrap();
    assert!(
        matches!(&actions(&mut e)[..], [Action::Connect { addr: SockAddr::UnixAbstract(n), .. }] if n == "ss-test")
    );
}

#[test]
fn user_timeout_from_policy() {
    let mut e = engine();
    let t = Instant::now();
    let s = e.create(t, "client").unwrap();
    e.start_timeout(t, s, 0).unwrap();
    assert_eq!(e.poll_timeout(), Some(t + Duration::from_millis(500)));
    e.handle_timeout(t + Duration::from_millis(500));
    assert_eq!(
        states(&mut e),
        [StreamState::Creating, StreamState::Timeout]
    );
}

#[test]
fn server_accepts_and_destroy_closes_everything() {
    use StreamState::*;
    let mut e = engine();
    let t = Instant::now();
    let srv = e.create(t, "server").unwrap();
    let acts = actions(&mut e);
    let [Action::Listen { listener, bind }] = &acts[..] else {
        panic!("{acts:?}")
    };
    assert_eq!(bind.to_string(), "127.0.0.1:7000");
    e.handle_listening(t, *listener, "127.0.0.1:7000");
    let conn = e.handle_accepted(t, *listener).unwrap();
    let evs: Vec<Event> = std::iter::from_fn(|| e.poll_event()).collect();
    let child = evs
        .iter()
        .find_map(|ev| match ev {
            Event::Accepted { stream, .. } => Some(*stream),
            _ => None,
        })
        .unwrap();
    let child_states: Vec<_> = evs
        .iter()
        .filter_map(|ev| match ev {
            Event::State { stream, state, .. } if *stream == child => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(child_states, [Creating, Connecting, Connected]);
    e.handle_data(t, conn, b"ping");
    assert!(matches!(e.poll_event(), Some(Event::Rx { stream, .. }) if stream == child));
    e.destroy(t, srv).unwrap();
    let acts = actions(&mut e);
    assert!(acts.contains(&Action::Close { conn }));
    assert!(acts.contains(&Action::StopListening {
        listener: *listener
    }));
    assert_eq!(e.stream_count(), 0);
    assert_eq!(e.conn_count(), 0);
}

#[test]
fn accepted_stream_is_destroyed_when_its_connection_closes() {
    let mut e = engine();
    let t = Instant::now();
    let _srv = e.create(t, "server").unwrap();
    let Some(Action::Listen { listener, .. }) = e.poll_action() else {
        panic!()
    };
    let conn = e.handle_accepted(t, listener).unwrap();
    states(&mut e);
    e.handle_closed(t, conn);
    assert_eq!(
        states(&mut e),
        [StreamState::Disconnected, StreamState::Destroying]
    );
    assert_eq!(e.stream_count(), 1);
}

#[test]
fn unknown_streamtype_and_stream_errors() {
    let mut e = engine();
    let t = Instant::now();
    assert_eq!(
        e.create(t, "nope"),
        Err(Error::UnknownStreamtype("nope".into()))
    );
    assert_eq!(
        e.request_tx(t, StreamId(99)),
        Err(Error::NoSuchStream(StreamId(99)))
    );
    let s = e.create(t, "client").unwrap();
    assert_eq!(
        e.write(t, s, b"x", Flags::NONE),
        Err(Error::NotConnected(s))
    );
}

/// Runs a client host and a server host against each other over in-memory pipes.
struct Pair {
    a: Host,
    b: Host,
    now: Instant,
    // conn on side a <-> conn on side b
    links: Vec<(ConnId, ConnId)>,
    listener: Option<ListenerId>,
}

impl Pair {
    fn pump(&mut self) {
        for _ in 0..100 {
            let mut progressed = false;
            while let Some(act) = self.a.engine.poll_action() {
                progressed = true;
                match act {
                    Action::Connect { conn, .. } => {
                        let l = self.listener.unwrap();
                        let bc = self.b.engine.handle_accepted(self.now, l).unwrap();
                        self.links.push((conn, bc));
                        self.a.engine.handle_connected(self.now, conn);
                    }
                    Action::Transmit { conn, data } => {
                        let n = data.len();
                        if let Some((_, bc)) = self.links.iter().find(|(ac, _)| *ac == conn) {
                            self.b.engine.handle_data(self.now, *bc, &data);
                        }
                        self.a.engine.handle_sent(self.now, conn, n);
                    }
                    Action::Close { conn } => {
                        if let Some(i) = self.links.iter().position(|(ac, _)| *ac == conn) {
                            let (_, bc) = self.links.remove(i);
                            self.b.engine.handle_closed(self.now, bc);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(act) = self.b.engine.poll_action() {
                progressed = true;
                match act {
                    Action::Listen { listener, .. } => self.listener = Some(listener),
                    Action::Transmit { conn, data } => {
                        let n = data.len();
                        if let Some((ac, _)) = self.links.iter().find(|(_, bc)| *bc == conn) {
                            self.a.engine.handle_data(self.now, *ac, &data);
                        }
                        self.b.engine.handle_sent(self.now, conn, n);
                    }
                    Action::Close { conn } => {
                        if let Some(i) = self.links.iter().position(|(_, bc)| *bc == conn) {
                            let (ac, _) = self.links.remove(i);
                            self.a.engine.handle_closed(self.now, ac);
                        }
                    }
                    _ => {}
                }
            }
            self.a.dispatch(self.now);
            self.b.dispatch(self.now);
            if !progressed {
                break;
            }
        }
    }
}

type Log = Rc<RefCell<Vec<String>>>;

struct EchoServer(Log, Vec<u8>);
impl Handler for EchoServer {
    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], _f: Flags) -> SsRet {
        self.1.extend_from_slice(data);
        let _ = ctx.request_tx();
        SsRet::Ok
    }
    fn tx(
        &mut self,
        _ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        _b: usize,
        _f: &mut Flags,
    ) -> SsRet {
        buf.append(&mut self.1);
        SsRet::Ok
    }
    fn state(&mut self, _ctx: &mut StreamCtx<'_>, s: StreamState, _a: u32) -> SsRet {
        self.0.borrow_mut().push(format!("srv {}", s.lws_name()));
        SsRet::Ok
    }
}

struct Client {
    log: Log,
    got: Rc<RefCell<Vec<u8>>>,
    destroy_on_rx: bool,
}
impl Handler for Client {
    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], _f: Flags) -> SsRet {
        self.got.borrow_mut().extend_from_slice(data);
        if self.destroy_on_rx {
            ctx.destroy();
            return SsRet::HandleDestroyed;
        }
        SsRet::Ok
    }
    fn tx(
        &mut self,
        _ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        _b: usize,
        _f: &mut Flags,
    ) -> SsRet {
        buf.extend_from_slice(b"hello");
        SsRet::Ok
    }
    fn state(&mut self, ctx: &mut StreamCtx<'_>, s: StreamState, _a: u32) -> SsRet {
        self.log.borrow_mut().push(format!("cli {}", s.lws_name()));
        if s == StreamState::Connected {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

#[test]
fn two_hosts_echo_and_destroy_inside_callback() {
    let t = Instant::now();
    let log: Log = Rc::default();
    let mut p = Pair {
        a: Host::new(engine()),
        b: Host::new(engine()),
        now: t,
        links: vec![],
        listener: None,
    };
    let l2 = log.clone();
    p.b.create_server(
        t,
        "server",
        Box::new(EchoServer(log.clone(), vec![])),
        Box::new(move |_| Box::new(EchoServer(l2.clone(), vec![]))),
    )
    .unwrap();
    p.pump();
    let got = Rc::new(RefCell::new(vec![]));
    let c =
        p.a.create(
            t,
            "client",
            Box::new(Client {
                log: log.clone(),
                got: got.clone(),
                destroy_on_rx: true,
            }),
        )
        .unwrap();
    p.a.engine.client_connect(t, c).unwrap();
    p.pump();
    assert_eq!(&*got.borrow(), b"hello");
    assert!(!p.a.has_stream(c), "destroyed inside its rx callback");
    let log = log.borrow();
    assert!(
        log.contains(&"cli LWSSSCS_DESTROYING".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"srv LWSSSCS_DISCONNECTED".to_string()),
        "{log:?}"
    );
    assert_eq!(p.a.engine.conn_count(), 0);
}

struct Returns(SsRet);
impl Handler for Returns {
    fn state(&mut self, _ctx: &mut StreamCtx<'_>, s: StreamState, _a: u32) -> SsRet {
        if s == StreamState::Connected {
            self.0
        } else {
            SsRet::Ok
        }
    }
}

#[test]
fn state_callback_return_codes() {
    let t = Instant::now();
    for (ret, alive) in [(SsRet::DisconnectMe, true), (SsRet::DestroyMe, false)] {
        let mut p = Pair {
            a: Host::new(engine()),
            b: Host::new(engine()),
            now: t,
            links: vec![],
            listener: None,
        };
        p.b.create_server(
            t,
            "server",
            Box::new(Returns(SsRet::Ok)),
            Box::new(|_| Box::new(Returns(SsRet::Ok))),
        )
        .unwrap();
        p.pump();
        let c = p.a.create(t, "client", Box::new(Returns(ret))).unwrap();
        p.a.engine.client_connect(t, c).unwrap();
        p.pump();
        assert_eq!(p.a.has_stream(c), alive);
        assert_eq!(p.a.engine.conn_count(), 0);
        if alive {
            assert_eq!(p.a.engine.state(c), Some(StreamState::Disconnected));
        }
    }
}

#[test]
fn destroy_drops_queued_rx_and_writable_for_the_stream() {
    let mut e = engine();
    let t = Instant::now();
    let s = e.create(t, "client").unwrap();
    e.client_connect(t, s).unwrap();
    let conn = connect_conn(&actions(&mut e));
    e.handle_connected(t, conn);
    e.request_tx(t, s).unwrap();
    e.handle_data(t, conn, b"late");
    e.destroy(t, s).unwrap();
    let evs: Vec<Event> = std::iter::from_fn(|| e.poll_event()).collect();
    assert!(
        !evs.iter()
            .any(|ev| matches!(ev, Event::Rx { .. } | Event::Writable { .. })),
        "{evs:?}"
    );
    assert!(matches!(
        evs.last(),
        Some(Event::State {
            state: StreamState::Destroying,
            ..
        })
    ));
}

#[test]
fn handlers_hear_connection_errors_and_can_be_changed_from_a_callback() {
    // An endpoint naming undeclared metadata cannot be resolved: the handler
    // hears why, then UNREACHABLE.
    let mut p = policy();
    p.streamtypes[0].endpoint = Some("${nope}.example".into());
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    struct First(Rc<RefCell<Vec<String>>>);
    struct Second(Rc<RefCell<Vec<String>>>);
    impl Handler for First {
        fn state(&mut self, ctx: &mut StreamCtx<'_>, s: StreamState, _: u32) -> SsRet {
            self.0.borrow_mut().push(format!("first {}", s.lws_name()));
            if s == StreamState::Poll {
                ctx.change_handler(Box::new(Second(self.0.clone())));
            }
            SsRet::Ok
        }
    }
    impl Handler for Second {
        fn state(&mut self, _: &mut StreamCtx<'_>, s: StreamState, _: u32) -> SsRet {
            self.0.borrow_mut().push(format!("second {}", s.lws_name()));
            SsRet::Ok
        }
        fn connection_error(&mut self, _: &mut StreamCtx<'_>, reason: &str) {
            self.0.borrow_mut().push(format!("second error {reason}"));
        }
    }
    let mut host = Host::new(Engine::new(p, EngineConfig::default()));
    let now = Instant::now();
    let id = host
        .create(now, "client", Box::new(First(log.clone())))
        .unwrap();
    host.engine.request_tx(now, id).unwrap();
    host.dispatch(now);
    let log = log.borrow();
    assert_eq!(
        log[..4],
        [
            "first LWSSSCS_CREATING",
            "first LWSSSCS_POLL",
            "second LWSSSCS_CONNECTING",
            "second error metadata \"nope\" is not declared by the streamtype",
        ]
    );
    assert_eq!(log[4], "second LWSSSCS_UNREACHABLE");
}

/// A TLS server that accepts the TCP connection and never answers the
/// ClientHello: the connect timeout covers the handshake too, so the attempt
/// fails (with the reason) and the stream retries instead of hanging.
#[test]
fn a_stalled_tls_handshake_times_out_and_retries() {
    let policy = Policy::parse(
        r#"{"retry": [{"r": {"backoff": [100], "conceal": 2, "jitterpc": 0}}],
            "s": [{"t": {"endpoint": "127.0.0.1", "port": 443, "protocol": "raw",
                         "tls": true, "retry": "r"}}]}"#,
    )
    .unwrap();
    let mut e = Engine::new(
        policy,
        EngineConfig {
            seed: 1,
            connect_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    );
    let t0 = Instant::now();
    let s = e.create(t0, "t").unwrap();
    e.client_connect(t0, s).unwrap();
    let conn = connect_conn(&actions(&mut e));
    e.handle_connected(t0, conn);
    let acts = actions(&mut e);
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Transmit { conn: c, .. } if *c == conn)),
        "a ClientHello goes out"
    );
    let mut errors = vec![];
    let mut seen = vec![];
    let mut drain = |e: &mut Engine| {
        while let Some(ev) = e.poll_event() {
            match ev {
                Event::State { state, .. } => seen.push(state),
                Event::ConnectionError { reason, .. } => errors.push(reason),
                _ => {}
            }
        }
    };
    drain(&mut e);
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    e.handle_timeout(t0 + Duration::from_secs(5));
    drain(&mut e);
    let acts = actions(&mut e);
    assert!(acts.contains(&Action::Close { conn }), "{acts:?}");
    assert!(
        errors.iter().any(|r| r.contains("handshake not done")),
        "{errors:?}"
    );
    assert_eq!(seen.last(), Some(&StreamState::Unreachable), "{seen:?}");
    // ...and the retry timer is armed.
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_millis(5100)));
}
