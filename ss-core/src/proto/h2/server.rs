//! The HTTP/2 server machine: accepts request streams and answers them.

use super::{
    build_headers, header_list, H2Config, H2Error, H2Event, Link, Pipe, Rx, StreamKey, Tx,
    MAX_PASSES,
};
use ::h2::server::{Connection, Handshake, SendResponse};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

enum State {
    Handshaking(Box<Handshake<Pipe, Bytes>>),
    Open(Box<Connection<Pipe, Bytes>>),
    Closed,
}

#[derive(Debug, Default)]
struct Stream {
    respond: Option<SendResponse<Bytes>>,
    tx: Tx,
    rx: Rx,
}

/// An HTTP/2 server connection, sans-IO (see [`crate::proto::h2`]): feed it
/// the client's bytes, answer [`H2Event::Request`]s with
/// [`respond`](Self::respond) and [`send_data`](Self::send_data).
pub struct H2Server {
    cfg: H2Config,
    link: Link,
    state: State,
    streams: BTreeMap<StreamKey, Stream>,
    next_key: u64,
    error: Option<H2Error>,
}

impl fmt::Debug for H2Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Server")
            .field("streams", &self.streams.len())
            .field("error", &self.error)
            .finish()
    }
}

impl H2Server {
    /// A new connection, waiting for the client preface; our SETTINGS are
    /// ready to transmit.
    pub fn new(cfg: H2Config) -> Self {
        let link = Link::new(true, &cfg);
        let pipe = link.pipe.clone();
        let mut b = ::h2::server::Builder::new();
        b.initial_window_size(cfg.initial_window)
            .initial_connection_window_size(cfg.connection_window)
            .max_header_list_size(cfg.max_header_list)
            .max_concurrent_streams(cfg.max_concurrent_streams)
            .max_concurrent_reset_streams(0);
        let hs = b.handshake::<Pipe, Bytes>(pipe);
        let mut s = H2Server {
            cfg,
            link,
            state: State::Handshaking(Box::new(hs)),
            streams: BTreeMap::new(),
            next_key: 1,
            error: None,
        };
        s.drive();
        s
    }

    machine_io!("client");

    /// Send the response head of a request stream; `end_stream` when no
    /// body follows.
    pub fn respond(
        &mut self,
        key: StreamKey,
        status: u16,
        headers: &[(String, String)],
        end_stream: bool,
    ) -> Result<(), H2Error> {
        let s = self
            .streams
            .get_mut(&key)
            .ok_or(H2Error::UnknownStream(key))?;
        let respond = s.respond.as_mut().ok_or(H2Error::UnknownStream(key))?;
        let mut resp = http::Response::builder()
            .status(status)
            .body(())
            .map_err(|e| H2Error::BadHead(e.to_string()))?;
        *resp.headers_mut() = build_headers(headers)?;
        let send = respond
            .send_response(resp, end_stream)
            .map_err(|e| H2Error::from_h2_send(&e))?;
        s.respond = None;
        s.tx = Tx::new(send, end_stream);
        self.drive();
        Ok(())
    }

    /// Send response body bytes after [`respond`](Self::respond); `eom`
    /// ends the body (only if all bytes were taken). Returns how many bytes
    /// were taken; after a short count wait for [`H2Event::Writable`].
    pub fn send_data(&mut self, key: StreamKey, data: &[u8], eom: bool) -> Result<usize, H2Error> {
        let limit = self.cfg.max_stream_tx_buffer;
        let s = self
            .streams
            .get_mut(&key)
            .filter(|s| !s.tx.done && !s.tx.eom_pending && s.tx.send.is_some())
            .ok_or(H2Error::UnknownStream(key))?;
        let n = s.tx.accept(data, eom, limit);
        self.drive();
        Ok(n)
    }

    /// Reset a stream (RST_STREAM with `reason`); it is forgotten at once.
    pub fn reset(&mut self, key: StreamKey, reason: u32) -> Result<(), H2Error> {
        let mut s = self
            .streams
            .remove(&key)
            .ok_or(H2Error::UnknownStream(key))?;
        let r = ::h2::Reason::from(reason);
        match (s.respond.as_mut(), s.tx.send.as_mut()) {
            (Some(resp), _) => resp.send_reset(r),
            (None, Some(send)) => send.send_reset(r),
            (None, None) => {}
        }
        drop(s);
        self.drive();
        Ok(())
    }

    /// Graceful shutdown: GOAWAY, finish the open streams, then close.
    pub fn go_away(&mut self) {
        if let State::Open(conn) = &mut self.state {
            conn.graceful_shutdown();
        }
        self.drive();
    }

