//! The chunked transfer coding (RFC 9112 §7.1): a streaming decoder that
//! holds no payload (only a few counters) and encoding helpers.

use super::H1Error;

/// Append one chunk carrying `data` (nothing if `data` is empty, since an
/// empty chunk would end the body).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Append the last chunk and an empty trailer section, ending the body.
pub fn encode_last(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In a chunk-size line.
    Size {
        value: u64,
        digits: usize,
        line_len: usize,
        /// Whitespace seen after the digits.
        ws: bool,
        /// Inside chunk extensions (skipped).
        ext: bool,
    },
    /// CR of the size line seen; LF next.
    SizeLf { size: u64 },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// After chunk data: CR next.
    DataCr,
    /// After chunk data and CR: LF next.
    DataLf,
    /// In the trailer section (skipped), at `line_len` bytes into a line.
    Trailer { line_len: usize, total: usize },
    /// CR of a trailer line seen; LF next.
    TrailerLf { empty: bool, total: usize },
    /// The body is complete.
    Done,
}

const SIZE_START: State = State::Size {
    value: 0,
    digits: 0,
    line_len: 0,
    ws: false,
    ext: false,
};

/// Streaming decoder of a chunked body. Extensions and trailers are
/// skipped; the size line is bounded by `max_line` and the trailer section
/// by `max_trailer` bytes; sizes are overflow-checked.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    max_line: usize,
    max_trailer: usize,
}

impl Decoder {
    /// A decoder at the start of a chunked body.
    pub fn new(max_line: usize, max_trailer: usize) -> Self {
        Decoder {
            state: SIZE_START,
            max_line,
            max_trailer,
        }
    }

    /// Whether the last chunk and trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from `input`: returns how many bytes were consumed and the
    /// payload slice found, if any. Call again with the rest while bytes
    /// remain and the body is not done; once done, nothing more is consumed
    /// (the rest belongs to whatever follows the body).
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<&'a [u8]>), H1Error> {
        let mut used = 0;
        let mut rest = input;
        while let Some((&b, tail)) = rest.split_first() {
            match self.state {
                State::Done => break,
                State::Data { remaining } => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    let (data, _) = rest.split_at(n);
                    let left = remaining - n as u64; // ok: n <= remaining
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok((used + n, Some(data)));
                }
                _ => {
                    self.byte(b)?;
                    used += 1;
                    rest = tail;
                }
            }
        }
        Ok((used, None))
    }

    fn byte(&mut self, b: u8) -> Result<(), H1Error> {
        self.state = match self.state {
            State::Size {
                value,
                digits,
                line_len,
                ws,
                ext,
            } => {
                let line_len = line_len + 1;
                if line_len > self.max_line {
                    return Err(H1Error::ChunkLineTooLong);
                }
                let next = |value, digits, ws, ext| State::Size {
                    value,
                    digits,
                    line_len,
                    ws,
                    ext,
                };
                match b {
                    b'\r' if digits > 0 => State::SizeLf { size: value },
                    _ if ext => {
                        if b == b'\n' {
                            return Err(H1Error::BadChunkSize);
                        }
                        next(value, digits, ws, ext)
                    }
                    b';' if digits > 0 => next(value, digits, ws, true),
                    b' ' | b'\t' if digits > 0 => next(value, digits, true, ext),
                    _ if ws => return Err(H1Error::BadChunkSize),
                    _ => {
                        let d = (b as char).to_digit(16).ok_or(H1Error::BadChunkSize)?;
                        let value = value
                            .checked_mul(16)
                            .and_then(|v| v.checked_add(u64::from(d)))
                            .ok_or(H1Error::ChunkSizeOverflow)?;
                        next(value, digits + 1, ws, ext)
                    }
                }
            }
            State::SizeLf { size } => match (b, size) {
                (b'\n', 0) => State::Trailer {
                    line_len: 0,
                    total: 0,
                },
                (b'\n', n) => State::Data { remaining: n },
                _ => return Err(H1Error::BadChunkSize),
            },
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => SIZE_START,
            State::DataCr | State::DataLf => return Err(H1Error::BadChunkTerminator),
            State::Trailer { line_len, total } => {
                let total = total + 1;
                if total > self.max_trailer {
                    return Err(H1Error::HeaderTooLarge);
                }
                match b {
                    b'\r' => State::TrailerLf {
                        empty: line_len == 0,
                        total,
                    },
                    b'\n' => return Err(H1Error::BadChunkTerminator),
                    _ => State::Trailer {
                        line_len: line_len + 1,
                        total,
                    },
                }
            }
            State::TrailerLf { empty, total } => match b {
                b'\n' if empty => State::Done,
                b'\n' => State::Trailer { line_len: 0, total },
                _ => return Err(H1Error::BadChunkTerminator),
            },
            // decode() never passes bytes in these states.
            State::Data { .. } | State::Done => return Err(H1Error::UnexpectedData),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(d: &mut Decoder, mut input: &[u8]) -> Result<(Vec<u8>, usize), H1Error> {
        let mut out = Vec::new();
        let mut used = 0;
        while !input.is_empty() && !d.is_done() {
            let (n, data) = d.decode(input)?;
            if let Some(data) = data {
                out.extend_from_slice(data);
            }
            used += n;
            input = &input[n..];
            if n == 0 {
                break;
            }
        }
        Ok((out, used))
    }

    #[test]
    fn decodes_with_extensions_and_trailers() {
        let wire = b"5;a=b\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut d = Decoder::new(64, 64);
        let (out, used) = decode_all(&mut d, wire).unwrap();
        assert!(d.is_done());
        assert_eq!(out, b"hello world");
        assert_eq!(&wire[used..], b"NEXT");
    }

    #[test]
    fn rejects_bad_input() {
        let cases: &[(&[u8], H1Error)] = &[
            (b"g\r\n", H1Error::BadChunkSize),
            (b"\r\n", H1Error::BadChunkSize),
            (b"1 2\r\n", H1Error::BadChunkSize),
            (b"10000000000000000\r\n", H1Error::ChunkSizeOverflow),
            (b"1\r\naXY", H1Error::BadChunkTerminator),
            (b"1\n", H1Error::BadChunkSize),
            (
                b"1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                H1Error::ChunkLineTooLong,
            ),
        ];
        for (input, want) in cases {
            let mut d = Decoder::new(64, 64);
            assert_eq!(decode_all(&mut d, input).unwrap_err(), *want, "{input:?}");
        }
    }

    #[test]
    fn encodes() {
        let mut v = Vec::new();
        encode_chunk(b"", &mut v);
        encode_chunk(b"0123456789abcdefX", &mut v);
        encode_last(&mut v);
        assert_eq!(v, b"11\r\n0123456789abcdefX\r\n0\r\n\r\n");
    }
}
