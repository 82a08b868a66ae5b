//! The proxy daemon (`ProxyServer` over an engine) fed arbitrary bytes from
//! hostile links, with a well-behaved link beside them: no panic, the good
//! link keeps its echo, and nothing leaks once every link is gone. Shared by
//! the cargo-fuzz target `proxy_daemon` and a proptest.

use ss_core::engine::ListenerId;
use ss_core::proxy::server::{ProxyConfig, ProxyServer};
use ss_core::proxy::wire::{Payload, ToClient, ToClientDecoder, ToProxy, WireMessage};
use ss_core::{Action, ConnId, Engine, EngineConfig, Flags, Policy};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What one run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Hostile links the daemon dropped.
    pub dropped: usize,
    /// Bytes the good link got echoed.
    pub echoed: usize,
}

/// Run the daemon over `data` (a sequence of (link, bytes) operations).
pub fn run(data: &[u8]) -> Outcome {
    let mut now = Instant::now();
    let mut policy = Policy::parse(
        r#"{"s": [{"echo": {"endpoint": "+@fuzz-echo", "protocol": "raw", "proxy_buflen": 4096}}]}"#,
    )
    .expect("fuzz daemon policy");
    ProxyServer::install(&mut policy, "+@fuzz-proxy").expect("install");
    let mut d = Engine::new(
        policy,
        EngineConfig {
            max_streams: 64,
            ..Default::default()
        },
    );
    let mut px = ProxyServer::new(ProxyConfig {
        max_links: 8,
        ..Default::default()
    });
    px.start(&mut d, now).expect("start");
    let mut listener: Option<ListenerId> = None;
    // Onward connections go nowhere except the echo "server": the test echoes
    // whatever the daemon sends on them.
    let mut onward: Vec<ConnId> = vec![];
    let mut links: Vec<ConnId> = vec![];
    let mut closed: Vec<ConnId> = vec![];
    let mut to_links: BTreeMap<ConnId, Vec<u8>> = BTreeMap::new();
    let mut out = Outcome::default();

    let settle = |d: &mut Engine,
                  px: &mut ProxyServer,
                  now: Instant,
                  listener: &mut Option<ListenerId>,
                  onward: &mut Vec<ConnId>,
                  closed: &mut Vec<ConnId>,
                  to_links: &mut BTreeMap<ConnId, Vec<u8>>| {
        for _ in 0..1000 {
            let mut any = false;
            while let Some(a) = d.poll_action() {
                any = true;
                match a {
                    Action::Listen { listener: l, .. } => {
                        *listener = Some(l);
                        d.handle_listening(now, l, "@fuzz-proxy");
                    }
                    Action::Connect { conn, .. } => {
                        onward.push(conn);
                        d.handle_connected(now, conn);
                    }
                    Action::Transmit { conn, data } => {
                        assert!(!data.is_empty(), "empty transmit");
                        d.handle_sent(now, conn, data.len());
                        if onward.contains(&conn) {
                            // The echo peer answers at once.
                            d.handle_data(now, conn, &data);
                        } else {
                            to_links.entry(conn).or_default().extend_from_slice(&data);
                        }
                    }
                    Action::Close { conn } => closed.push(conn),
                    _ => {}
                }
            }
            while let Some(ev) = d.poll_event() {
                any = true;
                px.handle_event(d, now, &ev);
            }
            while px.poll_log().is_some() {}
            if !any {
                return;
            }
        }
    };
    settle(
        &mut d,
        &mut px,
        now,
        &mut listener,
        &mut onward,
        &mut closed,
        &mut to_links,
    );
    let Some(l) = listener else {
        return out;
    };
    // The good link: create, connect, then echo a message at the end.
    let good = d.handle_accepted(now, l).expect("accept the good link");
    let frame = |m: &ToProxy| {
        let mut b = vec![];
        m.encode(&mut b).expect("encode");
        b
    };
    d.handle_data(
        now,
        good,
        &frame(&ToProxy::StreamtypeCreate {
            pid: 1,
            initial_tx_credit: 65536,
            streamtype: "echo".into(),
        }),
    );
    d.handle_data(now, good, &frame(&ToProxy::OnwardConnect));
    settle(
        &mut d,
        &mut px,
        now,
        &mut listener,
        &mut onward,
        &mut closed,
        &mut to_links,
    );

    for op in data.chunks(17) {
        let Some((&ctl, bytes)) = op.split_first() else {
            continue;
        };
        match ctl % 4 {
            0 => {
                if let Some(c) = d.handle_accepted(now, l) {
                    links.push(c);
                }
            }
            1 | 2 => {
                if let Some(&c) = links.get(usize::from(ctl >> 2) % links.len().max(1)) {
                    if !closed.contains(&c) {
                        d.handle_data(now, c, bytes);
                    }
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(ctl));
                d.handle_timeout(now);
            }
        }
        settle(
            &mut d,
            &mut px,
            now,
            &mut listener,
            &mut onward,
            &mut closed,
            &mut to_links,
        );
    }
    out.dropped = links.iter().filter(|c| closed.contains(c)).count();
    // The good link still works.
    assert!(!closed.contains(&good), "the good link was dropped");
    d.handle_data(
        now,
        good,
        &frame(&ToProxy::TxPayload(Payload::new(
            b"still here".to_vec(),
            Flags::NONE,
        ))),
    );
    settle(
        &mut d,
        &mut px,
        now,
        &mut listener,
        &mut onward,
        &mut closed,
        &mut to_links,
    );
    let mut dec = ToClientDecoder::new(Default::default());
    let mut bytes = &to_links.remove(&good).unwrap_or_default()[..];
    let mut echoed = vec![];
    while let Ok(Some(m)) = dec.next(&mut bytes) {
        if let ToClient::RxPayload(p) = m {
            echoed.extend_from_slice(&p.data);
        }
    }
    assert!(
        echoed.ends_with(b"still here"),
        "the good link lost its echo: {echoed:?}"
    );
    out.echoed = echoed.len();
    // Every link goes away: nothing is left but the listener.
    for c in links.iter().chain(std::iter::once(&good)) {
        if !closed.contains(c) {
            d.handle_closed(now, *c);
        }
    }
    settle(
        &mut d,
        &mut px,
        now,
        &mut listener,
        &mut onward,
        &mut closed,
        &mut to_links,
    );
    assert_eq!(px.link_count(), 0, "links leaked");
    assert_eq!(
        d.stream_count(),
        1,
        "streams leaked (only the listener should remain)"
    );
    out
}
