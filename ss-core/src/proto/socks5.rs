//! SOCKS5 client handshake (RFC 1928, with RFC 1929 user/password), pure:
//! the engine runs it on a connection to the proxy before anything else
//! (TLS, HTTP...) so the rest of the stack sees a plain byte stream to the
//! real endpoint. The target is sent by name, so the proxy resolves it.

use std::fmt;
use std::net::IpAddr;

/// Why the handshake failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Socks5Error {
    /// The proxy spoke something other than SOCKS5.
    Protocol(&'static str),
    /// The proxy accepts none of the authentication methods offered.
    NoAcceptableAuth,
    /// The proxy refused the user name and password.
    AuthFailed,
    /// The proxy refused the CONNECT, with the RFC 1928 reply code.
    Refused(u8),
    /// The target host or the credentials cannot be encoded (over 255 bytes).
    BadTarget(&'static str),
}

impl fmt::Display for Socks5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Socks5Error::Protocol(m) => write!(f, "socks5: protocol error: {m}"),
            Socks5Error::NoAcceptableAuth => {
                f.write_str("socks5: no acceptable authentication method")
            }
            Socks5Error::AuthFailed => f.write_str("socks5: authentication failed"),
            Socks5Error::Refused(code) => {
                let why = match code {
                    1 => "general failure",
                    2 => "connection not allowed by ruleset",
                    3 => "network unreachable",
                    4 => "host unreachable",
                    5 => "connection refused",
                    6 => "TTL expired",
                    7 => "command not supported",
                    8 => "address type not supported",
                    _ => "unknown reply",
                };
                write!(
                    f,
                    "socks5: the proxy refused the connection: {why} ({code})"
                )
            }
            Socks5Error::BadTarget(m) => write!(f, "socks5: {m}"),
        }
    }
}

impl std::error::Error for Socks5Error {}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Auth,
    Connect,
    Done,
}

/// The client side of one SOCKS5 handshake.
#[derive(Debug)]
pub struct Socks5Client {
    state: State,
    host: String,
    port: u16,
    auth: Option<(String, String)>,
    buf: Vec<u8>,
}

/// Most bytes of a proxy reply held while it is incomplete (the longest is
/// a CONNECT reply with a 255-byte name).
const MAX_REPLY: usize = 4 + 1 + 255 + 2;

impl Socks5Client {
    /// A handshake that will ask the proxy to connect to `host:port`,
    /// offering user/password authentication when `auth` is given.
    pub fn new(host: &str, port: u16, auth: Option<(String, String)>) -> Result<Self, Socks5Error> {
        if host.is_empty() || host.len() > 255 {
            return Err(Socks5Error::BadTarget("target host must be 1..=255 bytes"));
        }
        if let Some((u, p)) = &auth {
            if u.is_empty() || u.len() > 255 || p.len() > 255 {
                return Err(Socks5Error::BadTarget(
                    "user name and password must be at most 255 bytes",
                ));
            }
        }
        Ok(Socks5Client {
            state: State::Greeting,
            host: host.to_string(),
            port,
            auth,
            buf: Vec::new(),
        })
    }