    /// Abrupt shutdown: GOAWAY with `reason`; open streams are dropped.
    pub fn abort(&mut self, reason: u32) {
        if let State::Open(conn) = &mut self.state {
            conn.abrupt_shutdown(::h2::Reason::from(reason));
        }
        self.drive();
    }

    fn fail(&mut self, e: H2Error) {
        let reason = match &e {
            H2Error::Connection { reason, .. } => reason.unwrap_or(0x2),
            _ => 0x2,
        };
        for (key, _) in std::mem::take(&mut self.streams) {
            self.link.events.push_back(H2Event::Reset { key, reason });
        }
        self.link.events.push_back(H2Event::Closed);
        self.error = Some(e);
        self.state = State::Closed;
    }

    /// Poll everything until nothing moves.
    fn drive(&mut self) {
        let waker = self.link.waker.clone();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..MAX_PASSES {
            let mark = self.link.progress_mark();
            let mut moved = false;
            self.pump_streams(&mut cx, &mut moved);
            match &mut self.state {
                State::Handshaking(hs) => match Pin::new(&mut **hs).poll(&mut cx) {
                    Poll::Ready(Ok(conn)) => {
                        self.state = State::Open(Box::new(conn));
                        moved = true;
                    }
                    Poll::Ready(Err(e)) => {
                        self.fail(H2Error::from_h2(&e));
                        moved = true;
                    }
                    Poll::Pending => {}
                },
                State::Open(conn) => loop {
                    match conn.poll_accept(&mut cx) {
                        Poll::Ready(Some(Ok((req, respond)))) => {
                            let key = StreamKey(self.next_key);
                            self.next_key += 1;
                            let (parts, body) = req.into_parts();
                            self.link.events.push_back(H2Event::Request {
                                key,
                                method: parts.method.as_str().to_string(),
                                path: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.as_str().to_string())
                                    .unwrap_or_default(),
                                authority: parts.uri.authority().map(|a| a.as_str().to_string()),
                                headers: header_list(&parts.headers),
                                end_stream: body.is_end_stream(),
                            });
                            self.streams.insert(
                                key,
                                Stream {
                                    respond: Some(respond),
                                    tx: Tx::default(),
                                    rx: Rx {
                                        body: Some(body),
                                        ..Rx::default()
                                    },
                                },
                            );
                            moved = true;
                        }
                        Poll::Ready(Some(Err(e))) => {
                            self.pump_streams(&mut cx, &mut moved);
                            self.fail(H2Error::from_h2(&e));
                            moved = true;
                            break;
                        }
                        Poll::Ready(None) => {
                            self.pump_streams(&mut cx, &mut moved);
                            for (key, _) in std::mem::take(&mut self.streams) {
                                self.link
                                    .events
                                    .push_back(H2Event::Reset { key, reason: 0 });
                            }
                            self.link.events.push_back(H2Event::Closed);
                            self.state = State::Closed;
                            moved = true;
                            break;
                        }
                        Poll::Pending => break,
                    }
                },
                State::Closed => {}
            }
            if !moved && mark == self.link.progress_mark() {
                break;
            }
        }
        self.streams.retain(|_, s| {
            !(s.respond.is_none()
                && s.rx.done
                && s.rx.queued == 0
                && (s.tx.done || s.tx.send.is_none()))
        });
    }

    fn pump_streams(&mut self, cx: &mut Context<'_>, moved: &mut bool) {
        let limit_rx = self.cfg.max_stream_rx_buffer;
        let limit_tx = self.cfg.max_stream_tx_buffer;
        let events = &mut self.link.events;
        let mut dead = Vec::new();
        for (key, s) in self.streams.iter_mut() {
            if let Some(respond) = s.respond.as_mut() {
                if let Poll::Ready(r) = respond.poll_reset(cx) {
                    dead.push((*key, r.map(u32::from).unwrap_or(0x2)));
                    continue;
                }
            }
            if let Err(r) = s.rx.pump(*key, cx, limit_rx, events) {
                dead.push((*key, r));
                continue;
            }
            match s.tx.pump(cx, limit_tx) {
                Ok(true) => events.push_back(H2Event::Writable { key: *key }),
                Ok(false) => {}
                Err(r) => dead.push((*key, r)),
            }
        }
        for (key, reason) in dead {
            self.streams.remove(&key);
            self.link.events.push_back(H2Event::Reset { key, reason });
            *moved = true;
        }
    }
}
