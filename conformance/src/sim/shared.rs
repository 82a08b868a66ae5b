//! What the client/server scenarios ([`super::http`], [`super::h2`],
//! [`super::ws`]) share:
//! the server's name and address, the engines' clock, the deterministic TLS
//! certificates, policy and engine helpers, and the seed sweep with its
//! fault tally (used by the sweep tests to run and summarise many seeds),
//! and the server node's application ([`ServerApp`]).

use super::net::{App, AppCx, SimRng, Stats};
use super::trace::{Fault, FaultKind};
use ss_core::policy::{Cert, Policy, TrustStore};
use ss_core::{Engine, EngineConfig, Event, Handler, RetryPolicy, StreamId};
use std::any::Any;
use std::cell::{Ref, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::OnceLock;

/// The server's DNS name (also in the TLS certificate).
pub const SERVER_NAME: &str = "server.sim";
/// The server node's address (the first node made).
pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
/// Wall-clock time every engine is told (2025-01-01), inside the
/// certificates' validity; TLS needs it to check them.
pub const UNIX_TIME: u64 = 1_735_689_600;

/// The Ed25519 CA and leaf certificates (DER) and the leaf's PKCS#8 key, made
/// from fixed key seeds, so every run (and every process) gets the same bytes.
/// The leaf names [`SERVER_NAME`] and [`SERVER_IP`].
pub struct TlsCerts {
    /// The CA certificate.
    pub ca: Vec<u8>,
    /// The server's certificate, issued by the CA.
    pub leaf: Vec<u8>,
    /// The server's private key (PKCS#8 v1, Ed25519).
    pub leaf_key: Vec<u8>,
}

/// An Ed25519 PKCS#8 v1 document for the 32-byte private key `seed`.
fn ed25519_pkcs8(seed: [u8; 32]) -> Vec<u8> {
    // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    der
}

/// The scenarios' certificates, made once per process (deterministically).
pub fn tls_certs() -> &'static TlsCerts {
    static CERTS: OnceLock<TlsCerts> = OnceLock::new();
    CERTS.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_ED25519};
        let key = |b: u8| {
            let der = ed25519_pkcs8([b; 32]);
            KeyPair::from_pkcs8_der_and_sign_algo(&der.as_slice().into(), &PKCS_ED25519)
                .expect("an Ed25519 key from a fixed seed")
        };
        let ca_key = key(0xca);
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "sim CA");
        let ca_cert = ca.self_signed(&ca_key).expect("self-signed CA");
        let leaf_key = key(0x1e);
        let mut leaf = CertificateParams::new(vec![SERVER_NAME.to_string(), SERVER_IP.to_string()])
            .expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        let leaf_cert = leaf
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("leaf signed by the CA");
        TlsCerts {
            ca: ca_cert.der().to_vec(),
            leaf: leaf_cert.der().to_vec(),
            leaf_key: leaf_key.serialize_der(),
        }
    })
}

/// With `tls`, add the certificates to `p` (`ca`, `leaf`, `leaf_key`) and a
/// trust store `sim_ts` holding the CA; without, `p` unchanged.
pub fn with_tls(tls: bool, mut p: Policy) -> Policy {
    if tls {
        let c = tls_certs();
        let cert = |name: &str, der: &[u8]| Cert {
            name: name.into(),
            der: der.to_vec(),
        };
        p.certs = vec![
            cert("ca", &c.ca),
            cert("leaf", &c.leaf),
            cert("leaf_key", &c.leaf_key),
        ];
        p.trust_stores = vec![TrustStore {
            name: "sim_ts".into(),
            stack: vec!["ca".into()],
        }];
    }
    p
}

/// The retry policy `sim` with these backoff steps (ms), `conceal` and `jitterpc`.
pub fn retry_policy(backoff_ms: &[u32], conceal: u16, jitter_pc: u8) -> RetryPolicy {
    RetryPolicy {
        name: "sim".into(),
        backoff_ms: backoff_ms.to_vec(),
        conceal,
        jitter_pc: Some(jitter_pc),
        svalidping_s: None,
        svalidhup_s: None,
    }
}

