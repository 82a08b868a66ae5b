//! Real sockets through the adapter: raw echo over TCP and Unix sockets, and
//! retries against a closed port.

use ss_core::policy::{Policy, Protocol, StreamType};
use ss_core::{
    EngineConfig, Flags, Handler, Host, RetryPolicy, SsRet, StreamCtx, StreamId, StreamState,
};
use ss_smol::Runtime;
use std::cell::RefCell;
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
