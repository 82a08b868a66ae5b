//! Deterministic simulation of the WebSocket scenario, `ws` and `wss` (see
//! `conformance::sim::ws`).
//!
//! Replay one seed with its trace:
//! `SIM_SEED=N cargo test -p conformance --test sim_ws replay -- --nocapture`

use conformance::sim::shared::{sweep, FaultTally};
use conformance::sim::ws::{run_ws, WsReport, WsSimConfig};
use conformance::sim::{FaultKind, TraceKind};
use ss_core::StreamState;
use std::time::Instant;

/// Seeds run by `ws_many_seeds`; `SIM_SEEDS=N` runs more (or fewer).
const SEEDS: u64 = 320;

fn seed_count() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(SEEDS)
}

/// Aggregates over many runs.
#[derive(Default)]
struct Summary {
    net: FaultTally,
    binary_runs: u64,
    clients: u64,
    clients_done: u64,
    clients_gave_up: u64,
    messages: u64,
    echoed: u64,
    resends: u64,
    partial_echoes: u64,
    greetings: u64,
    client_connections: u64,
    server_connections: u64,
    server_messages: u64,
    hang_ups: u64,
}

impl Summary {
    fn add(&mut self, r: &WsReport) {
        self.net.add(r.seed, r.tls, &r.stats, &r.violations);
        self.binary_runs += u64::from(r.binary);
        self.clients += r.clients as u64;
        self.clients_done += r.clients_done as u64;
        self.clients_gave_up += r.clients_gave_up as u64;
        self.messages += r.messages as u64;
        self.echoed += r.echoed as u64;
        self.resends += r.resends as u64;
        self.partial_echoes += r.partial_echoes as u64;
        self.greetings += r.greetings as u64;
        self.client_connections += r.client_connections as u64;
        self.server_connections += r.server_connections as u64;
        self.server_messages += r.server_messages as u64;
        self.hang_ups += r.hang_ups as u64;
    }

    fn merge(&mut self, o: Summary) {
        self.net.merge(o.net);
        self.binary_runs += o.binary_runs;
        self.clients += o.clients;
        self.clients_done += o.clients_done;
        self.clients_gave_up += o.clients_gave_up;
        self.messages += o.messages;
        self.echoed += o.echoed;
        self.resends += o.resends;
        self.partial_echoes += o.partial_echoes;
        self.greetings += o.greetings;
        self.client_connections += o.client_connections;
        self.server_connections += o.server_connections;
        self.server_messages += o.server_messages;
        self.hang_ups += o.hang_ups;
    }
}

/// Every seed as drawn: connection faults, resets mid-message, server
/// hang-ups, text and binary, `ws` and `wss`.
#[test]
fn ws_many_seeds() {
    let t0 = Instant::now();
    let seeds = seed_count();
    let total = sweep(
        seeds,
        |seed, s: &mut Summary| s.add(&run_ws(&WsSimConfig::from_seed(seed))),
        Summary::merge,
    );
    let n = &total.net;
    println!(
        "ws simulation: {} seeds ({} over TLS, {} binary) in {:.2?} (wall clock)",
        n.runs,
        n.tls_runs,
        total.binary_runs,
        t0.elapsed()
    );
    print!("{}", n.fault_table());
    println!(
        "  clients: {} ({} done, {} gave up); messages: {} ({} echoed, {} resent after a drop, \
         {} echoes cut short); greetings: {}; upgraded connections: {} seen by clients, {} by the server \
         ({} hung up by it); messages seen by the server: {}; connections: {}; steps: {}",
        total.clients,
        total.clients_done,
        total.clients_gave_up,
        total.messages,
        total.echoed,
        total.resends,
        total.partial_echoes,
        total.greetings,
        total.client_connections,
        total.server_connections,
        total.hang_ups,
        total.server_messages,
        n.connections,
        n.steps
    );
    print!(
        "{}",
        n.failure_list(10, |seed| format!(
            "SIM_SEED={seed} cargo test -p conformance --test sim_ws replay -- --nocapture"
        ))
    );
    assert!(
        n.failures.is_empty(),
        "{} of {} seeds broke invariants; first: {:?}",
        n.failures.len(),
        n.runs,
        n.failures.first().map(|f| f.0)
    );
    assert_eq!(n.runs, seeds);
    if seeds >= 200 {
        let missing = n.missing(&[
            FaultKind::Refused,
            FaultKind::DnsFailure,
            FaultKind::Blackhole,
            FaultKind::Reset,
            FaultKind::PartialWrite,
            FaultKind::Delay,
            FaultKind::AppDisconnect,
            FaultKind::Coalesced,
        ]);
        assert!(missing.is_empty(), "no seed injected {missing:?}");
        assert!(n.tls_runs > seeds / 4 && n.tls_runs < seeds * 3 / 4);
        assert!(total.binary_runs > seeds / 8 && total.binary_runs < seeds * 7 / 8);
        assert!(total.hang_ups > 0, "the server never hung up");
        assert!(total.resends > 0, "no message was ever resent");
        assert!(total.partial_echoes > 0, "no echo was ever cut short");
        assert!(total.greetings > 0, "no greeting was ever received");
        assert!(
            total.client_connections > total.clients,
            "clients should reconnect"
        );
    }
    assert!(
        total.clients_done > total.clients * 3 / 4,
        "most clients should finish"
    );
    assert!(total.echoed > total.messages * 3 / 4);
}

