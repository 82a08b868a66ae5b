//! JSON policy parser (placeholder: being written).

use super::{Policy, PolicyError};

impl Policy {
    /// Parse and validate a whole policy.
    pub fn parse(_json: &str) -> Result<Policy, PolicyError> {
        Err(PolicyError {
            path: String::new(),
            line: 1,
            column: 1,
            message: "parser not built yet".into(),
        })
    }

    /// Apply a policy fragment over this one; only streamtypes may be overridden.
    pub fn apply_overlay(&mut self, _json: &str) -> Result<(), PolicyError> {
        Err(PolicyError {
            path: String::new(),
            line: 1,
            column: 1,
            message: "parser not built yet".into(),
        })
    }
}
