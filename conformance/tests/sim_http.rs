//! Deterministic simulation of the HTTP/1.1 scenario, plain and over TLS
//! (see `conformance::sim::http`).
//!
//! Replay one seed with its trace:
//! `SIM_SEED=N cargo test -p conformance --test sim_http replay -- --nocapture`

use conformance::sim::http::{run_http, HttpConfig, HttpReport};
use conformance::sim::shared::{sweep, FaultTally};
use conformance::sim::{FaultKind, TraceKind};
use ss_core::StreamState;
use std::time::Instant;

/// Seeds run by `http_many_seeds`; `SIM_SEEDS=N` runs more (or fewer).
const SEEDS: u64 = 400;

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
    clients: u64,
    clients_done: u64,
    clients_gave_up: u64,
    txns: u64,
    txns_done: u64,
    requests: u64,
    busy: u64,
    hang_ups: u64,
}

impl Summary {
    fn add(&mut self, r: &HttpReport) {
        self.net.add(r.seed, r.tls, &r.stats, &r.violations);
        self.clients += r.clients as u64;
        self.clients_done += r.clients_done as u64;
        self.clients_gave_up += r.clients_gave_up as u64;
        self.txns += r.txns as u64;
        self.txns_done += r.txns_done as u64;
        self.requests += r.requests as u64;
        self.busy += r.busy as u64;
        self.hang_ups += r.hang_ups as u64;
    }

    fn merge(&mut self, o: Summary) {
        self.net.merge(o.net);
        self.clients += o.clients;
        self.clients_done += o.clients_done;
        self.clients_gave_up += o.clients_gave_up;
        self.txns += o.txns;
        self.txns_done += o.txns_done;
        self.requests += o.requests;
        self.busy += o.busy;
        self.hang_ups += o.hang_ups;
    }
}

/// The configuration for `seed`; `calm_mid_txn` removes every failure that
/// can strike once a request body is on its way (resets, server 503s and
/// hang-ups), keeping the connection-level faults.
fn config(seed: u64, calm_mid_txn: bool) -> HttpConfig {
    let mut cfg = HttpConfig::from_seed(seed);
    if calm_mid_txn {
        cfg.faults.reset = 0.0;
        cfg.server_busy = 0.0;
        cfg.server_abort = 0.0;
    }
    cfg
}

/// Every seed as drawn: connection faults, resets mid-transaction, server
/// 503s and hang-ups, plain and TLS.
#[test]
fn http_many_seeds() {
    run_sweep(false);
}

