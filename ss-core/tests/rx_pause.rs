//! Per-stream rx pause (`Engine::set_rx_paused`): the adapter is told to stop
//! reading, bytes it had already read are held in order with the peer's EOF
//! behind them, and everything is delivered on resume.

use ss_core::policy::{Policy, Protocol, StreamType};
use ss_core::{Action, ConnId, Engine, EngineConfig, Event, StreamId, StreamState};
use std::time::{Duration, Instant};

fn engine(max_held_rx: usize) -> Engine {
    let raw = StreamType {
        name: "raw".into(),
        endpoint: Some("127.0.0.1".into()),
        port: 7000,
        protocol: Protocol::Raw,
        ..Default::default()
    };
    let mut http = StreamType {
        name: "http".into(),
        protocol: Protocol::H1,
        ..raw.clone()
    };
    http.http.method = Some("GET".into());
    http.http.url = Some("/".into());
    let policy = Policy {
        streamtypes: vec![raw, http],
        ..Default::default()
    };
    Engine::new(
        policy,
        EngineConfig {
            seed: 1,
            max_held_rx,
            ..Default::default()
        },
    )
}

fn actions(e: &mut Engine) -> Vec<Action> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

/// Payload delivered and states reported, in order.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    rx: Vec<u8>,
    states: Vec<StreamState>,
}

fn drain(e: &mut Engine, seen: &mut Seen) {
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Rx { data, .. } => seen.rx.extend(data),
            Event::State { state, .. } => seen.states.push(state),
            _ => {}
        }
    }
}

/// A connected raw stream and its connection.
fn connected(e: &mut Engine, now: Instant, streamtype: &str) -> (StreamId, ConnId) {
    let s = e.create(now, streamtype).unwrap();
    e.client_connect(now, s).unwrap();
    let conn = actions(e)
        .iter()
        .find_map(|a| match a {
            Action::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("connect");
    e.handle_connected(now, conn);
    (s, conn)
}

#[test]
fn paused_rx_is_held_in_order_with_eof_behind_it() {
    let t0 = Instant::now();
    let mut e = engine(1 << 20);
    let (s, conn) = connected(&mut e, t0, "raw");
    let mut seen = Seen::default();
    drain(&mut e, &mut seen);
    actions(&mut e);
    e.handle_data(t0, conn, b"one ");
    drain(&mut e, &mut seen);
    assert_eq!(seen.rx, b"one ");

    e.set_rx_paused(t0, s, true).unwrap();
    assert!(e.is_rx_paused(s));
    assert!(!e.wants_read(conn));
    assert_eq!(
        actions(&mut e),
        [Action::PauseReading { conn, paused: true }]
    );
    // Pausing twice says nothing more.
    e.set_rx_paused(t0, s, true).unwrap();
    assert!(actions(&mut e).is_empty());

    // What the adapter had already read, and the peer's close, wait.
    e.handle_data(t0, conn, b"two ");
    e.handle_data(t0, conn, b"three");
    e.handle_closed(t0, conn);
    let before = seen.states.len();
    drain(&mut e, &mut seen);
    assert_eq!(seen.rx, b"one ");
    assert_eq!(seen.states.len(), before, "no state while paused");

    e.set_rx_paused(t0, s, false).unwrap();
    assert_eq!(
        actions(&mut e).first(),
        Some(&Action::PauseReading {
            conn,
            paused: false
        })
    );
    drain(&mut e, &mut seen);
    assert_eq!(seen.rx, b"one two three");
    assert_eq!(seen.states.last(), Some(&StreamState::Disconnected));
}

#[test]
fn an_adapter_that_ignores_the_pause_fails_the_connection_not_memory() {
    let t0 = Instant::now();
    let mut e = engine(1000);
    let (s, conn) = connected(&mut e, t0, "raw");
    e.set_rx_paused(t0, s, true).unwrap();
    for _ in 0..20 {
        e.handle_data(t0, conn, &[7u8; 100]);
    }
    let mut errors = vec![];
    let mut seen = Seen::default();
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::ConnectionError { reason, .. } => errors.push(reason),
            Event::Rx { data, .. } => seen.rx.extend(data),
            Event::State { state, .. } => seen.states.push(state),
            _ => {}
        }
    }
    assert!(seen.rx.is_empty());
    assert!(
        errors.iter().any(|r| r.contains("rx paused")),
        "errors: {errors:?}"
    );
    assert_eq!(seen.states.last(), Some(&StreamState::Disconnected));
}

#[test]
fn the_pause_follows_the_stream_onto_its_next_connection() {
    let t0 = Instant::now();
    let mut e = engine(1 << 20);
    let (s, conn) = connected(&mut e, t0, "raw");
    e.set_rx_paused(t0, s, true).unwrap();
    e.handle_closed(t0, conn);
    actions(&mut e);
    e.set_rx_paused(t0, s, true).unwrap();
    // Reconnect by hand: the old connection's EOF is held until resume, so
    // the stream is still on it; resume, see it end, then reconnect paused.
    e.set_rx_paused(t0, s, false).unwrap();
    let mut seen = Seen::default();
    drain(&mut e, &mut seen);
    assert_eq!(seen.states.last(), Some(&StreamState::Disconnected));
    e.set_rx_paused(t0, s, true).unwrap();
    e.client_connect(t0, s).unwrap();
    let conn2 = actions(&mut e)
        .iter()
        .find_map(|a| match a {
            Action::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("reconnect");
    e.handle_connected(t0, conn2);
    // The new connection is not read from the start.
    assert!(actions(&mut e).contains(&Action::PauseReading {
        conn: conn2,
        paused: true
    }));
    // Bytes an adapter had read anyway are held.
    e.handle_data(t0, conn2, b"late");
    let mut seen = Seen::default();
    drain(&mut e, &mut seen);
    assert!(seen.rx.is_empty());
    e.set_rx_paused(t0, s, false).unwrap();
    drain(&mut e, &mut seen);
    assert_eq!(seen.rx, b"late");
}

#[test]
fn a_paused_http_transaction_is_not_failed_for_silence() {
    let t0 = Instant::now();
    let mut e = engine(1 << 20);
    let (s, conn) = connected(&mut e, t0, "http");
    actions(&mut e);
    e.handle_data(
        t0,
        conn,
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
    );
    let mut seen = Seen::default();
    drain(&mut e, &mut seen);
    assert_eq!(seen.rx, b"hello");
    e.set_rx_paused(t0, s, true).unwrap();
    // Far beyond the 30 s silence timeout.
    let mut now = t0;
    for _ in 0..10 {
        now += Duration::from_secs(20);
        e.handle_timeout(now);
    }
    drain(&mut e, &mut seen);
    assert!(
        !seen.states.contains(&StreamState::Disconnected)
            && !seen.states.contains(&StreamState::QosNackRemote),
        "{:?}",
        seen.states
    );
    e.set_rx_paused(now, s, false).unwrap();
    e.handle_data(now, conn, b"world");
    drain(&mut e, &mut seen);
    assert_eq!(seen.rx, b"helloworld");
    assert!(seen.states.contains(&StreamState::QosAckRemote));
}
