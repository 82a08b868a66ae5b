//! Real third-party peers on loopback for the engine's protocol tests.
//!
//! Each peer (nginx, mosquitto, the Python HTTP/1.1 edge-case server, ...) runs in its
//! own temporary directory with a free loopback port, is killed when its
//! guard is dropped, and keeps its logs so a failing test can show them.
//! Peers are installed by `scripts/install.sh`; a missing peer is always a
//! test failure (never a silent skip), so CI cannot pass without them.

mod mosquitto;
mod nginx;
mod our_server;
mod pki;
mod pyedge;
mod wspeer;

pub use mosquitto::{Mosquitto, MosquittoOpts, MosquittoSub};
pub use nginx::{
    big_bin_byte, big_bin_content, Nginx, NginxOpts, BIG_BIN_LEN, ECHO_MODULE, INDEX_HTML,
};
pub use our_server::{tls_server_policy, OurServer};
pub use pki::{CaCert, LeafCert, TestPki};
pub use pyedge::{edge_body, edge_byte, PyEdge};
pub use wspeer::{
    ws_big_byte, ws_client, ws_peer_script, WsClientOpts, WsClientRun, WsPeer, WsServerOpts,
    WS_PYTHON,
};

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a peer may take to start listening before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds the executable `cmd` on `PATH` (and in `/usr/sbin`, `/sbin`, where
/// Debian puts nginx). Panics with an install hint when it is missing: tests
/// relying on a peer must fail, in CI or not, rather than skip.
pub fn require(cmd: &str) -> PathBuf {
    find_executable(cmd)
        .unwrap_or_else(|| panic!("peer `{cmd}` not installed: run scripts/install.sh"))
}

fn find_executable(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(cmd))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A loopback TCP port that was free a moment ago (bound to port 0, then
/// released). Racy in principle; peers retry their start on a bind failure.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 for a free port")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` now.
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A spawned peer process in its own temp dir: stdout and stderr go to
/// `stdout.log` / `stderr.log` there. The process is killed on drop; if the
/// thread is panicking the dir is kept and its logs printed, for diagnosis.
pub struct PeerProcess {
    name: String,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
}

impl PeerProcess {
    /// A fresh temp dir for a peer called `name`, before it is spawned, so
    /// config files can be written into it first.
    pub fn prepare(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ss-peer-{name}-"))
            .tempdir()
            .expect("create peer temp dir");
        let path = dir.path().to_path_buf();
        (dir, path)
    }

    /// Spawns `cmd` (its stdout/stderr redirected into `dir`) as peer `name`.
    pub fn spawn(name: &str, dir: tempfile::TempDir, mut cmd: Command) -> PeerProcess {
        let out = fs::File::create(dir.path().join("stdout.log")).expect("stdout.log");
        let err = fs::File::create(dir.path().join("stderr.log")).expect("stderr.log");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("peer `{name}`: spawn {cmd:?}: {e}"));
        PeerProcess {
            name: name.to_string(),
            child: Some(child),
            dir: Some(dir),
        }
    }

    /// The peer's temp dir (config, logs, docroot, key files).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("peer dir").path()
    }

    /// Every `*.log` file of the peer's dir, concatenated with headings: what
    /// a failure message shows.
    pub fn logs(&self) -> String {
        let mut names: Vec<PathBuf> = fs::read_dir(self.dir())
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "log"));
        names.sort();
        let mut s = String::new();
        for p in names {
            let text = fs::read(&p).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            // Only the tail: access logs of big tests can be long.
            let tail: String = if text.len() > 8000 {
                let mut cut = text.len() - 8000;
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                format!("...{}", &text[cut..])
            } else {
                text.into_owned()
            };
            s.push_str(&format!("--- {} ---\n{}\n", p.display(), tail));
        }
        s
    }

    /// The process exit status if it has already exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (bounded by [`START_TIMEOUT`]) until `ready` returns true.
    /// Returns `Err(logs)` if the process exits first or time runs out.
    pub fn wait_ready(
        &mut self,
        what: &str,
        mut ready: impl FnMut(&Self) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready(self) {
                return Ok(());
            }
            if let Some(st) = self.exited() {
                return Err(format!(
                    "peer `{}` exited ({st}) before {what}\n{}",
                    self.name,
                    self.logs()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "peer `{}`: no {what} within {START_TIMEOUT:?}\n{}",
                    self.name,
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until 127.0.0.1:`port` accepts connections; see [`Self::wait_ready`].
    pub fn wait_port(&mut self, port: u16) -> Result<(), String> {
        self.wait_ready(&format!("listener on 127.0.0.1:{port}"), |_| {
            port_accepts(port)
        })
    }

    /// Asks the process to stop (SIGTERM, so it can save state) and waits
    /// for it, at most [`START_TIMEOUT`], killing it after that.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + START_TIMEOUT;
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts `cmd` again in the same dir after the previous process ended
    /// (its stdout/stderr appended to the same files).
    pub fn respawn(&mut self, mut cmd: Command) {
        self.kill();
        let open = |n: &str| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir().join(n))
                .expect("peer log")
        };
        cmd.stdin(Stdio::null())
            .stdout(open("stdout.log"))
            .stderr(open("stderr.log"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("peer `{}`: respawn {cmd:?}: {e}", self.name));
        self.child = Some(child);
    }

    /// Kills the process now and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let logs = self.logs();
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "peer `{}` dir kept at {} for diagnosis\n{logs}",
                    self.name,
                    kept.display()
                );
            }
        }
    }
}

/// One raw HTTP/1.1 exchange over plain TCP, for smoke tests and quick
/// checks: sends `request` verbatim and reads until the server closes (send
/// `Connection: close`). Bounded by a 10 s read timeout.
pub fn raw_exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).expect("send request");
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        // A reset after the response (e.g. a peer closing with unread input) still
        // leaves what was read.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("read from 127.0.0.1:{port}: {e} (got {} bytes)", out.len()),
    }
    out
}
