//! The socket side shared by [`crate::Runtime`] and [`crate::Client`]: carries
//! out the engine's [`Action`]s with tokio tasks and feeds what they report back.
//!
//! Each connection has one reader task (16 KiB reads) and one writer task
//! (an unbounded queue whose size the engine bounds with `tx_high_water`);
//! each listener has one accept task. All of them report [`IoEvent`]s on one
//! bounded channel that the owning loop drains, so a slow loop slows readers
//! down (TCP back-pressure) instead of growing memory.

use socket2::SockRef;
use ss_core::engine::{Peer, SockAddr};
use ss_core::{Action, ConnId, Engine, ListenerId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;

/// Size of each read.
pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// Capacity of the channel from socket tasks to the loop.
pub(crate) const IO_EVENT_CAPACITY: usize = 1024;

/// A connected socket of either family.
pub(crate) enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// What a socket task reports to the loop.
pub(crate) enum IoEvent {
    Resolved(ConnId, Vec<IpAddr>),
    Connected(ConnId, Sock),
    ConnectFailed(ConnId, String),
    Data(ConnId, Vec<u8>),
    Sent(ConnId, usize),
    Closed(ConnId),
    Accepted(ListenerId, Sock),
}

enum WriteCmd {
    Data(Vec<u8>),
    Options { tos: u8, priority: u8 },
    Close,
}

enum ConnState {
    /// Resolving or connecting: the task doing it.
    Pending(AbortHandle),
    /// Open: the writer's queue, the reader task and its pause gate.
    Open {
        writer: mpsc::UnboundedSender<WriteCmd>,
        reader: AbortHandle,
        gate: Arc<Gate>,
    },
}

/// Lets the loop pause one connection's reader (back-pressure from a slow
/// application to that socket only), and keeps the bytes one reader has
/// queued for the loop bounded ([`MAX_QUEUED_READ`]), so a pause takes
/// effect within that many bytes.
#[derive(Default)]
pub(crate) struct Gate {
    paused: AtomicBool,
    /// Bytes read and queued for the loop, not yet handed to the engine.
    queued: AtomicUsize,
    resumed: Notify,
}

/// Bytes of queued writes gathered into one socket write.
const WRITE_GATHER: usize = 64 * 1024;

/// Most bytes one connection's reader queues for the loop before waiting.
const MAX_QUEUED_READ: usize = 4 * READ_CHUNK;

impl Gate {
    /// Wait while paused or while the loop is behind on this connection.
    async fn pass(&self) {
        loop {
            let resumed = self.resumed.notified();
            if !self.paused.load(Ordering::Acquire)
                && self.queued.load(Ordering::Acquire) < MAX_QUEUED_READ
            {
                return;
            }
            resumed.await;
        }
    }

    /// The loop handed `n` queued bytes to the engine.
    fn consumed(&self, n: usize) {
        let before = self.queued.fetch_sub(n, Ordering::AcqRel);
        if before >= MAX_QUEUED_READ && before - n < MAX_QUEUED_READ {
            self.resumed.notify_waiters();
        }
    }
}

struct ListenerState {
    task: AbortHandle,
    unlink: Option<PathBuf>,
}

/// Sockets, listeners and lookups in flight for one engine.
pub(crate) struct Io {
    tx: mpsc::Sender<IoEvent>,
    rx: mpsc::Receiver<IoEvent>,
    conns: HashMap<ConnId, ConnState>,
    listeners: HashMap<ListenerId, ListenerState>,
}

impl Io {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel(IO_EVENT_CAPACITY);
        Io {
            tx,
            rx,
            conns: HashMap::new(),
            listeners: HashMap::new(),
        }
    }

    /// Carry out every pending action; returns how many there were.
    /// Must run inside a tokio runtime.
    pub(crate) fn apply_actions(&mut self, engine: &mut Engine, now: Instant) -> usize {
        let mut n = 0;
        while let Some(a) = engine.poll_action() {
            n += 1;
            self.apply(engine, now, a);
        }
        n
    }

    fn apply(&mut self, engine: &mut Engine, now: Instant, action: Action) {
        match action {
            Action::Resolve { conn, host } => {
                let tx = self.tx.clone();
                let task = tokio::spawn(async move {
                    let mut ips: Vec<IpAddr> =
                        match tokio::net::lookup_host((host.as_str(), 0)).await {
                            Ok(it) => it.map(|a| a.ip()).collect(),
                            Err(_) => vec![],
                        };
                    let mut seen = Vec::with_capacity(ips.len());
                    ips.retain(|ip| {
                        let new = !seen.contains(ip);
                        seen.push(*ip);
                        new
                    });
                    let _ = tx.send(IoEvent::Resolved(conn, ips)).await;
                });
                self.conns
                    .insert(conn, ConnState::Pending(task.abort_handle()));
            }
            Action::Connect { conn, addr } => {
                let tx = self.tx.clone();
                let task = tokio::spawn(async move {
                    let ev = match connect(&addr).await {
                        Ok(s) => IoEvent::Connected(conn, s),
                        Err(e) => IoEvent::ConnectFailed(conn, format!("{addr}: {e}")),
                    };
                    let _ = tx.send(ev).await;
                });
                self.conns
                    .insert(conn, ConnState::Pending(task.abort_handle()));
            }
            Action::Transmit { conn, data } => {
                if let Some(ConnState::Open { writer, .. }) = self.conns.get(&conn) {
                    let _ = writer.send(WriteCmd::Data(data));
                }
            }
            Action::Close { conn } => match self.conns.remove(&conn) {
                Some(ConnState::Pending(task)) => task.abort(),
                Some(ConnState::Open { writer, reader, .. }) => {
                    // The writer flushes what it was handed, then shuts down.
                    let _ = writer.send(WriteCmd::Close);
                    reader.abort();
                }
                None => {}
            },
            Action::SetSocketOptions {
                conn,
                tos,
                priority,
            } => {
                if let Some(ConnState::Open { writer, .. }) = self.conns.get(&conn) {
                    let _ = writer.send(WriteCmd::Options { tos, priority });
                }
            }
            Action::Listen { listener, bind } => match self.listen(listener, &bind) {
                Ok(addr) => engine.handle_listening(now, listener, &addr),
                Err(e) => engine.handle_listen_failed(now, listener, &format!("{bind}: {e}")),
            },
            Action::StopListening { listener } => self.stop_listening(listener),
            Action::PauseReading { conn, paused } => self.pause_reading(conn, paused),
        }
    }

    fn listen(&mut self, listener: ListenerId, bind: &SockAddr) -> std::io::Result<String> {
        let tx = self.tx.clone();
        let (task, addr, unlink) = match bind {
            SockAddr::Ip(a) => {
                let l = std::net::TcpListener::bind(a)?;
                l.set_nonblocking(true)?;
                let addr = l.local_addr()?.to_string();
                let l = tokio::net::TcpListener::from_std(l)?;
                let task = tokio::spawn(async move {
                    loop {
                        match l.accept().await {
                            Ok((s, _)) => {
                                let _ = s.set_nodelay(true);
                                if tx
                                    .send(IoEvent::Accepted(listener, Sock::Tcp(s)))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            // Out of descriptors and the like: back off a little.
                            Err(_) => {
                                tokio::time::sleep(std::time::Duration::from_millis(10)).await
                            }
                        }
                    }
                });
                (task, addr, None)
            }
            SockAddr::Unix(_) | SockAddr::UnixAbstract(_) => {
                let (l, unlink) = match bind {
                    SockAddr::Unix(p) => {
                        // A stale socket file from an earlier run would make bind fail.
                        if std::fs::symlink_metadata(p).is_ok_and(|m| {
                            use std::os::unix::fs::FileTypeExt;
                            m.file_type().is_socket()
                        }) {
                            let _ = std::fs::remove_file(p);
                        }
                        (
                            std::os::unix::net::UnixListener::bind(p)?,
                            Some(PathBuf::from(p)),
                        )
                    }
                    SockAddr::UnixAbstract(name) => (bind_abstract(name)?, None),
                    SockAddr::Ip(_) => unreachable!(),
                };
                l.set_nonblocking(true)?;
                let l = tokio::net::UnixListener::from_std(l)?;
                let task = tokio::spawn(async move {
                    loop {
                        match l.accept().await {
                            Ok((s, _)) => {
                                if tx
                                    .send(IoEvent::Accepted(listener, Sock::Unix(s)))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            Err(_) => {
                                tokio::time::sleep(std::time::Duration::from_millis(10)).await
                            }
                        }
                    }
                });
                (task, bind.to_string(), unlink)
            }
        };
        self.listeners.insert(
            listener,
            ListenerState {
                task: task.abort_handle(),
                unlink,
            },
        );
        Ok(addr)
    }

    fn stop_listening(&mut self, listener: ListenerId) {
        if let Some(l) = self.listeners.remove(&listener) {
            l.task.abort();
            if let Some(p) = l.unlink {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// Feed one socket report to the engine.
    pub(crate) fn handle(&mut self, engine: &mut Engine, now: Instant, ev: IoEvent) {
        engine.set_unix_time(unix_now());
        match ev {
            IoEvent::Resolved(conn, ips) => {
                if matches!(self.conns.get(&conn), Some(ConnState::Pending(_))) {
                    self.conns.remove(&conn);
                    engine.handle_resolved(now, conn, &ips);
                }
            }
            IoEvent::Connected(conn, sock) => {
                // A connection the engine already gave up on is just dropped.
                if matches!(self.conns.get(&conn), Some(ConnState::Pending(_))) {
                    self.open(conn, sock);
                    engine.handle_connected(now, conn);
                }
            }
            IoEvent::ConnectFailed(conn, reason) => {
                if matches!(self.conns.get(&conn), Some(ConnState::Pending(_))) {
                    self.conns.remove(&conn);
                    engine.handle_connect_failed(now, conn, &reason);
                }
            }
            IoEvent::Data(conn, data) => {
                if let Some(ConnState::Open { gate, .. }) = self.conns.get(&conn) {
                    gate.consumed(data.len());
                    engine.handle_data(now, conn, &data);
                }
            }
            IoEvent::Sent(conn, n) => {
                if matches!(self.conns.get(&conn), Some(ConnState::Open { .. })) {
                    engine.handle_sent(now, conn, n);
                }
            }
            IoEvent::Closed(conn) => {
                if let Some(ConnState::Open { reader, .. }) = self.conns.remove(&conn) {
                    reader.abort();
                    engine.handle_closed(now, conn);
                }
            }
            IoEvent::Accepted(listener, sock) => {
                if !self.listeners.contains_key(&listener) {
                    return;
                }
                if let Some(conn) = engine.handle_accepted(now, listener) {
                    if let Sock::Unix(s) = &sock {
                        // The OS's word on who connected (SO_PEERCRED).
                        if let Ok(c) = s.peer_cred() {
                            let pid = c.pid().and_then(|p| u32::try_from(p).ok());
                            if let Some(pid) = pid {
                                engine.set_peer(conn, Peer { pid, uid: c.uid() });
                            }
                        }
                    }
                    self.open(conn, sock);
                }
                // None: the socket is dropped, which closes it.
            }
        }
    }

    fn open(&mut self, conn: ConnId, sock: Sock) {
        let (wtx, wrx) = mpsc::unbounded_channel();
        let gate = Arc::new(Gate::default());
        let reader = match sock {
            Sock::Tcp(s) => {
                let (r, w) = s.into_split();
                tokio::spawn(writer(conn, w, wrx, self.tx.clone()));
                tokio::spawn(reader(conn, r, self.tx.clone(), gate.clone()))
            }
            Sock::Unix(s) => {
                let (r, w) = s.into_split();
                tokio::spawn(writer(conn, w, wrx, self.tx.clone()));
                tokio::spawn(reader(conn, r, self.tx.clone(), gate.clone()))
            }
        };
        self.conns.insert(
            conn,
            ConnState::Open {
                writer: wtx,
                reader: reader.abort_handle(),
                gate,
            },
        );
    }

    /// Stop (`true`) or restart reading `conn`; data already read still arrives.
    pub(crate) fn pause_reading(&mut self, conn: ConnId, paused: bool) {
        if let Some(ConnState::Open { gate, .. }) = self.conns.get(&conn) {
            gate.paused.store(paused, Ordering::Release);
            if !paused {
                gate.resumed.notify_waiters();
            }
        }
    }

    /// The next socket report, or `None` once `until` has passed.
    pub(crate) async fn next(&mut self, until: Option<Instant>) -> Option<IoEvent> {
        match until {
            Some(t) => tokio::select! {
                ev = self.rx.recv() => ev,
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(t)) => None,
            },
            // The loop holds a sender, so this never ends on its own.
            None => self.rx.recv().await,
        }
    }

    /// A report that is already waiting, if any.
    pub(crate) fn try_next(&mut self) -> Option<IoEvent> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        for (_, c) in self.conns.drain() {
            match c {
                ConnState::Pending(t) => t.abort(),
                ConnState::Open { reader, .. } => reader.abort(),
            }
        }
        let ids: Vec<ListenerId> = self.listeners.keys().copied().collect();
        for l in ids {
            self.stop_listening(l);
        }
    }
}

fn abstract_addr(name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        #[cfg(target_os = "android")]
        use std::os::android::net::SocketAddrExt;
        #[cfg(target_os = "linux")]
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = name;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "abstract Unix sockets need Linux",
        ))
    }
}

