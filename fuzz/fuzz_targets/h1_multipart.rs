//! The multipart decoder fed arbitrary bytes, whole and split at a chosen
//! point: must never panic, and both feedings must agree on the parts and
//! the concatenated data.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ss_core::proto::h1::multipart::{Decoder, Event};

fn summarise(events: Vec<Event>) -> Vec<(Option<Vec<(String, String)>>, Vec<u8>)> {
    let mut out: Vec<(Option<Vec<(String, String)>>, Vec<u8>)> = Vec::new();
    for ev in events {
        match ev {
            Event::Part { headers } => out.push((Some(headers), Vec::new())),
            Event::Data { data, .. } => match out.last_mut() {
                Some(last) => last.1.extend_from_slice(&data),
                None => out.push((None, data)),
            },
            Event::End => out.push((None, Vec::new())),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(rest.len());
    let mut a = Decoder::new("bnd").expect("valid boundary");
    let mut ev_a = Vec::new();
    let ra = a.feed(rest, &mut ev_a);
    let mut b = Decoder::new("bnd").expect("valid boundary");
    let mut ev_b = Vec::new();
    let rb = b
        .feed(&rest[..split], &mut ev_b)
        .and_then(|()| b.feed(&rest[split..], &mut ev_b));
    assert_eq!(ra.is_ok(), rb.is_ok());
    if ra.is_ok() {
        assert_eq!(summarise(ev_a), summarise(ev_b));
    }
});
