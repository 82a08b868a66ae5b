//! Our HTTP/1.1 client and server against real peers on loopback (plain
//! HTTP): the ss-tokio async client against nginx and the Python edge server
//! (`conformance/peers/h1_edge_server.py`), the callback model on all three
//! adapters against the edge server, and curl / Python's `http.client` /
//! `urllib` against an ss h1 server stream.
//!
//! Every wait is bounded ([`WAIT`]): a hang fails the test instead of
//! blocking CI. Nothing asserts on timing, only on states, bodies and counts.

use conformance::driver::Driver;
use conformance::drivers::{mio::MioDriver, smol::SmolDriver, tokio::TokioDriver};
use conformance::peers::{
    big_bin_content, edge_body, require, Nginx, NginxOpts, PyEdge, BIG_BIN_LEN, INDEX_HTML,
};
use ss_core::engine::SystemBlob;
use ss_core::{Engine, EngineConfig, Flags, Handler, Host, Policy, SsRet, StreamCtx, StreamState};
use ss_tokio::{Client, Runtime, SsStream};
use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use StreamState::*;

/// Upper bound for any one wait (a transaction, a peer exchange).
const WAIT: Duration = Duration::from_secs(10);

/// Retry policies shared by the client policies below: `fast` (the default)
/// makes three attempts 20 ms apart, so failures end in ALL_RETRIES_FAILED
/// quickly; `slow` waits 5 s before its one retry, so a test can look at a
/// first failed attempt and its peer's log before anything else happens.
const RETRY: &str = r#""retry": [
    {"fast": {"backoff": [20, 20], "conceal": 2, "jitterpc": 0}},
    {"slow": {"backoff": [5000], "conceal": 1, "jitterpc": 0}}]"#;

/// A client policy of `streamtypes` (name, JSON members) for 127.0.0.1:`port`,
/// protocol h1, retry `fast` unless they name one.
fn client_policy(port: u16, streamtypes: &[(&str, &str)]) -> Policy {
    let s: Vec<String> = streamtypes
        .iter()
        .map(|(name, body)| {
            let retry = if body.contains(r#""retry""#) {
                ""
            } else {
                r#""retry": "fast","#
            };
            format!(
                r#"{{"{name}": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h1",
                    {retry} {body}}}}}"#
            )
        })
        .collect();
    let json = format!(r#"{{ {RETRY}, "s": [{}] }}"#, s.join(","));
    Policy::parse(&json).unwrap_or_else(|e| panic!("policy {json}: {e:?}"))
}

fn config() -> EngineConfig {
    EngineConfig {
        seed: 7,
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

// ----- the async client: one transaction at a time -------------------------

/// What one transaction (or attempt series) showed the application.
#[derive(Debug, Default)]
struct Txn {
    states: Vec<StreamState>,
    rx: Vec<(Vec<u8>, Flags)>,
}

impl Txn {
    fn body(&self) -> Vec<u8> {
        self.rx
            .iter()
            .flat_map(|(d, _)| d.iter().copied())
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body()).into_owned()
    }
}

/// Collect states and payload until a state in `until` arrives (then take
/// the payload already queued: the loop queues rx before the states after
/// it). Panics after [`WAIT`].
async fn collect(s: &mut SsStream, until: &[StreamState]) -> Txn {
    let mut t = Txn::default();
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        // `timeout(ZERO, ..)` polls once: take whatever is ready.
        while let Ok(Some(p)) = tokio::time::timeout(Duration::ZERO, s.recv()).await {
            t.rx.push(p);
        }
        match tokio::time::timeout(Duration::ZERO, s.next_state()).await {
            Ok(Some(st)) => {
                t.states.push(st);
                if until.contains(&st) {
                    while let Ok(Some(p)) = tokio::time::timeout(Duration::ZERO, s.recv()).await {
                        t.rx.push(p);
                    }
                    return t;
                }
                continue;
            }
            Ok(None) => panic!("stream gone; so far {:?}", t.states),
            Err(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < end,
            "no {until:?} within {WAIT:?}; states {:?}, {} bytes: {:?}",
            t.states,
            t.body().len(),
            String::from_utf8_lossy(&t.body()[..t.body().len().min(200)])
        );
        if let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(2), s.recv()).await {
            t.rx.push(p);
        }
    }
}

/// Connect (start a transaction) and collect it until DISCONNECTED or
/// ALL_RETRIES_FAILED.
async fn get(s: &mut SsStream) -> Txn {
    s.connect().await.unwrap();
    collect(s, &[Disconnected, AllRetriesFailed]).await
}

/// Set the `path` metadata (the policy's `http_url` is `${path}`), then [`get`].
async fn get_path(s: &mut SsStream, path: &str) -> Txn {
    s.set_metadata("path", path.as_bytes()).await.unwrap();
    get(s).await
}

