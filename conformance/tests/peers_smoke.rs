//! Smoke tests of the loopback peers themselves (nginx, the Python edge
//! server, the throwaway PKI), with raw HTTP/1.1 bytes over std TcpStream and
//! `openssl s_client` for TLS. They fail when a peer is missing or broken,
//! so the engine tests built on these peers can trust them.

use conformance::peers::{
    big_bin_content, edge_body, raw_exchange, require, Nginx, NginxOpts, PyEdge, TestPki,
    BIG_BIN_LEN,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A parsed raw response.
#[derive(Debug)]
struct Resp {
    status_line: String,
    status: u16,
    headers: Vec<(String, String)>,
    /// The body bytes exactly as on the wire (chunk framing included).
    raw_body: Vec<u8>,
}

impl Resp {
    fn parse(raw: &[u8]) -> Resp {
        let end = find(raw, b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_string();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("header colon");
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        Resp {
            status_line,
            status,
            headers,
            raw_body: raw[end + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw_body).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn get(port: u16, path: &str) -> Resp {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    Resp::parse(&raw_exchange(port, req.as_bytes()))
}

/// Decodes a chunked body strictly, returning the data and chunk sizes.
fn dechunk(mut b: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let eol = find(b, b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            assert_eq!(b, b"\r\n", "chunked body must end with 0 CRLF CRLF");
            return (out, sizes);
        }
        sizes.push(size);
        out.extend_from_slice(&b[..size]);
        assert_eq!(&b[size..size + 2], b"\r\n", "CRLF after chunk data");
        b = &b[size + 2..];
    }
}

/// Reads one Content-Length-framed response from a kept-alive connection.
fn read_one(r: &mut BufReader<TcpStream>) -> Resp {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).expect("read header line");
        assert!(!line.is_empty(), "connection closed mid-headers");
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let mut resp = Resp::parse(&head);
    let len: usize = resp
        .header("content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    resp.raw_body = vec![0; len];
    r.read_exact(&mut resp.raw_body).expect("read body");
    resp
}

/// Runs `openssl s_client` against 127.0.0.1:`port` with `args`, sends
/// `request`, and returns (success, stdout, stderr). Bounded to 10 s. With
/// `-quiet` (which implies `-ign_eof`) it reads until the server closes;
/// without, it prints the session summary and quits at the end of `request`.
fn s_client(port: u16, args: &[&str], request: &str) -> (bool, String, String) {
    let mut child = Command::new(require("openssl"))
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-verify_return_error"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    let _ = child.stdin.take().unwrap().write_all(request.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("openssl s_client to port {port} did not finish in 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const CLOSE_REQ: &str = "GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[test]
fn missing_peer_is_a_failure_with_install_hint() {
    let err = std::panic::catch_unwind(|| require("ss-no-such-peer-xyz")).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert_eq!(
        msg,
        "peer `ss-no-such-peer-xyz` not installed: run scripts/install.sh"
    );
    assert!(require("nginx").is_absolute());
}

#[test]
fn pki_shapes() {
    use base64::Engine as _;
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let der = base64::engine::general_purpose::STANDARD
        .decode(pki.ca_b64())
        .unwrap();
    assert_eq!(der, pki.ca_der);
    assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(pki.leaf_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_ne!(pki.leaf_der, pki.client.der);
    assert_ne!(TestPki::other_ca().der, pki.ca_der);
}

#[test]
fn nginx_plain_http() {
    let ng = Nginx::start(NginxOpts::default());
    let port = ng.http_port();

    let r = get(port, "/index.html");
    assert_eq!(r.status, 200, "{}", ng.logs());
    assert_eq!(r.text(), conformance::peers::INDEX_HTML);

    let r = get(port, "/204");
    assert_eq!(r.status, 204);
    assert!(r.raw_body.is_empty());

    let r = get(port, "/redirect");
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().ends_with("/index.html"));

    let r = get(port, "/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("8388608"));
    assert_eq!(r.raw_body.len(), BIG_BIN_LEN);
    assert!(
        r.raw_body == big_bin_content(BIG_BIN_LEN),
        "big.bin content"
    );

    let raw = raw_exchange(
        port,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnginx echo",
    );
    let r = Resp::parse(&raw);
    assert_eq!(r.status, 200, "{}", ng.logs());
    let (body, _) = dechunk(&r.raw_body);
    assert_eq!(body, b"nginx ech");

    // Keep-alive: a DAV PUT then a GET of it on one connection.
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    w.write_all(b"PUT /dav/up.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let put = read_one(&mut r);
    assert_eq!(put.status, 201, "{}", ng.logs());
    w.write_all(b"GET /dav/up.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_one(&mut r);
    assert_eq!((got.status, got.text().as_str()), (200, "hello"));
}

#[test]
fn nginx_tls_trust_and_alpn() {
    let ng = Nginx::start(NginxOpts {
        http2: true,
        ..Default::default()
    });
    let dir = ng.dir();
    let ca = dir.join("ca.pem");
    let other = dir.join("other-ca.pem");
    std::fs::write(&other, TestPki::other_ca().pem).unwrap();
    let port = ng.https_port();

    let (ok, out, err) = s_client(
        port,
        &[
            "-quiet",
            "-CAfile",
            ca.to_str().unwrap(),
            "-verify_hostname",
            "localhost",
        ],
        CLOSE_REQ,
    );
    assert!(
        ok,
        "s_client with the issuing CA failed: {err}\n{}",
        ng.logs()
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("ss nginx peer"));

    let (ok, out, err) = s_client(
        port,
        &["-quiet", "-CAfile", other.to_str().unwrap()],
        CLOSE_REQ,
    );
    assert!(
        !ok && out.is_empty(),
        "an unrelated CA must not verify: {err}"
    );
    assert!(err.contains("verify"), "{err}");

    let (ok, out, err) = s_client(port, &["-CAfile", ca.to_str().unwrap(), "-alpn", "h2"], "");
    assert!(ok, "{err}");
    assert!(out.contains("ALPN protocol: h2"), "{out}");
}

#[test]
fn pyedge_framing_and_status() {
    let py = PyEdge::start(None);
    let port = py.port();

    let r = get(port, "/chunked?n=3&size=10");
    assert_eq!(r.status, 200, "{}", py.logs());
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.raw_body.starts_with(b"a\r\n"), "raw chunk framing");
    let (data, sizes) = dechunk(&r.raw_body);
    assert_eq!(sizes, [10, 10, 10]);
    assert_eq!(data, edge_body(30));

    let r = get(port, "/close?size=1000");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.raw_body, edge_body(1000));
    let r = get(port, "/close?size=5&http10=1");
    assert!(r.status_line.starts_with("HTTP/1.0 200"));
    assert_eq!(r.raw_body, edge_body(5));

    let r = get(port, "/204");
    assert_eq!(r.status, 204);
    assert!(r.raw_body.is_empty());
    let r = get(port, "/status/418");
    assert_eq!((r.status, r.text().as_str()), (418, "status 418"));
    let r = get(port, "/nope");
    assert_eq!(r.status, 404);

    let r = get(port, "/redirect?n=3");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/redirect?n=2"));
    let r = get(port, "/redirect?n=1");
    assert_eq!(r.header("location"), Some("/len?size=10"));
    let r = get(port, "/redirect?n=2&abs=1");
    assert_eq!(
        r.header("location"),
        Some(format!("http://127.0.0.1:{port}/redirect?n=1&abs=1").as_str())
    );
    let r = get(port, "/redirect-loop");
    assert_eq!(r.header("location"), Some("/redirect-loop"));

    let r = get(port, "/resp-header");
    assert_eq!(r.header("x-test-meta"), Some("hello-meta"));
    assert_eq!(r.text(), "ok");
    let r = get(port, "/huge-header");
    assert_eq!(r.header("x-huge").map(str::len), Some(65536));
    let r = get(port, "/slow?ms=50");
    assert_eq!(r.text(), "slow");

    let raw = raw_exchange(port, b"GET /malformed HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(raw.starts_with(b"THIS IS NOT HTTP"), "{raw:?}");

    let r = get(port, "/multipart-download?parts=3");
    let ct = r.header("content-type").unwrap();
    let boundary = ct.split("boundary=").nth(1).expect("boundary");
    let text = r.text();
    assert_eq!(text.matches(&format!("--{boundary}\r\n")).count(), 3);
    assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    assert!(text.contains(&"part 3 ".repeat(100)));
}

#[test]
fn pyedge_keepalive_cookies_echo_headers() {
    let py = PyEdge::start(None);
    let port = py.port();

    // Two requests on one connection share a conn-id; a new one differs.
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    w.write_all(b"GET /conn-id HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let a = read_one(&mut r).text();
    w.write_all(b"GET /len?size=300 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let len = read_one(&mut r);
    assert_eq!(len.raw_body, edge_body(300));
    assert_eq!(len.header("x-conn-id"), Some(a.as_str()));
    w.write_all(b"GET /conn-id HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut r).text(), a);
    assert_ne!(get(port, "/conn-id").text(), a);

    let r = get(port, "/set-cookie");
    assert_eq!(
        r.all("set-cookie"),
        ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
    );
    let raw = raw_exchange(
        port,
        b"GET /cookie-echo HTTP/1.1\r\nHost: x\r\nCookie: a=1; b=2\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(Resp::parse(&raw).text(), "a=1; b=2");

    let raw = raw_exchange(
        port,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\
          Connection: close\r\n\r\nhello world",
    );
    let r = Resp::parse(&raw);
    assert_eq!(r.text(), "hello world");
    assert_eq!(r.header("x-req-content-type"), Some("text/plain"));
    assert_eq!(r.header("x-req-content-length"), Some("11"));
    assert_eq!(r.header("x-req-transfer-encoding"), Some("none"));

    let raw = raw_exchange(
        port,
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    let r = Resp::parse(&raw);
    assert_eq!(r.text(), "hello world");
    assert_eq!(r.header("x-req-content-length"), Some("none"));
    assert_eq!(r.header("x-req-transfer-encoding"), Some("chunked"));

    let raw = raw_exchange(
        port,
        b"GET /headers HTTP/1.1\r\nHost: example.test\r\nX-DSN: 42\r\n\
          Authorization: Bearer t0k\r\nConnection: close\r\n\r\n",
    );
    let h: serde_json::Value = serde_json::from_slice(&Resp::parse(&raw).raw_body).unwrap();
    assert_eq!(h["x-dsn"], "42");
    assert_eq!(h["authorization"], "Bearer t0k");
    assert_eq!(h["host"], "example.test");
}

#[test]
fn pyedge_multipart_upload() {
    let py = PyEdge::start(None);
    let body = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\n\
                field value\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; \
                filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello multipart file\n\
                \r\n--XyZ--\r\n";
    let req = format!(
        "POST /multipart-upload HTTP/1.1\r\nHost: x\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let r = Resp::parse(&raw_exchange(py.port(), req.as_bytes()));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), py.logs());
    let v: serde_json::Value = serde_json::from_slice(&r.raw_body).unwrap();
    let expect = serde_json::json!([
        {"name": "field", "filename": null, "content_type": null, "len": 11,
         "sha256": "bd4f107ed28e9c001fc4da239009b8a9fd9771cb8259a954c67f6fc0222bd547"},
        {"name": "file", "filename": "a.txt", "content_type": "text/plain", "len": 21,
         "sha256": "6330682a87513b7236d0cb569809080f71b6aa2f3a03f3660767838bcac7bf3f"},
    ]);
    assert_eq!(v, expect);

    let bad = "POST /multipart-upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; \
               boundary=XyZ\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(
        Resp::parse(&raw_exchange(py.port(), bad.as_bytes())).status,
        400
    );
}

#[test]
fn pyedge_tls_and_mutual_tls() {
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let py = PyEdge::start(Some(&pki));
    let [ca, _, _, cert, key] = pki.write_files(py.dir());
    let ca = ca.to_str().unwrap();
    let req = "GET /len?size=10 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (ok, out, err) = s_client(py.port(), &["-quiet", "-CAfile", ca], req);
    assert!(ok, "{err}\n{}", py.logs());
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    let m = PyEdge::start_mtls(&pki);
    let req = "GET /peer-cert HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (ok, out, err) = s_client(
        m.port(),
        &[
            "-quiet",
            "-CAfile",
            ca,
            "-cert",
            cert.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
        ],
        req,
    );
    assert!(ok, "{err}\n{}", m.logs());
    assert!(out.ends_with("ss-test-client"), "{out}");

    // Without a client certificate the server refuses: no HTTP answer.
    let (_, out, _) = s_client(m.port(), &["-quiet", "-CAfile", ca], req);
    assert!(!out.contains("HTTP/1.1"), "{out}");
}
