//! Drive one engine with an arbitrary sequence of application calls and
//! adapter inputs decoded from bytes, checking its invariants. Shared by the
//! cargo-fuzz target `engine_inputs` and a proptest, so CI exercises it too.
//!
//! The policy holds raw, HTTP/1.1 client and server, HTTP/2, WebSocket,
//! MQTT and TLS streamtypes. Besides arbitrary bytes the harness feeds
//! structured-ish input so the fuzzer gets past parsing: canned HTTP request /
//! response fragments, and real TLS flights (captured once, [`tls_fixture`]:
//! an HTTPS exchange, op 22, and an HTTP/2-over-TLS one, op 23) whole, cut or
//! mutated. The engine's TLS provider is seeded and reset for each run, so a
//! run whose first TLS connection is a `tget` stream sends the very
//! ClientHello the capture answered and can complete the handshake.
//!
//! Invariants checked: legal state transitions (advisory `User` states aside),
//! no event for a stream that is not alive (never created, or past
//! DESTROYING), no empty transmit, a sane `poll_timeout`, bounded streams, and
//! nothing left (streams, connections) once every stream is destroyed and the
//! keep-alive period has passed.

use crate::tls_provider::{resettable_provider, SeedHandle};
use ss_core::engine::SystemBlob;
use ss_core::policy::{
    Cert, HttpPolicy, MetadataDecl, MqttPolicy, Policy, Protocol, StreamType, TrustStore, WsPolicy,
};
use ss_core::proto::tls::rustls::crypto::CryptoProvider;
use ss_core::{
    Action, ConnId, Engine, EngineConfig, Event, Flags, ListenerId, RetryPolicy, StreamId,
    StreamState,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Wall clock given to engines: 2025-01-01, inside the fixture's validity.
pub const UNIX_NOW: u64 = 1_735_689_600;
/// Seed of the engines' TLS provider.
const TLS_SEED: u64 = 7;

/// A throwaway PKI and a TLS exchange captured once per process.
#[derive(Debug)]
pub struct TlsFixture {
    /// The CA certificate (DER), in the `ts` trust store.
    pub ca_der: Vec<u8>,
    /// The server leaf for `127.0.0.1` (DER), signed by the CA.
    pub leaf_der: Vec<u8>,
    /// The leaf's private key (PKCS#8 DER).
    pub leaf_key_der: Vec<u8>,
    /// What a `tsrv` server sent a `tget` client, transmit by transmit, for a
    /// GET answered `200` with body `hello`.
    pub server_flight: Vec<Vec<u8>>,
    /// What the client sent, transmit by transmit.
    pub client_flight: Vec<Vec<u8>>,
    /// The same for a `t2get` client and a `t2srv` server: TLS with ALPN
    /// `h2`, then HTTP/2 frames.
    pub h2_server_flight: Vec<Vec<u8>>,
    /// What the `t2get` client sent.
    pub h2_client_flight: Vec<Vec<u8>>,
}

fn pki() -> &'static (Vec<u8>, Vec<u8>, Vec<u8>) {
    static PKI: OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = OnceLock::new();
    PKI.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "ss fuzz CA");
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("sign leaf");
        (
            ca_cert.der().to_vec(),
            leaf.der().to_vec(),
            leaf_key.serialize_der(),
        )
    })
}

/// The fixture, made on first use (certificates, then one HTTPS exchange).
pub fn tls_fixture() -> &'static TlsFixture {
    static FIXTURE: OnceLock<TlsFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (ca_der, leaf_der, leaf_key_der) = pki().clone();
        let (server_flight, client_flight) = capture("tget", "tsrv");
        let (h2_server_flight, h2_client_flight) = capture("t2get", "t2srv");
        TlsFixture {
            ca_der,
            leaf_der,
            leaf_key_der,
            server_flight,
            client_flight,
            h2_server_flight,
            h2_client_flight,
        }
    })
}