/// The states of a successful first transaction started by `connect()`
/// (`lws_ss_client_connect`: no POLL), as in the reference.
const OK_GET: [StreamState; 5] = [Creating, Connecting, Connected, QosAckRemote, Disconnected];
/// ... of a later one on the same stream.
const OK_NEXT: [StreamState; 4] = [Connecting, Connected, QosAckRemote, Disconnected];
/// ... of a first one started by `send()` (a tx request on an idle stream: POLL).
const OK_SEND: [StreamState; 6] = [
    Creating,
    Poll,
    Connecting,
    Connected,
    QosAckRemote,
    Disconnected,
];

/// SOM only on the first payload, EOM only on the last (which may be an
/// empty payload when the end is only known at the close, as read-to-close).
fn assert_som_eom(t: &Txn) {
    let f: Vec<Flags> = t.rx.iter().map(|(_, f)| *f).collect();
    assert!(!f.is_empty(), "no payload; states {:?}", t.states);
    assert!(!t.rx[0].0.is_empty(), "an empty first payload");
    for (i, fl) in f.iter().enumerate() {
        assert_eq!(
            fl.contains(Flags::SOM),
            i == 0,
            "SOM on payload {i} of {}",
            f.len()
        );
        assert_eq!(
            fl.contains(Flags::EOM),
            i == f.len() - 1,
            "EOM on payload {i} of {}",
            f.len()
        );
    }
}

fn count(states: &[StreamState], s: StreamState) -> usize {
    states.iter().filter(|x| **x == s).count()
}

/// How many requests the edge server logged whose request line contains `needle`.
fn edge_requests(edge: &PyEdge, needle: &str) -> usize {
    let log = std::fs::read_to_string(edge.dir().join("stderr.log")).unwrap_or_default();
    log.lines().filter(|l| l.contains(needle)).count()
}

