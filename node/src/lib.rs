//! The multistream edge node as a library: the binary in `main.rs` is a thin CLI over it, and
//! the system tests and the load generator drive the same code.

pub mod sfu;
