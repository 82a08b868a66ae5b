//! Serialized Secure Streams: the pieces that let many application processes
//! share one engine through a local socket, as the reference's SS proxy does.
//!
//! [`wire`] is the wire format, byte-compatible with the reference (protocol
//! version 1) so the reference's own proxy clients can talk to a daemon built
//! on this crate, and vice versa. [`server`] is the daemon's side: an
//! application layer over one engine that serves links.

pub mod server;
pub mod wire;
