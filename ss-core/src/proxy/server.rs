//! The proxy daemon's server side: an application layer over one [`Engine`].
//!
//! Why: the Secure Streams proxy lets many application processes share one
//! policy and one set of upstream connections. Each application stream opens
//! its own local connection (a *link*) to the daemon and speaks the
//! [`wire`](super::wire) format on it; the daemon runs an *onward* stream of
//! the requested streamtype for it and relays states, metadata and payload.
//!
//! What: the daemon's engine runs the real policy plus a synthetic raw server
//! streamtype, [`LINK_STREAMTYPE`], that listens for links
//! ([`ProxyServer::install`]). Each accepted link is a raw stream; the
//! [`ProxyServer`] is fed every engine event ([`ProxyServer::handle_event`]),
//! decodes the link's frames and drives the same engine through its usual
//! API (`create`, `set_metadata`, `client_connect`, `request_tx`, `write`,
//! `start_timeout`, `destroy`). Everything stays sans-IO, so any adapter can
//! run a daemon.
//!
//! The daemon trusts no client. A malformed frame, a frame before
//! `STREAMTYPE`, an unknown or server streamtype, a link beyond
//! [`ProxyConfig::max_links`] or a link overrunning its buffers is dropped
//! (its stream destroyed, which closes the socket) with a
//! [`ProxyLog::LinkDropped`] record; no other link is affected. Memory per
//! link is bounded: one frame in the decoder (`3 + max_frame`), the payload
//! queued for the onward stream (`proxy_buflen`) and the frames queued for
//! the link (`proxy_buflen` plus one frame).

use super::wire::{
    self, Limits, Payload, ToClient, ToProxy, ToProxyDecoder, WireMessage, MAX_FRAME_BODY,
    PAYLOAD_PREFIX_LEN, TIMEOUT_CANCEL,
};
use crate::engine::{Engine, Error, Event, Peer, StreamId};
use crate::policy::{Policy, Protocol, StreamType};
use crate::state::{Flags, StreamState};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Name of the synthetic raw server streamtype that accepts links.
pub const LINK_STREAMTYPE: &str = "ss-proxy-link";
/// Buffer size used when a streamtype sets no `proxy_buflen` / `client_buflen`
/// (the reference's 32 KiB).
pub const DEFAULT_BUFLEN: u32 = 32 * 1024;

/// Daemon settings that are not policy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Most links open at once; further ones are closed as soon as accepted.
    pub max_links: usize,
    /// Most links open at once from one client process, when the adapter
    /// says who connected ([`Engine::set_peer`]: `SO_PEERCRED` on a Unix
    /// socket), so one process cannot take every link.
    pub max_links_per_client: usize,
    /// Largest frame body accepted from a link (and sent to one); at most
    /// [`MAX_FRAME_BODY`].
    pub max_frame: usize,
    /// Most log records kept for [`ProxyServer::poll_log`]; older ones are
    /// discarded first.
    pub max_log: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_links: 256,
            max_links_per_client: 64,
            max_frame: MAX_FRAME_BODY,
            max_log: 1024,
        }
    }
}

/// Something the daemon's operator may want to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyLog {
    /// The link listener is bound at `addr`.
    Listening {
        /// The bound address.
        addr: String,
    },
    /// The link listener could not be bound.
    ListenFailed {
        /// Why, from the adapter.
        reason: String,
    },
    /// A client connected.
    LinkOpened {
        /// The link's stream.
        link: StreamId,
    },
    /// A link asked for a streamtype and got an onward stream.
    LinkCreated {
        /// The link's stream.
        link: StreamId,
        /// The onward stream created for it.
        onward: StreamId,
        /// The streamtype.
        streamtype: String,
    },
    /// A link ended normally (client hung up or sent DESTROYING, or the
    /// onward stream went away).
    LinkClosed {
        /// The link's stream.
        link: StreamId,
        /// What ended it.
        why: String,
    },
    /// A link was dropped because the client misbehaved or overran a limit.
    LinkDropped {
        /// The link's stream.
        link: StreamId,
        /// Why.
        reason: String,
    },
    /// Something worth noting that did not end the link (a refused metadata
    /// item, an onward connection error...).
    Note {
        /// The link's stream.
        link: StreamId,
        /// What happened.
        text: String,
    },
}

