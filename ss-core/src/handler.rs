//! The lws-style callback layer: a [`Handler`] per stream with `rx`, `tx` and
//! `state` returning the reference's return codes, driven by [`Host`] from the
//! engine's events. Code written against the reference's callbacks ports
//! one-to-one; destroying a stream from inside its own callback is safe.

use crate::engine::{Engine, Error, Event, StreamId};
use crate::state::{Flags, SsRet, StreamState};
use std::collections::BTreeMap;
use std::time::Instant;

/// A stream's callbacks (the reference's `rx`, `tx`, `state`).
pub trait Handler {
    /// Payload arrived. Return `DisconnectMe` to close the connection or
    /// `DestroyMe` to destroy the stream.
    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], flags: Flags) -> SsRet {
        let _ = (ctx, data, flags);
        SsRet::Ok
    }

    /// The stream may send: append at most `budget` bytes to `buf`, set
    /// `flags`, and return `Ok` to send or `TxDontSend` to pass.
    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        let _ = (ctx, buf, budget, flags);
        SsRet::TxDontSend
    }

    /// The stream changed state.
    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, ack: u32) -> SsRet {
        let _ = (ctx, state, ack);
        SsRet::Ok
    }

    /// Why the stream's connection failed (TLS verification, a malformed
    /// response...), just before the state that reports it. Not in the
    /// reference, which only logs it; ignored by default.
    fn connection_error(&mut self, ctx: &mut StreamCtx<'_>, reason: &str) {
        let _ = (ctx, reason);
    }
}

/// Makes the handler for each connection a server stream accepts.
pub type HandlerFactory = Box<dyn FnMut(StreamId) -> Box<dyn Handler>>;

/// What a callback can do to its own stream (and, via `engine`, to others).
pub struct StreamCtx<'a> {
    engine: &'a mut Engine,
    stream: StreamId,
    now: Instant,
    destroyed: bool,
    replacement: Option<Box<dyn Handler>>,
}

impl StreamCtx<'_> {
    /// The stream this callback is for.
    pub fn id(&self) -> StreamId {
        self.stream
    }

    /// The time of the input being dispatched.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Ask for a `tx` callback (`lws_ss_request_tx`).
    pub fn request_tx(&mut self) -> Result<(), Error> {
        self.engine.request_tx(self.now, self.stream)
    }

    /// Ask for a `tx` callback, announcing the length (`lws_ss_request_tx_len`).
    pub fn request_tx_len(&mut self, len: u64) -> Result<(), Error> {
        self.engine.request_tx_len(self.now, self.stream, len)
    }

    /// Connect now, resetting the retry count (`lws_ss_client_connect`).
    pub fn client_connect(&mut self) -> Result<(), Error> {
        self.engine.client_connect(self.now, self.stream)
    }

    /// Set a metadata item (`lws_ss_set_metadata`).
    pub fn set_metadata(&mut self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.engine.set_metadata(self.stream, name, value)
    }

    /// Read a metadata item (`lws_ss_get_metadata`).
    pub fn get_metadata(&self, name: &str) -> Result<Option<&[u8]>, Error> {
        self.engine.get_metadata(self.stream, name)
    }

    /// Arm the stream timeout; 0 takes the policy's `timeout_ms` (`lws_ss_start_timeout`).
    pub fn start_timeout(&mut self, ms: u32) -> Result<(), Error> {
        self.engine.start_timeout(self.now, self.stream, ms)
    }

    /// Disarm the stream timeout (`lws_ss_cancel_timeout`).
    pub fn cancel_timeout(&mut self) -> Result<(), Error> {
        self.engine.cancel_timeout(self.stream)
    }

    /// The streamtype whose part of a `rideshare` request body this stream
    /// is producing (`lws_ss_rideshare`): its own, then, after each EOM,
    /// the next of the chain. See [`Engine::rideshare`].
    pub fn rideshare(&self) -> Option<&str> {
        self.engine.rideshare(self.stream)
    }

    /// Set the server transaction's response status (`lws_ss_server_ack`).
    pub fn server_ack(&mut self, code: i32) -> Result<(), Error> {
        self.engine.server_ack(self.stream, code)
    }

    /// Destroy this stream from inside its callback; return
    /// `SsRet::HandleDestroyed` afterwards. Later calls on this context fail.
    pub fn destroy(&mut self) {
        if !self.destroyed {
            self.destroyed = true;
            let _ = self.engine.destroy(self.now, self.stream);
        }
    }

    /// The engine, for acting on other streams.
    pub fn engine(&mut self) -> &mut Engine {
        self.engine
    }

    /// Hand this stream to `handler` once the current callback returns
    /// (`lws_ss_change_handlers`), e.g. to treat a server stream as a
    /// WebSocket after SERVER_UPGRADE.
    pub fn change_handler(&mut self, handler: Box<dyn Handler>) {
        self.replacement = Some(handler);
    }
}

/// An [`Engine`] with a [`Handler`] per stream: the reference's callback model.
pub struct Host {
    /// The engine; adapters feed it and carry out its actions.
    pub engine: Engine,
    handlers: BTreeMap<StreamId, Box<dyn Handler>>,
    factories: BTreeMap<StreamId, HandlerFactory>,
    listening: BTreeMap<StreamId, Result<String, String>>,
    unhandled: Vec<Event>,
}