const NGX: &[(&str, &str)] = &[
    (
        "ngx",
        r#""http_url": "${path}", "metadata": [{"path": ""}]"#,
    ),
    ("ngx_204", r#""http_url": "/204", "http_expect": 204"#),
    ("ngx_204_plain", r#""http_url": "/204""#),
    (
        "ngx_expect_204_gets_200",
        r#""http_url": "/index.html", "http_expect": 204"#,
    ),
    ("ngx_redir", r#""http_url": "/redirect""#),
    (
        "ngx_redir_slow",
        r#""http_url": "/redirect", "retry": "slow""#,
    ),
    (
        "ngx_redir_follow",
        r#""http_url": "/redirect", "allow_redirects": true"#,
    ),
    ("ngx_post", r#""http_url": "/echo", "http_method": "POST""#),
];

// ----- nginx ---------------------------------------------------------------

#[tokio::test]
async fn nginx_big_bin_exact_with_som_eom() {
    let ngx = Nginx::start(NginxOpts::default());
    let client = Client::start(client_policy(ngx.http_port(), NGX), config());
    let mut s = client.create("ngx").await.unwrap();
    let t = get_path(&mut s, "/big.bin").await;
    assert_eq!(t.states, OK_GET);
    let body = t.body();
    assert_eq!(body.len(), BIG_BIN_LEN);
    assert!(
        body == big_bin_content(BIG_BIN_LEN),
        "big.bin content differs"
    );
    assert_som_eom(&t);
}

#[tokio::test]
async fn nginx_two_gets_on_one_stream() {
    let ngx = Nginx::start(NginxOpts::default());
    let client = Client::start(client_policy(ngx.http_port(), NGX), config());
    let mut s = client.create("ngx").await.unwrap();
    let t = get_path(&mut s, "/index.html").await;
    assert_eq!(t.states, OK_GET);
    assert_eq!(t.text(), INDEX_HTML);
    assert_som_eom(&t);
    // Idle again after DISCONNECTED: a new connect() is a new transaction.
    let t = get(&mut s).await;
    assert_eq!(t.states, OK_NEXT);
    assert_eq!(t.text(), INDEX_HTML);
    assert_som_eom(&t);
}

/// A 204 is a success (2xx, as the reference's `good_respcode`) without
/// `http_expect` too; with `http_expect: 204`, only a 204 is.
#[tokio::test]
async fn nginx_204_and_http_expect() {
    let ngx = Nginx::start(NginxOpts::default());
    let client = Client::start(client_policy(ngx.http_port(), NGX), config());
    for st in ["ngx_204", "ngx_204_plain"] {
        let mut s = client.create(st).await.unwrap();
        let t = get(&mut s).await;
        assert_eq!(t.states, OK_GET, "{st}");
        assert!(
            t.body().is_empty(),
            "{st}: a 204 has no body: {:?}",
            t.text()
        );
    }
    let mut s = client.create("ngx_expect_204_gets_200").await.unwrap();
    let t = get(&mut s).await;
    assert_eq!(
        t.states,
        [Creating, Connecting, Connected, QosNackRemote, Disconnected]
    );
    assert_eq!(t.text(), INDEX_HTML);
}

#[tokio::test]
async fn nginx_redirect_fails_by_default_and_is_followed_when_allowed() {
    let ngx = Nginx::start(NginxOpts::default());
    let client = Client::start(client_policy(ngx.http_port(), NGX), config());
    let mut s = client.create("ngx_redir_slow").await.unwrap();
    s.connect().await.unwrap();
    let t = collect(&mut s, &[Unreachable, Connected, Disconnected]).await;
    assert_eq!(t.states, [Creating, Connecting, Unreachable]);
    assert!(t.body().is_empty());
    s.destroy().await.unwrap();

    let mut s = client.create("ngx_redir_follow").await.unwrap();
    let t = get(&mut s).await;
    assert_eq!(t.text(), INDEX_HTML, "states {:?}", t.states);
    assert_eq!(
        t.states,
        [
            Creating,
            Connecting,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
}

#[tokio::test]
async fn nginx_unfollowed_redirect_exhausts_the_retry_policy() {
    let ngx = Nginx::start(NginxOpts::default());
    let client = Client::start(client_policy(ngx.http_port(), NGX), config());
    let mut s = client.create("ngx_redir").await.unwrap();
    let t = get(&mut s).await;
    assert_eq!(
        t.states,
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
            AllRetriesFailed
        ]
    );
    assert!(t.body().is_empty());
}

#[tokio::test]
async fn nginx_post_echo() {
    let ngx = Nginx::start(NginxOpts::default());
    let client = Client::start(client_policy(ngx.http_port(), NGX), config());
    let mut s = client.create("ngx_post").await.unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 256) as u8).collect();
    tokio::time::timeout(WAIT, s.send(body.clone()))
        .await
        .expect("send in time")
        .unwrap();
    let t = collect(&mut s, &[Disconnected, AllRetriesFailed]).await;
    assert_eq!(t.states, OK_SEND);
    assert!(
        t.body() == body,
        "echo differs ({} bytes back)",
        t.body().len()
    );
    assert_som_eom(&t);
}

// ----- the Python edge server ---------------------------------------------

const EDGE: &[(&str, &str)] = &[
    (
        "edge",
        r#""http_url": "${path}", "metadata": [{"path": ""}, {"connid": "x-conn-id:"}]"#,
    ),
    (
        "edge_follow",
        r#""http_url": "${path}", "allow_redirects": true, "metadata": [{"path": ""}]"#,
    ),
    (
        "edge_follow_slow",
        r#""http_url": "${path}", "allow_redirects": true, "metadata": [{"path": ""}],
           "retry": "slow""#,
    ),
    (
        "edge_slow",
        r#""http_url": "${path}", "metadata": [{"path": ""}], "retry": "slow""#,
    ),
    (
        "edge_jar",
        r#""http_url": "${path}", "http_cookies": true, "metadata": [{"path": ""}]"#,
    ),
    (
        "edge_530",
        r#""http_url": "/status/530", "http_resp_map": [{"530": 1530}]"#,
    ),
    (
        "edge_headers",
        r#""http_url": "/headers", "metadata": [{"tag": "x-tag:"}],
           "http_auth_header": "authorization:", "http_auth_preamble": "bearer ""#,
    ),
    (
        "edge_meta",
        r#""http_url": "/resp-header", "metadata": [{"meta": "x-test-meta:"}]"#,
    ),
    (
        "edge_upload",
        r#""http_url": "/multipart-upload", "http_method": "POST",
           "http_multipart_name": "file", "http_multipart_filename": "a.bin",
           "http_multipart_content_type": "application/x-ss""#,
    ),
    (
        "edge_mp",
        r#""http_url": "/multipart-download?parts=3", "http_multipart_ss_in": true"#,
    ),
];

async fn edge_client(edge: &PyEdge) -> Client {
    Client::start(client_policy(edge.port(), EDGE), config())
}

#[tokio::test]
async fn edge_chunked_close_and_len_bodies() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge").await.unwrap();
    let t = get_path(&mut s, "/chunked?n=50&size=1000").await;
    assert_eq!(t.states, OK_GET, "{}", edge.logs());
    assert!(t.body() == edge_body(50_000), "chunked body differs");
    assert_som_eom(&t);

    let t = get_path(&mut s, "/close?size=100000").await;
    assert_eq!(t.states, OK_NEXT);
    assert!(t.body() == edge_body(100_000), "read-to-close body differs");
    assert_som_eom(&t);

    let t = get_path(&mut s, "/close?size=1000&http10=1").await;
    assert!(t.body() == edge_body(1000), "HTTP/1.0 read-to-close body");
    assert!(t.states.contains(&QosAckRemote), "{:?}", t.states);

    let t = get_path(&mut s, "/len?size=70000").await;
    assert_eq!(t.states, OK_NEXT);
    assert!(t.body() == edge_body(70_000), "content-length body differs");
    assert_som_eom(&t);
}

#[tokio::test]
async fn edge_404_nacks() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge").await.unwrap();
    let t = get_path(&mut s, "/status/404").await;
    assert_eq!(
        t.states,
        [Creating, Connecting, Connected, QosNackRemote, Disconnected]
    );
    assert_eq!(t.text(), "status 404");
}

/// Records every state (with its ack) and payload of a callback-model stream.
#[derive(Default)]
struct Seen {
    states: Vec<(StreamState, u32)>,
    rx: Vec<(Vec<u8>, Flags)>,
}

struct Recorder(Rc<RefCell<Seen>>);

impl Handler for Recorder {
    fn rx(&mut self, _ctx: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        self.0.borrow_mut().rx.push((data.to_vec(), flags));
        SsRet::Ok
    }

    fn state(&mut self, _ctx: &mut StreamCtx<'_>, state: StreamState, ack: u32) -> SsRet {
        self.0.borrow_mut().states.push((state, ack));
        SsRet::Ok
    }
}

/// One client transaction on streamtype `st` of `policy` through driver `D`
/// with the callback model; returns what the handler saw.
fn callback_txn<D: Driver>(policy: Policy, st: &str) -> Seen {
    let mut d = D::new(Host::new(Engine::new(policy, config())));
    let seen = Rc::new(RefCell::new(Seen::default()));
    let now = d.now();
    let id = d
        .host()
        .create(now, st, Box::new(Recorder(seen.clone())))
        .unwrap();
    let now = d.now();
    d.host().engine.client_connect(now, id).unwrap();
    let s = seen.clone();
    let done = d.run_until(WAIT, &mut |_| {
        s.borrow()
            .states
            .iter()
            .any(|(st, _)| matches!(st, Disconnected | AllRetriesFailed))
    });
    assert!(
        done,
        "[{}] no end of transaction; states {:?}",
        D::NAME,
        seen.borrow().states
    );
    let got = std::mem::take(&mut *seen.borrow_mut());
    got
}

#[test]
fn edge_resp_map_reports_user_state_with_the_mapped_ack() {
    let edge = PyEdge::start(None);
    let seen = callback_txn::<TokioDriver>(client_policy(edge.port(), EDGE), "edge_530");
    assert_eq!(
        seen.states,
        [
            (Creating, 0),
            (Connecting, 0),
            (User, 1530),
            (Connected, 0),
            (QosNackRemote, 0),
            (Disconnected, 0)
        ]
    );
}

/// The same small GET against the edge server through every adapter's loop.
fn edge_get_via<D: Driver>() {
    let edge = PyEdge::start(None);
    let policy = client_policy(edge.port(), &[("len", r#""http_url": "/len?size=200000""#)]);
    let seen = callback_txn::<D>(policy, "len");
    let states: Vec<_> = seen.states.iter().map(|(s, _)| *s).collect();
    assert_eq!(states, OK_GET, "[{}]", D::NAME);
    let body: Vec<u8> = seen.rx.iter().flat_map(|(d, _)| d.clone()).collect();
    assert!(body == edge_body(200_000), "[{}] body differs", D::NAME);
    assert!(seen.rx[0].1.contains(Flags::SOM), "[{}]", D::NAME);
    assert!(
        seen.rx.last().unwrap().1.contains(Flags::EOM),
        "[{}]",
        D::NAME
    );
}

#[test]
fn edge_get_tokio_runtime() {
    edge_get_via::<TokioDriver>();
}

#[test]
fn edge_get_mio_runtime() {
    edge_get_via::<MioDriver>();
}

#[test]
fn edge_get_smol_runtime() {
    edge_get_via::<SmolDriver>();
}

#[tokio::test]
async fn edge_redirect_chain_followed_and_loop_fails() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge_follow").await.unwrap();
    let t = get_path(&mut s, "/redirect?n=3").await;
    assert_eq!(t.body(), edge_body(10), "states {:?}", t.states);
    assert_eq!(
        &t.states[t.states.len() - 3..],
        [Connected, QosAckRemote, Disconnected]
    );
    assert!(!t.states.contains(&Unreachable), "{:?}", t.states);
    assert_eq!(edge_requests(&edge, "GET /redirect?n="), 3);

    s.destroy().await.unwrap();

    // A loop: the attempt fails after 5 followed redirects (6 requests).
    let mut s = client.create("edge_follow_slow").await.unwrap();
    s.set_metadata("path", b"/redirect-loop").await.unwrap();
    s.connect().await.unwrap();
    let t = collect(&mut s, &[Unreachable, Connected, Disconnected]).await;
    assert_eq!(t.states.last(), Some(&Unreachable), "{:?}", t.states);
    assert!(!t.states.contains(&Connected), "{:?}", t.states);
    assert_eq!(edge_requests(&edge, "GET /redirect-loop "), 6);
}

#[tokio::test]
async fn edge_redirect_loop_exhausts_the_retry_policy() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge_follow").await.unwrap();
    let t = get_path(&mut s, "/redirect-loop").await;
    // Each of the 3 attempts gives up after 5 followed redirects.
    assert_eq!(count(&t.states, Unreachable), 3, "{:?}", t.states);
    assert_eq!(t.states.last(), Some(&AllRetriesFailed), "{:?}", t.states);
    assert!(!t.states.contains(&Connected), "{:?}", t.states);
    assert_eq!(edge_requests(&edge, "GET /redirect-loop "), 3 * 6);
}

#[tokio::test]
async fn edge_cookies_come_back() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge_jar").await.unwrap();
    let t = get_path(&mut s, "/cookie-echo").await;
    assert_eq!(t.text(), "", "no cookies before any Set-Cookie");
    let t = get_path(&mut s, "/set-cookie").await;
    assert_eq!(t.text(), "ok");
    let t = get_path(&mut s, "/cookie-echo").await;
    assert_eq!(t.text(), "a=1; b=2", "states {:?}", t.states);
}

#[tokio::test]
async fn edge_request_carries_metadata_and_auth_headers() {
    let edge = PyEdge::start(None);
    let mut engine = Engine::new(client_policy(edge.port(), EDGE), config());
    engine
        .set_system_blob(SystemBlob::Auth(0), b"tok-123")
        .unwrap();
    let client = Client::start_with(engine);
    let mut s = client.create("edge_headers").await.unwrap();
    s.set_metadata("tag", b"blue").await.unwrap();
    let t = get(&mut s).await;
    assert_eq!(t.states, OK_GET);
    let h: serde_json::Value = serde_json::from_slice(&t.body()).expect("JSON headers");
    assert_eq!(h["x-tag"], "blue", "{h}");
    assert_eq!(h["authorization"], "bearer tok-123", "{h}");
    assert_eq!(h["host"], format!("127.0.0.1:{}", edge.port()), "{h}");
}

#[tokio::test]
async fn edge_response_header_sets_metadata() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge_meta").await.unwrap();
    s.connect().await.unwrap();
    let t = collect(&mut s, &[Connected, AllRetriesFailed]).await;
    assert_eq!(t.states, [Creating, Connecting, Connected]);
    assert_eq!(
        s.get_metadata("meta").await.unwrap().as_deref(),
        Some(&b"hello-meta"[..])
    );
    let rest = collect(&mut s, &[Disconnected]).await;
    assert_eq!(rest.states, [QosAckRemote, Disconnected]);
    assert_eq!([t.body(), rest.body()].concat(), b"ok");
}

