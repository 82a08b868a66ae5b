//! Secure Streams, sans-IO.
//!
//! An application asks for a stream of a named type and moves payload; a JSON
//! [`policy::Policy`] decides endpoint, TLS, retry and protocol. [`Engine`] holds
//! the whole behaviour and never touches the OS: time and randomness come from
//! the caller, bytes go in through `handle_*` and come out as [`Action`]s and
//! [`Event`]s. Adapters (ss-mio, ss-smol, ss-tokio) own sockets and timers.

pub mod engine;
pub mod handler;
pub mod metadata;
pub mod policy;
pub mod proto;
pub mod proxy;
pub mod retry;
pub mod state;

pub use engine::{
    Action, BindAddr, ConnId, ConnectAddr, Engine, EngineConfig, Error, Event, ListenerId, StreamId,
};
pub use handler::{Handler, Host, StreamCtx};
pub use policy::{Policy, PolicyError};
pub use retry::{RetryPolicy, Rng};
pub use state::{Flags, SsRet, StreamState};