/// One client connection.
#[derive(Debug)]
struct Link {
    dec: ToProxyDecoder,
    /// The onward stream, once STREAMTYPE was accepted.
    onward: Option<StreamId>,
    /// Bytes (encoded frames) waiting to be written to the link.
    out: Vec<u8>,
    /// Where in `out` the last frame starts when it is an RX_PAYLOAD not yet
    /// written at all: a following bare EOM is folded into its flags.
    last_rx_at: Option<usize>,
    /// Payload from the client waiting for the onward stream's `Writable`.
    tx: VecDeque<(Vec<u8>, Flags)>,
    tx_bytes: usize,
    /// The streamtype's `proxy_buflen`.
    buflen: usize,
    /// Bytes queued for the client above which the onward stream's rx is
    /// paused, and below which it resumes (`proxy_buflen_rxflow_on_above` /
    /// `_off_below`).
    rxflow_on_above: usize,
    rxflow_off_below: usize,
    /// The onward stream's rx is paused (the client reads too slowly).
    onward_paused: bool,
    /// The link's rx is paused (the onward peer takes payload too slowly).
    link_paused: bool,
    /// Metadata values the client already knows, by declaration index.
    known_md: Vec<Option<Vec<u8>>>,
    /// Declared metadata names of the streamtype.
    md_names: Vec<String>,
    /// The client process, when the adapter could tell.
    peer: Option<Peer>,
}

/// The proxy's server side. Feed it every engine event; it drives the engine.
#[derive(Debug)]
pub struct ProxyServer {
    config: ProxyConfig,
    server: Option<StreamId>,
    listening: Option<String>,
    links: BTreeMap<StreamId, Link>,
    /// onward stream -> link stream.
    onward: BTreeMap<StreamId, StreamId>,
    /// Links open per client process.
    per_peer: BTreeMap<Peer, usize>,
    log: VecDeque<ProxyLog>,
}

impl ProxyServer {
    /// A daemon with `config`; call [`ProxyServer::start`] to listen.
    pub fn new(config: ProxyConfig) -> Self {
        ProxyServer {
            config,
            server: None,
            listening: None,
            links: BTreeMap::new(),
            onward: BTreeMap::new(),
            per_peer: BTreeMap::new(),
            log: VecDeque::new(),
        }
    }

    /// The synthetic raw server streamtype that listens for links at `bind`:
    /// `+@name` (Linux abstract socket), `+/path` (Unix socket path) or
    /// `IP:PORT` (TCP; only sensible on loopback).
    pub fn link_streamtype(bind: &str) -> Result<StreamType, String> {
        let (endpoint, port) = if bind.starts_with('+') {
            if bind.len() < 2 || bind == "+@" {
                return Err(format!("empty socket name in \"{bind}\""));
            }
            (bind.to_string(), 0)
        } else {
            let a: std::net::SocketAddr = bind
                .parse()
                .map_err(|_| format!("\"{bind}\" is neither +@name, +/path nor IP:PORT"))?;
            (a.ip().to_string(), a.port())
        };
        Ok(StreamType {
            name: LINK_STREAMTYPE.to_string(),
            endpoint: Some(endpoint),
            port,
            protocol: Protocol::Raw,
            server: true,
            ..StreamType::default()
        })
    }

    /// Add the link streamtype for `bind` to `policy` (before building the
    /// engine, or pass the result to `Engine::set_policy`). Fails if the
    /// policy already has a streamtype of that name.
    pub fn install(policy: &mut Policy, bind: &str) -> Result<(), String> {
        if policy.streamtype(LINK_STREAMTYPE).is_some() {
            return Err(format!(
                "the policy already has a streamtype named \"{LINK_STREAMTYPE}\""
            ));
        }
        policy.streamtypes.push(Self::link_streamtype(bind)?);
        Ok(())
    }

    /// Create the link listener on `engine` (whose policy went through
    /// [`ProxyServer::install`]). Its address arrives as
    /// [`ProxyLog::Listening`].
    pub fn start(&mut self, engine: &mut Engine, now: Instant) -> Result<StreamId, Error> {
        let id = engine.create(now, LINK_STREAMTYPE)?;
        self.server = Some(id);
        Ok(id)
    }

    /// The link listener's stream, once started.
    pub fn server_stream(&self) -> Option<StreamId> {
        self.server
    }

    /// Where the listener is bound, once it is.
    pub fn listening(&self) -> Option<&str> {
        self.listening.as_deref()
    }

