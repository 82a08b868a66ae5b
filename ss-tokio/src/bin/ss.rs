//! `ss`: check a policy, watch a demo, or fetch from a streamtype.
//!
//! ```text
//! ss policy check FILE
//! ss demo
//! ss get STREAMTYPE --policy FILE [--timeout SECS] [--send TEXT] [--via-proxy ADDR]
//! ss proxy --policy FILE (--unix PATH | --abstract NAME | --listen ADDR:PORT) [--max-links N]
//!          [--max-links-per-client N]
//! ```

use ss_core::engine::SockAddr;
use ss_core::policy::{Policy, Protocol};
use ss_core::proxy::server::{ProxyConfig, ProxyLog, ProxyServer};
use ss_core::{
    Engine, EngineConfig, Flags, Handler, Host, SsRet, StreamCtx, StreamId, StreamState,
};
use ss_tokio::Runtime;
use std::cell::RefCell;
use std::io::Write;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage:
  ss policy check FILE
      Load and validate a JSON policy; print a summary, or FILE:LINE:COL: error.
  ss demo
      Run an uppercase echo server and a client on 127.0.0.1 and show what the
      client sees: its states (with the reference's LWSSSCS_* names and numbers)
      and its payload. Needs no network access.
  ss get STREAMTYPE --policy FILE [--timeout SECS] [--send TEXT]
         [--via-proxy ADDR]
      Connect one client stream of STREAMTYPE, optionally send TEXT, and copy
      what it receives to stdout until the peer closes (default timeout 10 s).
      --via-proxy: have a Secure Streams proxy daemon (ss proxy, or the
      reference's) fulfil the stream; ADDR is +@NAME (abstract socket, e.g.
      +@proxy.ss.lws), +PATH (Unix socket) or IP:PORT.
  ss proxy --policy FILE (--unix PATH | --abstract NAME | --listen ADDR:PORT)
           [--max-links N] [--max-links-per-client N]
      Run a Secure Streams proxy daemon: application processes connect one
      link per stream and speak the serialized SS protocol (the reference's
      version 1); the daemon runs their streams with FILE's policy. A --unix
      socket is created mode 0600 (only this user can connect). Links are
      bounded in all (default 256) and per client process on Unix sockets
      (default 64; the OS names the process). Runs until killed; prints where
      it listens, and dropped links on stderr.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["policy", "check", file] => policy_check(file),
        ["demo"] => demo(),
        ["get", rest @ ..] => match GetArgs::parse(rest) {
            Ok(a) => get(a),
            Err(e) => usage_error(&e),
        },
        ["proxy", rest @ ..] => match ProxyArgs::parse(rest) {
            Ok(a) => proxy(a),
            Err(e) => usage_error(&e),
        },
        ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => usage_error("unknown command"),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("ss: {msg}\n{USAGE}");
    ExitCode::from(2)
}

// ----- policy check ------------------------------------------------------

fn load_policy(file: &str) -> Result<Policy, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    Policy::parse(&text).map_err(|e| {
        let what = if e.path.is_empty() {
            e.message.clone()
        } else {
            format!("{}: {}", e.path, e.message)
        };
        format!("{file}:{}:{}: {what}", e.line, e.column)
    })
}

