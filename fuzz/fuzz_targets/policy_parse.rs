//! Fuzz the policy parser and overlay: any input must give Ok or Err, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(mut p) = ss_core::Policy::parse(s) {
            let _ = p.apply_overlay(s);
        }
    }
});
