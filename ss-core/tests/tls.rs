//! proto::tls: two in-memory sessions pumped against each other, with
//! throwaway certificates from rcgen carried in a policy built in code.

use proptest::prelude::*;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use ss_core::policy::{Cert, Policy, StreamType, TrustStore};
use ss_core::proto::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use ss_core::proto::tls::{TlsContext, TlsError, TlsSession, WallClock};
use std::sync::{Arc, OnceLock};

/// 2025-01-01T00:00:00Z: inside every test certificate's validity.
const NOW: u64 = 1_735_689_600;
/// 2031-01-01: after the leaves' notAfter (2030-01-01).
const LATER: u64 = 1_924_992_000;

/// A CA and what it issued.
struct Pki {
    ca: Vec<u8>,
    other_ca: Vec<u8>,
    leaf: Vec<u8>,
    leaf_key: Vec<u8>,
    client: Vec<u8>,
    client_key: Vec<u8>,
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().expect("ca key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    (p, key)
}

fn issue(names: &[&str], issuer: &Issuer<'_, KeyPair>) -> (Vec<u8>, Vec<u8>) {
    let key = KeyPair::generate().expect("leaf key");
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    p.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("client"),
    );
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2030, 1, 1);
    let cert = p.signed_by(&key, issuer).expect("sign leaf");
    (cert.der().to_vec(), key.serialize_der())
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let (ca_p, ca_k) = ca("Test CA");
        let ca_der = ca_p.self_signed(&ca_k).expect("ca").der().to_vec();
        let (o_p, o_k) = ca("Other CA");
        let other_ca = o_p.self_signed(&o_k).expect("other ca").der().to_vec();
        let issuer = Issuer::new(ca_p, ca_k);
        let (leaf, leaf_key) = issue(&["localhost", "127.0.0.1"], &issuer);
        let (client, client_key) = issue(&[], &issuer);
        Pki {
            ca: ca_der,
            other_ca,
            leaf,
            leaf_key,
            client,
            client_key,
        }
    })
}

fn cert(name: &str, der: &[u8]) -> Cert {
    Cert {
        name: name.into(),
        der: der.to_vec(),
    }
}

fn policy() -> Policy {
    let p = pki();
    Policy {
        certs: vec![
            cert("ca", &p.ca),
            cert("other_ca", &p.other_ca),
            cert("leaf", &p.leaf),
            cert("leaf_key", &p.leaf_key),
        ],
        trust_stores: vec![
            TrustStore {
                name: "ts".into(),
                stack: vec!["ca".into()],
            },
            TrustStore {
                name: "wrong".into(),
                stack: vec!["other_ca".into()],
            },
        ],
        ..Default::default()
    }
}

fn client_st(trust: &str) -> StreamType {
    StreamType {
        name: "cli".into(),
        tls: true,
        tls_trust_store: Some(trust.into()),
        ..Default::default()
    }
}

fn server_st() -> StreamType {
    StreamType {
        name: "srv".into(),
        server: true,
        tls: true,
        server_cert: Some("leaf".into()),
        server_key: Some("leaf_key".into()),
        ..Default::default()
    }
}

fn ctx(now: u64) -> TlsContext {
    let clock = WallClock::new();
    clock.set_unix_secs(now);
    TlsContext::with_default_provider(clock)
}

/// A client and a server session, the bytes in flight and what each received.
struct Pair {
    c: TlsSession,
    s: TlsSession,
    to_s: Vec<u8>,
    to_c: Vec<u8>,
    c_plain: Vec<u8>,
    s_plain: Vec<u8>,
}

#[derive(Debug)]
enum Side {
    Client(TlsError),
    Server(TlsError),
}

impl Pair {
    fn new(cctx: &mut TlsContext, sctx: &mut TlsContext, cst: &StreamType, host: &str) -> Pair {
        Self::with_alpn(cctx, sctx, cst, &server_st(), host, &[], &[])
    }

