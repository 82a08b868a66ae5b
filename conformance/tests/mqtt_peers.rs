//! MQTT streams through the ss-tokio async API against a real mosquitto on
//! loopback: publish/subscribe between our own streams at QoS 0/1/2, the will
//! on an abrupt drop, retained messages, keep-alive, reconnect (and a
//! persistent session's queued message) across a broker restart, TLS with a
//! policy trust store, and many streams muxed on one connection.
//!
//! Every wait is bounded ([`WAIT`]); nothing asserts on timing.

use conformance::peers::{Mosquitto, MosquittoOpts};
use ss_core::engine::SystemBlob;
use ss_core::{Engine, EngineConfig, Flags, Policy, StreamState};
use ss_tokio::{Client, SsStream};
use std::time::Duration;
use StreamState::*;

/// Upper bound for any one wait.
const WAIT: Duration = Duration::from_secs(10);

fn config() -> EngineConfig {
    EngineConfig {
        seed: 11,
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// A policy whose streamtypes (`name`, extra keys) all go to mosquitto on
/// `port`; with `ca_b64`, over TLS trusting that CA.
fn policy(port: u16, ca_b64: Option<&str>, types: &[(&str, &str)]) -> Policy {
    let (certs, tls) = match ca_b64 {
        Some(ca) => (
            format!(
                r#""certs": [{{"test_ca": "{ca}"}}],
                   "trust_stores": [{{"name": "ts", "stack": ["test_ca"]}}],"#
            ),
            r#""tls": true, "tls_trust_store": "ts","#,
        ),
        None => (String::new(), ""),
    };
    let s: Vec<String> = types
        .iter()
        .map(|(name, extra)| {
            format!(
                r#"{{"{name}": {{"endpoint": "127.0.0.1", "port": {port}, {tls}
                    "protocol": "mqtt", "retry": "r", "nailed_up": true {extra}}}}}"#
            )
        })
        .collect();
    let json = format!(
        r#"{{ {certs}
          "retry": [{{"r": {{"backoff": [100, 300], "conceal": 100, "jitterpc": 0}}}}],
          "s": [{}]}}"#,
        s.join(",")
    );
    Policy::parse(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// Collect states until one of `until`; panics after [`WAIT`].
async fn wait_state(s: &mut SsStream, until: &[StreamState]) -> Vec<StreamState> {
    let mut seen = vec![];
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(end, s.next_state()).await {
            Ok(Some(st)) => {
                seen.push(st);
                if until.contains(&st) {
                    return seen;
                }
            }
            Ok(None) => panic!("stream gone; states {seen:?}"),
            Err(_) => panic!("no {until:?} within {WAIT:?}; states {seen:?}"),
        }
    }
}

/// The next whole message (SOM..EOM); panics after [`WAIT`].
async fn recv_msg(s: &mut SsStream) -> Vec<u8> {
    let mut msg = vec![];
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(end, s.recv()).await {
            Ok(Some((d, f))) => {
                if f.contains(Flags::SOM) {
                    msg.clear();
                }
                msg.extend_from_slice(&d);
                if f.contains(Flags::EOM) {
                    return msg;
                }
            }
            Ok(None) => panic!("stream gone"),
            Err(_) => panic!("no message within {WAIT:?}; partial {} bytes", msg.len()),
        }
    }
}

/// No message arrives within `d`.
async fn no_msg(s: &mut SsStream, d: Duration) {
    if let Ok(Some((m, _))) = tokio::time::timeout(d, s.recv()).await {
        panic!("unexpected message {:?}", String::from_utf8_lossy(&m));
    }
}

fn started() -> Mosquitto {
    Mosquitto::start(MosquittoOpts::default())
}

