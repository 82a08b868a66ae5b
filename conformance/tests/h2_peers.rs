//! HTTP/2 streams through the engine (ss-tokio) against nghttpd over TLS:
//! many streams of two streamtypes share one connection (ALPN h2), bodies
//! larger than the initial window arrive exactly with SOM/EOM, and a plain
//! HTTP/1.1 server makes the same streamtype fall back to HTTP/1.1. Against
//! nginx with h2: a rideshare multipart body echoed back and parsed, and a
//! `return 302` followed.

use conformance::peers::{free_port, require, Nginx, NginxOpts, PeerProcess, TestPki};
use ss_core::{EngineConfig, Flags, Policy, StreamState};
use ss_tokio::{Client, SsStream, StreamEvent};
use std::process::Command;
use std::time::Duration;

fn file_body(i: usize) -> Vec<u8> {
    let n = (i * 19_997) % 300_000;
    (0..n).map(|j| ((j * 7 + i * 13) % 251) as u8).collect()
}

fn policy(port: u16, ca_b64: &str) -> Policy {
    let json = format!(
        r#"{{
      "retry": [{{"r": {{"backoff": [100], "conceal": 2, "jitterpc": 0}}}}],
      "certs": [{{"ca": "{ca_b64}"}}],
      "trust_stores": [{{"name": "ts", "stack": ["ca"]}}],
      "s": [
        {{"a": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h2", "tls": true,
                "tls_trust_store": "ts", "http_url": "/${{f}}", "retry": "r",
                "opportunistic": true, "nghttp2_quirk_end_stream": true,
                "metadata": [{{"f": ""}}]}}}},
        {{"b": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h2", "tls": true,
                "tls_trust_store": "ts", "http_url": "/${{f}}", "retry": "r",
                "opportunistic": true, "metadata": [{{"f": ""}}]}}}},
        {{"p": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h2", "tls": true,
                "tls_trust_store": "ts", "http_url": "/${{f}}", "http_method": "POST",
                "retry": "r", "metadata": [{{"f": ""}}]}}}},
        {{"follow": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h2", "tls": true,
                "tls_trust_store": "ts", "http_url": "/${{f}}", "allow_redirects": true,
                "retry": "r", "metadata": [{{"f": ""}}]}}}},
        {{"ride": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h2", "tls": true,
                "tls_trust_store": "ts", "http_url": "/echo", "http_method": "POST",
                "http_multipart_name": "meta", "http_multipart_content_type": "application/json",
                "rideshare": "ride_file", "retry": "r"}}}},
        {{"ride_file": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h2",
                "tls": true, "tls_trust_store": "ts", "http_multipart_name": "file",
                "http_multipart_filename": "b.bin",
                "http_multipart_content_type": "application/octet-stream"}}}}
      ]
    }}"#
    );
    Policy::parse(&json).unwrap()
}

/// One transaction: the body and the states until DISCONNECTED.
async fn fetch(s: &mut SsStream) -> (Vec<u8>, Vec<StreamState>, Vec<Flags>) {
    s.connect().await.unwrap();
    collect(s).await
}

/// A request with `body` (POST): what came back, as [`fetch`].
async fn post(s: &mut SsStream, body: Vec<u8>) -> (Vec<u8>, Vec<StreamState>, Vec<Flags>) {
    tokio::time::timeout(Duration::from_secs(10), s.send(body))
        .await
        .expect("body taken in time")
        .unwrap();
    collect(s).await
}

