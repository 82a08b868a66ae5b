//! Metadata: per-stream named values, and `${name}` substitution into policy
//! strings such as the endpoint and URL.

use std::fmt;

/// Largest string a substitution may produce; longer results are an error.
pub const MAX_SUBSTITUTED_LEN: usize = 8192;

/// Why a `${name}` substitution failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubstError {
    /// The template names metadata the streamtype does not declare.
    Undeclared(String),
    /// The result would exceed [`MAX_SUBSTITUTED_LEN`].
    TooLong,
    /// A substituted value is not valid UTF-8.
    NotUtf8(String),
}

impl fmt::Display for SubstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubstError::Undeclared(n) => {
                write!(f, "metadata \"{n}\" is not declared by the streamtype")
            }
            SubstError::TooLong => {
                write!(f, "substituted string exceeds {MAX_SUBSTITUTED_LEN} bytes")
            }
            SubstError::NotUtf8(n) => write!(f, "metadata \"{n}\" is not valid UTF-8"),
        }
    }
}

impl std::error::Error for SubstError {}

/// The `${name}` references in `template`, in order (unterminated `${` is literal text).
pub fn references(template: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..]; // ok: "${" found at start, 2 ASCII bytes
        match after.find('}') {
            Some(end) => {
                out.push(&after[..end]); // ok: end from after.find('}')
                rest = &after[end + 1..]; // ok: '}' at end is 1 ASCII byte
            }
            None => break,
        }
    }
    out
}

/// Replace each `${name}` in `template` by `lookup(name)`.
///
/// `lookup` returns `None` for a name the streamtype does not declare (an
/// error) and `Some(value)` otherwise; declared but unset metadata is empty.
pub fn substitute<'a>(
    template: &str,
    lookup: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<String, SubstError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..]; // ok: "${" found at start, 2 ASCII bytes
        let Some(end) = after.find('}') else { break };
        out.push_str(&rest[..start]); // ok: start from rest.find("${")
        let name = &after[..end]; // ok: end from after.find('}')
        let value = lookup(name).ok_or_else(|| SubstError::Undeclared(name.to_string()))?;
        let value =
            std::str::from_utf8(value).map_err(|_| SubstError::NotUtf8(name.to_string()))?;
        if out.len() + value.len() > MAX_SUBSTITUTED_LEN {
            return Err(SubstError::TooLong);
        }
        out.push_str(value);
        rest = &after[end + 1..]; // ok: '}' at end is 1 ASCII byte
    }
    if out.len() + rest.len() > MAX_SUBSTITUTED_LEN {
        return Err(SubstError::TooLong);
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lk<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a [u8]> + 'a {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_bytes())
        }
    }

    #[test]
    fn substitutes_endpoint_and_url() {
        let m = [("region", "uk"), ("uptag", "x1")];
        assert_eq!(
            substitute("${region}.mysite.com", lk(&m)).unwrap(),
            "uk.mysite.com"
        );
        assert_eq!(
            substitute("index.html?uptag=${uptag}", lk(&m)).unwrap(),
            "index.html?uptag=x1"
        );
        assert_eq!(substitute("a${region}${uptag}b", lk(&m)).unwrap(), "aukx1b");
        assert_eq!(substitute("no refs", lk(&m)).unwrap(), "no refs");
        assert_eq!(
            substitute("open ${region", lk(&m)).unwrap(),
            "open ${region"
        );
        assert_eq!(
            substitute("${nope}", lk(&m)),
            Err(SubstError::Undeclared("nope".into()))
        );
        assert_eq!(references("${a}x${b}${"), vec!["a", "b"]);
    }

    #[test]
    fn bounded() {
        let big = "x".repeat(MAX_SUBSTITUTED_LEN);
        let m = [("a", big.as_str())];
        assert_eq!(substitute("${a}y", lk(&m)), Err(SubstError::TooLong));
    }

    proptest! {
        #[test]
        fn substitution_matches_model(parts in proptest::collection::vec(
            prop_oneof!["[a-z./?=]{0,6}".prop_map(|s| (false, s)), "[a-c]".prop_map(|s| (true, s))], 0..10),
            va in "[ -~]{0,8}", vb in "[ -~]{0,8}", vc in "[ -~]{0,8}") {
            let m = [("a", va.as_str()), ("b", vb.as_str()), ("c", vc.as_str())];
            let mut template = String::new();
            let mut expect = String::new();
            for (is_ref, s) in &parts {
                if *is_ref {
                    template.push_str(&format!("${{{s}}}"));
                    expect.push_str(m.iter().find(|(k, _)| k == s).unwrap().1);
                } else {
                    template.push_str(s);
                    expect.push_str(s);
                }
            }
            prop_assert_eq!(substitute(&template, lk(&m)).unwrap(), expect);
        }

        #[test]
        fn never_panics(t in "\\PC{0,40}") {
            let _ = substitute(&t, |_| Some(&b"v"[..]));
            let _ = references(&t);
        }
    }
}
