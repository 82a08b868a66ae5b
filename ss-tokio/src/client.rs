//! [`Client`]: an async handle API over the engine, without callbacks.
//!
//! One loop task owns the [`Engine`] and the sockets. Handles talk to it over
//! a bounded command channel ([`COMMAND_CAPACITY`]); each stream gets its
//! payload and states, in order, on a bounded channel ([`RX_CAPACITY`]
//! events; [`SsStream::next_event`], or [`SsStream::recv`] for payload only),
//! and its states also on a bounded ring ([`STATE_CAPACITY`] states, oldest
//! dropped when a reader lags; [`SsStream::next_state`]).

use crate::io::Io;
use ss_core::policy::Protocol;
use ss_core::{Engine, EngineConfig, Event, Flags, Policy, StreamId, StreamState};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Commands waiting for the loop, shared by the [`Client`] and all its streams.
pub const COMMAND_CAPACITY: usize = 64;
/// Bytes [`SsStream::feed`] may have queued per stream before it waits.
pub const FEED_WINDOW: usize = 256 * 1024;

/// Events (payload and states) received and not yet taken with
/// [`SsStream::next_event`] or [`SsStream::recv`], per stream. Beyond it the
/// loop keeps a backlog and pauses that stream's rx (so its peer slows down)
/// until the application catches up.
pub const RX_CAPACITY: usize = 64;
/// States kept for [`SsStream::next_state`], per stream; a reader that falls
/// further behind loses the oldest ones.
pub const STATE_CAPACITY: usize = 64;

