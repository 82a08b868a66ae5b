//! The proxy daemon under arbitrary hostile link input (the `proxy_daemon`
//! fuzz target's harness), as a proptest so CI runs it.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]
    #[test]
    fn the_daemon_survives_hostile_links(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        conformance::fuzz_proxy::run(&data);
    }
}

/// Structured hostile input: valid-looking frames in the wrong order, floods.
#[test]
fn crafted_hostile_links_are_dropped_and_the_good_one_survives() {
    let mut data = vec![];
    // Link 0: a frame before STREAMTYPE.
    data.push(0);
    data.extend_from_slice(&[0; 16]);
    data.push(1);
    data.extend_from_slice(&[0xab, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Link 1: garbage.
    data.push(0);
    data.extend_from_slice(&[0; 16]);
    data.push(1 | (1 << 2));
    data.extend_from_slice(&[0xff; 16]);
    let out = conformance::fuzz_proxy::run(&data);
    assert_eq!(out.dropped, 2, "{out:?}");
    assert!(out.echoed >= 10);
}