fn sha256_hex(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("data");
    std::fs::write(&f, data).unwrap();
    let out = Command::new(require("python3"))
        .arg("-c")
        .arg("import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())")
        .arg(&f)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn edge_multipart_upload() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge_upload").await.unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 256) as u8).collect();
    tokio::time::timeout(WAIT, s.send(data.clone()))
        .await
        .expect("send in time")
        .unwrap();
    let t = collect(&mut s, &[Disconnected, AllRetriesFailed]).await;
    assert_eq!(t.states, OK_SEND, "answer {}", t.text());
    let parts: serde_json::Value = serde_json::from_slice(&t.body()).expect("JSON answer");
    assert_eq!(
        parts,
        serde_json::json!([{
            "name": "file",
            "filename": "a.bin",
            "content_type": "application/x-ss",
            "len": data.len(),
            "sha256": sha256_hex(&data),
        }])
    );
}

#[tokio::test]
async fn edge_multipart_download_is_split_into_parts() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge_mp").await.unwrap();
    let t = get(&mut s).await;
    assert_eq!(t.states, OK_GET);
    assert_eq!(t.rx.first().map(|p| p.1), Some(Flags::RELATED_START));
    assert_eq!(t.rx.last().map(|p| p.1), Some(Flags::RELATED_END));
    let mut parts: Vec<Vec<u8>> = vec![];
    let mut open = false;
    for (d, f) in &t.rx[1..t.rx.len() - 1] {
        if f.contains(Flags::SOM) {
            assert!(!open, "SOM inside a part");
            parts.push(vec![]);
            open = true;
        }
        assert!(open || d.is_empty(), "data outside a part");
        if let Some(p) = parts.last_mut() {
            p.extend_from_slice(d);
        }
        if f.contains(Flags::EOM) {
            open = false;
        }
    }
    assert!(!open, "last part not closed by EOM");
    let want: Vec<Vec<u8>> = (1..=3)
        .map(|k| format!("part {k} ").repeat(100).into_bytes())
        .collect();
    assert_eq!(parts, want);
}