/// The same seed twice gives the identical trace, `ws` and `wss`.
#[test]
fn same_seed_same_trace() {
    let mut seen = [false, false];
    for seed in 0..40u64 {
        let cfg = WsSimConfig::from_seed(seed);
        if seen[usize::from(cfg.tls)] {
            continue;
        }
        seen[usize::from(cfg.tls)] = true;
        let a = run_ws(&cfg);
        let b = run_ws(&cfg);
        assert!(a.trace.len() > 10);
        assert_eq!(
            a.trace_text(),
            b.trace_text(),
            "seed {seed} is not deterministic"
        );
        assert_eq!(a.trace, b.trace);
        assert_eq!(a.stats, b.stats);
        if seen == [true, true] {
            break;
        }
    }
    assert_eq!(
        seen,
        [true, true],
        "no plain or no TLS seed among the first 40"
    );
    // A calm wss run replays too.
    let a = run_ws(&WsSimConfig::calm(11, true, false, 2, 3));
    let b = run_ws(&WsSimConfig::calm(11, true, false, 2, 3));
    assert_eq!(a.trace_text(), b.trace_text());
    // Different seeds differ.
    let c = run_ws(&WsSimConfig::from_seed(1));
    let d = run_ws(&WsSimConfig::from_seed(2));
    assert_ne!(c.trace, d.trace);
}

fn assert_ok(r: &WsReport) {
    assert!(
        r.ok(),
        "violations: {:#?}\n{}",
        r.violations,
        r.trace_text()
    );
}

fn states_of_node(r: &WsReport, node: usize) -> Vec<StreamState> {
    r.trace
        .iter()
        .filter(|e| e.node.0 == node)
        .filter_map(|e| match e.kind {
            TraceKind::State { state, .. } => Some(state),
            _ => None,
        })
        .collect()
}

/// No faults: every message of every client is echoed on the first
/// connection, each sent once, `ws` and `wss`, text and binary.
#[test]
fn calm_runs_echo_everything() {
    for (tls, binary) in [(false, false), (true, true), (true, false), (false, true)] {
        let cfg = WsSimConfig::calm(5, tls, binary, 3, 7);
        let r = run_ws(&cfg);
        assert_ok(&r);
        assert_eq!(r.clients_done, 3, "{}", r.summary());
        assert_eq!(r.echoed, 21);
        assert_eq!(r.server_messages, 21, "no resends without faults");
        assert_eq!(r.resends, 0);
        assert_eq!((r.client_connections, r.server_connections), (3, 3));
        use StreamState::*;
        assert_eq!(
            states_of_node(&r, 1),
            [Creating, Connecting, Connected, Destroying],
            "{}",
            r.trace_text()
        );
    }
}

/// A server hanging up now and then: the engine reconnects by itself and
/// the clients resend what was not echoed, and still finish.
#[test]
fn hanging_up_server_clients_recover() {
    for tls in [false, true] {
        let mut cfg = WsSimConfig::calm(9, tls, false, 3, 6);
        cfg.server_abort = 0.3;
        cfg.server_max_aborts = 5;
        let r = run_ws(&cfg);
        assert_ok(&r);
        assert_eq!(r.clients_done, 3, "{}", r.summary());
        assert!(r.hang_ups > 0, "{}", r.summary());
        assert!(r.client_connections > 3, "{}", r.summary());
    }
}

/// Runs the seed in `SIM_SEED` (0 if unset) and prints its configuration and
/// trace.
#[test]
fn replay() {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let cfg = WsSimConfig::from_seed(seed);
    let r = run_ws(&cfg);
    println!("{cfg:#?}");
    print!("{}", r.trace_text());
    println!("{}", r.summary());
    for v in &r.violations {
        println!("VIOLATION {v}");
    }
    assert!(r.ok(), "seed {seed} broke invariants: {:#?}", r.violations);
}
