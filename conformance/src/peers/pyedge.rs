//! The Python HTTP/1.1 edge-case server (`conformance/peers/h1_edge_server.py`):
//! chunked, read-to-close, redirects, cookies, echo, multipart, malformed
//! responses... things nginx will not readily do. Its docstring lists the
//! endpoints.

use super::{require, PeerProcess, TestPki};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Byte `i` of every generated edge-server body (`/len`, `/close`,
/// `/chunked` across chunks): `i % 251`.
pub fn edge_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The expected generated body of `len` bytes (see [`edge_byte`]).
pub fn edge_body(len: usize) -> Vec<u8> {
    (0..len).map(edge_byte).collect()
}

/// A running `h1_edge_server.py` on 127.0.0.1:[`PyEdge::port`], plain or
/// TLS. Killed on drop.
pub struct PyEdge {
    proc: PeerProcess,
    port: u16,
    tls: bool,
}

impl PyEdge {
    /// Path of the server script in the source tree.
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/h1_edge_server.py")
    }

    /// Starts the server, with TLS using `tls`'s server leaf if given, and
    /// waits for its "ready" line. Panics with its logs if it fails.
    pub fn start(tls: Option<&TestPki>) -> PyEdge {
        Self::start_with(tls, false)
    }

    /// Starts a TLS server that requires a client certificate signed by
    /// `pki`'s CA (mutual TLS); `GET /peer-cert` returns the client's CN.
    pub fn start_mtls(pki: &TestPki) -> PyEdge {
        Self::start_with(Some(pki), true)
    }

    fn start_with(tls: Option<&TestPki>, mtls: bool) -> PyEdge {
        let python = require("python3");
        let mut last_err = String::new();
        for _ in 0..3 {
            let (dir, path) = PeerProcess::prepare("pyedge");
            let port = super::free_port();
            let mut cmd = Command::new(&python);
            cmd.arg("-u")
                .arg(Self::script())
                .arg("--port")
                .arg(port.to_string());
            if let Some(pki) = tls {
                let [ca, cert, key, ..] = pki.write_files(&path);
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
                if mtls {
                    cmd.arg("--client-ca").arg(ca);
                }
            }
            let mut proc = PeerProcess::spawn("pyedge", dir, cmd);
            let stdout = path.join("stdout.log");
            match proc.wait_ready("\"ready\" line", |_| {
                fs::read_to_string(&stdout).is_ok_and(|s| s.lines().any(|l| l == "ready"))
            }) {
                Ok(()) => {
                    return PyEdge {
                        proc,
                        port,
                        tls: tls.is_some(),
                    }
                }
                Err(e) if e.contains("Address already in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("pyedge could not bind a port after 3 tries:\n{last_err}");
    }

    /// The port it listens on, 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Its stdout/stderr (request log, errors), for messages.
    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// The temp dir it runs in (key files, logs).
    pub fn dir(&self) -> &Path {
        self.proc.dir()
    }
}
