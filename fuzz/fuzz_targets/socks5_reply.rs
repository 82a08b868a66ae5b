//! The SOCKS5 client handshake fed arbitrary proxy replies in arbitrary
//! pieces (first byte: auth or not, and the split); must never panic and
//! never hold more than one reply.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proto::socks5::Socks5Client;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let auth = (ctl & 1 == 1).then(|| ("user".to_string(), "pass".to_string()));
    let Ok(mut c) = Socks5Client::new("example.com", 443, auth) else {
        return;
    };
    let mut out = Vec::new();
    c.start(&mut out);
    let step = usize::from(ctl >> 1).max(1);
    for piece in rest.chunks(step) {
        match c.handle_input(piece, &mut out) {
            Ok(Some(_)) => assert!(c.is_done()),
            Ok(None) => {}
            Err(_) => return,
        }
    }
});
