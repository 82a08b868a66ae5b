//! `multipart/form-data`: wrapping of an outgoing body as one or more parts
//! ([`Spec`] describes a part, [`Writer`] frames the body; used by the client
//! machine and by the engine's HTTP/2 client) and a streaming decoder for
//! incoming multipart bodies ([`Decoder`]).

use super::{H1Error, Limits};
use crate::state::Flags;

/// Default bound on one part's header block.
pub const DEFAULT_MAX_PART_HEADER: usize = 4 * 1024;

/// Default boundary used when the engine doesn't choose one. The core has no
/// randomness of its own; a caller that may send bodies containing this
/// string should pass its own boundary.
pub const DEFAULT_BOUNDARY: &str = "ss-h1-boundary-7c0f5e2a9d4b1e83";

/// An outgoing body wrapped as one `multipart/form-data` part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Boundary (1..=70 characters, no CR, LF or quote).
    pub boundary: String,
    /// The `name` of the form field.
    pub name: String,
    /// The `filename`, if any.
    pub filename: Option<String>,
    /// The part's `Content-Type`, if any.
    pub content_type: Option<String>,
}

impl Spec {
    /// A part named `name` with the default boundary.
    pub fn new(name: &str) -> Self {
        Spec {
            boundary: DEFAULT_BOUNDARY.to_owned(),
            name: name.to_owned(),
            filename: None,
            content_type: None,
        }
    }

    /// Check the fields can be written without breaking the framing.
    pub fn validate(&self) -> Result<(), H1Error> {
        let bad = |s: &str| {
            s.bytes()
                .any(|b| b == b'"' || b == b'\r' || b == b'\n' || b == 0)
        };
        if self.boundary.is_empty()
            || self.boundary.len() > 70
            || bad(&self.boundary)
            || self.boundary.ends_with(' ')
        {
            return Err(H1Error::MultipartBoundary);
        }
        if bad(&self.name)
            || self.filename.as_deref().is_some_and(bad)
            || self.content_type.as_deref().is_some_and(bad)
        {
            return Err(H1Error::InvalidOutgoing("multipart field".into()));
        }
        Ok(())
    }

    /// The request's `Content-Type` value.
    pub fn content_type_header(&self) -> String {
        format!("multipart/form-data; boundary=\"{}\"", self.boundary)
    }

    /// Bytes that go before the payload.
    pub fn preamble(&self) -> Vec<u8> {
        let mut s = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{}\"",
            self.boundary, self.name
        );
        if let Some(f) = &self.filename {
            s.push_str(&format!("; filename=\"{f}\""));
        }
        s.push_str("\r\n");
        if let Some(ct) = &self.content_type {
            s.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    /// Bytes that go after the payload.
    pub fn epilogue(&self) -> Vec<u8> {
        format!("\r\n--{}--\r\n", self.boundary).into_bytes()
    }

    /// Bytes the wrapping adds to the payload.
    pub fn overhead(&self) -> u64 {
        (self.preamble().len() + self.epilogue().len()) as u64
    }
}

/// Frames an outgoing body as `multipart/form-data`: the first part's header
/// (from the [`Spec`] it starts with), the payload, a new part header for
/// each [`Writer::next_part`], and the closing boundary at
/// [`Writer::finish`]. Part headers are held until the next payload (or the
/// end), so a part may be empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    boundary: String,
    /// Framing bytes due before the next payload.
    pending: Vec<u8>,
    /// The closing boundary was written.
    finished: bool,
}

impl Writer {
    /// A body whose first part is `spec`.
    pub fn new(spec: &Spec) -> Result<Self, H1Error> {
        spec.validate()?;
        Ok(Writer {
            boundary: spec.boundary.clone(),
            pending: spec.preamble(),
            finished: false,
        })
    }

    /// The boundary every part of this body uses.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// Whether the closing boundary was written.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// End the current part; the next payload goes into a new part
    /// described by `spec`, whose boundary must be this body's.
    pub fn next_part(&mut self, spec: &Spec) -> Result<(), H1Error> {
        if self.finished {
            return Err(H1Error::InvalidState("multipart body already finished"));
        }
        spec.validate()?;
        if spec.boundary != self.boundary {
            return Err(H1Error::MultipartBoundary);
        }
        self.pending.extend_from_slice(b"\r\n");
        self.pending.extend_from_slice(&spec.preamble());
        Ok(())
    }

    /// Append payload of the current part to `out` (after any framing due).
    pub fn data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), H1Error> {
        if self.finished {
            return Err(H1Error::InvalidState("multipart body already finished"));
        }
        out.append(&mut self.pending);
        out.extend_from_slice(data);
        Ok(())
    }

    /// End the last part and the body: append what is due and the closing
    /// boundary to `out`. Later calls append nothing.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        out.append(&mut self.pending);
        out.extend_from_slice(format!("\r\n--{}--\r\n", self.boundary).as_bytes());
    }
}

