//! The engine fuzz harness under proptest: arbitrary input sequences keep the
//! engine's invariants (legal transitions, no leaks, no panics).

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
    #[test]
    fn engine_survives_arbitrary_inputs(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        conformance::fuzz_engine::run(&data);
    }
}

#[test]
fn harness_reaches_deep_states() {
    // A hand-written sequence: create, connect, connected, write, data, drop, retry timer.
    let data = [
        0, 0, 0, 1, 0, 0, 8, 0, 0, 2, 0, 0, 10, 5, 1, 11, 0, 0, 7, 255, 0, 7, 255, 0,
    ];
    let o = conformance::fuzz_engine::run(&data);
    assert!(o.states >= 6, "{o:?}");
}
