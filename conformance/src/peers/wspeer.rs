//! The Python `websockets` peer (`conformance/peers/ws_peer.py`): an echo
//! server with close / fragmented / big-message endpoints, and a scripted
//! client. Its docstring lists the endpoints and the client's steps.
//!
//! It runs on the system `/usr/bin/python3`, the interpreter Debian's
//! `python3-websockets` belongs to (`scripts/install.sh` installs it).

use super::{PeerProcess, TestPki};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// The interpreter the peer runs on.
pub const WS_PYTHON: &str = "/usr/bin/python3";

/// Byte `i` of the server's `/big/<n>` messages and the client's `big`
/// steps: `i % 251`.
pub fn ws_big_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// Options of [`WsPeer::server`].
#[derive(Default)]
pub struct WsServerOpts<'a> {
    /// Serve TLS (wss) with this PKI's server leaf.
    pub tls: Option<&'a TestPki>,
    /// Subprotocols the server accepts (it selects one the client offers).
    pub subprotocols: Vec<String>,
}

/// A running `ws_peer.py server` on 127.0.0.1:[`WsPeer::port`]. Killed on drop.
pub struct WsPeer {
    proc: PeerProcess,
    port: u16,
    tls: bool,
}

/// The path of the peer script in the source tree.
pub fn ws_peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/ws_peer.py")
}

fn python() -> PathBuf {
    let p = super::require(WS_PYTHON);
    let ok = Command::new(&p)
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "peer `python3-websockets` not installed for {WS_PYTHON}: run scripts/install.sh"
    );
    p
}

impl WsPeer {
    /// Starts the server and waits for its "ready" line. Panics with its
    /// logs if it fails (a busy port is retried).
    pub fn server(opts: WsServerOpts<'_>) -> WsPeer {
        let python = python();
        let mut last_err = String::new();
        for _ in 0..3 {
            let (dir, path) = PeerProcess::prepare("wspeer");
            let port = super::free_port();
            let mut cmd = Command::new(&python);
            cmd.arg("-u")
                .arg(ws_peer_script())
                .arg("server")
                .arg("--port")
                .arg(port.to_string());
            if let Some(pki) = opts.tls {
                let [_ca, cert, key, ..] = pki.write_files(&path);
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
            if !opts.subprotocols.is_empty() {
                cmd.arg("--subprotocols").arg(opts.subprotocols.join(","));
            }
            let mut proc = PeerProcess::spawn("wspeer", dir, cmd);
            let stdout = path.join("stdout.log");
            match proc.wait_ready("\"ready\" line", |_| {
                fs::read_to_string(&stdout).is_ok_and(|s| s.lines().any(|l| l == "ready"))
            }) {
                Ok(()) => {
                    return WsPeer {
                        proc,
                        port,
                        tls: opts.tls.is_some(),
                    }
                }
                Err(e) if e.to_ascii_lowercase().contains("in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("wspeer could not bind a port after 3 tries:\n{last_err}");
    }

    /// The port it listens on, 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://127.0.0.1:port{path}` (`wss://` with TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// The JSON event lines the server printed so far (one per line).
    pub fn events(&self) -> Vec<String> {
        fs::read_to_string(self.proc.dir().join("stdout.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(str::to_string)
            .collect()
    }

    /// Its stdout/stderr, for messages.
    pub fn logs(&self) -> String {
        self.proc.logs()
    }
}

/// Options of [`ws_client`].
#[derive(Default)]
pub struct WsClientOpts {
    /// Offer this subprotocol.
    pub subprotocol: Option<String>,
    /// CA file (PEM) to verify a wss server with.
    pub cafile: Option<PathBuf>,
    /// Close code the client closes with at the end (1000 if `None`).
    pub close_code: Option<u16>,
    /// The steps, as the JSON array the script takes (see its docstring).
    pub steps: String,
}

/// What a [`ws_client`] run printed.
#[derive(Debug)]
pub struct WsClientRun {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stdout: one JSON line per step, then the `closed` line.
    pub stdout: String,
    /// Its stderr (tracebacks).
    pub stderr: String,
}

impl WsClientRun {
    /// The JSON lines of stdout.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().filter(|l| l.starts_with('{')).collect()
    }
}

/// Runs `ws_peer.py client` against `url` to its end (the script bounds
/// itself to 20 s).
pub fn ws_client(url: &str, opts: &WsClientOpts) -> WsClientRun {
    let mut cmd = Command::new(python());
    cmd.arg("-u")
        .arg(ws_peer_script())
        .arg("client")
        .arg("--url")
        .arg(url)
        .arg("--steps")
        .arg("-")
        .arg("--close-code")
        .arg(opts.close_code.unwrap_or(1000).to_string());
    if let Some(p) = &opts.subprotocol {
        cmd.arg("--subprotocol").arg(p);
    }
    if let Some(f) = &opts.cafile {
        cmd.arg("--cafile").arg(f);
    }
    // The steps go through stdin: a large message would not fit in argv.
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run ws_peer.py client");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(opts.steps.as_bytes())
            .expect("steps to ws_peer.py client");
    }
    let out = child
        .wait_with_output()
        .expect("wait for ws_peer.py client");
    WsClientRun {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