/// The rest of a transaction already under way, as [`fetch`]: payload and
/// states in the order they happened, until DISCONNECTED or
/// ALL_RETRIES_FAILED.
async fn collect(s: &mut SsStream) -> (Vec<u8>, Vec<StreamState>, Vec<Flags>) {
    let (mut body, mut states, mut flags) = (vec![], vec![], vec![]);
    while !matches!(
        states.last(),
        Some(StreamState::Disconnected | StreamState::AllRetriesFailed)
    ) {
        let ev = tokio::time::timeout(Duration::from_secs(10), s.next_event())
            .await
            .unwrap_or_else(|_| panic!("no end: {states:?}"))
            .expect("stream alive");
        match ev {
            StreamEvent::Rx(d, f) => {
                body.extend(d);
                flags.push(f);
            }
            StreamEvent::State(st) => states.push(st),
        }
    }
    (body, states, flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_one_h2_connection_to_nghttpd() {
    let nghttpd = require("nghttpd");
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let (dir, path) = PeerProcess::prepare("nghttpd");
    let www = path.join("www");
    std::fs::create_dir_all(&www).unwrap();
    for i in 0..12 {
        std::fs::write(www.join(format!("f{i}")), file_body(i)).unwrap();
    }
    let [_, cert, key, ..] = pki.write_files(&path);
    let port = free_port();
    // Line-buffered, so its log can be read while it runs.
    let mut cmd = Command::new("stdbuf");
    cmd.arg("-oL")
        .arg(nghttpd)
        .arg("--address=127.0.0.1")
        .arg("-v")
        .arg(format!("--htdocs={}", www.display()))
        .arg(port.to_string())
        .arg(&key)
        .arg(&cert);
    let mut peer = PeerProcess::spawn("nghttpd", dir, cmd);
    peer.wait_port(port).unwrap_or_else(|e| panic!("{e}"));

    let client = Client::start(policy(port, &pki.ca_b64()), EngineConfig::default());
    // The first stream opens the connection; the others join it.
    let mut first = client.create("a").await.unwrap();
    first.set_metadata("f", b"f0").await.unwrap();
    let (body, states, _) = fetch(&mut first).await;
    assert_eq!(body, file_body(0));
    use StreamState::*;
    assert_eq!(
        states,
        [Creating, Connecting, Connected, QosAckRemote, Disconnected]
    );
    let mut tasks = vec![];
    for i in 1..12 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.create(if i % 2 == 0 { "a" } else { "b" }).await.unwrap();
            s.set_metadata("f", format!("f{i}").as_bytes())
                .await
                .unwrap();
            let (body, states, flags) = fetch(&mut s).await;
            (i, body, states, flags)
        }));
    }
    for t in tasks {
        let (i, body, states, flags) = t.await.unwrap();
        assert!(
            body == file_body(i),
            "f{i}: {} bytes, want {}",
            body.len(),
            file_body(i).len()
        );
        assert_eq!(states.last(), Some(&Disconnected), "f{i}: {states:?}");
        assert!(states.contains(&QosAckRemote), "f{i}: {states:?}");
        if let Some(f) = flags.first() {
            assert!(f.contains(Flags::SOM), "f{i}");
            assert!(flags.last().unwrap().contains(Flags::EOM), "f{i}");
        }
    }
    // Connections that sent nghttpd HTTP/2 frames (the port probe sends none).
    let logs = std::fs::read_to_string(peer.dir().join("stdout.log")).unwrap_or_default();
    let mut ids: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("recv SETTINGS frame"))
        .filter_map(|l| l.split(']').next())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}\n{}", peer.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http11_only_server_gets_http11() {
    let nginx = tokio::task::spawn_blocking(|| Nginx::start(NginxOpts::default()))
        .await
        .unwrap();
    let p = policy(nginx.https_port(), &nginx.pki().ca_b64());
    let client = Client::start(p, EngineConfig::default());
    let mut s = client.create("a").await.unwrap();
    s.set_metadata("f", b"index.html").await.unwrap();
    let (body, states, _) = fetch(&mut s).await;
    assert_eq!(body, conformance::peers::INDEX_HTML.as_bytes());
    assert!(states.contains(&StreamState::QosAckRemote), "{states:?}");
}