#[tokio::test]
async fn edge_malformed_and_huge_header_fail_cleanly() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    for path in ["/malformed", "/huge-header"] {
        let mut s = client.create("edge_slow").await.unwrap();
        s.set_metadata("path", path.as_bytes()).await.unwrap();
        s.connect().await.unwrap();
        let t = collect(&mut s, &[Unreachable, Connected, Disconnected]).await;
        assert_eq!(t.states, [Creating, Connecting, Unreachable], "{path}");
        assert!(t.body().is_empty(), "{path}");
        s.destroy().await.unwrap();
    }
    // The loop still works afterwards.
    let mut s = client.create("edge").await.unwrap();
    let t = get_path(&mut s, "/len?size=10").await;
    assert_eq!(t.states, OK_GET);
    assert_eq!(t.body(), edge_body(10));
}

#[tokio::test]
async fn edge_malformed_exhausts_the_retry_policy() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge").await.unwrap();
    for path in ["/malformed", "/huge-header"] {
        let t = get_path(&mut s, path).await;
        assert_eq!(count(&t.states, Unreachable), 3, "{path}: {:?}", t.states);
        assert_eq!(t.states.last(), Some(&AllRetriesFailed), "{path}");
        assert!(!t.states.contains(&Connected), "{path}: {:?}", t.states);
    }
}

