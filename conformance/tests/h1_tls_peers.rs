//! HTTPS against real peers on loopback: our client (ss-tokio) against nginx
//! and the Python edge server over TLS with throwaway CAs, and `openssl
//! s_client` / `curl` against our TLS server.

use conformance::peers::{big_bin_content, require, CaCert, Nginx, NginxOpts, PyEdge, TestPki};
use ss_core::{Engine, EngineConfig, Flags, Policy, StreamState};
use ss_tokio::{Client, SsStream};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// A client policy for `https://127.0.0.1:port{url}` trusting `ca` (base64 DER).
fn policy(port: u16, url: &str, ca_b64: &str, extra: &str) -> Policy {
    let json = format!(
        r#"{{
      "retry": [{{"once": {{"backoff": [50], "conceal": 1, "jitterpc": 0}}}}],
      "certs": [{{"test_ca": "{ca_b64}"}}],
      "trust_stores": [{{"name": "ts", "stack": ["test_ca"]}}],
      "s": [{{"get": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h1",
                      "http_method": "GET", "http_url": "{url}", "tls": true,
                      "tls_trust_store": "ts", "retry": "once",
                      "opportunistic": true {extra} }}}}]
    }}"#
    );
    Policy::parse(&json).unwrap()
}

/// Run one transaction; the body and the states up to the end of it.
/// Payload and states are read together: the payload channel is bounded,
/// so a large body must be drained while waiting for the final state.
async fn fetch(s: &mut SsStream) -> (Vec<u8>, Vec<StreamState>) {
    s.connect().await.unwrap();
    let mut states = vec![];
    let mut body = vec![];
    let mut flags = vec![];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let done = matches!(
            states.last(),
            Some(StreamState::Disconnected | StreamState::AllRetriesFailed)
        ) && states.contains(&StreamState::Connecting);
        if done {
            break;
        }
        // Both calls borrow the stream: alternate, draining payload first.
        while let Ok(Some((d, f))) = tokio::time::timeout(Duration::ZERO, s.recv()).await {
            body.extend(d);
            flags.push(f);
        }
        if let Ok(st) = tokio::time::timeout(Duration::from_millis(5), s.next_state()).await {
            states.push(st.expect("stream alive"));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no end in time: {states:?}"
        );
    }
    // Payload queued before the final state.
    while let Ok(Some((d, f))) = tokio::time::timeout(Duration::from_millis(100), s.recv()).await {
        body.extend(d);
        flags.push(f);
    }
    if let Some(first) = flags.first() {
        assert!(first.contains(Flags::SOM));
        assert!(flags.last().unwrap().contains(Flags::EOM));
    }
    (body, states)
}