    /// Links open now.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// The onward stream serving `link`, if it asked for one.
    pub fn onward_of(&self, link: StreamId) -> Option<StreamId> {
        self.links.get(&link).and_then(|l| l.onward)
    }

    /// The next log record.
    pub fn poll_log(&mut self) -> Option<ProxyLog> {
        self.log.pop_front()
    }

    fn push_log(&mut self, r: ProxyLog) {
        if self.config.max_log == 0 {
            return;
        }
        while self.log.len() >= self.config.max_log {
            self.log.pop_front();
        }
        self.log.push_back(r);
    }

    /// Handle one engine event. Returns `false` if the event concerns no
    /// stream of the proxy (the caller may have other streams of its own).
    pub fn handle_event(&mut self, engine: &mut Engine, now: Instant, ev: &Event) -> bool {
        // `Event::stream` of an accepted connection is the new stream.
        let id = match ev {
            Event::Accepted { server, .. } => *server,
            _ => ev.stream(),
        };
        if Some(id) == self.server {
            self.server_event(engine, now, ev);
            return true;
        }
        if self.links.contains_key(&id) {
            self.link_event(engine, now, id, ev);
            return true;
        }
        if let Some(&link) = self.onward.get(&id) {
            self.onward_event(engine, now, link, id, ev);
            return true;
        }
        false
    }

    // ----- the listener ------------------------------------------------

    fn server_event(&mut self, engine: &mut Engine, now: Instant, ev: &Event) {
        match ev {
            Event::Listening { addr, .. } => {
                self.listening = Some(addr.clone());
                self.push_log(ProxyLog::Listening { addr: addr.clone() });
            }
            Event::ListenFailed { reason, .. } => {
                self.push_log(ProxyLog::ListenFailed {
                    reason: reason.clone(),
                });
            }
            Event::Accepted { stream, .. } => {
                if self.links.len() >= self.config.max_links {
                    let _ = engine.destroy(now, *stream);
                    self.push_log(ProxyLog::LinkDropped {
                        link: *stream,
                        reason: format!("more than {} links", self.config.max_links),
                    });
                    return;
                }
                let peer = engine.peer_of(*stream);
                if let Some(p) = peer {
                    let n = self.per_peer.get(&p).copied().unwrap_or(0);
                    if n >= self.config.max_links_per_client {
                        let _ = engine.destroy(now, *stream);
                        self.push_log(ProxyLog::LinkDropped {
                            link: *stream,
                            reason: format!(
                                "more than {} links from process {} (uid {})",
                                self.config.max_links_per_client, p.pid, p.uid
                            ),
                        });
                        return;
                    }
                    self.per_peer.insert(p, n + 1);
                }
                let limits = Limits {
                    max_frame: self.config.max_frame.min(MAX_FRAME_BODY),
                };
                self.links.insert(
                    *stream,
                    Link {
                        dec: ToProxyDecoder::new(limits),
                        onward: None,
                        out: Vec::new(),
                        last_rx_at: None,
                        tx: VecDeque::new(),
                        tx_bytes: 0,
                        buflen: DEFAULT_BUFLEN as usize,
                        rxflow_on_above: DEFAULT_BUFLEN as usize / 2,
                        rxflow_off_below: DEFAULT_BUFLEN as usize / 4,
                        onward_paused: false,
                        link_paused: false,
                        known_md: Vec::new(),
                        md_names: Vec::new(),
                        peer,
                    },
                );
                self.push_log(ProxyLog::LinkOpened { link: *stream });
            }
            Event::State {
                state: StreamState::Destroying,
                ..
            } => {
                self.server = None;
                self.listening = None;
            }
            _ => {}
        }
    }

    // ----- a link ------------------------------------------------------

    fn link_event(&mut self, engine: &mut Engine, now: Instant, link: StreamId, ev: &Event) {
        match ev {
            Event::Rx { data, .. } => self.link_rx(engine, now, link, data),
            Event::Writable { budget, .. } => self.link_flush(engine, now, link, *budget),
            Event::State {
                state: StreamState::Disconnected | StreamState::Destroying,
                ..
            } => {
                let why = match self.links.get(&link).map(|l| l.dec.finish()) {
                    Some(Err(e)) => format!("client hung up inside a frame ({e})"),
                    _ => "client hung up".to_string(),
                };
                self.end_link(engine, now, link, false, why);
            }
            _ => {}
        }
    }