/// An engine told [`UNIX_TIME`].
pub fn new_engine(policy: Policy, config: EngineConfig) -> Engine {
    let mut e = Engine::new(policy, config);
    e.set_unix_time(UNIX_TIME);
    e
}

/// The server endpoint a client names: [`SERVER_NAME`] (resolved by sim
/// DNS) or [`SERVER_IP`].
pub fn server_endpoint(use_dns: bool) -> String {
    if use_dns {
        SERVER_NAME.to_string()
    } else {
        SERVER_IP.to_string()
    }
}

/// Cut `len` bytes into `pieces` pieces at seeded places: the returned
/// offsets start with 0 and end with `len`, ascending; with `allow_empty`
/// two cuts may coincide (an empty piece).
pub fn cuts(rng: &mut SimRng, len: usize, pieces: usize, allow_empty: bool) -> Vec<usize> {
    let mut c: Vec<usize> = Vec::with_capacity(pieces + 1);
    if allow_empty {
        for _ in 1..pieces {
            c.push(rng.range(0, len as u64) as usize);
        }
    } else if len >= 2 {
        let set: BTreeSet<usize> = (1..pieces)
            .map(|_| rng.range(1, len as u64 - 1) as usize)
            .collect();
        c.extend(set);
    }
    c.push(0);
    c.push(len);
    c.sort_unstable();
    c
}

/// Run `run(seed, acc)` for seeds `0..seeds` on two threads (interleaved
/// seeds, one accumulator each), then fold the second accumulator into the
/// first with `merge`. Each run is single-threaded and deterministic, so the
/// result does not depend on the threads.
pub fn sweep<S: Default + Send>(
    seeds: u64,
    run: impl Fn(u64, &mut S) + Sync,
    merge: impl FnOnce(&mut S, S),
) -> S {
    let run = &run;
    std::thread::scope(|sc| {
        let part = |start: u64| {
            sc.spawn(move || {
                let mut acc = S::default();
                for seed in (start..seeds).step_by(2) {
                    run(seed, &mut acc);
                }
                acc
            })
        };
        let (a, b) = (part(0), part(1));
        let mut s = a.join().expect("sweep thread");
        merge(&mut s, b.join().expect("sweep thread"));
        s
    })
}

/// Network-level aggregates over many runs: faults by kind, connections,
/// steps, TLS runs, and the seeds that broke invariants.
#[derive(Clone, Debug, Default)]
pub struct FaultTally {
    /// Runs added.
    pub runs: u64,
    /// Runs over TLS.
    pub tls_runs: u64,
    /// For each fault kind, the runs that saw it.
    pub seeds_with_fault: BTreeMap<FaultKind, u64>,
    /// For each fault kind, how many were injected in all.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Connections established.
    pub connections: u64,
    /// Steps taken.
    pub steps: u64,
    /// Seeds that broke invariants, with their violations.
    pub failures: Vec<(u64, Vec<String>)>,
}

impl FaultTally {
    /// Add one run.
    pub fn add(&mut self, seed: u64, tls: bool, stats: &Stats, violations: &[String]) {
        self.runs += 1;
        self.tls_runs += u64::from(tls);
        for (k, n) in &stats.faults {
            *self.seeds_with_fault.entry(*k).or_default() += 1;
            *self.faults.entry(*k).or_default() += n;
        }
        self.connections += stats.links;
        self.steps += stats.steps;
        if !violations.is_empty() {
            self.failures.push((seed, violations.to_vec()));
        }
    }

    /// Fold `o` into `self` (failures end up sorted by seed).
    pub fn merge(&mut self, o: FaultTally) {
        self.runs += o.runs;
        self.tls_runs += o.tls_runs;
        for (k, n) in o.seeds_with_fault {
            *self.seeds_with_fault.entry(k).or_default() += n;
        }
        for (k, n) in o.faults {
            *self.faults.entry(k).or_default() += n;
        }
        self.connections += o.connections;
        self.steps += o.steps;
        self.failures.extend(o.failures);
        self.failures.sort_by_key(|f| f.0);
    }

