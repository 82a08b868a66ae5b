//! The HTTP/2 client machine: many requests on one connection.

use super::{
    build_headers, header_list, H2Config, H2Error, H2Event, Link, Pipe, Rx, StreamKey, Tx,
    MAX_PASSES,
};
use ::h2::client::{Connection, ResponseFuture, SendRequest};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The head of a request to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Method, e.g. `GET`.
    pub method: String,
    /// `:path`, e.g. `/x?y=1`.
    pub path: String,
    /// `:authority`, e.g. `example.com:443`.
    pub authority: String,
    /// `:scheme`, `https` or `http`.
    pub scheme: String,
    /// Regular header fields (no pseudo-headers, no connection-specific ones).
    pub headers: Vec<(String, String)>,
    /// No body follows: END_STREAM goes on the HEADERS frame.
    pub end_stream: bool,
}

impl RequestHead {
    /// A request with no extra headers over https.
    pub fn new(method: &str, path: &str, authority: &str, end_stream: bool) -> Self {
        RequestHead {
            method: method.to_string(),
            path: path.to_string(),
            authority: authority.to_string(),
            scheme: "https".to_string(),
            headers: Vec::new(),
            end_stream,
        }
    }
}

type Handshake = Pin<
    Box<
        dyn Future<Output = Result<(SendRequest<Bytes>, Connection<Pipe, Bytes>), ::h2::Error>>
            + Send,
    >,
>;

enum State {
    Handshaking(Handshake),
    Open {
        /// `None` once [`H2Client::close`] gave it up.
        sender: Option<SendRequest<Bytes>>,
        conn: Box<Connection<Pipe, Bytes>>,
    },
    Closed,
}

#[derive(Debug, Default)]
struct Stream {
    resp: Option<ResponseFuture>,
    tx: Tx,
    rx: Rx,
}

/// An HTTP/2 client connection, sans-IO (see the module docs of
/// [`crate::proto::h2`]). Feed it the server's bytes with
/// [`handle_input`](Self::handle_input), send what
/// [`poll_transmit`](Self::poll_transmit) gives, and take
/// [`poll_event`](Self::poll_event)s until `None` after every call.
pub struct H2Client {
    cfg: H2Config,
    link: Link,
    state: State,
    streams: BTreeMap<StreamKey, Stream>,
    next_key: u64,
    going_away: bool,
    error: Option<H2Error>,
}

impl fmt::Debug for H2Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Client")
            .field("streams", &self.streams.len())
            .field("going_away", &self.going_away)
            .field("error", &self.error)
            .finish()
    }
}

impl H2Client {
    /// A new connection; the preface and SETTINGS are ready to transmit.
    pub fn new(cfg: H2Config) -> Self {
        let link = Link::new(false, &cfg);
        let pipe = link.pipe.clone();
        let mut b = ::h2::client::Builder::new();
        b.initial_window_size(cfg.initial_window)
            .initial_connection_window_size(cfg.connection_window)
            .max_header_list_size(cfg.max_header_list)
            .max_concurrent_streams(cfg.max_concurrent_streams)
            .max_concurrent_reset_streams(0)
            .enable_push(false);
        let hs: Handshake = Box::pin(b.handshake::<Pipe, Bytes>(pipe));
        let mut c = H2Client {
            cfg,
            link,
            state: State::Handshaking(hs),
            streams: BTreeMap::new(),
            next_key: 1,
            going_away: false,
            error: None,
        };
        c.drive();
        c
    }

    machine_io!("server");

