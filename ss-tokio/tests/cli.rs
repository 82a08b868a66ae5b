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