/// Our HTTP/2 server (an h2 TLS server streamtype on ss-tokio's Runtime):
/// nghttp fetches several paths concurrently on one connection, h2load
/// drives 200 requests; every response is the handler's.
#[test]
fn nghttp_and_h2load_against_our_h2_server() {
    use conformance::peers::{tls_server_policy, OurServer};
    use ss_core::{Handler, SsRet, StreamCtx};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    require("nghttp");
    require("h2load");
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let json = tls_server_policy(&pki, "h2", r#"[{"mime": "content-type:"}, {"path": ""}]"#);
    struct Answer {
        body: Vec<u8>,
        served: Arc<AtomicUsize>,
    }
    impl Handler for Answer {
        fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _: u32) -> SsRet {
            if state == StreamState::ServerTxn {
                let path = ctx
                    .get_metadata("path")
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                    .to_vec();
                self.body =
                    format!("you asked for {}\n", String::from_utf8_lossy(&path)).into_bytes();
                let _ = ctx.server_ack(0);
                let _ = ctx.set_metadata("mime", b"text/plain");
                let _ = ctx.request_tx_len(self.body.len() as u64);
                self.served.fetch_add(1, Ordering::Relaxed);
            }
            SsRet::Ok
        }
        fn tx(
            &mut self,
            _: &mut StreamCtx<'_>,
            buf: &mut Vec<u8>,
            _: usize,
            f: &mut Flags,
        ) -> SsRet {
            buf.extend_from_slice(&self.body);
            *f = Flags::SOM | Flags::EOM;
            SsRet::Ok
        }
    }
    let served = Arc::new(AtomicUsize::new(0));
    let sv = served.clone();
    let server = OurServer::start(json, move || {
        Box::new(Answer {
            body: vec![],
            served: sv.clone(),
        })
    });
    let port = server.port();
    // nghttp: three paths on one connection, verbose frames to see ALPN.
    let out = Command::new("nghttp")
        .args(["-nv", "-t", "10"])
        .arg(format!("https://127.0.0.1:{port}/a"))
        .arg(format!("https://127.0.0.1:{port}/b"))
        .arg(format!("https://127.0.0.1:{port}/c"))
        .output()
        .expect("nghttp runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("The negotiated protocol: h2"), "{text}");
    assert_eq!(text.matches(":status: 200").count(), 3, "{text}");
    // And the bodies, without -n.
    let out = Command::new("nghttp")
        .args(["-t", "10"])
        .arg(format!("https://127.0.0.1:{port}/x"))
        .arg(format!("https://127.0.0.1:{port}/y"))
        .output()
        .expect("nghttp runs");
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(body.contains("you asked for /x\n"), "{body}");
    assert!(body.contains("you asked for /y\n"), "{body}");
    // h2load: 200 requests, 20 concurrent streams on each of 2 connections.
    let out = Command::new("h2load")
        .args(["-n", "200", "-c", "2", "-m", "20"])
        .arg(format!("https://127.0.0.1:{port}/load"))
        .output()
        .expect("h2load runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("200 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    assert!(text.contains("status codes: 200 2xx"), "{text}");
    assert!(served.load(Ordering::Relaxed) >= 205);
    drop(server);
}

/// Distinct nginx connections (the `$connection` serial) of the access-log
/// lines for HTTP/2 requests, and how many such lines there are.
fn h2_connections(log: &str) -> (Vec<String>, usize) {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" HTTP/2.0 ")).collect();
    let mut ids: Vec<String> = lines
        .iter()
        .filter_map(|l| l.split(' ').next().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    (ids, lines.len())
}

/// nginx's access log once it holds at least `lines` HTTP/2 requests (it
/// may log a request just after its response went out), or after 3 s.
fn h2_log(nginx: &Nginx, lines: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let log = nginx.access_log();
        if h2_connections(&log).1 >= lines || std::time::Instant::now() >= deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn nginx_h2() -> Nginx {
    tokio::task::spawn_blocking(|| {
        Nginx::start(NginxOpts {
            http2: true,
            ..NginxOpts::default()
        })
    })
    .await
    .unwrap()
}

fn assert_som_eom(name: &str, flags: &[Flags]) {
    assert!(!flags.is_empty(), "{name}: no payload");
    assert!(
        flags[0].contains(Flags::SOM),
        "{name}: first {:?}",
        flags[0]
    );
    assert!(
        flags.last().unwrap().contains(Flags::EOM),
        "{name}: last {:?}",
        flags.last()
    );
    let soms = flags.iter().filter(|f| f.contains(Flags::SOM)).count();
    let eoms = flags.iter().filter(|f| f.contains(Flags::EOM)).count();
    assert_eq!((soms, eoms), (1, 1), "{name}: {flags:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_gets_share_one_nginx_h2_connection() {
    let nginx = nginx_h2().await;
    let www = nginx.dir().join("www");
    for i in 0..20 {
        std::fs::write(www.join(format!("f{i}")), file_body(i)).unwrap();
    }
    let client = Client::start(
        policy(nginx.https_port(), &nginx.pki().ca_b64()),
        EngineConfig::default(),
    );
    // The first opens the connection, the other 19 ride it concurrently.
    let mut first = client.create("b").await.unwrap();
    first.set_metadata("f", b"index.html").await.unwrap();
    let (body, states, flags) = fetch(&mut first).await;
    assert_eq!(body, conformance::peers::INDEX_HTML.as_bytes());
    assert_som_eom("index.html", &flags);
    use StreamState::*;
    assert_eq!(
        states,
        [Creating, Connecting, Connected, QosAckRemote, Disconnected]
    );
    let mut tasks = vec![];
    for i in 0..20 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.create(if i % 2 == 0 { "a" } else { "b" }).await.unwrap();
            s.set_metadata("f", format!("f{i}").as_bytes())
                .await
                .unwrap();
            (i, fetch(&mut s).await)
        }));
    }
    for t in tasks {
        let (i, (body, states, flags)) = t.await.unwrap();
        assert!(
            body == file_body(i),
            "f{i}: {} bytes, want {}",
            body.len(),
            file_body(i).len()
        );
        assert_eq!(
            states,
            [Creating, Connecting, Connected, QosAckRemote, Disconnected],
            "f{i}"
        );
        if !body.is_empty() {
            assert_som_eom(&format!("f{i}"), &flags);
        }
    }
    let (ids, n) = h2_connections(&h2_log(&nginx, 21));
    assert_eq!(n, 21, "{}", nginx.logs());
    assert_eq!(ids.len(), 1, "{ids:?}\n{}", nginx.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_8mib_big_bin_arrives_exactly_over_h2() {
    let nginx = nginx_h2().await;
    let client = Client::start(
        policy(nginx.https_port(), &nginx.pki().ca_b64()),
        EngineConfig::default(),
    );
    let mut s = client.create("b").await.unwrap();
    s.set_metadata("f", b"big.bin").await.unwrap();
    let (body, states, flags) = fetch(&mut s).await;
    assert_eq!(body.len(), conformance::peers::BIG_BIN_LEN);
    assert!(body == conformance::peers::big_bin_content(body.len()));
    assert_som_eom("big.bin", &flags);
    assert!(states.contains(&StreamState::QosAckRemote), "{states:?}");
    let (ids, n) = h2_connections(&h2_log(&nginx, 1));
    assert_eq!((ids.len(), n), (1, 1), "{}", nginx.logs());
}

fn post_body(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(13).wrapping_add(seed) % 256) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_bodies_beyond_the_window_are_echoed_by_nginx_over_h2() {
    let nginx = nginx_h2().await;
    let client = Client::start(
        policy(nginx.https_port(), &nginx.pki().ca_b64()),
        EngineConfig::default(),
    );
    // One alone, then three at once on the same connection.
    let mut s = client.create("p").await.unwrap();
    s.set_metadata("f", b"echo").await.unwrap();
    let body = post_body(200_000, 1);
    let (back, states, flags) = post(&mut s, body.clone()).await;
    assert!(back == body, "echo differs ({} bytes back)", back.len());
    assert_som_eom("echo", &flags);
    use StreamState::*;
    assert_eq!(
        states,
        [
            Creating,
            Poll,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
    let mut tasks = vec![];
    for (i, len) in [(2u32, 70_000usize), (3, 1_000_000), (4, 65_536)] {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.create("p").await.unwrap();
            s.set_metadata("f", b"echo").await.unwrap();
            let body = post_body(len, i);
            let r = post(&mut s, body.clone()).await;
            (body, r)
        }));
    }
    for t in tasks {
        let (body, (back, states, flags)) = t.await.unwrap();
        assert!(
            back == body,
            "echo of {} differs ({} bytes back)",
            body.len(),
            back.len()
        );
        assert_som_eom("echo", &flags);
        assert!(states.contains(&QosAckRemote), "{states:?}");
    }
    let (ids, n) = h2_connections(&h2_log(&nginx, 4));
    assert_eq!((ids.len(), n), (1, 4), "{}", nginx.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reset_by_nginx_fails_alone_while_its_neighbours_complete() {
    let nginx = nginx_h2().await;
    let www = nginx.dir().join("www");
    for i in 0..7 {
        std::fs::write(www.join(format!("f{i}")), file_body(i + 3)).unwrap();
    }
    let client = Client::start(
        policy(nginx.https_port(), &nginx.pki().ca_b64()),
        EngineConfig::default(),
    );
    let mut first = client.create("b").await.unwrap();
    first.set_metadata("f", b"index.html").await.unwrap();
    let (body, _, _) = fetch(&mut first).await;
    assert_eq!(body, conformance::peers::INDEX_HTML.as_bytes());
    let mut tasks = vec![];
    for i in 0..7 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.create("b").await.unwrap();
            // The middle one asks for `/rst`, which nginx resets (444).
            let f = if i == 3 {
                "rst".into()
            } else {
                format!("f{i}")
            };
            s.set_metadata("f", f.as_bytes()).await.unwrap();
            (i, fetch(&mut s).await)
        }));
    }
    use StreamState::*;
    for t in tasks {
        let (i, (body, states, _)) = t.await.unwrap();
        if i == 3 {
            assert!(body.is_empty(), "rst: {} bytes", body.len());
            // Each attempt fails unreached; the policy allows 2 retries.
            assert_eq!(
                states,
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
                ],
                "rst"
            );
        } else {
            assert!(body == file_body(i + 3), "f{i}: {} bytes", body.len());
            assert_eq!(
                states,
                [Creating, Connecting, Connected, QosAckRemote, Disconnected],
                "f{i}"
            );
        }
    }
    // The resets did not cost the connection.
    let log = h2_log(&nginx, 7);
    let (ids, n) = h2_connections(&log);
    assert_eq!(ids.len(), 1, "{log}");
    assert!(n >= 7, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_bodies_beyond_the_window_reach_nghttpd() {
    let nghttpd = require("nghttpd");
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let (dir, path) = PeerProcess::prepare("nghttpd");
    let www = path.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("f5"), file_body(5)).unwrap();
    let [_, cert, key, ..] = pki.write_files(&path);
    let port = free_port();
    let mut cmd = Command::new(nghttpd);
    cmd.arg("--address=127.0.0.1")
        .arg(format!("--htdocs={}", www.display()))
        .arg(port.to_string())
        .arg(&key)
        .arg(&cert);
    let mut peer = PeerProcess::spawn("nghttpd", dir, cmd);
    peer.wait_port(port).unwrap_or_else(|e| panic!("{e}"));
    let client = Client::start(policy(port, &pki.ca_b64()), EngineConfig::default());
    let mut tasks = vec![];
    for (i, len) in [(1u32, 300_000usize), (2, 100_000), (3, 1_500_000)] {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.create("p").await.unwrap();
            s.set_metadata("f", b"f5").await.unwrap();
            post(&mut s, post_body(len, i)).await
        }));
    }
    for t in tasks {
        // nghttpd reads the whole body, then answers with the file.
        let (back, states, flags) = t.await.unwrap();
        assert!(back == file_body(5), "{} bytes back", back.len());
        assert_som_eom("f5", &flags);
        assert!(
            states.contains(&StreamState::QosAckRemote),
            "{states:?}\n{}",
            peer.logs()
        );
    }
}

