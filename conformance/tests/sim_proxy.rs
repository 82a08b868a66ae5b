//! Deterministic simulation of the proxy scenario (`conformance::sim::proxy`):
//! proxy-mode clients → a proxy daemon node → the echo server, under faults.
//!
//! Replay one seed with its trace:
//! `SIM_SEED=N cargo test -p conformance --test sim_proxy replay -- --nocapture`

use conformance::sim::proxy::run_proxy;
use conformance::sim::{EchoConfig, EchoReport};
use ss_core::StreamState::*;

/// Seeds run by `proxy_many_seeds`; `SIM_SEEDS=N` runs more (or fewer).
const SEEDS: u64 = 600;

fn seed_count() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(SEEDS)
}

fn show(r: &EchoReport) -> String {
    format!("{}\n{}", r.summary(), r.violations.join("\n"))
}

#[test]
fn calm_run_echoes_everything_through_the_daemon() {
    let r = run_proxy(&EchoConfig::calm(1));
    assert!(r.ok(), "{}", show(&r));
    assert_eq!((r.streams, r.streams_done), (1, 1), "{}", show(&r));
    let states: Vec<_> = r
        .states(r.client_nodes[0])
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        &states[..3],
        [Creating, Connecting, Connected],
        "{}",
        r.trace_text()
    );
    assert!(r.bytes_echoed > 0);
}

#[test]
fn same_seed_same_trace() {
    for seed in [3, 17, 101] {
        let a = run_proxy(&EchoConfig::from_seed(seed));
        let b = run_proxy(&EchoConfig::from_seed(seed));
        assert_eq!(a.trace_text(), b.trace_text(), "seed {seed}");
    }
}

#[test]
fn proxy_many_seeds() {
    let n = seed_count();
    let (mut streams, mut done, mut gave_up, mut destroyed, mut bytes, mut links) =
        (0, 0, 0, 0, 0u64, 0u64);
    let mut failures = vec![];
    for seed in 0..n {
        let r = run_proxy(&EchoConfig::from_seed(seed));
        streams += r.streams;
        done += r.streams_done;
        gave_up += r.streams_gave_up;
        destroyed += r.streams_destroyed;
        bytes += r.bytes_echoed;
        links += r.stats.links;
        if !r.ok() {
            failures.push((seed, r.violations.clone()));
        }
    }
    println!(
        "  {n} seeds: {streams} client streams ({done} done, {gave_up} gave up, {destroyed} \
         destroyed by their app), {bytes} bytes echoed through the daemon, {links} connections"
    );
    assert!(
        failures.is_empty(),
        "{} of {n} seeds failed; first: seed {} {:?}\nreplay: SIM_SEED={} cargo test -p \
         conformance --test sim_proxy replay -- --nocapture",
        failures.len(),
        failures[0].0,
        failures[0].1,
        failures[0].0
    );
    assert!(done > streams / 2, "most streams complete");
}

#[test]
fn replay() {
    let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) else {
        return;
    };
    let r = run_proxy(&EchoConfig::from_seed(seed));
    println!("{}", r.trace_text());
    println!("{}", show(&r));
    assert!(r.ok());
}
