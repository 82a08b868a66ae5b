//! mosquitto as a real MQTT 3.1.1 broker peer, plain and TLS, run from a temp
//! dir with its own config (no system config, persistence only if asked), plus helpers
//! driving `mosquitto_sub` as a second, independent MQTT client.

use super::{require, PeerProcess, TestPki};
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Options for [`Mosquitto::start`].
#[derive(Clone, Debug, Default)]
pub struct MosquittoOpts {
    /// Also listen with TLS (a [`TestPki`] leaf for `localhost` and
    /// `127.0.0.1`) on [`Mosquitto::tls_port`].
    pub tls: bool,
    /// On the TLS listener, require a client certificate from the PKI's CA.
    pub require_client_cert: bool,
    /// Keep sessions (subscriptions, queued QoS 1/2 messages) in a database
    /// in its dir, saved at shutdown, so they survive [`Mosquitto::restart`].
    pub persistence: bool,
}

/// A running mosquitto on 127.0.0.1: plain MQTT on [`Mosquitto::port`], TLS
/// on [`Mosquitto::tls_port`] if asked for. Anonymous clients allowed,
/// persistence only if asked, `$SYS` topics refreshed every second, everything logged to
/// `mosquitto.log` in its dir. Killed on drop.
pub struct Mosquitto {
    proc: PeerProcess,
    pki: TestPki,
    port: u16,
    tls_port: Option<u16>,
}

impl Mosquitto {
    /// Starts mosquitto with `opts`, waiting until its ports accept. Panics
    /// (with its logs) if it does not come up, or if it is not installed.
    pub fn start(opts: MosquittoOpts) -> Mosquitto {
        let bin = require("mosquitto");
        let pki = TestPki::new(&["localhost", "127.0.0.1"]);
        let mut last_err = String::new();
        // Free ports are racy: retry with fresh ones if a bind fails.
        for _ in 0..3 {
            let (dir, path) = PeerProcess::prepare("mosquitto");
            let port = super::free_port();
            let tls_port = opts.tls.then(super::free_port);
            write_config(&path, &pki, &opts, port, tls_port);
            let mut cmd = Command::new(&bin);
            cmd.arg("-c").arg(path.join("mosquitto.conf"));
            let mut proc = PeerProcess::spawn("mosquitto", dir, cmd);
            let up = proc
                .wait_port(port)
                .and_then(|_| tls_port.map_or(Ok(()), |p| proc.wait_port(p)));
            match up {
                Ok(()) => {
                    return Mosquitto {
                        proc,
                        pki,
                        port,
                        tls_port,
                    }
                }
                Err(e) if e.contains("in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("mosquitto could not bind its ports after 3 tries:\n{last_err}");
    }

    /// Plain MQTT port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// TLS port on 127.0.0.1. Panics if started without `tls`.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
            .expect("mosquitto started without a TLS listener")
    }

    /// Stops mosquitto (SIGTERM: with `persistence` it saves its sessions)
    /// and starts it again with the same config and ports, waiting until
    /// they accept. Connections to it are dropped meanwhile.
    pub fn restart(&mut self) {
        self.proc.terminate();
        let mut cmd = Command::new(require("mosquitto"));
        cmd.arg("-c").arg(self.dir().join("mosquitto.conf"));
        self.proc.respawn(cmd);
        let (port, tls_port) = (self.port, self.tls_port);
        let up = self
            .proc
            .wait_port(port)
            .and_then(|_| tls_port.map_or(Ok(()), |p| self.proc.wait_port(p)));
        if let Err(e) = up {
            panic!("mosquitto did not come back: {e}");
        }
    }

    /// Publishes one message with `mosquitto_pub` (plain port), returning
    /// once it has exited.
    pub fn publish(&self, topic: &str, payload: &str, qos: u8) {
        let st = Command::new(require("mosquitto_pub"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", topic, "-m", payload, "-q", &qos.to_string()])
            .stdin(Stdio::null())
            .status()
            .expect("run mosquitto_pub");
        assert!(st.success(), "mosquitto_pub failed\n{}", self.logs());
    }

    /// The PKI whose server leaf the TLS listener presents.
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// mosquitto's log (and stdout/stderr), for failure messages.
    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// The temp dir mosquitto runs in.
    pub fn dir(&self) -> &Path {
        self.proc.dir()
    }

    /// Starts `mosquitto_sub` on `topic` (plain port), exiting after `count`
    /// messages or `timeout`; returns once the broker has acknowledged its
    /// SUBSCRIBE, so anything published afterwards reaches it.
    pub fn subscriber(&self, topic: &str, count: usize, timeout: Duration) -> MosquittoSub {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "ss-sub-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let child = Command::new(require("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-i", &id, "-t", topic, "-v", "-q", "1"])
            .args(["-C", &count.to_string()])
            .args(["-W", &timeout.as_secs().max(1).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto_sub");
        let needle = format!("Sending SUBACK to {id}");
        let deadline = Instant::now() + super::START_TIMEOUT;
        while !self.log_text().contains(&needle) {
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub {id} did not subscribe to {topic}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        MosquittoSub { child: Some(child) }
    }

    /// The number of connected clients as the broker reports it in
    /// `$SYS/broker/clients/connected` (refreshed every second). The
    /// `mosquitto_sub` that asks is itself one of them.
    pub fn clients_connected(&self) -> Option<u64> {
        let out = Command::new(require("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", "$SYS/broker/clients/connected", "-C", "1", "-W", "3"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// The broker's log file alone (no headings), for polling.
    pub fn log_text(&self) -> String {
        fs::read(self.dir().join("mosquitto.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// A running `mosquitto_sub` from [`Mosquitto::subscriber`]; killed on drop.
pub struct MosquittoSub {
    child: Option<Child>,
}

impl MosquittoSub {
    /// Waits for it to exit (count reached or timed out) and returns the
    /// lines it printed, each `topic payload`.
    pub fn wait(mut self) -> Vec<String> {
        let Some(child) = self.child.take() else {
            return Vec::new();
        };
        let out = child.wait_with_output().expect("wait mosquitto_sub");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for MosquittoSub {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write_config(dir: &Path, pki: &TestPki, opts: &MosquittoOpts, port: u16, tls_port: Option<u16>) {
    let d = dir.display();
    let mut conf = format!(
        "# Generated by conformance::peers::Mosquitto.\n\
         # Stay root when started as root (else it drops to user `mosquitto`,\n\
         # which cannot read this dir); ignored when not root.\n\
         user root\n\
         sys_interval 1\n\
         allow_anonymous true\n\
         log_dest file {d}/mosquitto.log\n\
         log_type all\n\
         connection_messages true\n\
         log_timestamp true\n\
         listener {port} 127.0.0.1\n"
    );
    if opts.persistence {
        conf.push_str(&format!(
            "persistence true\npersistence_location {d}/\nautosave_interval 1\n"
        ));
    } else {
        conf.push_str("persistence false\n");
    }
    if let Some(tls_port) = tls_port {
        let [ca, cert, key, ..] = pki.write_files(dir);
        conf.push_str(&format!(
            "listener {tls_port} 127.0.0.1\n\
             certfile {}\n\
             keyfile {}\n\
             cafile {}\n\
             require_certificate {}\n",
            cert.display(),
            key.display(),
            ca.display(),
            opts.require_client_cert
        ));
    }
    fs::write(dir.join("mosquitto.conf"), conf).expect("write mosquitto.conf");
}