    fn with_alpn(
        cctx: &mut TlsContext,
        sctx: &mut TlsContext,
        cst: &StreamType,
        sst: &StreamType,
        host: &str,
        c_alpn: &[&[u8]],
        s_alpn: &[&[u8]],
    ) -> Pair {
        let pol = policy();
        let ccfg = cctx
            .client_config(&pol, cst, c_alpn)
            .expect("client config");
        let scfg = sctx
            .server_config(&pol, sst, s_alpn)
            .expect("server config");
        let mut c = TlsSession::client(ccfg, host).expect("client");
        let s = TlsSession::server(scfg).expect("server");
        let mut to_s = vec![];
        c.start(&mut to_s).expect("start");
        assert!(!to_s.is_empty(), "client hello");
        Pair {
            c,
            s,
            to_s,
            to_c: vec![],
            c_plain: vec![],
            s_plain: vec![],
        }
    }

    /// Deliver everything in flight, `chunk` deciding each piece's size,
    /// until both directions are quiet.
    fn pump_with(&mut self, chunk: &mut dyn FnMut() -> usize) -> Result<(), Side> {
        for _ in 0..100 {
            if self.to_s.is_empty() && self.to_c.is_empty() {
                return Ok(());
            }
            let data = std::mem::take(&mut self.to_s);
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = chunk().clamp(1, rest.len());
                let (piece, r) = rest.split_at(n);
                rest = r;
                self.s
                    .handle_input(piece, &mut self.s_plain, &mut self.to_c)
                    .map_err(Side::Server)?;
            }
            let data = std::mem::take(&mut self.to_c);
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = chunk().clamp(1, rest.len());
                let (piece, r) = rest.split_at(n);
                rest = r;
                self.c
                    .handle_input(piece, &mut self.c_plain, &mut self.to_s)
                    .map_err(Side::Client)?;
            }
        }
        panic!("sessions never went quiet");
    }

    fn pump(&mut self) -> Result<(), Side> {
        self.pump_with(&mut || usize::MAX)
    }
}

fn client_verify_error(r: Result<(), Side>) -> String {
    match r {
        Err(Side::Client(TlsError::Verify(m))) => m,
        other => panic!("expected a client Verify error, got {other:?}"),
    }
}

#[test]
fn handshake_and_data_both_ways() {
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "localhost");
    p.pump().expect("handshake");
    assert!(!p.c.is_handshaking() && !p.s.is_handshaking());
    assert_eq!(p.s.server_name(), Some("localhost"));
    assert_eq!(p.c.alpn_protocol(), None);

    p.c.write(b"hello server", &mut p.to_s).unwrap();
    p.s.write(b"hello client", &mut p.to_c).unwrap();
    p.pump().unwrap();
    assert_eq!(p.s_plain, b"hello server");
    assert_eq!(p.c_plain, b"hello client");

    // A big write crosses several records.
    let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    p.c.write(&big, &mut p.to_s).unwrap();
    p.pump().unwrap();
    assert_eq!(&p.s_plain[12..], &big[..]);

    p.c.close(&mut p.to_s);
    p.pump().unwrap();
    assert!(p.s.peer_closed());
    assert!(!p.c.peer_closed());
}

#[test]
fn ip_literal_server_name() {
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "127.0.0.1");
    p.pump().expect("handshake to an IP SAN");
    // No SNI is sent for IP addresses.
    assert_eq!(p.s.server_name(), None);
}

#[test]
fn unknown_issuer_is_a_verify_error() {
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let mut p = Pair::new(&mut cc, &mut sc, &client_st("wrong"), "localhost");
    let m = client_verify_error(p.pump());
    assert!(m.contains("unknown issuer"), "{m}");
    // The client told the server why, in an alert the server sees.
    let mut plain = vec![];
    let mut wire = vec![];
    let r = p.s.handle_input(&p.to_s, &mut plain, &mut wire);
    assert!(
        matches!(r, Err(TlsError::Protocol(ref m)) if m.contains("alert")),
        "{r:?}"
    );
}

#[test]
fn system_roots_do_not_trust_the_test_ca() {
    let mut st = client_st("ts");
    st.tls_trust_store = None;
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let mut p = Pair::new(&mut cc, &mut sc, &st, "localhost");
    let m = client_verify_error(p.pump());
    assert!(m.contains("unknown issuer"), "{m}");

    // ... unless the adapter makes it a system root.
    let mut cc = ctx(NOW);
    assert_eq!(
        cc.set_system_roots(vec![CertificateDer::from(pki().ca.clone())]),
        1
    );
    let mut p = Pair::new(&mut cc, &mut sc, &st, "localhost");
    p.pump().expect("handshake with custom system roots");
}

