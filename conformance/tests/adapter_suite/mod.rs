//! The shared adapter suite: the same real-socket scenarios for every adapter.
//!
//! Each scenario runs one [`Host`] with a server and a client stream on
//! 127.0.0.1 (or a Unix socket) through a [`Driver`], and checks the states
//! and payload the application sees. `adapter_suite!(name, DriverType)`
//! instantiates every scenario as a `#[test]`. The MQTT scenario talks to a
//! mosquitto the test starts, the HTTP/2 one to an nghttpd.

use conformance::driver::Driver;
use ss_core::policy::{Policy, Protocol, StreamType};
use ss_core::{
    Engine, EngineConfig, Flags, Handler, Host, RetryPolicy, SsRet, StreamCtx, StreamId,
    StreamState,
};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Upper bound for any one wait in the suite.
const WAIT: Duration = Duration::from_secs(5);

/// What a client stream's application saw.
#[derive(Default)]
pub struct Seen {
    /// Every state, in order.
    pub states: Vec<StreamState>,
    /// Every payload byte received.
    pub rx: Vec<u8>,
}

type Shared = Rc<RefCell<Seen>>;

/// A client that records states and payload and sends `msg` on every CONNECTED.
struct Client {
    seen: Shared,
    msg: Vec<u8>,
    unsent: bool,
}

impl Handler for Client {
    fn rx(&mut self, _ctx: &mut StreamCtx<'_>, data: &[u8], _flags: Flags) -> SsRet {
        self.seen.borrow_mut().rx.extend_from_slice(data);
        SsRet::Ok
    }

    fn tx(
        &mut self,
        _ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        _budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        if !std::mem::take(&mut self.unsent) {
            return SsRet::TxDontSend;
        }
        buf.extend_from_slice(&self.msg);
        *flags = Flags::SOM | Flags::EOM;
        SsRet::Ok
    }

    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        self.seen.borrow_mut().states.push(state);
        if state == StreamState::Connected && !self.msg.is_empty() {
            self.unsent = true;
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

/// An accepted connection that echoes what it receives.
#[derive(Default)]
struct Echo {
    pending: Vec<u8>,
}

impl Handler for Echo {
    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], _flags: Flags) -> SsRet {
        self.pending.extend_from_slice(data);
        let _ = ctx.request_tx();
        SsRet::Ok
    }

    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        _flags: &mut Flags,
    ) -> SsRet {
        if self.pending.is_empty() {
            return SsRet::TxDontSend;
        }
        let n = budget.min(self.pending.len());
        buf.extend(self.pending.drain(..n));
        if !self.pending.is_empty() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

/// The listening stream itself.
struct Listener;
impl Handler for Listener {}

fn retry(backoff_ms: Vec<u32>, conceal: u16) -> RetryPolicy {
    RetryPolicy {
        name: "suite".into(),
        backoff_ms,
        conceal,
        jitter_pc: Some(0),
        svalidping_s: None,
        svalidhup_s: None,
    }
}

/// A policy with a raw `server` on `endpoint:port` and a raw `client` for it.
fn policy(endpoint: &str, port: u16, nailed_up: bool, retry: RetryPolicy) -> Policy {
    let server = StreamType {
        name: "server".into(),
        endpoint: Some(endpoint.into()),
        port,
        protocol: Protocol::Raw,
        server: true,
        ..Default::default()
    };
    let client = StreamType {
        name: "client".into(),
        endpoint: Some(endpoint.into()),
        port,
        protocol: Protocol::Raw,
        retry: Some(retry.name.clone()),
        nailed_up,
        ..Default::default()
    };
    Policy {
        retry: vec![retry],
        streamtypes: vec![server, client],
        ..Default::default()
    }
}

fn driver<D: Driver>(policy: Policy) -> D {
    let cfg = EngineConfig {
        seed: 7,
        connect_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    D::new(Host::new(Engine::new(policy, cfg)))
}

/// Create the echo server stream and wait until it listens; returns its id
/// and address.
fn start_server<D: Driver>(d: &mut D) -> (StreamId, String) {
    start_server_with(d, Box::new(|_| Box::new(Echo::default())))
}

/// Create the `server` stream, whose accepted connections get handlers
/// from `accept`, and wait until it listens; returns its id and address.
fn start_server_with<D: Driver>(
    d: &mut D,
    accept: ss_core::handler::HandlerFactory,
) -> (StreamId, String) {
    let now = d.now();
    let server = d
        .host()
        .create_server(now, "server", Box::new(Listener), accept)
        .expect("create server stream");
    let ok = d.run_until(WAIT, &mut |h| h.listening(server).is_some());
    assert!(ok, "[{}] server never reported listening", D::NAME);
    let addr = match d.host().listening(server) {
        Some(Ok(a)) => a.to_string(),
        other => panic!("[{}] server could not listen: {other:?}", D::NAME),
    };
    (server, addr)
}

/// Point the `client` streamtype at `port` (the policy is fixed at engine creation).
fn set_client_port<D: Driver>(d: &mut D, port: u16) {
    let mut p = d.host().engine.policy().clone();
    for st in &mut p.streamtypes {
        if st.name == "client" {
            st.port = port;
        }
    }
    d.host().engine.set_policy(p);
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<std::net::SocketAddr>()
        .unwrap_or_else(|e| panic!("listening address {addr:?}: {e}"))
        .port()
}

fn create_client<D: Driver>(d: &mut D, msg: &[u8]) -> (StreamId, Shared) {
    create_client_of(d, "client", msg)
}

/// A [`Client`] of `streamtype` (not connected yet).
fn create_client_of<D: Driver>(d: &mut D, streamtype: &str, msg: &[u8]) -> (StreamId, Shared) {
    let seen = Shared::default();
    let now = d.now();
    let id = d
        .host()
        .create(
            now,
            streamtype,
            Box::new(Client {
                seen: seen.clone(),
                msg: msg.to_vec(),
                unsent: false,
            }),
        )
        .expect("create client stream");
    (id, seen)
}

fn echo_round_trip<D: Driver>(mut d: D, msg: &[u8]) {
    let (client, seen) = create_client(&mut d, msg);
    let now = d.now();
    d.host().engine.client_connect(now, client).unwrap();
    let s = seen.clone();
    let ok = d.run_until(WAIT, &mut |_| s.borrow().rx.len() >= msg.len());
    let got = seen.borrow();
    assert!(
        ok,
        "[{}] no echo; states {:?}, got {:?}",
        D::NAME,
        got.states,
        String::from_utf8_lossy(&got.rx)
    );
    assert_eq!(got.rx, msg, "[{}] echoed payload", D::NAME);
    assert_eq!(
        got.states,
        [
            StreamState::Creating,
            StreamState::Connecting,
            StreamState::Connected
        ],
        "[{}]",
        D::NAME
    );
}

/// A client sends a message to an echo server on 127.0.0.1 and gets it back;
/// a payload larger than one read and one write budget arrives whole.
pub fn echo<D: Driver>() {
    let mut d: D = driver(policy("127.0.0.1", 0, false, retry(vec![100], 3)));
    let (_server, addr) = start_server(&mut d);
    set_client_port(&mut d, port_of(&addr));
    echo_round_trip(d, b"hello, secure streams");

    let mut d: D = driver(policy("127.0.0.1", 0, false, retry(vec![100], 3)));
    let (_server, addr) = start_server(&mut d);
    set_client_port(&mut d, port_of(&addr));
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    echo_round_trip(d, &big);
}

/// Nothing listens: the client goes through its whole backoff schedule
/// (50, 50, 50 ms, conceal 3) and ends in ALL_RETRIES_FAILED.
pub fn retry_backoff_all_retries_failed<D: Driver>() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut d: D = driver(policy("127.0.0.1", port, false, retry(vec![50, 50, 50], 3)));
    let (client, seen) = create_client(&mut d, b"");
    let t0 = Instant::now();
    let now = d.now();
    d.host().engine.client_connect(now, client).unwrap();
    let s = seen.clone();
    let ok = d.run_until(WAIT, &mut |_| {
        s.borrow().states.last() == Some(&StreamState::AllRetriesFailed)
    });
    let elapsed = t0.elapsed();
    use StreamState::*;
    assert!(ok, "[{}] states {:?}", D::NAME, seen.borrow().states);
    assert_eq!(
        seen.borrow().states,
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
        ],
        "[{}]",
        D::NAME
    );
    assert!(
        elapsed >= Duration::from_millis(150),
        "[{}] retries took {elapsed:?}, backoff is 3 x 50 ms",
        D::NAME
    );
    // Idle afterwards: nothing more happens.
    d.run_until(Duration::from_millis(200), &mut |_| false);
    assert_eq!(seen.borrow().states.last(), Some(&AllRetriesFailed));
}

