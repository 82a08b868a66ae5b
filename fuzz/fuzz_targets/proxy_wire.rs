//! The Serialized Secure Streams wire decoders fed arbitrary bytes, both
//! directions (the first byte picks the chunk size and a tight frame limit):
//! must never panic, must report errors sticky, and whatever decodes must
//! re-encode to a frame that decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proxy::wire::{decode, Decoder, Limits, ToClient, ToProxy, WireMessage};

fn run<M: WireMessage + PartialEq + std::fmt::Debug>(ctl: u8, data: &[u8]) {
    let limits = if ctl & 0x80 != 0 {
        Limits {
            max_frame: usize::from(ctl & 0x7f),
        }
    } else {
        Limits::default()
    };
    let _ = decode::<M>(data, &limits);
    let mut d = Decoder::<M>::new(limits);
    let step = usize::from(ctl & 0x1f).max(1);
    for piece in data.chunks(step) {
        let mut p = piece;
        loop {
            match d.next(&mut p) {
                Ok(Some(m)) => {
                    let mut b = vec![];
                    m.encode(&mut b).expect("a decoded message re-encodes");
                    let (again, used) = decode::<M>(&b, &Limits::default())
                        .expect("re-encoded frame decodes")
                        .expect("re-encoded frame is whole");
                    assert_eq!(used, b.len());
                    assert_eq!(again, m);
                }
                Ok(None) => break,
                Err(_) => {
                    assert!(d.feed(b"x").is_err(), "errors are sticky");
                    assert!(d.finish().is_err());
                    return;
                }
            }
        }
    }
    let _ = d.finish();
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    run::<ToProxy>(ctl, rest);
    run::<ToClient>(ctl, rest);
});
