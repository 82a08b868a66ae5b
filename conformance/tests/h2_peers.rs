//! HTTP/2 streams through the engine (ss-tokio) against nghttpd over TLS:
//! many streams of two streamtypes share one connection (ALPN h2), bodies
//! larger than the initial window arrive exactly with SOM/EOM, and a plain
//! HTTP/1.1 server makes the same streamtype fall back to HTTP/1.1.

use conformance::peers::{free_port, require, Nginx, NginxOpts, PeerProcess, TestPki};
use ss_core::{EngineConfig, Flags, Policy, StreamState};
use ss_tokio::{Client, SsStream};
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
                "opportunistic": true, "metadata": [{{"f": ""}}]}}}}
      ]
    }}"#
    );
    Policy::parse(&json).unwrap()
}

/// One transaction: the body and the states until DISCONNECTED.
async fn fetch(s: &mut SsStream) -> (Vec<u8>, Vec<StreamState>, Vec<Flags>) {
    s.connect().await.unwrap();
    let (mut body, mut states, mut flags) = (vec![], vec![], vec![]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !matches!(
        states.last(),
        Some(StreamState::Disconnected | StreamState::AllRetriesFailed)
    ) {
        while let Ok(Some((d, f))) = tokio::time::timeout(Duration::ZERO, s.recv()).await {
            body.extend(d);
            flags.push(f);
        }
        if let Ok(st) = tokio::time::timeout(Duration::from_millis(5), s.next_state()).await {
            states.push(st.unwrap());
        }
        assert!(tokio::time::Instant::now() < deadline, "no end: {states:?}");
    }
    while let Ok(Some((d, f))) = tokio::time::timeout(Duration::from_millis(50), s.recv()).await {
        body.extend(d);
        flags.push(f);
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