/// A nailed-up client notices its server going away (DISCONNECTED) and
/// reconnects by itself once a server listens on the same port again.
pub fn nailed_up_reconnects_after_server_restart<D: Driver>() {
    let mut d: D = driver(policy("127.0.0.1", 0, true, retry(vec![50, 100], 65535)));
    let (server, addr) = start_server(&mut d);
    let port = port_of(&addr);
    // Later servers listen on the port the first one got.
    let mut p = d.host().engine.policy().clone();
    for st in &mut p.streamtypes {
        st.port = port;
    }
    d.host().engine.set_policy(p);

    let (_client, seen) = create_client(&mut d, b"ping");
    let s = seen.clone();
    let ok = d.run_until(WAIT, &mut |_| s.borrow().rx == b"ping");
    assert!(
        ok,
        "[{}] first echo; states {:?}",
        D::NAME,
        seen.borrow().states
    );

    let now = d.now();
    d.host().engine.destroy(now, server).unwrap();
    let s = seen.clone();
    let ok = d.run_until(WAIT, &mut |_| {
        s.borrow().states.contains(&StreamState::Disconnected)
    });
    assert!(
        ok,
        "[{}] no DISCONNECTED after the server went away; states {:?}",
        D::NAME,
        seen.borrow().states
    );
    let connects_before = seen
        .borrow()
        .states
        .iter()
        .filter(|s| **s == StreamState::Connected)
        .count();
    assert_eq!(
        connects_before,
        1,
        "[{}] {:?}",
        D::NAME,
        seen.borrow().states
    );

    // Let it fail a few times against the closed port, then bring a server back.
    d.run_until(Duration::from_millis(150), &mut |_| false);
    let (_server2, addr2) = start_server(&mut d);
    assert_eq!(port_of(&addr2), port, "[{}] restarted server port", D::NAME);
    let s = seen.clone();
    let ok = d.run_until(WAIT, &mut |_| s.borrow().rx == b"pingping");
    let got = seen.borrow();
    assert!(
        ok,
        "[{}] no echo after the server came back; states {:?}, rx {:?}",
        D::NAME,
        got.states,
        String::from_utf8_lossy(&got.rx)
    );
    let after: Vec<_> = got
        .states
        .iter()
        .skip_while(|s| **s != StreamState::Disconnected)
        .copied()
        .collect();
    assert!(
        after.contains(&StreamState::Connected),
        "[{}] {:?}",
        D::NAME,
        got.states
    );
    assert!(!got.states.contains(&StreamState::AllRetriesFailed));
}