fn policy_check(file: &str) -> ExitCode {
    match load_policy(file) {
        Ok(p) => {
            print!("{file}: ok\n{}", p.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

// ----- demo --------------------------------------------------------------

/// The demo's policy: an uppercase echo server on 127.0.0.1 (port 0: the OS
/// picks one) and a client for it, then an HTTPS server and client: the server
/// presents a leaf of a demo CA (both valid until 2126) and the client trusts
/// that CA through the policy's trust store. Client ports are filled in once
/// the servers listen.
const DEMO_POLICY: &str = r#"{
  "release": "ss-demo-1",
  "product": "ss-demo",
  "schema-version": 1,
  "retry": [
    { "demo": { "backoff": [100, 200, 400], "conceal": 5, "jitterpc": 20 } }
  ],
  "certs": [
    { "demo_ca": "MIIBkTCCATegAwIBAgIUEWguBju6mfL0BriCRyRHJSQM8TEwCgYIKoZIzj0EAwIwFTETMBEGA1UEAwwKc3MgZGVtbyBDQTAgFw0yNjExMjMwMTU1NDVaGA8yMTI2MTAzMDAxNTU0NVowFTETMBEGA1UEAwwKc3MgZGVtbyBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKUntFL+7Y/ehNDG6dagUXoerDbLKxoKFAHO2zwUHh/kUwm01Lcfk8oAIGLQSxYx64/NPjfB8eqy/q8Lz6LrYzejYzBhMB0GA1UdDgQWBBSuHbokwRlVYPwNZI6pysyWjVwP0jAfBgNVHSMEGDAWgBSuHbokwRlVYPwNZI6pysyWjVwP0jAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNIADBFAiEAqTbQOaUdGga/b4gWhQAysWez2ctVaJAGs/H+awmnIYkCIAf4WjyKLHQ6+Fx5MRAtf1BPJWJVQg0eXel8G3uvKxyq" },
    { "demo_leaf": "MIIBuTCCAWCgAwIBAgIULuDUwcU52ja9KxsedGNXi/GqL08wCgYIKoZIzj0EAwIwFTETMBEGA1UEAwwKc3MgZGVtbyBDQTAgFw0yNjExMjMwMTU1NDVaGA8yMTI2MTAyOTAxNTU0NVowFDESMBAGA1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEO3h9tmg3hCdJrJ5h+LneZFdWLzOwopnrKcz9CjY8uozlIdV7njCeb7w+Yz6miz3sR9JaLbT5UffCcwvU8lbb7KOBjDCBiTAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCQYDVR0TBAIwADALBgNVHQ8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwHQYDVR0OBBYEFJrc+ojBcZYcjJ3/YiZRgc4Bw3MLMB8GA1UdIwQYMBaAFK4duiTBGVVg/A1kjqnKzJaNXA/SMAoGCCqGSM49BAMCA0cAMEQCIFCDdkHJrd29RBhPm5sb2sEIjgVKohaFxVOL5456ZQtoAiAa7TPsvC9GR5RLL3VpYTvetjmJbNHD5sOewTcNWHOh+A==" },
    { "demo_leaf_key": "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgI+zpaKu/xQ2+/tZVgKccI6mMC7lg/OHAt9xxZFzmlnuhRANCAAQ7eH22aDeEJ0msnmH4ud5kV1YvM7CimespzP0KNjy6jOUh1XueMJ5vvD5jPqaLPexH0lottPlR98JzC9TyVtvs" }
  ],
  "trust_stores": [{ "name": "demo_trust", "stack": ["demo_ca"] }],
  "s": [
    { "upper_server": {
        "server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "raw" } },
    { "upper_client": {
        "endpoint": "127.0.0.1", "port": 0, "protocol": "raw", "retry": "demo" } },
    { "hello_server": {
        "server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "h1",
        "tls": true, "server_cert": "demo_leaf", "server_key": "demo_leaf_key",
        "metadata": [{ "mime": "content-type:" }, { "path": "" }] } },
    { "hello_client": {
        "endpoint": "127.0.0.1", "port": 0, "protocol": "h1", "tls": true,
        "tls_trust_store": "demo_trust", "http_method": "GET", "http_url": "/hello",
        "retry": "demo", "metadata": [{ "mime": "content-type:" }] } }
  ]
}"#;

const DEMO_MESSAGES: [&str; 3] = ["hello", "secure streams", "goodbye"];

#[derive(Default)]
struct DemoState {
    next: usize,
    expect: usize,
    reply: Vec<u8>,
    done: bool,
}

/// The echo client; the label says which one is printing.
struct DemoClient(Rc<RefCell<DemoState>>, &'static str);

impl Handler for DemoClient {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        println!(
            "{}: state {} ({})",
            self.1,
            state.lws_name(),
            state.ordinal()
        );
        if state == StreamState::Connected {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }

    fn tx(
        &mut self,
        _ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        _budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        let mut st = self.0.borrow_mut();
        let Some(msg) = DEMO_MESSAGES.get(st.next) else {
            return SsRet::TxDontSend;
        };
        println!("{}: sent     {msg:?}", self.1);
        buf.extend_from_slice(msg.as_bytes());
        *flags = Flags::SOM | Flags::EOM;
        st.next += 1;
        st.expect = msg.len();
        st.reply.clear();
        SsRet::Ok
    }

    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], _flags: Flags) -> SsRet {
        let mut st = self.0.borrow_mut();
        st.reply.extend_from_slice(data);
        if st.reply.len() >= st.expect {
            println!(
                "{}: received {:?}",
                self.1,
                String::from_utf8_lossy(&st.reply)
            );
            if st.next < DEMO_MESSAGES.len() {
                let _ = ctx.request_tx();
            } else {
                st.done = true;
            }
        }
        SsRet::Ok
    }
}

/// An accepted connection: replies with what it got, in upper case.
#[derive(Default)]
struct UpperEcho {
    pending: Vec<u8>,
}

impl Handler for UpperEcho {
    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], _flags: Flags) -> SsRet {
        let upper = data.to_ascii_uppercase();
        println!(
            "server: received {:?}, replying {:?}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(&upper)
        );
        self.pending.extend_from_slice(&upper);
        let _ = ctx.request_tx();
        SsRet::Ok
    }

    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        _flags: &mut Flags,
    ) -> SsRet {
        if self.pending.is_empty() {
            return SsRet::TxDontSend;
        }
        let n = budget.min(self.pending.len());
        buf.extend(self.pending.drain(..n));
        if !self.pending.is_empty() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }

    fn state(&mut self, _ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        if state == StreamState::Connected {
            println!("server: accepted a connection");
        }
        SsRet::Ok
    }
}

struct Quiet;
impl Handler for Quiet {}

/// The HTTPS answer the demo server gives.
const HELLO_BODY: &str = "hello over https, from a Secure Streams server\n";

/// An accepted HTTPS connection: answers each request with [`HELLO_BODY`].
struct HelloServer;

impl Handler for HelloServer {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        if state == StreamState::ServerTxn {
            let path = ctx
                .get_metadata("path")
                .ok()
                .flatten()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default();
            println!(
                "https server: {} for {path}, answering 200",
                state.lws_name()
            );
            let _ = ctx.server_ack(0);
            let _ = ctx.set_metadata("mime", b"text/plain");
            let _ = ctx.request_tx_len(HELLO_BODY.len() as u64);
        }
        SsRet::Ok
    }

    fn tx(&mut self, _: &mut StreamCtx<'_>, buf: &mut Vec<u8>, _: usize, f: &mut Flags) -> SsRet {
        buf.extend_from_slice(HELLO_BODY.as_bytes());
        *f = Flags::SOM | Flags::EOM;
        SsRet::Ok
    }
}

