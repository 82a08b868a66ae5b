//! `ss`: check a policy, watch a demo, or fetch from a streamtype.
//!
//! ```text
//! ss policy check FILE
//! ss demo
//! ss get STREAMTYPE --policy FILE [--timeout SECS] [--send TEXT]
//! ```

use ss_core::policy::Policy;
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
      Connect one client stream of STREAMTYPE, optionally send TEXT, and copy
      what it receives to stdout until the peer closes (default timeout 10 s).
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
/// picks one) and a client for it, whose port is filled in once the server listens.
const DEMO_POLICY: &str = r#"{
  "release": "ss-demo-1",
  "product": "ss-demo",
  "schema-version": 1,
  "retry": [
    { "demo": { "backoff": [100, 200, 400], "conceal": 5, "jitterpc": 20 } }
  ],
  "s": [
    { "upper_server": {
        "server": true, "endpoint": "127.0.0.1", "port": 0, "protocol": "raw" } },
    { "upper_client": {
        "endpoint": "127.0.0.1", "port": 0, "protocol": "raw", "retry": "demo" } }
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

struct DemoClient(Rc<RefCell<DemoState>>);

impl Handler for DemoClient {
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        println!("client: state {} ({})", state.lws_name(), state.ordinal());
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
        println!("client: sent     {msg:?}");
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
            println!("client: received {:?}", String::from_utf8_lossy(&st.reply));
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
    let client = match rt
        .host()
        .create(now, "upper_client", Box::new(DemoClient(state.clone())))
    {
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
    let _ = rt.host().engine.destroy(now, server);
    rt.run_until(Duration::from_millis(500), &mut |h| {
        !h.has_stream(client) && !h.has_stream(server)
    });
    if !ok {
        return fail("the echo did not complete in 2 s");
    }
    println!(
        "done: {} messages echoed in {} ms",
        DEMO_MESSAGES.len(),
        t0.elapsed().as_millis()
    );
    ExitCode::SUCCESS
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("ss: {msg}");
    ExitCode::FAILURE
}

// ----- get ---------------------------------------------------------------

struct GetArgs {
    streamtype: String,
    policy: String,
    timeout: Duration,
    send: Option<String>,
}

impl GetArgs {
    fn parse(args: &[&str]) -> Result<GetArgs, String> {
        let mut streamtype = None;
        let mut policy = None;
        let mut timeout = Duration::from_secs(10);
        let mut send = None;
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
        })
    }
}

#[derive(Default)]
struct GetState {
    send: Option<Vec<u8>>,
    got_data: bool,
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
        *flags = Flags::SOM | Flags::EOM;
        if data.is_empty() {
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
    let mut rt = Runtime::new(Host::new(Engine::new(policy, EngineConfig::default())));
    let now = rt.now();
    let id: StreamId = rt
        .host()
        .create(now, &a.streamtype, Box::new(GetClient(state.clone())))
        .map_err(|e| format!("cannot create the stream: {e}"))?;
    rt.host()
        .engine
        .client_connect(now, id)
        .map_err(|e| format!("cannot connect: {e}"))?;
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
}