    /// Open a request stream. [`H2Error::WouldBlock`] when as many streams
    /// are open as the server (or [`H2Config::max_concurrent_streams`])
    /// allows: queue the request and retry after a stream ends.
    pub fn start_request(&mut self, head: &RequestHead) -> Result<StreamKey, H2Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.going_away {
            return Err(H2Error::Closed);
        }
        let (sender, conn) = match &mut self.state {
            State::Open {
                sender: Some(s),
                conn,
            } => (s, conn),
            State::Open { sender: None, .. } | State::Closed => return Err(H2Error::Closed),
            State::Handshaking(_) => return Err(H2Error::WouldBlock),
        };
        let limit = conn
            .max_concurrent_send_streams()
            .min(self.cfg.max_concurrent_streams as usize);
        if self.streams.len() >= limit {
            return Err(H2Error::WouldBlock);
        }
        let waker = self.link.waker.clone();
        let mut cx = Context::from_waker(&waker);
        match sender.poll_ready(&mut cx) {
            Poll::Pending => return Err(H2Error::WouldBlock),
            Poll::Ready(Err(e)) => return Err(H2Error::from_h2(&e)),
            Poll::Ready(Ok(())) => {}
        }
        let bodyless = matches!(
            head.method.to_ascii_uppercase().as_str(),
            "GET" | "HEAD" | "DELETE" | "OPTIONS"
        );
        let end = head.end_stream || (self.cfg.quirk_end_stream && bodyless);
        let uri = format!("{}://{}{}", head.scheme, head.authority, head.path);
        let mut req = http::Request::builder()
            .method(head.method.as_str())
            .uri(uri.as_str())
            .body(())
            .map_err(|e| H2Error::BadHead(e.to_string()))?;
        *req.headers_mut() = build_headers(&head.headers)?;
        let (resp, send) = sender
            .send_request(req, end)
            .map_err(|e| H2Error::from_h2_send(&e))?;
        let key = StreamKey(self.next_key);
        self.next_key += 1;
        self.streams.insert(
            key,
            Stream {
                resp: Some(resp),
                tx: Tx::new(send, end),
                rx: Rx::default(),
            },
        );
        self.drive();
        Ok(key)
    }

    /// Send request body bytes; `eom` ends the body (only if all bytes were
    /// taken). Returns how many bytes were taken: at most
    /// [`H2Config::max_stream_tx_buffer`] wait ahead of the server's window;
    /// after a short count wait for [`H2Event::Writable`].
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
        if let Some(send) = s.tx.send.as_mut() {
            send.send_reset(::h2::Reason::from(reason));
        }
        drop(s);
        self.drive();
        Ok(())
    }

    /// Open no more streams; the connection ends (GOAWAY from `h2`) once the
    /// open ones finish.
    pub fn close(&mut self) {
        self.going_away = true;
        if let State::Open { sender, .. } = &mut self.state {
            *sender = None;
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
                State::Handshaking(hs) => match hs.as_mut().poll(&mut cx) {
                    Poll::Ready(Ok((sender, conn))) => {
                        let sender = if self.going_away { None } else { Some(sender) };
                        self.state = State::Open {
                            sender,
                            conn: Box::new(conn),
                        };
                        moved = true;
                    }
                    Poll::Ready(Err(e)) => {
                        self.fail(H2Error::from_h2(&e));
                        moved = true;
                    }
                    Poll::Pending => {}
                },
                State::Open { conn, .. } => match Pin::new(&mut **conn).poll(&mut cx) {
                    Poll::Ready(Ok(())) => {
                        self.pump_streams(&mut cx, &mut moved);
                        for (key, _) in std::mem::take(&mut self.streams) {
                            self.link
                                .events
                                .push_back(H2Event::Reset { key, reason: 0 });
                        }
                        self.link.events.push_back(H2Event::Closed);
                        self.state = State::Closed;
                        moved = true;
                    }
                    Poll::Ready(Err(e)) => {
                        self.pump_streams(&mut cx, &mut moved);
                        self.fail(H2Error::from_h2(&e));
                        moved = true;
                    }
                    Poll::Pending => {}
                },
                State::Closed => {}
            }
            if !moved && mark == self.link.progress_mark() {
                break;
            }
        }
        self.streams.retain(|_, s| {
            !(s.resp.is_none()
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
            if let Some(resp) = s.resp.as_mut() {
                match Pin::new(resp).poll(cx) {
                    Poll::Ready(Ok(r)) => {
                        let (parts, body) = r.into_parts();
                        events.push_back(H2Event::Response {
                            key: *key,
                            status: parts.status.as_u16(),
                            headers: header_list(&parts.headers),
                        });
                        s.rx.body = Some(body);
                        s.resp = None;
                        *moved = true;
                    }
                    Poll::Ready(Err(e)) => {
                        dead.push((*key, e.reason().map(u32::from).unwrap_or(0x2)));
                        continue;
                    }
                    Poll::Pending => {}
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