    /// The fault table, one line per kind (runs that saw it, total injected).
    pub fn fault_table(&self) -> String {
        let mut s = String::from("  faults (seeds that saw it / total injected):\n");
        for k in FaultKind::ALL {
            let _ = writeln!(
                s,
                "    {:<18} {:>5} seeds {:>7} total",
                k.name(),
                self.seeds_with_fault.get(&k).copied().unwrap_or(0),
                self.faults.get(&k).copied().unwrap_or(0)
            );
        }
        s
    }

    /// The first `n` failing seeds, each with `replay` (the command that
    /// replays it, given the seed) and up to five violations.
    pub fn failure_list(&self, n: usize, replay: impl Fn(u64) -> String) -> String {
        let mut s = String::new();
        for (seed, v) in self.failures.iter().take(n) {
            let _ = writeln!(s, "seed {seed} FAILED (replay: {})", replay(*seed));
            for line in v.iter().take(5) {
                let _ = writeln!(s, "    {line}");
            }
        }
        s
    }

    /// The kinds in `kinds` that no run injected.
    pub fn missing(&self, kinds: &[FaultKind]) -> Vec<FaultKind> {
        kinds
            .iter()
            .copied()
            .filter(|k| self.seeds_with_fault.get(k).copied().unwrap_or(0) == 0)
            .collect()
    }
}

/// Server state a scenario's handlers share with their node's [`ServerApp`]:
/// besides its own fields, the faults and notes handlers leave for the trace.
pub trait ServerState: 'static {
    /// Take the faults and notes left since the last call (a note starting
    /// with `VIOLATION ` is reported as a violation).
    fn take_report(&mut self) -> (Vec<Fault>, Vec<String>);
}

/// The listening stream's handler: nothing to do.
struct Listener;
impl Handler for Listener {}

/// A server node's application, the same for every client/server scenario:
/// at [`START`](super::http::START) it creates the `streamtype` server stream,
/// giving each accepted connection `handler(&shared)`, and it hands what the
/// handlers report to the trace; the scenario reads [`ServerApp::state`].
pub struct ServerApp<S: ServerState> {
    shared: Rc<RefCell<S>>,
    streamtype: &'static str,
    handler: fn(&Rc<RefCell<S>>) -> Box<dyn Handler>,
    server: Option<StreamId>,
}

impl<S: ServerState> ServerApp<S> {
    /// A server node running `streamtype` with `state` shared by its handlers.
    pub fn with_state(
        state: S,
        streamtype: &'static str,
        handler: fn(&Rc<RefCell<S>>) -> Box<dyn Handler>,
    ) -> Self {
        ServerApp {
            shared: Rc::new(RefCell::new(state)),
            streamtype,
            handler,
            server: None,
        }
    }

    /// The state the handlers share.
    pub fn state(&self) -> Ref<'_, S> {
        self.shared.borrow()
    }

    fn flush(&self, cx: &mut AppCx<'_>) {
        let (faults, notes) = self.shared.borrow_mut().take_report();
        for f in faults {
            cx.fault(f);
        }
        for n in notes {
            match n.strip_prefix("VIOLATION ") {
                Some(v) => cx.violation(v),
                None => cx.note(n),
            }
        }
    }
}

impl<S: ServerState> App for ServerApp<S> {
    fn on_event(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        self.flush(cx);
        if let Event::ListenFailed { reason, .. } = ev {
            cx.violation(format!("server could not listen: {reason}"));
        }
    }

    fn on_wake(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        if tag != super::http::START {
            return;
        }
        let now = cx.now();
        let streamtype = self.streamtype;
        let Some(host) = cx.host() else {
            return cx.violation(format!("the {streamtype} server needs a Host"));
        };
        let shared = self.shared.clone();
        let handler = self.handler;
        let made = host.create_server(
            now,
            streamtype,
            Box::new(Listener),
            Box::new(move |_| handler(&shared)),
        );
        match made {
            Ok(s) => self.server = Some(s),
            Err(e) => cx.violation(format!("create_server: {e}")),
        }
    }

    fn shutdown(&mut self, cx: &mut AppCx<'_>) {
        if let Some(s) = self.server.take() {
            let now = cx.now();
            if let Err(e) = cx.engine().destroy(now, s) {
                cx.violation(format!("destroy server: {e}"));
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