/// The `boundary` parameter of a `multipart/*` content type.
pub fn boundary_from_content_type(ct: &str) -> Option<String> {
    let mut parts = ct.split(';');
    let mime = parts.next()?.trim();
    if !mime.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            if v.is_empty() || v.len() > 70 || v.bytes().any(|b| b == b'\r' || b == b'\n') {
                return None;
            }
            return Some(v.to_owned());
        }
    }
    None
}

/// What the multipart decoder found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A part starts; its header fields.
    Part {
        /// Header fields of the part.
        headers: Vec<(String, String)>,
    },
    /// Body bytes of the current part: SOM on the first, EOM on the last
    /// (possibly empty); every part yields at least one.
    Data {
        /// Payload bytes.
        data: Vec<u8>,
        /// [`Flags::SOM`] and / or [`Flags::EOM`].
        flags: Flags,
    },
    /// The closing boundary was seen; later bytes are ignored.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Preamble,
    AfterDelimiter,
    AfterDelimiterCr,
    AfterDelimiterDash,
    Headers,
    Body { started: bool },
    Epilogue,
}

/// Streaming `multipart/form-data` decoder: any split of the input gives
/// the same parts, headers and concatenated data. Holds at most one part
/// header block or one delimiter's worth of bytes between calls.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: State,
    max_part_header: usize,
    max_headers: usize,
}

impl Decoder {
    /// A decoder for `boundary` with default limits.
    pub fn new(boundary: &str) -> Result<Self, H1Error> {
        Self::with_limits(
            boundary,
            DEFAULT_MAX_PART_HEADER,
            Limits::default().max_headers,
        )
    }

    /// A decoder for the boundary named in a `Content-Type` value.
    pub fn from_content_type(ct: &str) -> Result<Self, H1Error> {
        let b = boundary_from_content_type(ct).ok_or(H1Error::MultipartBoundary)?;
        Self::new(&b)
    }

    /// A decoder with explicit bounds on part header bytes and count.
    pub fn with_limits(
        boundary: &str,
        max_part_header: usize,
        max_headers: usize,
    ) -> Result<Self, H1Error> {
        if boundary.is_empty()
            || boundary.len() > 70
            || boundary.bytes().any(|b| b == b'\r' || b == b'\n')
        {
            return Err(H1Error::MultipartBoundary);
        }
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Ok(Decoder {
            delimiter,
            // The first boundary has no CRLF before it: pretend it had.
            buf: b"\r\n".to_vec(),
            state: State::Preamble,
            max_part_header,
            max_headers,
        })
    }