/// The HTTPS client: prints its states, the response metadata and body.
struct HelloClient(Rc<RefCell<Option<bool>>>);

impl Handler for HelloClient {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        println!(
            "https client: state {} ({})",
            state.lws_name(),
            state.ordinal()
        );
        match state {
            StreamState::Connected => {
                if let Ok(Some(mime)) = ctx.get_metadata("mime") {
                    println!(
                        "https client: content-type {:?}",
                        String::from_utf8_lossy(mime)
                    );
                }
            }
            StreamState::QosAckRemote => *self.0.borrow_mut() = Some(true),
            StreamState::QosNackRemote | StreamState::AllRetriesFailed => {
                *self.0.borrow_mut() = Some(false)
            }
            _ => {}
        }
        SsRet::Ok
    }

    fn rx(&mut self, _: &mut StreamCtx<'_>, data: &[u8], _flags: Flags) -> SsRet {
        println!("https client: received {:?}", String::from_utf8_lossy(data));
        SsRet::Ok
    }
}

/// The HTTPS part of the demo: a TLS HTTP/1.1 server stream and one GET.
fn demo_https(rt: &mut Runtime) -> Result<(), String> {
    let now = rt.now();
    let server = rt
        .host()
        .create_server(
            now,
            "hello_server",
            Box::new(Quiet),
            Box::new(|_| Box::new(HelloServer)),
        )
        .map_err(|e| format!("cannot create the https server stream: {e}"))?;
    rt.run_until(Duration::from_secs(2), &mut |h| {
        h.listening(server).is_some()
    });
    let addr = match rt.host().listening(server) {
        Some(Ok(addr)) => addr.to_string(),
        Some(Err(e)) => return Err(format!("https server could not listen: {e}")),
        None => return Err("https server did not start listening".into()),
    };
    println!("https server: listening on {addr}");
    let port = addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| format!("bad server address: {e}"))?
        .port();
    let mut p = rt.host().engine.policy().clone();
    if let Some(st) = p.streamtypes.iter_mut().find(|s| s.name == "hello_client") {
        st.port = port;
    }
    rt.host().engine.set_policy(p);
    let verdict = Rc::new(RefCell::new(None));
    let now = rt.now();
    let client = rt
        .host()
        .create(now, "hello_client", Box::new(HelloClient(verdict.clone())))
        .map_err(|e| format!("cannot create the https client stream: {e}"))?;
    rt.host()
        .engine
        .client_connect(now, client)
        .map_err(|e| format!("cannot connect: {e}"))?;
    let v = verdict.clone();
    rt.run_until(Duration::from_secs(3), &mut |_| v.borrow().is_some());
    let now = rt.now();
    let _ = rt.host().engine.destroy(now, client);
    let _ = rt.host().engine.destroy(now, server);
    rt.run_until(Duration::from_millis(500), &mut |h| {
        !h.has_stream(client) && !h.has_stream(server)
    });
    let ok = *verdict.borrow();
    match ok {
        Some(true) => Ok(()),
        Some(false) => Err("the https transaction failed".into()),
        None => Err("the https transaction did not complete in 3 s".into()),
    }
}

