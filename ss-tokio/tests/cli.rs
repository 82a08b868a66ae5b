//! The `ss` binary end to end.

use std::io::{Read, Write};
use std::process::{Command, Output};

fn ss(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ss"))
        .args(args)
        .output()
        .expect("run ss")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn demo_shows_states_and_payload_and_exits_0() {
    let out = ss(&["demo"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("LWSSSCS_CONNECTED (5)"), "{stdout}");
    assert!(stdout.contains("LWSSSCS_DESTROYING (7)"), "{stdout}");
    assert!(stdout.contains("client: received \"HELLO\""), "{stdout}");
    assert!(
        stdout.contains("client: received \"SECURE STREAMS\""),
        "{stdout}"
    );
    // The same echo from a proxy-mode engine, through the in-process daemon.
    assert!(
        stdout.contains("proxy: a client linked for a \"upper_client\" stream"),
        "{stdout}"
    );
    assert!(
        stdout.contains("proxied client: received \"GOODBYE\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("https client: state LWSSSCS_QOS_ACK_REMOTE (10)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("https client: received \"hello over https"),
        "{stdout}"
    );
    assert!(
        stdout.contains("https client: content-type \"text/plain\""),
        "{stdout}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(ss(&[]).status.code(), Some(2));
    assert_eq!(ss(&["get", "x"]).status.code(), Some(2));
    assert_eq!(ss(&["policy"]).status.code(), Some(2));
}

#[test]
fn policy_check_good_file_prints_summary() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("good.json");
    std::fs::write(
        &f,
        r#"{
  "release": "r1",
  "retry": [{ "default": { "backoff": [100, 200], "conceal": 3, "jitterpc": 10 } }],
  "s": [{ "api": { "endpoint": "example.com", "port": 443, "protocol": "raw", "retry": "default" } }]
}"#,
    )
    .unwrap();
    let out = ss(&["policy", "check", f.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("api"), "{stdout}");
}

#[test]
fn policy_check_bad_file_gives_located_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.json");
    std::fs::write(
        &f,
        "{\n  \"s\": [{ \"api\": { \"endpoint\": \"example.com\", \"port\": 443,\n    \"retry\": \"missing\" } }]\n}\n",
    )
    .unwrap();
    let name = f.to_str().unwrap();
    let out = ss(&["policy", "check", name]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with(&format!("{name}:3:")), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}

#[test]
fn policy_check_missing_file_exits_1() {
    let out = ss(&["policy", "check", "/nonexistent/policy.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/policy.json"));
}

fn get_policy(dir: &std::path::Path, port: u16) -> String {
    let f = dir.join("p.json");
    std::fs::write(
        &f,
        format!(
            r#"{{
  "retry": [{{ "quick": {{ "backoff": [50], "conceal": 1, "jitterpc": 0 }} }}],
  "s": [{{ "fetch": {{ "endpoint": "127.0.0.1", "port": {port}, "protocol": "raw", "retry": "quick" }} }}]
}}"#
        ),
    )
    .unwrap();
    f.to_str().unwrap().to_string()
}

#[test]
fn get_prints_body_until_peer_closes() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = [0u8; 4];
        s.read_exact(&mut req).unwrap();
        s.write_all(b"body for ").unwrap();
        s.write_all(&req).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let p = get_policy(dir.path(), port);
    let out = ss(&[
        "get",
        "fetch",
        "--policy",
        &p,
        "--timeout",
        "5",
        "--send",
        "ping",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "body for ping");
    server.join().unwrap();
}

#[test]
fn get_fails_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let p = get_policy(dir.path(), port);
    let out = ss(&["get", "fetch", "--policy", &p, "--timeout", "5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("all retries failed"),
        "{}",
        text(&out.stderr)
    );
}

// ----- ss proxy ------------------------------------------------------------

mod proxy {
    use ss_core::policy::{Policy, Protocol, StreamType};
    use ss_core::proxy::wire::{Payload, ToClient, ToClientDecoder, ToProxy, WireMessage};
    use ss_core::{Engine, EngineConfig, Flags, Handler, Host, SsRet, StreamCtx, StreamState};
    use ss_tokio::Runtime;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

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

    /// A raw echo server (our tokio Runtime) on its own thread; its port.
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
            let addr: std::net::SocketAddr =
                rt.host().listening(id).unwrap().unwrap().parse().unwrap();
            tx.send(addr.port()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                rt.run_until(Duration::from_millis(20), &mut |_| false);
            }
        });
        (rx.recv().unwrap(), t)
    }

    struct Link {
        s: UnixStream,
        dec: ToClientDecoder,
    }

    impl Link {
        fn connect(path: &std::path::Path) -> Link {
            let s = UnixStream::connect(path).expect("connect to the daemon");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            Link {
                s,
                dec: ToClientDecoder::default(),
            }
        }

        fn send(&mut self, m: &ToProxy) {
            let mut b = vec![];
            m.encode(&mut b).unwrap();
            self.s.write_all(&b).unwrap();
        }

        /// The next message, or `None` at EOF.
        fn recv(&mut self) -> Option<ToClient> {
            let mut buf = [0u8; 1];
            loop {
                if let Some(m) = self.dec.poll() {
                    return Some(m);
                }
                // A daemon that dies with unread input resets the link: EOF too.
                match self.s.read(&mut buf) {
                    Ok(0) => return None,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                    Err(e) => panic!("read from the daemon: {e}"),
                    Ok(_) => {
                        self.dec.feed(&buf).unwrap();
                    }
                }
            }
        }

        /// Open a stream of `streamtype` and connect it onward.
        fn open(&mut self, streamtype: &str) {
            self.send(&ToProxy::StreamtypeCreate {
                pid: std::process::id(),
                initial_tx_credit: 0,
                streamtype: streamtype.into(),
            });
            assert!(matches!(
                self.recv(),
                Some(ToClient::CreateResult { status: 0, .. })
            ));
            self.send(&ToProxy::OnwardConnect);
            loop {
                let m = self.recv().expect("states");
                if m.stream_state() == Some(StreamState::Connected) {
                    return;
                }
            }
        }

        fn echo(&mut self, text: &[u8]) -> Vec<u8> {
            self.send(&ToProxy::TxPayload(Payload::new(
                text.to_vec(),
                Flags::NONE,
            )));
            let mut got = vec![];
            while got.len() < text.len() {
                match self.recv() {
                    Some(ToClient::RxPayload(p)) => got.extend_from_slice(&p.data),
                    Some(_) => {}
                    None => break,
                }
            }
            got
        }
    }

    #[test]
    fn the_daemon_proxies_two_links_and_its_death_is_eof() {
        use std::os::unix::fs::PermissionsExt;
        let stop = Arc::new(AtomicBool::new(false));
        let (port, server) = echo_server(stop.clone());
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.json");
        std::fs::write(
            &policy,
            format!(
                r#"{{"retry": [{{"r": {{"backoff": [100], "conceal": 1, "jitterpc": 0}}}}],
                   "s": [{{"echo": {{"endpoint": "127.0.0.1", "port": {port},
                                    "protocol": "raw", "retry": "r"}}}}]}}"#
            ),
        )
        .unwrap();
        let sock = dir.path().join("proxy.sock");
        let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_ss"))
            .args(["proxy", "--policy"])
            .arg(&policy)
            .arg("--unix")
            .arg(&sock)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start ss proxy");
        struct KillOnDrop(std::process::Child);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let stdout = daemon.stdout.take().unwrap();
        let mut daemon = KillOnDrop(daemon);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            format!("ss proxy: listening on unix:{}", sock.display())
        );
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");

        let mut a = Link::connect(&sock);
        let mut b = Link::connect(&sock);
        a.open("echo");
        b.open("echo");
        assert_eq!(a.echo(b"hello from a"), b"hello from a");
        assert_eq!(b.echo(b"hello from b"), b"hello from b");
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in big.chunks(8192) {
            assert_eq!(a.echo(chunk), chunk);
        }

        // An unknown streamtype gets a failed result and EOF; the others live on.
        let mut c = Link::connect(&sock);
        c.send(&ToProxy::StreamtypeCreate {
            pid: 1,
            initial_tx_credit: 0,
            streamtype: "nope".into(),
        });
        assert!(matches!(
            c.recv(),
            Some(ToClient::CreateResult { status: 1, .. })
        ));
        assert_eq!(c.recv(), None);
        assert_eq!(b.echo(b"still"), b"still");

        // kill -9 mid-stream: the links see EOF.
        a.send(&ToProxy::TxPayload(Payload::new(
            b"in flight".to_vec(),
            Flags::NONE,
        )));
        daemon.0.kill().unwrap();
        daemon.0.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for l in [&mut a, &mut b] {
            loop {
                assert!(Instant::now() < deadline);
                if l.recv().is_none() {
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
    }

    /// The daemon learns from the OS which process each link comes from
    /// (SO_PEERCRED) and bounds links per process: this test process gets
    /// two, a third is dropped, and a link closing makes room again.
    #[test]
    fn the_daemon_bounds_links_per_client_process() {
        let stop = Arc::new(AtomicBool::new(false));
        let (port, server) = echo_server(stop.clone());
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.json");
        std::fs::write(
            &policy,
            format!(
                r#"{{"s": [{{"echo": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "raw"}}}}]}}"#
            ),
        )
        .unwrap();
        let sock = dir.path().join("proxy.sock");
        let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_ss"))
            .args(["proxy", "--max-links-per-client", "2", "--policy"])
            .arg(&policy)
            .arg("--unix")
            .arg(&sock)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start ss proxy");
        let stdout = daemon.stdout.take().unwrap();
        let stderr = daemon.stderr.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(line.contains("listening"), "{line}");
        let mut a = Link::connect(&sock);
        let mut b = Link::connect(&sock);
        a.open("echo");
        b.open("echo");
        let mut c = Link::connect(&sock);
        assert_eq!(c.recv(), None, "a third link from this process is closed");
        assert_eq!(b.echo(b"b still works"), b"b still works");
        // Closing one makes room for another.
        drop(a);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut d = loop {
            let mut d = Link::connect(&sock);
            d.send(&ToProxy::StreamtypeCreate {
                pid: std::process::id(),
                initial_tx_credit: 0,
                streamtype: "echo".into(),
            });
            match d.recv() {
                Some(ToClient::CreateResult { status: 0, .. }) => break d,
                _ => {
                    assert!(Instant::now() < deadline, "no room after a link closed");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        d.send(&ToProxy::OnwardConnect);
        assert_eq!(d.echo(b"d works"), b"d works");
        let _ = daemon.kill();
        let _ = daemon.wait();
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut err);
        assert!(
            err.contains(&format!(
                "more than 2 links from process {}",
                std::process::id()
            )),
            "{err}"
        );
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
    }

    #[test]
    fn proxy_usage_errors_exit_2() {
        let run = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_ss"))
                .args(args)
                .output()
                .unwrap()
                .status
                .code()
        };
        assert_eq!(run(&["proxy"]), Some(2));
        assert_eq!(run(&["proxy", "--policy", "x"]), Some(2));
        assert_eq!(
            run(&[
                "proxy",
                "--policy",
                "x",
                "--unix",
                "/tmp/a",
                "--abstract",
                "b"
            ]),
            Some(2)
        );
        assert_eq!(
            run(&["proxy", "--policy", "x", "--listen", "nope"]),
            Some(2)
        );
    }

    /// Two application clients in proxy mode (`EngineConfig::proxy`) share
    /// one `ss proxy` daemon; the daemon is killed mid-conversation and
    /// started again on the same socket: the clients' streams report the
    /// loss, retry per policy, re-create themselves on the new daemon and
    /// echo again.
    #[test]
    fn proxy_mode_clients_survive_a_daemon_restart() {
        let stop = Arc::new(AtomicBool::new(false));
        let (port, server) = echo_server(stop.clone());
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.json");
        let json = format!(
            r#"{{"retry": [{{"r": {{"backoff": [100, 200], "conceal": 65535, "jitterpc": 0}}}}],
               "s": [{{"echo": {{"endpoint": "127.0.0.1", "port": {port},
                                "protocol": "raw", "retry": "r", "nailed_up": true}}}}]}}"#
        );
        std::fs::write(&policy, &json).unwrap();
        let sock = dir.path().join("proxy.sock");
        let start = || {
            let mut d = std::process::Command::new(env!("CARGO_BIN_EXE_ss"))
                .args(["proxy", "--policy"])
                .arg(&policy)
                .arg("--unix")
                .arg(&sock)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start ss proxy");
            let mut line = String::new();
            BufReader::new(d.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.contains("listening"), "{line}");
            d
        };
        let mut daemon = start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sock_path = sock.to_string_lossy().into_owned();
        rt.block_on(async {
            let cfg = EngineConfig {
                proxy: Some(ss_core::engine::SockAddr::Unix(sock_path.clone())),
                ..Default::default()
            };
            let mut streams = vec![];
            // The application's own policy could not reach the echo server:
            // only the daemon can.
            let app_json = json.replace(
                "\"endpoint\": \"127.0.0.1\"",
                "\"endpoint\": \"never.resolved.invalid\"",
            );
            assert_ne!(app_json, json);
            for _ in 0..2 {
                let c = ss_tokio::Client::start(Policy::parse(&app_json).unwrap(), cfg.clone());
                streams.push((c.clone(), c.create("echo").await.unwrap()));
            }
            async fn echo(s: &mut ss_tokio::SsStream, msg: &[u8]) -> Vec<u8> {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                // Wait for CONNECTED (through the daemon), then echo.
                loop {
                    let st = tokio::time::timeout_at(deadline, s.next_state())
                        .await
                        .expect("CONNECTED in time")
                        .unwrap();
                    if st == StreamState::Connected {
                        break;
                    }
                }
                s.send(msg.to_vec()).await.unwrap();
                let mut got = vec![];
                while got.len() < msg.len() {
                    let (d, _) = tokio::time::timeout_at(deadline, s.recv())
                        .await
                        .expect("echo in time")
                        .unwrap();
                    got.extend(d);
                }
                got
            }
            for (i, (_, s)) in streams.iter_mut().enumerate() {
                let msg = format!("before restart {i}").into_bytes();
                assert_eq!(echo(s, &msg).await, msg);
            }
            // Kill the daemon: the streams lose their onward connections.
            daemon.kill().unwrap();
            daemon.wait().unwrap();
            for (_, s) in streams.iter_mut() {
                loop {
                    let st = tokio::time::timeout(Duration::from_secs(10), s.next_state())
                        .await
                        .expect("the loss is reported")
                        .unwrap();
                    if matches!(st, StreamState::Disconnected | StreamState::Unreachable) {
                        break;
                    }
                }
            }
            let _ = std::fs::remove_file(&sock_path);
            daemon = start();
            for (i, (_, s)) in streams.iter_mut().enumerate() {
                let msg = format!("after restart {i}").into_bytes();
                assert_eq!(echo(s, &msg).await, msg);
            }
        });
        let _ = daemon.kill();
        let _ = daemon.wait();
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
    }
}