/// Run a `client` streamtype's engine against a `server` streamtype's engine
/// in memory (a GET answered 200 `hello`) and record both directions.
fn capture(client: &str, server: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (provider, seed) = kept_provider();
    seed.reset(TLS_SEED);
    let mut c = new_engine(provider);
    // The server's randomness is seeded too, so a run whose first TLS
    // session is an accepted one answers the client's flight as here.
    let (server_provider, server_seed) = kept_provider();
    server_seed.reset(TLS_SEED);
    let mut s = new_engine(server_provider);
    let now = Instant::now();
    let (mut s2c, mut c2s) = (vec![], vec![]);
    s.create(now, server).expect("server streamtype");
    let cs = c.create(now, client).expect("client streamtype");
    c.request_tx(now, cs).expect("request");
    let mut listener = None;
    let mut links: Vec<(ConnId, ConnId)> = vec![];
    for _ in 0..1000 {
        let mut any = false;
        while let Some(a) = s.poll_action() {
            any = true;
            match a {
                Action::Listen { listener: l, .. } => {
                    listener = Some(l);
                    s.handle_listening(now, l, "127.0.0.1:1");
                }
                Action::Transmit { conn, data } => {
                    s.handle_sent(now, conn, data.len());
                    if let Some(&(cc, _)) = links.iter().find(|(_, sc)| *sc == conn) {
                        s2c.push(data.clone());
                        c.handle_data(now, cc, &data);
                    }
                }
                _ => {}
            }
        }
        while let Some(a) = c.poll_action() {
            any = true;
            match a {
                Action::Connect { conn, .. } => {
                    let l = listener.expect("listening before the client connects");
                    let sc = s.handle_accepted(now, l).expect("accepted");
                    links.push((conn, sc));
                    c.handle_connected(now, conn);
                }
                Action::Transmit { conn, data } => {
                    c.handle_sent(now, conn, data.len());
                    if let Some(&(_, sc)) = links.iter().find(|(cc, _)| *cc == conn) {
                        c2s.push(data.clone());
                        s.handle_data(now, sc, &data);
                    }
                }
                _ => {}
            }
        }
        while let Some(ev) = s.poll_event() {
            any = true;
            match ev {
                Event::State {
                    stream,
                    state: StreamState::ServerTxn,
                    ..
                } => {
                    s.server_ack(stream, 200).expect("ack");
                    s.request_tx_len(now, stream, 5).expect("len");
                }
                Event::Writable { stream, .. } => {
                    s.write(now, stream, b"hello", Flags::SOM | Flags::EOM)
                        .expect("write");
                }
                _ => {}
            }
        }
        while c.poll_event().is_some() {
            any = true;
        }
        if !any {
            break;
        }
    }
    assert!(s2c.len() >= 2, "TLS capture: no server flight");
    (s2c, c2s)
}

fn new_engine(provider: Arc<CryptoProvider>) -> Engine {
    let mut e = Engine::new(
        fuzz_policy(),
        EngineConfig {
            seed: 1,
            max_streams: 64,
            tls_provider: Some(provider),
            ..Default::default()
        },
    );
    e.set_unix_time(UNIX_NOW);
    e
}

