//! proto::socks5: any split of a valid proxy conversation completes the same
//! way; arbitrary replies never panic.

use proptest::prelude::*;
use ss_core::proto::socks5::Socks5Client;

/// A proxy's answers for a no-auth CONNECT, with `extra` target bytes behind.
fn replies(atyp: u8, extra: &[u8]) -> Vec<u8> {
    let mut r = vec![5, 0, 5, 0, 0, atyp];
    match atyp {
        1 => r.extend_from_slice(&[10, 0, 0, 1]),
        3 => {
            r.push(4);
            r.extend_from_slice(b"host");
        }
        _ => r.extend_from_slice(&[0; 16]),
    }
    r.extend_from_slice(&[0x1f, 0x90]);
    r.extend_from_slice(extra);
    r
}

proptest! {
    #[test]
    fn any_split_completes_with_the_same_leftover(
        atyp in prop_oneof![Just(1u8), Just(3u8), Just(4u8)],
        extra in proptest::collection::vec(any::<u8>(), 0..50),
        cuts in proptest::collection::vec(1usize..8, 1..20),
    ) {
        let wire = replies(atyp, &extra);
        let mut c = Socks5Client::new("example.com", 443, None).unwrap();
        let mut out = vec![];
        c.start(&mut out);
        let mut rest = None;
        let mut pos = 0;
        let mut i = 0;
        while pos < wire.len() {
            let n = cuts[i % cuts.len()].min(wire.len() - pos);
            i += 1;
            if let Some(r) = c.handle_input(&wire[pos..pos + n], &mut out).unwrap() {
                let mut all = r;
                all.extend_from_slice(&wire[pos + n..]);
                rest = Some(all);
                break;
            }
            pos += n;
        }
        prop_assert_eq!(rest, Some(extra));
    }

    #[test]
    fn arbitrary_replies_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), auth in any::<bool>()) {
        let auth = auth.then(|| ("u".to_string(), "p".to_string()));
        let mut c = Socks5Client::new("h", 1, auth).unwrap();
        let mut out = vec![];
        c.start(&mut out);
        let _ = c.handle_input(&data, &mut out);
    }
}
