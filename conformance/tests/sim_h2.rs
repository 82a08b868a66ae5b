//! Deterministic simulation of the HTTP/2 scenario over TLS (see
//! `conformance::sim::h2`): client streams sharing connections, a server
//! that answers, 503s, hangs up and resets single streams, network faults.
//!
//! Replay one seed with its trace:
//! `SIM_SEED=N cargo test -p conformance --test sim_h2 replay -- --nocapture`

use conformance::sim::h2::{run_h2, H2Report, H2SimConfig, DEFAULT_WINDOW};
use conformance::sim::shared::{sweep, FaultTally};
use conformance::sim::{FaultKind, TraceKind};
use ss_core::StreamState;
use std::time::{Duration, Instant};

/// Seeds run by `h2_many_seeds`; `SIM_SEEDS=N` runs more (or fewer).
const SEEDS: u64 = 150;

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
    streams: u64,
    streams_done: u64,
    streams_gave_up: u64,
    txns: u64,
    txns_done: u64,
    big_txns_done: u64,
    requests: u64,
    busy: u64,
    hang_ups: u64,
    resets: u64,
    acks_after_reset: u64,
    /// Runs with nothing that costs a connection (one each per client).
    one_conn_runs: u64,
    /// The latest a run went quiet (virtual time).
    max_quiet_at: Duration,
}

impl Summary {
    fn add(&mut self, r: &H2Report) {
        let mut v = r.violations.clone();
        v.extend(one_connection_violation(r));
        self.net.add(r.seed, true, &r.stats, &v);
        self.one_conn_runs += u64::from(keeps_connections(r));
        self.max_quiet_at = self.max_quiet_at.max(r.quiet_at);
        self.clients += r.clients as u64;
        self.streams += r.streams as u64;
        self.streams_done += r.streams_done as u64;
        self.streams_gave_up += r.streams_gave_up as u64;
        self.txns += r.txns as u64;
        self.txns_done += r.txns_done as u64;
        self.big_txns_done += r.big_txns_done as u64;
        self.requests += r.requests as u64;
        self.busy += r.busy as u64;
        self.hang_ups += r.hang_ups as u64;
        self.resets += r.resets as u64;
        self.acks_after_reset += r.acks_after_reset as u64;
    }

    fn merge(&mut self, o: Summary) {
        self.net.merge(o.net);
        self.one_conn_runs += o.one_conn_runs;
        self.max_quiet_at = self.max_quiet_at.max(o.max_quiet_at);
        self.clients += o.clients;
        self.streams += o.streams;
        self.streams_done += o.streams_done;
        self.streams_gave_up += o.streams_gave_up;
        self.txns += o.txns;
        self.txns_done += o.txns_done;
        self.big_txns_done += o.big_txns_done;
        self.requests += o.requests;
        self.busy += o.busy;
        self.hang_ups += o.hang_ups;
        self.resets += o.resets;
        self.acks_after_reset += o.acks_after_reset;
    }
}

/// The configuration for `seed`; `calm_mid_txn` removes every failure that
/// can strike once a request is on its way (network resets, server 503s,
/// hang-ups and stream resets), keeping the connection-level faults.
fn config(seed: u64, calm_mid_txn: bool) -> H2SimConfig {
    let cfg = H2SimConfig::from_seed(seed);
    if calm_mid_txn {
        cfg.calm_mid_txn()
    } else {
        cfg
    }
}

/// Whether nothing in run `r` could cost a client its connection: no fault
/// but partial writes and coalescing, and no 503, hang-up or stream reset by
/// the server (a stream backing off after one may outlast `keepalive_idle`).
fn keeps_connections(r: &H2Report) -> bool {
    r.fault_kinds()
        .iter()
        .all(|k| matches!(k, FaultKind::PartialWrite | FaultKind::Coalesced))
        && r.busy + r.hang_ups + r.resets == 0
}

