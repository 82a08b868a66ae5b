//! WebSocket echo throughput on loopback: ours beside tokio-tungstenite, in
//! the same run.
//!
//! `cargo bench -p conformance --bench ws` (release; well under a minute once
//! built). Four pairs, each a client echoing binary messages off a server
//! over 127.0.0.1:
//!
//! - `ss↔ss`: an `ss_tokio::Client` (`"protocol": "ws"`, `ws_binary`) against
//!   our server (an h1 server streamtype with `ws_subprotocol`, a callback
//!   handler echoing every piece with its SOM/EOM, on `ss_tokio::Runtime` on
//!   its own thread);
//! - `ss↔tt`: the same client against a tokio-tungstenite echo server;
//! - `tt↔ss`: a tokio-tungstenite client against our server;
//! - `tt↔tt`: tokio-tungstenite on both ends (the baseline).
//!
//! Two loads: `small`, 64-byte messages sent in windows of 32 (send 32, then
//! read 32 echoes), reported in messages/s; `1MiB`, 1 MiB messages one at a
//! time (send, read the whole echo), reported in MB/s of payload echoed.
//! Every pair runs [`RUNS`] times, interleaved; the medians are printed with
//! the ratio to `tt↔tt` (higher is better). Message counts and echoed bytes
//! are checked; nothing asserts on timing. Figures: docs/benchmarks.md.

use futures_util::{SinkExt, StreamExt};
use ss_core::{Engine, EngineConfig, Flags, Handler, Host, Policy, SsRet, StreamCtx, StreamState};
use ss_tokio::{Client, Runtime, SsStream};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Small messages per run.
const SMALL_MSGS: usize = 20_000;
/// Size of a small message.
const SMALL: usize = 64;
/// Small messages in flight.
const WINDOW: usize = 32;
/// 1 MiB messages per run.
const BIG_MSGS: usize = 48;
/// Size of a large message.
const BIG: usize = 1 << 20;
/// Runs per pair and load.
const RUNS: usize = 3;
/// Bound on one run: a hang fails the bench instead of blocking it.
const RUN_LIMIT: Duration = Duration::from_secs(20);

// ----- our server ------------------------------------------------------------

const SERVER_POLICY: &str = r#"{"s": [
  {"srv": {"server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "h1",
           "ws_subprotocol": "bench", "ws_binary": true}}]}"#;

/// Echoes every piece with its SOM/EOM, in budget-sized pieces.
#[derive(Default)]
struct Echo {
    pending: VecDeque<(Vec<u8>, Flags)>,
}

impl Handler for Echo {
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
        if buf.is_empty() {
            *buf = data;
        } else {
            buf.extend_from_slice(&data);
        }
        if !self.pending.is_empty() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

struct Quiet;
impl Handler for Quiet {}

/// Our ws server on its own thread; stops on drop.
struct OurServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OurServer {
    fn start() -> OurServer {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
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
                    Box::new(|_| Box::<Echo>::default()),
                )
                .unwrap();
            rt.run_until(Duration::from_secs(10), &mut |h| h.listening(id).is_some());
            let addr = rt.host().listening(id).map(|r| r.map(str::to_string));
            let port = match addr {
                Some(Ok(a)) => a.parse::<std::net::SocketAddr>().unwrap().port(),
                other => panic!("our ws server is not listening: {other:?}"),
            };
            tx.send(port).unwrap();
            while !st.load(Ordering::Relaxed) {
                rt.run_until(Duration::from_millis(20), &mut |_| false);
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("our server port");
        OurServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        seed: 7,
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

// ----- the tokio-tungstenite server -----------------------------------------

fn tt_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// A tokio-tungstenite echo server on the current runtime; returns its port.
async fn tt_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tcp.set_nodelay(true).ok();
            tokio::spawn(async move {
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(tcp, Some(tt_config())).await
                else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    let echo = matches!(m, Message::Binary(_) | Message::Text(_));
                    if matches!(m, Message::Close(_)) || (echo && ws.send(m).await.is_err()) {
                        return;
                    }
                }
            });
        }
    });
    port
}

// ----- the clients ----------------------------------------------------------

/// A client that echoes `n` messages of `size` bytes, `window` in flight.
trait EchoClient {
    async fn run(&mut self, msg: &[u8], n: usize, window: usize) -> usize;
}

struct SsClient {
    _client: Client,
    s: SsStream,
}

impl SsClient {
    async fn connect(port: u16) -> SsClient {
        let json = format!(
            r#"{{"s": [{{"c": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "ws",
                 "http_url": "/bench", "ws_binary": true,
                 "opportunistic": true}}}}]}}"#
        );
        let client = Client::start(Policy::parse(&json).unwrap(), config());
        let mut s = client.create("c").await.unwrap();
        s.connect().await.unwrap();
        loop {
            match s.next_state().await {
                Some(StreamState::Connected) => break,
                Some(StreamState::Unreachable | StreamState::AllRetriesFailed) | None => {
                    panic!("ss client could not connect")
                }
                _ => {}
            }
        }
        SsClient { _client: client, s }
    }
}

impl EchoClient for SsClient {
    async fn run(&mut self, msg: &[u8], n: usize, window: usize) -> usize {
        let mut echoed = 0;
        let mut done = 0;
        while done < n {
            let w = window.min(n - done);
            for _ in 0..w {
                self.s.feed(msg.to_vec()).await.unwrap();
            }
            let mut got = 0;
            while got < w {
                let (d, f) = self.s.recv().await.expect("ss stream alive");
                echoed += d.len();
                if f.contains(Flags::EOM) {
                    got += 1;
                }
            }
            done += w;
        }
        echoed
    }
}

