//! proto::ws: property tests. Messages written by one end come out of the
//! other unchanged, with one SOM and one EOM each, however the bytes are
//! split; arbitrary input never panics.

use proptest::prelude::*;
use ss_core::proto::ws::{Role, Ws, WsConfig, WsEvent, WsOut};
use ss_core::Flags;

/// Write `msgs` (each split into `pieces` writes) from `from`, deliver the
/// bytes to `to` in chunks of `chunk`, and return the messages `to` saw.
fn roundtrip(
    from: &mut Ws,
    to: &mut Ws,
    msgs: &[(Vec<u8>, bool)],
    pieces: usize,
    chunk: usize,
) -> Vec<(Vec<u8>, bool)> {
    let mut out = WsOut::default();
    for (m, binary) in msgs {
        let n = pieces.max(1);
        let size = m.len().div_ceil(n).max(1);
        let parts: Vec<&[u8]> = if m.is_empty() {
            vec![&[]]
        } else {
            m.chunks(size).collect()
        };
        for (i, p) in parts.iter().enumerate() {
            let mut f = Flags::NONE;
            if i == 0 {
                f |= Flags::SOM;
            }
            if i + 1 == parts.len() {
                f |= Flags::EOM;
            }
            from.write(p, *binary, f, &mut out).unwrap();
        }
    }
    let mut got = WsOut::default();
    for c in out.transmit.chunks(chunk.max(1)) {
        to.handle_input(c, &mut got).unwrap();
    }
    let mut msgs_out = vec![];
    let mut cur: Option<(Vec<u8>, bool)> = None;
    for e in got.events {
        if let WsEvent::Data { data, flags, text } = e {
            if flags.contains(Flags::SOM) {
                assert!(cur.is_none(), "SOM inside a message");
                cur = Some((vec![], !text));
            }
            let c = cur.as_mut().expect("data before SOM");
            c.0.extend_from_slice(&data);
            if flags.contains(Flags::EOM) {
                msgs_out.push(cur.take().unwrap());
            }
        }
    }
    assert!(cur.is_none(), "message without EOM");
    msgs_out
}

fn message() -> impl Strategy<Value = (Vec<u8>, bool)> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(|v| (v, true)),
        "[a-zé€😀 ]{0,300}".prop_map(|s| (s.into_bytes(), false)),
    ]
}

proptest! {
    #[test]
    fn messages_survive_any_split_both_ways(
        msgs in proptest::collection::vec(message(), 1..6),
        pieces in 1usize..5,
        chunk in 1usize..200,
        seed in any::<u64>(),
    ) {
        let mut c = Ws::new(WsConfig::new(Role::Client, seed));
        let mut s = Ws::new(WsConfig::new(Role::Server, seed));
        prop_assert_eq!(&roundtrip(&mut c, &mut s, &msgs, pieces, chunk), &msgs);
        prop_assert_eq!(&roundtrip(&mut s, &mut c, &msgs, pieces, chunk), &msgs);
    }

    #[test]
    fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), server in any::<bool>()) {
        let role = if server { Role::Server } else { Role::Client };
        let mut ws = Ws::new(WsConfig::new(role, 7));
        let mut out = WsOut::default();
        if ws.handle_input(&data, &mut out).is_err() {
            prop_assert!(ws.is_closing());
        }
    }
}