    fn link_rx(&mut self, engine: &mut Engine, now: Instant, link: StreamId, data: &[u8]) {
        let mut input = data;
        loop {
            let Some(l) = self.links.get_mut(&link) else {
                return;
            };
            match l.dec.next(&mut input) {
                Ok(Some(msg)) => {
                    if let Err(reason) = self.link_msg(engine, now, link, msg) {
                        self.drop_link(engine, now, link, reason);
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.drop_link(engine, now, link, format!("malformed frame: {e}"));
                    return;
                }
            }
        }
    }

    /// One message from a client; `Err` drops the link.
    fn link_msg(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        link: StreamId,
        msg: ToProxy,
    ) -> Result<(), String> {
        let Some(o) = self.links.get(&link).and_then(|l| l.onward) else {
            return match msg {
                ToProxy::StreamtypeCreate { streamtype, .. } => {
                    self.create_onward(engine, now, link, &streamtype)
                }
                _ => Err("frame before STREAMTYPE".into()),
            };
        };
        let res = match msg {
            ToProxy::StreamtypeCreate { .. } => return Err("second STREAMTYPE on a link".into()),
            ToProxy::OnwardConnect if expects_body(engine.stream_policy(o)) => {
                // The request waits for the client's TX_PAYLOAD as its body
                // (a direct POST's body goes out while CONNECTING too).
                engine.request_tx(now, o)
            }
            ToProxy::OnwardConnect => engine.client_connect(now, o),
            ToProxy::Destroying => {
                self.end_link(engine, now, link, true, "client sent DESTROYING".into());
                return Ok(());
            }
            ToProxy::TxPayload(p) => return self.queue_tx(engine, now, link, o, p),
            ToProxy::Metadata { name, value } => {
                let r = engine.set_metadata(o, &name, &value);
                if r.is_ok() {
                    if let Some(l) = self.links.get_mut(&link) {
                        if let Some(i) = l.md_names.iter().position(|n| *n == name) {
                            if let Some(slot) = l.known_md.get_mut(i) {
                                *slot = Some(value);
                            }
                        }
                    }
                }
                r
            }
            // No per-stream credit in the engine: the reference's tx credit
            // only matters for its h2/ws flow control; accepted and ignored.
            ToProxy::TxCreditUpdate(_) => Ok(()),
            ToProxy::TimeoutUpdate(TIMEOUT_CANCEL) => engine.cancel_timeout(o),
            ToProxy::TimeoutUpdate(ms) => engine.start_timeout(now, o, ms),
            ToProxy::PayloadLengthHint(n) => engine.request_tx_len(now, o, u64::from(n)),
        };
        if let Err(e) = res {
            self.push_log(ProxyLog::Note {
                link,
                text: format!("refused: {e}"),
            });
        }
        Ok(())
    }

    fn create_onward(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        link: StreamId,
        name: &str,
    ) -> Result<(), String> {
        let st = match engine.policy().streamtype(name) {
            Some(st) if st.server => Err(format!("streamtype \"{name}\" is a server")),
            Some(_) if name == LINK_STREAMTYPE => Err("the link streamtype".to_string()),
            Some(st) => Ok(st.clone()),
            None => Err(format!("unknown streamtype \"{name}\"")),
        };
        let created = st.and_then(|st| {
            engine
                .create(now, name)
                .map(|id| (id, st))
                .map_err(|e| e.to_string())
        });
        let (onward, st) = match created {
            Ok(v) => v,
            Err(reason) => {
                // Tell the client, then hang up (as the reference does).
                let msg = ToClient::CreateResult {
                    status: 1,
                    client_buflen: 0,
                    rideshare: String::new(),
                };
                if let Some(l) = self.links.get_mut(&link) {
                    let _ = msg.encode(&mut l.out);
                }
                self.close_link(engine, now, link, true);
                self.push_log(ProxyLog::LinkDropped { link, reason });
                return Ok(());
            }
        };
        let Some(l) = self.links.get_mut(&link) else {
            let _ = engine.destroy(now, onward);
            return Ok(());
        };
        l.onward = Some(onward);
        l.buflen = st.proxy_buflen.unwrap_or(DEFAULT_BUFLEN) as usize;
        let (on, off) = rxflow_thresholds(&st, l.buflen);
        l.rxflow_on_above = on;
        l.rxflow_off_below = off;
        l.md_names = st.metadata.iter().map(|m| m.name.clone()).collect();
        l.known_md = vec![None; l.md_names.len()];
        self.onward.insert(onward, link);
        let rideshare = rideshare_list(engine.policy(), &st);
        if rideshare.is_none() {
            self.push_log(ProxyLog::Note {
                link,
                text: "rideshare chain too long for the wire; not announced".into(),
            });
        }
        let msg = ToClient::CreateResult {
            status: 0,
            client_buflen: st.client_buflen.unwrap_or(DEFAULT_BUFLEN),
            rideshare: rideshare.unwrap_or_default(),
        };
        self.send(engine, now, link, &msg)?;
        self.push_log(ProxyLog::LinkCreated {
            link,
            onward,
            streamtype: name.to_string(),
        });
        Ok(())
    }

    fn queue_tx(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        link: StreamId,
        onward: StreamId,
        p: Payload,
    ) -> Result<(), String> {
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        // Beyond proxy_buflen the link is not read (below), so only what was
        // already read can arrive: more than that is a broken bound.
        let hard = hard_cap(engine, l.buflen);
        if l.tx_bytes.saturating_add(p.data.len()) > hard {
            return Err(format!(
                "client payload beyond its bound ({} bytes queued, {} more, bound {hard})",
                l.tx_bytes,
                p.data.len()
            ));
        }
        l.tx_bytes = l.tx_bytes.saturating_add(p.data.len());
        l.tx.push_back((p.data, p.flags));
        if !l.link_paused && l.tx_bytes > l.buflen {
            // The onward peer is slower than the client: stop reading the
            // link, so the client's writes block instead of piling up here.
            l.link_paused = true;
            let _ = engine.set_rx_paused(now, link, true);
        }
        if let Err(e) = engine.request_tx(now, onward) {
            self.push_log(ProxyLog::Note {
                link,
                text: format!("request_tx: {e}"),
            });
        }
        Ok(())
    }

    /// Queue a frame for the link and ask to write it.
    fn send(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        link: StreamId,
        msg: &ToClient,
    ) -> Result<(), String> {
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        // Payload beyond the rxflow threshold pauses the onward stream, so
        // only what it had already decoded can follow.
        let cap = hard_cap(engine, l.buflen);
        let before = l.out.len();
        msg.encode(&mut l.out)
            .map_err(|e| format!("cannot encode for the client: {e}"))?;
        l.last_rx_at = matches!(msg, ToClient::RxPayload(_)).then_some(before);
        if l.out.len() > cap {
            l.out.truncate(before);
            return Err("client does not read (link buffer full)".into());
        }
        let _ = engine.request_tx(now, link);
        Ok(())
    }

    fn link_flush(&mut self, engine: &mut Engine, now: Instant, link: StreamId, budget: usize) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let n = budget.max(1).min(l.out.len());
        if n == 0 {
            return;
        }
        let chunk: Vec<u8> = l.out.drain(..n).collect();
        l.last_rx_at = l.last_rx_at.and_then(|at| at.checked_sub(n));
        let more = !l.out.is_empty();
        if l.onward_paused && l.out.len() <= l.rxflow_off_below {
            l.onward_paused = false;
            if let Some(o) = l.onward {
                let _ = engine.set_rx_paused(now, o, false);
            }
        }
        if engine.write(now, link, &chunk, Flags::NONE).is_ok() && more {
            let _ = engine.request_tx(now, link);
        }
    }

