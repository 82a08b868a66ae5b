//! A small bounded cookie jar for `http_cookies` streams.
//!
//! Cookies are kept by name (domain and path attributes are ignored: a jar
//! belongs to one stream talking to one endpoint). With no clock in the
//! core, `Expires` is ignored and only `Max-Age` <= 0 deletes a cookie.

use super::H1Error;

/// Default bound on the number of cookies in a jar.
pub const DEFAULT_MAX_COOKIES: usize = 32;
/// Default bound on one cookie's name plus value.
pub const DEFAULT_MAX_COOKIE_BYTES: usize = 4096;

/// Cookies received with `Set-Cookie`, rendered back as `Cookie:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jar {
    cookies: Vec<(String, String)>,
    max_cookies: usize,
    max_cookie_bytes: usize,
}

impl Default for Jar {
    fn default() -> Self {
        Jar::new(DEFAULT_MAX_COOKIES, DEFAULT_MAX_COOKIE_BYTES)
    }
}

fn valid_name(n: &str) -> bool {
    super::is_token(n)
}

fn valid_value(v: &str) -> bool {
    v.bytes().all(|b| {
        b == 0x21
            || (0x23..=0x2b).contains(&b)
            || (0x2d..=0x3a).contains(&b)
            || (0x3c..=0x5b).contains(&b)
            || (0x5d..=0x7e).contains(&b)
    })
}

impl Jar {
    /// An empty jar holding at most `max_cookies` cookies of at most
    /// `max_cookie_bytes` (name plus value) each; when full, the oldest
    /// cookie is evicted.
    pub fn new(max_cookies: usize, max_cookie_bytes: usize) -> Self {
        Jar {
            cookies: Vec::new(),
            max_cookies,
            max_cookie_bytes,
        }
    }

    /// The cookies held, oldest first.
    pub fn cookies(&self) -> &[(String, String)] {
        &self.cookies
    }

    /// The value of cookie `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Apply one `Set-Cookie` header value: store or replace the cookie, or
    /// delete it when `Max-Age` is zero or negative. A malformed or oversized
    /// cookie is refused (the jar is unchanged).
    pub fn set_cookie(&mut self, header_value: &str) -> Result<(), H1Error> {
        let mut parts = header_value.split(';');
        let pair = parts.next().unwrap_or_default(); // split yields at least one item
        let (name, value) = pair.split_once('=').ok_or(H1Error::BadCookie)?;
        let name = name.trim();
        let mut value = value.trim();
        if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            value = v;
        }
        if !valid_name(name) || !valid_value(value) {
            return Err(H1Error::BadCookie);
        }
        if name.len() + value.len() > self.max_cookie_bytes {
            return Err(H1Error::BadCookie);
        }
        let delete = parts.any(|attr| {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            k.trim().eq_ignore_ascii_case("max-age")
                && v.trim().parse::<i64>().is_ok_and(|age| age <= 0)
        });
        self.cookies.retain(|(n, _)| n != name);
        if delete || self.max_cookies == 0 {
            return Ok(());
        }
        while self.cookies.len() >= self.max_cookies {
            self.cookies.remove(0);
        }
        self.cookies.push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Apply every `Set-Cookie` in a header list, skipping refused ones.
    pub fn ingest(&mut self, headers: &[(String, String)]) {
        for (_, v) in headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        {
            let _ = self.set_cookie(v);
        }
    }

    /// The `Cookie:` header value, or `None` if the jar is empty.
    pub fn render(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        Some(parts.join("; "))
    }

    /// Forget every cookie.
    pub fn clear(&mut self) {
        self.cookies.clear();
    }
}
