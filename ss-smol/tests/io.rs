//! Real sockets through the adapter: raw echo over TCP and Unix sockets, and
//! retries against a closed port.

use ss_core::policy::{Policy, Protocol, StreamType};
use ss_core::{
    EngineConfig, Flags, Handler, Host, RetryPolicy, SsRet, StreamCtx, StreamId, StreamState,
};
use ss_smol::Runtime;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

fn policy(server_ep: &str, client_ep: &str, port: u16) -> Policy {
    let retry = RetryPolicy {
        name: "quick".into(),
        backoff_ms: vec![50, 50],
        conceal: 2,
        jitter_pc: Some(0),
        svalidping_s: None,
        svalidhup_s: None,
    };
    let client = StreamType {
        name: "client".into(),
        endpoint: Some(client_ep.into()),
        port,
        protocol: Protocol::Raw,
        retry: Some("quick".into()),
        ..Default::default()
    };
    let server = StreamType {
        name: "server".into(),
        endpoint: Some(server_ep.into()),
        port: 0,
        protocol: Protocol::Raw,
        server: true,
        ..Default::default()
    };
    Policy {
        retry: vec![retry],
        streamtypes: vec![client, server],
        ..Default::default()
    }
}

fn runtime(p: Policy) -> Runtime {
    Runtime::new(Host::new(ss_core::Engine::new(
        p,
        EngineConfig {
            seed: 7,
            ..Default::default()
        },
    )))
}

