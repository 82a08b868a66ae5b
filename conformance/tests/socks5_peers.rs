//! Client streams through a real SOCKS5 proxy (microsocks) in front of real
//! servers: HTTP/1.1 to nginx, HTTPS to nginx (TLS inside the tunnel, SNI and
//! verification against the real target), and a refused target.

use conformance::peers::{free_port, require, Nginx, NginxOpts, PeerProcess, INDEX_HTML};
use ss_core::{EngineConfig, Policy, StreamState};
use ss_tokio::{Client, SsStream};
use std::process::Command;
use std::time::Duration;

/// microsocks on a free port, killed on drop.
fn microsocks() -> (PeerProcess, u16) {
    let bin = require("microsocks");
    let (dir, _) = PeerProcess::prepare("microsocks");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    let mut p = PeerProcess::spawn("microsocks", dir, cmd);
    p.wait_port(port).unwrap_or_else(|e| panic!("{e}"));
    (p, port)
}

async fn fetch(s: &mut SsStream) -> (Vec<u8>, Vec<StreamState>) {
    s.connect().await.unwrap();
    let (mut body, mut states) = (vec![], vec![]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !matches!(
        states.last(),
        Some(StreamState::Disconnected | StreamState::AllRetriesFailed)
    ) {
        while let Ok(Some((d, _))) = tokio::time::timeout(Duration::ZERO, s.recv()).await {
            body.extend(d);
        }
        if let Ok(st) = tokio::time::timeout(Duration::from_millis(5), s.next_state()).await {
            states.push(st.unwrap());
        }
        assert!(tokio::time::Instant::now() < deadline, "no end: {states:?}");
    }
    while let Ok(Some((d, _))) = tokio::time::timeout(Duration::from_millis(50), s.recv()).await {
        body.extend(d);
    }
    (body, states)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_https_through_socks5() {
    let (_proxy, sport) = microsocks();
    let nginx = tokio::task::spawn_blocking(|| Nginx::start(NginxOpts::default()))
        .await
        .unwrap();
    let json = format!(
        r#"{{
      "via-socks5": "127.0.0.1:{sport}",
      "retry": [{{"r": {{"backoff": [50], "conceal": 1, "jitterpc": 0}}}}],
      "certs": [{{"ca": "{ca}"}}],
      "trust_stores": [{{"name": "ts", "stack": ["ca"]}}],
      "s": [
        {{"plain": {{"endpoint": "localhost", "port": {http}, "protocol": "h1",
                    "http_url": "/index.html", "retry": "r", "opportunistic": true}}}},
        {{"tls": {{"endpoint": "localhost", "port": {https}, "protocol": "h1", "tls": true,
                  "tls_trust_store": "ts", "http_url": "/index.html", "retry": "r",
                  "opportunistic": true}}}},
        {{"refused": {{"endpoint": "127.0.0.1", "port": {dead}, "protocol": "h1",
                      "http_url": "/", "retry": "r", "opportunistic": true}}}}
      ]
    }}"#,
        ca = nginx.pki().ca_b64(),
        http = nginx.http_port(),
        https = nginx.https_port(),
        dead = free_port(),
    );
    let client = Client::start(Policy::parse(&json).unwrap(), EngineConfig::default());
    use StreamState::*;
    for name in ["plain", "tls"] {
        let mut s = client.create(name).await.unwrap();
        let (body, states) = fetch(&mut s).await;
        assert_eq!(body, INDEX_HTML.as_bytes(), "{name}");
        assert_eq!(
            states,
            [Creating, Connecting, Connected, QosAckRemote, Disconnected],
            "{name}"
        );
    }
    // The proxy cannot reach the target: the attempt fails, then the policy gives up.
    let mut s = client.create("refused").await.unwrap();
    let (body, states) = fetch(&mut s).await;
    assert!(body.is_empty());
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

/// With the proxy down, nothing reaches the (reachable) target: proof the
/// streams above really went through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_no_connection() {
    let nginx = tokio::task::spawn_blocking(|| Nginx::start(NginxOpts::default()))
        .await
        .unwrap();
    let json = format!(
        r#"{{"via-socks5": "127.0.0.1:{dead}",
            "retry": [{{"r": {{"backoff": [50], "conceal": 1, "jitterpc": 0}}}}],
            "s": [{{"plain": {{"endpoint": "localhost", "port": {http}, "protocol": "h1",
                    "http_url": "/index.html", "retry": "r", "opportunistic": true}}}}]}}"#,
        dead = free_port(),
        http = nginx.http_port(),
    );
    let client = Client::start(Policy::parse(&json).unwrap(), EngineConfig::default());
    let mut s = client.create("plain").await.unwrap();
    let (body, states) = fetch(&mut s).await;
    assert!(body.is_empty());
    assert_eq!(
        states.last(),
        Some(&StreamState::AllRetriesFailed),
        "{states:?}"
    );
}