/// Why a [`Client`] or [`SsStream`] call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The engine refused the call.
    Engine(ss_core::Error),
    /// The stream was destroyed before the call completed.
    Destroyed,
    /// The event loop is gone (its runtime shut down).
    LoopGone,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Engine(e) => write!(f, "{e}"),
            Error::Destroyed => write!(f, "the stream was destroyed"),
            Error::LoopGone => write!(f, "the event loop is gone"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ss_core::Error> for Error {
    fn from(e: ss_core::Error) -> Self {
        Error::Engine(e)
    }
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What a stream reports, in the order it happened: see [`SsStream::next_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// Payload received, with its SOM/EOM flags.
    Rx(Vec<u8>, Flags),
    /// The stream entered this state.
    State(StreamState),
}

struct Created {
    id: StreamId,
    rx: mpsc::Receiver<StreamEvent>,
    states: broadcast::Receiver<StreamState>,
}

enum Cmd {
    Create {
        streamtype: String,
        reply: Reply<Created>,
    },
    Send {
        id: StreamId,
        data: Vec<u8>,
        /// `None` for [`SsStream::feed`]: nobody waits.
        reply: Option<Reply<()>>,
        /// [`SsStream::feed`]'s share of the stream's window, given back
        /// when the engine has taken the message.
        credit: Option<OwnedSemaphorePermit>,
    },
    SetMetadata {
        id: StreamId,
        name: String,
        value: Vec<u8>,
        reply: Reply<()>,
    },
    GetMetadata {
        id: StreamId,
        name: String,
        reply: Reply<Option<Vec<u8>>>,
    },
    Connect {
        id: StreamId,
        reply: Reply<()>,
    },
    Destroy {
        id: StreamId,
        reply: Option<Reply<()>>,
    },
}

/// A handle on an event loop running on the caller's tokio runtime.
///
/// Cloning is cheap; the loop ends once the client and all its streams are dropped.
#[derive(Clone)]
pub struct Client {
    cmd: mpsc::Sender<Cmd>,
}

impl Client {
    /// Start the event loop for `policy` on the current tokio runtime.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start(policy: Policy, config: EngineConfig) -> Client {
        Self::start_with(Engine::new(policy, config))
    }

    /// Start the event loop around an engine the caller built, e.g. one
    /// given system blobs first ([`Engine::set_system_blob`]: auth tokens,
    /// device serial) or an overlay.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start_with(engine: Engine) -> Client {
        let (cmd, rx) = mpsc::channel(COMMAND_CAPACITY);
        tokio::spawn(run(engine, rx));
        Client { cmd }
    }

    /// Create a client stream of `streamtype` (`lws_ss_create`). A `nailed_up`
    /// streamtype connects at once; others connect on [`SsStream::connect`] or
    /// the first [`SsStream::send`]. Server streamtypes are refused.
    pub async fn create(&self, streamtype: &str) -> Result<SsStream, Error> {
        let (reply, r) = oneshot::channel();
        self.cmd
            .send(Cmd::Create {
                streamtype: streamtype.to_string(),
                reply,
            })
            .await
            .map_err(|_| Error::LoopGone)?;
        let c = r.await.map_err(|_| Error::LoopGone)??;
        Ok(SsStream {
            id: c.id,
            cmd: self.cmd.clone(),
            credit: Arc::new(Semaphore::new(FEED_WINDOW)),
            rx: c.rx,
            states: c.states,
            destroyed: false,
        })
    }
}

/// One logical stream: payload and states in, payload out. Dropping it destroys it.
pub struct SsStream {
    id: StreamId,
    cmd: mpsc::Sender<Cmd>,
    /// Bytes [`SsStream::feed`] may have in flight.
    credit: Arc<Semaphore>,
    rx: mpsc::Receiver<StreamEvent>,
    states: broadcast::Receiver<StreamState>,
    destroyed: bool,
}

impl SsStream {
    /// The engine's id for the stream.
    pub fn id(&self) -> StreamId {
        self.id
    }

    async fn call<T>(&self, f: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, Error> {
        let (reply, r) = oneshot::channel();
        self.cmd.send(f(reply)).await.map_err(|_| Error::LoopGone)?;
        r.await.map_err(|_| Error::LoopGone)?
    }

    /// Queue `data` as one message and wait until the engine has taken all of
    /// it (connecting first if the stream is idle). It is then on its way to
    /// the socket, not necessarily delivered.
    pub async fn send(&self, data: Vec<u8>) -> Result<(), Error> {
        let id = self.id;
        self.call(|reply| Cmd::Send {
            id,
            data,
            reply: Some(reply),
            credit: None,
        })
        .await
    }

    /// Queue `data` as one message without waiting for the engine to take
    /// it: many messages can then be in flight, which is what small-message
    /// throughput needs. Waits only while [`FEED_WINDOW`] bytes fed on this
    /// stream are not yet taken (a message larger than that waits for the
    /// whole window). Failures are not reported here: they show in the
    /// stream's states (and a later [`SsStream::send`] reports them).
    pub async fn feed(&self, data: Vec<u8>) -> Result<(), Error> {
        let want = u32::try_from(data.len().clamp(1, FEED_WINDOW)).unwrap_or(u32::MAX);
        let credit = self
            .credit
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| Error::LoopGone)?;
        self.cmd
            .send(Cmd::Send {
                id: self.id,
                data,
                reply: None,
                credit: Some(credit),
            })
            .await
            .map_err(|_| Error::LoopGone)
    }

    /// The next payload and its flags; `None` once the stream is destroyed
    /// and everything received before has been taken. Skips the states that
    /// [`SsStream::next_event`] would give between payloads (they are still
    /// seen by [`SsStream::next_state`]).
    pub async fn recv(&mut self) -> Option<(Vec<u8>, Flags)> {
        loop {
            match self.rx.recv().await? {
                StreamEvent::Rx(data, flags) => return Some((data, flags)),
                StreamEvent::State(_) => {}
            }
        }
    }

    /// The next thing that happened to the stream, payload or state, in the
    /// order the engine reported them (so e.g. the last payload of a
    /// transaction comes before its QOS_ACK_REMOTE and DISCONNECTED); `None`
    /// once the stream is destroyed and everything before was taken. Use
    /// either this or [`SsStream::recv`] on a stream: both take from the
    /// same queue. While the application is behind, the stream's rx is
    /// paused, so a slow reader slows the peer instead of buffering.
    pub async fn next_event(&mut self) -> Option<StreamEvent> {
        self.rx.recv().await
    }

    /// The next state the stream entered; `None` after DESTROYING.
    pub async fn next_state(&mut self) -> Option<StreamState> {
        loop {
            match self.states.recv().await {
                Ok(s) => return Some(s),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Set a declared metadata item (`lws_ss_set_metadata`).
    pub async fn set_metadata(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        let (id, name, value) = (self.id, name.to_string(), value.to_vec());
        self.call(|reply| Cmd::SetMetadata {
            id,
            name,
            value,
            reply,
        })
        .await
    }

    /// A metadata item's value (`lws_ss_get_metadata`), e.g. one an HTTP
    /// response header set; `None` if unset.
    pub async fn get_metadata(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let (id, name) = (self.id, name.to_string());
        self.call(|reply| Cmd::GetMetadata { id, name, reply })
            .await
    }

    /// Connect now, resetting the retry count (`lws_ss_client_connect`).
    pub async fn connect(&self) -> Result<(), Error> {
        let id = self.id;
        self.call(|reply| Cmd::Connect { id, reply }).await
    }

    /// Destroy the stream (`lws_ss_destroy`) and wait until the loop has done it.
    pub async fn destroy(mut self) -> Result<(), Error> {
        self.destroyed = true;
        let id = self.id;
        self.call(|reply| Cmd::Destroy {
            id,
            reply: Some(reply),
        })
        .await
    }
}

impl Drop for SsStream {
    fn drop(&mut self) {
        if !self.destroyed {
            let _ = self.cmd.try_send(Cmd::Destroy {
                id: self.id,
                reply: None,
            });
        }
    }
}

struct Outgoing {
    data: Vec<u8>,
    off: usize,
    reply: Option<Reply<()>>,
    /// Released (dropped) with the message.
    _credit: Option<OwnedSemaphorePermit>,
}

impl Outgoing {
    /// Tell a waiting sender how it went.
    fn answer(self, r: Result<(), Error>) {
        if let Some(reply) = self.reply {
            let _ = reply.send(r);
        }
    }
}

struct Slot {
    rx: mpsc::Sender<StreamEvent>,
    /// Events the application has not made room for yet; while there are
    /// any the stream's rx is paused (back-pressure to the peer without
    /// stalling the loop, which must keep sending for the app).
    backlog: VecDeque<StreamEvent>,
    /// The stream's rx is paused in the engine until the backlog drains.
    paused: bool,
    states: broadcast::Sender<StreamState>,
    out: VecDeque<Outgoing>,
}

struct Loop {
    engine: Engine,
    io: Io,
    slots: HashMap<StreamId, Slot>,
}

async fn run(engine: Engine, mut cmds: mpsc::Receiver<Cmd>) {
    let mut l = Loop {
        engine,
        io: Io::new(),
        slots: HashMap::new(),
    };
    loop {
        let now = Instant::now();
        if l.engine.poll_timeout().is_some_and(|t| t <= now) {
            l.engine.handle_timeout(now);
        }
        l.settle(now);
        let wake = l.engine.poll_timeout();
        // Streams with backlog wait for room in their channels; any one that
        // gets room is served (one reader that never reads starves no other).
        let waiting: Vec<(StreamId, mpsc::Sender<StreamEvent>)> = l
            .slots
            .iter()
            .filter(|(_, s)| !s.backlog.is_empty())
            .map(|(id, s)| (*id, s.rx.clone()))
            .collect();
        let room = async {
            if waiting.is_empty() {
                return std::future::pending().await;
            }
            let mut each: Vec<_> = waiting
                .iter()
                .map(|(id, tx)| Box::pin(async move { (*id, tx.reserve().await.is_ok()) }))
                .collect();
            std::future::poll_fn(|cx| {
                for f in each.iter_mut() {
                    if let std::task::Poll::Ready(v) = std::future::Future::poll(f.as_mut(), cx) {
                        return std::task::Poll::Ready(v);
                    }
                }
                std::task::Poll::Pending
            })
            .await
        };
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(cmd) => l.command(cmd),
                None => return,
            },
            (id, open) = room => l.drain_backlog(Instant::now(), id, open),
            ev = l.io.next(wake) => if let Some(ev) = ev {
                let now = Instant::now();
                l.io.handle(&mut l.engine, now, ev);
                for _ in 1..64 {
                    match l.io.try_next() {
                        Some(ev) => l.io.handle(&mut l.engine, now, ev),
                        None => break,
                    }
                }
            },
        }
    }
}

impl Loop {
    fn settle(&mut self, now: Instant) {
        loop {
            let acted = self.io.apply_actions(&mut self.engine, now);
            let mut evented = false;
            while let Some(ev) = self.engine.poll_event() {
                evented = true;
                self.deliver(now, ev);
            }
            if acted == 0 && !evented {
                return;
            }
        }
    }

    /// Move a stream's backlog into its payload channel as room allows;
    /// reading its connection resumes once the backlog is gone.
    fn drain_backlog(&mut self, now: Instant, id: StreamId, open: bool) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if !open {
            // The application dropped its receiver: nobody wants the payload.
            slot.backlog.clear();
        }
        while let Some(p) = slot.backlog.pop_front() {
            match slot.rx.try_send(p) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(p)) => {
                    slot.backlog.push_front(p);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => slot.backlog.clear(),
            }
        }
        if std::mem::take(&mut slot.paused) {
            let _ = self.engine.set_rx_paused(now, id, false);
        }
    }

    fn deliver(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::State { stream, state, .. } => {
                let Some(slot) = self.slots.get_mut(&stream) else {
                    return;
                };
                let _ = slot.states.send(state);
                if state != StreamState::Destroying {
                    self.push_event(now, stream, StreamEvent::State(state));
                }
                let Some(slot) = self.slots.get_mut(&stream) else {
                    return;
                };
                match state {
                    StreamState::Destroying => {
                        // Last in order, if there is room (the stream is gone).
                        let _ = slot.rx.try_send(StreamEvent::State(state));
                        if let Some(slot) = self.slots.remove(&stream) {
                            for o in slot.out {
                                o.answer(Err(Error::Destroyed));
                            }
                        }
                    }
                    StreamState::Connected if !slot.out.is_empty() => {
                        let _ = self.engine.request_tx(now, stream);
                    }
                    _ => {}
                }
            }
            Event::Rx {
                stream,
                data,
                flags,
            } => self.push_event(now, stream, StreamEvent::Rx(data, flags)),
            Event::Writable { stream, budget } => self.writable(now, stream, budget),
            // Only client streams are created through this API.
            Event::Accepted { .. } | Event::Listening { .. } | Event::ListenFailed { .. } => {}
            // The state that follows tells the application what happened.
            Event::ConnectionError { .. } => {}
        }
    }

    /// Hand an event to the stream's channel, or keep it in the backlog
    /// (pausing the stream's rx) while the application is behind.
    fn push_event(&mut self, now: Instant, stream: StreamId, ev: StreamEvent) {
        let Some(slot) = self.slots.get_mut(&stream) else {
            return;
        };
        let full = if slot.backlog.is_empty() {
            match slot.rx.try_send(ev) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => None,
                Err(mpsc::error::TrySendError::Full(ev)) => Some(ev),
            }
        } else {
            Some(ev)
        };
        let Some(ev) = full else {
            return;
        };
        let payload = matches!(ev, StreamEvent::Rx(..));
        slot.backlog.push_back(ev);
        if !payload {
            // States alone never pause the stream (an application may only
            // watch `next_state`); beyond STATE_CAPACITY the oldest waiting
            // state is dropped, as the state ring does for a lagging reader.
            let states = slot
                .backlog
                .iter()
                .filter(|e| !matches!(e, StreamEvent::Rx(..)));
            if states.count() > STATE_CAPACITY {
                if let Some(i) = slot
                    .backlog
                    .iter()
                    .position(|e| !matches!(e, StreamEvent::Rx(..)))
                {
                    slot.backlog.remove(i);
                }
            }
        } else if !slot.paused {
            slot.paused = true;
            let _ = self.engine.set_rx_paused(now, stream, true);
        }
    }

    /// Write queued messages, in order, while the budget lasts (several small
    /// ones in one go where the protocol allows; a large one in budget-sized
    /// pieces).
    fn writable(&mut self, now: Instant, stream: StreamId, budget: usize) {
        // Raw and WebSocket streams take every write while connected; an
        // HTTP body is one message per transaction and MQTT bounds what it
        // queues, so those write one message per `Writable`.
        let several = self
            .engine
            .stream_policy(stream)
            .is_some_and(|st| matches!(st.protocol, Protocol::Raw | Protocol::Ws));
        let Some(slot) = self.slots.get_mut(&stream) else {
            return;
        };
        let mut left = budget.max(1);
        while left > 0 {
            let Some(o) = slot.out.front_mut() else {
                break;
            };
            let n = left.min(o.data.len() - o.off);
            let mut flags = Flags::NONE;
            if o.off == 0 {
                flags |= Flags::SOM;
            }
            if o.off + n == o.data.len() {
                flags |= Flags::EOM;
            }
            match self
                .engine
                .write(now, stream, &o.data[o.off..o.off + n], flags)
            {
                Ok(_) => {
                    left -= n;
                    o.off += n;
                    if o.off == o.data.len() {
                        if let Some(o) = slot.out.pop_front() {
                            o.answer(Ok(()));
                        }
                    }
                }
                // The connection went away: keep the message for the next one.
                Err(ss_core::Error::NotConnected(_)) => break,
                Err(e) => {
                    if let Some(o) = slot.out.pop_front() {
                        o.answer(Err(e.into()));
                    }
                    break;
                }
            }
            if flags.contains(Flags::EOM) && !several {
                break;
            }
        }
        if !slot.out.is_empty() {
            let _ = self.engine.request_tx(now, stream);
        }
    }

    fn command(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Create { streamtype, reply } => {
                let _ = reply.send(self.create(now, &streamtype));
            }
            Cmd::Send {
                id,
                data,
                reply,
                credit,
            } => {
                let o = Outgoing {
                    data,
                    off: 0,
                    reply,
                    _credit: credit,
                };
                let Some(slot) = self.slots.get_mut(&id) else {
                    o.answer(Err(ss_core::Error::NoSuchStream(id).into()));
                    return;
                };
                if o.data.is_empty() {
                    o.answer(Ok(()));
                    return;
                }
                let len = o.data.len() as u64;
                slot.out.push_back(o);
                // An HTTP message sent alone announces its length (Content-Length).
                let http = self
                    .engine
                    .stream_policy(id)
                    .is_some_and(|st| matches!(st.protocol, Protocol::H1 | Protocol::H2));
                let r = if http && slot.out.len() == 1 {
                    self.engine.request_tx_len(now, id, len)
                } else {
                    self.engine.request_tx(now, id)
                };
                if let Err(e) = r {
                    if let Some(o) = slot.out.pop_back() {
                        o.answer(Err(e.into()));
                    }
                }
            }
            Cmd::SetMetadata {
                id,
                name,
                value,
                reply,
            } => {
                let r = self.engine.set_metadata(id, &name, &value);
                let _ = reply.send(r.map_err(Into::into));
            }
            Cmd::GetMetadata { id, name, reply } => {
                let r = self
                    .engine
                    .get_metadata(id, &name)
                    .map(|v| v.map(<[u8]>::to_vec));
                let _ = reply.send(r.map_err(Into::into));
            }
            Cmd::Connect { id, reply } => {
                let r = self.engine.client_connect(now, id);
                let _ = reply.send(r.map_err(Into::into));
            }
            Cmd::Destroy { id, reply } => {
                let r = self.engine.destroy(now, id);
                if let Some(reply) = reply {
                    let _ = reply.send(r.map_err(Into::into));
                }
            }
        }
    }

    fn create(&mut self, now: Instant, streamtype: &str) -> Result<Created, Error> {
        if self
            .engine
            .policy()
            .streamtype(streamtype)
            .is_some_and(|st| st.server)
        {
            return Err(ss_core::Error::WrongKind(
                "server streamtypes are not supported by ss_tokio::Client; use Runtime",
            )
            .into());
        }
        let id = self.engine.create(now, streamtype)?;
        let (rx_tx, rx) = mpsc::channel(RX_CAPACITY);
        let (states_tx, states) = broadcast::channel(STATE_CAPACITY);
        self.slots.insert(
            id,
            Slot {
                rx: rx_tx,
                backlog: VecDeque::new(),
                paused: false,
                states: states_tx,
                out: VecDeque::new(),
            },
        );
        Ok(Created { id, rx, states })
    }
}
