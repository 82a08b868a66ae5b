//! Policy load errors, located by key path, line and column.

use std::fmt;

/// A policy that could not be loaded: what is wrong, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// Key path of the offending value, e.g. `s[2].mintest.retry`; empty for syntax errors.
    pub path: String,
    /// 1-based line of the offending value.
    pub line: usize,
    /// 1-based column of the offending value.
    pub column: usize,
    /// What is wrong, e.g. `unknown retry policy "fast"`.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{} at {}:{}", self.message, self.line, self.column)
        } else {
            write!(
                f,
                "{}: {} at {}:{}",
                self.path, self.message, self.line, self.column
            )
        }
    }
}

impl std::error::Error for PolicyError {}
