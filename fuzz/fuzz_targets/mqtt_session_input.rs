//! The MQTT client session fed arbitrary bytes from the broker; must never
//! panic. The first byte picks the split step, whether a valid CONNACK is
//! prepended (to reach the connected state quickly), and whether the session
//! subscribes / publishes at QoS 1 and 2 first; the clock advances between
//! pieces so keep-alive timers run too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proto::mqtt::{ConnectOptions, QoS, Session};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut now = Instant::now();
    let mut opts = ConnectOptions::new("fuzz", 1);
    opts.clean_session = ctl & 0x40 == 0;
    opts.limits.max_packet = 4096;
    opts.limits.max_in_flight = 4;
    let mut s = Session::new(opts, now);
    if s.start(now).is_err() {
        return;
    }
    if ctl & 0x80 != 0 && s.handle_input(now, &[0x20, 2, 0, 0]).is_err() {
        return;
    }
    if s.is_connected() && ctl & 0x20 != 0 {
        let _ = s.subscribe(1, "a/#", QoS::ExactlyOnce);
        let _ = s.subscribe(2, "+/b", QoS::AtLeastOnce);
        let _ = s.publish(1, "a/b", b"x", QoS::AtLeastOnce, false);
        let _ = s.publish(2, "a/c", b"y", QoS::ExactlyOnce, true);
    }
    let step = usize::from(ctl & 0x1f).max(1);
    for piece in rest.chunks(step) {
        if s.handle_input(now, piece).is_err() {
            break;
        }
        while s.poll_event().is_some() {}
        let _ = s.poll_transmit();
        now += Duration::from_millis(300);
        if s.poll_timeout().is_some_and(|t| t <= now) && s.handle_timeout(now).is_err() {
            break;
        }
    }
    // Whatever state it ended in, carrying it over must not panic either.
    let carried = s.take_in_flight();
    let mut opts = ConnectOptions::new("fuzz", 0);
    opts.clean_session = ctl & 0x40 == 0;
    let mut next = Session::new(opts, now);
    next.restore(carried);
    if next.start(now).is_ok() {
        let _ = next.handle_input(now, &[0x20, 2, 1, 0]);
    }
});