/// The policy the fuzzer drives: every client and server shape the engine
/// knows, raw, HTTP/1.1 and TLS.
pub fn fuzz_policy() -> Policy {
    let retry = RetryPolicy {
        name: "r".into(),
        backoff_ms: vec![10, 20, 40],
        conceal: 4,
        jitter_pc: Some(30),
        svalidping_s: None,
        svalidhup_s: None,
    };
    let base = StreamType {
        name: "c".into(),
        endpoint: Some("127.0.0.1".into()),
        port: 1,
        protocol: Protocol::Raw,
        retry: Some("r".into()),
        timeout_ms: Some(50),
        ..Default::default()
    };
    let mut v = vec![base.clone()];
    v.push(StreamType {
        name: "nailed".into(),
        nailed_up: true,
        ..base.clone()
    });
    v.push(StreamType {
        name: "opp".into(),
        opportunistic: true,
        retry: None,
        ..base.clone()
    });
    v.push(StreamType {
        name: "templ".into(),
        endpoint: Some("${h}.example".into()),
        metadata: vec![MetadataDecl {
            name: "h".into(),
            header: None,
        }],
        ..base.clone()
    });
    v.push(StreamType {
        name: "unix".into(),
        endpoint: Some("+/tmp/x".into()),
        ..base.clone()
    });
    v.push(StreamType {
        name: "srv".into(),
        server: true,
        ..base.clone()
    });
    let md = |name: &str, header: Option<&str>| MetadataDecl {
        name: name.into(),
        header: header.map(Into::into),
    };
    let h1 = StreamType {
        protocol: Protocol::H1,
        ..base.clone()
    };
    let get = StreamType {
        name: "get".into(),
        metadata: vec![
            md("id", None),
            md("ctype", Some("content-type:")),
            md("tag", Some("x-tag:")),
        ],
        http: HttpPolicy {
            method: Some("GET".into()),
            url: Some("items/${id}?x=1".into()),
            resp_map: vec![(530, 1530), (202, 1202)],
            allow_redirects: true,
            cookies: true,
            ..Default::default()
        },
        ..h1.clone()
    };
    v.push(get.clone());
    v.push(StreamType {
        name: "post".into(),
        metadata: vec![md("mime", Some("content-type:"))],
        http: HttpPolicy {
            method: Some("POST".into()),
            url: Some("/up".into()),
            auth_header: Some("authorization:".into()),
            auth_preamble: Some("bearer ".into()),
            dsn_header: Some("x-dsn:".into()),
            cookies: true,
            ..Default::default()
        },
        ..h1.clone()
    });
    v.push(StreamType {
        name: "upload".into(),
        http: HttpPolicy {
            method: Some("POST".into()),
            url: Some("/form".into()),
            multipart_name: Some("file".into()),
            multipart_filename: Some("a.txt".into()),
            multipart_content_type: Some("text/plain".into()),
            ..Default::default()
        },
        ..h1.clone()
    });
    v.push(StreamType {
        name: "mpin".into(),
        http: HttpPolicy {
            url: Some("/mp".into()),
            multipart_ss_in: true,
            ..Default::default()
        },
        ..h1.clone()
    });
    v.push(StreamType {
        name: "cpd".into(),
        http: HttpPolicy {
            url: Some("/gen".into()),
            expect: Some(204),
            fail_redirect: true,
            ..Default::default()
        },
        ..h1.clone()
    });
    let hsrv = StreamType {
        name: "hsrv".into(),
        server: true,
        port: 0,
        metadata: vec![
            md("mime", Some("content-type:")),
            md("method", None),
            md("path", None),
            md("q", None),
            md("agent", Some("user-agent:")),
        ],
        ..h1.clone()
    };
    let hsrv = StreamType {
        // Also accepts WebSocket upgrades asking for "chat".
        ws: WsPolicy {
            subprotocol: Some("chat".into()),
            ..Default::default()
        },
        ..hsrv
    };
    v.push(hsrv.clone());
    v.push(StreamType {
        name: "tget".into(),
        tls: true,
        tls_trust_store: Some("ts".into()),
        ..get.clone()
    });
    v.push(StreamType {
        name: "tsrv".into(),
        tls: true,
        server_cert: Some("leaf".into()),
        server_key: Some("leaf_key".into()),
        ..hsrv.clone()
    });
    v.push(StreamType {
        name: "t2get".into(),
        protocol: Protocol::H2,
        tls: true,
        tls_trust_store: Some("ts".into()),
        ..get
    });
    v.push(StreamType {
        name: "t2srv".into(),
        protocol: Protocol::H2,
        tls: true,
        server_cert: Some("leaf".into()),
        server_key: Some("leaf_key".into()),
        endpoint: Some("127.0.0.1".into()),
        port: 2,
        ..hsrv
    });
    v.push(StreamType {
        name: "wsc".into(),
        protocol: Protocol::Ws,
        http: HttpPolicy {
            url: Some("/ws".into()),
            ..Default::default()
        },
        ws: WsPolicy {
            subprotocol: Some("chat".into()),
            binary: true,
            ..Default::default()
        },
        ..h1.clone()
    });
    v.push(StreamType {
        name: "mq".into(),
        protocol: Protocol::Mqtt,
        nailed_up: true,
        mqtt: MqttPolicy {
            topic: Some("t/${h}".into()),
            subscribe: Some("t/#".into()),
            qos: 1,
            keep_alive: 1,
            will_topic: Some("w".into()),
            birth_topic: Some("b".into()),
            ..Default::default()
        },
        metadata: vec![md("h", None)],
        ..base.clone()
    });
    let (ca, leaf, key) = pki().clone();
    let cert = |name: &str, der: Vec<u8>| Cert {
        name: name.into(),
        der,
    };
    Policy {
        retry: vec![retry],
        certs: vec![cert("ca", ca), cert("leaf", leaf), cert("leaf_key", key)],
        trust_stores: vec![TrustStore {
            name: "ts".into(),
            stack: vec!["ca".into()],
        }],
        streamtypes: v,
        ..Default::default()
    }
}