/// The proxy part of the demo: a proxy daemon (its own thread, with its own
/// engine, listening on an abstract Unix socket) and an application engine
/// in proxy mode (another thread, as another process would be) running the
/// echo through it; this thread keeps serving the echo server meanwhile.
fn demo_proxy(rt: &mut Runtime) -> Result<(), String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let name = format!("ss-demo-{}", std::process::id());
    // The upper_client streamtype already points at the echo server's port.
    let policy = rt.host().engine.policy().clone();
    let mut daemon_policy = policy.clone();
    ProxyServer::install(&mut daemon_policy, &format!("+@{name}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (up_tx, up_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let daemon_stop = stop.clone();
    let daemon = std::thread::spawn(move || {
        let engine = Engine::new(daemon_policy, EngineConfig::default());
        let mut drt = Runtime::new(Host::new(engine));
        let now = drt.now();
        let mut px = ProxyServer::new(ProxyConfig::default());
        if let Err(e) = px.start(&mut drt.host().engine, now) {
            let _ = up_tx.send(Err(format!("proxy: cannot listen: {e}")));
            return;
        }
        let mut app = |engine: &mut Engine, now: Instant, ev: ss_core::Event| {
            px.handle_event(engine, now, &ev);
            while let Some(r) = px.poll_log() {
                match r {
                    ProxyLog::Listening { addr } => {
                        println!("proxy: listening on {addr}");
                        let _ = up_tx.send(Ok(()));
                    }
                    ProxyLog::ListenFailed { reason } => {
                        let _ = up_tx.send(Err(format!("proxy: cannot listen: {reason}")));
                    }
                    ProxyLog::LinkCreated { streamtype, .. } => {
                        println!("proxy: a client linked for a {streamtype:?} stream; relaying it")
                    }
                    ProxyLog::LinkDropped { reason, .. } => println!("proxy: dropped: {reason}"),
                    _ => {}
                }
            }
        };
        while !daemon_stop.load(Ordering::Relaxed) {
            drt.run_app_until(Duration::from_millis(20), &mut app, &mut |_| false);
        }
    });
    let client = match up_rx.recv_timeout(Duration::from_secs(2)) {
        Ok(Ok(())) => Some(std::thread::spawn(move || {
            let config = EngineConfig {
                proxy: Some(SockAddr::UnixAbstract(name)),
                ..Default::default()
            };
            let mut crt = Runtime::new(Host::new(Engine::new(policy, config)));
            let state = Rc::new(RefCell::new(DemoState::default()));
            let now = crt.now();
            let label = "proxied client";
            let Ok(id) = crt.host().create(
                now,
                "upper_client",
                Box::new(DemoClient(state.clone(), label)),
            ) else {
                return false;
            };
            let _ = crt.host().engine.client_connect(now, id);
            let s = state.clone();
            let ok = crt.run_until(Duration::from_secs(3), &mut |_| s.borrow().done);
            let now = crt.now();
            let _ = crt.host().engine.destroy(now, id);
            crt.run_until(Duration::from_millis(200), &mut |h| !h.has_stream(id));
            ok
        })),
        Ok(Err(e)) => {
            stop.store(true, Ordering::Relaxed);
            let _ = daemon.join();
            return Err(e);
        }
        Err(_) => None,
    };
    let ok = match client {
        Some(c) => {
            while !c.is_finished() {
                rt.run_until(Duration::from_millis(20), &mut |_| false);
            }
            c.join().unwrap_or(false)
        }
        None => false,
    };
    stop.store(true, Ordering::Relaxed);
    let _ = daemon.join();
    if ok {
        Ok(())
    } else {
        Err("the echo through the proxy daemon did not complete".into())
    }
}

fn demo() -> ExitCode {
    println!("ss demo: an uppercase echo server and a client, both Secure Streams, on 127.0.0.1");
    let policy = match Policy::parse(DEMO_POLICY) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("embedded demo policy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t0 = Instant::now();
    let mut rt = Runtime::new(Host::new(Engine::new(policy, EngineConfig::default())));
    let now = rt.now();
    let server = match rt.host().create_server(
        now,
        "upper_server",
        Box::new(Quiet),
        Box::new(|_| Box::new(UpperEcho::default())),
    ) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot create the server stream: {e}")),
    };
    rt.run_until(Duration::from_secs(2), &mut |h| {
        h.listening(server).is_some()
    });
    let port = match rt.host().listening(server) {
        Some(Ok(addr)) => {
            println!("server: listening on {addr}");
            addr.parse::<std::net::SocketAddr>().map(|a| a.port()).ok()
        }
        Some(Err(e)) => return fail(&format!("server could not listen: {e}")),
        None => return fail("server did not start listening"),
    };
    let Some(port) = port else {
        return fail("server address has no port");
    };
    // The policy is fixed at engine creation: point the client at the real port.
    let mut p = rt.host().engine.policy().clone();
    if let Some(st) = p.streamtypes.iter_mut().find(|s| s.name == "upper_client") {
        st.port = port;
    }
    rt.host().engine.set_policy(p);

    let state = Rc::new(RefCell::new(DemoState::default()));
    let now = rt.now();
    let client = match rt.host().create(
        now,
        "upper_client",
        Box::new(DemoClient(state.clone(), "client")),
    ) {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot create the client stream: {e}")),
    };
    if let Err(e) = rt.host().engine.client_connect(now, client) {
        return fail(&format!("cannot connect: {e}"));
    }
    let s = state.clone();
    let ok = rt.run_until(Duration::from_secs(2), &mut |_| s.borrow().done);
    let now = rt.now();
    let _ = rt.host().engine.destroy(now, client);
    rt.run_until(Duration::from_millis(500), &mut |h| !h.has_stream(client));
    if !ok {
        return fail("the echo did not complete in 2 s");
    }
    println!();
    println!("ss demo: the same echo from another engine, through a Secure Streams proxy daemon");
    let proxied = demo_proxy(&mut rt);
    let now = rt.now();
    let _ = rt.host().engine.destroy(now, server);
    rt.run_until(Duration::from_millis(500), &mut |h| !h.has_stream(server));
    if let Err(e) = proxied {
        return fail(&e);
    }
    println!();
    println!(
        "ss demo: an HTTPS GET between two Secure Streams, verified by the policy's trust store"
    );
    if let Err(e) = demo_https(&mut rt) {
        return fail(&e);
    }
    println!(
        "done: {} messages echoed directly, {} through the proxy daemon, and one https transaction in {} ms",
        DEMO_MESSAGES.len(),
        DEMO_MESSAGES.len(),
        t0.elapsed().as_millis()
    );
    ExitCode::SUCCESS
}

/// Engine settings from the environment: `socks_proxy` (host:port) routes
/// client streams through a SOCKS5 proxy, as in the reference.
fn env_config() -> EngineConfig {
    EngineConfig {
        socks5: std::env::var("socks_proxy").ok().filter(|s| !s.is_empty()),
        ..Default::default()
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("ss: {msg}");
    ExitCode::FAILURE
}

// ----- proxy -------------------------------------------------------------

struct ProxyArgs {
    policy: String,
    /// The link listener's endpoint: `+/path`, `+@name` or `IP:PORT`.
    bind: String,
    max_links: Option<usize>,
    max_links_per_client: Option<usize>,
}

impl ProxyArgs {
    fn parse(args: &[&str]) -> Result<ProxyArgs, String> {
        let mut policy = None;
        let mut bind = None;
        let mut max_links = None;
        let mut max_links_per_client = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .map(|v| v.to_string())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let mut set_bind = |b: String| {
                if bind.replace(b).is_some() {
                    Err("give only one of --unix, --abstract, --listen".to_string())
                } else {
                    Ok(())
                }
            };
            match *a {
                "--policy" => policy = Some(value("--policy")?),
                "--unix" => {
                    let p = value("--unix")?;
                    if p.is_empty() || p.starts_with('@') {
                        return Err(format!("--unix {p:?}: give a file path"));
                    }
                    set_bind(format!("+{p}"))?
                }
                "--abstract" => {
                    let n = value("--abstract")?;
                    if n.is_empty() {
                        return Err("--abstract needs a name".into());
                    }
                    set_bind(format!("+@{n}"))?
                }
                "--listen" => {
                    let a = value("--listen")?;
                    a.parse::<std::net::SocketAddr>()
                        .map_err(|_| format!("--listen {a:?} is not ADDR:PORT"))?;
                    set_bind(a)?
                }
                "--max-links" | "--max-links-per-client" => {
                    let v = value(a)?;
                    let n = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("{a} {v:?} is not a positive number"))?;
                    if *a == "--max-links" {
                        max_links = Some(n);
                    } else {
                        max_links_per_client = Some(n);
                    }
                }
                s => return Err(format!("unexpected argument {s:?}")),
            }
        }
        Ok(ProxyArgs {
            policy: policy.ok_or("proxy needs --policy FILE")?,
            bind: bind.ok_or("proxy needs --unix PATH, --abstract NAME or --listen ADDR:PORT")?,
            max_links,
            max_links_per_client,
        })
    }
}

