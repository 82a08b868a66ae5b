//! The WebSocket frame machine fed arbitrary bytes, as client and as server
//! (first byte picks the role, the split and tight limits); must never panic,
//! and after an error it must have queued a Close and ignore further input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proto::ws::{Role, Ws, WsConfig, WsOut};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let role = if ctl & 1 == 0 { Role::Client } else { Role::Server };
    let mut cfg = WsConfig::new(role, u64::from(ctl));
    if ctl & 2 != 0 {
        cfg.max_frame = 300;
        cfg.max_message = 1000;
    }
    let mut ws = Ws::new(cfg);
    let mut out = WsOut::default();
    let step = usize::from(ctl >> 2).max(1);
    for piece in rest.chunks(step) {
        if ws.handle_input(piece, &mut out).is_err() {
            assert!(ws.is_closing(), "an error must queue a Close");
            let before = out.events.len();
            let _ = ws.handle_input(piece, &mut out);
            assert_eq!(out.events.len(), before, "input after an error is ignored");
            return;
        }
    }
});
