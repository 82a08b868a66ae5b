//! Framing and guarded decoding of packets a client receives, and encoding
//! of packets it sends, over the `mqttrs` codec.
//!
//! `mqttrs::decode_slice` indexes its input unchecked in several places (a
//! PUBLISH whose topic length overruns its remaining length, a truncated
//! packet identifier, a SUBACK without return codes) and reads fields past the
//! end of a packet into whatever follows it. [`frame`] and [`decode`] close
//! those holes: the packet is framed here, its size checked against the
//! limit before any of it is awaited, its structure checked per type, and
//! `mqttrs` only ever sees a slice holding exactly one well-sized packet.

use super::MqttError;

/// Most bytes the fixed header's remaining length can announce (§2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// A framed packet at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// First byte: packet type (high nibble) and flags (low nibble).
    pub header: u8,
    /// Bytes of the fixed header (1 + the length's 1..=4 bytes).
    pub header_len: usize,
    /// Remaining length announced.
    pub remaining: usize,
}

impl Frame {
    /// The whole packet's size in bytes.
    pub fn total(&self) -> usize {
        self.header_len + self.remaining
    }
}

/// Reads the fixed header at the start of `buf`.
///
/// `Ok(None)` while the header itself is incomplete. A packet larger than
/// `max_packet` is refused as soon as its length is known, so the caller never
/// buffers towards it.
pub fn frame(buf: &[u8], max_packet: usize) -> Result<Option<Frame>, MqttError> {
    let Some(&header) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(MqttError::Malformed(
                    "remaining length not minimally encoded".into(),
                ));
            }
            let f = Frame {
                header,
                header_len: 2 + i,
                remaining,
            };
            if f.total() > max_packet {
                return Err(MqttError::PacketTooLarge {
                    len: f.total(),
                    max: max_packet,
                });
            }
            return Ok(Some(f));
        }
    }
    Err(MqttError::Malformed("remaining length over 4 bytes".into()))
}

fn need(ok: bool, why: &'static str) -> Result<(), MqttError> {
    if ok {
        Ok(())
    } else {
        Err(MqttError::Malformed(why.into()))
    }
}

/// Decodes one packet a client may receive. `packet` must hold exactly the
/// packet described by `f` (`packet.len() == f.total()`).
///
/// Packets only a server receives (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ,
/// DISCONNECT) are a protocol error.
pub fn decode<'a>(f: &Frame, packet: &'a [u8]) -> Result<mqttrs::Packet<'a>, MqttError> {
    need(packet.len() == f.total(), "frame and packet disagree")?;
    let body = &packet[f.header_len..]; // ok: header_len <= total == len
    let flags = f.header & 0x0f;
    match f.header >> 4 {
        2 => {
            need(flags == 0 && body.len() == 2, "CONNACK size or flags")?;
            need(body[0] & 0xfe == 0, "CONNACK reserved flags set")?; // ok: len 2
        }
        3 => {
            let qos = (flags >> 1) & 3;
            need(qos < 3, "PUBLISH QoS 3")?;
            need(body.len() >= 2, "PUBLISH without topic length")?;
            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]])); // ok: len >= 2
            let pid_len = if qos > 0 { 2 } else { 0 };
            need(
                2 + topic_len + pid_len <= body.len(),
                "PUBLISH topic or packet id overruns the packet",
            )?;
        }
        4 | 5 | 7 | 11 => need(flags == 0 && body.len() == 2, "ack size or flags")?,
        6 => need(flags == 2 && body.len() == 2, "PUBREL size or flags")?,
        9 => need(flags == 0 && body.len() >= 3, "SUBACK size or flags")?,
        13 => need(flags == 0 && body.is_empty(), "PINGRESP size or flags")?,
        1 | 8 | 10 | 12 | 14 => {
            return Err(MqttError::Protocol("server sent a client-only packet"))
        }
        _ => return Err(MqttError::Malformed("reserved packet type".into())),
    }
    match mqttrs::decode_slice(packet) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(MqttError::Malformed("incomplete packet".into())),
        Err(e) => Err(MqttError::Malformed(format!("{e:?}"))),
    }
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Size in bytes of a packet with this remaining length.
pub fn packet_size(remaining: usize) -> usize {
    1 + varint_len(remaining) + remaining
}

/// Encodes `p`, whose remaining length is `remaining`, refusing packets over
/// `max_packet`.
pub fn encode(
    p: &mqttrs::Packet<'_>,
    remaining: usize,
    max_packet: usize,
) -> Result<Vec<u8>, MqttError> {
    let size = packet_size(remaining);
    if size > max_packet || remaining > MAX_REMAINING_LENGTH {
        return Err(MqttError::PacketTooLarge {
            len: size,
            max: max_packet,
        });
    }
    let mut buf = vec![0u8; size];
    let n = mqttrs::encode_slice(p, &mut buf)
        .map_err(|e| MqttError::Malformed(format!("encode: {e:?}")))?;
    buf.truncate(n);
    Ok(buf)
}
