//! The one interface the shared adapter suite drives every adapter through.

use ss_core::Host;
use std::time::{Duration, Instant};

/// An adapter's event loop around a [`Host`], run in bounded bursts from a test.
pub trait Driver {
    /// Short name for messages ("mio", "smol", "tokio").
    const NAME: &'static str;

    /// A driver carrying `host` (an engine plus stream handlers).
    fn new(host: Host) -> Self
    where
        Self: Sized;

    /// The host, to create streams or inspect state between runs.
    fn host(&mut self) -> &mut Host;

    /// The adapter's clock, as passed to the engine.
    fn now(&self) -> Instant;

    /// Run the event loop (sockets, DNS, timers, dispatch) until `done`
    /// returns true, checked after every loop iteration, or `timeout` passes.
    /// Returns whether `done` became true.
    fn run_until(&mut self, timeout: Duration, done: &mut dyn FnMut(&mut Host) -> bool) -> bool;
}
