//! HTTP/1.1 throughput: ours beside a peer, measured in the same run.
//!
//! `cargo bench -p conformance --bench h1` (release profile; a few seconds once
//! built). Arguments select scenarios by name: `-- mem`, `-- "tcp small"`.
//!
//! Every scenario runs ours and the peer alternately, several times, and
//! reports the median of each plus the ratio ours / peer on a throughput
//! (higher is better for both; a ratio of 0.5 means we do half the peer's
//! work per second). Nothing here asserts on timing: a slow machine prints
//! slow figures. Byte and request counts are checked, so a figure is never
//! the speed of doing nothing.
//!
//! 1. `mem 64MiB`: a 64 MiB response, pre-serialised and cut into 16 KiB
//!    chunks, fed to an ss-core client engine; versus bare `httparse` parsing
//!    the same head and copying the body out of the same chunks (the least
//!    work any client has to do).
//! 2. `mem small GET`: 10,000 small GETs on one keep-alive connection between
//!    an ss-core client engine and an ss-core server engine; versus the same
//!    request and response bytes going through `httparse` on both sides
//!    (request parse, response serialise, response parse).
//! 3. `tcp 64MiB` and `tcp small GET`: an `ss_tokio::Client` and a hyper 1.x
//!    client, each on a current-thread runtime, against the same hyper server
//!    on its own thread (loopback TCP): one 64 MiB download, and 2,000
//!    sequential small GETs on one keep-alive connection.
//!
//! Under the in-memory lines: allocations per 16 KiB chunk and per GET,
//! counted by a global allocator in untimed passes. Figures and caveats:
//! docs/benchmarks.md.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ss_core::{Action, ConnId, Engine, EngineConfig, Event, Flags, Policy, StreamId, StreamState};
use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::hint::black_box;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Size of the large body.
const BIG: usize = 64 * 1024 * 1024;
/// Size of the chunks the in-memory response is fed in.
const CHUNK: usize = 16 * 1024;
/// The small response body.
const SMALL: &[u8] = b"hello, world";
/// Small GETs per in-memory run.
const MEM_GETS: usize = 10_000;
/// Small GETs per loopback run.
const TCP_GETS: usize = 2_000;

// ----- allocation counting ---------------------------------------------------

/// The system allocator, counting allocations while `COUNTING` is on. Only
/// the untimed counting passes turn it on; otherwise it costs one relaxed
/// load per allocation.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How many allocations (and reallocations) `f` makes.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    f();
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCS.load(Ordering::Relaxed)
}

/// The policy of both engines: two client streamtypes on `port` and a server.
fn policy(port: u16) -> Policy {
    Policy::parse(&format!(
        r#"{{
  "retry": [{{"r": {{"backoff": [100], "conceal": 1, "jitterpc": 0}}}}],
  "s": [
    {{"big": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h1",
              "http_url": "/big", "retry": "r"}}}},
    {{"small": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h1",
                "http_url": "/small", "retry": "r"}}}},
    {{"srv": {{"server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "h1"}}}}
  ]
}}"#
    ))
    .expect("bench policy")
}

// ----- measurement ---------------------------------------------------------

/// One scenario's result: per-run times of ours and the peer's.
struct Row {
    name: &'static str,
    peer: &'static str,
    unit: &'static str,
    /// Work per run, in `unit` (MB or requests).
    work: f64,
    ours: Vec<Duration>,
    theirs: Vec<Duration>,
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

impl Row {
    fn rate(&self, v: &[Duration]) -> f64 {
        self.work / median(v).as_secs_f64()
    }
    /// One table line: median rates, their ratio, and the spread of run times.
    fn print(&self) {
        let (o, p) = (self.rate(&self.ours), self.rate(&self.theirs));
        let spread = |v: &[Duration]| {
            format!(
                "{:.1?}..{:.1?}",
                v.iter().min().unwrap(),
                v.iter().max().unwrap()
            )
        };
        println!(
            "{:<14} {:<6} {:>10.0} {:>10.0}  {:<14} {:>5.2}  n={:<3} ours {} peer {}",
            self.name,
            self.unit,
            o,
            p,
            self.peer,
            o / p,
            self.ours.len(),
            spread(&self.ours),
            spread(&self.theirs),
        );
    }
}

/// Allocations per unit of work, printed under a scenario's line.
fn allocs_line(per: &str, ours: f64, peer: f64) {
    println!(
        "{:<14} allocations per {per}: ours {ours:.1}, peer {peer:.1}",
        ""
    );
}

/// Run `ours` and `peer` alternately `reps` times after one warm-up each;
/// each returns the time of its measured section.
fn compare(
    reps: usize,
    mut ours: impl FnMut() -> Duration,
    mut peer: impl FnMut() -> Duration,
) -> (Vec<Duration>, Vec<Duration>) {
    ours();
    peer();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        a.push(ours());
        b.push(peer());
    }
    (a, b)
}