/// Echo over a Unix socket path in a temporary directory and over a Linux
/// abstract socket name.
pub fn unix_socket_endpoint<D: Driver>() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ss.sock");
    let ep = format!("+{}", path.display());
    let mut d: D = driver(policy(&ep, 0, false, retry(vec![100], 3)));
    let (_server, addr) = start_server(&mut d);
    assert!(
        addr.contains("ss.sock"),
        "[{}] listening on {addr}",
        D::NAME
    );
    echo_round_trip(d, b"over a unix path");

    if cfg!(target_os = "linux") {
        let ep = format!(
            "+@ss-suite-{}-{}-{:?}",
            D::NAME,
            std::process::id(),
            Instant::now()
        )
        .replace(' ', "");
        let mut d: D = driver(policy(&ep, 0, false, retry(vec![100], 3)));
        let (_server, _addr) = start_server(&mut d);
        echo_round_trip(d, b"over an abstract name");
    }
}

/// An accepted connection that records who the adapter says connected.
struct PeerRecorder(Rc<RefCell<Option<Option<ss_core::engine::Peer>>>>);

impl Handler for PeerRecorder {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        if state == StreamState::Connected {
            let id = ctx.id();
            *self.0.borrow_mut() = Some(ctx.engine().peer_of(id));
        }
        SsRet::Ok
    }
}

/// On a Unix socket the adapter tells the engine which process connected
/// (`SO_PEERCRED`): here, this very process.
pub fn unix_socket_peer_is_known<D: Driver>() {
    let dir = tempfile::tempdir().unwrap();
    let ep = format!("+{}", dir.path().join("peer.sock").display());
    let mut d: D = driver(policy(&ep, 0, false, retry(vec![100], 3)));
    let seen = Rc::new(RefCell::new(None));
    let rec = seen.clone();
    start_server_with(
        &mut d,
        Box::new(move |_| Box::new(PeerRecorder(rec.clone()))),
    );
    let (client, _) = create_client(&mut d, b"");
    let now = d.now();
    d.host().engine.client_connect(now, client).unwrap();
    let s = seen.clone();
    assert!(
        d.run_until(WAIT, &mut |_| s.borrow().is_some()),
        "[{}] no connection accepted",
        D::NAME
    );
    let peer = seen.borrow().expect("recorded");
    if cfg!(target_os = "linux") {
        let peer = peer.unwrap_or_else(|| panic!("[{}] no peer credentials", D::NAME));
        assert_eq!(peer.pid, std::process::id(), "[{}]", D::NAME);
    }
}

/// The HTTP/1.1 scenario's policy: an h1 server stream and two h1 clients
/// (GET /hello, POST /echo) of it; the clients' port is set once it listens.
const H1_POLICY: &str = r#"{
  "retry": [{"suite": {"backoff": [100], "conceal": 1, "jitterpc": 0}}],
  "s": [
    {"h1srv": {"server": true, "protocol": "h1", "endpoint": "127.0.0.1", "port": 0,
               "metadata": [{"mime": "content-type:"}, {"method": ""}, {"path": ""}]}},
    {"h1get": {"protocol": "h1", "endpoint": "127.0.0.1", "port": 0, "retry": "suite",
               "http_url": "/hello", "metadata": [{"mime": "content-type:"}]}},
    {"h1post": {"protocol": "h1", "endpoint": "127.0.0.1", "port": 0, "retry": "suite",
                "http_method": "POST", "http_url": "/echo",
                "metadata": [{"mime": "content-type:"}]}}
  ]
}"#;

/// Body of the h1 server's `GET` answers.
const H1_HELLO: &[u8] = b"hello over h1\n";

/// One accepted h1 connection: answers GET with [`H1_HELLO`] and POST with
/// its request body, recording "METHOD path" of each request.
struct H1Server {
    log: Rc<RefCell<Vec<String>>>,
    body_in: Vec<u8>,
    out: Vec<u8>,
    off: usize,
}

impl H1Server {
    fn respond(&mut self, ctx: &mut StreamCtx<'_>, echo: bool) {
        let (mime, out): (&[u8], Vec<u8>) = if echo {
            (b"application/x-echo", std::mem::take(&mut self.body_in))
        } else {
            (b"text/plain", H1_HELLO.to_vec())
        };
        ctx.server_ack(0).unwrap();
        ctx.set_metadata("mime", mime).unwrap();
        self.out = out;
        self.off = 0;
        ctx.request_tx_len(self.out.len() as u64).unwrap();
    }
}

fn meta(ctx: &StreamCtx<'_>, name: &str) -> String {
    let v = ctx.get_metadata(name).ok().flatten().unwrap_or_default();
    String::from_utf8_lossy(v).into_owned()
}

impl Handler for H1Server {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        if state == StreamState::ServerTxn {
            let method = meta(ctx, "method");
            self.log
                .borrow_mut()
                .push(format!("{method} {}", meta(ctx, "path")));
            self.body_in.clear();
            if method != "POST" {
                self.respond(ctx, false);
            }
        }
        SsRet::Ok
    }

    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        self.body_in.extend_from_slice(data);
        if flags.contains(Flags::EOM) {
            self.respond(ctx, true);
        }
        SsRet::Ok
    }

    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        write_piece(ctx, &self.out, &mut self.off, buf, budget, flags)
    }
}

