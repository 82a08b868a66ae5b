//! The HTTP/1.1 pair fuzz harness under proptest: a client and a server engine
//! back to back, with arbitrary interleaving, splits, drops and app actions;
//! acknowledged bodies are exactly what the server wrote, nothing leaks.

use conformance::fuzz_h1_pair::run;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn h1_pair_survives_arbitrary_schedules(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        run(&data);
    }
}

#[test]
fn the_harness_completes_transactions() {
    // GET, then POST with a 40-byte body; the server answers both (200 and
    // 201), bytes move a few at a time, then everything is flushed.
    let data = [
        0, 0, 0, // create get, request
        0, 1, 4, // create post (44-byte body, length known), request
        3, 0, 3, 3, 0, 0, 3, 1, 5, 3, 1, 0, // deliver both requests to the server
        9, 0, 0, // respond 200 to the first pending
        9, 0, 5, // respond 201 to the next
        5, 0, 7, 5, 0, 0, 5, 1, 9, 5, 1, 0, // deliver the responses
    ];
    let o = run(&data);
    assert_eq!(o.acks, 2, "{o:?}");
    assert_eq!(o.server_txns, 2, "{o:?}");
}