fn proxy(a: ProxyArgs) -> ExitCode {
    match run_proxy(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The daemon: the policy plus the link listener on one engine, the
/// `ProxyServer` fed with its events, forever.
fn run_proxy(a: &ProxyArgs) -> Result<(), String> {
    let mut policy = load_policy(&a.policy)?;
    ProxyServer::install(&mut policy, &a.bind)?;
    // The link socket is created by bind(2) with mode 0777 & !umask: with
    // 0177 it is 0600 from its first instant, so only this user can connect.
    // The daemon creates no other files.
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe {
        libc::umask(0o177);
    }
    let mut config = ProxyConfig::default();
    if let Some(n) = a.max_links {
        config.max_links = n;
    }
    if let Some(n) = a.max_links_per_client {
        config.max_links_per_client = n;
    }
    let mut rt = Runtime::new(Host::new(Engine::new(policy, EngineConfig::default())));
    let now = rt.now();
    let mut px = ProxyServer::new(config);
    px.start(&mut rt.host().engine, now)
        .map_err(|e| format!("cannot listen: {e}"))?;
    let failed: RefCell<Option<String>> = RefCell::new(None);
    let unix_path = a.bind.strip_prefix('+').filter(|p| !p.starts_with('@'));
    let mut app = |engine: &mut Engine, now: Instant, ev: ss_core::Event| {
        px.handle_event(engine, now, &ev);
        while let Some(r) = px.poll_log() {
            match r {
                ProxyLog::Listening { addr } => {
                    if let Some(p) = unix_path {
                        use std::os::unix::fs::PermissionsExt;
                        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600));
                    }
                    println!("ss proxy: listening on {addr}");
                    let _ = std::io::stdout().flush();
                }
                ProxyLog::ListenFailed { reason } => {
                    *failed.borrow_mut() = Some(format!("cannot listen: {reason}"));
                }
                ProxyLog::LinkDropped { link, reason } => {
                    eprintln!("ss proxy: {link}: dropped: {reason}");
                }
                ProxyLog::LinkOpened { .. }
                | ProxyLog::LinkCreated { .. }
                | ProxyLog::LinkClosed { .. }
                | ProxyLog::Note { .. } => {}
            }
        }
    };
    loop {
        rt.run_app_until(Duration::from_secs(3600), &mut app, &mut |_| {
            failed.borrow().is_some()
        });
        if let Some(e) = failed.borrow_mut().take() {
            return Err(e);
        }
    }
}