/// Write the next budget-sized piece of `out` from `*off`, SOM on the first
/// and EOM on the last, asking for more while some is left.
fn write_piece(
    ctx: &mut StreamCtx<'_>,
    out: &[u8],
    off: &mut usize,
    buf: &mut Vec<u8>,
    budget: usize,
    flags: &mut Flags,
) -> SsRet {
    if *off >= out.len() && !out.is_empty() {
        return SsRet::TxDontSend;
    }
    let n = budget.max(1).min(out.len() - *off);
    if *off == 0 {
        *flags |= Flags::SOM;
    }
    buf.extend_from_slice(&out[*off..*off + n]);
    *off += n;
    if *off == out.len() {
        *flags |= Flags::EOM;
    } else {
        let _ = ctx.request_tx();
    }
    SsRet::Ok
}

/// An h1 client stream: records states and payload, sends `body` as the
/// request body when asked.
struct H1Client {
    seen: Shared,
    body: Vec<u8>,
    off: usize,
}

impl Handler for H1Client {
    fn rx(&mut self, _ctx: &mut StreamCtx<'_>, data: &[u8], _flags: Flags) -> SsRet {
        self.seen.borrow_mut().rx.extend_from_slice(data);
        SsRet::Ok
    }

    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        if self.body.is_empty() {
            return SsRet::TxDontSend;
        }
        write_piece(ctx, &self.body, &mut self.off, buf, budget, flags)
    }

    fn state(&mut self, _ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        self.seen.borrow_mut().states.push(state);
        SsRet::Ok
    }
}

/// Run one h1 client transaction on `streamtype` (a POST of `body` if it is
/// not empty) to its end; returns what the client saw and its `mime`.
fn h1_txn<D: Driver>(d: &mut D, streamtype: &str, body: &[u8]) -> (Seen, Option<Vec<u8>>) {
    let seen = Shared::default();
    let now = d.now();
    let id = d
        .host()
        .create(
            now,
            streamtype,
            Box::new(H1Client {
                seen: seen.clone(),
                body: body.to_vec(),
                off: 0,
            }),
        )
        .expect("create h1 client stream");
    let now = d.now();
    if body.is_empty() {
        d.host().engine.client_connect(now, id).unwrap();
    } else {
        d.host()
            .engine
            .request_tx_len(now, id, body.len() as u64)
            .unwrap();
    }
    let s = seen.clone();
    let ok = d.run_until(WAIT, &mut |_| {
        s.borrow().states.iter().any(|st| {
            matches!(
                st,
                StreamState::Disconnected | StreamState::AllRetriesFailed
            )
        })
    });
    assert!(
        ok,
        "[{}] {streamtype}: no end of transaction; states {:?}",
        D::NAME,
        seen.borrow().states
    );
    let mime = d
        .host()
        .engine
        .get_metadata(id, "mime")
        .unwrap()
        .map(<[u8]>::to_vec);
    let got = std::mem::take(&mut *seen.borrow_mut());
    (got, mime)
}

/// Our HTTP/1.1 server stream and our HTTP/1.1 client streams on one
/// driver: a GET and a POST echo (larger than one write budget), with the
/// reference client state sequences, bodies and the Content-Type the server
/// set from its `mime` metadata.
pub fn h1_get_and_post_echo<D: Driver>() {
    h1_echo_with::<D>(Policy::parse(H1_POLICY).expect("h1 policy"));
}

/// The same over TLS: the server presents a leaf from a throwaway CA named
/// in the policy, the clients trust that CA through a policy trust store
/// (the adapters give the engine the wall clock for the certificate checks).
pub fn https_get_and_post_echo<D: Driver>() {
    use conformance::peers::TestPki;
    use ss_core::policy::{Cert, TrustStore};
    let pki = TestPki::new(&["127.0.0.1"]);
    let leaf = pki.server();
    let mut p = Policy::parse(H1_POLICY).expect("h1 policy");
    let cert = |name: &str, der: &[u8]| Cert {
        name: name.into(),
        der: der.to_vec(),
    };
    p.certs = vec![
        cert("ca", &pki.ca_der),
        cert("leaf", &leaf.der),
        cert("leaf_key", &leaf.key_der),
    ];
    p.trust_stores = vec![TrustStore {
        name: "ts".into(),
        stack: vec!["ca".into()],
    }];
    for st in &mut p.streamtypes {
        st.tls = true;
        if st.server {
            st.server_cert = Some("leaf".into());
            st.server_key = Some("leaf_key".into());
        } else {
            st.tls_trust_store = Some("ts".into());
        }
    }
    h1_echo_with::<D>(p);
}

