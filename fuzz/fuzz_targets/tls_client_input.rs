//! A TLS client session fed arbitrary bytes as the server's flight (first byte
//! picks how the input is split); must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::policy::{Policy, StreamType};
use ss_core::proto::tls::{TlsContext, TlsSession, WallClock};
use std::sync::{Arc, OnceLock};

fn config() -> Arc<ss_core::proto::tls::rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<ss_core::proto::tls::rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let clock = WallClock::new();
            clock.set_unix_secs(1_735_689_600);
            let provider = conformance::tls_provider::deterministic_provider(1);
            let mut ctx = TlsContext::new(provider, clock);
            let st = StreamType {
                name: "fuzz".into(),
                tls: true,
                ..Default::default()
            };
            ctx.client_config(&Policy::default(), &st, &[b"h2", b"http/1.1"])
                .expect("client config from system roots")
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let Ok(mut c) = TlsSession::client(config(), "localhost") else {
        return;
    };
    let mut wire = vec![];
    let mut plain = vec![];
    if c.start(&mut wire).is_err() {
        return;
    }
    if split & 0x80 != 0 {
        let _ = c.write(b"early data", &mut wire);
    }
    let step = usize::from(split & 0x7f).max(1);
    for piece in rest.chunks(step) {
        if c.handle_input(piece, &mut plain, &mut wire).is_err() {
            // Errors stick: later calls keep failing without panicking.
            assert!(c.handle_input(piece, &mut plain, &mut wire).is_err());
            return;
        }
    }
    let _ = c.write(b"late", &mut wire);
    c.close(&mut wire);
    let _ = (c.alpn_protocol(), c.peer_closed(), c.is_handshaking());
});