/// A two-part rideshare body over h2 (the callback model on ss-tokio's
/// loop): nginx echoes it, and the echo parses (with our multipart decoder)
/// as exactly the parts each streamtype's policy describes.
#[test]
fn a_rideshare_multipart_body_is_echoed_by_nginx_over_h2() {
    use conformance::ride::{RideSeen, RideUpload};
    use ss_core::proto::h1::multipart;
    use ss_core::{Engine, Host};
    use std::cell::RefCell;
    use std::rc::Rc;
    let nginx = Nginx::start(NginxOpts {
        http2: true,
        ..NginxOpts::default()
    });
    let p = policy(nginx.https_port(), &nginx.pki().ca_b64());
    let meta = br#"{"device":"d1"}"#.to_vec();
    // Beyond the 64 KiB initial window, in 16 KiB writes.
    let file = post_body(150_000, 9);
    let seen = Rc::new(RefCell::new(RideSeen::default()));
    let app = RideUpload::new(
        vec![
            ("ride".into(), meta.clone()),
            ("ride_file".into(), file.clone()),
        ],
        16 * 1024,
        seen.clone(),
    );
    let mut rt = ss_tokio::Runtime::new(Host::new(Engine::new(p, EngineConfig::default())));
    let now = rt.now();
    let id = rt.host().create(now, "ride", Box::new(app)).unwrap();
    let now = rt.now();
    rt.host().engine.request_tx(now, id).unwrap();
    let s = seen.clone();
    assert!(
        rt.run_until(Duration::from_secs(10), &mut |_| s.borrow().done()),
        "no end: {:?}\n{}",
        seen.borrow().states,
        nginx.logs()
    );
    let got = std::mem::take(&mut *seen.borrow_mut());
    use StreamState::*;
    assert_eq!(
        got.states,
        [
            Creating,
            Poll,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
    assert_eq!(got.parts(), ["ride", "ride_file"]);
    let flags: Vec<Flags> = got.rx.iter().map(|(_, f)| *f).collect();
    assert_som_eom("echo", &flags);
    let echo = got.body();
    // The boundary is the engine's: read it off the first delimiter line.
    let first = echo.split(|&b| b == b'\n').next().unwrap();
    let boundary = std::str::from_utf8(first)
        .unwrap()
        .trim_end_matches('\r')
        .strip_prefix("--")
        .expect("starts with a delimiter")
        .to_string();
    let mut dec = multipart::Decoder::new(&boundary).unwrap();
    let mut evs = vec![];
    dec.feed(&echo, &mut evs).unwrap();
    dec.finish().expect("closing boundary");
    type Part = (Vec<(String, String)>, Vec<u8>);
    let mut parts: Vec<Part> = vec![];
    for ev in evs {
        match ev {
            multipart::Event::Part { headers } => parts.push((headers, vec![])),
            multipart::Event::Data { data, .. } => parts.last_mut().unwrap().1.extend(data),
            multipart::Event::End => {}
        }
    }
    let h = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(parts.len(), 2);
    assert_eq!(
        parts[0].0,
        [
            h("Content-Disposition", "form-data; name=\"meta\""),
            h("Content-Type", "application/json")
        ]
    );
    assert_eq!(parts[0].1, meta);
    assert_eq!(
        parts[1].0,
        [
            h(
                "Content-Disposition",
                "form-data; name=\"file\"; filename=\"b.bin\""
            ),
            h("Content-Type", "application/octet-stream")
        ]
    );
    assert!(parts[1].1 == file, "file part: {} bytes", parts[1].1.len());
    let log = h2_log(&nginx, 1);
    assert!(
        log.lines()
            .any(|l| l.contains("HTTP/2.0 \"POST /echo HTTP/2.0\" 200")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_302_from_nginx_is_followed_over_h2_only_when_allowed() {
    let nginx = nginx_h2().await;
    let client = Client::start(
        policy(nginx.https_port(), &nginx.pki().ca_b64()),
        EngineConfig::default(),
    );
    use StreamState::*;
    let mut s = client.create("follow").await.unwrap();
    s.set_metadata("f", b"redirect").await.unwrap();
    let (body, states, flags) = fetch(&mut s).await;
    assert_eq!(
        body,
        conformance::peers::INDEX_HTML.as_bytes(),
        "{states:?}"
    );
    assert_som_eom("index.html", &flags);
    assert_eq!(
        states,
        [
            Creating,
            Connecting,
            Connecting,
            Connected,
            QosAckRemote,
            Disconnected
        ]
    );
    // nginx may log a request just after the response went out.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let logged = |log: &str, what: &str| {
        log.lines()
            .any(|l| l.contains(" HTTP/2.0 ") && l.contains(what))
    };
    let mut log = nginx.access_log();
    while !(logged(&log, "\"GET /redirect HTTP/2.0\" 302")
        && logged(&log, "\"GET /index.html HTTP/2.0\" 200"))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        log = nginx.access_log();
    }
    assert!(logged(&log, "\"GET /redirect HTTP/2.0\" 302"), "{log}");
    assert!(logged(&log, "\"GET /index.html HTTP/2.0\" 200"), "{log}");

    // Without allow_redirects the attempt fails, and so does each retry.
    let mut s = client.create("b").await.unwrap();
    s.set_metadata("f", b"redirect").await.unwrap();
    let (body, states, _) = fetch(&mut s).await;
    assert!(body.is_empty(), "{} bytes", body.len());
    assert_eq!(
        states,
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
}

/// nginx closes an HTTP/2 connection after `keepalive_requests` requests
/// with GOAWAY: streams it did not take fail on that connection and retry on
/// a new one, per the retry policy; every body still arrives exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_an_nginx_goaway_retry_on_a_new_connection() {
    let nginx = tokio::task::spawn_blocking(|| {
        Nginx::start(NginxOpts {
            http2: true,
            keepalive_requests: Some(4),
            ..NginxOpts::default()
        })
    })
    .await
    .unwrap();
    let www = nginx.dir().join("www");
    for i in 0..9 {
        std::fs::write(www.join(format!("g{i}")), file_body(i)).unwrap();
    }
    let client = Client::start(
        policy(nginx.https_port(), &nginx.pki().ca_b64()),
        EngineConfig::default(),
    );
    let mut tasks = vec![];
    for i in 0..9 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.create("b").await.unwrap();
            s.set_metadata("f", format!("g{i}").as_bytes())
                .await
                .unwrap();
            (i, fetch(&mut s).await)
        }));
    }
    // At 4 per connection, 9 streams need three; each is refused at most
    // twice, within the policy's two concealed retries.
    let mut retried = 0;
    for t in tasks {
        let (i, (body, states, _)) = t.await.unwrap();
        assert!(
            body == file_body(i),
            "g{i}: {} bytes; {states:?}",
            body.len()
        );
        assert!(
            states.contains(&StreamState::QosAckRemote),
            "g{i}: {states:?}"
        );
        retried += usize::from(states.contains(&StreamState::Unreachable));
    }
    let (ids, n) = h2_connections(&h2_log(&nginx, 9));
    assert_eq!(n, 9, "each file served once:\n{}", nginx.logs());
    assert!(ids.len() >= 3, "9 requests at 4 per connection: {ids:?}");
    assert!(retried > 0, "no stream was refused by a GOAWAY");
}
