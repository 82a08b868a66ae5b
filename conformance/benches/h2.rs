//! HTTP/2 over TLS on loopback against nghttpd: our client (ss-tokio) beside
//! the `h2` crate used directly on tokio (tokio-rustls, ALPN h2), same run.
//!
//! `cargo bench -p conformance --bench h2` (release; under a minute once
//! built; needs `nghttpd`). Two loads, each on one connection:
//!
//! - `small`: [`SMALL_GETS`] GETs of a 100-byte file, [`PARALLEL`] in
//!   flight (each of [`PARALLEL`] tasks does its share one after another),
//!   reported in requests/s;
//! - `64MiB`: one GET of a 64 MiB file, reported in MB/s.
//!
//! Every client runs [`RUNS`] times, interleaved; the medians are printed
//! with the ratio ours / `h2` crate (higher is better). Byte counts are
//! checked; nothing asserts on timing. Figures: docs/benchmarks.md.

use conformance::peers::{free_port, require, PeerProcess, TestPki};
use ss_core::{EngineConfig, Flags, Policy, StreamState};
use ss_tokio::{Client, SsStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Small GETs per run.
const SMALL_GETS: usize = 2000;
/// Small GETs in flight.
const PARALLEL: usize = 20;
/// Size of the small file.
const SMALL_LEN: usize = 100;
/// Size of the big file.
const BIG_LEN: usize = 64 << 20;
/// Runs per client and load.
const RUNS: usize = 3;
/// Bound on one run.
const RUN_LIMIT: Duration = Duration::from_secs(30);

fn policy(port: u16, ca_b64: &str) -> Policy {
    Policy::parse(&format!(
        r#"{{"retry": [{{"r": {{"backoff": [100], "conceal": 1, "jitterpc": 0}}}}],
            "certs": [{{"ca": "{ca_b64}"}}],
            "trust_stores": [{{"name": "ts", "stack": ["ca"]}}],
            "s": [{{"get": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h2",
                     "tls": true, "tls_trust_store": "ts", "http_url": "/${{f}}",
                     "retry": "r", "nghttp2_quirk_end_stream": true,
                     "metadata": [{{"f": ""}}]}}}}]}}"#
    ))
    .unwrap()
}

/// One GET through our client: the body length.
async fn ss_get(s: &mut SsStream) -> usize {
    s.connect().await.unwrap();
    let mut n = 0;
    loop {
        let (d, f) = s.recv().await.expect("payload");
        n += d.len();
        if f.contains(Flags::EOM) {
            break;
        }
    }
    loop {
        match s.next_state().await.expect("state") {
            StreamState::Disconnected => return n,
            StreamState::AllRetriesFailed => panic!("GET failed"),
            _ => {}
        }
    }
}

async fn ss_small(client: &Client) -> Duration {
    let t = Instant::now();
    let mut tasks = vec![];
    for _ in 0..PARALLEL {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.create("get").await.unwrap();
            s.set_metadata("f", b"small").await.unwrap();
            for _ in 0..SMALL_GETS / PARALLEL {
                assert_eq!(ss_get(&mut s).await, SMALL_LEN);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    t.elapsed()
}

async fn ss_big(client: &Client) -> Duration {
    let mut s = client.create("get").await.unwrap();
    s.set_metadata("f", b"big").await.unwrap();
    let t = Instant::now();
    assert_eq!(ss_get(&mut s).await, BIG_LEN);
    t.elapsed()
}

type Sender = h2::client::SendRequest<bytes::Bytes>;

/// The `h2` crate over tokio-rustls: one connection, driven by a task.
async fn h2_connect(port: u16, ca_der: &[u8]) -> Sender {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.to_vec().into()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

async fn h2_get(send: &mut Sender, path: &str) -> usize {
    let req = http::Request::get(format!("https://127.0.0.1{path}"))
        .body(())
        .unwrap();
    let mut ready = send.clone().ready().await.unwrap();
    let (resp, _) = ready.send_request(req, true).unwrap();
    let mut body = resp.await.unwrap().into_body();
    let mut n = 0;
    while let Some(d) = body.data().await {
        let d = d.unwrap();
        n += d.len();
        let _ = body.flow_control().release_capacity(d.len());
    }
    n
}

async fn h2_small(send: &Sender) -> Duration {
    let t = Instant::now();
    let mut tasks = vec![];
    for _ in 0..PARALLEL {
        let mut s = send.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..SMALL_GETS / PARALLEL {
                assert_eq!(h2_get(&mut s, "/small").await, SMALL_LEN);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    t.elapsed()
}

async fn h2_big(send: &Sender) -> Duration {
    let mut s = send.clone();
    let t = Instant::now();
    assert_eq!(h2_get(&mut s, "/big").await, BIG_LEN);
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let bin = require("nghttpd");
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let (dir, path) = PeerProcess::prepare("nghttpd");
    let www = path.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("small"), vec![b's'; SMALL_LEN]).unwrap();
    let big: Vec<u8> = (0..BIG_LEN).map(|i| (i % 251) as u8).collect();
    std::fs::write(www.join("big"), big).unwrap();
    let [_, cert, key, ..] = pki.write_files(&path);
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("--address=127.0.0.1")
        .arg(format!("--htdocs={}", www.display()))
        .arg(port.to_string())
        .arg(&key)
        .arg(&cert);
    let mut peer = PeerProcess::spawn("nghttpd", dir, cmd);
    peer.wait_port(port).unwrap_or_else(|e| panic!("{e}"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::start(policy(port, &pki.ca_b64()), EngineConfig::default());
        let send = h2_connect(port, &pki.ca_der).await;
        // Warm up: both connections open, one request each.
        let mut s = client.create("get").await.unwrap();
        s.set_metadata("f", b"small").await.unwrap();
        assert_eq!(ss_get(&mut s).await, SMALL_LEN);
        assert_eq!(h2_get(&mut send.clone(), "/small").await, SMALL_LEN);
        let (mut ss_s, mut h2_s, mut ss_b, mut h2_b) = (vec![], vec![], vec![], vec![]);
        for _ in 0..RUNS {
            ss_s.push(tokio::time::timeout(RUN_LIMIT, ss_small(&client)).await.expect("ss small in time"));
            h2_s.push(tokio::time::timeout(RUN_LIMIT, h2_small(&send)).await.expect("h2 small in time"));
        }
        for _ in 0..RUNS {
            ss_b.push(tokio::time::timeout(RUN_LIMIT, ss_big(&client)).await.expect("ss big in time"));
            h2_b.push(tokio::time::timeout(RUN_LIMIT, h2_big(&send)).await.expect("h2 big in time"));
        }
        let rps = |d: Duration| SMALL_GETS as f64 / d.as_secs_f64();
        let mbps = |d: Duration| BIG_LEN as f64 / 1e6 / d.as_secs_f64();
        let (a, b) = (rps(median(ss_s)), rps(median(h2_s)));
        println!(
            "small ({SMALL_GETS} GETs, {PARALLEL} in flight): ss-tokio {a:.0} req/s, h2 crate {b:.0} req/s, ratio {:.2}",
            a / b
        );
        let (a, b) = (mbps(median(ss_b)), mbps(median(h2_b)));
        println!(
            "64MiB GET: ss-tokio {a:.0} MB/s, h2 crate {b:.0} MB/s, ratio {:.2}",
            a / b
        );
    });
}