#[test]
fn name_mismatch_is_a_verify_error() {
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "example.com");
    let m = client_verify_error(p.pump());
    assert!(m.contains("not valid for name"), "{m}");
}

#[test]
fn expired_certificate_is_a_verify_error() {
    let (mut cc, mut sc) = (ctx(LATER), ctx(NOW));
    let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "localhost");
    let m = client_verify_error(p.pump());
    assert!(m.contains("expired"), "{m}");
}

#[test]
fn unset_clock_fails_verification() {
    let mut cc = TlsContext::with_default_provider(WallClock::new());
    let mut sc = ctx(NOW);
    let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "localhost");
    let m = client_verify_error(p.pump());
    assert!(m.contains("clock not set"), "{m}");
}

#[test]
fn clock_is_shared_and_read_at_verification() {
    let clock = WallClock::new();
    let mut cc = TlsContext::with_default_provider(clock.clone());
    let mut sc = ctx(NOW);
    // Config built while the clock is unset; set it before the handshake.
    let ccfg = cc.client_config(&policy(), &client_st("ts"), &[]).unwrap();
    clock.set_unix_secs(NOW);
    assert_eq!(cc.clock().unix_secs(), NOW);
    let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "localhost");
    let _ = ccfg;
    p.pump().expect("handshake after setting the clock");
}

fn mtls_server_st() -> StreamType {
    let mut st = server_st();
    st.tls_trust_store = Some("ts".into());
    st
}

#[test]
fn client_certificate_required_and_provided() {
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki().client_key.clone()));
    cc.set_client_cert(2, vec![CertificateDer::from(pki().client.clone())], key)
        .unwrap();
    let mut cst = client_st("ts");
    cst.client_cert = Some(2);
    let mut p = Pair::with_alpn(
        &mut cc,
        &mut sc,
        &cst,
        &mtls_server_st(),
        "localhost",
        &[],
        &[],
    );
    p.pump().expect("mutual TLS handshake");
    p.c.write(b"authenticated", &mut p.to_s).unwrap();
    p.pump().unwrap();
    assert_eq!(p.s_plain, b"authenticated");
}

#[test]
fn client_certificate_required_and_missing() {
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let mut p = Pair::with_alpn(
        &mut cc,
        &mut sc,
        &client_st("ts"),
        &mtls_server_st(),
        "localhost",
        &[],
        &[],
    );
    match p.pump() {
        Err(Side::Server(TlsError::Verify(m))) => assert!(m.contains("no certificate"), "{m}"),
        other => panic!("expected a server Verify error, got {other:?}"),
    }
    // The client hears about it as an alert.
    let r = p.c.handle_input(&p.to_c, &mut vec![], &mut vec![]);
    assert!(matches!(r, Err(TlsError::Protocol(_))), "{r:?}");
}

#[test]
fn client_cert_blob_not_provided_is_a_config_error() {
    let mut cc = ctx(NOW);
    let mut cst = client_st("ts");
    cst.client_cert = Some(1);
    let r = cc.client_config(&policy(), &cst, &[]);
    assert!(
        matches!(r, Err(TlsError::Config(ref m)) if m.contains("blob 1")),
        "{r:?}"
    );
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki().client_key.clone()));
    let r = cc.set_client_cert(4, vec![CertificateDer::from(pki().client.clone())], key);
    assert!(matches!(r, Err(TlsError::Config(_))), "{r:?}");
    let bad = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(vec![1, 2, 3]));
    let r = cc.set_client_cert(0, vec![CertificateDer::from(pki().client.clone())], bad);
    assert!(matches!(r, Err(TlsError::Config(_))), "{r:?}");
}

#[test]
fn bad_policy_material_is_a_config_error() {
    let mut c = ctx(NOW);
    let pol = policy();
    let r = c.client_config(&pol, &client_st("nope"), &[]);
    assert!(matches!(r, Err(TlsError::Config(ref m)) if m.contains("unknown trust store")));
    let mut st = server_st();
    st.server_key = Some("ca".into()); // a certificate, not a key
    let r = c.server_config(&pol, &st, &[]);
    assert!(matches!(r, Err(TlsError::Config(_))), "{r:?}");
    let mut st = server_st();
    st.server_cert = None;
    assert!(matches!(
        c.server_config(&pol, &st, &[]),
        Err(TlsError::Config(_))
    ));
    let e = TlsError::Config("x".into());
    assert!(e.to_string().starts_with("tls: "));
}

