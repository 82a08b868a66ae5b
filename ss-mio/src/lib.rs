//! Secure Streams adapter for [mio]: one thread, one [`mio::Poll`].
//!
//! [`Runtime`] owns a [`Host`] (engine plus stream handlers) and carries out
//! the engine's [`Action`]s on real sockets: TCP, Unix paths and Linux
//! abstract Unix names, client connections and listeners. DNS lookups run on
//! short-lived resolver threads (a bounded number at once) that report back
//! through a channel and a [`mio::Waker`], so the loop never blocks on them.
//! Time is `std::time::Instant::now()`.
//!
//! Writes are kept per connection until the socket takes them; the engine's
//! flow control (it gives no more `Writable` until `handle_sent` reports
//! progress) bounds them. A connection the engine closes is closed
//! gracefully: its last bytes are flushed, the write side is shut down, and
//! what the peer still sends is discarded until it closes too, all within
//! [`CLOSE_LINGER`]; so the peer's kernel has no reason to reset the
//! connection and drop bytes it has not yet delivered.

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use ss_core::engine::SockAddr;
use ss_core::{Action, ConnId, Host, ListenerId};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of one read; each read is handed to the engine as one `handle_data`.
pub const READ_CHUNK: usize = 16 * 1024;
/// Most resolver threads running at once; further lookups wait their turn.
pub const MAX_DNS_THREADS: usize = 8;
/// Rounds of dispatching events and carrying out actions per loop iteration.
const SETTLE_ROUNDS: usize = 64;
/// How long a closed connection may take to flush what it was handed and
/// see the peer close in turn; after that it is dropped regardless.
pub const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// Reads (or accepts) done for one socket before the loop serves others.
const BURST: usize = 8;
const WAKER: Token = Token(0);