fn bind_abstract(name: &str) -> std::io::Result<std::os::unix::net::UnixListener> {
    std::os::unix::net::UnixListener::bind_addr(&abstract_addr(name)?)
}

async fn connect(addr: &SockAddr) -> std::io::Result<Sock> {
    match addr {
        SockAddr::Ip(a) => {
            let s = TcpStream::connect(a).await?;
            let _ = s.set_nodelay(true);
            Ok(Sock::Tcp(s))
        }
        SockAddr::Unix(p) => Ok(Sock::Unix(UnixStream::connect(p).await?)),
        SockAddr::UnixAbstract(name) => {
            // Connecting a Unix socket does not wait on the network.
            let s = std::os::unix::net::UnixStream::connect_addr(&abstract_addr(name)?)?;
            s.set_nonblocking(true)?;
            Ok(Sock::Unix(UnixStream::from_std(s)?))
        }
    }
}

async fn reader<R: AsyncRead + Unpin>(
    conn: ConnId,
    mut r: R,
    tx: mpsc::Sender<IoEvent>,
    gate: Arc<Gate>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        gate.pass().await;
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(IoEvent::Closed(conn)).await;
                return;
            }
            Ok(n) => {
                gate.queued.fetch_add(n, Ordering::AcqRel);
                if tx
                    .send(IoEvent::Data(conn, buf[..n].to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Socket options on a write half (IP ToS on TCP; nothing on Unix sockets).
trait SetOptions {
    fn set_options(&self, tos: u8, priority: u8);
}

impl SetOptions for tokio::net::tcp::OwnedWriteHalf {
    fn set_options(&self, tos: u8, priority: u8) {
        let s: &TcpStream = self.as_ref();
        let sock = SockRef::from(s);
        if tos != 0 {
            let _ = match s.local_addr() {
                Ok(a) if a.is_ipv6() => sock.set_tclass_v6(tos as u32),
                _ => sock.set_tos_v4(tos as u32),
            };
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if priority != 0 {
            let _ = sock.set_priority(priority as u32);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = priority;
    }
}

impl SetOptions for tokio::net::unix::OwnedWriteHalf {
    fn set_options(&self, _tos: u8, _priority: u8) {}
}

async fn writer<W: AsyncWrite + Unpin + SetOptions>(
    conn: ConnId,
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<WriteCmd>,
    tx: mpsc::Sender<IoEvent>,
) {
    // A command taken while gathering writes, to handle next.
    let mut next: Option<WriteCmd> = None;
    loop {
        let cmd = match next.take() {
            Some(c) => c,
            None => match rx.recv().await {
                Some(c) => c,
                None => break,
            },
        };
        match cmd {
            WriteCmd::Data(mut data) => {
                // Gather what is already queued into one write (fewer
                // syscalls for many small messages), keeping the order.
                while data.len() < WRITE_GATHER {
                    match rx.try_recv() {
                        Ok(WriteCmd::Data(more)) => data.extend_from_slice(&more),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut off = 0;
                while off < data.len() {
                    match w.write(&data[off..]).await {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(IoEvent::Closed(conn)).await;
                            return;
                        }
                        Ok(n) => {
                            off += n;
                            if tx.send(IoEvent::Sent(conn, n)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            WriteCmd::Options { tos, priority } => w.set_options(tos, priority),
            WriteCmd::Close => break,
        }
    }
    let _ = w.shutdown().await;
}

/// Seconds since the Unix epoch, for the engine's TLS certificate checks.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
