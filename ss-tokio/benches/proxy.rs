//! Raw echo through the proxy daemon versus direct, in the same run.
//!
//! `cargo bench -p ss-tokio --bench proxy`
//!
//! An echo server (a `Runtime` + `Host` with a raw server streamtype) and an
//! in-process proxy daemon (a `Runtime` driving a `ProxyServer`) each run on
//! their own thread. Two `ss_tokio::Client`s talk to the echo server: one
//! direct (`EngineConfig::default()`), one whose streams go through the
//! daemon over a Unix socket (`EngineConfig { proxy: Some(..) }`).
//!
//! Loads: 32 MiB echoed in 64 KiB messages with 4 in flight (MB/s), and
//! 5,000 sequential round trips of 64-byte messages (messages/s). Medians of
//! 3 interleaved runs; byte counts are checked, no timing is asserted.

use ss_core::engine::SockAddr;
use ss_core::policy::{Policy, Protocol, StreamType};
use ss_core::proxy::server::{ProxyConfig, ProxyServer};
use ss_core::{Engine, EngineConfig, Flags, Handler, Host, SsRet, StreamCtx, StreamState};
use ss_tokio::Runtime;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BULK_TOTAL: usize = 32 << 20;
const BULK_MSG: usize = 64 << 10;
const BULK_WINDOW: usize = 4;
const SMALL_COUNT: usize = 5_000;
const SMALL_MSG: usize = 64;
const RUNS: usize = 3;

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
        if self.0.is_empty() {
            return SsRet::TxDontSend;
        }
        let n = budget.min(self.0.len());
        buf.extend(self.0.drain(..n));
        if !self.0.is_empty() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

struct Quiet;
impl Handler for Quiet {}

/// A raw echo server on its own thread; its port.
fn echo_server(stop: Arc<AtomicBool>) -> (u16, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let policy = Policy {
            streamtypes: vec![StreamType {
                name: "server".into(),
                endpoint: Some("127.0.0.1".into()),
                server: true,
                protocol: Protocol::Raw,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut rt = Runtime::new(Host::new(Engine::new(policy, EngineConfig::default())));
        let now = rt.now();
        let id = rt
            .host()
            .create_server(
                now,
                "server",
                Box::new(Quiet),
                Box::new(|_| Box::new(Echo::default())),
            )
            .unwrap();
        rt.run_until(Duration::from_secs(5), &mut |h| h.listening(id).is_some());
        let addr: std::net::SocketAddr = rt.host().listening(id).unwrap().unwrap().parse().unwrap();
        tx.send(addr.port()).unwrap();
        while !stop.load(Ordering::Relaxed) {
            rt.run_until(Duration::from_millis(20), &mut |_| false);
        }
    });
    (rx.recv().unwrap(), t)
}

/// The policy with the "echo" streamtype pointing at `port`.
fn echo_policy(port: u16, buflen: bool) -> Policy {
    let extra = if buflen {
        r#", "proxy_buflen": 4194304"#
    } else {
        ""
    };
    Policy::parse(&format!(
        r#"{{"retry": [{{"r": {{"backoff": [100, 200], "conceal": 65535, "jitterpc": 0}}}}],
           "s": [{{"echo": {{"endpoint": "127.0.0.1", "port": {port},
                            "protocol": "raw", "retry": "r", "nailed_up": true{extra}}}}}]}}"#
    ))
    .unwrap()
}

