//! Secure Streams adapter for [smol].
//!
//! [`Runtime`] owns a [`Host`] (engine plus stream handlers) and a
//! single-threaded [`smol::LocalExecutor`]. Each connection, listener and DNS
//! lookup is a small task; tasks report to the loop over one bounded channel
//! (so a fast peer is slowed down rather than buffered without limit) and the
//! loop sends each connection its bytes to write over that connection's own
//! channel, whose contents the engine's flow control bounds. Tasks only run
//! inside the runtime's run methods ([`Runtime::run_until`],
//! [`Runtime::run_until_async`] and the like). DNS uses
//! [`async_net::resolve`], which runs the lookup on the blocking thread pool.
//! Time is `std::time::Instant::now()`.
//!
//! A connection the engine closes is closed gracefully: its last bytes are
//! flushed, the write side is shut down, and what the peer still sends is
//! discarded until it closes too, all within [`CLOSE_LINGER`]; so the peer's
//! kernel has no reason to reset the connection and drop bytes it has not
//! yet delivered.

use async_channel::{bounded, unbounded, Receiver, Sender};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use smol::{Async, LocalExecutor, Task, Timer};
use ss_core::engine::SockAddr;
use ss_core::{Action, ConnId, Host, ListenerId};
use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of one read; each read is handed to the engine as one `handle_data`.
pub const READ_CHUNK: usize = 16 * 1024;
/// Rounds of dispatching events and carrying out actions per loop iteration.
const SETTLE_ROUNDS: usize = 64;
/// How long a closed connection may take to flush what it was handed and
/// see the peer close in turn; after that it is dropped regardless.
pub const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// Reports from tasks that may wait for the loop before tasks block.
const REPORT_QUEUE: usize = 64;

/// A connected stream socket, shared by a connection's reader and writer.
#[derive(Clone)]
enum Sock {
    Tcp(Arc<Async<TcpStream>>),
    Unix(Arc<Async<UnixStream>>),
}