#[tokio::test]
async fn edge_keep_alive_reuses_and_close_does_not() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge").await.unwrap();
    let a = get_path(&mut s, "/conn-id").await;
    let b = get_path(&mut s, "/conn-id").await;
    assert!(!a.text().is_empty());
    assert_eq!(a.text(), b.text(), "keep-alive: the same connection");

    // A `Connection: close` response (here on the pooled connection) ends
    // that connection: the next transaction opens a new one.
    let c = get_path(&mut s, "/close?size=10").await;
    assert_eq!(c.body(), edge_body(10));
    let closed = s.get_metadata("connid").await.unwrap().expect("X-Conn-Id");
    let n = get_path(&mut s, "/conn-id").await;
    assert_eq!(n.states, OK_NEXT);
    assert_ne!(
        n.body(),
        closed,
        "a Connection: close connection was reused"
    );
    let c2 = get_path(&mut s, "/close?size=10").await;
    assert_eq!(c2.body(), edge_body(10));
    let c3 = get_path(&mut s, "/close?size=10").await;
    assert_eq!(c3.body(), edge_body(10));
    assert_ne!(
        s.get_metadata("connid").await.unwrap(),
        Some(n.body()),
        "/close after /close on one connection"
    );
}

#[tokio::test]
async fn edge_503_backs_off_silently_and_retries() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge").await.unwrap();
    s.set_metadata("path", b"/status/503").await.unwrap();
    s.connect().await.unwrap();
    let mut states = vec![];
    while count(&states, Connecting) < 3 {
        states.extend(collect(&mut s, &[Connecting]).await.states);
    }
    // Concealed: no CONNECTED or UNREACHABLE; two 503s answered, a third attempt.
    assert_eq!(
        states,
        [Creating, Connecting, Poll, Connecting, Poll, Connecting]
    );
    assert!(edge_requests(&edge, "GET /status/503 ") >= 2);
    s.destroy().await.unwrap();
}

#[tokio::test]
async fn edge_503_exhausts_the_retry_policy() {
    let edge = PyEdge::start(None);
    let client = edge_client(&edge).await;
    let mut s = client.create("edge").await.unwrap();
    let t = get_path(&mut s, "/status/503").await;
    assert_eq!(
        t.states,
        [
            Creating,
            Connecting,
            Poll,
            Connecting,
            Poll,
            Connecting,
            AllRetriesFailed
        ]
    );
    assert_eq!(edge_requests(&edge, "GET /status/503 "), 3);
    assert!(t.body().is_empty());
}

/// A scripted loopback server: answers its first request with 503 and
/// `Retry-After: 1` (closing), every later one with 200 "ok". Returns its
/// port and the request count.
fn busy_then_ok_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let _ = c.set_read_timeout(Some(WAIT));
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => head.extend_from_slice(&b[..k]),
                }
            }
            if head.is_empty() {
                continue;
            }
            let resp: &[u8] = if count.fetch_add(1, Ordering::SeqCst) == 0 {
                b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            };
            let _ = c.write_all(resp);
        }
    });
    (port, n)
}

