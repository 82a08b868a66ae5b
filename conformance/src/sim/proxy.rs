//! The proxy scenario: the raw echo scenario's clients in proxy mode
//! (`EngineConfig::proxy`), each stream a link to a proxy daemon node
//! ([`ProxyServer`] over that node's engine, listening on TCP), whose onward
//! streams reach the echo server — all under the network's seeded faults,
//! on both the links and the onward connections.
//!
//! Checked once the network is quiet ([`check_proxy_echo`]), besides what
//! [`Sim`] checks itself (legal state sequences, event order, leaks): every
//! client stream is done or has given up; per connection epoch the client
//! sent a slice of its data, in order, and what came back is a prefix of it
//! (no byte lost, duplicated, reordered or carried over from an earlier
//! epoch); and an epoch the stream did not report failed was echoed whole.

use super::echo::{
    check_stream, echo_report, engine_config, retry, server_policy, EchoClient, EchoConfig,
    EchoReport,
};
use super::echo::{EchoServer, PORT, START};
use super::net::{App, AppCx, NodeId, Sim, Stack};
use ss_core::engine::SockAddr;
use ss_core::policy::{Policy, Protocol, StreamType};
use ss_core::proxy::server::{ProxyConfig, ProxyLog, ProxyServer};
use ss_core::{Engine, EngineConfig, Event, Host};
use std::any::Any;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The port the daemon's link listener uses.
pub const LINK_PORT: u16 = 7100;

/// The daemon node's application: a [`ProxyServer`] driving the node's engine.
pub struct DaemonApp {
    px: ProxyServer,
}

impl DaemonApp {
    /// A daemon with the default limits.
    pub fn new() -> Self {
        DaemonApp {
            px: ProxyServer::new(ProxyConfig::default()),
        }
    }

    /// Links open now.
    pub fn link_count(&self) -> usize {
        self.px.link_count()
    }
}

impl Default for DaemonApp {
    fn default() -> Self {
        Self::new()
    }
}

impl App for DaemonApp {
    fn on_event(&mut self, cx: &mut AppCx<'_>, ev: &Event) {
        let now = cx.now();
        self.px.handle_event(cx.engine(), now, ev);
        while let Some(r) = self.px.poll_log() {
            match r {
                ProxyLog::ListenFailed { reason } => {
                    cx.violation(format!("daemon could not listen: {reason}"))
                }
                // The clients speak the protocol correctly: a drop is a bug.
                ProxyLog::LinkDropped { link, reason } => {
                    cx.violation(format!("daemon dropped {link}: {reason}"))
                }
                ProxyLog::Note { link, text } => cx.note(format!("daemon {link}: {text}")),
                _ => {}
            }
        }
    }

    fn on_wake(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        if tag == START {
            let now = cx.now();
            if let Err(e) = self.px.start(cx.engine(), now) {
                cx.violation(format!("daemon: {e}"));
            }
        }
    }

