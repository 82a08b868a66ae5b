//! Conformance: the deterministic simulation harness and the shared adapter
//! test suite that every adapter (mio, smol, tokio) must pass.

pub mod driver;
pub mod drivers;
pub mod fuzz_engine;
pub mod fuzz_h1_pair;
pub mod fuzz_proxy;
pub mod peers;
pub mod ride;
pub mod sim;
pub mod tls_provider;
