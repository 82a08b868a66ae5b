//! The HTTP/2 client machine fed arbitrary server bytes (first byte picks the
//! split, quirks and tight limits; a request is open so stream frames have a
//! target). Must never panic; after an error, input keeps failing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proto::h2::{H2Client, H2Config, RequestHead};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut cfg = H2Config {
        quirk_end_stream: ctl & 1 != 0,
        quirk_oflow_txcr: ctl & 2 != 0,
        ..H2Config::default()
    };
    if ctl & 4 != 0 {
        cfg.max_header_list = 256;
        cfg.max_stream_rx_buffer = 100;
        cfg.max_concurrent_streams = 2;
    }
    let mut c = H2Client::new(cfg);
    let _ = c.start_request(&RequestHead::new("POST", "/", "h", false));
    let step = usize::from(ctl >> 3).max(1);
    for piece in rest.chunks(step) {
        let failed = c.handle_input(piece).is_err();
        while c.poll_event().is_some() {}
        while c.poll_transmit().is_some() {}
        if failed {
            assert!(c.handle_input(piece).is_err(), "errors are sticky");
            return;
        }
        let _ = c.start_request(&RequestHead::new("GET", "/x", "h", true));
    }
});