    fn shutdown(&mut self, cx: &mut AppCx<'_>) {
        if let Some(s) = self.px.server_stream() {
            let now = cx.now();
            if let Err(e) = cx.engine().destroy(now, s) {
                cx.violation(format!("destroy the link listener: {e}"));
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The daemon's policy: the onward `echo` streamtype (the same name the
/// clients ask for) reaching the server, plus the link listener.
fn daemon_policy(cfg: &EchoConfig, server_ip: IpAddr, daemon_ip: IpAddr) -> Policy {
    let mut p = Policy {
        retry: vec![retry(cfg)],
        streamtypes: vec![StreamType {
            name: "echo".into(),
            endpoint: Some(server_ip.to_string()),
            port: PORT,
            protocol: Protocol::Raw,
            retry: Some("sim".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    ProxyServer::install(&mut p, &format!("{daemon_ip}:{LINK_PORT}"))
        .expect("the link streamtype installs");
    p
}

/// A client node's policy: only the streamtype's name and lifecycle keys
/// matter in proxy mode (the daemon's policy decides where it goes).
fn client_policy(cfg: &EchoConfig, nailed_up: bool, opportunistic: bool) -> Policy {
    Policy {
        retry: vec![retry(cfg)],
        streamtypes: vec![StreamType {
            name: "echo".into(),
            endpoint: Some("unused.in.proxy.mode".into()),
            port: PORT,
            protocol: Protocol::Raw,
            retry: Some("sim".into()),
            nailed_up,
            opportunistic,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The proxy scenario set up and ready to run.
pub struct ProxySim {
    /// The seed the run came from.
    pub seed: u64,
    /// The network.
    pub sim: Sim,
    /// The echo server node.
    pub server: NodeId,
    /// The daemon node.
    pub daemon: NodeId,
    /// The client nodes (an [`EchoClient`] each, on an engine in proxy mode).
    pub clients: Vec<NodeId>,
}

impl ProxySim {
    /// Build the scenario `cfg` describes (its clients' DNS and server
    /// restart settings apply to the echo server as in the echo scenario).
    pub fn new(cfg: &EchoConfig) -> Self {
        let mut sim = Sim::new(cfg.seed, cfg.faults.clone());
        let server_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let daemon_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let server = sim.add_node(
            "server",
            Stack::Host(Host::new(Engine::new(
                server_policy(cfg, server_ip),
                engine_config(cfg, 0),
            ))),
            Box::new(EchoServer::new(cfg)),
        );
        let daemon = sim.add_node(
            "daemon",
            Stack::Engine(Engine::new(
                daemon_policy(cfg, server_ip, daemon_ip),
                engine_config(cfg, 50),
            )),
            Box::new(DaemonApp::new()),
        );
        assert_eq!(sim.node_ip(server), server_ip);
        assert_eq!(sim.node_ip(daemon), daemon_ip);
        let link = SockAddr::Ip(SocketAddr::new(daemon_ip, LINK_PORT));
        let mut clients = vec![];
        for (i, spec) in cfg.clients.iter().enumerate() {
            let config = EngineConfig {
                proxy: Some(link.clone()),
                ..engine_config(cfg, 1 + i as u64)
            };
            let engine = Engine::new(
                client_policy(cfg, spec.nailed_up, spec.opportunistic),
                config,
            );
            let app = EchoClient::new(i, spec.clone(), cfg.seed);
            clients.push(sim.add_node(&format!("client{i}"), Stack::Engine(engine), Box::new(app)));
        }
        sim.schedule_wake(server, Duration::ZERO, START);
        sim.schedule_wake(daemon, Duration::ZERO, START);
        for (c, spec) in clients.iter().zip(&cfg.clients) {
            sim.schedule_wake(*c, spec.start_at, START);
        }
        ProxySim {
            seed: cfg.seed,
            sim,
            server,
            daemon,
            clients,
        }
    }

    /// Run until quiet, check, then destroy everything (clients, daemon,
    /// server, in that order), check nothing leaked, and report.
    pub fn finish(mut self) -> EchoReport {
        let sim = &mut self.sim;
        let _ = sim.run();
        let quiet_at = sim.elapsed();
        let mut violations = check_proxy_echo(sim, &self.clients);
        for c in &self.clients {
            sim.shutdown(*c);
        }
        let _ = sim.run();
        if let Some(d) = sim.app::<DaemonApp>(self.daemon) {
            if d.link_count() != 0 {
                violations.push(format!(
                    "the daemon still has {} links after every client stream was destroyed",
                    d.link_count()
                ));
            }
        }
        sim.shutdown(self.daemon);
        let _ = sim.run();
        sim.shutdown(self.server);
        let _ = sim.run();
        sim.check_no_leaks();
        echo_report(
            sim,
            self.seed,
            self.server,
            &self.clients,
            violations,
            quiet_at,
        )
    }
}

/// Run the proxy scenario `cfg` to the end.
pub fn run_proxy(cfg: &EchoConfig) -> EchoReport {
    ProxySim::new(cfg).finish()
}

/// The proxy scenario's end-to-end invariants (see the module docs).
pub fn check_proxy_echo(sim: &Sim, clients: &[NodeId]) -> Vec<String> {
    let mut v = vec![];
    for &c in clients {
        let Some(app) = sim.app::<EchoClient>(c) else {
            v.push(format!("{c}: no EchoClient"));
            continue;
        };
        for (k, st) in app.streams.iter().enumerate() {
            check_stream(c, k, st, &mut v);
        }
    }
    v
}