/// The proxy daemon on its own thread, listening on the Unix socket `sock`
/// once this returns.
fn daemon(port: u16, sock: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut policy = echo_policy(port, true);
        ProxyServer::install(&mut policy, &format!("+{sock}")).unwrap();
        let mut rt = Runtime::new(Host::new(Engine::new(policy, EngineConfig::default())));
        let now = rt.now();
        let mut px = ProxyServer::new(ProxyConfig::default());
        px.start(&mut rt.host().engine, now).unwrap();
        let mut told = false;
        while !stop.load(Ordering::Relaxed) {
            rt.run_app_until(
                Duration::from_millis(20),
                &mut |engine, now, ev| {
                    px.handle_event(engine, now, &ev);
                },
                &mut |_| false,
            );
            if !told && px.listening().is_some() {
                told = true;
                tx.send(()).unwrap();
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the daemon listens");
    t
}

async fn connected(s: &mut ss_tokio::SsStream) {
    loop {
        let st = tokio::time::timeout(Duration::from_secs(10), s.next_state())
            .await
            .expect("CONNECTED in time")
            .expect("stream alive");
        if st == StreamState::Connected {
            return;
        }
    }
}

async fn recv_some(s: &mut ss_tokio::SsStream) -> usize {
    let (d, _) = tokio::time::timeout(Duration::from_secs(10), s.recv())
        .await
        .expect("echo in time")
        .expect("stream alive");
    d.len()
}

/// 32 MiB in 64 KiB messages, a few in flight: MB/s.
async fn bulk(s: &mut ss_tokio::SsStream) -> f64 {
    let msg = vec![0x5au8; BULK_MSG];
    let t = Instant::now();
    let (mut sent, mut got) = (0usize, 0usize);
    while got < BULK_TOTAL {
        if sent < BULK_TOTAL && sent - got < BULK_WINDOW * BULK_MSG {
            s.send(msg.clone()).await.unwrap();
            sent += BULK_MSG;
        } else {
            got += recv_some(s).await;
        }
    }
    assert_eq!(got, BULK_TOTAL, "echoed byte count");
    BULK_TOTAL as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// Sequential round trips of 64-byte messages: messages/s.
async fn small(s: &mut ss_tokio::SsStream) -> f64 {
    let msg = vec![0xa5u8; SMALL_MSG];
    let t = Instant::now();
    for _ in 0..SMALL_COUNT {
        s.send(msg.clone()).await.unwrap();
        let mut got = 0;
        while got < SMALL_MSG {
            got += recv_some(s).await;
        }
        assert_eq!(got, SMALL_MSG, "echoed byte count");
    }
    SMALL_COUNT as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let stop = Arc::new(AtomicBool::new(false));
    let (port, server) = echo_server(stop.clone());
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock").to_string_lossy().into_owned();
    let daemon = daemon(port, sock.clone(), stop.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (direct, proxied) = rt.block_on(async {
        let direct = ss_tokio::Client::start(echo_policy(port, false), EngineConfig::default());
        let proxied = ss_tokio::Client::start(
            echo_policy(port, false),
            EngineConfig {
                proxy: Some(SockAddr::Unix(sock.clone())),
                ..Default::default()
            },
        );
        let mut d = direct.create("echo").await.unwrap();
        let mut p = proxied.create("echo").await.unwrap();
        connected(&mut d).await;
        connected(&mut p).await;
        // Warm up both paths.
        small(&mut d).await;
        small(&mut p).await;
        let (mut db, mut pb, mut ds, mut ps) = (vec![], vec![], vec![], vec![]);
        for _ in 0..RUNS {
            db.push(bulk(&mut d).await);
            pb.push(bulk(&mut p).await);
            ds.push(small(&mut d).await);
            ps.push(small(&mut p).await);
        }
        ((median(db), median(ds)), (median(pb), median(ps)))
    });
    drop(rt);
    println!("raw echo, direct vs through the in-process proxy daemon (median of {RUNS})");
    println!(
        "{:<34} {:>14} {:>14} {:>7}",
        "load", "direct", "proxied", "ratio"
    );
    println!(
        "{:<34} {:>9.1} MB/s {:>9.1} MB/s {:>7.2}",
        "32 MiB in 64 KiB msgs, 4 in flight",
        direct.0,
        proxied.0,
        proxied.0 / direct.0
    );
    println!(
        "{:<34} {:>8.0} msg/s {:>8.0} msg/s {:>7.2}",
        "5,000 x 64 B round trips",
        direct.1,
        proxied.1,
        proxied.1 / direct.1
    );
    stop.store(true, Ordering::Relaxed);
    daemon.join().unwrap();
    server.join().unwrap();
}
