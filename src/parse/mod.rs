//! Wire bytes → [`crate::points::Point`]s. No I/O here: receivers hand buffers in, and the
//! parsers call back per point so the hot path allocates nothing.

pub mod pickle;
pub mod plain;
