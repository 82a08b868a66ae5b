//! The deterministic TLS provider: same seed and clock, same bytes on the wire.

use conformance::tls_provider::deterministic_provider;
use rcgen14::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SignatureAlgorithm};
use ss_core::policy::{Cert, Policy, StreamType, TrustStore};
use ss_core::proto::tls::{TlsContext, TlsSession, WallClock};

const NOW: u64 = 1_735_689_600;

/// A policy with a CA (trust store "ts") and a "localhost" leaf, keys of `alg`.
fn policy(alg: &'static SignatureAlgorithm) -> Policy {
    let ca_key = KeyPair::generate_for(alg).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_der = ca.self_signed(&ca_key).unwrap().der().to_vec();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate_for(alg).unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let cert = |name: &str, der: Vec<u8>| Cert {
        name: name.into(),
        der,
    };
    Policy {
        certs: vec![
            cert("ca", ca_der),
            cert("leaf", leaf.der().to_vec()),
            cert("key", leaf_key.serialize_der()),
        ],
        trust_stores: vec![TrustStore {
            name: "ts".into(),
            stack: vec!["ca".into()],
        }],
        ..Default::default()
    }
}

/// Every byte each side sent, in order, for a handshake plus one exchange.
fn transcript(pol: &Policy, seed: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let clock = WallClock::new();
    clock.set_unix_secs(NOW);
    let mut cctx = TlsContext::new(deterministic_provider(seed), clock.clone());
    let mut sctx = TlsContext::new(deterministic_provider(seed ^ 0x5eed), clock);
    let cst = StreamType {
        name: "c".into(),
        tls: true,
        tls_trust_store: Some("ts".into()),
        ..Default::default()
    };
    let sst = StreamType {
        name: "s".into(),
        server: true,
        tls: true,
        server_cert: Some("leaf".into()),
        server_key: Some("key".into()),
        ..Default::default()
    };
    let ccfg = cctx.client_config(pol, &cst, &[b"h2"]).unwrap();
    let scfg = sctx.server_config(pol, &sst, &[b"h2"]).unwrap();
    let mut c = TlsSession::client(ccfg, "localhost").unwrap();
    let mut s = TlsSession::server(scfg).unwrap();
    let (mut c_sent, mut s_sent) = (vec![], vec![]);
    let mut to_s = vec![];
    c.start(&mut to_s).unwrap();
    c.write(b"ping", &mut to_s).unwrap();
    let mut replied = false;
    for _ in 0..10 {
        let mut to_c = vec![];
        let mut plain = vec![];
        s.handle_input(&to_s, &mut plain, &mut to_c).unwrap();
        if plain == b"ping" && !replied {
            s.write(b"pong", &mut to_c).unwrap();
            replied = true;
        }
        c_sent.push(std::mem::take(&mut to_s));
        c.handle_input(&to_c, &mut vec![], &mut to_s).unwrap();
        s_sent.push(to_c);
        if to_s.is_empty() {
            break;
        }
    }
    assert!(replied && !c.is_handshaking());
    (c_sent, s_sent)
}

/// The 32-byte client random in the first flight (after the record header,
/// handshake header and legacy version).
fn client_random(t: &(Vec<Vec<u8>>, Vec<Vec<u8>>)) -> Vec<u8> {
    t.0[0][11..43].to_vec()
}

#[test]
fn ed25519_handshake_replays_bit_for_bit() {
    let pol = policy(&rcgen14::PKCS_ED25519);
    let a = transcript(&pol, 7);
    let b = transcript(&pol, 7);
    assert_eq!(a, b, "same seed, same clock: identical wire bytes");
    let c = transcript(&pol, 8);
    assert_ne!(client_random(&a), client_random(&c));
    assert_ne!(a.0[0], c.0[0], "different seed: different client hello");
    assert_ne!(a.1, c.1);
}

#[test]
fn ecdsa_handshake_replays_up_to_the_signature() {
    // ring draws ECDSA nonces from the OS: the hellos (randoms, session id,
    // X25519 shares) replay, the server's encrypted flight does not.
    let pol = policy(&rcgen14::PKCS_ECDSA_P256_SHA256);
    let a = transcript(&pol, 7);
    let b = transcript(&pol, 7);
    assert_eq!(a.0[0], b.0[0], "client hello replays");
    // The server flight: ServerHello (5 + 4 + 2 + 32 + 1 + 32 + 2 + 1 + ext)
    // then ChangeCipherSpec, then encrypted records. Compare the ServerHello record.
    let sh_len = 5 + usize::from(u16::from_be_bytes([a.1[0][3], a.1[0][4]]));
    assert_eq!(a.1[0][..sh_len], b.1[0][..sh_len], "server hello replays");
    assert_ne!(a.1[0], b.1[0], "the signed, encrypted rest does not");
    let c = transcript(&pol, 8);
    assert_ne!(client_random(&a), client_random(&c));
}