fn h1_echo_with<D: Driver>(policy: Policy) {
    let mut d: D = driver(policy);
    let log = Rc::new(RefCell::new(Vec::new()));
    let now = d.now();
    let l = log.clone();
    let server = d
        .host()
        .create_server(
            now,
            "h1srv",
            Box::new(Listener),
            Box::new(move |_| {
                Box::new(H1Server {
                    log: l.clone(),
                    body_in: vec![],
                    out: vec![],
                    off: 0,
                })
            }),
        )
        .expect("create h1 server stream");
    assert!(
        d.run_until(WAIT, &mut |h| h.listening(server).is_some()),
        "[{}] h1 server never reported listening",
        D::NAME
    );
    let addr = match d.host().listening(server) {
        Some(Ok(a)) => a.to_string(),
        other => panic!("[{}] h1 server could not listen: {other:?}", D::NAME),
    };
    let port = port_of(&addr);
    let mut p = d.host().engine.policy().clone();
    for st in &mut p.streamtypes {
        if !st.server {
            st.port = port;
        }
    }
    d.host().engine.set_policy(p);

    use StreamState::*;
    let (seen, mime) = h1_txn(&mut d, "h1get", b"");
    assert_eq!(
        seen.states,
        [Creating, Connecting, Connected, QosAckRemote, Disconnected],
        "[{}] GET",
        D::NAME
    );
    assert_eq!(seen.rx, H1_HELLO, "[{}] GET body", D::NAME);
    assert_eq!(mime.as_deref(), Some(&b"text/plain"[..]), "[{}]", D::NAME);

    let body: Vec<u8> = (0..150_000u32).map(|i| (i * 11 % 251) as u8).collect();
    let (seen, mime) = h1_txn(&mut d, "h1post", &body);
    assert_eq!(
        seen.states,
        [
            Creating,
            Poll,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ],
        "[{}] POST",
        D::NAME
    );
    assert!(
        seen.rx == body,
        "[{}] POST echo differs ({} bytes back)",
        D::NAME,
        seen.rx.len()
    );
    assert_eq!(
        mime.as_deref(),
        Some(&b"application/x-echo"[..]),
        "[{}]",
        D::NAME
    );
    assert_eq!(*log.borrow(), ["GET /hello", "POST /echo"], "[{}]", D::NAME);
}

/// The WebSocket scenario's policy: an h1 server stream upgrading requests
/// for subprotocol `echo`, and a `ws` client of it (port set once it listens).
const WS_POLICY: &str = r#"{
  "retry": [{"suite": {"backoff": [100], "conceal": 1, "jitterpc": 0}}],
  "s": [
    {"wssrv": {"server": true, "protocol": "h1", "endpoint": "127.0.0.1", "port": 0,
               "ws_subprotocol": "echo", "ws_binary": true}},
    {"wscli": {"protocol": "ws", "endpoint": "127.0.0.1", "port": 0, "retry": "suite",
               "http_url": "/ws", "ws_subprotocol": "echo", "ws_binary": true,
               "opportunistic": true}}
  ]
}"#;

/// What a WebSocket stream saw: states and (payload, flags) pieces.
#[derive(Default)]
struct WsSeen {
    states: Vec<StreamState>,
    rx: Vec<(Vec<u8>, Flags)>,
}

/// Complete messages of `rx`, checking SOM starts and EOM ends each one.
fn ws_messages(rx: &[(Vec<u8>, Flags)]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let mut cur: Option<Vec<u8>> = None;
    for (d, f) in rx {
        if f.contains(Flags::SOM) {
            assert!(cur.is_none(), "SOM inside a message");
            cur = Some(vec![]);
        }
        cur.as_mut().expect("payload outside a message").extend(d);
        if f.contains(Flags::EOM) {
            out.extend(cur.take());
        }
    }
    out
}

/// Our ws client: sends `msgs` one after the other (each message in
/// budget-sized pieces) once CONNECTED; records what comes back.
struct WsClient {
    seen: Rc<RefCell<WsSeen>>,
    msgs: Vec<Vec<u8>>,
    next: usize,
    off: usize,
}

impl Handler for WsClient {
    fn rx(&mut self, _ctx: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        self.seen.borrow_mut().rx.push((data.to_vec(), flags));
        SsRet::Ok
    }

    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        let Some(msg) = self.msgs.get(self.next) else {
            return SsRet::TxDontSend;
        };
        let r = write_piece(ctx, msg, &mut self.off, buf, budget, flags);
        if flags.contains(Flags::EOM) {
            self.next += 1;
            self.off = 0;
            if self.next < self.msgs.len() {
                let _ = ctx.request_tx();
            }
        }
        r
    }

    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        self.seen.borrow_mut().states.push(state);
        if state == StreamState::Connected {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

/// An accepted WebSocket connection echoing each piece with its SOM/EOM,
/// recording its states.
struct WsEcho {
    states: Rc<RefCell<Vec<StreamState>>>,
    pending: std::collections::VecDeque<(Vec<u8>, Flags)>,
}

impl Handler for WsEcho {
    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        self.pending.push_back((data.to_vec(), flags));
        let _ = ctx.request_tx();
        SsRet::Ok
    }

    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        let Some((mut data, f)) = self.pending.pop_front() else {
            return SsRet::TxDontSend;
        };
        let budget = budget.max(1);
        *flags = f;
        if data.len() > budget {
            let rest = data.split_off(budget);
            self.pending.push_front((rest, Flags(f.0 & !Flags::SOM.0)));
            *flags = Flags(f.0 & !Flags::EOM.0);
        }
        buf.extend_from_slice(&data);
        if !self.pending.is_empty() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }

    fn state(&mut self, _ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        self.states.borrow_mut().push(state);
        SsRet::Ok
    }
}

