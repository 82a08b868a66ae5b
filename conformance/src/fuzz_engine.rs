//! Drive one engine with an arbitrary sequence of application calls and
//! adapter inputs decoded from bytes, checking its invariants. Shared by the
//! cargo-fuzz target `engine_inputs` and a proptest, so CI exercises it too.

use ss_core::policy::{MetadataDecl, Policy, Protocol, StreamType};
use ss_core::{
    Action, ConnId, Engine, EngineConfig, Event, Flags, ListenerId, RetryPolicy, StreamId,
    StreamState,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The policy the fuzzer drives: every client and server shape the engine knows.
pub fn fuzz_policy() -> Policy {
    let retry = RetryPolicy {
        name: "r".into(),
        backoff_ms: vec![10, 20, 40],
        conceal: 4,
        jitter_pc: Some(30),
        svalidping_s: None,
        svalidhup_s: None,
    };
    let base = StreamType {
        name: "c".into(),
        endpoint: Some("127.0.0.1".into()),
        port: 1,
        protocol: Protocol::Raw,
        retry: Some("r".into()),
        timeout_ms: Some(50),
        ..Default::default()
    };
    let mut v = vec![base.clone()];
    v.push(StreamType {
        name: "nailed".into(),
        nailed_up: true,
        ..base.clone()
    });
    v.push(StreamType {
        name: "opp".into(),
        opportunistic: true,
        retry: None,
        ..base.clone()
    });
    v.push(StreamType {
        name: "templ".into(),
        endpoint: Some("${h}.example".into()),
        metadata: vec![MetadataDecl {
            name: "h".into(),
            header: None,
        }],
        ..base.clone()
    });
    v.push(StreamType {
        name: "unix".into(),
        endpoint: Some("+/tmp/x".into()),
        ..base.clone()
    });
    v.push(StreamType {
        name: "srv".into(),
        server: true,
        ..base
    });
    Policy {
        retry: vec![retry],
        streamtypes: v,
        ..Default::default()
    }
}

/// What one run saw, for assertions in tests.
#[derive(Debug, Default)]
pub struct Outcome {
    /// State events seen.
    pub states: usize,
    /// Actions seen.
    pub actions: usize,
}

/// Run the engine over `data`; panics if an invariant breaks.
pub fn run(data: &[u8]) -> Outcome {
    let policy = fuzz_policy();
    let names: Vec<String> = policy.streamtypes.iter().map(|s| s.name.clone()).collect();
    let mut e = Engine::new(
        policy,
        EngineConfig {
            seed: 1,
            max_streams: 64,
            ..Default::default()
        },
    );
    let mut now = Instant::now();
    let mut streams: Vec<StreamId> = vec![];
    let mut conns: Vec<ConnId> = vec![];
    let mut listeners: Vec<ListenerId> = vec![];
    let mut last: BTreeMap<StreamId, Option<StreamState>> = BTreeMap::new();
    let mut out = Outcome::default();

    let pick =
        |v: &[u64], b: u8| -> Option<u64> { (!v.is_empty()).then(|| v[b as usize % v.len()]) };
    for op in data.chunks(3) {
        let (code, a, b) = (op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0));
        let sid = pick(&streams.iter().map(|s| s.0).collect::<Vec<_>>(), a).map(StreamId);
        let cid = pick(&conns.iter().map(|c| c.0).collect::<Vec<_>>(), a).map(ConnId);
        match code % 20 {
            0 => {
                if let Ok(s) = e.create(now, &names[a as usize % names.len()]) {
                    streams.push(s);
                }
            }
            1 => drop(sid.map(|s| e.client_connect(now, s))),
            2 => drop(sid.map(|s| e.request_tx(now, s))),
            3 => drop(sid.map(|s| e.write(now, s, &vec![b; b as usize], Flags(b as u32 & 3)))),
            4 => drop(sid.map(|s| e.destroy(now, s))),
            5 => drop(sid.map(|s| e.set_metadata(s, "h", &vec![b'a'; b as usize % 8]))),
            6 => drop(sid.map(|s| e.start_timeout(now, s, b as u32))),
            7 => {
                now += Duration::from_millis(a as u64 * 3);
                e.handle_timeout(now);
            }
            8 => drop(cid.map(|c| e.handle_connected(now, c))),
            9 => drop(cid.map(|c| e.handle_connect_failed(now, c, "fuzz"))),
            10 => drop(cid.map(|c| e.handle_data(now, c, &vec![b; a as usize]))),
            11 => drop(cid.map(|c| e.handle_closed(now, c))),
            12 => drop(cid.map(|c| e.handle_sent(now, c, b as usize * 7))),
            13 => drop(cid.map(|c| {
                let ips: Vec<std::net::IpAddr> = (0..b % 3).map(|i| [10, 0, 0, i].into()).collect();
                e.handle_resolved(now, c, &ips)
            })),
            14 => {
                if let Some(l) = pick(&listeners.iter().map(|l| l.0).collect::<Vec<_>>(), a) {
                    if let Some(c) = e.handle_accepted(now, ListenerId(l)) {
                        conns.push(c);
                    }
                }
            }
            15 => drop(sid.map(|s| e.disconnect(now, s))),
            16 => drop(sid.map(|s| e.request_tx_len(now, s, b as u64))),
            17 => drop(sid.map(|s| e.cancel_timeout(s))),
            18 => {
                if let Some(l) = pick(&listeners.iter().map(|l| l.0).collect::<Vec<_>>(), a) {
                    if b & 1 == 0 {
                        e.handle_listening(now, ListenerId(l), "127.0.0.1:1");
                    } else {
                        e.handle_listen_failed(now, ListenerId(l), "fuzz");
                    }
                }
            }
            _ => {
                // Garbage ids must be ignored, never panic.
                e.handle_data(now, ConnId(a as u64 * 1000 + b as u64), b"x");
                let _ = e.destroy(now, StreamId(b as u64 * 1000));
            }
        }
        while let Some(act) = e.poll_action() {
            out.actions += 1;
            match act {
                Action::Connect { conn, .. } | Action::Resolve { conn, .. } => {
                    if !conns.contains(&conn) {
                        conns.push(conn)
                    }
                }
                Action::Close { conn } => conns.retain(|c| *c != conn),
                Action::Listen { listener, .. } => listeners.push(listener),
                Action::StopListening { listener } => listeners.retain(|l| *l != listener),
                Action::Transmit { data, .. } => assert!(!data.is_empty(), "empty transmit"),
                Action::SetSocketOptions { .. } => {}
            }
        }
        while let Some(ev) = e.poll_event() {
            if let Event::State { stream, state, .. } = ev {
                out.states += 1;
                let prev = last.get(&stream).copied().flatten();
                assert!(
                    state.is_legal_after(prev),
                    "{stream}: illegal {prev:?} -> {state:?}"
                );
                last.insert(stream, Some(state));
                if state == StreamState::Destroying {
                    streams.retain(|s| *s != stream);
                }
            }
        }
        if let Some(t) = e.poll_timeout() {
            assert!(
                t >= now - Duration::from_secs(3600),
                "timer in the distant past"
            );
        }
        assert!(e.stream_count() <= 64);
    }
    // Destroying everything leaves nothing behind.
    for s in streams.clone() {
        let _ = e.destroy(now, s);
    }
    assert_eq!(e.stream_count(), 0, "streams leaked");
    assert_eq!(e.conn_count(), 0, "connections leaked");
    out
}