/// For a run that [keeps connections](keeps_connections): every client's
/// streams, started together, rode ONE connection (one `Connect` each).
fn one_connection_violation(r: &H2Report) -> Option<String> {
    (keeps_connections(r) && r.connects.iter().any(|&c| c != 1)).then(|| {
        format!(
            "no fault that costs a connection, yet Connects per client {:?}",
            r.connects
        )
    })
}

/// Every seed as drawn: connection faults, resets mid-transaction, server
/// 503s, hang-ups and stream resets.
#[test]
fn h2_many_seeds() {
    let t0 = Instant::now();
    let seeds = seed_count();
    let total = sweep(
        seeds,
        |seed, s: &mut Summary| s.add(&run_h2(&config(seed, false))),
        Summary::merge,
    );
    let n = &total.net;
    println!(
        "h2 simulation: {} seeds in {:.2?} (wall clock)",
        n.runs,
        t0.elapsed()
    );
    print!("{}", n.fault_table());
    println!(
        "  clients: {}; streams: {} ({} done, {} gave up); transactions: {} ({} acknowledged, \
         {} of them beyond the {DEFAULT_WINDOW}-byte window); requests seen by the server: {} \
         ({} answered 503, {} hung up, {} stream resets; {} acks on a connection after a \
         reset of a neighbour); connections: {}; steps: {}; {} runs with nothing that costs \
         a connection, each on one connection per client; latest quiet at {:?} (virtual)",
        total.clients,
        total.streams,
        total.streams_done,
        total.streams_gave_up,
        total.txns,
        total.txns_done,
        total.big_txns_done,
        total.requests,
        total.busy,
        total.hang_ups,
        total.resets,
        total.acks_after_reset,
        n.connections,
        n.steps,
        total.one_conn_runs,
        total.max_quiet_at
    );
    print!(
        "{}",
        n.failure_list(10, |seed| format!(
            "SIM_SEED={seed} cargo test -p conformance --test sim_h2 replay -- --nocapture"
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
    if seeds >= 100 {
        let kinds = [
            FaultKind::Refused,
            FaultKind::DnsFailure,
            FaultKind::Blackhole,
            FaultKind::PartialWrite,
            FaultKind::Delay,
            FaultKind::Coalesced,
            FaultKind::Reset,
            FaultKind::AppDisconnect,
            FaultKind::AppDestroy,
        ];
        let missing = n.missing(&kinds);
        assert!(missing.is_empty(), "no seed injected {missing:?}");
        assert!(total.busy > 0, "the server never answered 503");
        assert!(total.hang_ups > 0, "the server never hung up");
        assert!(total.resets > 0, "the server never reset a stream");
        assert!(
            total.acks_after_reset > 0,
            "no stream completed on a connection after a neighbour's reset"
        );
        assert!(
            total.big_txns_done > 0,
            "no body beyond the window went through"
        );
        assert!(
            total.streams_gave_up > 0,
            "some streams should exhaust their retries"
        );
        assert!(
            total.one_conn_runs > 0,
            "no run without faults that cost connections"
        );
    }
    assert!(
        total.streams_done > total.streams / 2,
        "most streams should finish"
    );
    assert!(total.txns_done > total.txns / 2);
}

/// The same seed twice gives the identical trace; different seeds differ.
#[test]
fn same_seed_same_trace() {
    for seed in [0u64, 7] {
        let cfg = H2SimConfig::from_seed(seed);
        let a = run_h2(&cfg);
        let b = run_h2(&cfg);
        assert!(a.trace.len() > 10);
        assert_eq!(
            a.trace_text(),
            b.trace_text(),
            "seed {seed} is not deterministic"
        );
        assert_eq!(a.trace, b.trace);
        assert_eq!(a.stats, b.stats);
    }
    // A calm run replays too, bytes on the wire identical.
    let a = run_h2(&H2SimConfig::calm(11, 2, 3, 2));
    let b = run_h2(&H2SimConfig::calm(11, 2, 3, 2));
    assert_eq!(a.trace_text(), b.trace_text());
    let c = run_h2(&H2SimConfig::from_seed(1));
    let d = run_h2(&H2SimConfig::from_seed(2));
    assert_ne!(c.trace, d.trace);
}

fn assert_ok(r: &H2Report) {
    assert!(
        r.ok(),
        "violations: {:#?}\n{}",
        r.violations,
        r.trace_text()
    );
}

/// Client `node`'s states, per stream, in order.
fn client_states(r: &H2Report, node: usize) -> Vec<Vec<StreamState>> {
    let mut by: std::collections::BTreeMap<_, Vec<StreamState>> = Default::default();
    for e in r.trace.iter().filter(|e| e.node.0 == node) {
        if let TraceKind::State { stream, state, .. } = e.kind {
            by.entry(stream).or_default().push(state);
        }
    }
    by.into_values().collect()
}

/// No faults: every transaction of every stream completes, each stream on
/// the expected state sequence, and the streams each client started
/// together rode ONE connection (one `Connect` per client, one link each).
#[test]
fn calm_run_completes_everything_on_one_connection_per_client() {
    let cfg = H2SimConfig::calm(5, 3, 4, 3);
    let r = run_h2(&cfg);
    assert_ok(&r);
    assert_eq!(r.streams_done, 12, "{}", r.summary());
    assert_eq!(r.txns_done, 36);
    assert_eq!(r.requests, 36, "no retries without faults");
    assert!(r.big_txns_done > 0, "{}", r.summary());
    assert_eq!(r.connects, vec![1, 1, 1], "{}", r.summary());
    assert_eq!(r.stats.links, 3, "{}", r.summary());
    use StreamState::*;
    for node in 1..=3 {
        let states = client_states(&r, node);
        assert_eq!(states.len(), 4);
        for s in states {
            let mut want = vec![Creating];
            for _ in 0..3 {
                want.extend([Poll, Connecting, Connected, QosAckRemote, Disconnected]);
            }
            want.push(Destroying);
            assert_eq!(s, want);
        }
    }
}

/// Connection faults only (refused, DNS, blackholed connects, delays,
/// partial writes, coalescing): every seed completes without breaking an
/// invariant, and those that drew nothing that costs a connection used one
/// connection per client.
#[test]
fn connection_faults_only() {
    let mut one_conn = 0;
    for seed in 0..24u64 {
        let r = run_h2(&config(seed, true));
        assert_ok(&r);
        assert_eq!(r.busy + r.hang_ups + r.resets, 0);
        let v = one_connection_violation(&r);
        assert!(v.is_none(), "seed {seed}: {v:?}");
        one_conn += u64::from(keeps_connections(&r));
    }
    assert!(one_conn > 0, "no seed without connection-level faults");
}

/// A server answering 503, hanging up and resetting streams: streams still
/// finish, and some neighbour of a reset stream completes on its connection.
#[test]
fn misbehaving_server_streams_recover() {
    let mut cfg = H2SimConfig::calm(9, 2, 4, 3);
    cfg.server_busy = 0.15;
    cfg.server_abort = 0.1;
    cfg.server_reset = 0.3;
    cfg.server_max_misbehave = 8;
    let r = run_h2(&cfg);
    assert_ok(&r);
    assert_eq!(r.streams_done, 8, "{}", r.summary());
    assert!(r.busy + r.hang_ups + r.resets > 0, "{}", r.summary());
}

/// Runs the seed in `SIM_SEED` (0 if unset) and prints its configuration and
/// trace; `SIM_CALM_MID_TXN=1` replays it without mid-transaction failures.
#[test]
fn replay() {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let calm = std::env::var("SIM_CALM_MID_TXN").is_ok_and(|v| v.trim() == "1");
    let cfg = config(seed, calm);
    let r = run_h2(&cfg);
    println!("{cfg:#?}");
    print!("{}", r.trace_text());
    println!("{}", r.summary());
    for v in &r.violations {
        println!("VIOLATION {v}");
    }
    assert!(r.ok(), "seed {seed} broke invariants: {:#?}", r.violations);
}
