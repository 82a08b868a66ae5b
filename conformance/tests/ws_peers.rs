//! WebSocket against a real third-party peer on loopback, Python's
//! `websockets` (`conformance/peers/ws_peer.py`):
//!
//! - our client (the ss-tokio async API, `"protocol": "ws"`) against its
//!   server: text and binary echo, 1 MiB messages both ways, a fragmented
//!   message from the server, subprotocol negotiation (and refusal), the
//!   server closing with 4001 (plain and `nailed_up`), and wss with a
//!   throwaway CA in the policy trust store;
//! - its client against our server (an h1 server streamtype with
//!   `ws_subprotocol`, driven by `ss_tokio::Runtime` with a callback
//!   handler that echoes messages keeping SOM/EOM): text, binary, large and
//!   fragmented messages, the subprotocol, SERVER_UPGRADE, and the client's
//!   close code;
//! - a raw TCP client sending broken frames to our server: the Close it
//!   gets back carries 1002 / 1007 / 1009 and the connection ends.
//!
//! Every wait is bounded ([`WAIT`]); nothing asserts on timing.

use conformance::peers::{ws_big_byte, ws_client, TestPki, WsClientOpts, WsPeer, WsServerOpts};
use ss_core::{
    Engine, EngineConfig, Flags, Handler, Host, Policy, SsRet, StreamCtx, StreamId, StreamState,
};
use ss_tokio::{Client, Runtime, SsStream};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use StreamState::*;

/// Upper bound for any one wait.
const WAIT: Duration = Duration::from_secs(10);

const MIB: usize = 1 << 20;

fn big(n: usize) -> Vec<u8> {
    (0..n).map(ws_big_byte).collect()
}