    /// Destroy the link's stream (closing its socket), optionally writing
    /// what is queued for it first.
    fn close_link(&mut self, engine: &mut Engine, now: Instant, link: StreamId, flush: bool) {
        if let Some(l) = self.links.remove(&link) {
            if let Some(p) = l.peer {
                if let Some(n) = self.per_peer.get_mut(&p) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.per_peer.remove(&p);
                    }
                }
            }
            if flush && !l.out.is_empty() {
                let _ = engine.write(now, link, &l.out, Flags::NONE);
            }
            if let Some(o) = l.onward {
                self.onward.remove(&o);
                let _ = engine.destroy(now, o);
            }
        }
        let _ = engine.destroy(now, link);
    }

    /// End a link normally: destroy the onward stream and the link.
    fn end_link(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        link: StreamId,
        flush: bool,
        why: String,
    ) {
        if self.links.contains_key(&link) {
            self.close_link(engine, now, link, flush);
            self.push_log(ProxyLog::LinkClosed { link, why });
        }
    }

    /// Drop a misbehaving link without writing anything more to it.
    fn drop_link(&mut self, engine: &mut Engine, now: Instant, link: StreamId, reason: String) {
        if self.links.contains_key(&link) {
            self.close_link(engine, now, link, false);
            self.push_log(ProxyLog::LinkDropped { link, reason });
        }
    }

    // ----- an onward stream ---------------------------------------------

    fn onward_event(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        link: StreamId,
        onward: StreamId,
        ev: &Event,
    ) {
        let res = match ev {
            Event::State {
                state: StreamState::Destroying,
                ..
            } => {
                self.onward.remove(&onward);
                if let Some(l) = self.links.get_mut(&link) {
                    l.onward = None;
                }
                let _ = self.send(
                    engine,
                    now,
                    link,
                    &ToClient::conn_state(StreamState::Destroying, 0),
                );
                self.end_link(engine, now, link, true, "onward stream destroyed".into());
                return;
            }
            // The client reports its own CREATING when it creates the stream.
            Event::State {
                state: StreamState::Creating,
                ..
            } => Ok(()),
            Event::State { state, ack, .. } => {
                let mut r = Ok(());
                if matches!(
                    state,
                    StreamState::Connected
                        | StreamState::QosAckRemote
                        | StreamState::QosNackRemote
                        | StreamState::ServerTxn
                ) {
                    r = self.send_metadata(engine, now, link, onward);
                }
                r.and_then(|_| {
                    self.send(
                        engine,
                        now,
                        link,
                        &ToClient::ConnState {
                            state: state.ordinal(),
                            ack: *ack,
                        },
                    )
                })
            }
            Event::Rx { data, flags, .. } => self
                .send_metadata(engine, now, link, onward)
                .and_then(|_| self.send_rx(engine, now, link, data, *flags)),
            Event::Writable { budget, .. } => {
                self.onward_write(engine, now, link, onward, *budget);
                Ok(())
            }
            Event::ConnectionError { reason, .. } => {
                self.push_log(ProxyLog::Note {
                    link,
                    text: format!("onward: {reason}"),
                });
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(reason) = res {
            self.drop_link(engine, now, link, reason);
        }
    }

    /// METADATA frames for every declared item whose value the client does
    /// not know yet (e.g. HTTP response headers).
    fn send_metadata(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        link: StreamId,
        onward: StreamId,
    ) -> Result<(), String> {
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        let mut msgs = Vec::new();
        for (name, known) in l.md_names.iter().zip(l.known_md.iter_mut()) {
            let Ok(Some(v)) = engine.get_metadata(onward, name) else {
                continue;
            };
            // The wire cannot carry an empty value or a long name.
            if v.is_empty() || name.is_empty() || name.len() > wire::MAX_METADATA_NAME_LEN {
                continue;
            }
            if known.as_deref() != Some(v) {
                *known = Some(v.to_vec());
                msgs.push(ToClient::Metadata {
                    name: name.clone(),
                    value: v.to_vec(),
                });
            }
        }
        for m in &msgs {
            self.send(engine, now, link, m)?;
        }
        Ok(())
    }

    fn send_rx(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        link: StreamId,
        data: &[u8],
        flags: Flags,
    ) -> Result<(), String> {
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        // A bare EOM (e.g. the end of a chunked body) joins the payload frame
        // before it while that is still queued whole: the reference client
        // mishandles empty RX_PAYLOAD frames (it loses data from later frames
        // split across reads, see docs/proxy.md).
        let bare_eom = Flags(flags.0 & !Flags::RIDESHARE.0) == Flags::EOM;
        if data.is_empty() && bare_eom {
            if let Some(at) = l.last_rx_at {
                // The frame's flags: 4 bytes after its type and length.
                if let Some(f) = l.out.get_mut(at + 3..at + 7) {
                    let mut b = [0u8; 4];
                    b.copy_from_slice(f);
                    let v = u32::from_be_bytes(b) | Flags::EOM.0;
                    f.copy_from_slice(&v.to_be_bytes());
                    return Ok(());
                }
            }
        }
        let max = self
            .config
            .max_frame
            .min(MAX_FRAME_BODY)
            .saturating_sub(PAYLOAD_PREFIX_LEN)
            .clamp(1, wire::REF_CLIENT_RX_PIECE);
        let pieces: Vec<&[u8]> = if data.is_empty() {
            vec![data]
        } else {
            data.chunks(max).collect()
        };
        let last = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut f = flags.0;
            if i > 0 {
                f &= !Flags::SOM.0;
            }
            if i < last {
                f &= !Flags::EOM.0;
            }
            // Never forward a rideshare flag we do not carry a name for.
            f &= !Flags::RIDESHARE.0;
            let msg = ToClient::RxPayload(Payload::new(piece.to_vec(), Flags(f)));
            self.send(engine, now, link, &msg)?;
        }
        if let Some(l) = self.links.get_mut(&link) {
            if !l.onward_paused && l.out.len() > l.rxflow_on_above {
                // The client reads slower than the onward peer sends: stop
                // reading the onward connection until the link drains.
                l.onward_paused = true;
                if let Some(o) = l.onward {
                    let _ = engine.set_rx_paused(now, o, true);
                }
            }
        }
        Ok(())
    }

    fn onward_write(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        link: StreamId,
        onward: StreamId,
        budget: usize,
    ) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some((mut data, flags)) = l.tx.pop_front() else {
            return;
        };
        let budget = budget.max(1);
        let (data, flags) = if data.len() > budget {
            let rest = data.split_off(budget);
            l.tx.push_front((rest, Flags(flags.0 & !Flags::SOM.0)));
            (data, Flags(flags.0 & !Flags::EOM.0))
        } else {
            (data, flags)
        };
        l.tx_bytes = l.tx_bytes.saturating_sub(data.len());
        let more = !l.tx.is_empty();
        if l.link_paused && l.tx_bytes <= l.buflen / 2 {
            l.link_paused = false;
            let _ = engine.set_rx_paused(now, link, false);
        }
        let flags = Flags(flags.0 & !Flags::RIDESHARE.0);
        if let Err(e) = engine.write(now, onward, &data, flags) {
            self.push_log(ProxyLog::Note {
                link,
                text: format!("onward write: {e}"),
            });
        }
        if more {
            let _ = engine.request_tx(now, onward);
        }
    }
}