/// HTTP/1.1 fragments, requests and responses, whole and in pieces, valid and
/// not, for the "canned bytes" operation.
pub const FRAGMENTS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 204 No Content\r\n",
    b"HTTP/1.1 302 Found\r\nLocation: /b\r\n",
    b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:1/x\r\n",
    b"HTTP/1.1 303 See Other\r\nLocation: https://127.0.0.1/s\r\n",
    b"Location: http://other.example:99/y\r\n",
    b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\n",
    b"HTTP/1.1 429 Slow\r\nRetry-After: 99999999\r\n",
    b"HTTP/1.1 530 Mapped\r\n",
    b"HTTP/1.1 202 Mapped\r\n",
    b"HTTP/1.1 404 Not Found\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Set-Cookie: a=b; Path=/\r\n",
    b"Set-Cookie: s=1; Max-Age=0\r\n",
    b"Content-Type: multipart/form-data; boundary=XX\r\n",
    b"Content-Type: text/plain\r\n",
    b"x-tag: v\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"\r\n",
    b"hello",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"ff;ext=1\r\n",
    b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nval\r\n",
    b"--XX\r\nContent-Type: text/plain\r\n\r\nv2",
    b"\r\n--XX--\r\n",
    b"\x00\xff\r\n\r\n junk",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nLocation: /r\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: 40\r\n\r\n--XX\r\n\r\nab\r\n--XX\r\n\r\ncd\r\n--XX--\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /p?q=1&z HTTP/1.1\r\nHost: a\r\nUser-Agent: f\r\n\r\n",
    b"POST /up?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"PUT /x HTTP/1.1\r\n",
    b"Authorization: Bearer x\r\n",
    b"Expect: 100-continue\r\n",
    b"HEAD / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    // WebSocket: an upgrade request (RFC 6455 key), a 101, frames both ways.
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
    b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
    b"\x01\x83\x00\x00\x00\x00abc",
    b"\x80\x82\x00\x00\x00\x00de",
    b"\x81\x05Hello",
    b"\x89\x80\x01\x02\x03\x04",
    b"\x88\x82\x00\x00\x00\x00\x03\xe8",
    b"\x88\x02\x03\xe8",
    // MQTT from a broker: CONNACK (accepted, refused), SUBACK, PUBACK,
    // PUBLISH QoS 0 and 1, PINGRESP, a truncated header.
    b"\x20\x02\x00\x00",
    b"\x20\x02\x00\x05",
    b"\x90\x03\x00\x01\x01",
    b"\x40\x02\x00\x01",
    b"\x30\x07\x00\x03t/xhi",
    b"\x32\x09\x00\x03t/x\x00\x07hi",
    b"\xd0\x00",
    b"\x30\xff\xff\xff",
];

/// What one run saw, for assertions in tests.
#[derive(Debug, Default)]
pub struct Outcome {
    /// State events seen.
    pub states: usize,
    /// Actions seen.
    pub actions: usize,
    /// Payload bytes delivered to streams.
    pub rx_bytes: usize,
    /// States seen per stream, in order.
    pub trace: BTreeMap<StreamId, Vec<StreamState>>,
}

