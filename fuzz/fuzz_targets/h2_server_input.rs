//! The HTTP/2 server machine fed arbitrary client bytes after a valid preface
//! (first byte picks the split and tight limits); every request is answered
//! so response paths run too. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proto::h2::{H2Config, H2Event, H2Server};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut cfg = H2Config::default();
    if ctl & 1 != 0 {
        cfg.max_header_list = 256;
        cfg.max_stream_rx_buffer = 100;
        cfg.max_concurrent_streams = 2;
    }
    let mut s = H2Server::new(cfg);
    if ctl & 2 == 0 {
        let _ = s.handle_input(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    }
    let step = usize::from(ctl >> 2).max(1);
    for piece in rest.chunks(step) {
        let failed = s.handle_input(piece).is_err();
        while let Some(ev) = s.poll_event() {
            if let H2Event::Request { key, .. } = ev {
                let _ = s.respond(key, 200, &[], false);
                let _ = s.send_data(key, b"hello", true);
            }
        }
        while s.poll_transmit().is_some() {}
        if failed {
            return;
        }
    }
});