fn run_sweep(calm_mid_txn: bool) {
    let t0 = Instant::now();
    let seeds = seed_count();
    let total = sweep(
        seeds,
        |seed, s: &mut Summary| s.add(&run_http(&config(seed, calm_mid_txn))),
        Summary::merge,
    );
    let n = &total.net;
    println!(
        "http simulation{}: {} seeds ({} over TLS) in {:.2?} (wall clock)",
        if calm_mid_txn {
            " (no mid-transaction failures)"
        } else {
            ""
        },
        n.runs,
        n.tls_runs,
        t0.elapsed()
    );
    print!("{}", n.fault_table());
    println!(
        "  clients: {} ({} done, {} gave up); transactions: {} ({} acknowledged); \
         requests seen by the server: {} ({} answered 503, {} hung up); connections: {}; steps: {}",
        total.clients,
        total.clients_done,
        total.clients_gave_up,
        total.txns,
        total.txns_done,
        total.requests,
        total.busy,
        total.hang_ups,
        n.connections,
        n.steps
    );
    let env = if calm_mid_txn {
        "SIM_CALM_MID_TXN=1 "
    } else {
        ""
    };
    print!(
        "{}",
        n.failure_list(10, |seed| format!(
            "{env}SIM_SEED={seed} cargo test -p conformance --test sim_http replay -- --nocapture"
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
        let mut kinds = vec![
            FaultKind::Refused,
            FaultKind::DnsFailure,
            FaultKind::Blackhole,
            FaultKind::PartialWrite,
            FaultKind::Delay,
        ];
        if !calm_mid_txn {
            kinds.extend([FaultKind::Reset, FaultKind::AppDisconnect]);
            assert!(total.busy > 0, "the server never answered 503");
            assert!(total.hang_ups > 0, "the server never hung up");
        }
        let missing = n.missing(&kinds);
        assert!(missing.is_empty(), "no seed injected {missing:?}");
        assert!(n.tls_runs > seeds / 4 && n.tls_runs < seeds * 3 / 4);
        assert!(
            total.clients_gave_up > 0,
            "some clients should exhaust their retries"
        );
    }
    assert!(
        total.clients_done > total.clients / 2,
        "most clients should finish"
    );
    assert!(total.txns_done > total.txns / 2);
}

/// The same seed twice gives the identical trace, plain and over TLS.
#[test]
fn same_seed_same_trace() {
    let mut seen = [false, false];
    for seed in 0..40u64 {
        let cfg = HttpConfig::from_seed(seed);
        if seen[usize::from(cfg.tls)] {
            continue;
        }
        seen[usize::from(cfg.tls)] = true;
        let a = run_http(&cfg);
        let b = run_http(&cfg);
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
    // A calm TLS run replays too, with bytes on the wire identical.
    let a = run_http(&HttpConfig::calm(11, true, 2, 3));
    let b = run_http(&HttpConfig::calm(11, true, 2, 3));
    assert_eq!(a.trace_text(), b.trace_text());
    // Different seeds differ.
    let c = run_http(&HttpConfig::from_seed(1));
    let d = run_http(&HttpConfig::from_seed(2));
    assert_ne!(c.trace, d.trace);
}

fn assert_ok(r: &HttpReport) {
    assert!(
        r.ok(),
        "violations: {:#?}\n{}",
        r.violations,
        r.trace_text()
    );
}

fn client_states(r: &HttpReport) -> Vec<StreamState> {
    r.trace
        .iter()
        .filter(|e| e.node.0 == 1)
        .filter_map(|e| match e.kind {
            TraceKind::State { state, .. } => Some(state),
            _ => None,
        })
        .collect()
}

/// No faults, TLS: every transaction of every client completes, each on the
/// reference's state sequence.
#[test]
fn calm_tls_run_completes_everything() {
    let cfg = HttpConfig::calm(5, true, 3, 6);
    let r = run_http(&cfg);
    assert_ok(&r);
    assert_eq!(r.clients_done, 3, "{}", r.summary());
    assert_eq!(r.txns_done, 18);
    assert_eq!(r.requests, 18, "no retries without faults");
    use StreamState::*;
    let states = client_states(&r);
    let mut want = vec![Creating];
    for _ in 0..6 {
        want.extend([Poll, Connecting, Connected, QosAckRemote, Disconnected]);
    }
    want.push(Destroying);
    assert_eq!(states, want);
}

/// As above without TLS.
#[test]
fn calm_plain_run_completes_everything() {
    let r = run_http(&HttpConfig::calm(6, false, 4, 5));
    assert_ok(&r);
    assert_eq!(r.clients_done, 4, "{}", r.summary());
    assert_eq!(r.txns_done, 20);
}

/// A regression test for a bug the sweep found (seed 3): one client, one
/// POST with a body, the server answers 503 once. The engine retries (after
/// the backoff, on a new connection) and must ask for the body again with
/// `Writable`; it used to send the head with `Content-Length: 100` and stall.
#[test]
fn retry_after_503_writes_the_body_again() {
    let mut cfg = HttpConfig::calm(3, false, 1, 1);
    cfg.clients[0].bodies = vec![100];
    cfg.server_busy = 1.0;
    cfg.server_max_misbehave = 1;
    let r = run_http(&cfg);
    assert_ok(&r);
    assert_eq!(r.busy, 1);
    assert_eq!(r.txns_done, 1, "{}", r.summary());
}

/// A server answering 503 and hanging up now and then: clients still finish.
#[test]
fn misbehaving_server_clients_recover() {
    for tls in [false, true] {
        let mut cfg = HttpConfig::calm(9, tls, 3, 4);
        cfg.server_busy = 0.3;
        cfg.server_abort = 0.3;
        cfg.server_max_misbehave = 6;
        let r = run_http(&cfg);
        assert_ok(&r);
        assert_eq!(r.clients_done, 3, "{}", r.summary());
        assert!(r.busy + r.hang_ups > 0, "{}", r.summary());
    }
}

/// Runs the seed in `SIM_SEED` (0 if unset) and prints its configuration and
/// trace; `SIM_CALM_MID_TXN=1` replays it as the green sweep runs it.
#[test]
fn replay() {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let calm = std::env::var("SIM_CALM_MID_TXN").is_ok_and(|v| v.trim() == "1");
    let cfg = config(seed, calm);
    let r = run_http(&cfg);
    println!("{cfg:#?}");
    print!("{}", r.trace_text());
    println!("{}", r.summary());
    for v in &r.violations {
        println!("VIOLATION {v}");
    }
    assert!(r.ok(), "seed {seed} broke invariants: {:#?}", r.violations);
}