/// How many connections from our client id the broker log shows.
fn connections_from(m: &Mosquitto, id: &str) -> usize {
    m.log_text().matches(&format!("as {id} (")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_subscribe_between_our_streams_at_every_qos() {
    let m = started();
    let p = policy(
        m.port(),
        None,
        &[
            (
                "sub",
                r#","mqtt_subscribe": "ss/pq/#", "mqtt_qos": 2, "mqtt_topic": "x""#,
            ),
            ("q0", r#","mqtt_topic": "ss/pq/0", "mqtt_qos": 0"#),
            ("q1", r#","mqtt_topic": "ss/pq/1", "mqtt_qos": 1"#),
            ("q2", r#","mqtt_topic": "ss/pq/2", "mqtt_qos": 2"#),
        ],
    );
    let c = Client::start(p, config());
    let mut sub = c.create("sub").await.unwrap();
    let st = wait_state(&mut sub, &[Connected]).await;
    assert_eq!(st.first(), Some(&Creating), "{st:?}");
    for (st, payload) in [
        ("q0", &b"zero \x00\xff"[..]),
        ("q1", &b"one"[..]),
        ("q2", &[7u8; 3000][..]),
    ] {
        let mut s = c.create(st).await.unwrap();
        wait_state(&mut s, &[Connected]).await;
        s.send(payload.to_vec()).await.unwrap();
        wait_state(&mut s, &[QosAckRemote]).await;
        assert_eq!(recv_msg(&mut sub).await, payload, "{st}");
    }
}

#[test]
fn the_will_is_published_when_our_connection_drops_abruptly() {
    let m = started();
    let watcher = m.subscriber("ss/will/#", 1, WAIT);
    let p = policy(
        m.port(),
        None,
        &[(
            "dev",
            r#","mqtt_topic": "ss/x", "mqtt_will_topic": "ss/will/dev",
               "mqtt_will_message": "dev is gone", "mqtt_keep_alive": 30"#,
        )],
    );
    // The client lives on its own runtime; dropping that runtime drops the
    // socket without a DISCONNECT, as a crash would.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let mut e = Engine::new(p, config());
        e.set_system_blob(SystemBlob::MqttClientId, b"ss-will-dev")
            .unwrap();
        let c = Client::start_with(e);
        let mut s = c.create("dev").await.unwrap();
        wait_state(&mut s, &[Connected]).await;
        s
    });
    drop(rt);
    drop(stream);
    assert_eq!(watcher.wait(), ["ss/will/dev dev is gone"]);
    let log = m.log_text();
    assert!(
        log.contains("Client ss-will-dev closed its connection"),
        "{log}"
    );
    assert!(
        !log.contains("Received DISCONNECT from ss-will-dev"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_destroy_sends_disconnect_and_no_will() {
    let m = started();
    let p = policy(
        m.port(),
        None,
        &[(
            "dev",
            r#","mqtt_topic": "ss/x", "mqtt_will_topic": "ss/will2/dev",
               "mqtt_will_message": "gone""#,
        )],
    );
    let watcher =
        tokio::task::block_in_place(|| m.subscriber("ss/will2/#", 1, Duration::from_secs(1)));
    let c = Client::start(p, config());
    let mut s = c.create("dev").await.unwrap();
    wait_state(&mut s, &[Connected]).await;
    s.destroy().await.unwrap();
    let end = std::time::Instant::now() + WAIT;
    while !m.log_text().contains("Received DISCONNECT") {
        assert!(std::time::Instant::now() < end, "{}", m.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The subscriber times out with nothing.
    let got = tokio::task::block_in_place(|| watcher.wait());
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_reaches_a_later_subscriber() {
    let m = started();
    let p = policy(
        m.port(),
        None,
        &[
            (
                "ret",
                r#","mqtt_topic": "ss/ret/a", "mqtt_qos": 1, "mqtt_retain": true"#,
            ),
            ("late", r#","mqtt_subscribe": "ss/ret/+", "mqtt_qos": 1"#),
        ],
    );
    let c = Client::start(p, config());
    let mut r = c.create("ret").await.unwrap();
    wait_state(&mut r, &[Connected]).await;
    r.send(b"kept".to_vec()).await.unwrap();
    wait_state(&mut r, &[QosAckRemote]).await;
    let mut late = c.create("late").await.unwrap();
    wait_state(&mut late, &[Connected]).await;
    assert_eq!(recv_msg(&mut late).await, b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_holds_an_idle_connection() {
    let m = started();
    let p = policy(
        m.port(),
        None,
        &[("idle", r#","mqtt_topic": "ss/idle", "mqtt_keep_alive": 1"#)],
    );
    let mut e = Engine::new(p, config());
    e.set_system_blob(SystemBlob::MqttClientId, b"ss-keepalive")
        .unwrap();
    let c = Client::start_with(e);
    let mut s = c.create("idle").await.unwrap();
    wait_state(&mut s, &[Connected]).await;
    // Idle for 2.5 keep-alive periods: the broker would drop us after 1.5
    // without PINGREQs.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    if let Ok(Some(st)) = tokio::time::timeout(Duration::ZERO, s.next_state()).await {
        panic!("state {st:?} while idle\n{}", m.logs());
    }
    let log = m.log_text();
    assert!(
        log.matches("Received PINGREQ from ss-keepalive").count() >= 2,
        "{log}"
    );
    assert_eq!(connections_from(&m, "ss-keepalive"), 1);
    // Still usable.
    s.send(b"alive".to_vec()).await.unwrap();
    wait_state(&mut s, &[QosAckRemote]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_reconnects_and_resumes_the_persistent_session() {
    let mut m = Mosquitto::start(MosquittoOpts {
        persistence: true,
        ..Default::default()
    });
    let p = policy(
        m.port(),
        None,
        &[(
            "dur",
            r#","mqtt_subscribe": "ss/dur/#", "mqtt_qos": 1, "mqtt_topic": "ss/dur/self",
               "mqtt_clean_start": false"#,
        )],
    );
    let mut e = Engine::new(p, config());
    e.set_system_blob(SystemBlob::MqttClientId, b"ss-durable")
        .unwrap();
    let c = Client::start_with(e);
    let mut s = c.create("dur").await.unwrap();
    wait_state(&mut s, &[Connected]).await;
    s.send(b"before".to_vec()).await.unwrap();
    assert_eq!(recv_msg(&mut s).await, b"before");
    tokio::task::block_in_place(|| m.restart());
    // The stream saw the drop and is back on a new connection.
    let states = wait_state(&mut s, &[Connected]).await;
    assert!(states.contains(&Disconnected), "{states:?}");
    assert!(states.iter().all(|s| *s != Destroying));
    assert_eq!(connections_from(&m, "ss-durable"), 2, "{}", m.logs());
    // The broker kept the session across its restart.
    assert!(
        m.log_text()
            .contains("Sending CONNACK to ss-durable (1, 0)"),
        "{}",
        m.logs()
    );
    s.send(b"after".to_vec()).await.unwrap();
    // The resumed session may redeliver "before" (QoS 1 is at least once:
    // the broker may not have saved our PUBACK); nothing else comes first.
    loop {
        let m = recv_msg(&mut s).await;
        if m == b"after" {
            break;
        }
        assert_eq!(m, b"before");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_with_the_policy_trust_store() {
    let m = Mosquitto::start(MosquittoOpts {
        tls: true,
        ..Default::default()
    });
    let p = policy(
        m.tls_port(),
        Some(&m.pki().ca_b64()),
        &[(
            "sec",
            r#","mqtt_subscribe": "ss/tls/#", "mqtt_qos": 1, "mqtt_topic": "ss/tls/x""#,
        )],
    );
    let watcher = tokio::task::block_in_place(|| m.subscriber("ss/tls/x", 1, WAIT));
    let c = Client::start(p, config());
    let mut s = c.create("sec").await.unwrap();
    wait_state(&mut s, &[Connected]).await;
    s.send(b"secret".to_vec()).await.unwrap();
    wait_state(&mut s, &[QosAckRemote]).await;
    assert_eq!(recv_msg(&mut s).await, b"secret");
    let got = tokio::task::block_in_place(|| watcher.wait());
    assert_eq!(got, ["ss/tls/x secret"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_one_connection() {
    let m = started();
    let p = policy(
        m.port(),
        None,
        &[
            (
                "sensor",
                r#","mqtt_topic": "ss/many/sensor", "mqtt_subscribe": "ss/many/cmd", "mqtt_qos": 1"#,
            ),
            (
                "ctl",
                r#","mqtt_topic": "ss/many/cmd", "mqtt_subscribe": "ss/many/sensor", "mqtt_qos": 1"#,
            ),
            (
                "log",
                r#","mqtt_topic": "ss/many/log", "mqtt_subscribe": "ss/many/#""#,
            ),
        ],
    );
    let mut e = Engine::new(p, config());
    e.set_system_blob(SystemBlob::MqttClientId, b"ss-many")
        .unwrap();
    let c = Client::start_with(e);
    let mut streams = vec![];
    for st in ["sensor", "sensor", "ctl", "ctl", "log"] {
        let mut s = c.create(st).await.unwrap();
        wait_state(&mut s, &[Connected]).await;
        streams.push(s);
    }
    assert_eq!(connections_from(&m, "ss-many"), 1, "{}", m.logs());
    // $SYS counts every client, sampled each second: ours, and the
    // mosquitto_sub that asks if it was connected at the sample. Five
    // connections would show up as five or more.
    let end = std::time::Instant::now() + WAIT;
    loop {
        let n = tokio::task::block_in_place(|| m.clients_connected());
        assert!(n.is_none_or(|n| n <= 2), "clients {n:?}");
        if matches!(n, Some(1 | 2)) {
            break;
        }
        assert!(std::time::Instant::now() < end, "clients {n:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A sensor reading reaches both ctl streams and the log, not the sensors.
    streams[0].send(b"21.5".to_vec()).await.unwrap();
    wait_state(&mut streams[0], &[QosAckRemote]).await;
    for i in [2, 3, 4] {
        assert_eq!(recv_msg(&mut streams[i]).await, b"21.5", "stream {i}");
    }
    // A command reaches both sensors and the log.
    streams[3].send(b"reset".to_vec()).await.unwrap();
    for i in [0, 1, 4] {
        assert_eq!(recv_msg(&mut streams[i]).await, b"reset", "stream {i}");
    }
    no_msg(&mut streams[0], Duration::from_millis(200)).await;
    no_msg(&mut streams[2], Duration::from_millis(50)).await;
    assert_eq!(connections_from(&m, "ss-many"), 1);
}
