//! A callback-model application for `rideshare` uploads, shared by the peer
//! tests: it writes one payload per streamtype of the chain, asking
//! `StreamCtx::rideshare` which one is due at each `tx`.

use ss_core::{Flags, Handler, SsRet, StreamCtx, StreamState};
use std::cell::RefCell;
use std::rc::Rc;

/// What a [`RideUpload`] stream saw.
#[derive(Debug, Default)]
pub struct RideSeen {
    /// `StreamCtx::rideshare()` at each `tx`, in order.
    pub rideshare: Vec<String>,
    /// Every state, in order.
    pub states: Vec<StreamState>,
    /// Every payload received, with its flags.
    pub rx: Vec<(Vec<u8>, Flags)>,
}

impl RideSeen {
    /// The received payload, concatenated.
    pub fn body(&self) -> Vec<u8> {
        self.rx
            .iter()
            .flat_map(|(d, _)| d.iter().copied())
            .collect()
    }

    /// The streamtypes named by `rideshare()`, consecutive repeats merged.
    pub fn parts(&self) -> Vec<String> {
        let mut v = self.rideshare.clone();
        v.dedup();
        v
    }

    /// The transaction is over (DISCONNECTED or ALL_RETRIES_FAILED).
    pub fn done(&self) -> bool {
        matches!(
            self.states.last(),
            Some(StreamState::Disconnected | StreamState::AllRetriesFailed)
        )
    }
}

/// Uploads `parts` (streamtype name, payload): at each `tx` it writes the
/// next piece (at most `piece` bytes) of the payload of the streamtype
/// `rideshare()` names, SOM on its first piece and EOM on its last, asking
/// for another `tx` while a payload has more to send. The engine asks for
/// the next streamtype's part after each EOM.
pub struct RideUpload {
    parts: Vec<(String, Vec<u8>)>,
    piece: usize,
    cur: Option<String>,
    sent: usize,
    seen: Rc<RefCell<RideSeen>>,
}

impl RideUpload {
    /// An uploader of `parts` in pieces of at most `piece` bytes, recording
    /// into `seen`.
    pub fn new(parts: Vec<(String, Vec<u8>)>, piece: usize, seen: Rc<RefCell<RideSeen>>) -> Self {
        RideUpload {
            parts,
            piece: piece.max(1),
            cur: None,
            sent: 0,
            seen,
        }
    }
}

impl Handler for RideUpload {
    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        let Some(name) = ctx.rideshare().map(str::to_string) else {
            return SsRet::TxDontSend;
        };
        self.seen.borrow_mut().rideshare.push(name.clone());
        if self.cur.as_deref() != Some(name.as_str()) {
            self.cur = Some(name.clone());
            self.sent = 0;
        }
        let Some((_, data)) = self.parts.iter().find(|(n, _)| *n == name) else {
            return SsRet::TxDontSend;
        };
        let rest = data.get(self.sent..).unwrap_or_default();
        let n = rest.len().min(budget).min(self.piece);
        buf.extend_from_slice(&rest[..n]);
        *flags = if self.sent == 0 {
            Flags::SOM
        } else {
            Flags::NONE
        };
        self.sent += n;
        if self.sent == data.len() {
            *flags |= Flags::EOM;
            self.cur = None;
        } else {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }

    fn rx(&mut self, _: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        self.seen.borrow_mut().rx.push((data.to_vec(), flags));
        SsRet::Ok
    }

    fn state(&mut self, _: &mut StreamCtx<'_>, state: StreamState, _: u32) -> SsRet {
        if state == StreamState::Connecting {
            // A new attempt asks for the body from its first part again.
            self.cur = None;
        }
        self.seen.borrow_mut().states.push(state);
        SsRet::Ok
    }
}
