//! HTTP/1.1 machines: serialisation round trips, byte-split invariance,
//! malformed input, client against server in memory, cookies.

use proptest::prelude::*;
use ss_core::proto::h1::{
    chunked, cookies::Jar, multipart, redirect_target, BodyMode, Client, ClientConfig, H1Error,
    H1Event, Limits, Out, RequestHead, Server, ServerConfig,
};
use ss_core::Flags;

fn h(n: &str, v: &str) -> (String, String) {
    (n.to_owned(), v.to_owned())
}

/// Merge consecutive Body events (checking SOM only on the first and EOM
/// only on the last) so event lists from different input splits compare.
fn normalize(events: Vec<H1Event>) -> Vec<H1Event> {
    let mut out: Vec<H1Event> = Vec::new();
    for ev in events {
        match (out.last_mut(), ev) {
            (
                Some(H1Event::Body { data, flags }),
                H1Event::Body {
                    data: more,
                    flags: f2,
                },
            ) if !flags.contains(Flags::EOM) => {
                assert!(!f2.contains(Flags::SOM), "SOM in the middle of a body");
                data.extend_from_slice(&more);
                *flags |= f2;
            }
            (_, ev) => {
                if let H1Event::Body { flags, .. } = &ev {
                    assert!(flags.contains(Flags::SOM), "body without SOM first");
                }
                out.push(ev);
            }
        }
    }
    out
}

fn get_client(method: &str) -> (Client, Out) {
    let mut c = Client::new(ClientConfig::default());
    let mut out = Out::default();
    c.start(&RequestHead::new(method, "/", "example.com"), &mut out)
        .unwrap();
    (c, out)
}

/// Feed `chunks` to a fresh client after a `method` request; optionally EOF.
fn run_client(method: &str, chunks: &[&[u8]], eof: bool) -> Result<Vec<H1Event>, H1Error> {
    let (mut c, _) = get_client(method);
    let mut out = Out::default();
    for ch in chunks {
        c.handle_input(ch, &mut out)?;
    }
    if eof {
        c.handle_eof(&mut out)?;
    }
    Ok(out.events)
}

fn body(data: &[u8]) -> H1Event {
    H1Event::Body {
        data: data.to_vec(),
        flags: Flags::SOM | Flags::EOM,
    }
}

fn resp(status: u16, reason: &str, headers: &[(&str, &str)]) -> H1Event {
    H1Event::ResponseHead {
        status,
        reason: reason.into(),
        headers: headers.iter().map(|(n, v)| h(n, v)).collect(),
    }
}

struct Case {
    method: &'static str,
    wire: &'static [u8],
    eof: bool,
    want: Vec<H1Event>,
}

fn response_cases() -> Vec<Case> {
    vec![
        Case {
            method: "GET",
            wire: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            eof: false,
            want: vec![
                resp(200, "OK", &[("Content-Length", "5")]),
                body(b"hello"),
                H1Event::Done { keep_alive: true },
            ],
        },
        Case {
            method: "GET",
            wire: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1 ; a\r\n!\r\n0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n",
            eof: false,
            want: vec![
                resp(200, "OK", &[("Transfer-Encoding", "chunked")]),
                body(b"hello!"),
                H1Event::Done { keep_alive: true },
            ],
        },
        Case {
            method: "GET",
            wire: b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil the end",
            eof: true,
            want: vec![
                resp(200, "OK", &[("Server", "x")]),
                body(b"until the end"),
                H1Event::Done { keep_alive: false },
            ],
        },
        Case {
            method: "POST",
            wire: b"HTTP/1.1 204 No Content\r\nX: y\r\n\r\n",
            eof: false,
            want: vec![
                resp(204, "No Content", &[("X", "y")]),
                H1Event::Done { keep_alive: true },
            ],
        },
        Case {
            method: "GET",
            wire: b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            eof: false,
            want: vec![
                resp(304, "Not Modified", &[("Content-Length", "99")]),
                H1Event::Done { keep_alive: true },
            ],
        },
        Case {
            method: "HEAD",
            wire: b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
            eof: false,
            want: vec![
                resp(200, "OK", &[("Content-Length", "1234")]),
                H1Event::Done { keep_alive: true },
            ],
        },
        Case {
            method: "POST",
            wire: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nA: b\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            eof: false,
            want: vec![
                resp(201, "Created", &[("Content-Length", "2"), ("Connection", "close")]),
                body(b"ok"),
                H1Event::Done { keep_alive: false },
            ],
        },
        Case {
            method: "GET",
            wire: b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            eof: false,
            want: vec![
                resp(200, "OK", &[("Content-Length", "0")]),
                body(b""),
                H1Event::Done { keep_alive: false },
            ],
        },
        Case {
            method: "GET",
            wire: b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx",
            eof: false,
            want: vec![
                resp(200, "OK", &[("Content-Length", "1"), ("Connection", "keep-alive")]),
                body(b"x"),
                H1Event::Done { keep_alive: true },
            ],
        },
    ]
}