// ----- get ---------------------------------------------------------------

struct GetArgs {
    streamtype: String,
    policy: String,
    timeout: Duration,
    send: Option<String>,
    via_proxy: Option<SockAddr>,
}

/// `--via-proxy ADDR`: `+@name`, `+path` or `IP:PORT` (the reference's
/// `ss_proxy_bind` / `ss_proxy_address` forms).
fn parse_proxy_addr(v: &str) -> Result<SockAddr, String> {
    match v.strip_prefix('+').map(|a| (a, a.strip_prefix('@'))) {
        Some((_, Some(name))) if !name.is_empty() => Ok(SockAddr::UnixAbstract(name.to_string())),
        Some((path, None)) if !path.is_empty() => Ok(SockAddr::Unix(path.to_string())),
        Some(_) => Err(format!("--via-proxy {v:?}: empty socket name")),
        None => v
            .parse()
            .map(SockAddr::Ip)
            .map_err(|_| format!("--via-proxy {v:?} is neither +@NAME, +PATH nor IP:PORT")),
    }
}

impl GetArgs {
    fn parse(args: &[&str]) -> Result<GetArgs, String> {
        let mut streamtype = None;
        let mut policy = None;
        let mut timeout = Duration::from_secs(10);
        let mut send = None;
        let mut via_proxy = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .map(|v| v.to_string())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match *a {
                "--policy" => policy = Some(value("--policy")?),
                "--timeout" => {
                    let v = value("--timeout")?;
                    let secs: f64 = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
                        .ok_or_else(|| format!("--timeout {v:?} is not a number of seconds"))?;
                    timeout = Duration::from_secs_f64(secs);
                }
                "--send" => send = Some(value("--send")?),
                "--via-proxy" => via_proxy = Some(parse_proxy_addr(&value("--via-proxy")?)?),
                s if s.starts_with("--") => return Err(format!("unknown option {s}")),
                s if streamtype.is_none() => streamtype = Some(s.to_string()),
                s => return Err(format!("unexpected argument {s:?}")),
            }
        }
        Ok(GetArgs {
            streamtype: streamtype.ok_or("get needs a STREAMTYPE")?,
            policy: policy.ok_or("get needs --policy FILE")?,
            timeout,
            send,
            via_proxy,
        })
    }
}