/// The `proxy_buflen_rxflow_on_above` / `_off_below` pair for a streamtype,
/// defaulting to half and a quarter of `buflen`, and kept ordered.
fn rxflow_thresholds(st: &StreamType, buflen: usize) -> (usize, usize) {
    let on = st
        .proxy_buflen_rxflow_on_above
        .map_or(buflen / 2, |v| v as usize)
        .min(buflen);
    let off = st
        .proxy_buflen_rxflow_off_below
        .map_or(on / 2, |v| v as usize)
        .min(on);
    (on, off)
}

/// Most bytes a link may queue either way: its `proxy_buflen`, one frame,
/// and what the engine may deliver from input read before a pause took
/// effect. Flow control keeps a well-behaved path far below it.
fn hard_cap(engine: &Engine, buflen: usize) -> usize {
    buflen
        .saturating_add(wire::FRAME_HEADER_LEN + MAX_FRAME_BODY)
        .saturating_add(engine.config().max_held_rx)
}

/// The CREATE_RESULT rideshare list for `st`: its name and then each
/// `rideshare` down the chain, comma-separated, so the client can tell which
/// streamtype's part of a multipart body it is producing. Empty without a
/// chain; `None` if the chain does not fit the wire's limits (the reference
/// client's `rideshare_list[128]` / four entries). A cycle ends the chain,
/// as it ends the body.
fn rideshare_list(policy: &Policy, st: &StreamType) -> Option<String> {
    let mut names = vec![st.name.as_str()];
    let mut cur = st;
    while let Some(next) = cur.http.rideshare.as_deref() {
        if names.contains(&next) {
            break;
        }
        let Some(n) = policy.streamtype(next) else {
            break;
        };
        names.push(n.name.as_str());
        cur = n;
    }
    if names.len() < 2 {
        return Some(String::new());
    }
    let list = names.join(",");
    (list.len() <= wire::MAX_RIDESHARE_LIST_LEN
        && names.len() <= wire::MAX_RIDESHARE_LIST_COMMAS + 1)
        .then_some(list)
}

/// Whether an onward stream's request carries a body the client will send:
/// HTTP POST, PUT or PATCH.
fn expects_body(st: Option<&StreamType>) -> bool {
    st.is_some_and(|st| {
        matches!(st.protocol, Protocol::H1 | Protocol::H2)
            && st.http.method.as_deref().is_some_and(|m| {
                ["POST", "PUT", "PATCH"]
                    .iter()
                    .any(|b| m.eq_ignore_ascii_case(b))
            })
    })
}