#[test]
fn response_parsing_is_split_invariant() {
    for case in response_cases() {
        let whole = run_client(case.method, &[case.wire], case.eof).unwrap();
        assert_eq!(
            normalize(whole),
            case.want,
            "{:?}",
            String::from_utf8_lossy(case.wire)
        );
        for i in 0..=case.wire.len() {
            let (a, b) = case.wire.split_at(i);
            let ev = run_client(case.method, &[a, b], case.eof).unwrap();
            assert_eq!(normalize(ev), case.want, "split at {i}");
        }
        let bytes: Vec<&[u8]> = case.wire.chunks(1).collect();
        let ev = run_client(case.method, &bytes, case.eof).unwrap();
        assert_eq!(normalize(ev), case.want, "byte by byte");
    }
}

#[test]
fn malformed_responses_give_typed_errors() {
    let small = Limits {
        max_header_bytes: 64,
        max_headers: 2,
        ..Limits::default()
    };
    let cases: Vec<(&[u8], Limits, H1Error)> = vec![
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            Limits::default(),
            H1Error::BadChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
            Limits::default(),
            H1Error::ChunkSizeOverflow,
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
            small,
            H1Error::HeaderTooLarge,
        ),
        (b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", small, H1Error::TooManyHeaders),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", Limits::default(), H1Error::BadStatusLine),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", Limits::default(), H1Error::BadContentLength),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            Limits::default(),
            H1Error::BadContentLength,
        ),
        (b"HTTP/1.1 200 OK\r\nBad Header: 1\r\n\r\n", Limits::default(), H1Error::BadHeader),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy", Limits::default(), H1Error::UnexpectedData),
    ];
    for (wire, limits, want) in cases {
        for split in [wire.len(), 1] {
            let mut c = Client::new(ClientConfig { limits });
            let mut out = Out::default();
            c.start(&RequestHead::new("GET", "/", "h"), &mut out)
                .unwrap();
            let mut got = Ok(());
            for ch in wire.chunks(split) {
                got = c.handle_input(ch, &mut out);
                if got.is_err() {
                    break;
                }
            }
            assert_eq!(
                got,
                Err(want.clone()),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
            // Errors are sticky.
            assert_eq!(c.handle_input(b"x", &mut out), Err(want.clone()));
            assert!(!want.to_string().is_empty());
        }
    }
}

#[test]
fn eof_before_declared_length_is_incomplete() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    assert_eq!(run_client("GET", &[wire], true), Err(H1Error::Incomplete));
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc";
    assert_eq!(
        run_client("GET", &[chunked], true),
        Err(H1Error::Incomplete)
    );
    assert_eq!(
        run_client("GET", &[b"HTTP/1.1 200"], true),
        Err(H1Error::Incomplete)
    );
}

#[test]
fn client_write_body_accounting() {
    let mut c = Client::new(ClientConfig::default());
    let mut out = Out::default();
    let mut head = RequestHead::new("POST", "/x", "h");
    head.body = BodyMode::ContentLength(3);
    c.start(&head, &mut out).unwrap();
    c.write_body(b"ab", false, &mut out).unwrap();
    assert_eq!(
        c.write_body(b"cd", false, &mut out),
        Err(H1Error::BodyTooLong)
    );

    let mut c = Client::new(ClientConfig::default());
    c.start(&head, &mut out).unwrap();
    assert_eq!(
        c.write_body(b"ab", true, &mut out),
        Err(H1Error::BodyTooShort)
    );

    let mut c = Client::new(ClientConfig::default());
    let mut bad = RequestHead::new("GET", "/", "h");
    bad.headers.push(h("X", "a\r\nInjected: 1"));
    assert!(matches!(
        c.start(&bad, &mut out),
        Err(H1Error::InvalidOutgoing(_))
    ));
    let mut bad = RequestHead::new("GET", "/", "h");
    bad.headers.push(h("Content-Length", "5"));
    assert!(matches!(
        c.start(&bad, &mut out),
        Err(H1Error::InvalidOutgoing(_))
    ));
    assert!(matches!(
        c.start(&RequestHead::new("GET", "/a b", "h"), &mut out),
        Err(H1Error::InvalidOutgoing(_))
    ));
}

