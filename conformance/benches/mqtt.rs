//! MQTT publish rate to mosquitto on loopback: ours beside rumqttc, in the
//! same run against the same broker.
//!
//! `cargo bench -p conformance --bench mqtt` (release; well under a minute
//! once built). Two publishers of 64-byte messages to one topic nobody
//! subscribes to:
//!
//! - `ss`: an `"protocol": "mqtt"` stream on `ss_tokio::Runtime` with a
//!   callback handler writing the next message on every `tx` (the engine
//!   asks again as soon as the session can take one: at QoS 1, while fewer
//!   than 32 are unacknowledged), counting QOS_ACK_REMOTE;
//! - `rumqttc`: an `AsyncClient` publishing from one task while the test
//!   polls its event loop (in-flight limit 32, as ours).
//!
//! Two loads: QoS 0 ([`QOS0_MSGS`] messages; done when the client has handed
//! the last PUBLISH to the socket: ours reports QOS_ACK_REMOTE at once,
//! rumqttc an outgoing Publish), and QoS 1 ([`QOS1_MSGS`] messages; done at
//! the last PUBACK). Each runs [`RUNS`] times, interleaved; the medians are
//! printed in messages/s with the ratio ours / rumqttc (higher is better).
//! Counts are checked; nothing asserts on timing. Figures: docs/benchmarks.md.

use conformance::peers::{Mosquitto, MosquittoOpts};
use ss_core::{Engine, EngineConfig, Flags, Handler, Host, Policy, SsRet, StreamCtx, StreamState};
use ss_tokio::Runtime;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// QoS 0 messages per run.
const QOS0_MSGS: usize = 100_000;
/// QoS 1 messages per run.
const QOS1_MSGS: usize = 20_000;
/// Payload size.
const SIZE: usize = 64;
/// Runs per publisher and load.
const RUNS: usize = 3;
/// Unacknowledged QoS 1 messages at most (the session's default limit; the
/// same for rumqttc).
const IN_FLIGHT: usize = 32;
/// Bound on one run: a hang fails the bench instead of blocking it.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Writes `n` messages, one per `tx`, counting acknowledgements.
struct Publisher {
    n: usize,
    sent: usize,
    acked: Rc<Cell<usize>>,
    payload: Vec<u8>,
}

impl Handler for Publisher {
    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        _budget: usize,
        flags: &mut Flags,
    ) -> SsRet {
        // A `tx` asked for from inside `tx` is granted before this write
        // lands, so it may find the session full: never hold more than the
        // session's in-flight limit (an ack asks for `tx` again).
        if self.sent >= self.n || self.sent - self.acked.get() >= IN_FLIGHT {
            return SsRet::TxDontSend;
        }
        buf.extend_from_slice(&self.payload);
        *flags = Flags::SOM | Flags::EOM;
        self.sent += 1;
        if self.sent < self.n {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }

    fn state(&mut self, ctx: &mut StreamCtx<'_>, state: StreamState, _ack: u32) -> SsRet {
        match state {
            StreamState::Connected => {
                let _ = ctx.request_tx();
            }
            StreamState::QosAckRemote => {
                self.acked.set(self.acked.get() + 1);
                if self.sent < self.n {
                    let _ = ctx.request_tx();
                }
            }
            StreamState::QosNackRemote => panic!("ours: a message was refused"),
            _ => {}
        }
        SsRet::Ok
    }
}

/// Our publish rate (messages/s) at `qos`.
fn ours(port: u16, qos: u8, n: usize) -> f64 {
    let json = format!(
        r#"{{"s": [{{"p": {{"endpoint": "127.0.0.1", "port": {port}, "protocol": "mqtt",
             "mqtt_topic": "bench/ss/{qos}", "mqtt_qos": {qos}}}}}]}}"#
    );
    let engine = Engine::new(Policy::parse(&json).unwrap(), EngineConfig::default());
    let mut rt = Runtime::new(Host::new(engine));
    let acked = Rc::new(Cell::new(0));
    let now = rt.now();
    let t0 = Instant::now();
    let id = rt
        .host()
        .create(
            now,
            "p",
            Box::new(Publisher {
                n,
                sent: 0,
                acked: acked.clone(),
                payload: vec![b'x'; SIZE],
            }),
        )
        .unwrap();
    rt.host().engine.client_connect(now, id).unwrap();
    let a = acked.clone();
    let done = rt.run_until(RUN_LIMIT, &mut |_| a.get() >= n);
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        done,
        "ours: {} of {n} acknowledged at QoS {qos}",
        acked.get()
    );
    assert_eq!(acked.get(), n);
    let now = rt.now();
    rt.host().engine.destroy(now, id).unwrap();
    rt.run_for(Duration::from_millis(20));
    n as f64 / secs
}

/// rumqttc's publish rate (messages/s) at `qos`.
fn rumqttc_rate(tokio_rt: &tokio::runtime::Runtime, port: u16, qos: u8, n: usize) -> f64 {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
    tokio_rt.block_on(async move {
        let id = format!("rumqttc-bench-{qos}-{}", std::process::id());
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_inflight(IN_FLIGHT as u16);
        let (client, mut el) = AsyncClient::new(opts, 64);
        let q = match qos {
            0 => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        };
        let t0 = Instant::now();
        let publisher = tokio::spawn(async move {
            let payload = vec![b'x'; SIZE];
            for _ in 0..n {
                client
                    .publish(format!("bench/rumqttc/{qos}"), q, false, payload.clone())
                    .await
                    .expect("rumqttc publish");
            }
            client
        });
        let mut count = 0;
        let end = tokio::time::Instant::now() + RUN_LIMIT;
        while count < n {
            let ev = tokio::time::timeout_at(end, el.poll())
                .await
                .expect("rumqttc run limit")
                .expect("rumqttc event loop");
            match (qos, ev) {
                (0, Event::Outgoing(Outgoing::Publish(_))) => count += 1,
                (1, Event::Incoming(Packet::PubAck(_))) => count += 1,
                _ => {}
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let client = publisher.await.expect("rumqttc publisher");
        let _ = client.disconnect().await;
        for _ in 0..4 {
            if tokio::time::timeout(Duration::from_millis(50), el.poll())
                .await
                .is_err()
            {
                break;
            }
        }
        n as f64 / secs
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let m = Mosquitto::start(MosquittoOpts::default());
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "MQTT publish rate to mosquitto on 127.0.0.1, {SIZE}-byte messages, median of {RUNS}:"
    );
    for (qos, n) in [(0u8, QOS0_MSGS), (1, QOS1_MSGS)] {
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..RUNS {
            a.push(ours(m.port(), qos, n));
            b.push(rumqttc_rate(&tokio_rt, m.port(), qos, n));
        }
        let (a, b) = (median(a), median(b));
        println!(
            "  QoS {qos} ({n} msgs): ss-tokio {a:>10.0} msg/s   rumqttc {b:>10.0} msg/s   ratio {:.2}",
            a / b
        );
    }
}
