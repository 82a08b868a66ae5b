//! Our own server, for third-party clients to test: a server streamtype
//! with TLS on ss-tokio's `Runtime`, run on a thread of its own until the
//! guard is dropped.

use super::TestPki;
use base64::Engine as _;
use ss_core::{Engine, EngineConfig, Handler, Host, Policy};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long our server may take to start listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A policy with one TLS server streamtype `srv` on 127.0.0.1 (an ephemeral
/// port) speaking `protocol` ("h1" or "h2"; ALPN `h2, http/1.1` for "h2"),
/// with the leaf certificate of `pki` and the `metadata` JSON array given
/// (`[{"mime": "content-type:"}, {"path": ""}]`, say).
pub fn tls_server_policy(pki: &TestPki, protocol: &str, metadata: &str) -> String {
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    format!(
        r#"{{"certs": [{{"leaf": "{}"}}, {{"leaf_key": "{}"}}],
            "s": [{{"srv": {{"server": true, "endpoint": "127.0.0.1", "port": 0,
                   "protocol": "{protocol}", "tls": true, "server_cert": "leaf",
                   "server_key": "leaf_key", "metadata": {metadata}}}}}]}}"#,
        b64(&pki.server().der),
        b64(&pki.server().key_der)
    )
}

/// Our server running: the streamtype `srv` of a policy, created as a
/// server on ss-tokio's `Runtime` in its own thread; `make` builds the
/// handler of every accepted stream. Stopped (and joined) on drop.
pub struct OurServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl OurServer {
    /// Starts streamtype `srv` of `policy_json` and waits until it listens.
    pub fn start<F>(policy_json: String, make: F) -> OurServer
    where
        F: FnMut() -> Box<dyn Handler> + Send + 'static,
    {
        struct Quiet;
        impl Handler for Quiet {}
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut make = make;
            let policy = Policy::parse(&policy_json).expect("server policy");
            let engine = Engine::new(policy, EngineConfig::default());
            let mut rt = ss_tokio::Runtime::new(Host::new(engine));
            let now = rt.now();
            let id = rt
                .host()
                .create_server(now, "srv", Box::new(Quiet), Box::new(move |_| make()))
                .expect("create the server stream");
            rt.run_until(LISTEN_TIMEOUT, &mut |h| h.listening(id).is_some());
            let addr: std::net::SocketAddr = rt
                .host()
                .listening(id)
                .expect("server stream")
                .expect("listening")
                .parse()
                .expect("listening address");
            tx.send(addr.port()).expect("report the port");
            while !st.load(Ordering::Relaxed) {
                rt.run_until(Duration::from_millis(20), &mut |_| false);
            }
        });
        let port = rx.recv().expect("our server started (see the panic above)");
        OurServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic in the server thread fails the test (unless it is
            // failing already).
            if t.join().is_err() && !std::thread::panicking() {
                panic!("our server's thread panicked");
            }
        }
    }
}
