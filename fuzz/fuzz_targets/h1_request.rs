//! The HTTP/1.1 server machine fed arbitrary request bytes, answering every
//! request as it completes; must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proto::h1::{BodyMode, H1Event, Out, Server, ServerConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut s = Server::new(ServerConfig::default());
    let step = usize::from(split).max(1);
    for piece in rest.chunks(step) {
        let mut out = Out::default();
        if s.handle_input(piece, &mut out).is_err() {
            return;
        }
        for ev in &out.events {
            if let H1Event::Done { .. } = ev {
                let mut o = Out::default();
                if s.respond(200, &[], BodyMode::Chunked, &mut o).is_ok() {
                    let _ = s.write_body(b"ok", true, &mut o);
                }
            }
        }
    }
    let _ = s.handle_eof();
});
