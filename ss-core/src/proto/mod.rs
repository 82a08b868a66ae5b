//! Protocol machines: pure functions of bytes, knowing nothing of policy files
//! or retry. The engine owns one [`Machine`] per connection and routes what it
//! produces ([`Output`]) to streams and the adapter.

pub mod h1;
pub mod h2;
pub mod mqtt;
pub mod raw;
pub mod socks5;
pub mod tls;
pub mod ws;

use crate::state::Flags;
use std::fmt;

/// What a protocol machine asks the engine to do after an input.
#[derive(Debug, Default)]
pub struct Output {
    /// Bytes for the wire, in order.
    pub transmit: Vec<u8>,
    /// Payload for the stream, with flags.
    pub rx: Vec<(Vec<u8>, Flags)>,
}

/// A protocol violation or limit breach: the connection cannot go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtoError {}

/// The protocol running on one connection.
#[derive(Debug)]
pub enum Machine {
    /// No framing: bytes in are payload, payload out is bytes.
    Raw(raw::Raw),
}

impl Machine {
    /// Bytes arrived from the peer.
    pub fn handle_input(&mut self, data: &[u8], out: &mut Output) -> Result<(), ProtoError> {
        match self {
            Machine::Raw(m) => m.handle_input(data, out),
        }
    }

    /// The application wrote payload.
    pub fn write(&mut self, data: &[u8], flags: Flags, out: &mut Output) -> Result<(), ProtoError> {
        match self {
            Machine::Raw(m) => m.write(data, flags, out),
        }
    }
}