/// Our WebSocket server (an h1 server stream with `ws_subprotocol`) and our
/// ws client on one driver: three binary messages (a small one, one larger
/// than a write budget, an empty one) echoed with their SOM/EOM boundaries;
/// the accepted stream reports SERVER_UPGRADE, and the client's disconnect
/// (a Close) ends it with DISCONNECTED.
pub fn ws_echo<D: Driver>() {
    let mut d: D = driver(Policy::parse(WS_POLICY).expect("ws policy"));
    let srv_states = Rc::new(RefCell::new(Vec::new()));
    let now = d.now();
    let st = srv_states.clone();
    let server = d
        .host()
        .create_server(
            now,
            "wssrv",
            Box::new(Listener),
            Box::new(move |_| {
                Box::new(WsEcho {
                    states: st.clone(),
                    pending: Default::default(),
                })
            }),
        )
        .expect("create ws server stream");
    assert!(
        d.run_until(WAIT, &mut |h| h.listening(server).is_some()),
        "[{}] ws server never reported listening",
        D::NAME
    );
    let addr = match d.host().listening(server) {
        Some(Ok(a)) => a.to_string(),
        other => panic!("[{}] ws server could not listen: {other:?}", D::NAME),
    };
    let port = port_of(&addr);
    let mut p = d.host().engine.policy().clone();
    for st in &mut p.streamtypes {
        if !st.server {
            st.port = port;
        }
    }
    d.host().engine.set_policy(p);

    let msgs: Vec<Vec<u8>> = vec![
        b"hello over ws".to_vec(),
        (0..200_000u32).map(|i| (i * 13 % 256) as u8).collect(),
        vec![],
    ];
    let seen = Rc::new(RefCell::new(WsSeen::default()));
    let now = d.now();
    let id = d
        .host()
        .create(
            now,
            "wscli",
            Box::new(WsClient {
                seen: seen.clone(),
                msgs: msgs.clone(),
                next: 0,
                off: 0,
            }),
        )
        .expect("create ws client stream");
    d.host().engine.client_connect(now, id).unwrap();
    let s = seen.clone();
    let ok = d.run_until(WAIT, &mut |_| ws_messages(&s.borrow().rx).len() >= 3);
    assert!(
        ok,
        "[{}] no ws echo; client states {:?}, {} pieces back",
        D::NAME,
        seen.borrow().states,
        seen.borrow().rx.len()
    );
    use StreamState::*;
    assert_eq!(
        seen.borrow().states,
        [Creating, Connecting, Connected],
        "[{}]",
        D::NAME
    );
    let got = ws_messages(&seen.borrow().rx);
    assert!(got == msgs, "[{}] ws echo differs", D::NAME);
    assert_eq!(
        *srv_states.borrow(),
        [Creating, Connecting, Connected, ServerUpgrade],
        "[{}] server",
        D::NAME
    );
    let now = d.now();
    d.host().engine.disconnect(now, id).unwrap();
    let st = srv_states.clone();
    let ok = d.run_until(WAIT, &mut |_| st.borrow().contains(&Disconnected));
    assert!(
        ok,
        "[{}] server stream never saw DISCONNECTED: {:?}",
        D::NAME,
        srv_states.borrow()
    );
    assert_eq!(
        seen.borrow().states.last(),
        Some(&Disconnected),
        "[{}]",
        D::NAME
    );
}

/// An MQTT stream that answers the first message it hears with `reply`.
struct Replier {
    seen: Shared,
    reply: Vec<u8>,
    due: bool,
    replied: bool,
}

impl Handler for Replier {
    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        self.seen.borrow_mut().rx.extend_from_slice(data);
        if flags.contains(Flags::EOM) && !self.replied {
            self.due = true;
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }

    fn tx(
        &mut self,
        _ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        _budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        if !std::mem::take(&mut self.due) {
            return SsRet::TxDontSend;
        }
        self.replied = true;
        buf.extend_from_slice(&self.reply);
        *flags = Flags::SOM | Flags::EOM;
        SsRet::Ok
    }

    fn state(&mut self, _ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        self.seen.borrow_mut().states.push(state);
        SsRet::Ok
    }
}

/// Two MQTT streams of different streamtypes through a mosquitto the test
/// starts: `mb` publishes on CONNECTED to what `ma` subscribes to, `ma`
/// answers to what `mb` subscribes to; both at QoS 1 over one connection.
pub fn mqtt_pubsub<D: Driver>() {
    use conformance::peers::{Mosquitto, MosquittoOpts};
    let m = Mosquitto::start(MosquittoOpts::default());
    let json = format!(
        r#"{{"retry": [{{"r": {{"backoff": [100], "conceal": 3, "jitterpc": 0}}}}],
            "s": [
              {{"ma": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "mqtt",
                       "retry": "r", "mqtt_topic": "ss/ad/a", "mqtt_subscribe": "ss/ad/b",
                       "mqtt_qos": 1}}}},
              {{"mb": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "mqtt",
                       "retry": "r", "mqtt_topic": "ss/ad/b", "mqtt_subscribe": "ss/ad/a",
                       "mqtt_qos": 1}}}}]}}"#,
        port = m.port()
    );
    let mut d: D = driver(Policy::parse(&json).expect("mqtt policy"));
    use StreamState::*;
    let a_seen: Shared = Default::default();
    let now = d.now();
    let a = d
        .host()
        .create(
            now,
            "ma",
            Box::new(Replier {
                seen: a_seen.clone(),
                reply: b"reply from a".to_vec(),
                due: false,
                replied: false,
            }),
        )
        .expect("create ma");
    d.host().engine.client_connect(now, a).unwrap();
    let s = a_seen.clone();
    assert!(
        d.run_until(WAIT, &mut |_| s.borrow().states.contains(&Connected)),
        "[{}] ma never CONNECTED: {:?}\n{}",
        D::NAME,
        a_seen.borrow().states,
        m.logs()
    );
    let (b, b_seen) = create_client_of(&mut d, "mb", b"hello from b");
    let now = d.now();
    d.host().engine.client_connect(now, b).unwrap();
    let s = b_seen.clone();
    let ok = d.run_until(WAIT, &mut |_| s.borrow().rx.len() >= 12);
    assert!(
        ok,
        "[{}] no reply; ma {:?} {:?}, mb {:?}\n{}",
        D::NAME,
        a_seen.borrow().states,
        String::from_utf8_lossy(&a_seen.borrow().rx),
        b_seen.borrow().states,
        m.logs()
    );
    assert_eq!(a_seen.borrow().rx, b"hello from b", "[{}]", D::NAME);
    assert_eq!(b_seen.borrow().rx, b"reply from a", "[{}]", D::NAME);
    // Each publisher heard its PUBACK; one connection carried both.
    let s = a_seen.clone();
    assert!(
        d.run_until(WAIT, &mut |_| s.borrow().states.contains(&QosAckRemote)),
        "[{}] {:?}",
        D::NAME,
        a_seen.borrow().states
    );
    assert_eq!(
        b_seen.borrow().states,
        [Creating, Connecting, Connected, QosAckRemote],
        "[{}]",
        D::NAME
    );
    assert_eq!(d.host().engine.conn_count(), 1, "[{}]", D::NAME);
    assert_eq!(d.host().engine.conn_of(a), d.host().engine.conn_of(b));
    let log = m.log_text();
    assert_eq!(log.matches("New client connected").count(), 1, "{log}");
}

