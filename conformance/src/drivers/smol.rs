//! [`Driver`] for the smol adapter ([`ss_smol::Runtime`]).

use crate::driver::Driver;
use ss_core::Host;
use std::time::{Duration, Instant};

/// The smol adapter's event loop as a conformance [`Driver`].
pub struct SmolDriver(pub ss_smol::Runtime);

impl Driver for SmolDriver {
    const NAME: &'static str = "smol";

    fn new(host: Host) -> Self {
        SmolDriver(ss_smol::Runtime::new(host))
    }

    fn host(&mut self) -> &mut Host {
        self.0.host()
    }

    fn now(&self) -> Instant {
        self.0.now()
    }

    fn run_until(&mut self, timeout: Duration, done: &mut dyn FnMut(&mut Host) -> bool) -> bool {
        self.0.run_until(timeout, done)
    }
}
