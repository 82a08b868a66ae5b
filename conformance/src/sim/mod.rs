//! Deterministic simulation: many engines on an in-memory network with
//! virtual time and seeded faults, every run replayable from its seed.
//!
//! * [`net`]: the network ([`Sim`]): nodes with addresses, DNS, listeners,
//!   connections as ordered byte pipes with latency, and faults (refused
//!   connects, DNS failures, connects that never complete, resets, partial
//!   writes, delays), all drawn from one seeded [`SimRng`].
//! * [`trace`]: what a run records: every application-visible event and
//!   every fault, with virtual time.
//! * [`echo`]: the raw echo scenario and its invariants.
//! * [`http`]: the HTTP/1.1 scenario (plain and over TLS) and its invariants.
//! * [`h2`]: the HTTP/2 scenario (TLS, ALPN `h2`): client streams sharing
//!   connections, a server that answers, 503s, hangs up and resets streams.
//! * [`ws`]: the WebSocket scenario (`ws` and `wss`): echoed messages across
//!   drops and reconnections, and its invariants.
//! * [`mqtt`]: the MQTT scenario: an in-simulation broker, clients publishing
//!   numbered QoS 1 messages and subscribing to each other, across faults.
//! * [`proxy`]: the echo scenario's clients in proxy mode through a proxy
//!   daemon node to the echo server, faults on links and onward connections.
//! * [`shared`]: what the client/server scenarios share (TLS certificates,
//!   policy helpers, the seed sweep and its fault tally).
//!
//! Replay a seed: `SIM_SEED=N cargo test -p conformance --test sim replay -- --nocapture`
//! (echo), `SIM_SEED=N cargo test -p conformance --test sim_http replay -- --nocapture`
//! (HTTP), `SIM_SEED=N cargo test -p conformance --test sim_h2 replay -- --nocapture`
//! (HTTP/2), `SIM_SEED=N cargo test -p conformance --test sim_ws replay -- --nocapture`
//! (WebSocket) or `SIM_SEED=N cargo test -p conformance --test sim_proxy replay -- --nocapture`
//! (through a proxy daemon).

pub mod echo;
pub mod h2;
pub mod http;
pub mod mqtt;
pub mod net;
pub mod proxy;
pub mod shared;
pub mod trace;
pub mod ws;

pub use echo::{run_echo, ClientSpec, EchoConfig, EchoReport, EchoSim, StartMode};
pub use net::{
    derive_seed, App, AppCx, FaultConfig, Limits, LinkId, LinkInfo, NodeId, Sim, SimError, SimRng,
    Stack, Stats,
};
pub use proxy::{run_proxy, ProxySim};
pub use trace::{Fault, FaultKind, NetStep, TraceEntry, TraceKind};
