//! Incoming body framing shared by the client and server machines.

use super::{chunked, H1Error, H1Event, Limits};
use crate::state::Flags;

/// How an incoming body is delimited.
#[derive(Clone, Debug)]
pub enum Framing {
    /// Exactly this many bytes remain.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(chunked::Decoder),
    /// Until the peer closes the connection.
    ToClose,
}

/// Decodes one incoming body into [`H1Event::Body`] events.
#[derive(Clone, Debug)]
pub struct Reader {
    framing: Framing,
    started: bool,
}

impl Reader {
    /// A reader for a body delimited by `framing`.
    pub fn new(framing: Framing) -> Self {
        Reader {
            framing,
            started: false,
        }
    }

    /// A chunked reader bounded by `limits`.
    pub fn chunked(limits: &Limits) -> Self {
        Reader::new(Framing::Chunked(chunked::Decoder::new(
            limits.max_chunk_line,
            limits.max_header_bytes,
        )))
    }

    /// Whether the body ends only when the connection closes.
    pub fn is_to_close(&self) -> bool {
        matches!(self.framing, Framing::ToClose)
    }

    fn emit(&mut self, data: Vec<u8>, eom: bool, events: &mut Vec<H1Event>) {
        if data.is_empty() && !eom {
            return;
        }
        let mut flags = Flags::NONE;
        if !self.started {
            flags |= Flags::SOM;
            self.started = true;
        }
        if eom {
            flags |= Flags::EOM;
        }
        events.push(H1Event::Body { data, flags });
    }

    /// Consume body bytes from `data`, pushing at most one Body event.
    /// Returns how many bytes were consumed and whether the body is complete
    /// (bytes after the end are left for the caller).
    pub fn feed(
        &mut self,
        data: &[u8],
        events: &mut Vec<H1Event>,
    ) -> Result<(usize, bool), H1Error> {
        match &mut self.framing {
            Framing::Length(remaining) => {
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let (body, _) = data.split_at(n);
                *remaining -= n as u64; // ok: n <= remaining
                let done = *remaining == 0;
                let body = body.to_vec();
                self.emit(body, done, events);
                Ok((n, done))
            }
            Framing::Chunked(dec) => {
                let mut body = Vec::new();
                let mut used = 0;
                let mut rest = data;
                while !dec.is_done() {
                    let (n, chunk) = dec.decode(rest)?;
                    if let Some(c) = chunk {
                        body.extend_from_slice(c);
                    }
                    used += n;
                    rest = rest.get(n..).unwrap_or_default();
                    if n == 0 || rest.is_empty() {
                        break;
                    }
                }
                let done = dec.is_done();
                self.emit(body, done, events);
                Ok((used, done))
            }
            Framing::ToClose => {
                self.emit(data.to_vec(), false, events);
                Ok((data.len(), false))
            }
        }
    }

    /// The connection closed: completes a read-to-close body, otherwise the
    /// body is incomplete.
    pub fn eof(&mut self, events: &mut Vec<H1Event>) -> Result<(), H1Error> {
        if self.is_to_close() {
            self.emit(Vec::new(), true, events);
            Ok(())
        } else {
            Err(H1Error::Incomplete)
        }
    }
}