#[test]
fn form_urlencoded_and_redirects() {
    let mut c = Client::new(ClientConfig::default());
    let mut out = Out::default();
    let mut head = RequestHead::new("POST", "/f", "h");
    head.form_urlencoded = true;
    head.body = BodyMode::ContentLength(3);
    c.start(&head, &mut out).unwrap();
    c.write_body(b"a=1", true, &mut out).unwrap();
    let s = String::from_utf8(out.transmit).unwrap();
    assert!(s.contains("Content-Type: application/x-www-form-urlencoded\r\n"));
    assert!(s.ends_with("\r\n\r\na=1"));

    let hs = vec![h("Location", "https://x/y")];
    for st in [301, 302, 303, 307, 308] {
        assert_eq!(redirect_target(st, &hs).as_deref(), Some("https://x/y"));
    }
    assert_eq!(redirect_target(200, &hs), None);
    assert_eq!(redirect_target(302, &[]), None);
}

/// Serialise a request with the client machine.
fn serialise(head: &RequestHead, body: &[u8], pieces: usize) -> Vec<u8> {
    let mut c = Client::new(ClientConfig::default());
    let mut out = Out::default();
    c.start(head, &mut out).unwrap();
    if head.body != BodyMode::None {
        let step = (body.len() / pieces.max(1)).max(1);
        let chunks: Vec<&[u8]> = body.chunks(step).collect();
        if chunks.is_empty() {
            c.write_body(&[], true, &mut out).unwrap();
        }
        for (i, ch) in chunks.iter().enumerate() {
            c.write_body(ch, i + 1 == chunks.len(), &mut out).unwrap();
        }
    }
    assert!(c.is_request_sent());
    out.transmit
}

fn decode_chunked(mut wire: &[u8]) -> (Vec<u8>, usize) {
    let mut d = chunked::Decoder::new(1024, 1024);
    let mut body = Vec::new();
    let mut used = 0;
    while !d.is_done() {
        let (n, data) = d.decode(wire).unwrap();
        if let Some(data) = data {
            body.extend_from_slice(data);
        }
        used += n;
        wire = &wire[n..];
        assert!(n > 0 || d.is_done(), "decoder stalled");
    }
    (body, used)
}

fn header_strategy() -> impl Strategy<Value = (String, String)> {
    ("x-[a-z0-9-]{1,10}", "[!-~]([ -~]{0,20}[!-~])?")
}

proptest! {
    #[test]
    fn request_round_trip(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        path in "/[a-zA-Z0-9/_.?=&%-]{0,40}",
        headers in prop::collection::vec(header_strategy(), 0..8),
        mode in 0u8..3,
        body in prop::collection::vec(any::<u8>(), 0..300),
        pieces in 1usize..5,
    ) {
        let mut head = RequestHead::new(method, &path, "example.com:8080");
        head.headers = headers.clone();
        head.body = match mode {
            0 => BodyMode::None,
            1 => BodyMode::ContentLength(body.len() as u64),
            _ => BodyMode::Chunked,
        };
        let body = if mode == 0 { Vec::new() } else { body };
        let wire = serialise(&head, &body, pieces);
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut hs);
        let n = match req.parse(&wire).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial"),
        };
        prop_assert_eq!(req.method, Some(method));
        prop_assert_eq!(req.path, Some(path.as_str()));
        prop_assert_eq!(req.version, Some(1));
        let got: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        prop_assert!(got.contains(&h("Host", "example.com:8080")));
        for hd in &headers {
            prop_assert!(got.contains(hd), "missing {:?}", hd);
        }
        let rest = &wire[n..];
        match head.body {
            BodyMode::None => prop_assert!(rest.is_empty()),
            BodyMode::ContentLength(len) => {
                prop_assert!(got.contains(&h("Content-Length", &len.to_string())));
                prop_assert_eq!(rest, &body[..]);
            }
            BodyMode::Chunked => {
                prop_assert!(got.contains(&h("Transfer-Encoding", "chunked")));
                let (decoded, used) = decode_chunked(rest);
                prop_assert_eq!(decoded, body);
                prop_assert_eq!(used, rest.len());
            }
        }
    }

    #[test]
    fn chunked_round_trip(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 0..8),
        split in 0usize..1000,
    ) {
        let mut wire = Vec::new();
        for c in &chunks {
            chunked::encode_chunk(c, &mut wire);
        }
        chunked::encode_last(&mut wire);
        wire.extend_from_slice(b"after");
        let split = split % (wire.len() + 1);
        let mut d = chunked::Decoder::new(64, 64);
        let mut got = Vec::new();
        let mut consumed = 0;
        for part in [&wire[..split], &wire[split..]] {
            let mut p = part;
            while !p.is_empty() && !d.is_done() {
                let (n, data) = d.decode(p).unwrap();
                if let Some(data) = data { got.extend_from_slice(data); }
                consumed += n;
                p = &p[n..];
            }
        }
        prop_assert!(d.is_done());
        prop_assert_eq!(got, chunks.concat());
        prop_assert_eq!(&wire[consumed..], b"after");
    }

    #[test]
    fn response_fed_arbitrary_bytes_never_panics(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let (mut c, _) = get_client("GET");
        let mut out = Out::default();
        let _ = c.handle_input(&data, &mut out);
        let _ = c.handle_eof(&mut out);
        let mut s = Server::new(ServerConfig::default());
        let _ = s.handle_input(&data, &mut out);
        let mut m = multipart::Decoder::new("b").unwrap();
        let mut ev = Vec::new();
        let _ = m.feed(&data, &mut ev);
    }
}