/// A connected (or connecting) stream socket.
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Sock::Tcp(s) => s,
            Sock::Unix(s) => s,
        }
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }
    fn shutdown_write(&self) {
        let _ = match self {
            Sock::Tcp(s) => s.shutdown(Shutdown::Write),
            Sock::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Sock::Tcp(s) => s.take_error(),
            Sock::Unix(s) => s.take_error(),
        }
    }
    /// Whether a non-blocking connect has completed (`Ok(false)`: not yet).
    fn connect_done(&self) -> io::Result<bool> {
        if let Some(e) = self.take_error()? {
            return Err(e);
        }
        let r = match self {
            Sock::Tcp(s) => s.peer_addr().map(|_| ()),
            Sock::Unix(s) => s.peer_addr().map(|_| ()),
        };
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
    fn set_options(&self, tos: u8, priority: u8) {
        let (sock, v6) = match self {
            Sock::Tcp(s) => (
                socket2::SockRef::from(s),
                Some(s.local_addr().is_ok_and(|a| a.is_ipv6())),
            ),
            Sock::Unix(s) => (socket2::SockRef::from(s), None),
        };
        match v6 {
            _ if tos == 0 => {}
            Some(false) => {
                let _ = sock.set_tos_v4(u32::from(tos));
            }
            Some(true) => {
                let _ = sock.set_tclass_v6(u32::from(tos));
            }
            None => {}
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if priority != 0 {
            let _ = sock.set_priority(u32::from(priority));
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = priority;
    }
}

/// One connection the engine asked for (or a listener accepted).
struct Conn {
    sock: Sock,
    token: Token,
    connecting: bool,
    /// Bytes handed over by `Transmit` and not yet written; `off` is written.
    pending: Vec<u8>,
    off: usize,
    /// The engine closed it: flush `pending`, shut the write side, discard
    /// reads until the peer closes; drop it then or at this deadline.
    closing: Option<Instant>,
    /// The write side is shut down (closing only).
    shut: bool,
}

enum Lsock {
    Tcp(TcpListener),
    Unix(UnixListener, Option<String>),
}

struct Listener {
    sock: Lsock,
    token: Token,
}

#[derive(Clone, Copy)]
enum Key {
    Conn(ConnId),
    Listener(ListenerId),
}

/// The mio event loop around a [`Host`].
pub struct Runtime {
    host: Host,
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    dns_tx: Sender<(ConnId, Vec<IpAddr>)>,
    dns_rx: Receiver<(ConnId, Vec<IpAddr>)>,
    dns_running: usize,
    dns_queue: VecDeque<(ConnId, String)>,
    conns: HashMap<ConnId, Conn>,
    /// Connections closed by the engine still flushing their last bytes.
    closing: HashMap<Token, Conn>,
    listeners: HashMap<ListenerId, Listener>,
    tokens: HashMap<Token, Key>,
    next_token: usize,
    /// Sockets with more to read (or accept) than one burst took.
    ready: BTreeSet<usize>,
    /// The last settle stopped with work left: do not wait in the next turn.
    busy: bool,
    buf: Vec<u8>,
}

impl Runtime {
    /// A runtime carrying `host`.
    ///
    /// # Panics
    /// If the OS cannot create a poll instance or its waker (see
    /// [`Runtime::try_new`]).
    pub fn new(host: Host) -> Self {
        match Self::try_new(host) {
            Ok(rt) => rt,
            Err(e) => panic!("ss-mio: cannot create the event loop: {e}"),
        }
    }

    /// A runtime carrying `host`, or the OS error that prevented creating
    /// its poll instance.
    pub fn try_new(host: Host) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (dns_tx, dns_rx) = channel();
        Ok(Runtime {
            host,
            poll,
            events: Events::with_capacity(256),
            waker,
            dns_tx,
            dns_rx,
            dns_running: 0,
            dns_queue: VecDeque::new(),
            conns: HashMap::new(),
            closing: HashMap::new(),
            listeners: HashMap::new(),
            tokens: HashMap::new(),
            next_token: 1,
            ready: BTreeSet::new(),
            busy: false,
            buf: vec![0; READ_CHUNK],
        })
    }

    /// The host, to create streams or inspect state between runs.
    pub fn host(&mut self) -> &mut Host {
        &mut self.host
    }

    /// The clock passed to the engine.
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// Run the loop until `done` returns true (checked after every
    /// iteration) or `timeout` passes. Returns whether `done` became true.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        done: &mut dyn FnMut(&mut Host) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            self.settle(now);
            if done(&mut self.host) {
                return true;
            }
            if now >= deadline {
                return false;
            }
            self.turn(deadline);
        }
    }

    /// One iteration: carry out pending actions, wait for sockets, DNS or
    /// the next engine timer (at most `max_wait`), feed what happened to the
    /// engine, and dispatch the resulting events.
    pub fn run_once(&mut self, max_wait: Duration) {
        let now = Instant::now();
        self.settle(now);
        self.turn(now + max_wait);
        self.settle(Instant::now());
    }

    /// Run until every stream has been destroyed (a program with a server
    /// stream runs until that is destroyed too) and every closed connection
    /// has finished sending what it was handed (or given up after
    /// [`CLOSE_LINGER`]).
    pub fn run(&mut self) {
        loop {
            self.settle(Instant::now());
            if self.host.engine.stream_count() == 0 && self.closing.is_empty() {
                return;
            }
            self.turn(Instant::now() + Duration::from_secs(3600));
        }
    }

    /// Wait for readiness, DNS answers or a timer (no later than
    /// `deadline`) and feed what happened to the engine.
    fn turn(&mut self, deadline: Instant) {
        let now = Instant::now();
        let mut wake = deadline;
        if let Some(t) = self.host.engine.poll_timeout() {
            wake = wake.min(t);
        }
        for c in self.closing.values() {
            if let Some(t) = c.closing {
                wake = wake.min(t);
            }
        }
        let wait = if self.ready.is_empty() && !self.busy {
            wake.saturating_duration_since(now)
        } else {
            Duration::ZERO
        };
        if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                // Nothing sensible to do but avoid a hot loop.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let now = Instant::now();
        self.host.engine.set_unix_time(unix_now());
        let fired: Vec<(Token, bool, bool)> = self
            .events
            .iter()
            .map(|ev| {
                (
                    ev.token(),
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable() || ev.is_write_closed() || ev.is_error(),
                )
            })
            .collect();
        for (tok, r, w) in fired {
            if tok == WAKER {
                self.drain_dns(now);
            } else {
                self.on_ready(now, tok, r, w);
            }
        }
        for t in std::mem::take(&mut self.ready) {
            self.on_ready(now, Token(t), true, false);
        }
        self.expire_closing(now);
        let now = Instant::now();
        if self.host.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.host.engine.handle_timeout(now);
        }
    }

    /// Carry out actions and dispatch events until neither is pending, or
    /// for a bounded number of rounds (a stream that always has more to send
    /// on a socket that always takes it must not starve reads and timers);
    /// in that case the next wait is skipped.
    fn settle(&mut self, now: Instant) {
        while let Some(a) = self.host.engine.poll_action() {
            self.act(now, a);
        }
        self.busy = true;
        for _ in 0..SETTLE_ROUNDS {
            self.host.dispatch(now);
            let mut any = false;
            while let Some(a) = self.host.engine.poll_action() {
                any = true;
                self.act(now, a);
            }
            if !any {
                self.busy = false;
                break;
            }
        }
    }

    fn token(&mut self, key: Key) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        self.tokens.insert(t, key);
        t
    }

    fn act(&mut self, now: Instant, a: Action) {
        match a {
            Action::Resolve { conn, host } => {
                self.drop_conn(conn);
                self.dns_queue.push_back((conn, host));
                self.start_dns();
            }
            Action::Connect { conn, addr } => {
                self.drop_conn(conn);
                match connect(&addr) {
                    Ok(mut sock) => {
                        let token = self.token(Key::Conn(conn));
                        let r = self.poll.registry().register(
                            sock.source(),
                            token,
                            Interest::READABLE | Interest::WRITABLE,
                        );
                        if let Err(e) = r {
                            self.tokens.remove(&token);
                            self.host
                                .engine
                                .handle_connect_failed(now, conn, &e.to_string());
                            return;
                        }
                        self.conns.insert(
                            conn,
                            Conn {
                                sock,
                                token,
                                connecting: true,
                                pending: Vec::new(),
                                off: 0,
                                closing: None,
                                shut: false,
                            },
                        );
                    }
                    Err(e) => self
                        .host
                        .engine
                        .handle_connect_failed(now, conn, &e.to_string()),
                }
            }
            Action::Transmit { conn, data } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if c.off > 0 && c.off * 2 >= c.pending.len() {
                        c.pending.drain(..c.off);
                        c.off = 0;
                    }
                    c.pending.extend_from_slice(&data);
                    if !c.connecting {
                        self.flush(now, conn);
                    }
                }
            }
            Action::Close { conn } => {
                self.dns_queue.retain(|(c, _)| *c != conn);
                if let Some(mut c) = self.conns.remove(&conn) {
                    if c.connecting {
                        let _ = self.poll.registry().deregister(c.sock.source());
                        self.tokens.remove(&c.token);
                    } else {
                        let tok = c.token;
                        c.closing = Some(now + CLOSE_LINGER);
                        self.closing.insert(tok, c);
                        self.service_closing(tok);
                    }
                }
            }
            Action::Listen { listener, bind } => {
                self.stop_listening(listener);
                match listen(&bind) {
                    Ok((mut sock, addr)) => {
                        let token = self.token(Key::Listener(listener));
                        let src: &mut dyn mio::event::Source = match &mut sock {
                            Lsock::Tcp(l) => l,
                            Lsock::Unix(l, _) => l,
                        };
                        if let Err(e) =
                            self.poll
                                .registry()
                                .register(src, token, Interest::READABLE)
                        {
                            self.tokens.remove(&token);
                            self.host
                                .engine
                                .handle_listen_failed(now, listener, &e.to_string());
                            return;
                        }
                        self.listeners.insert(listener, Listener { sock, token });
                        self.host.engine.handle_listening(now, listener, &addr);
                    }
                    Err(e) => self
                        .host
                        .engine
                        .handle_listen_failed(now, listener, &e.to_string()),
                }
            }
            Action::StopListening { listener } => self.stop_listening(listener),
            Action::PauseReading { conn, paused } => {
                // Reads check `wants_read`; readiness is edge-triggered, so
                // a resumed connection is read without waiting for an event.
                if !paused {
                    if let Some(c) = self.conns.get(&conn) {
                        self.ready.insert(c.token.0);
                    }
                }
            }
            Action::SetSocketOptions {
                conn,
                tos,
                priority,
            } => {
                if let Some(c) = self.conns.get(&conn) {
                    c.sock.set_options(tos, priority);
                }
            }
        }
    }

    fn drop_conn(&mut self, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&conn) {
            let _ = self.poll.registry().deregister(c.sock.source());
            self.tokens.remove(&c.token);
        }
    }

    fn stop_listening(&mut self, listener: ListenerId) {
        if let Some(mut l) = self.listeners.remove(&listener) {
            self.tokens.remove(&l.token);
            match &mut l.sock {
                Lsock::Tcp(s) => {
                    let _ = self.poll.registry().deregister(s);
                }
                Lsock::Unix(s, path) => {
                    let _ = self.poll.registry().deregister(s);
                    if let Some(p) = path {
                        let _ = std::fs::remove_file(p);
                    }
                }
            }
        }
    }

    fn start_dns(&mut self) {
        while self.dns_running < MAX_DNS_THREADS {
            let Some((conn, host)) = self.dns_queue.pop_front() else {
                return;
            };
            let tx = self.dns_tx.clone();
            let waker = self.waker.clone();
            let spawned = std::thread::Builder::new()
                .name("ss-mio-dns".into())
                .spawn(move || {
                    let ips: Vec<IpAddr> = (host.as_str(), 0)
                        .to_socket_addrs()
                        .map(|it| it.map(|a| a.ip()).collect())
                        .unwrap_or_default();
                    let _ = tx.send((conn, ips));
                    let _ = waker.wake();
                });
            match spawned {
                Ok(_) => self.dns_running += 1,
                Err(_) => {
                    // Report the failure through the channel like a lookup would.
                    let _ = self.dns_tx.send((conn, vec![]));
                    let _ = self.waker.wake();
                    self.dns_running += 1;
                }
            }
        }
    }

    fn drain_dns(&mut self, now: Instant) {
        while let Ok((conn, ips)) = self.dns_rx.try_recv() {
            self.dns_running = self.dns_running.saturating_sub(1);
            self.host.engine.handle_resolved(now, conn, &ips);
        }
        self.start_dns();
    }

    fn on_ready(&mut self, now: Instant, tok: Token, readable: bool, writable: bool) {
        if self.closing.contains_key(&tok) {
            self.service_closing(tok);
            return;
        }
        match self.tokens.get(&tok).copied() {
            Some(Key::Conn(conn)) => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if c.connecting {
                    match c.sock.connect_done() {
                        Ok(false) => return,
                        Ok(true) => {
                            c.connecting = false;
                            self.host.engine.handle_connected(now, conn);
                            // Actions may have been queued; the next settle
                            // runs them. Fall through to read and write.
                        }
                        Err(e) => {
                            self.drop_conn(conn);
                            self.host
                                .engine
                                .handle_connect_failed(now, conn, &e.to_string());
                            return;
                        }
                    }
                }
                if writable {
                    self.flush(now, conn);
                }
                if readable {
                    self.read(now, conn, tok);
                }
            }
            Some(Key::Listener(l)) => self.accept(now, l, tok),
            None => {}
        }
    }

    /// Move a closing connection along: flush, shut the write side, then
    /// discard what the peer sends until it closes (which ends it).
    fn service_closing(&mut self, tok: Token) {
        let Some(c) = self.closing.get_mut(&tok) else {
            return;
        };
        let done = 'done: {
            while c.off < c.pending.len() {
                match c.sock.write(&c.pending[c.off..]) {
                    Ok(0) => break 'done true,
                    Ok(n) => c.off += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 'done false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break 'done true,
                }
            }
            if !c.shut {
                c.shut = true;
                c.pending = Vec::new();
                c.off = 0;
                c.sock.shutdown_write();
            }
            for _ in 0..BURST {
                match c.sock.read(&mut self.buf) {
                    Ok(0) => break 'done true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 'done false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break 'done true,
                }
            }
            self.ready.insert(tok.0);
            false
        };
        if done {
            self.finish_closing(tok);
        }
    }

    fn finish_closing(&mut self, tok: Token) {
        if let Some(mut c) = self.closing.remove(&tok) {
            let _ = self.poll.registry().deregister(c.sock.source());
            self.tokens.remove(&tok);
        }
    }

    fn expire_closing(&mut self, now: Instant) {
        let expired: Vec<Token> = self
            .closing
            .iter()
            .filter(|(_, c)| c.closing.is_some_and(|t| t <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            self.finish_closing(t);
        }
    }

    /// Write pending bytes until done or the socket would block.
    fn flush(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.connecting || c.off >= c.pending.len() {
                if c.off >= c.pending.len() {
                    c.pending.clear();
                    c.off = 0;
                }
                return;
            }
            match c.sock.write(&c.pending[c.off..]) {
                Ok(0) => {
                    self.lost(now, conn);
                    return;
                }
                Ok(n) => {
                    c.off += n;
                    self.host.engine.handle_sent(now, conn, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.lost(now, conn);
                    return;
                }
            }
        }
    }

    fn read(&mut self, now: Instant, conn: ConnId, tok: Token) {
        for _ in 0..BURST {
            if !self.host.engine.wants_read(conn) {
                return;
            }
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match c.sock.read(&mut self.buf) {
                Ok(0) => {
                    self.lost(now, conn);
                    return;
                }
                Ok(n) => self.host.engine.handle_data(now, conn, &self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.lost(now, conn);
                    return;
                }
            }
        }
        // More may be waiting: come back after serving others.
        self.ready.insert(tok.0);
    }

    /// The peer closed or the socket failed: tell the engine, once.
    fn lost(&mut self, now: Instant, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.drop_conn(conn);
            self.host.engine.handle_closed(now, conn);
        }
    }

    fn accept(&mut self, now: Instant, listener: ListenerId, tok: Token) {
        for _ in 0..BURST {
            let Some(l) = self.listeners.get(&listener) else {
                return;
            };
            let res = match &l.sock {
                Lsock::Tcp(s) => s.accept().map(|(s, _)| Sock::Tcp(s)),
                Lsock::Unix(s, _) => s.accept().map(|(s, _)| Sock::Unix(s)),
            };
            match res {
                Ok(mut sock) => {
                    let Some(conn) = self.host.engine.handle_accepted(now, listener) else {
                        continue; // dropped: closed at once
                    };
                    if let Sock::Unix(u) = &sock {
                        use std::os::fd::AsRawFd;
                        if let Some(p) = peer_cred(u.as_raw_fd()) {
                            self.host.engine.set_peer(conn, p);
                        }
                    }
                    let token = self.token(Key::Conn(conn));
                    if self
                        .poll
                        .registry()
                        .register(
                            sock.source(),
                            token,
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        self.tokens.remove(&token);
                        self.host.engine.handle_closed(now, conn);
                        continue;
                    }
                    self.conns.insert(
                        conn,
                        Conn {
                            sock,
                            token,
                            connecting: false,
                            pending: Vec::new(),
                            off: 0,
                            closing: None,
                            shut: false,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                // Out of descriptors and the like: try again next turn.
                Err(_) => break,
            }
        }
        self.ready.insert(tok.0);
    }
}

impl Drop for Runtime {
    /// Remove the socket files of Unix listeners still open.
    fn drop(&mut self) {
        for l in self.listeners.values() {
            if let Lsock::Unix(_, Some(p)) = &l.sock {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Start a non-blocking connection.
fn connect(addr: &SockAddr) -> io::Result<Sock> {
    match addr {
        SockAddr::Ip(a) => TcpStream::connect(*a).map(Sock::Tcp),
        SockAddr::Unix(p) => UnixStream::connect(p).map(Sock::Unix),
        SockAddr::UnixAbstract(name) => {
            Ok(Sock::Unix(UnixStream::from_std(abstract_stream(name)?)))
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &str) -> io::Result<std::os::unix::net::SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

/// A non-blocking connection to an abstract Unix name. Unix connects
/// finish at once or fail (a full backlog is `WouldBlock`, a failure here), so
/// the loop never waits on one.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_stream(name: &str) -> io::Result<std::os::unix::net::UnixStream> {
    use socket2::{Domain, SockAddr as Addr, Socket, Type};
    let mut path = Vec::with_capacity(name.len() + 1);
    path.push(0u8);
    path.extend_from_slice(name.as_bytes());
    let addr = Addr::unix(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&path))?;
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.connect(&addr)?;
    Ok(sock.into())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_stream(_name: &str) -> io::Result<std::os::unix::net::UnixStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract Unix sockets need Linux",
    ))
}

/// Bind a listener; returns it and its address as the engine reports it.
fn listen(bind: &SockAddr) -> io::Result<(Lsock, String)> {
    match bind {
        SockAddr::Ip(a) => {
            let l = TcpListener::bind(*a)?;
            let addr = l.local_addr()?.to_string();
            Ok((Lsock::Tcp(l), addr))
        }
        SockAddr::Unix(p) => {
            remove_stale_socket(p);
            let l = UnixListener::bind(p)?;
            Ok((Lsock::Unix(l, Some(p.clone())), bind.to_string()))
        }
        SockAddr::UnixAbstract(name) => {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                let l = std::os::unix::net::UnixListener::bind_addr(&abstract_addr(name)?)?;
                l.set_nonblocking(true)?;
                Ok((
                    Lsock::Unix(UnixListener::from_std(l), None),
                    bind.to_string(),
                ))
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            {
                let _ = name;
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "abstract Unix sockets need Linux",
                ))
            }
        }
    }
}

/// Remove a socket file nobody listens on any more (left by a dead server).
fn remove_stale_socket(path: &str) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_socket() && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// Seconds since the Unix epoch, for the engine's TLS certificate checks.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who is on the other end of a Unix socket, as the kernel says
/// (`SO_PEERCRED`); `None` where that is not available.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer_cred(fd: std::os::fd::RawFd) -> Option<ss_core::engine::Peer> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of a `ucred`, the size
    // given; the kernel writes at most that much.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    let pid = u32::try_from(cred.pid).ok().filter(|p| *p != 0);
    (r == 0).then_some(())?;
    Some(ss_core::engine::Peer {
        pid: pid?,
        uid: cred.uid,
    })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn peer_cred(_fd: std::os::fd::RawFd) -> Option<ss_core::engine::Peer> {
    None
}