/// Body of nghttpd's file `f{i}` in [`h2_nghttpd`]: bigger than the 64 KiB
/// initial window for most `i`.
fn h2_file(i: usize) -> Vec<u8> {
    (0..(i * 40_000 + 1_000))
        .map(|j| ((j * 11 + i * 5) % 253) as u8)
        .collect()
}

/// HTTP/2 client streams through nghttpd (TLS, ALPN h2) the test starts:
/// one stream opens the connection, then five at once ride it concurrently;
/// each gets its file exactly, with the reference state sequence, and
/// nghttpd saw one connection.
pub fn h2_nghttpd<D: Driver>() {
    use conformance::peers::{free_port, require, PeerProcess, TestPki};
    use std::process::Command;
    let bin = require("nghttpd");
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let (dir, path) = PeerProcess::prepare("nghttpd");
    let www = path.join("www");
    std::fs::create_dir_all(&www).unwrap();
    for i in 0..6 {
        std::fs::write(www.join(format!("f{i}")), h2_file(i)).unwrap();
    }
    let [_, cert, key, ..] = pki.write_files(&path);
    let port = free_port();
    let mut cmd = Command::new("stdbuf");
    cmd.arg("-oL")
        .arg(bin)
        .arg("--address=127.0.0.1")
        .arg("-v")
        .arg(format!("--htdocs={}", www.display()))
        .arg(port.to_string())
        .arg(&key)
        .arg(&cert);
    let mut peer = PeerProcess::spawn("nghttpd", dir, cmd);
    peer.wait_port(port).unwrap_or_else(|e| panic!("{e}"));
    let json = format!(
        r#"{{"retry": [{{"r": {{"backoff": [100], "conceal": 2, "jitterpc": 0}}}}],
            "certs": [{{"ca": "{ca}"}}],
            "trust_stores": [{{"name": "ts", "stack": ["ca"]}}],
            "s": [{{"h2get": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h2",
                     "tls": true, "tls_trust_store": "ts", "http_url": "/${{f}}",
                     "retry": "r", "nghttp2_quirk_end_stream": true,
                     "metadata": [{{"f": ""}}]}}}}]}}"#,
        ca = pki.ca_b64()
    );
    let mut d: D = driver(Policy::parse(&json).expect("h2 policy"));
    let start = |d: &mut D, i: usize| {
        let seen = Shared::default();
        let now = d.now();
        let id = d
            .host()
            .create(
                now,
                "h2get",
                Box::new(H1Client {
                    seen: seen.clone(),
                    body: vec![],
                    off: 0,
                }),
            )
            .expect("create h2 stream");
        d.host()
            .engine
            .set_metadata(id, "f", format!("f{i}").as_bytes())
            .unwrap();
        let now = d.now();
        d.host().engine.client_connect(now, id).unwrap();
        (id, seen)
    };
    let ended = |s: &Shared| {
        s.borrow().states.iter().any(|st| {
            matches!(
                st,
                StreamState::Disconnected | StreamState::AllRetriesFailed
            )
        })
    };
    use StreamState::*;
    let ok_states = [Creating, Connecting, Connected, QosAckRemote, Disconnected];
    let (_, first) = start(&mut d, 0);
    let f = first.clone();
    assert!(
        d.run_until(WAIT, &mut |_| ended(&f)),
        "[{}] first: {:?}\n{}",
        D::NAME,
        first.borrow().states,
        peer.logs()
    );
    assert_eq!(first.borrow().states, ok_states, "[{}]", D::NAME);
    assert!(first.borrow().rx == h2_file(0), "[{}] f0", D::NAME);
    let streams: Vec<(StreamId, Shared)> = (1..6).map(|i| start(&mut d, i)).collect();
    // All five are on the connection at once.
    let conns: Vec<_> = streams
        .iter()
        .map(|(id, _)| d.host().engine.conn_of(*id))
        .collect();
    assert!(
        conns.iter().all(|c| c.is_some() && *c == conns[0]),
        "{conns:?}"
    );
    let all: Vec<Shared> = streams.iter().map(|(_, s)| s.clone()).collect();
    assert!(
        d.run_until(WAIT, &mut |_| all.iter().all(ended)),
        "[{}] {:?}\n{}",
        D::NAME,
        all.iter()
            .map(|s| s.borrow().states.clone())
            .collect::<Vec<_>>(),
        peer.logs()
    );
    for (i, (_, s)) in streams.iter().enumerate() {
        let s = s.borrow();
        assert_eq!(s.states, ok_states, "[{}] f{}", D::NAME, i + 1);
        assert!(
            s.rx == h2_file(i + 1),
            "[{}] f{}: {} bytes",
            D::NAME,
            i + 1,
            s.rx.len()
        );
    }
    assert_eq!(d.host().engine.conn_count(), 1, "[{}]", D::NAME);
    let log = std::fs::read_to_string(peer.dir().join("stdout.log")).unwrap_or_default();
    let mut ids: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("recv SETTINGS frame"))
        .filter_map(|l| l.split(']').next())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "[{}] {ids:?}", D::NAME);
}