fn normalize_mp(events: Vec<multipart::Event>) -> Vec<multipart::Event> {
    let mut out: Vec<multipart::Event> = Vec::new();
    for ev in events {
        match (out.last_mut(), ev) {
            (
                Some(multipart::Event::Data { data, flags }),
                multipart::Event::Data {
                    data: more,
                    flags: f2,
                },
            ) if !flags.contains(Flags::EOM) => {
                assert!(!f2.contains(Flags::SOM));
                data.extend_from_slice(&more);
                *flags |= f2;
            }
            (_, ev) => out.push(ev),
        }
    }
    out
}

#[test]
fn multipart_round_trip_split_everywhere() {
    let payload = b"line one\r\n--not-the-boundary\r\n\r\n-- last bytes \r".to_vec();
    let mut spec = multipart::Spec::new("file");
    spec.boundary = "XyZ-boundary".into();
    spec.filename = Some("a.txt".into());
    spec.content_type = Some("text/plain".into());
    for mode in [
        BodyMode::ContentLength(payload.len() as u64),
        BodyMode::Chunked,
    ] {
        let mut head = RequestHead::new("POST", "/upload", "h");
        head.body = mode;
        head.multipart = Some(spec.clone());
        let wire = serialise(&head, &payload, 3);

        // Parse the request with the server machine, collect the body.
        let mut s = Server::new(ServerConfig::default());
        let mut out = Out::default();
        s.handle_input(&wire, &mut out).unwrap();
        let ev = normalize(out.events);
        let H1Event::RequestHead { headers, .. } = &ev[0] else {
            panic!("no head")
        };
        let ct = ss_core::proto::h1::header(headers, "content-type").unwrap();
        let H1Event::Body { data: mp_body, .. } = &ev[1] else {
            panic!("no body")
        };
        let want = vec![
            multipart::Event::Part {
                headers: vec![
                    h(
                        "Content-Disposition",
                        "form-data; name=\"file\"; filename=\"a.txt\"",
                    ),
                    h("Content-Type", "text/plain"),
                ],
            },
            multipart::Event::Data {
                data: payload.clone(),
                flags: Flags::SOM | Flags::EOM,
            },
            multipart::Event::End,
        ];
        for i in 0..=mp_body.len() {
            let mut d = multipart::Decoder::from_content_type(ct).unwrap();
            let mut evs = Vec::new();
            d.feed(&mp_body[..i], &mut evs).unwrap();
            d.feed(&mp_body[i..], &mut evs).unwrap();
            d.finish().unwrap();
            assert_eq!(normalize_mp(evs), want, "split at {i}");
        }
        let mut d = multipart::Decoder::from_content_type(ct).unwrap();
        let mut evs = Vec::new();
        for b in mp_body.chunks(1) {
            d.feed(b, &mut evs).unwrap();
        }
        assert_eq!(normalize_mp(evs), want);
    }
}

#[test]
fn multipart_malformed_and_bounded() {
    let mut d = multipart::Decoder::new("b").unwrap();
    let mut ev = Vec::new();
    assert_eq!(d.feed(b"--bX", &mut ev), Err(H1Error::MultipartMalformed));
    let mut d = multipart::Decoder::with_limits("b", 32, 8).unwrap();
    let big = format!("--b\r\nX: {}", "a".repeat(100));
    assert_eq!(
        d.feed(big.as_bytes(), &mut ev),
        Err(H1Error::MultipartHeaderTooLarge)
    );
    let mut d = multipart::Decoder::new("b").unwrap();
    d.feed(b"--b\r\n\r\nabc", &mut ev).unwrap();
    assert_eq!(d.finish(), Err(H1Error::MultipartMalformed));
    assert!(multipart::Decoder::from_content_type("text/plain").is_err());
}

