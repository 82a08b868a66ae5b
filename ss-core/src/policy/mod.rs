//! The JSON policy: every key of the reference's policy, typed and validated.
//!
//! [`Policy::parse`] loads a whole policy; [`Policy::apply_overlay`] applies a
//! fragment over a loaded one. Errors carry the key path, line and column.

mod error;
mod parse;
mod types;

pub use error::PolicyError;
pub use types::*;
