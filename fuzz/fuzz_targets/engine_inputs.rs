//! The whole engine fed arbitrary sequences of application calls and adapter
//! inputs; panics when an invariant (legal transitions, no leaks) breaks.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    conformance::fuzz_engine::run(data);
});
