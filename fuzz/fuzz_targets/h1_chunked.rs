//! The chunked decoder fed arbitrary bytes; must never panic, never stall,
//! and never report more consumed bytes than given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proto::h1::chunked::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(64, 256);
    let mut rest = data;
    while !rest.is_empty() && !d.is_done() {
        match d.decode(rest) {
            Ok((n, _)) => {
                assert!(n <= rest.len());
                assert!(n > 0 || d.is_done(), "decoder stalled");
                rest = &rest[n..];
            }
            Err(_) => return,
        }
    }
});