#[test]
fn configs_are_cached_until_cleared() {
    let mut c = ctx(NOW);
    let pol = policy();
    let a = c.client_config(&pol, &client_st("ts"), &[b"h2"]).unwrap();
    let b = c.client_config(&pol, &client_st("ts"), &[b"h2"]).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let d = c.client_config(&pol, &client_st("ts"), &[]).unwrap();
    assert!(!Arc::ptr_eq(&a, &d));
    c.clear_cache();
    let e = c.client_config(&pol, &client_st("ts"), &[b"h2"]).unwrap();
    assert!(!Arc::ptr_eq(&a, &e));
}

#[test]
fn alpn_is_negotiated() {
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let mut p = Pair::with_alpn(
        &mut cc,
        &mut sc,
        &client_st("ts"),
        &server_st(),
        "localhost",
        &[b"h2", b"http/1.1"],
        &[b"http/1.1"],
    );
    p.pump().unwrap();
    assert_eq!(p.c.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(p.s.alpn_protocol(), Some(&b"http/1.1"[..]));

    let mut p = Pair::with_alpn(
        &mut cc,
        &mut sc,
        &client_st("ts"),
        &server_st(),
        "localhost",
        &[b"h2", b"http/1.1"],
        &[b"h2", b"http/1.1"],
    );
    p.pump().unwrap();
    assert_eq!(p.c.alpn_protocol(), Some(&b"h2"[..]));
}

#[test]
fn server_flight_split_at_every_byte() {
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "localhost");
    p.pump_with(&mut || 1).expect("byte-at-a-time handshake");
    assert!(!p.c.is_handshaking());
    p.s.write(b"tiny pieces", &mut p.to_c).unwrap();
    p.pump_with(&mut || 1).unwrap();
    assert_eq!(p.c_plain, b"tiny pieces");
}

#[test]
fn garbage_input_is_an_error_not_a_panic() {
    let mut cc = ctx(NOW);
    let cfg = cc.client_config(&policy(), &client_st("ts"), &[]).unwrap();
    let inputs: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\n\r\n",
        &[0x16, 0x03, 0x03, 0x00, 0x04, 0xff, 0x00, 0x00, 0x00],
        &[0x17; 64],
        &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
    ];
    for input in inputs {
        let mut c = TlsSession::client(cfg.clone(), "localhost").unwrap();
        let mut wire = vec![];
        c.start(&mut wire).unwrap();
        wire.clear();
        let r = c.handle_input(input, &mut vec![], &mut wire);
        assert!(matches!(r, Err(TlsError::Protocol(_))), "{input:?}: {r:?}");
        // The error sticks.
        assert!(c.handle_input(b"more", &mut vec![], &mut wire).is_err());
        assert!(c.write(b"x", &mut wire).is_err());
    }
    let mut sc = ctx(NOW);
    let scfg = sc.server_config(&policy(), &server_st(), &[]).unwrap();
    let mut s = TlsSession::server(scfg).unwrap();
    let mut wire = vec![];
    let r = s.handle_input(b"GET / HTTP/1.1\r\n\r\n", &mut vec![], &mut wire);
    assert!(r.is_err());
    assert!(
        !wire.is_empty(),
        "the server sends an alert before giving up"
    );
}

#[test]
fn write_before_handshake_is_delivered_after() {
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "localhost");
    p.c.write(b"early ", &mut p.to_s).unwrap();
    p.c.write(b"bird", &mut p.to_s).unwrap();
    assert_eq!(p.c.pending_plaintext(), 10);
    p.s.write(b"server early", &mut p.to_c).unwrap();
    p.pump().unwrap();
    assert_eq!(p.s_plain, b"early bird");
    assert_eq!(p.c_plain, b"server early");
    assert_eq!(p.c.pending_plaintext(), 0);
}