    /// Whether the closing boundary has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Epilogue
    }

    /// Decode more input.
    pub fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), H1Error> {
        if self.state == State::Epilogue {
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let r = self.run(&mut pos, events);
        self.buf.drain(..pos.min(self.buf.len()));
        r
    }

    /// The input ended: an error unless the closing boundary was seen.
    pub fn finish(&self) -> Result<(), H1Error> {
        if self.is_done() {
            Ok(())
        } else {
            Err(H1Error::MultipartMalformed)
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        if needle.is_empty() || hay.len() < needle.len() {
            return None;
        }
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn run(&mut self, pos: &mut usize, events: &mut Vec<Event>) -> Result<(), H1Error> {
        let dl = self.delimiter.len();
        loop {
            let rest = self.buf.get(*pos..).unwrap_or_default();
            match self.state {
                State::Preamble => match Self::find(rest, &self.delimiter) {
                    Some(i) => {
                        *pos += i + dl;
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        // Keep what could be the start of a delimiter.
                        *pos += rest.len().saturating_sub(dl - 1);
                        return Ok(());
                    }
                },
                State::AfterDelimiter => match rest.first() {
                    None => return Ok(()),
                    Some(b'-') => {
                        *pos += 1;
                        self.state = State::AfterDelimiterDash;
                    }
                    Some(b'\r') => {
                        *pos += 1;
                        self.state = State::AfterDelimiterCr;
                    }
                    // Transport padding.
                    Some(b' ' | b'\t') => *pos += 1,
                    Some(_) => return Err(H1Error::MultipartMalformed),
                },
                State::AfterDelimiterDash => match rest.first() {
                    None => return Ok(()),
                    Some(b'-') => {
                        *pos = self.buf.len();
                        self.state = State::Epilogue;
                        events.push(Event::End);
                        return Ok(());
                    }
                    Some(_) => return Err(H1Error::MultipartMalformed),
                },
                State::AfterDelimiterCr => match rest.first() {
                    None => return Ok(()),
                    Some(b'\n') => {
                        *pos += 1;
                        self.state = State::Headers;
                    }
                    Some(_) => return Err(H1Error::MultipartMalformed),
                },
                State::Headers => {
                    // An empty header block is just CRLF.
                    if rest.starts_with(b"\r\n") {
                        *pos += 2;
                        events.push(Event::Part {
                            headers: Vec::new(),
                        });
                        self.state = State::Body { started: false };
                        continue;
                    }
                    if rest.len() < 2 {
                        return Ok(());
                    }
                    let Some(end) = Self::find(rest, b"\r\n\r\n") else {
                        if rest.len() > self.max_part_header {
                            return Err(H1Error::MultipartHeaderTooLarge);
                        }
                        return Ok(());
                    };
                    let block_len = end + 4;
                    if block_len > self.max_part_header {
                        return Err(H1Error::MultipartHeaderTooLarge);
                    }
                    let block = rest.get(..block_len).unwrap_or_default();
                    let mut hs = vec![httparse::EMPTY_HEADER; self.max_headers];
                    let headers = match httparse::parse_headers(block, &mut hs) {
                        Ok(httparse::Status::Complete((_, parsed))) => super::own_headers(parsed),
                        Ok(httparse::Status::Partial) => return Err(H1Error::MultipartMalformed),
                        Err(httparse::Error::TooManyHeaders) => {
                            return Err(H1Error::TooManyHeaders)
                        }
                        Err(_) => return Err(H1Error::MultipartMalformed),
                    };
                    *pos += block_len;
                    events.push(Event::Part { headers });
                    self.state = State::Body { started: false };
                }
                State::Body { started } => {
                    let som = if started { Flags::NONE } else { Flags::SOM };
                    match Self::find(rest, &self.delimiter) {
                        Some(i) => {
                            let data = rest.get(..i).unwrap_or_default().to_vec();
                            events.push(Event::Data {
                                data,
                                flags: som | Flags::EOM,
                            });
                            *pos += i + dl;
                            self.state = State::AfterDelimiter;
                        }
                        None => {
                            let n = rest.len().saturating_sub(dl - 1);
                            if n > 0 {
                                let data = rest.get(..n).unwrap_or_default().to_vec();
                                events.push(Event::Data { data, flags: som });
                                self.state = State::Body { started: true };
                                *pos += n;
                            }
                            return Ok(());
                        }
                    }
                }
                State::Epilogue => {
                    *pos = self.buf.len();
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_parsing() {
        assert_eq!(
            boundary_from_content_type("multipart/form-data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(
            boundary_from_content_type("multipart/mixed;boundary=xyz").as_deref(),
            Some("xyz")
        );
        assert_eq!(boundary_from_content_type("text/plain; boundary=x"), None);
        assert_eq!(boundary_from_content_type("multipart/form-data"), None);
    }

    #[test]
    fn writer_frames_parts_and_holds_headers_for_empty_ones() {
        let mut a = Spec::new("a");
        a.boundary = "B".into();
        let mut b = a.clone();
        b.name = "b".into();
        b.filename = Some("f".into());
        b.content_type = Some("text/x".into());
        let mut w = Writer::new(&a).unwrap();
        let mut out = Vec::new();
        w.data(b"one", &mut out).unwrap();
        w.next_part(&b).unwrap();
        w.next_part(&a).unwrap();
        w.data(b"two", &mut out).unwrap();
        w.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\none\
             \r\n--B\r\nContent-Disposition: form-data; name=\"b\"; filename=\"f\"\r\n\
             Content-Type: text/x\r\n\r\n\
             \r\n--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ntwo\
             \r\n--B--\r\n"
        );
        assert!(w.is_finished());
        assert!(w.data(b"x", &mut Vec::new()).is_err());
        let mut other = a.clone();
        other.boundary = "C".into();
        let mut w = Writer::new(&a).unwrap();
        assert_eq!(w.next_part(&other), Err(H1Error::MultipartBoundary));
    }

    #[test]
    fn two_parts() {
        let body = b"junk\r\n--XX\r\nA: 1\r\n\r\nhello\r\n--XX\r\n\r\n\r\n--XX--\r\nepilogue";
        let mut d = Decoder::new("XX").unwrap();
        let mut ev = Vec::new();
        d.feed(body, &mut ev).unwrap();
        d.finish().unwrap();
        assert_eq!(
            ev,
            vec![
                Event::Part {
                    headers: vec![("A".into(), "1".into())]
                },
                Event::Data {
                    data: b"hello".to_vec(),
                    flags: Flags::SOM | Flags::EOM
                },
                Event::Part { headers: vec![] },
                Event::Data {
                    data: vec![],
                    flags: Flags::SOM | Flags::EOM
                },
                Event::End,
            ]
        );
    }
}
