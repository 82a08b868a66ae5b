//! The HTTP/1.1 client machine fed arbitrary bytes as the response to a GET
//! (first byte picks how the input is split); must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proto::h1::{Client, ClientConfig, Out, RequestHead};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut c = Client::new(ClientConfig::default());
    let mut out = Out::default();
    let method = if split & 0x80 != 0 { "HEAD" } else { "GET" };
    if c.start(&RequestHead::new(method, "/", "fuzz"), &mut out)
        .is_err()
    {
        return;
    }
    let step = usize::from(split & 0x7f).max(1);
    for piece in rest.chunks(step) {
        if c.handle_input(piece, &mut out).is_err() {
            return;
        }
    }
    let _ = c.handle_eof(&mut out);
});
