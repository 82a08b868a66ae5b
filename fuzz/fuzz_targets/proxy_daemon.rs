//! The proxy daemon fed arbitrary hostile link input beside a good link
//! (conformance::fuzz_proxy); must never panic, keep the good link, leak nothing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    conformance::fuzz_proxy::run(data);
});
