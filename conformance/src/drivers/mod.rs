//! [`crate::driver::Driver`] for each adapter.

// Each adapter adds its module here: `pub mod mio; pub mod smol; pub mod tokio;`
pub mod mio;
pub mod smol;
pub mod tokio;
