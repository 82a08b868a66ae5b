//! The async handle API against a raw Secure Streams server in the same process.

use ss_core::policy::{Policy, Protocol, StreamType};
use ss_core::{
    Engine, EngineConfig, Flags, Handler, Host, RetryPolicy, SsRet, StreamCtx, StreamState,
};
use ss_tokio::{Client, Error, Runtime};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Echo(Vec<u8>);

impl Handler for Echo {
    fn rx(&mut self, ctx: &mut StreamCtx<'_>, data: &[u8], _f: Flags) -> SsRet {
        self.0.extend_from_slice(data);
        let _ = ctx.request_tx();
        SsRet::Ok
    }
    fn tx(
        &mut self,
        ctx: &mut StreamCtx<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
        _f: &mut Flags,
    ) -> SsRet {
        if self.0.is_empty() {
            return SsRet::TxDontSend;
        }
        let n = budget.min(self.0.len());
        buf.extend(self.0.drain(..n));
        if !self.0.is_empty() {
            let _ = ctx.request_tx();
        }
        SsRet::Ok
    }
}

struct Quiet;
impl Handler for Quiet {}

/// A raw echo server stream on its own thread; returns its port and a stop flag.
fn echo_server() -> (u16, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let st = stop.clone();
    let t = std::thread::spawn(move || {
        let policy = Policy {
            streamtypes: vec![StreamType {
                name: "server".into(),
                endpoint: Some("127.0.0.1".into()),
                server: true,
                protocol: Protocol::Raw,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut rt = Runtime::new(Host::new(Engine::new(policy, EngineConfig::default())));
        let now = rt.now();
        let id = rt
            .host()
            .create_server(
                now,
                "server",
                Box::new(Quiet),
                Box::new(|_| Box::new(Echo::default())),
            )
            .unwrap();
        rt.run_until(Duration::from_secs(5), &mut |h| h.listening(id).is_some());
        let addr: std::net::SocketAddr = rt.host().listening(id).unwrap().unwrap().parse().unwrap();
        tx.send(addr.port()).unwrap();
        while !st.load(Ordering::Relaxed) {
            rt.run_until(Duration::from_millis(20), &mut |_| false);
        }
    });
    (rx.recv().unwrap(), stop, t)
}

fn client_policy(port: u16) -> Policy {
    Policy {
        retry: vec![RetryPolicy {
            name: "r".into(),
            backoff_ms: vec![20, 20],
            conceal: 2,
            jitter_pc: Some(0),
            svalidping_s: None,
            svalidhup_s: None,
        }],
        streamtypes: vec![StreamType {
            name: "client".into(),
            endpoint: Some("127.0.0.1".into()),
            port,
            protocol: Protocol::Raw,
            retry: Some("r".into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn send_connects_and_echo_comes_back() {
    let (port, stop, server) = echo_server();
    let client = Client::start(client_policy(port), EngineConfig::default());
    let mut s = client.create("client").await.unwrap();
    let msg: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    // An idle stream connects on the first send (POLL, then CONNECTING).
    tokio::time::timeout(Duration::from_secs(5), s.send(msg.clone()))
        .await
        .expect("send in time")
        .unwrap();
    let mut got = vec![];
    while got.len() < msg.len() {
        let (data, _flags) = tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .expect("echo in time")
            .expect("stream alive");
        got.extend(data);
    }
    assert_eq!(got, msg);
    let mut states = vec![];
    for _ in 0..4 {
        states.push(s.next_state().await.unwrap());
    }
    use StreamState::*;
    assert_eq!(states, [Creating, Poll, Connecting, Connected]);
    s.destroy().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[tokio::test]
async fn states_tell_all_retries_failed_and_destroy_ends_the_stream() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::start(client_policy(port), EngineConfig::default());
    assert!(matches!(
        client.create("nope").await,
        Err(Error::Engine(ss_core::Error::UnknownStreamtype(_)))
    ));
    let mut s = client.create("client").await.unwrap();
    s.connect().await.unwrap();
    let mut states = vec![];
    while let Ok(Some(st)) = tokio::time::timeout(Duration::from_secs(5), s.next_state()).await {
        states.push(st);
        if st == StreamState::AllRetriesFailed {
            break;
        }
    }
    use StreamState::*;
    assert_eq!(
        states,
        [
            Creating,
            Connecting,
            Unreachable,
            Poll,
            Connecting,
            Unreachable,
            Poll,
            Connecting,
            Unreachable,
            AllRetriesFailed
        ]
    );
    let mut s2 = client.create("client").await.unwrap();
    assert_eq!(s2.next_state().await, Some(Creating));
    let id = s2.id();
    s2.destroy().await.unwrap();
    assert_ne!(id, s.id());
    drop(s);
}

/// A message far larger than the payload channel, echoed piece by piece:
/// the loop must keep taking the message while the application is not
/// reading yet (it is still awaiting `send`), applying back-pressure to the
/// socket instead of blocking on the full payload channel.
#[tokio::test]
async fn sending_a_large_message_while_its_echo_backs_up_does_not_deadlock() {
    let (port, stop, server) = echo_server();
    let client = Client::start(client_policy(port), EngineConfig::default());
    let mut s = client.create("client").await.unwrap();
    let msg: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
    tokio::time::timeout(Duration::from_secs(20), s.send(msg.clone()))
        .await
        .expect("send completes while the echo is not being read")
        .unwrap();
    let mut got = Vec::with_capacity(msg.len());
    while got.len() < msg.len() {
        let (data, _flags) = tokio::time::timeout(Duration::from_secs(10), s.recv())
            .await
            .expect("echo in time")
            .expect("stream alive");
        got.extend(data);
    }
    assert!(got == msg, "echo differs");
    s.destroy().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// `next_event` gives payload and states in the engine's order: CONNECTED
/// before the echo, the echo before the DISCONNECTED its server's exit causes.
#[tokio::test]
async fn next_event_orders_payload_and_states() {
    use ss_tokio::StreamEvent;
    use StreamState::*;
    let (port, stop, server) = echo_server();
    let client = Client::start(client_policy(port), EngineConfig::default());
    let mut s = client.create("client").await.unwrap();
    s.send(b"ping".to_vec()).await.unwrap();
    let mut seen = vec![];
    loop {
        let ev = next_event(&mut s).await;
        let echoed = matches!(&ev, StreamEvent::Rx(d, _) if d == b"ping");
        seen.push(ev);
        if echoed {
            break;
        }
    }
    // The server goes away: the stream reports it after the echo.
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    loop {
        let ev = next_event(&mut s).await;
        let done = ev == StreamEvent::State(Disconnected);
        seen.push(ev);
        if done {
            break;
        }
    }
    let at = |want: &StreamEvent| seen.iter().position(|e| e == want).unwrap();
    let rx = seen
        .iter()
        .position(|e| matches!(e, StreamEvent::Rx(..)))
        .unwrap();
    assert!(at(&StreamEvent::State(Connected)) < rx, "{seen:?}");
    assert!(rx < at(&StreamEvent::State(Disconnected)), "{seen:?}");
    s.destroy().await.unwrap();
}

async fn next_event(s: &mut ss_tokio::SsStream) -> ss_tokio::StreamEvent {
    tokio::time::timeout(Duration::from_secs(5), s.next_event())
        .await
        .expect("an event in time")
        .expect("stream alive")
}

/// A stream whose application never reads does not hold up another one:
/// each stream's backlog drains as its own reader makes room.
#[tokio::test]
async fn an_unread_stream_does_not_starve_another() {
    let (port, stop, server) = echo_server();
    let client = Client::start(client_policy(port), EngineConfig::default());
    let unread = client.create("client").await.unwrap();
    let mut read = client.create("client").await.unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    // Both get a large echo; only `read` is read, slowly enough to backlog.
    unread.send(big.clone()).await.unwrap();
    read.send(big.clone()).await.unwrap();
    let mut got = vec![];
    while got.len() < big.len() {
        let (data, _) = tokio::time::timeout(Duration::from_secs(10), read.recv())
            .await
            .expect("the read stream keeps receiving")
            .expect("stream alive");
        got.extend(data);
        if got.len() % 7 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(got, big);
    drop(unread);
    read.destroy().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// `feed` queues without waiting for each message: a thousand small
/// messages and one larger than the feed window all arrive, in order.
#[tokio::test]
async fn fed_messages_arrive_in_order() {
    let (port, stop, server) = echo_server();
    let client = Client::start(client_policy(port), EngineConfig::default());
    let mut s = client.create("client").await.unwrap();
    let mut want = vec![];
    for i in 0..1000u32 {
        let msg = format!("<{i}>").into_bytes();
        want.extend_from_slice(&msg);
        s.feed(msg).await.unwrap();
    }
    let big: Vec<u8> = (0..ss_tokio::FEED_WINDOW as u32 + 10_000)
        .map(|i| (i % 241) as u8)
        .collect();
    want.extend_from_slice(&big);
    s.feed(big).await.unwrap();
    let mut got = vec![];
    while got.len() < want.len() {
        let (data, _) = tokio::time::timeout(Duration::from_secs(10), s.recv())
            .await
            .expect("echo in time")
            .expect("stream alive");
        got.extend(data);
    }
    assert!(
        got == want,
        "{} of {} bytes, in order?",
        got.len(),
        want.len()
    );
    s.destroy().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}
