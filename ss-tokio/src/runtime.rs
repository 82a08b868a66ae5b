//! [`Runtime`]: a blocking event loop around a callback [`Host`].

use crate::io::Io;
use ss_core::Host;
use std::time::{Duration, Instant};

/// An application driving the engine directly (see [`Runtime::run_app_until`]).
type AppFn<'a> = dyn FnMut(&mut ss_core::Engine, Instant, ss_core::Event) + 'a;

/// Most socket reports handled per loop turn before dispatching.
const BATCH: usize = 64;

/// A [`Host`] (engine plus lws-style handlers) driven on its own
/// current-thread tokio runtime: sockets, DNS, listeners and the engine's timer.
///
/// Nothing happens between calls to [`Runtime::run_until`]; socket tasks only
/// make progress inside it. Handlers run on the calling thread.
pub struct Runtime {
    // Field order matters: the socket tasks are aborted (Io dropped) while
    // the runtime is still alive.
    io: Io,
    host: Host,
    rt: tokio::runtime::Runtime,
}

impl Runtime {
    /// A runtime carrying `host`.
    ///
    /// # Panics
    /// If the OS refuses to create the tokio runtime (no threads or descriptors).
    pub fn new(host: Host) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio current-thread runtime");
        Runtime {
            io: Io::new(),
            host,
            rt,
        }
    }

    /// The host, to create streams or inspect state between runs.
    pub fn host(&mut self) -> &mut Host {
        &mut self.host
    }

    /// The clock passed to the engine (the real monotonic clock).
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// Run the loop until `done` returns true (checked after every turn) or
    /// `timeout` passes; returns whether `done` became true.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        done: &mut dyn FnMut(&mut Host) -> bool,
    ) -> bool {
        self.run(timeout, None, done)
    }

    /// As [`Runtime::run_until`], handing every event of a stream without a
    /// handler to `app` (with the engine, to act on it) instead of keeping it
    /// for [`Host::take_unhandled`]. For applications that drive the engine
    /// directly, such as the proxy daemon's `ProxyServer`; what `app` asks
    /// of the engine is carried out in the same loop turn.
    pub fn run_app_until(
        &mut self,
        timeout: Duration,
        app: &mut dyn FnMut(&mut ss_core::Engine, Instant, ss_core::Event),
        done: &mut dyn FnMut(&mut Host) -> bool,
    ) -> bool {
        self.run(timeout, Some(app), done)
    }

    fn run(
        &mut self,
        timeout: Duration,
        mut app: Option<&mut AppFn<'_>>,
        done: &mut dyn FnMut(&mut Host) -> bool,
    ) -> bool {
        let end = Instant::now() + timeout;
        let Runtime { io, host, rt } = self;
        rt.block_on(async {
            loop {
                let now = Instant::now();
                if host.engine.poll_timeout().is_some_and(|t| t <= now) {
                    host.engine.handle_timeout(now);
                }
                settle(io, host, now, app.as_deref_mut());
                if done(host) {
                    return true;
                }
                if Instant::now() >= end {
                    return false;
                }
                let wake = match host.engine.poll_timeout() {
                    Some(t) => t.min(end),
                    None => end,
                };
                if let Some(ev) = io.next(Some(wake)).await {
                    let now = Instant::now();
                    io.handle(&mut host.engine, now, ev);
                    for _ in 1..BATCH {
                        match io.try_next() {
                            Some(ev) => io.handle(&mut host.engine, now, ev),
                            None => break,
                        }
                    }
                }
            }
        })
    }

    /// Run the loop for `d`, whatever happens.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(d, &mut |_| false);
    }
}

/// Carry out actions and dispatch events until neither is left.
fn settle(io: &mut Io, host: &mut Host, now: Instant, mut app: Option<&mut AppFn<'_>>) {
    io.apply_actions(&mut host.engine, now);
    loop {
        host.dispatch(now);
        let mut busy = false;
        if let Some(app) = app.as_deref_mut() {
            let unhandled = host.take_unhandled();
            busy = !unhandled.is_empty();
            for ev in unhandled {
                app(&mut host.engine, now, ev);
            }
        }
        if io.apply_actions(&mut host.engine, now) == 0 && !busy {
            break;
        }
    }
}
