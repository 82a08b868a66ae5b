//! Secure Streams on tokio.
//!
//! Two ways to use it:
//!
//! * [`Runtime`]: the reference's callback model. Build an
//!   [`ss_core::Host`] (an engine plus a [`ss_core::Handler`] per stream) and
//!   drive it with [`Runtime::run_until`] on a private current-thread runtime.
//! * [`Client`]: an async handle API with no callbacks. [`Client::start`]
//!   spawns the event loop on the caller's tokio runtime; streams are
//!   [`SsStream`] handles with `send`, `recv` and `next_state`.
//!
//! Both carry out the sans-IO engine's actions with real sockets: TCP, Unix
//! paths and Linux abstract names, DNS through `tokio::net::lookup_host`, and
//! the engine's timer through `tokio::time::sleep_until`.

mod client;
mod io;
mod runtime;

pub use client::{
    Client, Error, SsStream, StreamEvent, COMMAND_CAPACITY, FEED_WINDOW, RX_CAPACITY,
    STATE_CAPACITY,
};
pub use runtime::Runtime;
pub use ss_core;