impl Host {
    /// A host around `engine` with no streams yet.
    pub fn new(engine: Engine) -> Self {
        Host {
            engine,
            handlers: BTreeMap::new(),
            factories: BTreeMap::new(),
            listening: BTreeMap::new(),
            unhandled: vec![],
        }
    }

    /// Create a client stream of `streamtype` driven by `handler` (`lws_ss_create`).
    pub fn create(
        &mut self,
        now: Instant,
        streamtype: &str,
        handler: Box<dyn Handler>,
    ) -> Result<StreamId, Error> {
        let id = self.engine.create(now, streamtype)?;
        self.handlers.insert(id, handler);
        Ok(id)
    }

    /// Create a server stream; `factory` makes a handler per accepted connection.
    pub fn create_server(
        &mut self,
        now: Instant,
        streamtype: &str,
        handler: Box<dyn Handler>,
        factory: HandlerFactory,
    ) -> Result<StreamId, Error> {
        let id = self.engine.create(now, streamtype)?;
        self.handlers.insert(id, handler);
        self.factories.insert(id, factory);
        Ok(id)
    }

    /// Replace the handler of stream `id` (`lws_ss_change_handlers`) from
    /// outside its callbacks; inside one use [`StreamCtx::change_handler`].
    pub fn change_handler(&mut self, id: StreamId, handler: Box<dyn Handler>) -> Result<(), Error> {
        match self.handlers.get_mut(&id) {
            Some(h) => {
                *h = handler;
                Ok(())
            }
            None => Err(Error::NoSuchStream(id)),
        }
    }

    /// Whether a handler is registered for `id` (false once destroyed).
    pub fn has_stream(&self, id: StreamId) -> bool {
        self.handlers.contains_key(&id)
    }

    /// Number of streams with handlers.
    pub fn handler_count(&self) -> usize {
        self.handlers.len()
    }

    /// Where a server stream listens: `Some(Ok(addr))` once bound (with the
    /// real port when the policy said 0), `Some(Err(reason))` if it could not.
    pub fn listening(&self, server: StreamId) -> Option<Result<&str, &str>> {
        self.listening
            .get(&server)
            .map(|r| r.as_ref().map(|a| a.as_str()).map_err(|e| e.as_str()))
    }

    /// Events for streams without a handler, kept for the caller; drains them.
    pub fn take_unhandled(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.unhandled)
    }

    /// Deliver every pending event to its handler, acting on the return codes.
    pub fn dispatch(&mut self, now: Instant) {
        self.dispatch_with(now, |_| {});
    }

    /// As [`Host::dispatch`], showing each event to `observe` first (for traces).
    pub fn dispatch_with(&mut self, now: Instant, mut observe: impl FnMut(&Event)) {
        while let Some(ev) = self.engine.poll_event() {
            observe(&ev);
            self.deliver(now, ev);
        }
    }

    fn deliver(&mut self, now: Instant, ev: Event) {
        if let Event::Accepted { server, stream } = ev {
            match self.factories.get_mut(&server) {
                Some(f) => {
                    let h = f(stream);
                    self.handlers.insert(stream, h);
                }
                // A server the caller drives itself (no factory): its
                // accepted streams are the caller's too.
                None => self.unhandled.push(ev),
            }
            return;
        }
        match &ev {
            Event::Listening { stream, addr } => {
                self.listening.insert(*stream, Ok(addr.clone()));
            }
            Event::ListenFailed { stream, reason } => {
                self.listening.insert(*stream, Err(reason.clone()));
            }
            _ => {}
        }
        let id = ev.stream();
        // Take the handler out while it runs: it may destroy its own stream.
        let Some(mut h) = self.handlers.remove(&id) else {
            self.unhandled.push(ev);
            return;
        };
        let mut ctx = StreamCtx {
            engine: &mut self.engine,
            stream: id,
            now,
            destroyed: false,
            replacement: None,
        };
        let mut final_state = false;
        let ret = match ev {
            Event::State { state, ack, .. } => {
                final_state = state == StreamState::Destroying;
                h.state(&mut ctx, state, ack)
            }
            Event::Rx { data, flags, .. } => h.rx(&mut ctx, &data, flags),
            Event::Writable { budget, .. } => {
                let mut buf = Vec::with_capacity(budget.min(64 * 1024));
                let mut flags = Flags::NONE;
                let r = h.tx(&mut ctx, &mut buf, budget, &mut flags);
                // A failed write means the connection went away under the
                // handler; it hears DISCONNECTED next.
                if r == SsRet::Ok && !ctx.destroyed {
                    let _ = ctx.engine.write(now, id, &buf, flags);
                }
                r
            }
            Event::ConnectionError { reason, .. } => {
                h.connection_error(&mut ctx, &reason);
                SsRet::Ok
            }
            Event::Listening { .. } | Event::ListenFailed { .. } | Event::Accepted { .. } => {
                SsRet::Ok
            }
        };
        let destroyed = ctx.destroyed;
        if let Some(r) = ctx.replacement.take() {
            h = r;
        }
        match ret {
            SsRet::DisconnectMe if !destroyed && !final_state => {
                let _ = self.engine.disconnect(now, id);
            }
            SsRet::DestroyMe if !destroyed && !final_state => {
                let _ = self.engine.destroy(now, id);
            }
            _ => {}
        }
        if final_state {
            self.factories.remove(&id);
            self.listening.remove(&id);
        } else {
            // Keep the handler until its DESTROYING has been delivered.
            self.handlers.insert(id, h);
        }
    }
}
