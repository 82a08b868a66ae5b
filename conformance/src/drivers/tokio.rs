//! The tokio adapter ([`ss_tokio::Runtime`]) as a [`Driver`].

use crate::driver::Driver;
use ss_core::Host;
use std::time::{Duration, Instant};

/// [`ss_tokio::Runtime`] for the shared adapter suite.
pub struct TokioDriver(pub ss_tokio::Runtime);

impl Driver for TokioDriver {
    const NAME: &'static str = "tokio";

    fn new(host: Host) -> Self {
        TokioDriver(ss_tokio::Runtime::new(host))
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
