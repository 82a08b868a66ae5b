//! The raw protocol: an ordered byte stream with no framing. As in the
//! reference, SOM and EOM carry no meaning and rx is delivered without flags.

use super::{Output, ProtoError};
use crate::state::Flags;

/// Raw protocol machine; it only counts, so it can never fail.
#[derive(Debug, Default)]
pub struct Raw {
    /// Bytes received so far.
    pub rx_bytes: u64,
    /// Bytes written so far.
    pub tx_bytes: u64,
}

impl Raw {
    /// Pass received bytes up as payload.
    pub fn handle_input(&mut self, data: &[u8], out: &mut Output) -> Result<(), ProtoError> {
        if !data.is_empty() {
            self.rx_bytes += data.len() as u64;
            out.rx.push((data.to_vec(), Flags::NONE));
        }
        Ok(())
    }

    /// Pass payload down as bytes.
    pub fn write(
        &mut self,
        data: &[u8],
        _flags: Flags,
        out: &mut Output,
    ) -> Result<(), ProtoError> {
        self.tx_bytes += data.len() as u64;
        out.transmit.extend_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_bytes_both_ways() {
        let mut m = Raw::default();
        let mut out = Output::default();
        m.handle_input(b"abc", &mut out).unwrap();
        m.handle_input(b"", &mut out).unwrap();
        m.write(b"xyz", Flags::SOM | Flags::EOM, &mut out).unwrap();
        assert_eq!(out.rx, vec![(b"abc".to_vec(), Flags::NONE)]);
        assert_eq!(out.transmit, b"xyz");
        assert_eq!((m.rx_bytes, m.tx_bytes), (3, 3));
    }
}