#[derive(Default)]
struct GetState {
    send: Option<Vec<u8>>,
    /// Bytes of `send` already written (SOM goes on the first write).
    sent: usize,
    got_data: bool,
    /// HTTP: the transaction's verdict (QOS_ACK_REMOTE or QOS_NACK_REMOTE).
    acked: Option<bool>,
    /// Set when the stream is finished: Ok on a clean close after data.
    outcome: Option<Result<(), String>>,
}

struct GetClient(Rc<RefCell<GetState>>);

impl Handler for GetClient {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        let mut st = self.0.borrow_mut();
        match state {
            StreamState::Connected if st.send.is_some() => {
                let _ = ctx.request_tx();
            }
            StreamState::QosAckRemote => st.acked = Some(true),
            StreamState::QosNackRemote => st.acked = Some(false),
            // An HTTP transaction ends with its verdict, body or not.
            StreamState::Disconnected if st.acked == Some(true) => st.outcome = Some(Ok(())),
            StreamState::Disconnected if st.acked == Some(false) => {
                st.outcome = Some(Err(
                    "the server refused the request (QOS_NACK_REMOTE)".into()
                ))
            }
            StreamState::Disconnected if st.got_data => st.outcome = Some(Ok(())),
            StreamState::Disconnected => {
                st.outcome = Some(Err("disconnected before any data arrived".into()))
            }
            StreamState::AllRetriesFailed => {
                st.outcome = Some(Err("could not connect: all retries failed".into()))
            }
            _ => {}
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
        let mut st = self.0.borrow_mut();
        let Some(data) = st.send.as_mut() else {
            return SsRet::TxDontSend;
        };
        let n = budget.max(1).min(data.len());
        buf.extend(data.drain(..n));
        let first = st.sent == 0;
        st.sent += n;
        *flags = Flags::NONE;
        if first {
            *flags |= Flags::SOM;
        }
        if st.send.as_ref().is_some_and(Vec::is_empty) {
            *flags |= Flags::EOM;
            st.send = None;
        } else {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }

    fn rx(&mut self, _ctx: &mut StreamCtx<'_>, data: &[u8], _flags: Flags) -> SsRet {
        self.0.borrow_mut().got_data |= !data.is_empty();
        let mut out = std::io::stdout().lock();
        if out.write_all(data).and_then(|_| out.flush()).is_err() {
            // stdout is gone (e.g. a closed pipe): nothing more to do.
            return SsRet::DestroyMe;
        }
        SsRet::Ok
    }
}

fn get(a: GetArgs) -> ExitCode {
    let policy = match load_policy(&a.policy) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    match run_get(policy, &a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// One client stream of `a.streamtype`: connect, send, copy payload to stdout.
/// Ok once the peer closes after sending data.
fn run_get(policy: Policy, a: &GetArgs) -> Result<(), String> {
    match policy.streamtype(&a.streamtype) {
        None => return Err(format!("no streamtype {:?} in {}", a.streamtype, a.policy)),
        Some(st) if st.server => return Err(format!("streamtype {:?} is a server", a.streamtype)),
        Some(_) => {}
    }
    let state = Rc::new(RefCell::new(GetState {
        send: a
            .send
            .clone()
            .map(String::into_bytes)
            .filter(|s| !s.is_empty()),
        ..Default::default()
    }));
    let config = EngineConfig {
        proxy: a.via_proxy.clone(),
        ..env_config()
    };
    let mut rt = Runtime::new(Host::new(Engine::new(policy, config)));
    let now = rt.now();
    let id: StreamId = rt
        .host()
        .create(now, &a.streamtype, Box::new(GetClient(state.clone())))
        .map_err(|e| format!("cannot create the stream: {e}"))?;
    rt.host()
        .engine
        .client_connect(now, id)
        .map_err(|e| format!("cannot connect: {e}"))?;
    // HTTP sends its body while connecting: announce it before the request goes out.
    let http = matches!(
        rt.host()
            .engine
            .policy()
            .streamtype(&a.streamtype)
            .map(|st| st.protocol),
        Some(Protocol::H1 | Protocol::H2)
    );
    let len = state.borrow().send.as_ref().map(|d| d.len() as u64);
    if let (true, Some(len)) = (http, len) {
        rt.host()
            .engine
            .request_tx_len(now, id, len)
            .map_err(|e| format!("cannot send: {e}"))?;
    }
    let s = state.clone();
    let finished = rt.run_until(a.timeout, &mut |h| {
        s.borrow().outcome.is_some() || !h.has_stream(id)
    });
    let outcome = state.borrow_mut().outcome.take();
    match (finished, outcome) {
        (_, Some(r)) => r,
        (true, None) => Err("the stream was destroyed".into()),
        (false, None) => Err(format!("timed out after {:.1} s", a.timeout.as_secs_f64())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_demo_policy_parses() {
        let p = Policy::parse(DEMO_POLICY).expect("embedded demo policy");
        assert!(p.streamtype("upper_server").is_some_and(|s| s.server));
        assert_eq!(
            p.streamtype("upper_client")
                .and_then(|s| s.retry.as_deref()),
            Some("demo")
        );
    }

    #[test]
    fn get_args_parse() {
        let a = GetArgs::parse(&[
            "x",
            "--policy",
            "p.json",
            "--timeout",
            "0.5",
            "--send",
            "hi",
        ])
        .unwrap();
        assert_eq!(a.streamtype, "x");
        assert_eq!(a.timeout, Duration::from_millis(500));
        assert_eq!(a.send.as_deref(), Some("hi"));
        assert!(GetArgs::parse(&["x"]).is_err());
        assert!(GetArgs::parse(&["x", "--policy"]).is_err());
        assert!(GetArgs::parse(&["x", "--policy", "p", "--timeout", "-1"]).is_err());
        let via =
            |v| GetArgs::parse(&["x", "--policy", "p", "--via-proxy", v]).map(|a| a.via_proxy);
        assert_eq!(
            via("+@proxy.ss.lws"),
            Ok(Some(SockAddr::UnixAbstract("proxy.ss.lws".into())))
        );
        assert_eq!(
            via("+/tmp/p.sock"),
            Ok(Some(SockAddr::Unix("/tmp/p.sock".into())))
        );
        assert_eq!(
            via("127.0.0.1:9"),
            Ok(Some(SockAddr::Ip("127.0.0.1:9".parse().unwrap())))
        );
        assert!(via("+@").is_err());
        assert!(via("+").is_err());
        assert!(via("proxy.ss.lws").is_err());
    }

    fn get_policy(port: u16) -> Policy {
        let mut p = Policy::parse(DEMO_POLICY).expect("embedded demo policy");
        p.streamtypes[1].port = port;
        p.retry[0].backoff_ms = vec![20];
        p.retry[0].conceal = 1;
        p
    }

    fn get_args(send: Option<&str>) -> GetArgs {
        GetArgs {
            streamtype: "upper_client".into(),
            policy: "built-in".into(),
            timeout: Duration::from_secs(5),
            send: send.map(String::from),
            via_proxy: None,
        }
    }

    #[test]
    fn get_reads_until_the_peer_closes() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 2];
            s.read_exact(&mut req).unwrap();
            s.write_all(b"body\n").unwrap();
        });
        assert_eq!(run_get(get_policy(port), &get_args(Some("hi"))), Ok(()));
        t.join().unwrap();
    }

    #[test]
    fn get_fails_on_close_without_data_and_when_nothing_listens() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || drop(l.accept().unwrap()));
        let e = run_get(get_policy(port), &get_args(None)).unwrap_err();
        assert!(e.contains("disconnected before any data"), "{e}");
        t.join().unwrap();
        let e = run_get(get_policy(port), &get_args(None)).unwrap_err();
        assert!(e.contains("all retries failed"), "{e}");
        let mut a = get_args(None);
        a.streamtype = "upper_server".into();
        assert!(run_get(get_policy(port), &a)
            .unwrap_err()
            .contains("server"));
    }

    /// A scripted HTTP/1.1 server answering one request with `response`;
    /// returns its port and the request it read.
    fn one_http_response(response: &'static [u8]) -> (u16, std::thread::JoinHandle<String>) {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head and a short body (the tests send at most a few bytes).
            while !String::from_utf8_lossy(&req).contains("\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(response).unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        (port, t)
    }

    fn http_policy(port: u16, method: &str) -> Policy {
        let json = format!(
            r#"{{"s": [{{"web": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "h1",
                "http_method": "{method}", "http_url": "/x", "opportunistic": true}}}}]}}"#
        );
        Policy::parse(&json).unwrap()
    }

    fn http_args(send: Option<&str>) -> GetArgs {
        GetArgs {
            streamtype: "web".into(),
            ..get_args(send)
        }
    }

    #[test]
    fn get_over_http_ends_with_the_transaction() {
        let (port, t) = one_http_response(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(run_get(http_policy(port, "GET"), &http_args(None)), Ok(()));
        assert!(t.join().unwrap().starts_with("GET /x HTTP/1.1\r\n"));
        let (port, t) = one_http_response(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
        let e = run_get(http_policy(port, "GET"), &http_args(None)).unwrap_err();
        assert!(e.contains("refused"), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn get_with_send_posts_the_body_with_its_length() {
        let (port, t) = one_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        assert_eq!(
            run_get(http_policy(port, "POST"), &http_args(Some("hello"))),
            Ok(())
        );
        let req = t.join().unwrap();
        assert!(req.starts_with("POST /x HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Content-Length: 5\r\n"), "{req}");
    }
}