fn config() -> EngineConfig {
    EngineConfig {
        seed: 7,
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Client streamtypes for the peer server on `port`; with `ca_b64`, over TLS
/// trusting that CA (base64 DER) through a policy trust store.
fn client_policy(port: u16, ca_b64: Option<&str>) -> Policy {
    let (certs, tls) = match ca_b64 {
        Some(ca) => (
            format!(
                r#""certs": [{{"test_ca": "{ca}"}}],
                   "trust_stores": [{{"name": "ts", "stack": ["test_ca"]}}],"#
            ),
            r#""tls": true, "tls_trust_store": "ts","#,
        ),
        None => (String::new(), ""),
    };
    let st = |name: &str, extra: &str| {
        format!(
            r#"{{"{name}": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "ws",
                 "retry": "r", {tls} {extra}}}}}"#
        )
    };
    let s = [
        st("echo", r#""http_url": "/echo""#),
        st("echobin", r#""http_url": "/echo", "ws_binary": true"#),
        st("big", r#""http_url": "/big/1048576", "ws_binary": true"#),
        st("frag", r#""http_url": "/frag""#),
        st("fragbin", r#""http_url": "/fragbin", "ws_binary": true"#),
        st("chat", r#""http_url": "/echo", "ws_subprotocol": "chat""#),
        st(
            "wrongproto",
            r#""http_url": "/echo", "ws_subprotocol": "other""#,
        ),
        st(
            "close",
            r#""http_url": "/close/4001", "opportunistic": true"#,
        ),
        st(
            "closenailed",
            r#""http_url": "/close/4001", "nailed_up": true"#,
        ),
    ];
    let json = format!(
        r#"{{"retry": [{{"r": {{"backoff": [50, 50], "conceal": 2, "jitterpc": 0}}}}],
            {certs} "s": [{}]}}"#,
        s.join(",")
    );
    Policy::parse(&json).unwrap_or_else(|e| panic!("policy {json}: {e:?}"))
}

/// What one client stream showed the application.
#[derive(Debug, Default)]
struct Rec {
    states: Vec<StreamState>,
    rx: Vec<(Vec<u8>, Flags)>,
}

impl Rec {
    /// Complete messages, checking the pieces: SOM starts a message (never
    /// inside one), EOM ends it, nothing arrives outside a message.
    fn messages(&self) -> Vec<Vec<u8>> {
        let mut out = vec![];
        let mut cur: Option<Vec<u8>> = None;
        for (i, (d, f)) in self.rx.iter().enumerate() {
            if f.contains(Flags::SOM) {
                assert!(cur.is_none(), "piece {i}: SOM inside a message");
                cur = Some(vec![]);
            }
            let m = cur
                .as_mut()
                .unwrap_or_else(|| panic!("piece {i}: payload outside a message ({f:?})"));
            m.extend_from_slice(d);
            if f.contains(Flags::EOM) {
                out.extend(cur.take());
            }
        }
        out
    }

    fn count(&self, st: StreamState) -> usize {
        self.states.iter().filter(|s| **s == st).count()
    }
}

/// Poll payload and states alternately (both borrow the stream) until
/// `done`; panics after [`WAIT`].
async fn until(s: &mut SsStream, rec: &mut Rec, what: &str, done: impl Fn(&Rec) -> bool) {
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        while let Ok(Some(p)) = tokio::time::timeout(Duration::ZERO, s.recv()).await {
            rec.rx.push(p);
        }
        if done(rec) {
            return;
        }
        if let Ok(st) = tokio::time::timeout(Duration::from_millis(2), s.next_state()).await {
            rec.states.push(st.expect("stream alive"));
            continue;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "no {what} within {WAIT:?}: states {:?}, {} pieces",
            rec.states,
            rec.rx.len()
        );
        if let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(2), s.recv()).await {
            rec.rx.push(p);
        }
    }
}

async fn connected(c: &Client, streamtype: &str) -> (SsStream, Rec) {
    let mut s = c.create(streamtype).await.unwrap();
    let mut rec = Rec::default();
    s.connect().await.unwrap();
    until(&mut s, &mut rec, "CONNECTED", |r| {
        r.states.contains(&Connected)
    })
    .await;
    assert_eq!(rec.states, [Creating, Connecting, Connected]);
    (s, rec)
}

/// Send `msg` and wait for the echo (one more complete message).
async fn round_trip(s: &mut SsStream, rec: &mut Rec, msg: &[u8]) -> Vec<u8> {
    let n = rec.messages().len();
    s.send(msg.to_vec()).await.unwrap();
    until(s, rec, "echo", |r| r.messages().len() > n).await;
    rec.messages().pop().unwrap()
}

fn server_saw(peer: &WsPeer, needle: &str) -> bool {
    peer.events().iter().any(|l| l.contains(needle))
}

// ----- our client, their server ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_echo_text_and_binary() {
    let peer = WsPeer::server(WsServerOpts::default());
    let c = Client::start(client_policy(peer.port(), None), config());

    let (mut s, mut rec) = connected(&c, "echo").await;
    assert_eq!(
        round_trip(&mut s, &mut rec, b"hello text").await,
        b"hello text"
    );
    let (mut b, mut brec) = connected(&c, "echobin").await;
    let bytes = vec![0u8, 0xff, 0xfe, 1, 2, 3];
    assert_eq!(round_trip(&mut b, &mut brec, &bytes).await, bytes);
    // The peer saw a text message, then a binary one.
    let ev = peer.events();
    let kinds: Vec<&String> = ev.iter().filter(|l| l.contains("\"message\"")).collect();
    assert_eq!(kinds.len(), 2, "{}", peer.logs());
    assert!(
        kinds[0].contains(r#""type": "text", "len": 10"#),
        "{kinds:?}"
    );
    assert!(
        kinds[1].contains(r#""type": "binary", "len": 6"#),
        "{kinds:?}"
    );
    // Our disconnect is a Close 1000 the peer sees.
    s.destroy().await.unwrap();
    let end = std::time::Instant::now() + WAIT;
    while !server_saw(&peer, r#""code": 1000"#) {
        assert!(std::time::Instant::now() < end, "{}", peer.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_1mib_messages_both_ways() {
    let peer = WsPeer::server(WsServerOpts::default());
    let c = Client::start(client_policy(peer.port(), None), config());
    let data = big(MIB);

    // Ours to theirs and back: one message, SOM on the first piece, EOM on the last.
    let (mut s, mut rec) = connected(&c, "echobin").await;
    let got = round_trip(&mut s, &mut rec, &data).await;
    assert!(got == data, "echo differs ({} bytes)", got.len());
    assert!(rec.rx.first().unwrap().1.contains(Flags::SOM));
    assert!(rec.rx.last().unwrap().1.contains(Flags::EOM));
    assert_eq!(rec.messages().len(), 1);
    assert!(server_saw(&peer, r#""type": "binary", "len": 1048576"#));

    // Theirs, sent on connect.
    let (mut s, mut rec) = connected(&c, "big").await;
    until(&mut s, &mut rec, "1 MiB message", |r| {
        r.messages().len() == 1
    })
    .await;
    let got = rec.messages().pop().unwrap();
    assert!(got == data, "server message differs ({} bytes)", got.len());
    assert!(rec.rx.first().unwrap().1.contains(Flags::SOM));
    assert!(rec.rx.last().unwrap().1.contains(Flags::EOM));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_fragmented_message_from_the_server() {
    let peer = WsPeer::server(WsServerOpts::default());
    let c = Client::start(client_policy(peer.port(), None), config());
    for (st, want) in [
        ("frag", b"alpha-beta-gamma".to_vec()),
        ("fragbin", (0..300).map(|i| (i % 256) as u8).collect()),
    ] {
        let (mut s, mut rec) = connected(&c, st).await;
        until(&mut s, &mut rec, "fragmented message", |r| {
            r.messages().len() == 1
        })
        .await;
        assert_eq!(rec.messages(), [want], "{st}");
        // Three fragments: at least three pieces, SOM only on the first,
        // EOM only on the last.
        assert!(rec.rx.len() >= 3, "{st}: {:?}", rec.rx);
        let soms: Vec<bool> = rec.rx.iter().map(|(_, f)| f.contains(Flags::SOM)).collect();
        let eoms: Vec<bool> = rec.rx.iter().map(|(_, f)| f.contains(Flags::EOM)).collect();
        assert!(
            soms[0] && soms[1..].iter().all(|x| !x),
            "{st}: {:?}",
            rec.rx
        );
        assert!(
            eoms[eoms.len() - 1] && eoms[..eoms.len() - 1].iter().all(|x| !x),
            "{st}: {:?}",
            rec.rx
        );
        // Then echo still works on the same connection.
        assert_eq!(round_trip(&mut s, &mut rec, b"more").await, b"more");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_subprotocol_negotiated_and_refused() {
    let peer = WsPeer::server(WsServerOpts {
        subprotocols: vec!["chat".into()],
        ..Default::default()
    });
    let c = Client::start(client_policy(peer.port(), None), config());
    let (mut s, mut rec) = connected(&c, "chat").await;
    assert_eq!(round_trip(&mut s, &mut rec, b"hi chat").await, b"hi chat");
    assert!(
        server_saw(&peer, r#""subprotocol": "chat""#),
        "{}",
        peer.logs()
    );

    // The server does not pick "other": the upgrade is refused, a failed
    // attempt (UNREACHABLE), retried per policy until ALL_RETRIES_FAILED.
    let mut s = c.create("wrongproto").await.unwrap();
    let mut rec = Rec::default();
    s.connect().await.unwrap();
    until(&mut s, &mut rec, "ALL_RETRIES_FAILED", |r| {
        r.states.contains(&AllRetriesFailed)
    })
    .await;
    assert_eq!(rec.states[..3], [Creating, Connecting, Unreachable]);
    assert_eq!(rec.count(Connected), 0, "{:?}", rec.states);
    assert!(rec.rx.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_server_close_4001() {
    let peer = WsPeer::server(WsServerOpts::default());
    let c = Client::start(client_policy(peer.port(), None), config());
    // Opportunistic (not nailed up): CONNECTED, then DISCONNECTED when the
    // server closes; no reconnect.
    let (mut s, mut rec) = connected(&c, "close").await;
    until(&mut s, &mut rec, "DISCONNECTED", |r| {
        r.states.contains(&Disconnected)
    })
    .await;
    assert_eq!(rec.states, [Creating, Connecting, Connected, Disconnected]);
    if let Ok(st) = tokio::time::timeout(Duration::from_millis(300), s.next_state()).await {
        panic!("a state after DISCONNECTED without nailed_up: {st:?}");
    }
    assert!(server_saw(&peer, r#""closed_by_us", "code": 4001"#));

    // Nailed up: it connects by itself and reconnects after each close.
    let mut s = c.create("closenailed").await.unwrap();
    let mut rec = Rec::default();
    until(&mut s, &mut rec, "a reconnection", |r| {
        r.count(Connected) >= 2
    })
    .await;
    let first = rec.states.iter().position(|s| *s == Disconnected).unwrap();
    assert_eq!(
        rec.states[..first + 1],
        [Creating, Connecting, Connected, Disconnected]
    );
    assert!(
        rec.states[first..].contains(&Connecting),
        "{:?}",
        rec.states
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_over_tls() {
    let pki = TestPki::new(&["127.0.0.1"]);
    let peer = WsPeer::server(WsServerOpts {
        tls: Some(&pki),
        ..Default::default()
    });
    let c = Client::start(client_policy(peer.port(), Some(&pki.ca_b64())), config());
    let (mut s, mut rec) = connected(&c, "echo").await;
    assert_eq!(round_trip(&mut s, &mut rec, b"over wss").await, b"over wss");
    let (mut b, mut brec) = connected(&c, "echobin").await;
    let data = big(MIB);
    let got = round_trip(&mut b, &mut brec, &data).await;
    assert!(got == data, "wss echo differs ({} bytes)", got.len());
}

// ----- their client, our server ---------------------------------------------

const SERVER_POLICY: &str = r#"{
  "s": [
    {"srv": {"server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "h1",
             "ws_subprotocol": "chat", "metadata": [{"path": ""}]}},
    {"srvbin": {"server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "h1",
                "ws_subprotocol": "chat", "ws_binary": true, "metadata": [{"path": ""}]}}
  ]
}"#;

/// What our server's handlers saw, across connections.
#[derive(Debug, Default)]
struct SrvLog {
    /// (accepted stream, state) in order.
    states: Vec<(StreamId, StreamState)>,
    /// (stream, message length, pieces) per complete message.
    messages: Vec<(StreamId, usize, usize)>,
    /// `path` metadata at SERVER_UPGRADE.
    paths: Vec<String>,
}

type Log = Arc<Mutex<SrvLog>>;

/// An accepted WebSocket connection that echoes every message, keeping SOM
/// and EOM, in budget-sized pieces.
struct WsEcho {
    log: Log,
    pending: VecDeque<(Vec<u8>, Flags)>,
    msg_len: usize,
    pieces: usize,
}

impl Handler for WsEcho {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        let mut log = self.log.lock().unwrap();
        log.states.push((ctx.id(), state));
        if state == ServerUpgrade {
            let p = ctx.get_metadata("path").ok().flatten().unwrap_or_default();
            log.paths.push(String::from_utf8_lossy(p).into_owned());
        }
        SsRet::Ok
    }

    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        if flags.contains(Flags::SOM) {
            self.msg_len = 0;
            self.pieces = 0;
        }
        self.msg_len += data.len();
        self.pieces += 1;
        if flags.contains(Flags::EOM) {
            let mut log = self.log.lock().unwrap();
            log.messages.push((ctx.id(), self.msg_len, self.pieces));
        }
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
        if data.len() > budget {
            let rest = data.split_off(budget);
            self.pending.push_front((rest, Flags(f.0 & !Flags::SOM.0)));
            *flags = Flags(f.0 & !Flags::EOM.0);
        } else {
            *flags = f;
        }
        buf.extend_from_slice(&data);
        if !self.pending.is_empty() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

struct Quiet;
impl Handler for Quiet {}

/// Our two ws server streams (text and binary) on their own thread; stops on drop.
struct OurWsServer {
    port: u16,
    port_bin: u16,
    log: Log,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OurWsServer {
    fn start() -> OurWsServer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Log::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let (st, lg) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let policy = Policy::parse(SERVER_POLICY).unwrap();
            let mut rt = Runtime::new(Host::new(Engine::new(policy, config())));
            let mut ports = vec![];
            for name in ["srv", "srvbin"] {
                let now = rt.now();
                let l = lg.clone();
                let id = rt
                    .host()
                    .create_server(
                        now,
                        name,
                        Box::new(Quiet),
                        Box::new(move |_| {
                            Box::new(WsEcho {
                                log: l.clone(),
                                pending: VecDeque::new(),
                                msg_len: 0,
                                pieces: 0,
                            })
                        }),
                    )
                    .unwrap();
                rt.run_until(WAIT, &mut |h| h.listening(id).is_some());
                let addr = rt.host().listening(id).map(|r| r.map(str::to_string));
                match addr {
                    Some(Ok(a)) => ports.push(a.parse::<std::net::SocketAddr>().unwrap().port()),
                    other => panic!("ws server not listening: {other:?}"),
                }
            }
            tx.send(ports).unwrap();
            while !st.load(Ordering::Relaxed) {
                rt.run_until(Duration::from_millis(20), &mut |_| false);
            }
        });
        let ports = rx.recv_timeout(WAIT).expect("server ports");
        OurWsServer {
            port: ports[0],
            port_bin: ports[1],
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// Wait until `done` holds for the log; panics after [`WAIT`].
    fn wait(&self, what: &str, done: impl Fn(&SrvLog) -> bool) {
        let end = std::time::Instant::now() + WAIT;
        loop {
            if done(&self.log.lock().unwrap()) {
                return;
            }
            assert!(
                std::time::Instant::now() < end,
                "server: no {what} within {WAIT:?}: {:?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OurWsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("server thread");
            }
        }
    }
}

fn parse_lines(out: &conformance::peers::WsClientRun) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "ws client: {}\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Each step line says the echo was equal (content and type).
fn assert_steps(v: &[serde_json::Value], n: usize) {
    assert_eq!(v.len(), n + 1, "{v:?}");
    for (i, l) in v[..n].iter().enumerate() {
        assert_eq!(l["step"], i, "{l}");
        assert_eq!(l["equal"], true, "step {i}: {l}");
    }
}

#[test]
fn their_client_against_our_server() {
    let srv = OurWsServer::start();

    // Text: a short message, a fragmented one, a large one; subprotocol chat;
    // the client closes with 4002.
    let large_text: String = (0..300_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let steps = serde_json::json!([
        {"text": "hello"},
        {"frag": ["alpha-", "beta-", "gamma"]},
        {"text": large_text},
    ])
    .to_string();
    let out = ws_client(
        &format!("ws://127.0.0.1:{}/room/1", srv.port),
        &WsClientOpts {
            subprotocol: Some("chat".into()),
            close_code: Some(4002),
            steps,
            ..Default::default()
        },
    );
    let v = parse_lines(&out);
    assert_steps(&v, 3);
    assert_eq!(v[1]["head"], "alpha-beta-gamma");
    assert_eq!(v[2]["got_len"], 300_000);
    let last = &v[3];
    assert_eq!(last["subprotocol"], "chat", "{last}");
    // Our server answers the client's Close with the same code.
    assert_eq!(last["close_code"], 4002, "{last}");

    // Server side: SERVER_UPGRADE with the request path, three messages
    // (the fragmented one in at least three pieces), then DISCONNECTED.
    srv.wait("DISCONNECTED", |l| {
        l.states.iter().any(|(_, s)| *s == Disconnected)
    });
    {
        let log = srv.log.lock().unwrap();
        let id = log.states[0].0;
        let states: Vec<StreamState> = log
            .states
            .iter()
            .filter(|(s, _)| *s == id)
            .map(|(_, st)| *st)
            .collect();
        let up = states
            .iter()
            .position(|s| *s == ServerUpgrade)
            .expect("SERVER_UPGRADE");
        let down = states.iter().position(|s| *s == Disconnected).unwrap();
        assert!(up < down, "{states:?}");
        assert_eq!(log.paths, ["/room/1"]);
        let msgs: Vec<(usize, usize)> = log
            .messages
            .iter()
            .filter(|(s, ..)| *s == id)
            .map(|(_, n, p)| (*n, *p))
            .collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert_eq!(msgs[0].0, 5);
        assert_eq!(msgs[1].0, 16);
        assert!(msgs[1].1 >= 3, "fragmented message in {} pieces", msgs[1].1);
        assert_eq!(msgs[2].0, 300_000);
    }

    // Binary: bytes, 1 MiB, fragmented; no subprotocol offered, none chosen.
    let steps = serde_json::json!([
        {"binary_hex": "00fffe0102"},
        {"big": MIB},
        {"fragbin_hex": ["0001", "fffe", "80"]},
    ])
    .to_string();
    let out = ws_client(
        &format!("ws://127.0.0.1:{}/bin", srv.port_bin),
        &WsClientOpts {
            steps,
            ..Default::default()
        },
    );
    let v = parse_lines(&out);
    assert_steps(&v, 3);
    assert_eq!(v[1]["got_len"], MIB);
    assert!(v[3]["subprotocol"].is_null(), "{}", v[3]);
    assert_eq!(v[3]["close_code"], 1000);
    srv.wait("two DISCONNECTED", |l| {
        l.states.iter().filter(|(_, s)| *s == Disconnected).count() == 2
    });
    let log = srv.log.lock().unwrap();
    assert_eq!(log.paths, ["/room/1", "/bin"]);
    let lens: Vec<usize> = log.messages[3..].iter().map(|(_, n, _)| *n).collect();
    assert_eq!(lens, [5, MIB, 5]);
}

// ----- robustness: broken frames from a raw TCP client -----------------------

/// Upgrade a raw TCP connection to our server; returns it after the 101.
fn raw_upgrade(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        b"GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = vec![];
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut b).expect("read 101");
        assert_eq!(n, 1, "closed during the handshake: {head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    s
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [1u8, 2, 3, 4];
    let mut f = vec![first, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

#[test]
fn broken_frames_get_the_rfc_close_code() {
    let srv = OurWsServer::start();
    let mut oversized = vec![0x82, 0xff];
    oversized.extend_from_slice(&(1u64 << 33).to_be_bytes());
    oversized.extend_from_slice(&[1, 2, 3, 4]);
    let cases: [(&str, Vec<u8>, u16); 3] = [
        ("unmasked frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        (
            "invalid UTF-8 text",
            masked(0x81, &[0xce, 0xba, 0xc3, 0x28]),
            1007,
        ),
        ("8 GiB frame", oversized, 1009),
    ];
    for (what, frame, code) in cases {
        let mut s = raw_upgrade(srv.port);
        // A valid message first: echoed, so the connection is really upgraded.
        s.write_all(&masked(0x81, b"ok")).unwrap();
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).expect("echo");
        assert_eq!(echo, [0x81, 0x02, b'o', b'k'], "{what}");
        s.write_all(&frame).unwrap();
        let mut rest = vec![];
        match s.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{what}: connection not closed: {e} (got {rest:?})"),
        }
        let [hi, lo] = code.to_be_bytes();
        assert!(
            rest.len() >= 4 && rest[..4] == [0x88, 0x02, hi, lo],
            "{what}: expected Close {code}, got {rest:02x?}"
        );
        assert_eq!(rest.len(), 4, "{what}: bytes after the Close: {rest:02x?}");
    }
}
