//! The shared adapter suite (`adapter_suite/mod.rs`) run against every adapter.

#[macro_use]
mod adapter_suite;

adapter_suite!(tokio, conformance::drivers::tokio::TokioDriver);
adapter_suite!(mio, conformance::drivers::mio::MioDriver);
adapter_suite!(smol, conformance::drivers::smol::SmolDriver);
