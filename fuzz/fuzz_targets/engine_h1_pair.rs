//! A client and a server engine speaking HTTP/1.1 back to back in memory; the
//! input decides interleaving, transmit splits, drops and app actions. Panics
//! if an acknowledged body differs from what the server wrote, or on a leak.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    conformance::fuzz_h1_pair::run(data);
});
