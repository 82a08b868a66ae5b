//! Golden vectors captured from the reference itself (libwebsockets commit
//! 1e96753), not written from its header: `strace -f -xx` of the link socket
//! while
//!
//! * `lws-minimal-secure-streams-client` (built with
//!   `LWS_WITH_SECURE_STREAMS_PROXY_API`) talked to `ss proxy --abstract
//!   proxy.ss.lws` and, for comparison, to the reference's own
//!   `lws-minimal-secure-streams-proxy`, fetching an h1 streamtype "mintest"
//!   from a loopback HTTP server;
//! * `lws-minimal-secure-streams-client-tx` sent 80-byte messages on a raw
//!   streamtype "spam" through `ss proxy`.
//!
//! Every frame must decode to the expected message and re-encode to the very
//! same bytes. `scripts/ref-sspc.sh` reruns the exchange.

use ss_core::proxy::wire::{
    Payload, ToClient, ToClientDecoder, ToProxy, ToProxyDecoder, WireMessage,
};
use ss_core::{Flags, StreamState};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

fn enc<M: WireMessage>(m: &M) -> Vec<u8> {
    let mut v = vec![];
    m.encode(&mut v).expect("encodes");
    v
}

/// Decodes `bytes` (a whole capture of one direction) with the incremental
/// decoder, checks it is exactly `want`, and that each message re-encodes to
/// its own bytes.
fn check_stream<M: WireMessage + PartialEq + std::fmt::Debug>(
    mut dec: ss_core::proxy::wire::Decoder<M>,
    bytes: &[u8],
    want: &[M],
) {
    let mut got = vec![];
    let mut input = bytes;
    while !input.is_empty() {
        if let Some(m) = dec.next(&mut input).expect("decodes") {
            got.push(m);
        }
    }
    if let Some(m) = dec.poll() {
        got.push(m);
    }
    dec.finish().expect("ends between frames");
    assert_eq!(got, want);
    let re: Vec<u8> = want.iter().flat_map(enc).collect();
    assert_eq!(re, bytes, "re-encoding differs from the capture");
}

/// What the reference client wrote, in order, fetching "mintest" (pid 1413).
#[test]
fn reference_client_http_fetch() {
    let bytes = hex(concat!(
        // STREAMTYPE: v1, pid 0x585 = 1413, credit 500000000, "mintest"
        "aa 00 10 01 00 00 05 85 1d cd 65 00 6d 69 6e 74 65 73 74 ",
        // ONWARD_CONNECT, sent on CREATING
        "ab 00 00 ",
        // TIMEOUT_UPDATE 3000 ms (lws_ss_start_timeout in CONNECTING)
        "b0 00 04 00 00 0b b8 ",
        // METADATA ctype=myctype, then uptag=myuptag123: the client sends
        // its pending metadata newest first
        "ae 00 0d 05 63 74 79 70 65 6d 79 63 74 79 70 65 ",
        "ae 00 10 05 75 70 74 61 67 6d 79 75 70 74 61 67 31 32 33",
    ));
    check_stream(
        ToProxyDecoder::default(),
        &bytes,
        &[
            ToProxy::StreamtypeCreate {
                pid: 1413,
                initial_tx_credit: 500_000_000,
                streamtype: "mintest".into(),
            },
            ToProxy::OnwardConnect,
            ToProxy::TimeoutUpdate(3000),
            ToProxy::Metadata {
                name: "ctype".into(),
                value: b"myctype".to_vec(),
            },
            ToProxy::Metadata {
                name: "uptag".into(),
                value: b"myuptag123".to_vec(),
            },
        ],
    );
}

/// One TX_PAYLOAD of lws-minimal-secure-streams-client-tx: SOM|EOM, 112 µs
/// held, its `lws_now_usecs()` (CLOCK_MONOTONIC on Linux, not unix time),
/// 80 random bytes.
#[test]
fn reference_client_tx_payload() {
    let data = hex(concat!(
        "44 2d 2c fa 01 79 e9 89 39 c2 aa fe 2f 85 fd b3 48 98 64 c5 ",
        "0b d8 1d 1f 84 e7 bc d7 f0 aa 59 12 63 d3 64 2f 45 b2 a7 4e ",
        "ac 7c 8c ee 2e 81 8c 6a d7 ce 53 78 f3 32 5c 44 53 4c 38 2e ",
        "5e 7e 58 b2 14 dc a3 b9 df c5 72 2e 0b d6 97 d4 c2 e8 5c b8"
    ));
    assert_eq!(data.len(), 80);
    let mut bytes = hex("ad 00 60 00 00 00 03 00 00 00 70 00 00 00 02 21 01 77 ad");
    bytes.extend_from_slice(&data);
    check_stream(
        ToProxyDecoder::default(),
        &bytes,
        &[ToProxy::TxPayload(Payload {
            flags: Flags::SOM | Flags::EOM,
            latency_us: 0x70,
            unix_us: 0x0000_0002_2101_77ad,
            rideshare: None,
            data,
        })],
    );
}