#[test]
fn pending_plaintext_is_bounded() {
    let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
    let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "localhost");
    p.c.set_pending_limit(10);
    p.c.write(b"0123456789", &mut p.to_s).unwrap();
    assert_eq!(p.c.write(b"x", &mut p.to_s), Err(TlsError::BufferFull));
    p.pump().unwrap();
    // After the handshake there is no such limit.
    p.c.write(&[7; 1000], &mut p.to_s).unwrap();
    p.pump().unwrap();
    assert_eq!(p.s_plain.len(), 1010);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_chunking_delivers_the_same_plaintext(
        sizes in proptest::collection::vec(1usize..300, 1..64),
        c_msg in proptest::collection::vec(any::<u8>(), 0..3000),
        s_msg in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
        let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "localhost");
        let mut i = 0;
        let mut chunk = move || { i += 1; sizes[i % sizes.len()] };
        // Half written before the handshake, half after.
        let (c1, c2) = c_msg.split_at(c_msg.len() / 2);
        p.c.write(c1, &mut p.to_s).unwrap();
        p.pump_with(&mut chunk).unwrap();
        p.c.write(c2, &mut p.to_s).unwrap();
        p.s.write(&s_msg, &mut p.to_c).unwrap();
        p.pump_with(&mut chunk).unwrap();
        prop_assert_eq!(&p.s_plain, &c_msg);
        prop_assert_eq!(&p.c_plain, &s_msg);
    }
}

/// One DER element: (tag, content, rest).
fn der_next(b: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = b[0];
    let (len, hdr) = if b[1] < 0x80 {
        (usize::from(b[1]), 2)
    } else {
        let n = usize::from(b[1] & 0x7f);
        let len = b[2..2 + n]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x));
        (len, 2 + n)
    };
    (tag, &b[hdr..hdr + len], &b[hdr + len..])
}

#[test]
fn server_key_in_sec1_form_loads() {
    // PKCS#8 = SEQUENCE { version, AlgorithmIdentifier, OCTET STRING(SEC1) }.
    let (_, seq, _) = der_next(&pki().leaf_key);
    let (_, _version, rest) = der_next(seq);
    let (_, _alg, rest) = der_next(rest);
    let (tag, sec1, _) = der_next(rest);
    assert_eq!(tag, 0x04, "octet string");
    let mut pol = policy();
    pol.certs.push(cert("leaf_key_sec1", sec1));
    let mut st = server_st();
    st.server_key = Some("leaf_key_sec1".into());
    let mut sc = ctx(NOW);
    let scfg = sc.server_config(&pol, &st, &[]).expect("SEC1 key loads");
    let mut cc = ctx(NOW);
    let ccfg = cc.client_config(&pol, &client_st("ts"), &[]).unwrap();
    let mut c = TlsSession::client(ccfg, "localhost").unwrap();
    let mut s = TlsSession::server(scfg).unwrap();
    let (mut to_s, mut to_c) = (vec![], vec![]);
    c.start(&mut to_s).unwrap();
    while !to_s.is_empty() || !to_c.is_empty() {
        s.handle_input(&std::mem::take(&mut to_s), &mut vec![], &mut to_c)
            .unwrap();
        c.handle_input(&std::mem::take(&mut to_c), &mut vec![], &mut to_s)
            .unwrap();
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
}

/// A real server flight (ServerHello .. Finished) to mutate.
fn server_flight() -> &'static Vec<u8> {
    static FLIGHT: OnceLock<Vec<u8>> = OnceLock::new();
    FLIGHT.get_or_init(|| {
        let (mut cc, mut sc) = (ctx(NOW), ctx(NOW));
        let mut p = Pair::new(&mut cc, &mut sc, &client_st("ts"), "localhost");
        let to_s = std::mem::take(&mut p.to_s);
        p.s.handle_input(&to_s, &mut vec![], &mut p.to_c).unwrap();
        p.to_c
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mutated_server_flight_never_panics(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
        step in 1usize..200,
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut flight = server_flight().clone();
        for (at, x) in flips {
            let i = at % flight.len();
            flight[i] ^= x;
        }
        flight.truncate(cut % (flight.len() + 1));
        flight.extend_from_slice(&junk);
        let mut cc = ctx(NOW);
        let cfg = cc.client_config(&policy(), &client_st("ts"), &[]).unwrap();
        let mut c = TlsSession::client(cfg, "localhost").unwrap();
        let (mut wire, mut plain) = (vec![], vec![]);
        c.start(&mut wire).unwrap();
        for piece in flight.chunks(step) {
            if c.handle_input(piece, &mut plain, &mut wire).is_err() {
                prop_assert!(c.handle_input(piece, &mut plain, &mut wire).is_err());
                break;
            }
        }
        c.close(&mut wire);
    }
}