impl Sock {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&**s).read(buf).await,
            Sock::Unix(s) => (&**s).read(buf).await,
        }
    }
    async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&**s).write(buf).await,
            Sock::Unix(s) => (&**s).write(buf).await,
        }
    }
    fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Sock::Tcp(s) => s.get_ref().shutdown(how),
            Sock::Unix(s) => s.get_ref().shutdown(how),
        };
    }
    fn set_options(&self, tos: u8, priority: u8) {
        let (sock, v6) = match self {
            Sock::Tcp(s) => (
                socket2::SockRef::from(s.get_ref()),
                Some(s.get_ref().local_addr().is_ok_and(|a| a.is_ipv6())),
            ),
            Sock::Unix(s) => (socket2::SockRef::from(s.get_ref()), None),
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

/// What the loop tells a connection task.
enum Cmd {
    Write(Vec<u8>),
    SetOptions(u8, u8),
    /// Flush what was written before, shut the write side, and discard
    /// reads until the peer closes.
    Close,
}

/// What tasks tell the loop; `tag` identifies the task, so reports from a
/// task the loop has since replaced are ignored.
enum Report {
    Resolved(ConnId, u64, Vec<IpAddr>),
    Connected(ConnId, u64),
    ConnectFailed(ConnId, u64, String),
    Data(ConnId, u64, Vec<u8>),
    Sent(ConnId, u64, usize),
    Closed(ConnId, u64),
    Accepted(ListenerId, u64, Sock),
    /// A connection the engine closed has finished closing.
    Finished,
}

/// The loop's side of one connection (or of its DNS lookup).
struct ConnTask {
    tag: u64,
    /// Commands for a connection task (none for a DNS lookup).
    cmds: Option<Sender<Cmd>>,
    /// Pause (`true`) or resume its reader.
    pause: Option<Sender<bool>>,
    /// The loop has told the engine this connection is open.
    open: bool,
    task: Task<()>,
}

enum Unlink {
    None,
    Path(String),
}

struct ListenTask {
    tag: u64,
    unlink: Unlink,
    _task: Task<()>,
}

/// The smol event loop around a [`Host`].
pub struct Runtime {
    host: Host,
    ex: Rc<LocalExecutor<'static>>,
    tx: Sender<Report>,
    rx: Receiver<Report>,
    conns: HashMap<ConnId, ConnTask>,
    /// Connections the engine closed, finishing by themselves until the
    /// deadline, when they are dropped.
    closing: Vec<(Instant, Task<()>)>,
    listeners: HashMap<ListenerId, ListenTask>,
    next_tag: u64,
    /// The last settle stopped with work left: do not wait in the next turn.
    busy: bool,
}

impl Runtime {
    /// A runtime carrying `host`.
    pub fn new(host: Host) -> Self {
        let (tx, rx) = bounded(REPORT_QUEUE);
        Runtime {
            host,
            ex: Rc::new(LocalExecutor::new()),
            tx,
            rx,
            conns: HashMap::new(),
            closing: Vec::new(),
            listeners: HashMap::new(),
            next_tag: 1,
            busy: false,
        }
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
    ///
    /// Blocks the calling thread (`smol::block_on`); from async code use
    /// [`Runtime::run_until_async`].
    pub fn run_until(
        &mut self,
        timeout: Duration,
        done: &mut dyn FnMut(&mut Host) -> bool,
    ) -> bool {
        smol::block_on(self.run_until_async(timeout, done))
    }

    /// As [`Runtime::run_until`], as a future: await it on this thread from
    /// any executor (the connection tasks run on the runtime's own
    /// [`LocalExecutor`], which this future drives).
    pub async fn run_until_async(
        &mut self,
        timeout: Duration,
        done: &mut dyn FnMut(&mut Host) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let ex = self.ex.clone();
        ex.run(async {
            loop {
                let now = Instant::now();
                self.settle(now);
                if done(&mut self.host) {
                    return true;
                }
                if now >= deadline {
                    return false;
                }
                self.turn(deadline).await;
            }
        })
        .await
    }

    /// One iteration: carry out pending actions, wait for the next report
    /// from a task or the next engine timer (at most `max_wait`), feed what
    /// happened to the engine, and dispatch the resulting events.
    pub fn run_once(&mut self, max_wait: Duration) {
        let ex = self.ex.clone();
        smol::block_on(ex.run(async {
            let now = Instant::now();
            self.settle(now);
            self.turn(now + max_wait).await;
            self.settle(Instant::now());
        }))
    }

    /// Run until every stream has been destroyed (a program with a server
    /// stream runs until that is destroyed too) and every closed connection
    /// has finished sending what it was handed (or given up after
    /// [`CLOSE_LINGER`]).
    pub fn run(&mut self) {
        let ex = self.ex.clone();
        smol::block_on(ex.run(async {
            loop {
                self.settle(Instant::now());
                if self.host.engine.stream_count() == 0 && self.closing.is_empty() {
                    return;
                }
                self.turn(Instant::now() + Duration::from_secs(3600)).await;
            }
        }))
    }

    /// Wait for a report or a timer (no later than `deadline`) and feed
    /// what happened to the engine.
    async fn turn(&mut self, deadline: Instant) {
        let mut wake = deadline;
        if let Some(t) = self.host.engine.poll_timeout() {
            wake = wake.min(t);
        }
        if let Some(t) = self.closing.iter().map(|(t, _)| *t).min() {
            wake = wake.min(t);
        }
        if self.busy {
            wake = Instant::now();
        }
        let rx = self.rx.clone();
        let first = future::or(async { rx.recv().await.ok() }, async {
            Timer::at(wake).await;
            None
        })
        .await;
        let now = Instant::now();
        self.host.engine.set_unix_time(unix_now());
        if let Some(r) = first {
            self.report(now, r);
            // Take what else is waiting, a bounded batch at a time.
            for _ in 0..REPORT_QUEUE {
                match self.rx.try_recv() {
                    Ok(r) => self.report(now, r),
                    Err(_) => break,
                }
            }
        }
        // Closing connections past their deadline are dropped (cancelled).
        self.closing
            .retain(|(t, task)| *t > now && !task.is_finished());
        let now = Instant::now();
        if self.host.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.host.engine.handle_timeout(now);
        }
        // Let tasks woken by this turn run before the next one.
        future::yield_now().await;
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

    fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    fn current(&self, conn: ConnId, tag: u64) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.tag == tag)
    }

    fn report(&mut self, now: Instant, r: Report) {
        match r {
            Report::Finished => {}
            Report::Resolved(conn, tag, ips) => {
                if self.current(conn, tag) {
                    self.conns.remove(&conn);
                    self.host.engine.handle_resolved(now, conn, &ips);
                }
            }
            Report::Connected(conn, tag) => {
                if let Some(c) = self.conns.get_mut(&conn).filter(|c| c.tag == tag) {
                    c.open = true;
                    self.host.engine.handle_connected(now, conn);
                }
            }
            Report::ConnectFailed(conn, tag, why) => {
                if self.current(conn, tag) {
                    self.conns.remove(&conn);
                    self.host.engine.handle_connect_failed(now, conn, &why);
                }
            }
            Report::Data(conn, tag, data) => {
                if self.current(conn, tag) {
                    self.host.engine.handle_data(now, conn, &data);
                }
            }
            Report::Sent(conn, tag, n) => {
                if self.current(conn, tag) {
                    self.host.engine.handle_sent(now, conn, n);
                }
            }
            Report::Closed(conn, tag) => {
                if self.current(conn, tag) {
                    self.conns.remove(&conn);
                    self.host.engine.handle_closed(now, conn);
                }
            }
            Report::Accepted(listener, tag, sock) => {
                let live = self.listeners.get(&listener).map(|l| l.tag);
                if live != Some(tag) {
                    sock.shutdown(Shutdown::Both);
                    return;
                }
                match self.host.engine.handle_accepted(now, listener) {
                    Some(conn) => {
                        if let Sock::Unix(u) = &sock {
                            use std::os::fd::AsRawFd;
                            if let Some(p) = peer_cred(u.as_raw_fd()) {
                                self.host.engine.set_peer(conn, p);
                            }
                        }
                        self.spawn_conn(conn, None, Some(sock))
                    }
                    None => sock.shutdown(Shutdown::Both),
                }
            }
        }
    }

    fn act(&mut self, now: Instant, a: Action) {
        match a {
            Action::Resolve { conn, host } => {
                let tag = self.tag();
                let tx = self.tx.clone();
                let task = self.ex.spawn(async move {
                    let ips: Vec<IpAddr> = async_net::resolve((host.as_str(), 0))
                        .await
                        .map(|v| v.into_iter().map(|a| a.ip()).collect())
                        .unwrap_or_default();
                    let _ = tx.send(Report::Resolved(conn, tag, ips)).await;
                });
                self.conns.insert(
                    conn,
                    ConnTask {
                        tag,
                        cmds: None,
                        pause: None,
                        open: false,
                        task,
                    },
                );
            }
            Action::Connect { conn, addr } => self.spawn_conn(conn, Some(addr), None),
            Action::Transmit { conn, data } => self.send(conn, Cmd::Write(data)),
            Action::PauseReading { conn, paused } => {
                if let Some(p) = self.conns.get(&conn).and_then(|c| c.pause.as_ref()) {
                    let _ = p.try_send(paused);
                }
            }
            Action::SetSocketOptions {
                conn,
                tos,
                priority,
            } => self.send(conn, Cmd::SetOptions(tos, priority)),
            Action::Close { conn } => {
                // A lookup or an attempt still under way is simply dropped
                // (cancelled); an open connection finishes by itself, bounded
                // by CLOSE_LINGER, and its later reports are ignored.
                if let Some(c) = self.conns.remove(&conn) {
                    if let (true, Some(cmds)) = (c.open, &c.cmds) {
                        let _ = cmds.try_send(Cmd::Close);
                        self.closing.push((now + CLOSE_LINGER, c.task));
                    }
                }
            }
            Action::Listen { listener, bind } => {
                self.listeners.remove(&listener);
                match listen(&bind) {
                    Ok((l, addr)) => {
                        let tag = self.tag();
                        let tx = self.tx.clone();
                        let unlink = match &bind {
                            SockAddr::Unix(p) => Unlink::Path(p.clone()),
                            _ => Unlink::None,
                        };
                        let task = self.ex.spawn(accept_loop(l, listener, tag, tx));
                        self.listeners.insert(
                            listener,
                            ListenTask {
                                tag,
                                unlink,
                                _task: task,
                            },
                        );
                        self.host.engine.handle_listening(now, listener, &addr);
                    }
                    Err(e) => self
                        .host
                        .engine
                        .handle_listen_failed(now, listener, &e.to_string()),
                }
            }
            Action::StopListening { listener } => {
                if let Some(l) = self.listeners.remove(&listener) {
                    if let Unlink::Path(p) = &l.unlink {
                        let _ = std::fs::remove_file(p);
                    }
                }
            }
        }
    }

    fn send(&mut self, conn: ConnId, cmd: Cmd) {
        if let Some(cmds) = self.conns.get(&conn).and_then(|c| c.cmds.as_ref()) {
            let _ = cmds.try_send(cmd);
        }
    }

    /// Start a connection task: connecting to `addr`, or already connected on `sock`.
    fn spawn_conn(&mut self, conn: ConnId, addr: Option<SockAddr>, sock: Option<Sock>) {
        let open = sock.is_some();
        let tag = self.tag();
        let tx = self.tx.clone();
        let (cmd_tx, cmd_rx) = unbounded();
        let (pause_tx, pause_rx) = unbounded();
        let task = self.ex.spawn(async move {
            let sock = match (sock, addr) {
                (Some(s), _) => s,
                (None, Some(addr)) => match connect(&addr).await {
                    Ok(s) => {
                        if tx.send(Report::Connected(conn, tag)).await.is_err() {
                            return;
                        }
                        s
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Report::ConnectFailed(conn, tag, e.to_string()))
                            .await;
                        return;
                    }
                },
                (None, None) => return,
            };
            run_conn(sock, conn, tag, tx, cmd_rx, pause_rx).await;
        });
        self.conns.insert(
            conn,
            ConnTask {
                tag,
                cmds: Some(cmd_tx),
                pause: Some(pause_tx),
                open,
                task,
            },
        );
    }
}