#[test]
fn server_parses_pipelined_and_chunked_requests() {
    let wire: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n\
PUT /c HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nxy";
    let want = vec![
        H1Event::RequestHead {
            method: "GET".into(),
            path: "/a".into(),
            headers: vec![h("Host", "h")],
        },
        H1Event::Done { keep_alive: true },
        H1Event::RequestHead {
            method: "POST".into(),
            path: "/b".into(),
            headers: vec![h("Host", "h"), h("Transfer-Encoding", "chunked")],
        },
        body(b"abcde"),
        H1Event::Done { keep_alive: true },
        H1Event::RequestHead {
            method: "PUT".into(),
            path: "/c".into(),
            headers: vec![h("Content-Length", "2"), h("Connection", "close")],
        },
        body(b"xy"),
        H1Event::Done { keep_alive: false },
    ];
    for i in 0..=wire.len() {
        let mut s = Server::new(ServerConfig::default());
        let mut out = Out::default();
        s.handle_input(&wire[..i], &mut out).unwrap();
        s.handle_input(&wire[i..], &mut out).unwrap();
        assert_eq!(normalize(out.events), want, "split at {i}");
        assert_eq!(s.pending(), 3);
        s.handle_eof().unwrap();
    }

    // Responses go out in order and parse back.
    let mut s = Server::new(ServerConfig::default());
    let mut out = Out::default();
    s.handle_input(wire, &mut out).unwrap();
    let mut out = Out::default();
    s.respond(200, &[h("X-A", "1")], BodyMode::ContentLength(5), &mut out)
        .unwrap();
    s.write_body(b"hello", true, &mut out).unwrap();
    s.respond(201, &[], BodyMode::Chunked, &mut out).unwrap();
    s.write_body(b"chunk", false, &mut out).unwrap();
    s.write_body(b"", true, &mut out).unwrap();
    s.respond(204, &[], BodyMode::None, &mut out).unwrap();
    assert_eq!(
        out.events,
        vec![
            H1Event::Sent { keep_alive: true },
            H1Event::Sent { keep_alive: true },
            H1Event::Sent { keep_alive: false },
        ]
    );
    let mut rest: &[u8] = &out.transmit;
    let mut statuses = Vec::new();
    while !rest.is_empty() {
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(rest).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial response"),
        };
        let code = r.code.unwrap();
        statuses.push(code);
        let has = |name: &str, v: &str| {
            r.headers
                .iter()
                .any(|x| x.name.eq_ignore_ascii_case(name) && x.value == v.as_bytes())
        };
        rest = &rest[n..];
        match code {
            200 => {
                assert!(has("x-a", "1") && has("content-length", "5"));
                assert_eq!(&rest[..5], b"hello");
                rest = &rest[5..];
            }
            201 => {
                assert!(has("transfer-encoding", "chunked"));
                let (b, used) = decode_chunked(rest);
                assert_eq!(b, b"chunk");
                rest = &rest[used..];
            }
            204 => assert!(has("connection", "close")),
            _ => panic!("status {code}"),
        }
    }
    assert_eq!(statuses, vec![200, 201, 204]);
    assert!(s.handle_input(b"GET", &mut out).is_err());
}

#[test]
fn server_answers_expect_continue_and_rejects_bad_requests() {
    let mut s = Server::new(ServerConfig::default());
    let mut out = Out::default();
    s.handle_input(
        b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        &mut out,
    )
    .unwrap();
    assert_eq!(out.transmit, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.handle_input(b"abc", &mut out).unwrap();
    assert_eq!(out.events.last(), Some(&H1Event::Done { keep_alive: true }));

    let bad: Vec<(&[u8], H1Error)> = vec![
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            H1Error::ConflictingFraming,
        ),
        (
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            H1Error::UnsupportedTransferEncoding,
        ),
        (b"G@T / HTTP/1.1\r\n\r\n", H1Error::BadRequestLine),
        (b"GET / HTTP/2.0\r\n\r\n", H1Error::BadVersion),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1x\r\n",
            H1Error::BadChunkSize,
        ),
    ];
    for (wire, want) in bad {
        let mut s = Server::new(ServerConfig::default());
        assert_eq!(s.handle_input(wire, &mut out), Err(want));
    }
    let mut s = Server::new(ServerConfig {
        limits: Limits {
            max_pipelined: 2,
            ..Limits::default()
        },
    });
    assert_eq!(
        s.handle_input(&b"GET / HTTP/1.1\r\n\r\n".repeat(3), &mut out),
        Err(H1Error::TooManyPipelined)
    );
    // HEAD: headers only, body writes dropped.
    let mut s = Server::new(ServerConfig::default());
    let mut out = Out::default();
    s.handle_input(b"HEAD / HTTP/1.1\r\n\r\n", &mut out)
        .unwrap();
    let mut out = Out::default();
    s.respond(200, &[], BodyMode::ContentLength(4), &mut out)
        .unwrap();
    s.write_body(b"body", true, &mut out).unwrap();
    assert_eq!(
        out.transmit,
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"
    );
}