/// Echoes every payload back.
#[derive(Default)]
struct Echo(Vec<u8>);
impl Handler for Echo {
    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], _f: Flags) -> SsRet {
        self.0.extend_from_slice(data);
        let _ = ctx.request_tx();
        SsRet::Ok
    }
    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        _f: &mut Flags,
    ) -> SsRet {
        let n = self.0.len().min(budget);
        buf.extend(self.0.drain(..n));
        if !self.0.is_empty() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

/// Sends `msg` once connected and records what comes back and its states.
struct Client {
    msg: Vec<u8>,
    sent: usize,
    got: Rc<RefCell<Vec<u8>>>,
    states: Rc<RefCell<Vec<StreamState>>>,
}
impl Handler for Client {
    fn rx(&mut self, _ctx: &mut StreamCtx<'_>, data: &[u8], _f: Flags) -> SsRet {
        self.got.borrow_mut().extend_from_slice(data);
        SsRet::Ok
    }
    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        _f: &mut Flags,
    ) -> SsRet {
        let n = (self.msg.len() - self.sent).min(budget);
        buf.extend_from_slice(&self.msg[self.sent..self.sent + n]);
        self.sent += n;
        if self.sent < self.msg.len() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
    fn state(&mut self, ctx: &mut StreamCtx<'_>, s: StreamState, _a: u32) -> SsRet {
        self.states.borrow_mut().push(s);
        if s == StreamState::Connected {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

/// Start the server, point the client streamtype at it, echo `msg` through it.
fn echo_through(server_ep: &str, client_ep: &str, msg: Vec<u8>) {
    let mut rt = runtime(policy(server_ep, client_ep, 0));
    let now = rt.now();
    let srv = rt
        .host()
        .create_server(
            now,
            "server",
            Box::new(Echo::default()),
            Box::new(|_: StreamId| Box::new(Echo::default()) as Box<dyn Handler>),
        )
        .unwrap();
    assert!(rt.run_until(Duration::from_secs(5), &mut |h| h.listening(srv).is_some()));
    let addr = rt.host().listening(srv).unwrap().unwrap().to_string();
    let port = if client_ep.starts_with('+') {
        0
    } else {
        addr.rsplit(':').next().unwrap().parse().unwrap()
    };
    rt.host()
        .engine
        .set_policy(policy(server_ep, client_ep, port));
    let got = Rc::new(RefCell::new(vec![]));
    let states = Rc::new(RefCell::new(vec![]));
    let now = rt.now();
    let c = rt
        .host()
        .create(
            now,
            "client",
            Box::new(Client {
                msg: msg.clone(),
                sent: 0,
                got: got.clone(),
                states: states.clone(),
            }),
        )
        .unwrap();
    rt.host().engine.client_connect(now, c).unwrap();
    let len = msg.len();
    let g = got.clone();
    assert!(
        rt.run_until(Duration::from_secs(10), &mut |_| g.borrow().len() >= len),
        "echo incomplete: {} of {len} bytes, states {:?}",
        got.borrow().len(),
        states.borrow()
    );
    assert_eq!(*got.borrow(), msg);
    // Tear down: the client's connection closes, the server sees it.
    let now = rt.now();
    rt.host().engine.destroy(now, c).unwrap();
    rt.run_until(Duration::from_millis(200), &mut |h| {
        h.engine.conn_count() == 0
    });
    assert_eq!(rt.host().engine.conn_count(), 0);
    rt.host().engine.destroy(now, srv).unwrap();
    rt.run_until(Duration::from_millis(50), &mut |_| false);
    assert_eq!(rt.host().engine.stream_count(), 0);
}

fn big_message() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn tcp_echo() {
    echo_through("127.0.0.1", "127.0.0.1", b"hello, secure streams".to_vec());
}

#[test]
fn tcp_echo_large_with_partial_writes() {
    echo_through("127.0.0.1", "127.0.0.1", big_message());
}

#[test]
fn unix_path_echo() {
    let path = std::env::temp_dir().join(format!(
        "ss-test-{}-{}.sock",
        env!("CARGO_PKG_NAME"),
        std::process::id()
    ));
    let ep = format!("+{}", path.display());
    echo_through(&ep, &ep, big_message());
    assert!(!path.exists(), "socket file removed on stop");
}

#[cfg(target_os = "linux")]
#[test]
fn unix_abstract_echo() {
    let ep = format!(
        "+@ss-test-{}-{}",
        env!("CARGO_PKG_NAME"),
        std::process::id()
    );
    echo_through(&ep, &ep, b"abstract".to_vec());
}

#[test]
fn dns_name_resolves_and_connects() {
    echo_through("127.0.0.1", "localhost", b"via dns".to_vec());
}

#[test]
fn closed_port_retries_then_all_retries_failed() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut rt = runtime(policy("127.0.0.1", "127.0.0.1", port));
    let states = Rc::new(RefCell::new(vec![]));
    let now = rt.now();
    let c = rt
        .host()
        .create(
            now,
            "client",
            Box::new(Client {
                msg: vec![],
                sent: 0,
                got: Rc::default(),
                states: states.clone(),
            }),
        )
        .unwrap();
    rt.host().engine.client_connect(now, c).unwrap();
    let s = states.clone();
    assert!(rt.run_until(Duration::from_secs(5), &mut |_| s
        .borrow()
        .contains(&StreamState::AllRetriesFailed)));
    let unreachable = states
        .borrow()
        .iter()
        .filter(|s| **s == StreamState::Unreachable)
        .count();
    assert_eq!(unreachable, 3, "{:?}", states.borrow());
    assert_eq!(rt.host().engine.conn_count(), 0);
}

#[test]
fn peer_hangup_is_disconnected_once() {
    // A plain socket peer that sends a greeting and hangs up.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"bye").unwrap();
    });
    let mut rt = runtime(policy("127.0.0.1", "127.0.0.1", port));
    let states = Rc::new(RefCell::new(vec![]));
    let got = Rc::new(RefCell::new(vec![]));
    let now = rt.now();
    let c = rt
        .host()
        .create(
            now,
            "client",
            Box::new(Client {
                msg: vec![],
                sent: 0,
                got: got.clone(),
                states: states.clone(),
            }),
        )
        .unwrap();
    rt.host().engine.client_connect(now, c).unwrap();
    let s = states.clone();
    assert!(rt.run_until(Duration::from_secs(5), &mut |_| s
        .borrow()
        .contains(&StreamState::Disconnected)));
    peer.join().unwrap();
    rt.run_until(Duration::from_millis(100), &mut |_| false);
    assert_eq!(*got.borrow(), b"bye");
    let drops = states
        .borrow()
        .iter()
        .filter(|s| **s == StreamState::Disconnected)
        .count();
    assert_eq!(drops, 1, "{:?}", states.borrow());
    // The streamtype is not opportunistic, so the engine may be retrying.
    let now = rt.now();
    rt.host().engine.destroy(now, c).unwrap();
    rt.run_until(Duration::from_millis(50), &mut |_| false);
    assert_eq!(rt.host().engine.conn_count(), 0);
}

/// Sends `total` bytes of a counting pattern, as fast as the engine lets it,
/// counting what it handed over in `handed`.
struct Sender {
    total: usize,
    handed: Rc<Cell<usize>>,
    states: Rc<RefCell<Vec<StreamState>>>,
}
impl Handler for Sender {
    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        _f: &mut Flags,
    ) -> SsRet {
        // A Writable queued before the stream was destroyed may still be
        // delivered; the engine would refuse the write, so do not count it.
        let id = ctx.id();
        if ctx.engine().state(id).is_none() {
            return SsRet::TxDontSend;
        }
        let from = self.handed.get();
        let n = (self.total - from).min(budget);
        buf.extend((from..from + n).map(|i| (i % 251) as u8));
        self.handed.set(from + n);
        if from + n < self.total {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
    fn state(&mut self, ctx: &mut StreamCtx<'_>, s: StreamState, _a: u32) -> SsRet {
        self.states.borrow_mut().push(s);
        if s == StreamState::Connected {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

type States = Rc<RefCell<Vec<StreamState>>>;

/// A listener whose accepted sockets have a small receive buffer, so a
/// sender fills it quickly.
fn slow_listener() -> (std::net::TcpListener, u16) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    s.listen(8).unwrap();
    let l: std::net::TcpListener = s.into();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn sender_stream(rt: &mut Runtime, total: usize) -> (StreamId, Rc<Cell<usize>>, States) {
    let handed = Rc::new(Cell::new(0));
    let states = Rc::new(RefCell::new(vec![]));
    let now = rt.now();
    let c = rt
        .host()
        .create(
            now,
            "client",
            Box::new(Sender {
                total,
                handed: handed.clone(),
                states: states.clone(),
            }),
        )
        .unwrap();
    rt.host().engine.client_connect(now, c).unwrap();
    (c, handed, states)
}

#[test]
fn close_flushes_what_was_handed_over() {
    // The peer reads nothing for a while, so the socket fills and bytes the
    // engine handed over are still queued in the adapter when the stream is
    // destroyed; they must all arrive, followed by an orderly close.
    let (l, port) = slow_listener();
    let peer = std::thread::spawn(move || {
        use std::io::Read;
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let mut got = Vec::new();
        s.read_to_end(&mut got).map(|_| got)
    });
    let mut rt = runtime(policy("127.0.0.1", "127.0.0.1", port));
    // More than the socket buffers hold (about 3 MB here), so the adapter
    // still has some queued when the stream is destroyed.
    let (c, handed, states) = sender_stream(&mut rt, 16 * 1024 * 1024);
    rt.run_until(Duration::from_millis(250), &mut |_| false);
    assert!(
        states.borrow().contains(&StreamState::Connected),
        "{:?}",
        states.borrow()
    );
    let now = rt.now();
    rt.host().engine.destroy(now, c).unwrap();
    let t0 = std::time::Instant::now();
    while !peer.is_finished() && t0.elapsed() < Duration::from_secs(10) {
        rt.run_until(Duration::from_millis(10), &mut |_| false);
    }
    let got = peer.join().unwrap().expect("peer sees an orderly close");
    assert!(handed.get() > 0);
    assert_eq!(got.len(), handed.get());
    assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    assert_eq!(rt.host().engine.conn_count(), 0);
}

#[test]
fn peer_reset_mid_write_is_disconnected() {
    let (l, port) = slow_listener();
    let peer = std::thread::spawn(move || {
        use std::io::Read;
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 1000];
        let _ = s.read(&mut buf);
        // Unread data plus a zero linger: the close is a reset.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let mut rt = runtime(policy("127.0.0.1", "127.0.0.1", port));
    let (c, _handed, states) = sender_stream(&mut rt, 64 * 1024 * 1024);
    let s = states.clone();
    assert!(
        rt.run_until(Duration::from_secs(10), &mut |_| s
            .borrow()
            .contains(&StreamState::Disconnected)),
        "{:?}",
        states.borrow()
    );
    peer.join().unwrap();
    let now = rt.now();
    rt.host().engine.destroy(now, c).unwrap();
    rt.run_until(Duration::from_millis(50), &mut |_| false);
    assert_eq!(rt.host().engine.conn_count(), 0);
    assert_eq!(rt.host().engine.stream_count(), 0);
}

/// Destroys its stream when every retry has failed.
struct GiveUp;
impl Handler for GiveUp {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, s: StreamState, _a: u32) -> SsRet {
        if s == StreamState::AllRetriesFailed {
            ctx.destroy();
            return SsRet::HandleDestroyed;
        }
        SsRet::Ok
    }
}

#[test]
fn run_returns_when_no_stream_is_left() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut rt = runtime(policy("127.0.0.1", "127.0.0.1", port));
    let now = rt.now();
    let c = rt.host().create(now, "client", Box::new(GiveUp)).unwrap();
    rt.host().engine.client_connect(now, c).unwrap();
    let t0 = std::time::Instant::now();
    rt.run();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(rt.host().engine.stream_count(), 0);
    // One more turn with nothing to do returns after at most its wait.
    rt.run_once(Duration::from_millis(10));
}