/// What the reference proxy wrote to the reference client for the same
/// fetch: our client-side decoder must take all of it.
#[test]
fn reference_proxy_http_fetch() {
    let body = b"<html><body>hello from the loopback peer</body></html>\n".to_vec();
    let mut bytes = hex(concat!(
        // CREATE_RESULT: ok, client_buflen 0 (policy default), list
        // ",mintest" (leading comma, then the streamtype)
        "56 00 0d 00 00 00 00 00 2c 6d 69 6e 74 65 73 74 ",
        // CONNSTATE CREATING: the reference proxy sends it; its client
        // suppresses it (it reported CREATING itself)
        "57 00 05 01 00 00 00 00 ",
        // CONNSTATE CONNECTING
        "57 00 05 06 00 00 00 00 ",
        // METADATA srv = the response's Server: header
        "59 00 20 03 73 72 76 53 69 6d 70 6c 65 48 54 54 50 2f 30 2e 36 20 ",
        "50 79 74 68 6f 6e 2f 33 2e 31 31 2e 37 ",
        // CONNSTATE CONNECTED
        "57 00 05 05 00 00 00 00 ",
        // RX_PAYLOAD SOM, latency 0, the proxy's monotonic µs
        "55 00 47 00 00 00 01 00 00 00 00 00 00 00 02 26 c9 5f d2",
    ));
    bytes.extend_from_slice(&body);
    // RX_PAYLOAD EOM with no data: h1 ends the message with an empty rx
    bytes.extend(hex(
        "55 00 10 00 00 00 02 00 00 00 00 00 00 00 02 26 c9 5f dd",
    ));
    let rx = |data: Vec<u8>, flags, unix_us| {
        ToClient::RxPayload(Payload {
            flags,
            latency_us: 0,
            unix_us,
            rideshare: None,
            data,
        })
    };
    let want = [
        ToClient::CreateResult {
            status: 0,
            client_buflen: 0,
            rideshare: ",mintest".into(),
        },
        ToClient::conn_state(StreamState::Creating, 0),
        ToClient::conn_state(StreamState::Connecting, 0),
        ToClient::Metadata {
            name: "srv".into(),
            value: b"SimpleHTTP/0.6 Python/3.11.7".to_vec(),
        },
        ToClient::conn_state(StreamState::Connected, 0),
        rx(body, Flags::SOM, 0x0000_0002_26c9_5fd2),
        rx(vec![], Flags::EOM, 0x0000_0002_26c9_5fdd),
    ];
    check_stream(ToClientDecoder::default(), &bytes, &want);
    assert_eq!(want[0].rideshare_names(), ["mintest"]);
}

/// What `ss proxy` wrote to the reference client for the same fetch (the
/// client completed: rx with EOM, exit 0). Differences from the reference
/// proxy, all accepted by its client: CREATE_RESULT carries client_buflen
/// 32768 (what the client uses for 0) and no rideshare list; no CONNSTATE
/// CREATING; METADATA before CONNECTED as the reference; SOM|EOM on the one
/// data frame instead of a separate empty EOM frame; the time field is 0.
/// QOS_ACK_REMOTE before DISCONNECTED as the reference proxy sends too.
#[test]
fn our_daemon_http_fetch() {
    let body = b"<html><body>hello from the loopback peer</body></html>\n".to_vec();
    let mut bytes = hex(concat!(
        "56 00 05 00 00 00 80 00 ",
        "57 00 05 06 00 00 00 00 ",
        "59 00 20 03 73 72 76 53 69 6d 70 6c 65 48 54 54 50 2f 30 2e 36 20 ",
        "50 79 74 68 6f 6e 2f 33 2e 31 31 2e 37 ",
        "57 00 05 05 00 00 00 00 ",
        "55 00 47 00 00 00 03 00 00 00 00 00 00 00 00 00 00 00 00",
    ));
    bytes.extend_from_slice(&body);
    bytes.extend(hex("57 00 05 0a 00 00 00 00 57 00 05 02 00 00 00 00"));
    check_stream(
        ToClientDecoder::default(),
        &bytes,
        &[
            ToClient::CreateResult {
                status: 0,
                client_buflen: 32768,
                rideshare: String::new(),
            },
            ToClient::conn_state(StreamState::Connecting, 0),
            ToClient::Metadata {
                name: "srv".into(),
                value: b"SimpleHTTP/0.6 Python/3.11.7".to_vec(),
            },
            ToClient::conn_state(StreamState::Connected, 0),
            ToClient::RxPayload(Payload::new(body, Flags::SOM | Flags::EOM)),
            ToClient::conn_state(StreamState::QosAckRemote, 0),
            ToClient::conn_state(StreamState::Disconnected, 0),
        ],
    );
}