/// Client and server machines over in-memory byte pipes.
struct Pair {
    c: Client,
    s: Server,
    events_c: Vec<H1Event>,
    events_s: Vec<H1Event>,
}

impl Pair {
    fn new() -> Self {
        Pair {
            c: Client::new(ClientConfig::default()),
            s: Server::new(ServerConfig::default()),
            events_c: Vec::new(),
            events_s: Vec::new(),
        }
    }
    fn deliver_to_server(&mut self, out: Out) {
        self.events_c.extend(out.events);
        let mut o = Out::default();
        // Deliver in small pieces to exercise reassembly.
        for piece in out.transmit.chunks(7) {
            self.s.handle_input(piece, &mut o).unwrap();
        }
        self.events_s.extend(o.events);
        assert!(o.transmit.is_empty() || o.transmit.starts_with(b"HTTP/1.1 100"));
    }
    fn deliver_to_client(&mut self, out: Out) {
        self.events_s.extend(out.events);
        let mut o = Out::default();
        for piece in out.transmit.chunks(5) {
            self.c.handle_input(piece, &mut o).unwrap();
        }
        self.events_c.extend(o.events);
    }
}

#[test]
fn client_against_server_keep_alive() {
    let mut p = Pair::new();
    // 1: GET, content-length response.
    let mut out = Out::default();
    p.c.start(&RequestHead::new("GET", "/one", "local"), &mut out)
        .unwrap();
    p.deliver_to_server(out);
    let mut out = Out::default();
    p.s.respond(200, &[], BodyMode::ContentLength(3), &mut out)
        .unwrap();
    p.s.write_body(b"one", true, &mut out).unwrap();
    p.deliver_to_client(out);
    assert!(p.c.is_ready(), "keep-alive connection reusable");

    // 2: POST chunked, chunked response.
    let mut out = Out::default();
    let mut head = RequestHead::new("POST", "/two", "local");
    head.body = BodyMode::Chunked;
    p.c.start(&head, &mut out).unwrap();
    p.c.write_body(b"hello ", false, &mut out).unwrap();
    p.c.write_body(b"world", true, &mut out).unwrap();
    p.deliver_to_server(out);
    let mut out = Out::default();
    p.s.respond(200, &[h("X-R", "2")], BodyMode::Chunked, &mut out)
        .unwrap();
    p.s.write_body(b"two", false, &mut out).unwrap();
    p.s.write_body(b"!", true, &mut out).unwrap();
    p.deliver_to_client(out);
    assert!(p.c.is_ready());

    // 3: POST content-length, then the server closes.
    let mut out = Out::default();
    let mut head = RequestHead::new("POST", "/three", "local");
    head.body = BodyMode::ContentLength(4);
    head.headers.push(h("Connection", "close"));
    p.c.start(&head, &mut out).unwrap();
    p.c.write_body(b"data", true, &mut out).unwrap();
    p.deliver_to_server(out);
    let mut out = Out::default();
    p.s.respond(202, &[], BodyMode::ContentLength(0), &mut out)
        .unwrap();
    p.deliver_to_client(out);
    assert!(!p.c.is_ready());

    let s_ev = normalize(std::mem::take(&mut p.events_s));
    let bodies_s: Vec<_> = s_ev
        .iter()
        .filter_map(|e| match e {
            H1Event::Body { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(bodies_s, vec![b"hello world".to_vec(), b"data".to_vec()]);
    assert_eq!(
        s_ev.iter()
            .filter(|e| matches!(e, H1Event::RequestHead { .. }))
            .count(),
        3
    );
    let c_ev = normalize(std::mem::take(&mut p.events_c));
    let statuses: Vec<u16> = c_ev
        .iter()
        .filter_map(|e| match e {
            H1Event::ResponseHead { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![200, 200, 202]);
    let bodies_c: Vec<_> = c_ev
        .iter()
        .filter_map(|e| match e {
            H1Event::Body { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        bodies_c,
        vec![b"one".to_vec(), b"two!".to_vec(), b"".to_vec()]
    );
    let dones: Vec<_> = c_ev
        .iter()
        .filter(|e| matches!(e, H1Event::Done { .. }))
        .cloned()
        .collect();
    assert_eq!(
        dones,
        vec![
            H1Event::Done { keep_alive: true },
            H1Event::Done { keep_alive: true },
            H1Event::Done { keep_alive: false },
        ]
    );
}

#[test]
fn client_expect_continue_against_server() {
    let mut p = Pair::new();
    let mut out = Out::default();
    let mut head = RequestHead::new("PUT", "/e", "local");
    head.body = BodyMode::ContentLength(2);
    head.headers.push(h("Expect", "100-continue"));
    p.c.start(&head, &mut out).unwrap();
    let mut o = Out::default();
    p.s.handle_input(&out.transmit, &mut o).unwrap();
    assert_eq!(o.transmit, b"HTTP/1.1 100 Continue\r\n\r\n");
    let mut co = Out::default();
    p.c.handle_input(&o.transmit, &mut co).unwrap();
    assert!(co.events.is_empty(), "interim response skipped");
    let mut out = Out::default();
    p.c.write_body(b"ok", true, &mut out).unwrap();
    p.deliver_to_server(out);
    let mut out = Out::default();
    p.s.respond(204, &[], BodyMode::None, &mut out).unwrap();
    p.deliver_to_client(out);
    assert!(p.c.is_ready());
}

#[test]
fn cookie_jar() {
    let mut j = Jar::default();
    assert_eq!(j.render(), None);
    j.set_cookie("a=1; Path=/; HttpOnly").unwrap();
    j.set_cookie("b=\"two\"; Secure").unwrap();
    assert_eq!(j.render().as_deref(), Some("a=1; b=two"));
    j.set_cookie("a=3").unwrap();
    assert_eq!(j.get("a"), Some("3"));
    assert_eq!(j.render().as_deref(), Some("b=two; a=3"));
    j.set_cookie("b=gone; Max-Age=0").unwrap();
    assert_eq!(j.render().as_deref(), Some("a=3"));
    j.set_cookie("a=x; max-age=-5").unwrap();
    assert_eq!(j.render(), None);
    assert_eq!(j.set_cookie("novalue"), Err(H1Error::BadCookie));
    assert_eq!(j.set_cookie("=v"), Err(H1Error::BadCookie));
    assert_eq!(j.set_cookie("a=b c"), Err(H1Error::BadCookie));

    let mut small = Jar::new(2, 8);
    small.set_cookie("a=1").unwrap();
    small.set_cookie("b=2").unwrap();
    small.set_cookie("c=3").unwrap();
    assert_eq!(small.render().as_deref(), Some("b=2; c=3"));
    assert_eq!(small.set_cookie("long=123456789"), Err(H1Error::BadCookie));
    small.ingest(&[h("Set-Cookie", "d=4"), h("X", "y"), h("set-cookie", "bad")]);
    assert_eq!(small.render().as_deref(), Some("c=3; d=4"));
}

proptest! {
    /// Valid messages with a few random byte edits, fed split at a random
    /// point: never a panic, and whatever events come out are well formed.
    #[test]
    fn mutated_messages_never_panic(
        case in 0usize..9,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        split in any::<prop::sample::Index>(),
        server in any::<bool>(),
    ) {
        let cases = response_cases();
        let mut wire = if server {
            b"POST /b HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n3;e\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.0\r\nContent-Length: 2\r\n\r\nxy".to_vec()
        } else {
            cases[case].wire.to_vec()
        };
        for (at, byte, kind) in edits {
            let i = at.index(wire.len() + 1);
            match kind {
                0 if i < wire.len() => wire[i] = byte,
                1 => wire.insert(i, byte),
                _ if i < wire.len() => { wire.remove(i); }
                _ => {}
            }
        }
        let split = split.index(wire.len() + 1);
        let mut out = Out::default();
        if server {
            let mut s = Server::new(ServerConfig::default());
            let ok = s.handle_input(&wire[..split], &mut out).is_ok()
                && s.handle_input(&wire[split..], &mut out).is_ok();
            if ok {
                let _ = s.handle_eof();
            }
        } else {
            let (mut c, _) = get_client(cases[case].method);
            let ok = c.handle_input(&wire[..split], &mut out).is_ok()
                && c.handle_input(&wire[split..], &mut out).is_ok();
            if ok {
                let _ = c.handle_eof(&mut out);
            }
        }
        let _ = normalize(out.events);
    }
}

#[test]
fn next_part_frames_further_parts_of_a_chunked_body_that_our_decoder_splits() {
    let mut a = multipart::Spec::new("a");
    a.boundary = "bnd".into();
    let mut b = a.clone();
    b.name = "b".into();
    b.filename = Some("b.bin".into());
    let mut head = RequestHead::new("POST", "/p", "h");
    head.body = BodyMode::Chunked;
    head.multipart = Some(a.clone());
    let mut c = Client::new(ClientConfig::default());
    let mut out = Out::default();
    c.start(&head, &mut out).unwrap();
    c.write_body(b"first", false, &mut out).unwrap();
    c.next_part(&b).unwrap();
    // The header of b goes out with the next payload.
    let before = out.transmit.len();
    c.next_part(&a).unwrap();
    assert_eq!(out.transmit.len(), before);
    c.write_body(b"third", true, &mut out).unwrap();
    assert!(c.is_request_sent());
    assert!(c.next_part(&a).is_err(), "the body is over");
    let wire = out.transmit;
    let body_at = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let (body, used) = decode_chunked(&wire[body_at..]);
    assert_eq!(used, wire.len() - body_at);
    assert_eq!(
        String::from_utf8(body.clone()).unwrap(),
        "--bnd\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfirst\r\n\
         --bnd\r\nContent-Disposition: form-data; name=\"b\"; filename=\"b.bin\"\r\n\r\n\
         \r\n--bnd\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nthird\r\n--bnd--\r\n"
    );
    let mut d = multipart::Decoder::new("bnd").unwrap();
    let mut ev = Vec::new();
    d.feed(&body, &mut ev).unwrap();
    d.finish().unwrap();
    let data: Vec<Vec<u8>> = ev
        .into_iter()
        .filter_map(|e| match e {
            multipart::Event::Data { data, .. } => Some(data),
            _ => None,
        })
        .collect();
    assert_eq!(data, [b"first".to_vec(), vec![], b"third".to_vec()]);

    // A content-length body cannot grow parts; another boundary is refused.
    let mut head = RequestHead::new("POST", "/p", "h");
    head.body = BodyMode::ContentLength(3);
    head.multipart = Some(a.clone());
    let mut c = Client::new(ClientConfig::default());
    let mut out = Out::default();
    c.start(&head, &mut out).unwrap();
    assert!(matches!(c.next_part(&b), Err(H1Error::InvalidState(_))));
    let mut head = RequestHead::new("POST", "/p", "h");
    head.body = BodyMode::Chunked;
    head.multipart = Some(a.clone());
    let mut c = Client::new(ClientConfig::default());
    c.start(&head, &mut out).unwrap();
    let mut other = b.clone();
    other.boundary = "zzz".into();
    assert_eq!(c.next_part(&other), Err(H1Error::MultipartBoundary));
}

/// A decoded multipart part: its header fields and its bytes.
type DecodedPart = (Vec<(String, String)>, Vec<u8>);

proptest! {
    /// Any parts written with `multipart::Writer` (each with its own name,
    /// filename and content type, split into arbitrary `data` calls) come
    /// back from `multipart::Decoder`, fed in arbitrary pieces, as the same
    /// parts with the same bytes.
    #[test]
    fn multipart_writer_and_decoder_round_trip(
        parts in prop::collection::vec(
            (
                "[a-z][a-z0-9_]{0,8}",
                prop::option::of("[a-z0-9]{1,8}\\.bin"),
                prop::option::of("(text/plain|application/octet-stream)"),
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..4),
            ),
            1..5,
        ),
        cut in 1usize..64,
    ) {
        let spec = |(name, filename, ct, _): &(String, Option<String>, Option<String>, Vec<Vec<u8>>)| multipart::Spec {
            boundary: "ss-proptest-boundary-5f3a".into(),
            name: name.clone(),
            filename: filename.clone(),
            content_type: ct.clone(),
        };
        let mut w = multipart::Writer::new(&spec(&parts[0])).unwrap();
        let mut body = vec![];
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                w.next_part(&spec(p)).unwrap();
            }
            for piece in &p.3 {
                w.data(piece, &mut body).unwrap();
            }
        }
        w.finish(&mut body);
        let mut dec = multipart::Decoder::new("ss-proptest-boundary-5f3a").unwrap();
        let mut events = vec![];
        for piece in body.chunks(cut) {
            dec.feed(piece, &mut events).unwrap();
        }
        prop_assert!(dec.is_done());
        let mut got: Vec<DecodedPart> = vec![];
        for ev in events {
            match ev {
                multipart::Event::Part { headers } => got.push((headers, vec![])),
                multipart::Event::Data { data, .. } => got.last_mut().unwrap().1.extend(data),
                multipart::Event::End => {}
            }
        }
        prop_assert_eq!(got.len(), parts.len());
        for ((headers, data), p) in got.iter().zip(&parts) {
            let cd = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-disposition"));
            let cd = &cd.expect("content-disposition").1;
            prop_assert!(cd.contains(&format!("name=\"{}\"", p.0)), "{}", cd);
            if let Some(f) = &p.1 {
                prop_assert!(cd.contains(&format!("filename=\"{f}\"")), "{}", cd);
            }
            let ct = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-type")).map(|h| &h.1);
            prop_assert_eq!(ct, p.2.as_ref());
            prop_assert_eq!(data, &p.3.concat());
        }
    }
}