/// 503 with Retry-After: the attempt is concealed (no UNREACHABLE, no
/// CONNECTED), the stream comes back by itself and the next answer succeeds.
#[tokio::test]
async fn retry_after_503_then_success() {
    let (port, requests) = busy_then_ok_server();
    let client = Client::start(
        client_policy(port, &[("busy", r#""http_url": "/busy""#)]),
        config(),
    );
    let mut s = client.create("busy").await.unwrap();
    let t = get(&mut s).await;
    assert_eq!(
        t.states,
        [
            Creating,
            Connecting,
            Poll,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
    assert_eq!(t.text(), "ok");
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

// ----- their clients against our server -------------------------------------

const SERVER_POLICY: &str = r#"{"s": [{"srv": {"server": true, "protocol": "h1",
    "endpoint": "127.0.0.1", "port": 0,
    "metadata": [{"mime": "content-type:"}, {"method": ""}, {"path": ""}]}}]}"#;

/// Body of `GET /hello`.
const HELLO: &[u8] = b"hello from ss h1\n";
/// Size of `GET /big`.
const BIG: usize = 4 * 1024 * 1024;

/// One accepted connection's transactions: GET /hello, GET /big (4 MiB),
/// POST/PUT anything (echo), GET /noack (no server_ack: 404).
#[derive(Default)]
struct Txns {
    body_in: Vec<u8>,
    out: Vec<u8>,
    off: usize,
}

impl Txns {
    fn respond(&mut self, ctx: &mut StreamCtx<'_>) {
        let path = meta(ctx, "path");
        let method = meta(ctx, "method");
        let (ack, mime, out) = if path == "/noack" {
            (false, "text/plain", b"nope".to_vec())
        } else if method == "POST" || method == "PUT" {
            (
                true,
                "application/x-echo",
                std::mem::take(&mut self.body_in),
            )
        } else if path == "/big" {
            (true, "application/octet-stream", edge_body(BIG))
        } else {
            (true, "text/plain", HELLO.to_vec())
        };
        if ack {
            ctx.server_ack(0).unwrap();
        }
        ctx.set_metadata("mime", mime.as_bytes()).unwrap();
        self.out = out;
        self.off = 0;
        ctx.request_tx_len(self.out.len() as u64).unwrap();
    }
}

fn meta(ctx: &StreamCtx<'_>, name: &str) -> String {
    String::from_utf8_lossy(ctx.get_metadata(name).ok().flatten().unwrap_or_default()).into_owned()
}

impl Handler for Txns {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        if state == ServerTxn {
            self.body_in.clear();
            let m = meta(ctx, "method");
            if m != "POST" && m != "PUT" {
                self.respond(ctx);
            }
        }
        SsRet::Ok
    }

    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        self.body_in.extend_from_slice(data);
        if flags.contains(Flags::EOM) {
            self.respond(ctx);
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
        let n = budget.clamp(1, 64 * 1024).min(self.out.len() - self.off);
        if self.off == 0 {
            *flags |= Flags::SOM;
        }
        buf.extend_from_slice(&self.out[self.off..self.off + n]);
        self.off += n;
        if self.off == self.out.len() {
            *flags |= Flags::EOM;
        } else {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

struct Quiet;
impl Handler for Quiet {}

/// Our h1 server stream on its own thread (ss-tokio Runtime); stops on drop.
struct OurServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OurServer {
    fn start() -> OurServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let policy = Policy::parse(SERVER_POLICY).unwrap();
            let mut rt = Runtime::new(Host::new(Engine::new(policy, config())));
            let now = rt.now();
            let id = rt
                .host()
                .create_server(
                    now,
                    "srv",
                    Box::new(Quiet),
                    Box::new(|_| Box::new(Txns::default())),
                )
                .unwrap();
            rt.run_until(WAIT, &mut |h| h.listening(id).is_some());
            let addr = rt.host().listening(id).map(|r| r.map(str::to_string));
            let port = match addr {
                Some(Ok(a)) => a.parse::<std::net::SocketAddr>().unwrap().port(),
                other => panic!("h1 server not listening: {other:?}"),
            };
            tx.send(port).unwrap();
            while !st.load(Ordering::Relaxed) {
                rt.run_until(Duration::from_millis(20), &mut |_| false);
            }
        });
        let port = rx.recv_timeout(WAIT).expect("server port");
        OurServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for OurServer {
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

/// A response as curl printed it with `-i`: status, lower-cased headers, body.
struct CurlResp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl CurlResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn curl(args: &[&str]) -> CurlResp {
    let out = Command::new(require("curl"))
        .args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let mut rest = &raw[..];
    // Skip interim 1xx heads (100 Continue).
    loop {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let body = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        return CurlResp {
            status,
            headers,
            body: body.to_vec(),
        };
    }
}

#[test]
fn curl_against_our_server() {
    let srv = OurServer::start();
    let r = curl(&[&srv.url("/hello")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some(&*HELLO.len().to_string()));
    assert_eq!(r.body, HELLO);

    // 4 MiB: flow control on our side, written in budget-sized pieces.
    let r = curl(&[&srv.url("/big")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(
        r.body == edge_body(BIG),
        "big body differs ({} bytes)",
        r.body.len()
    );

    // A chunked request body, echoed.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("up.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&f, &data).unwrap();
    let at = format!("@{}", f.display());
    let r = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &at,
        &srv.url("/echo"),
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-echo"));
    assert!(
        r.body == data,
        "chunked echo differs ({} bytes)",
        r.body.len()
    );

    // HEAD: the head of the GET, no body.
    let r = curl(&["-I", &srv.url("/hello")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(r.body.is_empty(), "HEAD body {:?}", r.body);

    // No server_ack: 404, as the reference.
    let r = curl(&[&srv.url("/noack")]);
    assert_eq!(r.status, 404);
}

/// Python's `http.client`: three requests (and a HEAD) on one keep-alive
/// connection, then `urllib`. Prints one JSON line per response.
const PY_CLIENT: &str = r#"
import http.client, json, sys, urllib.request, hashlib
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
out = []
def rec(r, body):
    out.append({"status": r.status, "ctype": r.getheader("Content-Type"),
                "clen": r.getheader("Content-Length"), "body": body.hex(),
                "port": c.sock.getsockname()[1] if c.sock else None})
c.request("GET", "/hello"); r = c.getresponse(); rec(r, r.read())
c.request("POST", "/echo", body=b"py-post-body", headers={"Content-Type": "text/x"}); r = c.getresponse(); rec(r, r.read())
c.request("HEAD", "/hello"); r = c.getresponse(); rec(r, r.read())
c.request("GET", "/hello"); r = c.getresponse(); rec(r, r.read())
with urllib.request.urlopen("http://127.0.0.1:%d/hello" % port, timeout=10) as u:
    out.append({"status": u.status, "ctype": u.headers["Content-Type"], "clen": None,
                "body": u.read().hex(), "port": None})
print(json.dumps(out))
"#;

#[test]
fn python_http_client_against_our_server() {
    let srv = OurServer::start();
    let out = Command::new(require("python3"))
        .arg("-c")
        .arg(PY_CLIENT)
        .arg(srv.port.to_string())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python client: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from python");
    let r = v.as_array().unwrap();
    assert_eq!(r.len(), 5);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let hello = hex(HELLO);
    assert_eq!(r[0]["status"], 200);
    assert_eq!(r[0]["ctype"], "text/plain");
    assert_eq!(r[0]["body"], hello.as_str());
    assert_eq!(r[1]["status"], 200);
    assert_eq!(r[1]["ctype"], "application/x-echo");
    assert_eq!(r[1]["body"], hex(b"py-post-body").as_str());
    assert_eq!(r[2]["status"], 200);
    assert_eq!(r[2]["ctype"], "text/plain");
    assert_eq!(r[2]["clen"], HELLO.len().to_string().as_str());
    assert_eq!(r[2]["body"], "", "HEAD has no body");
    assert_eq!(r[3]["status"], 200);
    assert_eq!(r[3]["body"], hello.as_str());
    // One connection for all four http.client requests (keep-alive).
    let port = &r[0]["port"];
    assert!(port.is_u64(), "{v}");
    for x in &r[1..4] {
        assert_eq!(&x["port"], port, "connection not kept alive: {v}");
    }
    assert_eq!(r[4]["status"], 200);
    assert_eq!(r[4]["ctype"], "text/plain");
    assert_eq!(r[4]["body"], hello.as_str());
}

/// A two-part rideshare upload through the callback model (ss-tokio's
/// loop): the Python edge server parses the multipart body with its own
/// RFC 2046 splitter and answers what it saw, part by part.
#[test]
fn edge_parses_a_two_part_rideshare_upload() {
    use conformance::ride::{RideSeen, RideUpload};
    let edge = PyEdge::start(None);
    let policy = client_policy(
        edge.port(),
        &[
            (
                "ride",
                r#""http_url": "/multipart-upload?data=1", "http_method": "POST",
                   "http_multipart_name": "meta",
                   "http_multipart_content_type": "application/json",
                   "rideshare": "ride_file",
                   "metadata": [{"te": "x-req-transfer-encoding:"},
                                {"cl": "x-req-content-length:"}]"#,
            ),
            (
                "ride_file",
                r#""http_multipart_name": "file", "http_multipart_filename": "b.bin",
                   "http_multipart_content_type": "application/octet-stream""#,
            ),
        ],
    );
    let meta = br#"{"device":"d1","n":2}"#.to_vec();
    let file: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let seen = Rc::new(RefCell::new(RideSeen::default()));
    let app = RideUpload::new(
        vec![
            ("ride".into(), meta.clone()),
            ("ride_file".into(), file.clone()),
        ],
        10_000,
        seen.clone(),
    );
    let mut d = TokioDriver::new(Host::new(Engine::new(policy, config())));
    let now = d.now();
    let id = d.host().create(now, "ride", Box::new(app)).unwrap();
    assert_eq!(d.host().engine.rideshare(id), Some("ride"));
    // A length is announced, but the chain makes the total unknown.
    let now = d.now();
    d.host().engine.request_tx_len(now, id, 1).unwrap();
    let s = seen.clone();
    assert!(
        d.run_until(WAIT, &mut |_| s.borrow().done()),
        "no end: {:?}\n{}",
        seen.borrow().states,
        edge.logs()
    );
    let got = std::mem::take(&mut *seen.borrow_mut());
    assert_eq!(
        got.states,
        [
            Creating,
            Poll,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ],
        "{}",
        String::from_utf8_lossy(&got.body())
    );
    assert_eq!(got.parts(), ["ride", "ride_file"]);
    assert_eq!(
        got.rideshare.len(),
        1 + 4,
        "one tx for meta, four for the file"
    );
    let latin1 = |b: &[u8]| b.iter().map(|&c| c as char).collect::<String>();
    let parts: serde_json::Value = serde_json::from_slice(&got.body()).expect("JSON answer");
    assert_eq!(
        parts,
        serde_json::json!([
            {
                "name": "meta",
                "filename": null,
                "content_type": "application/json",
                "len": meta.len(),
                "sha256": sha256_hex(&meta),
                "data": latin1(&meta),
            },
            {
                "name": "file",
                "filename": "b.bin",
                "content_type": "application/octet-stream",
                "len": file.len(),
                "sha256": sha256_hex(&file),
                "data": latin1(&file),
            }
        ])
    );
    let e = &d.host().engine;
    assert_eq!(e.get_metadata(id, "te").unwrap(), Some(&b"chunked"[..]));
    assert_eq!(e.get_metadata(id, "cl").unwrap(), Some(&b"none"[..]));
    assert_eq!(e.rideshare(id), Some("ride"));
}
