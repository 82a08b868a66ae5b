//! A JSON value tree that remembers where each value starts.
//!
//! The text is first checked by `serde_json` (so syntax errors carry its line
//! and column); this scanner then walks the same, known-valid text and records
//! the byte offset of every value and object key. Strings and numbers are
//! decoded by `serde_json` too. The scanner is written without indexing or
//! unwrapping so that even unexpected input only produces an error.

use super::PolicyError;

/// Largest policy accepted, in bytes.
pub const MAX_POLICY_LEN: usize = 1024 * 1024;
/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 64;

/// A JSON value and the byte offset where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) off: usize,
    pub(crate) kind: Kind,
}

/// The JSON value itself.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<Node>),
    /// Members in document order: key, offset of the key, value.
    Obj(Vec<(String, usize, Node)>),
}

impl Kind {
    /// Name of the JSON type, for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Num(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Arr(_) => "an array",
            Kind::Obj(_) => "an object",
        }
    }
}

/// 1-based line and column (in bytes, as `serde_json` counts) of byte `off`.
pub(crate) fn line_col(src: &str, off: usize) -> (usize, usize) {
    let bytes = src.as_bytes();
    let off = off.min(bytes.len());
    let before = bytes.get(..off).unwrap_or(&[]);
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = match before.iter().rposition(|b| *b == b'\n') {
        Some(nl) => off - nl,
        None => off + 1,
    };
    (line, col)
}

/// Build a located error.
pub(crate) fn error(src: &str, path: &str, off: usize, message: impl Into<String>) -> PolicyError {
    let (line, column) = line_col(src, off);
    PolicyError {
        path: path.to_string(),
        line,
        column,
        message: message.into(),
    }
}

/// Check size and syntax, then build the positioned tree.
pub(crate) fn parse_tree(src: &str) -> Result<Node, PolicyError> {
    if src.len() > MAX_POLICY_LEN {
        return Err(error(
            src,
            "",
            0,
            format!(
                "policy is {} bytes, larger than the {} byte limit",
                src.len(),
                MAX_POLICY_LEN
            ),
        ));
    }
    if let Err(e) = serde_json::from_str::<serde_json::Value>(src) {
        let line = e.line().max(1);
        let column = e.column().max(1);
        // serde_json appends " at line L column C" to its message; keep the bare text.
        let msg = e.to_string();
        let msg = match msg.rfind(" at line ") {
            Some(i) => msg.get(..i).unwrap_or(&msg).to_string(),
            None => msg,
        };
        return Err(PolicyError {
            path: String::new(),
            line,
            column,
            message: format!("JSON syntax error: {msg}"),
        });
    }
    let mut sc = Scanner { src, pos: 0 };
    sc.ws();
    let node = sc.value(0)?;
    Ok(node)
}

struct Scanner<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn fail(&self, msg: &str) -> PolicyError {
        error(self.src, "", self.pos, msg)
    }

    /// Consume byte `c`, or fail saying what was expected.
    fn eat(&mut self, c: u8) -> Result<(), PolicyError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.fail("unexpected character"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, PolicyError> {
        let off = self.pos;
        let kind = match self.peek() {
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(error(
                        self.src,
                        "",
                        off,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                self.pos += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        let koff = self.pos;
                        let key = self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                        let v = self.value(depth + 1)?;
                        members.push((key, koff, v));
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(self.fail("expected , or }")),
                        }
                    }
                }
                Kind::Obj(members)
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(error(
                        self.src,
                        "",
                        off,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(self.fail("expected , or ]")),
                        }
                    }
                }
                Kind::Arr(items)
            }
            Some(b'"') => Kind::Str(self.string()?),
            Some(b't') => {
                self.literal("true")?;
                Kind::Bool(true)
            }
            Some(b'f') => {
                self.literal("false")?;
                Kind::Bool(false)
            }
            Some(b'n') => {
                self.literal("null")?;
                Kind::Null
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
                let text = self
                    .src
                    .get(start..self.pos)
                    .ok_or_else(|| self.fail("bad number"))?;
                let n: serde_json::Number =
                    serde_json::from_str(text).map_err(|_| self.fail("bad number"))?;
                Kind::Num(n)
            }
            _ => return Err(self.fail("expected a value")),
        };
        Ok(Node { off, kind })
    }

    fn literal(&mut self, word: &str) -> Result<(), PolicyError> {
        let end = self.pos + word.len();
        if self.src.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(self.fail("bad literal"))
        }
    }

    /// A string starting at `pos`, decoded by serde_json.
    fn string(&mut self) -> Result<String, PolicyError> {
        let start = self.pos;
        self.eat(b'"')?;
        loop {
            match self.peek() {
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => self.pos += 1,
                None => return Err(self.fail("unterminated string")),
            }
        }
        let text = self
            .src
            .get(start..self.pos)
            .ok_or_else(|| self.fail("bad string"))?;
        serde_json::from_str(text).map_err(|_| error(self.src, "", start, "bad string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_positions() {
        let src = "{\n  \"a\": [1, \"x\"],\n  \"b\": {\"c\": true}\n}";
        let t = parse_tree(src).unwrap();
        let Kind::Obj(m) = &t.kind else { panic!() };
        assert_eq!(line_col(src, m[0].1), (2, 3));
        assert_eq!(line_col(src, m[0].2.off), (2, 8));
        let Kind::Arr(a) = &m[0].2.kind else { panic!() };
        assert_eq!(line_col(src, a[1].off), (2, 12));
        assert_eq!(line_col(src, m[1].2.off), (3, 8));
    }

    #[test]
    fn depth_and_size_bounded() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(parse_tree(&deep).unwrap_err().message.contains("nesting"));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse_tree(&ok).is_ok());
        let big = format!("\"{}\"", "x".repeat(MAX_POLICY_LEN));
        assert!(parse_tree(&big).unwrap_err().message.contains("limit"));
    }
}
