//! The engine fuzz harness under proptest: arbitrary input sequences keep the
//! engine's invariants (legal transitions, no leaks, no panics).

use conformance::fuzz_engine::{fuzz_policy, run, tls_fixture, FRAGMENTS};
use proptest::prelude::*;
use ss_core::StreamState;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
    #[test]
    fn engine_survives_arbitrary_inputs(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        run(&data);
    }
}

/// The index of a streamtype in the fuzz policy (what `create`'s byte picks).
fn st(name: &str) -> u8 {
    fuzz_policy()
        .streamtypes
        .iter()
        .position(|s| s.name == name)
        .unwrap() as u8
}

fn fragment(f: &[u8]) -> u8 {
    FRAGMENTS.iter().position(|x| *x == f).unwrap() as u8
}

#[test]
fn harness_reaches_deep_states() {
    // A hand-written sequence: create, connect, connected, write, data, drop, retry timer.
    let data = [
        0, 0, 0, 1, 0, 0, 8, 0, 0, 2, 0, 0, 10, 5, 1, 11, 0, 0, 7, 255, 0, 7, 255, 0,
    ];
    let o = run(&data);
    assert!(o.states >= 6, "{o:?}");
}

#[test]
fn canned_fragments_complete_an_h1_transaction() {
    let ok = fragment(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let data = [0, st("get"), 0, 2, 0, 0, 8, 0, 0, 20, 0, ok];
    let o = run(&data);
    let trace = o.trace.values().next().unwrap();
    assert!(trace.contains(&StreamState::QosAckRemote), "{o:?}");
    assert_eq!(o.rx_bytes, 5, "{o:?}");
}

#[test]
fn canned_request_reaches_a_server_transaction() {
    let get = fragment(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let data = [
        0,
        st("hsrv"),
        0, // create the server
        18,
        0,
        0, // listening
        14,
        0,
        0, // accept
        20,
        0,
        get, // a request
        24,
        1,
        1, // server_ack(200) on the accepted stream
        16,
        1,
        3, // content-length 3
        26,
        1,
        7, // write "zzz" SOM|EOM
    ];
    let o = run(&data);
    assert!(
        o.trace
            .values()
            .any(|t| t.contains(&StreamState::ServerTxn)),
        "{o:?}"
    );
}

#[test]
fn the_captured_tls_flight_completes_an_https_transaction() {
    let f = tls_fixture();
    let mut data = vec![0, st("tget"), 0, 2, 0, 0, 8, 0, 0];
    for i in 0..f.server_flight.len() as u8 {
        data.extend([22, 0, i << 3]);
    }
    let o = run(&data);
    let trace = o.trace.values().next().unwrap();
    assert!(trace.contains(&StreamState::QosAckRemote), "{o:?}");
    assert_eq!(o.rx_bytes, 5, "{o:?}");
}

#[test]
fn the_captured_h2_flight_completes_an_h2_transaction() {
    let f = tls_fixture();
    let mut data = vec![0, st("t2get"), 0, 2, 0, 0, 8, 0, 0];
    for i in 0..f.h2_server_flight.len() as u8 {
        data.extend([23, 0, i << 3]);
    }
    let o = run(&data);
    let trace = o.trace.values().next().unwrap();
    assert!(trace.contains(&StreamState::QosAckRemote), "{o:?}");
    assert_eq!(o.rx_bytes, 5, "{o:?}");
}

/// Found by the proptest (minimised): a user timeout on an accepted HTTP/1.1
/// stream, then a request. The engine used to report TIMEOUT, then
/// SERVER_TXN, which the reference's transition table forbids; it now
/// reports CONNECTED in between.
#[test]
fn timeout_then_server_txn_stays_legal() {
    use ss_core::{Action, Engine, EngineConfig, Event};
    use std::time::{Duration, Instant};
    let mut e = Engine::new(fuzz_policy(), EngineConfig::default());
    let mut now = Instant::now();
    e.create(now, "hsrv").unwrap();
    let listener = std::iter::from_fn(|| e.poll_action())
        .find_map(|a| match a {
            Action::Listen { listener, .. } => Some(listener),
            _ => None,
        })
        .unwrap();
    let conn = e.handle_accepted(now, listener).unwrap();
    let accepted = std::iter::from_fn(|| e.poll_event())
        .find_map(|ev| match ev {
            Event::Accepted { stream, .. } => Some(stream),
            _ => None,
        })
        .unwrap();
    e.start_timeout(now, accepted, 0).unwrap(); // the policy's 50 ms
    now += Duration::from_secs(1);
    e.handle_timeout(now);
    e.handle_data(now, conn, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut prev = None;
    let mut seen = vec![];
    while let Some(ev) = e.poll_event() {
        if let Event::State { stream, state, .. } = ev {
            if stream == accepted {
                seen.push(state);
                assert!(state.is_legal_after(prev), "{seen:?}");
                prev = Some(state);
            }
        }
    }
    assert!(seen.contains(&StreamState::ServerTxn), "{seen:?}");
}

/// The same through the harness, as the proptest minimised it.
#[test]
fn timeout_then_server_txn_harness_input() {
    // create c; create hsrv; accept; start_timeout(accepted, policy 50 ms);
    // +1 s; canned "GET / HTTP/1.1\r\nHost: a\r\n\r\n".
    let data = [0, 0, 0, 0, 221, 0, 46, 0, 0, 230, 8, 0, 28, 1, 0, 84, 0, 89];
    conformance::fuzz_engine::run(&data);
}

/// The canned WebSocket fragments reach the server's upgrade and a message,
/// so the fuzzer starts from real WebSocket states.
#[test]
fn canned_ws_fragments_upgrade_a_server_transaction() {
    use conformance::fuzz_engine::FRAGMENTS;
    use ss_core::{Action, Engine, EngineConfig, Event};
    use std::time::Instant;
    let find = |needle: &[u8]| {
        FRAGMENTS
            .iter()
            .find(|f| f.windows(needle.len()).any(|w| w == needle))
            .copied()
            .expect("fragment")
    };
    let mut e = Engine::new(fuzz_policy(), EngineConfig::default());
    let now = Instant::now();
    e.create(now, "hsrv").unwrap();
    let listener = std::iter::from_fn(|| e.poll_action())
        .find_map(|a| match a {
            Action::Listen { listener, .. } => Some(listener),
            _ => None,
        })
        .unwrap();
    let conn = e.handle_accepted(now, listener).unwrap();
    e.handle_data(
        now,
        conn,
        find(b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key"),
    );
    e.handle_data(now, conn, find(b"\x81\x85\x37\xfa"));
    let mut upgraded = false;
    let mut rx = Vec::new();
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::State {
                state: StreamState::ServerUpgrade,
                ..
            } => upgraded = true,
            Event::Rx { data, .. } => rx.extend(data),
            _ => {}
        }
    }
    assert!(upgraded);
    assert_eq!(rx, b"Hello");
    let sent: Vec<u8> = std::iter::from_fn(|| e.poll_action())
        .filter_map(|a| match a {
            Action::Transmit { data, .. } => Some(data),
            _ => None,
        })
        .flatten()
        .collect();
    let text = String::from_utf8_lossy(&sent);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{text}"
    );
}