thread_local! {
    /// One seeded provider per thread, reset for each run (making one per run
    /// would leak two small allocations each time).
    static PROVIDER: (Arc<CryptoProvider>, SeedHandle) = kept_provider();
}

/// A seeded provider that stays reachable for the life of the process, so
/// LeakSanitizer (cargo fuzz) does not report its deliberately leaked parts.
fn kept_provider() -> (Arc<CryptoProvider>, SeedHandle) {
    static KEEP: Mutex<Vec<Arc<CryptoProvider>>> = Mutex::new(Vec::new());
    let (provider, seed) = resettable_provider(TLS_SEED);
    KEEP.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(provider.clone());
    (provider, seed)
}

/// A piece of a captured TLS flight: `b` picks the piece and whether it goes
/// whole, cut in half, or with one bit flipped.
fn flight_piece(flight: &[Vec<u8>], b: u8) -> Vec<u8> {
    let Some(p) = flight.get((b >> 3) as usize % flight.len().max(1)) else {
        return vec![];
    };
    let mut p = p.clone();
    match b & 7 {
        0..=3 => p,
        4 => p[..p.len() / 2].to_vec(),
        5 => p[p.len() / 2..].to_vec(),
        _ => {
            if !p.is_empty() {
                let i = (b as usize * 131) % p.len();
                p[i] ^= 1 << (b & 7);
            }
            p
        }
    }
}