/// Move bytes for one connection until it closes either way. Once the loop
/// asks it to close (`Cmd::Close`), it reports nothing more and ends when the
/// peer closes; the loop drops it at its linger deadline otherwise.
async fn run_conn(
    sock: Sock,
    conn: ConnId,
    tag: u64,
    tx: Sender<Report>,
    cmds: Receiver<Cmd>,
    pause: Receiver<bool>,
) {
    let closing = Cell::new(false);
    let reader = async {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut paused = false;
        loop {
            // A pause that arrives during a read applies after it (the
            // engine holds that read's bytes).
            while let Ok(p) = pause.try_recv() {
                paused = p;
            }
            while paused {
                match pause.recv().await {
                    Ok(p) => paused = p,
                    Err(_) => return,
                }
            }
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    if !closing.get() {
                        let _ = tx.send(Report::Closed(conn, tag)).await;
                    }
                    return;
                }
                Ok(_) if closing.get() => {}
                Ok(n) => {
                    if tx
                        .send(Report::Data(conn, tag, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async {
        while let Ok(cmd) = cmds.recv().await {
            match cmd {
                Cmd::Write(data) => {
                    let mut off = 0;
                    while off < data.len() {
                        match sock.write(&data[off..]).await {
                            Ok(0) | Err(_) => {
                                if !closing.get() {
                                    let _ = tx.send(Report::Closed(conn, tag)).await;
                                }
                                return;
                            }
                            Ok(n) => {
                                off += n;
                                if !closing.get() {
                                    let _ = tx.send(Report::Sent(conn, tag, n)).await;
                                }
                            }
                        }
                    }
                }
                Cmd::SetOptions(tos, prio) => sock.set_options(tos, prio),
                Cmd::Close => {
                    closing.set(true);
                    sock.shutdown(Shutdown::Write);
                    // The reader ends the connection when the peer closes.
                    future::pending::<()>().await;
                }
            }
        }
        // The loop dropped the connection without Close: just end.
    };
    future::or(reader, writer).await;
    sock.shutdown(Shutdown::Both);
    if closing.get() {
        // Wake the loop so it forgets the task now rather than at the deadline.
        let _ = tx.try_send(Report::Finished);
    }
}

/// Accept connections and hand them to the loop.
async fn accept_loop(l: Lsock, listener: ListenerId, tag: u64, tx: Sender<Report>) {
    loop {
        let sock = match &l {
            Lsock::Tcp(l) => l.accept().await.map(|(s, _)| Sock::Tcp(Arc::new(s))),
            Lsock::Unix(l) => l.accept().await.map(|(s, _)| Sock::Unix(Arc::new(s))),
        };
        match sock {
            Ok(s) => {
                if tx.send(Report::Accepted(listener, tag, s)).await.is_err() {
                    return;
                }
            }
            // Out of descriptors and the like: back off briefly.
            Err(_) => {
                Timer::after(Duration::from_millis(20)).await;
            }
        }
    }
}

impl Drop for Runtime {
    /// Remove the socket files of Unix listeners still open.
    fn drop(&mut self) {
        for l in self.listeners.values() {
            if let Unlink::Path(p) = &l.unlink {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Start a connection (TCP connects complete asynchronously).
async fn connect(addr: &SockAddr) -> io::Result<Sock> {
    match addr {
        SockAddr::Ip(a) => Ok(Sock::Tcp(Arc::new(Async::<TcpStream>::connect(*a).await?))),
        SockAddr::Unix(p) => Ok(Sock::Unix(Arc::new(Async::<UnixStream>::connect(p).await?))),
        SockAddr::UnixAbstract(name) => {
            let s = abstract_stream(name)?;
            Ok(Sock::Unix(Arc::new(Async::new(s)?)))
        }
    }
}

enum Lsock {
    Tcp(Async<std::net::TcpListener>),
    Unix(Async<std::os::unix::net::UnixListener>),
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
fn abstract_stream(name: &str) -> io::Result<UnixStream> {
    use socket2::{Domain, SockAddr as Addr, Socket, Type};
    use std::os::unix::ffi::OsStrExt;
    let mut path = Vec::with_capacity(name.len() + 1);
    path.push(0u8);
    path.extend_from_slice(name.as_bytes());
    let addr = Addr::unix(std::ffi::OsStr::from_bytes(&path))?;
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.connect(&addr)?;
    Ok(sock.into())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_stream(_name: &str) -> io::Result<UnixStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract Unix sockets need Linux",
    ))
}

/// Bind a listener; returns it and its address as the engine reports it.
fn listen(bind: &SockAddr) -> io::Result<(Lsock, String)> {
    match bind {
        SockAddr::Ip(a) => {
            let l = Async::<std::net::TcpListener>::bind(*a)?;
            let addr = l.get_ref().local_addr()?.to_string();
            Ok((Lsock::Tcp(l), addr))
        }
        SockAddr::Unix(p) => {
            remove_stale_socket(p);
            let l = Async::<std::os::unix::net::UnixListener>::bind(p)?;
            Ok((Lsock::Unix(l), bind.to_string()))
        }
        SockAddr::UnixAbstract(name) => {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                let l = std::os::unix::net::UnixListener::bind_addr(&abstract_addr(name)?)?;
                Ok((Lsock::Unix(Async::new(l)?), bind.to_string()))
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
    if meta.file_type().is_socket() && UnixStream::connect(path).is_err() {
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