/// An accepted connection that sends [`SOURCE_LEN`] patterned bytes as fast
/// as the client takes them, counting what it handed to the engine.
struct Source {
    sent: Rc<RefCell<usize>>,
}

/// How much [`Source`] sends: far more than loopback socket buffers hold.
const SOURCE_LEN: usize = 48 << 20;

impl Handler for Source {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        if state == StreamState::Connected {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }

    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        _flags: &mut Flags,
    ) -> SsRet {
        let mut sent = self.sent.borrow_mut();
        let n = budget.min(SOURCE_LEN - *sent);
        buf.extend((*sent..*sent + n).map(|i| (i % 251) as u8));
        *sent += n;
        if *sent < SOURCE_LEN {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

/// `Engine::set_rx_paused` through a real adapter: while the client's rx is
/// paused no payload reaches it and the adapter stops reading the socket, so
/// the sender is held back by TCP (it cannot get 48 MiB out) and the engine
/// never holds more than `max_held_rx` (it would fail the connection); on
/// resume every byte arrives, in order.
pub fn rx_pause_holds_back_a_fast_sender<D: Driver>() {
    let mut d: D = driver(policy("127.0.0.1", 0, false, retry(vec![100], 3)));
    let sent = Rc::new(RefCell::new(0usize));
    let counter = sent.clone();
    let (_server, addr) = start_server_with(
        &mut d,
        Box::new(move |_| {
            Box::new(Source {
                sent: counter.clone(),
            })
        }),
    );
    set_client_port(&mut d, port_of(&addr));
    let (client, seen) = create_client(&mut d, b"");
    let now = d.now();
    d.host().engine.client_connect(now, client).unwrap();
    let s = seen.clone();
    assert!(
        d.run_until(WAIT, &mut |_| s.borrow().rx.len() >= 256 * 1024),
        "[{}] no payload before the pause",
        D::NAME
    );
    let now = d.now();
    d.host().engine.set_rx_paused(now, client, true).unwrap();
    let at_pause = seen.borrow().rx.len();
    // Let the sender run into the socket buffers for a while.
    for _ in 0..5 {
        d.run_until(Duration::from_millis(100), &mut |_| false);
    }
    let during = seen.borrow().rx.len();
    let sent_during = *sent.borrow();
    assert_eq!(during, at_pause, "[{}] payload while paused", D::NAME);
    assert!(
        sent_during < SOURCE_LEN,
        "[{}] the sender got all {SOURCE_LEN} bytes out while the reader was paused",
        D::NAME
    );
    let now = d.now();
    d.host().engine.set_rx_paused(now, client, false).unwrap();
    let s = seen.clone();
    let ok = d.run_until(Duration::from_secs(30), &mut |_| {
        s.borrow().rx.len() >= SOURCE_LEN
    });
    let got = seen.borrow();
    assert!(
        ok,
        "[{}] only {} of {SOURCE_LEN} bytes after resume; states {:?}",
        D::NAME,
        got.rx.len(),
        got.states
    );
    assert!(
        got.rx
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8),
        "[{}] payload out of order or corrupted",
        D::NAME
    );
    assert_eq!(
        got.states.last(),
        Some(&StreamState::Connected),
        "[{}] the connection survived the pause",
        D::NAME
    );
}

/// Instantiate the suite for one adapter: `adapter_suite!(tokio, TokioDriver);`.
macro_rules! adapter_suite {
    ($m:ident, $d:ty) => {
        mod $m {
            #[test]
            fn echo() {
                super::adapter_suite::echo::<$d>()
            }
            #[test]
            fn retry_backoff_all_retries_failed() {
                super::adapter_suite::retry_backoff_all_retries_failed::<$d>()
            }
            #[test]
            fn nailed_up_reconnects_after_server_restart() {
                super::adapter_suite::nailed_up_reconnects_after_server_restart::<$d>()
            }
            #[test]
            fn unix_socket_endpoint() {
                super::adapter_suite::unix_socket_endpoint::<$d>()
            }
            #[test]
            fn unix_socket_peer_is_known() {
                super::adapter_suite::unix_socket_peer_is_known::<$d>()
            }
            #[test]
            fn h1_get_and_post_echo() {
                super::adapter_suite::h1_get_and_post_echo::<$d>()
            }
            #[test]
            fn https_get_and_post_echo() {
                super::adapter_suite::https_get_and_post_echo::<$d>()
            }
            #[test]
            fn ws_echo() {
                super::adapter_suite::ws_echo::<$d>()
            }
            #[test]
            fn mqtt_pubsub() {
                super::adapter_suite::mqtt_pubsub::<$d>()
            }
            #[test]
            fn rx_pause_holds_back_a_fast_sender() {
                super::adapter_suite::rx_pause_holds_back_a_fast_sender::<$d>()
            }
            #[test]
            fn h2_nghttpd() {
                super::adapter_suite::h2_nghttpd::<$d>()
            }
        }
    };
}