// ----- in-memory: driving engines --------------------------------------------

/// Carry out a client engine's actions with no network: DNS answers
/// 127.0.0.1, connects succeed at once, transmitted bytes go to `wire`.
fn client_actions(e: &mut Engine, now: Instant, conn: &mut Option<ConnId>, wire: &mut Vec<u8>) {
    while let Some(a) = e.poll_action() {
        match a {
            Action::Resolve { conn, .. } => {
                e.handle_resolved(now, conn, &["127.0.0.1".parse().unwrap()])
            }
            Action::Connect { conn: c, .. } => {
                *conn = Some(c);
                e.handle_connected(now, c);
            }
            Action::Transmit { conn, data } => {
                wire.extend_from_slice(&data);
                e.handle_sent(now, conn, data.len());
            }
            _ => {}
        }
    }
}

/// A serialised `200` response with a body of `len` bytes and `Content-Length`.
fn response_bytes(body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

/// A body whose bytes are not all alike.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Scenario 1, ours: a client engine downloads `resp` fed in `CHUNK`s.
/// Returns the time from the first chunk to the last byte delivered.
fn mem_big_ours(resp: &[u8]) -> Duration {
    let now = Instant::now();
    let mut e = Engine::new(policy(80), EngineConfig::default());
    let s = e.create(now, "big").unwrap();
    e.client_connect(now, s).unwrap();
    let (mut conn, mut wire) = (None, Vec::new());
    client_actions(&mut e, now, &mut conn, &mut wire);
    while e.poll_event().is_some() {}
    let conn = conn.expect("connected");
    let (mut got, mut eom) = (0usize, false);
    let t = Instant::now();
    for chunk in resp.chunks(CHUNK) {
        e.handle_data(now, conn, chunk);
        client_actions(&mut e, now, &mut Some(conn), &mut wire);
        while let Some(ev) = e.poll_event() {
            if let Event::Rx { data, flags, .. } = ev {
                got += black_box(&data).len();
                eom |= flags.contains(Flags::EOM);
            }
        }
    }
    let el = t.elapsed();
    assert!(got == BIG && eom, "ours: got {got} bytes, eom {eom}");
    el
}

/// Scenario 1, peer: the least a client must do with the same chunks:
/// parse the head with httparse, then copy each piece of body out into the
/// application's (reused) buffer.
fn mem_big_peer(resp: &[u8]) -> Duration {
    let t = Instant::now();
    let mut head = Vec::new();
    let mut remaining: Option<usize> = None;
    let mut app = Vec::with_capacity(CHUNK);
    let mut got = 0usize;
    for chunk in resp.chunks(CHUNK) {
        let body = match remaining {
            Some(_) => chunk,
            None => {
                head.extend_from_slice(chunk);
                let mut hs = [httparse::EMPTY_HEADER; 32];
                let mut r = httparse::Response::new(&mut hs);
                let n = match r.parse(&head).expect("valid head") {
                    httparse::Status::Complete(n) => n,
                    httparse::Status::Partial => continue,
                };
                remaining = Some(content_length(r.headers));
                let body_start = chunk.len() - (head.len() - n);
                &chunk[body_start..]
            }
        };
        let rem = remaining.as_mut().unwrap();
        let body = &body[..body.len().min(*rem)];
        *rem -= body.len();
        app.clear();
        app.extend_from_slice(body);
        got += black_box(&app).len();
    }
    let el = t.elapsed();
    assert_eq!(got, BIG, "peer: body size");
    el
}

fn content_length(headers: &[httparse::Header<'_>]) -> usize {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .expect("content-length")
}

/// A client engine and a server engine joined in memory (one connection).
struct Pair {
    c: Engine,
    s: Engine,
    now: Instant,
    cconn: Option<ConnId>,
    sconn: Option<ConnId>,
    listener: Option<ss_core::ListenerId>,
    /// Copies of what each side transmitted, when `capture` is on.
    capture: bool,
    c_wire: Vec<u8>,
    s_wire: Vec<u8>,
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let mut p = Pair {
            c: Engine::new(policy(80), EngineConfig::default()),
            s: Engine::new(policy(80), EngineConfig::default()),
            now,
            cconn: None,
            sconn: None,
            listener: None,
            capture: false,
            c_wire: Vec::new(),
            s_wire: Vec::new(),
        };
        p.s.create(now, "srv").unwrap();
        p.pump(&mut |_| {});
        p
    }

    /// Carry out both engines' actions until both are quiet. The server
    /// application answers each request with `SMALL`; client events go to
    /// `on_client`.
    fn pump(&mut self, on_client: &mut impl FnMut(Event)) {
        let now = self.now;
        loop {
            let mut any = false;
            while let Some(a) = self.s.poll_action() {
                any = true;
                match a {
                    Action::Listen { listener, .. } => {
                        self.listener = Some(listener);
                        self.s.handle_listening(now, listener, "127.0.0.1:80");
                    }
                    Action::Transmit { conn, data } => {
                        self.s.handle_sent(now, conn, data.len());
                        if self.capture {
                            self.s_wire.extend_from_slice(&data);
                        }
                        if let Some(cc) = self.cconn {
                            self.c.handle_data(now, cc, &data);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(a) = self.c.poll_action() {
                any = true;
                match a {
                    Action::Resolve { conn, .. } => {
                        self.c
                            .handle_resolved(now, conn, &["127.0.0.1".parse().unwrap()]);
                    }
                    Action::Connect { conn, .. } => {
                        let sc = self.s.handle_accepted(now, self.listener.unwrap());
                        self.cconn = Some(conn);
                        self.sconn = sc;
                        self.c.handle_connected(now, conn);
                    }
                    Action::Transmit { conn, data } => {
                        self.c.handle_sent(now, conn, data.len());
                        if self.capture {
                            self.c_wire.extend_from_slice(&data);
                        }
                        if let Some(sc) = self.sconn {
                            self.s.handle_data(now, sc, &data);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(ev) = self.s.poll_event() {
                any = true;
                match ev {
                    Event::State {
                        stream,
                        state: StreamState::ServerTxn,
                        ..
                    } => {
                        self.s.server_ack(stream, 0).unwrap();
                        self.s
                            .request_tx_len(now, stream, SMALL.len() as u64)
                            .unwrap();
                    }
                    Event::Writable { stream, .. } => {
                        self.s
                            .write(now, stream, SMALL, Flags::SOM | Flags::EOM)
                            .unwrap();
                    }
                    _ => {}
                }
            }
            while let Some(ev) = self.c.poll_event() {
                any = true;
                on_client(ev);
            }
            if !any {
                break;
            }
        }
    }

    /// One GET on client stream `s`; returns the body size received.
    fn get(&mut self, s: StreamId) -> usize {
        let now = self.now;
        self.c.request_tx(now, s).unwrap();
        let (mut got, mut done) = (0, false);
        self.pump(&mut |ev| match ev {
            Event::Rx { data, .. } => got += black_box(&data).len(),
            Event::State {
                state: StreamState::Disconnected,
                ..
            } => done = true,
            _ => {}
        });
        assert!(done, "the transaction completed");
        got
    }
}

/// Scenario 2, ours: `MEM_GETS` GETs through the engine pair, one connection.
fn mem_small_ours() -> Duration {
    let mut p = Pair::new();
    let s = p.c.create(p.now, "small").unwrap();
    p.get(s); // connects; the measured GETs reuse the connection
    let t = Instant::now();
    let mut got = 0;
    for _ in 0..MEM_GETS {
        got += p.get(s);
    }
    let el = t.elapsed();
    assert_eq!(got, MEM_GETS * SMALL.len());
    assert_eq!(p.c.conn_count(), 1, "one keep-alive connection");
    el
}

/// Allocations per GET of ours (client and server engines together).
fn mem_small_ours_allocs() -> f64 {
    let mut p = Pair::new();
    let s = p.c.create(p.now, "small").unwrap();
    p.get(s);
    p.get(s); // warm: queues and buffers at their working size
    let n = 1_000;
    allocations(|| {
        for _ in 0..n {
            p.get(s);
        }
    }) as f64
        / n as f64
}

/// The request and response bytes our engines exchange for one small GET.
fn mem_small_wire() -> (Vec<u8>, Vec<u8>) {
    let mut p = Pair::new();
    let s = p.c.create(p.now, "small").unwrap();
    p.capture = true;
    p.get(s);
    (p.c_wire, p.s_wire)
}

/// Scenario 2, peer: the same exchange with httparse on both sides: the
/// server parses the request and serialises the response, the client parses
/// the response head and takes the body.
fn mem_small_peer(req: &[u8]) -> Duration {
    let t = Instant::now();
    let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
    let mut got = 0;
    for _ in 0..MEM_GETS {
        // Client: the request goes on the wire.
        c2s.clear();
        c2s.extend_from_slice(req);
        // Server: parse it, answer.
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Request::new(&mut hs);
        let n = match r.parse(&c2s).expect("valid request") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => unreachable!("whole request"),
        };
        assert!(n == c2s.len() && r.method == Some("GET") && r.path == Some("/small"));
        s2c.clear();
        s2c.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: ");
        write!(s2c, "{}", SMALL.len()).unwrap();
        s2c.extend_from_slice(b"\r\n\r\n");
        s2c.extend_from_slice(SMALL);
        // Client: parse the response, take the body.
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(&s2c).expect("valid response") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => unreachable!("whole response"),
        };
        assert_eq!(r.code, Some(200));
        let len = content_length(r.headers);
        got += black_box(&s2c[n..n + len]).len();
    }
    let el = t.elapsed();
    assert_eq!(got, MEM_GETS * SMALL.len());
    el
}

// ----- loopback TCP ---------------------------------------------------------

/// A hyper server on its own thread and current-thread runtime: `/big`
/// answers the 64 MiB body, anything else `SMALL`. Returns its port.
fn hyper_server(big: Bytes) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let _ = tcp.set_nodelay(true);
                let big = big.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let body = if req.uri().path() == "/big" {
                            big.clone()
                        } else {
                            Bytes::from_static(SMALL)
                        };
                        async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
    });
    port
}

/// The client side's runtime: one thread, like the server's.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Receive one whole response body on `s`; returns its size.
async fn ss_recv_body(s: &mut ss_tokio::SsStream) -> usize {
    let mut got = 0;
    loop {
        let (data, flags) = s.recv().await.expect("stream alive");
        got += black_box(&data).len();
        if flags.contains(Flags::EOM) {
            return got;
        }
    }
}

/// Scenario 3, ours: `n` GETs of `streamtype` with an `ss_tokio::Client`
/// (the first connects, the others reuse the connection). Timed from the
/// client's start to the last body byte.
fn tcp_ours(rt: &tokio::runtime::Runtime, port: u16, streamtype: &str, n: usize) -> Duration {
    rt.block_on(async {
        let t = Instant::now();
        let client = ss_tokio::Client::start(policy(port), EngineConfig::default());
        let mut s = client.create(streamtype).await.unwrap();
        let mut got = 0;
        for _ in 0..n {
            s.connect().await.unwrap();
            got += ss_recv_body(&mut s).await;
        }
        let el = t.elapsed();
        s.destroy().await.unwrap();
        assert!(got > 0 && got % n == 0, "ours: got {got} bytes");
        el
    })
}

/// Scenario 3, peer: the same with a hyper client connection.
fn tcp_peer(rt: &tokio::runtime::Runtime, port: u16, path: &str, n: usize) -> Duration {
    rt.block_on(async {
        let t = Instant::now();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        let mut got = 0;
        for _ in 0..n {
            send.ready().await.unwrap();
            let req = Request::get(path)
                .header("host", format!("127.0.0.1:{port}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let mut body = send.send_request(req).await.unwrap().into_body();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    got += black_box(&data).len();
                }
            }
        }
        let el = t.elapsed();
        drop(send);
        let _ = driver.await;
        assert!(got > 0 && got % n == 0, "peer: got {got} bytes");
        el
    })
}

/// The 1-minute load average (Linux), to tell a busy machine's figures apart.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument selects scenarios by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "HTTP/1.1: ours beside a peer, same run ({cores} cores, load {}). Rates are medians;",
        load_average()
    );
    println!("ratio = ours / peer throughput (1.00 = as fast as the peer, higher is better).\n");
    println!(
        "{:<14} {:<6} {:>10} {:>10}  {:<14} {:>5}  runs and their times",
        "scenario", "unit", "ours", "peer", "peer is", "ratio"
    );
    let mb = BIG as f64 / 1e6;
    // Made only when a scenario needs it (it takes a moment).
    let tcp = wanted("tcp 64MiB") || wanted("tcp small GET");
    let big = if wanted("mem 64MiB") || tcp {
        Bytes::from(pattern(BIG))
    } else {
        Bytes::new()
    };

    if wanted("mem 64MiB") {
        let resp = response_bytes(&big);
        let (ours, theirs) = compare(21, || mem_big_ours(&resp), || mem_big_peer(&resp));
        let chunks = resp.len().div_ceil(CHUNK) as f64;
        let a = allocations(|| {
            mem_big_ours(&resp);
        }) as f64;
        let b = allocations(|| {
            mem_big_peer(&resp);
        }) as f64;
        Row {
            name: "mem 64MiB",
            peer: "httparse+copy",
            unit: "MB/s",
            work: mb,
            ours,
            theirs,
        }
        .print();
        allocs_line("chunk", a / chunks, b / chunks);
    }
    if wanted("mem small GET") {
        let (req, resp) = mem_small_wire();
        // The peer answers with exactly the bytes our server sends.
        assert_eq!(resp, response_bytes(SMALL), "our server's response");
        let (ours, theirs) = compare(15, mem_small_ours, || mem_small_peer(&req));
        let b = allocations(|| {
            mem_small_peer(&req);
        }) as f64;
        Row {
            name: "mem small GET",
            peer: "httparse x2",
            unit: "req/s",
            work: MEM_GETS as f64,
            ours,
            theirs,
        }
        .print();
        allocs_line("request", mem_small_ours_allocs(), b / MEM_GETS as f64);
    }
    if tcp {
        let port = hyper_server(big.clone());
        let rt = client_runtime();
        if wanted("tcp 64MiB") {
            let (ours, theirs) = compare(
                15,
                || tcp_ours(&rt, port, "big", 1),
                || tcp_peer(&rt, port, "/big", 1),
            );
            Row {
                name: "tcp 64MiB",
                peer: "hyper client",
                unit: "MB/s",
                work: mb,
                ours,
                theirs,
            }
            .print();
        }
        if wanted("tcp small GET") {
            let (ours, theirs) = compare(
                9,
                || tcp_ours(&rt, port, "small", TCP_GETS),
                || tcp_peer(&rt, port, "/small", TCP_GETS),
            );
            Row {
                name: "tcp small GET",
                peer: "hyper client",
                unit: "req/s",
                work: TCP_GETS as f64,
                ours,
                theirs,
            }
            .print();
        }
    }
    println!("\nload average at the end: {}", load_average());
}
