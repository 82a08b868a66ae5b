//! The client's reader of the server's answer to a WebSocket upgrade, fed
//! arbitrary bytes in arbitrary pieces; must never panic, and an accepted
//! upgrade must report how much of the input it used.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proto::h1::Limits;
use ss_core::proto::ws::UpgradeReader;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let wanted = (split & 0x80 != 0).then_some("chat");
    let mut r = UpgradeReader::default();
    let step = usize::from(split & 0x7f).max(1);
    for piece in rest.chunks(step) {
        match r.feed(piece, key, wanted, &Limits::default()) {
            Ok(None) => {}
            Ok(Some((_, used))) => {
                assert!(used <= piece.len());
                return;
            }
            Err(_) => return,
        }
    }
});
