//! [`Driver`] for the mio adapter ([`ss_mio::Runtime`]).

use crate::driver::Driver;
use ss_core::Host;
use std::time::{Duration, Instant};

/// The mio adapter's event loop as a conformance [`Driver`].
pub struct MioDriver(pub ss_mio::Runtime);

impl Driver for MioDriver {
    const NAME: &'static str = "mio";

    fn new(host: Host) -> Self {
        MioDriver(ss_mio::Runtime::new(host))
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