/// Run the engine over `data`; panics if an invariant breaks.
pub fn run(data: &[u8]) -> Outcome {
    let fixture = tls_fixture();
    let provider = PROVIDER.with(|(p, seed)| {
        seed.reset(TLS_SEED);
        p.clone()
    });
    let mut e = new_engine(provider);
    let names: Vec<String> = e
        .policy()
        .streamtypes
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let mut now = Instant::now();
    let mut streams: Vec<StreamId> = vec![];
    let mut conns: Vec<ConnId> = vec![];
    let mut accepted: BTreeSet<ConnId> = BTreeSet::new();
    let mut listeners: Vec<ListenerId> = vec![];
    let mut last: BTreeMap<StreamId, Option<StreamState>> = BTreeMap::new();
    let mut alive: BTreeSet<StreamId> = BTreeSet::new();
    let mut dead: BTreeSet<StreamId> = BTreeSet::new();
    let mut out = Outcome::default();

    let pick =
        |v: &[u64], b: u8| -> Option<u64> { (!v.is_empty()).then(|| v[b as usize % v.len()]) };
    for op in data.chunks(3) {
        let (code, a, b) = (op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0));
        let sid = pick(&streams.iter().map(|s| s.0).collect::<Vec<_>>(), a).map(StreamId);
        let cid = pick(&conns.iter().map(|c| c.0).collect::<Vec<_>>(), a).map(ConnId);
        match code % 33 {
            0 => {
                if let Ok(s) = e.create(now, &names[a as usize % names.len()]) {
                    streams.push(s);
                    alive.insert(s);
                }
            }
            1 => drop(sid.map(|s| e.client_connect(now, s))),
            2 => drop(sid.map(|s| e.request_tx(now, s))),
            3 => drop(sid.map(|s| e.write(now, s, &vec![b; b as usize], Flags(b as u32 & 3)))),
            4 => drop(sid.map(|s| e.destroy(now, s))),
            5 => drop(sid.map(|s| e.set_metadata(s, "h", &vec![b'a'; b as usize % 8]))),
            6 => drop(sid.map(|s| e.start_timeout(now, s, b as u32))),
            7 => {
                now += Duration::from_millis(a as u64 * 3);
                e.handle_timeout(now);
            }
            8 => drop(cid.map(|c| e.handle_connected(now, c))),
            9 => drop(cid.map(|c| e.handle_connect_failed(now, c, "fuzz"))),
            10 => drop(cid.map(|c| e.handle_data(now, c, &vec![b; a as usize]))),
            11 => drop(cid.map(|c| e.handle_closed(now, c))),
            12 => drop(cid.map(|c| e.handle_sent(now, c, b as usize * 7))),
            13 => drop(cid.map(|c| {
                let ips: Vec<std::net::IpAddr> = (0..b % 3).map(|i| [10, 0, 0, i].into()).collect();
                e.handle_resolved(now, c, &ips)
            })),
            14 => {
                if let Some(l) = pick(&listeners.iter().map(|l| l.0).collect::<Vec<_>>(), a) {
                    if let Some(c) = e.handle_accepted(now, ListenerId(l)) {
                        conns.push(c);
                        accepted.insert(c);
                    }
                }
            }
            15 => drop(sid.map(|s| e.disconnect(now, s))),
            16 => drop(sid.map(|s| e.request_tx_len(now, s, b as u64))),
            17 => drop(sid.map(|s| e.cancel_timeout(s))),
            18 => {
                if let Some(l) = pick(&listeners.iter().map(|l| l.0).collect::<Vec<_>>(), a) {
                    if b & 1 == 0 {
                        e.handle_listening(now, ListenerId(l), "127.0.0.1:1");
                    } else {
                        e.handle_listen_failed(now, ListenerId(l), "fuzz");
                    }
                }
            }
            19 => {
                // Garbage ids must be ignored, never panic.
                e.handle_data(now, ConnId(a as u64 * 1000 + b as u64), b"x");
                let _ = e.destroy(now, StreamId(b as u64 * 1000));
            }
            // Canned HTTP bytes, one fragment or two in a row.
            20 | 21 => drop(cid.map(|c| {
                e.handle_data(now, c, FRAGMENTS[b as usize % FRAGMENTS.len()]);
                if code % 33 == 21 {
                    e.handle_data(now, c, FRAGMENTS[(b as usize / 7) % FRAGMENTS.len()]);
                }
            })),
            // A piece of the captured TLS exchange: the server's flight to a
            // client connection, the client's to an accepted one.
            // 22: the HTTPS (HTTP/1.1) exchange; 23: the HTTP/2 one.
            22 | 23 => drop(cid.map(|c| {
                let h2 = code % 33 == 23;
                let flight = match (accepted.contains(&c), h2) {
                    (true, false) => &fixture.client_flight,
                    (false, false) => &fixture.server_flight,
                    (true, true) => &fixture.h2_client_flight,
                    (false, true) => &fixture.h2_server_flight,
                };
                let piece = flight_piece(flight, b);
                if !piece.is_empty() {
                    e.handle_data(now, c, &piece);
                }
            })),
            24 => drop(sid.map(|s| {
                let codes = [0, 200, 201, 204, 302, 304, 404, 500, 100, -1, 999, 1000];
                let code = codes.get(b as usize % 16).copied().unwrap_or(b as i32 * 5);
                e.server_ack(s, code)
            })),
            25 => drop(sid.map(|s| {
                let names = ["mime", "method", "path", "id", "ctype", "tag", "agent", "q"];
                let v: &[u8] = match b >> 6 {
                    0 => b"text/plain",
                    1 => b"multipart/form-data; boundary=XX",
                    2 => b"a\r\nx-injected: 1",
                    _ => b"",
                };
                e.set_metadata(s, names[b as usize % names.len()], v)
            })),
            26 => drop(sid.map(|s| {
                let f = if b & 1 == 1 {
                    Flags::SOM | Flags::EOM
                } else {
                    Flags::EOM
                };
                e.write(now, s, &vec![b'z'; (b >> 1) as usize], f)
            })),
            27 => {
                let blob = match b & 3 {
                    0 => SystemBlob::Auth(0),
                    1 => SystemBlob::Auth(b >> 6),
                    2 => SystemBlob::DeviceSerial,
                    _ => SystemBlob::DeviceType,
                };
                let _ = e.set_system_blob(blob, &vec![b'k'; a as usize % 40]);
            }
            28 => {
                now += Duration::from_secs(a as u64 % 16);
                e.handle_timeout(now);
            }
            29 => drop(cid.map(|c| {
                // Arbitrary bytes of a TLS-looking record.
                let mut rec = vec![0x16 + (b % 8), 3, 3, 0, a];
                rec.extend((0..a).map(|i| i.wrapping_mul(b)));
                e.handle_data(now, c, &rec)
            })),
            30 => drop(sid.map(|s| e.request_tx_len(now, s, (a as u64) << (b % 24)))),
            31 => drop(sid.map(|s| e.set_rx_paused(now, s, b & 1 == 1))),
            _ => drop(sid.map(|s| e.set_metadata(s, "id", &vec![b'0' + b % 10; a as usize % 5]))),
        }
        while let Some(act) = e.poll_action() {
            out.actions += 1;
            match act {
                Action::Connect { conn, .. } | Action::Resolve { conn, .. } => {
                    if !conns.contains(&conn) {
                        conns.push(conn)
                    }
                }
                Action::Close { conn } => conns.retain(|c| *c != conn),
                Action::Listen { listener, .. } => listeners.push(listener),
                Action::StopListening { listener } => listeners.retain(|l| *l != listener),
                Action::Transmit { data, .. } => assert!(!data.is_empty(), "empty transmit"),
                Action::SetSocketOptions { .. } | Action::PauseReading { .. } => {}
            }
        }
        while let Some(ev) = e.poll_event() {
            check_event(
                &ev,
                &mut alive,
                &mut dead,
                &mut streams,
                &mut last,
                &mut out,
            );
        }
        if let Some(t) = e.poll_timeout() {
            assert!(
                t >= now - Duration::from_secs(3600),
                "timer in the distant past"
            );
        }
        assert!(e.stream_count() <= 64);
    }
    // Destroying everything leaves nothing behind...
    for s in streams.clone() {
        let _ = e.destroy(now, s);
    }
    while let Some(ev) = e.poll_event() {
        check_event(
            &ev,
            &mut alive,
            &mut dead,
            &mut streams,
            &mut last,
            &mut out,
        );
    }
    assert_eq!(e.stream_count(), 0, "streams leaked");
    // ...once idle kept-alive connections, which belong to no stream, expire.
    now += e.config().keepalive_idle + Duration::from_secs(1);
    e.handle_timeout(now);
    while let Some(act) = e.poll_action() {
        if let Action::Transmit { data, .. } = act {
            assert!(!data.is_empty(), "empty transmit");
        }
    }
    assert!(
        e.poll_event().is_none(),
        "event after everything was destroyed"
    );
    assert_eq!(e.conn_count(), 0, "connections leaked");
    out
}

