//! Serialized Secure Streams: the pieces that let many application processes
//! share one engine through a local socket, as the reference's SS proxy does.
//!
//! Only the wire format lives here so far ([`wire`]); it is byte-compatible
//! with the reference (protocol version 1) so the reference's own proxy
//! clients can talk to a daemon built on this crate, and vice versa.

pub mod wire;