type TtWs = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Split, so it reads while it writes: our server echoes a message's pieces
/// as they arrive, so a client that only reads after writing a whole 1 MiB
/// message would deadlock with it once both socket buffers are full.
struct TtClient {
    tx: futures_util::stream::SplitSink<TtWs, Message>,
    rx: futures_util::stream::SplitStream<TtWs>,
}

impl TtClient {
    async fn connect(port: u16) -> TtClient {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.set_nodelay(true).ok();
        let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            format!("ws://127.0.0.1:{port}/bench"),
        )
        .unwrap();
        let (ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(tt_config()))
            .await
            .unwrap();
        let (tx, rx) = ws.split();
        TtClient { tx, rx }
    }
}

impl EchoClient for TtClient {
    async fn run(&mut self, msg: &[u8], n: usize, window: usize) -> usize {
        let mut echoed = 0;
        let mut done = 0;
        let payload = bytes::Bytes::copy_from_slice(msg);
        while done < n {
            let w = window.min(n - done);
            let (tx, rx) = (&mut self.tx, &mut self.rx);
            let send = async {
                for _ in 0..w {
                    tx.feed(Message::Binary(payload.clone())).await.unwrap();
                }
                tx.flush().await.unwrap();
            };
            let recv = async {
                let (mut got, mut n) = (0, 0);
                while got < w {
                    match rx.next().await.expect("tt stream alive").unwrap() {
                        Message::Binary(b) => {
                            n += b.len();
                            got += 1;
                        }
                        Message::Text(t) => {
                            n += t.len();
                            got += 1;
                        }
                        _ => {}
                    }
                }
                n
            };
            let ((), n) = tokio::join!(send, recv);
            echoed += n;
            done += w;
        }
        echoed
    }
}

// ----- measuring -------------------------------------------------------------

/// Time one run; checks every byte came back. `None` if it did not finish
/// within [`RUN_LIMIT`] (reported as stalled, and the pair is not run again).
async fn timed(c: &mut impl EchoClient, msg: &[u8], n: usize, window: usize) -> Option<Duration> {
    let t = Instant::now();
    let echoed = tokio::time::timeout(RUN_LIMIT, c.run(msg, n, window))
        .await
        .ok()?;
    let d = t.elapsed();
    assert_eq!(echoed, msg.len() * n, "echoed bytes");
    Some(d)
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

const PAIRS: [&str; 4] = ["ss↔ss", "ss↔tt", "tt↔ss", "tt↔tt"];

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("WebSocket echo on loopback, same run ({cores} cores); medians of {RUNS} runs;");
    println!("ratio = pair / tt↔tt throughput (higher is better).\n");
    let ours = OurServer::start();
    rt.block_on(async {
        let tt = tt_server().await;
        let small = vec![0x5au8; SMALL];
        let big: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        let mut c_ss_ss = SsClient::connect(ours.port).await;
        let mut c_ss_tt = SsClient::connect(tt).await;
        let mut c_tt_ss = TtClient::connect(ours.port).await;
        let mut c_tt_tt = TtClient::connect(tt).await;
        for (load, msg, n, window, unit) in [
            ("small", &small, SMALL_MSGS, WINDOW, "msg/s"),
            ("1MiB", &big, BIG_MSGS, 1, "MB/s"),
        ] {
            // Warm up every pair once (connection buffers, allocator).
            let warm = (n / 10).max(1);
            let mut ok = [true; 4];
            ok[0] &= timed(&mut c_ss_ss, msg, warm, window).await.is_some();
            ok[1] &= timed(&mut c_ss_tt, msg, warm, window).await.is_some();
            ok[2] &= timed(&mut c_tt_ss, msg, warm, window).await.is_some();
            ok[3] &= timed(&mut c_tt_tt, msg, warm, window).await.is_some();
            let mut times: [Vec<Duration>; 4] = Default::default();
            for _ in 0..RUNS {
                if ok[0] {
                    times[0].extend(timed(&mut c_ss_ss, msg, n, window).await);
                }
                if ok[1] {
                    times[1].extend(timed(&mut c_ss_tt, msg, n, window).await);
                }
                if ok[2] {
                    times[2].extend(timed(&mut c_tt_ss, msg, n, window).await);
                }
                if ok[3] {
                    times[3].extend(timed(&mut c_tt_tt, msg, n, window).await);
                }
            }
            let rate = |d: Duration| {
                let per_s = n as f64 / d.as_secs_f64();
                if unit == "MB/s" {
                    per_s * msg.len() as f64 / 1e6
                } else {
                    per_s
                }
            };
            let base = median(times[3].clone()).map_or(f64::NAN, rate);
            for (i, pair) in PAIRS.iter().enumerate() {
                if times[i].len() < RUNS {
                    println!("{load:<6} {pair:<6} stalled: a run did not finish in {RUN_LIMIT:?}");
                    continue;
                }
                let r = median(times[i].clone()).map_or(f64::NAN, rate);
                let all: Vec<String> = times[i]
                    .iter()
                    .map(|d| format!("{:.0}ms", d.as_secs_f64() * 1e3))
                    .collect();
                println!(
                    "{load:<6} {pair:<6} {r:>10.0} {unit:<6} ratio {:>5.2}   runs {}",
                    r / base,
                    all.join(" ")
                );
            }
            println!();
        }
    });
    drop(ours);
}