/// Check one event against what the harness knows of the streams.
fn check_event(
    ev: &Event,
    alive: &mut BTreeSet<StreamId>,
    dead: &mut BTreeSet<StreamId>,
    streams: &mut Vec<StreamId>,
    last: &mut BTreeMap<StreamId, Option<StreamState>>,
    out: &mut Outcome,
) {
    if let Event::Accepted { server, stream } = ev {
        assert!(alive.contains(server), "accept on dead server {server}");
        assert!(
            !dead.contains(stream) && !alive.contains(stream),
            "accepted stream id {stream} reused"
        );
        alive.insert(*stream);
        streams.push(*stream);
        return;
    }
    let stream = ev.stream();
    assert!(
        !dead.contains(&stream),
        "{stream}: event after DESTROYING: {ev:?}"
    );
    assert!(
        alive.contains(&stream),
        "{stream}: event for a stream never created: {ev:?}"
    );
    match ev {
        Event::State { state, .. } => {
            let state = *state;
            out.states += 1;
            out.trace.entry(stream).or_default().push(state);
            let prev = last.get(&stream).copied().flatten();
            assert!(
                state.is_legal_after(prev),
                "{stream}: illegal {prev:?} -> {state:?}"
            );
            // Policy-mapped (`User`) states are advisory: the lifecycle goes
            // on from the previous state.
            if state != StreamState::User {
                last.insert(stream, Some(state));
            }
            if state == StreamState::Destroying {
                streams.retain(|s| *s != stream);
                alive.remove(&stream);
                dead.insert(stream);
            }
        }
        Event::Rx { data, .. } => out.rx_bytes += data.len(),
        _ => {}
    }
}