    /// The greeting: the methods offered.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.auth.is_some() {
            out.extend_from_slice(&[5, 2, 0, 2]);
        } else {
            out.extend_from_slice(&[5, 1, 0]);
        }
    }

    /// Whether the handshake is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn connect_request(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[5, 1, 0]);
        match self
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(IpAddr::V4(a)) => {
                out.push(1);
                out.extend_from_slice(&a.octets());
            }
            Ok(IpAddr::V6(a)) => {
                out.push(4);
                out.extend_from_slice(&a.octets());
            }
            Err(_) => {
                out.push(3);
                out.push(self.host.len() as u8);
                out.extend_from_slice(self.host.as_bytes());
            }
        }
        out.extend_from_slice(&self.port.to_be_bytes());
    }

    /// Bytes from the proxy; answers go to `out`. Returns `Some(rest)` once
    /// the tunnel is up, with any bytes that already belong to the target.
    pub fn handle_input(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Vec<u8>>, Socks5Error> {
        if self.state == State::Done {
            return Ok(Some(data.to_vec()));
        }
        self.buf.extend_from_slice(data);
        loop {
            match self.state {
                State::Greeting => {
                    let Some(&[ver, method]) = self.buf.get(..2) else {
                        return self.need_more();
                    };
                    self.buf.drain(..2);
                    if ver != 5 {
                        return Err(Socks5Error::Protocol("not a SOCKS5 proxy"));
                    }
                    match (method, &self.auth) {
                        (0, _) => {
                            self.state = State::Connect;
                            self.connect_request(out);
                        }
                        (2, Some((u, p))) => {
                            out.push(1);
                            out.push(u.len() as u8);
                            out.extend_from_slice(u.as_bytes());
                            out.push(p.len() as u8);
                            out.extend_from_slice(p.as_bytes());
                            self.state = State::Auth;
                        }
                        _ => return Err(Socks5Error::NoAcceptableAuth),
                    }
                }
                State::Auth => {
                    let Some(&[_, status]) = self.buf.get(..2) else {
                        return self.need_more();
                    };
                    self.buf.drain(..2);
                    if status != 0 {
                        return Err(Socks5Error::AuthFailed);
                    }
                    self.state = State::Connect;
                    self.connect_request(out);
                }
                State::Connect => {
                    let Some(&[ver, rep, _, atyp]) = self.buf.get(..4) else {
                        return self.need_more();
                    };
                    if ver != 5 {
                        return Err(Socks5Error::Protocol("bad CONNECT reply"));
                    }
                    if rep != 0 {
                        return Err(Socks5Error::Refused(rep));
                    }
                    let addr_len = match atyp {
                        1 => 4,
                        4 => 16,
                        3 => match self.buf.get(4) {
                            Some(&n) => 1 + usize::from(n),
                            None => return self.need_more(),
                        },
                        _ => return Err(Socks5Error::Protocol("bad address type in reply")),
                    };
                    let total = 4 + addr_len + 2;
                    if self.buf.len() < total {
                        return self.need_more();
                    }
                    self.state = State::Done;
                    let rest = self.buf.split_off(total);
                    self.buf = Vec::new();
                    return Ok(Some(rest));
                }
                State::Done => return Ok(Some(Vec::new())),
            }
        }
    }

    fn need_more(&self) -> Result<Option<Vec<u8>>, Socks5Error> {
        if self.buf.len() > MAX_REPLY {
            return Err(Socks5Error::Protocol("reply too long"));
        }
        Ok(None)
    }
}

/// Parse a proxy address `host:port` (or `[v6]:port`).
pub fn parse_proxy(s: &str) -> Option<(String, u16)> {
    let s = s
        .trim()
        .trim_start_matches("socks5://")
        .trim_start_matches("socks5h://");
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_auth_connect_by_name() {
        let mut c = Socks5Client::new("example.com", 443, None).unwrap();
        let mut out = vec![];
        c.start(&mut out);
        assert_eq!(out, [5, 1, 0]);
        out.clear();
        assert_eq!(c.handle_input(&[5, 0], &mut out), Ok(None));
        let mut want = vec![5, 1, 0, 3, 11];
        want.extend_from_slice(b"example.com");
        want.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(out, want);
        // The reply split anywhere, with target bytes behind it.
        let reply = [5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90, b'h', b'i'];
        assert_eq!(c.handle_input(&reply[..3], &mut out), Ok(None));
        assert_eq!(
            c.handle_input(&reply[3..], &mut out),
            Ok(Some(b"hi".to_vec()))
        );
        assert!(c.is_done());
    }

    #[test]
    fn user_password_and_refusals() {
        let mut c = Socks5Client::new("10.1.2.3", 80, Some(("u".into(), "pw".into()))).unwrap();
        let mut out = vec![];
        c.start(&mut out);
        assert_eq!(out, [5, 2, 0, 2]);
        out.clear();
        c.handle_input(&[5, 2], &mut out).unwrap();
        assert_eq!(out, [1, 1, b'u', 2, b'p', b'w']);
        assert_eq!(
            c.handle_input(&[1, 1], &mut out),
            Err(Socks5Error::AuthFailed)
        );
        let mut c = Socks5Client::new("h", 1, None).unwrap();
        c.handle_input(&[5, 0], &mut out).unwrap();
        let e = c.handle_input(&[5, 5, 0, 1], &mut out).unwrap_err();
        assert!(e.to_string().contains("connection refused"));
        let mut c = Socks5Client::new("h", 1, None).unwrap();
        assert_eq!(
            c.handle_input(&[5, 0xff], &mut out),
            Err(Socks5Error::NoAcceptableAuth)
        );
    }

    #[test]
    fn proxy_addresses_parse() {
        assert_eq!(
            parse_proxy("127.0.0.1:1080"),
            Some(("127.0.0.1".into(), 1080))
        );
        assert_eq!(parse_proxy("socks5://[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(parse_proxy("nope"), None);
    }
}