use StreamState::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_over_tls_with_the_policy_trust_store() {
    let nginx = tokio::task::spawn_blocking(|| Nginx::start(NginxOpts::default()))
        .await
        .unwrap();
    let p = policy(nginx.https_port(), "/big.bin", &nginx.pki().ca_b64(), "");
    let client = Client::start(p, EngineConfig::default());
    let mut s = client.create("get").await.unwrap();
    let (body, states) = fetch(&mut s).await;
    assert_eq!(
        states,
        [Creating, Connecting, Connected, QosAckRemote, Disconnected]
    );
    assert_eq!(body.len(), conformance::peers::BIG_BIN_LEN);
    assert!(
        body == big_bin_content(body.len()),
        "big.bin content differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_store_without_the_issuing_ca_fails() {
    let nginx = tokio::task::spawn_blocking(|| Nginx::start(NginxOpts::default()))
        .await
        .unwrap();
    let other: CaCert = TestPki::other_ca();
    let p = policy(nginx.https_port(), "/index.html", &other.b64(), "");
    let client = Client::start(p, EngineConfig::default());
    let mut s = client.create("get").await.unwrap();
    let (body, states) = fetch(&mut s).await;
    assert!(body.is_empty(), "no payload through an unverified peer");
    assert_eq!(
        states,
        [
            Creating,
            Connecting,
            Unreachable,
            Poll,
            Connecting,
            Unreachable,
            AllRetriesFailed
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_roots_do_not_trust_a_private_ca() {
    let nginx = tokio::task::spawn_blocking(|| Nginx::start(NginxOpts::default()))
        .await
        .unwrap();
    let json = format!(
        r#"{{"s": [{{"get": {{"endpoint": "127.0.0.1", "port": {}, "protocol": "h1",
            "http_url": "/index.html", "tls": true, "opportunistic": true}}}}]}}"#,
        nginx.https_port()
    );
    let client = Client::start(Policy::parse(&json).unwrap(), EngineConfig::default());
    let mut s = client.create("get").await.unwrap();
    let (body, states) = fetch(&mut s).await;
    assert!(body.is_empty());
    assert_eq!(
        states,
        [Creating, Connecting, Unreachable, AllRetriesFailed]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_server_certificate_fails() {
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let expired = pki.issue_expired_server(&["127.0.0.1"]);
    let ca = pki.ca_b64();
    let nginx = tokio::task::spawn_blocking(move || {
        Nginx::start(NginxOpts {
            server_cert: Some(expired),
            ..Default::default()
        })
    })
    .await
    .unwrap();
    // nginx makes its own PKI; the expired leaf comes from ours, so trust ours.
    let p = policy(nginx.https_port(), "/index.html", &ca, "");
    let client = Client::start(p, EngineConfig::default());
    let mut s = client.create("get").await.unwrap();
    let (body, states) = fetch(&mut s).await;
    assert!(body.is_empty());
    assert!(states.contains(&Unreachable), "{states:?}");
    assert!(!states.contains(&Connected), "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_client_certificate_from_the_application() {
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let edge = PyEdge::start_mtls(&pki);
    let p = policy(
        edge.port(),
        "/peer-cert",
        &pki.ca_b64(),
        r#", "client_cert": 0"#,
    );
    // Without the client certificate blob: a configuration error, no payload.
    let client = Client::start(p.clone(), EngineConfig::default());
    let mut s = client.create("get").await.unwrap();
    let (body, states) = fetch(&mut s).await;
    assert!(body.is_empty());
    assert!(states.contains(&Unreachable), "{states:?}");
    // With it: the server sees our certificate.
    let mut engine = Engine::new(p, EngineConfig::default());
    engine
        .set_client_cert(0, vec![pki.client.der.clone()], pki.client.key_der.clone())
        .unwrap();
    let client = Client::start_with(engine);
    let mut s = client.create("get").await.unwrap();
    let (body, states) = fetch(&mut s).await;
    assert_eq!(
        states,
        [Creating, Connecting, Connected, QosAckRemote, Disconnected]
    );
    let cn = String::from_utf8(body).unwrap();
    assert!(!cn.trim().is_empty(), "server saw no client certificate");
    drop(edge);
}

#[test]
fn openssl_s_client_against_our_tls_server() {
    use ss_core::{Handler, SsRet, StreamCtx};
    require("openssl");
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let json = conformance::peers::tls_server_policy(&pki, "h1", r#"[{"mime": "content-type:"}]"#);
    struct Hello;
    impl Handler for Hello {
        fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _: u32) -> SsRet {
            if state == ServerTxn {
                let _ = ctx.server_ack(0);
                let _ = ctx.set_metadata("mime", b"text/plain");
                let _ = ctx.request_tx_len(12);
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
            buf.extend_from_slice(b"hello, tls!\n");
            *f = Flags::SOM | Flags::EOM;
            SsRet::Ok
        }
    }
    let server = conformance::peers::OurServer::start(json, || Box::new(Hello));
    let port = server.port();
    let dir = tempfile::tempdir().unwrap();
    let [ca, ..] = pki.write_files(dir.path());
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .arg(format!("https://127.0.0.1:{port}/hi"))
        .arg("-D")
        .arg("-")
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{text}"
    );
    assert!(text.ends_with("hello, tls!\n"), "{text}");
    // openssl verifies our chain against the CA and reports ALPN http/1.1.
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-alpn", "http/1.1", "-verify_return_error", "-CAfile"])
        .arg(&ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
    drop(server);
}
