//! The JSON policy: every key of the reference's policy, typed and validated.
//!
//! [`Policy::parse`] loads a whole policy; [`Policy::apply_overlay`] applies a
//! fragment over a loaded one. Errors carry the key path, line and column.

mod error;
mod json;
mod parse;
mod types;

pub use error::PolicyError;
pub use json::{MAX_DEPTH, MAX_POLICY_LEN};
pub use types::*;
