//! ss-core's HTTP/2 client machine over a real socket and TLS (ss-core's
//! `TlsSession`, ALPN h2) against nghttpd: 20 concurrent GETs on one
//! connection, bodies checked byte for byte. nghttpd comes from
//! scripts/install.sh; the test fails (never skips) without it.

use conformance::peers::{free_port, require, PeerProcess, TestPki};
use ss_core::proto::h2::{H2Client, H2Config, H2Event, RequestHead, StreamKey};
use ss_core::proto::tls::TlsSession;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn file_body(i: usize) -> Vec<u8> {
    // Sizes from 0 to ~190 KiB: several exceed the 64 KiB initial window.
    let n = (i * 9_973) % 200_000;
    (0..n).map(|j| ((j * 7 + i * 13) % 251) as u8).collect()
}

#[test]
fn twenty_concurrent_gets_against_nghttpd() {
    let nghttpd = require("nghttpd");
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let (dir, path) = PeerProcess::prepare("nghttpd");
    let www = path.join("www");
    std::fs::create_dir_all(&www).expect("docroot");
    for i in 0..20 {
        std::fs::write(www.join(format!("f{i}")), file_body(i)).expect("file");
    }
    let [_, cert, key, ..] = pki.write_files(&path);
    let port = free_port();
    let mut cmd = Command::new(nghttpd);
    cmd.arg("--address=127.0.0.1")
        .arg(format!("--htdocs={}", www.display()))
        .arg(port.to_string())
        .arg(&key)
        .arg(&cert);
    let mut peer = PeerProcess::spawn("nghttpd", dir, cmd);
    peer.wait_port(port).unwrap_or_else(|e| panic!("{e}"));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(pki.ca_der.clone()))
        .expect("CA");
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let mut tls = TlsSession::client(Arc::new(cfg), "127.0.0.1").expect("tls");
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut wire = vec![];
    tls.start(&mut wire).expect("start");
    sock.write_all(&wire).expect("hello");

    let mut h2 = H2Client::new(H2Config::default());
    let mut keys: HashMap<StreamKey, usize> = HashMap::new();
    let mut bodies: HashMap<StreamKey, Vec<u8>> = HashMap::new();
    let mut statuses: HashMap<StreamKey, u16> = HashMap::new();
    let mut done = 0;
    let mut started = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0u8; 64 * 1024];
    while done < 20 {
        assert!(
            Instant::now() < deadline,
            "timed out: {done} of 20 done\n{}",
            peer.logs()
        );
        if !tls.is_handshaking() && !started {
            assert_eq!(tls.alpn_protocol(), Some(&b"h2"[..]), "ALPN");
            for i in 0..20 {
                let head =
                    RequestHead::new("GET", &format!("/f{i}"), &format!("127.0.0.1:{port}"), true);
                keys.insert(h2.start_request(&head).expect("start"), i);
            }
            started = true;
        }
        let mut wire = vec![];
        while let Some(plain) = h2.poll_transmit() {
            tls.write(&plain, &mut wire).expect("tls write");
        }
        if !wire.is_empty() {
            sock.write_all(&wire).expect("send");
        }
        match sock.read(&mut buf) {
            Ok(0) => panic!("nghttpd closed\n{}", peer.logs()),
            Ok(n) => {
                let (mut plain, mut wire) = (vec![], vec![]);
                tls.handle_input(&buf[..n], &mut plain, &mut wire)
                    .expect("tls");
                if !wire.is_empty() {
                    sock.write_all(&wire).expect("send");
                }
                h2.handle_input(&plain).expect("h2 input");
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
        while let Some(ev) = h2.poll_event() {
            match ev {
                H2Event::Response { key, status, .. } => {
                    statuses.insert(key, status);
                }
                H2Event::Data { key, data, eom } => {
                    bodies.entry(key).or_default().extend_from_slice(&data);
                    if eom {
                        done += 1;
                    }
                }
                other => panic!("unexpected {other:?}\n{}", peer.logs()),
            }
        }
    }
    for (k, i) in &keys {
        assert_eq!(statuses.get(k), Some(&200), "status of /f{i}");
        let got = bodies.remove(k).unwrap_or_default();
        assert!(got == file_body(*i), "body of /f{i}: {} bytes", got.len());
    }
    peer.kill();
}

/// One connection served by ss-core's H2Server over a plain socket (h2c with
/// prior knowledge): every request gets 200 and a 3000-byte body.
fn serve_h2c(mut sock: TcpStream) {
    use ss_core::proto::h2::H2Server;
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut s = H2Server::new(H2Config::default());
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = vec![b'x'; 3000];
    while Instant::now() < deadline {
        while let Some(out) = s.poll_transmit() {
            if sock.write_all(&out).is_err() {
                return;
            }
        }
        match sock.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if s.handle_input(&buf[..n]).is_err() {
                    while let Some(out) = s.poll_transmit() {
                        let _ = sock.write_all(&out);
                    }
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        while let Some(ev) = s.poll_event() {
            if let H2Event::Data { key, eom: true, .. } = ev {
                let _ = s.respond(
                    key,
                    200,
                    &[("content-type".into(), "text/plain".into())],
                    false,
                );
                let _ = s.send_data(key, &body, true);
            }
        }
    }
}

#[test]
fn h2load_against_our_server() {
    let h2load = require("h2load");
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        // Bounded: h2load opens 2 connections.
        for sock in listener.incoming().take(2).flatten() {
            std::thread::spawn(move || serve_h2c(sock));
        }
    });
    let out = Command::new(h2load)
        .args(["-n", "200", "-c", "2", "-m", "20", "-T", "20"])
        .arg(format!("http://127.0.0.1:{port}/x"))
        .output()
        .expect("run h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h2load failed:\n{text}");
    assert!(
        text.contains("200 succeeded, 0 failed, 0 errored"),
        "h2load:\n{text}"
    );
    assert!(text.contains("status codes: 200 2xx"), "h2load:\n{text}");
}
