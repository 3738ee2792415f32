//! The multistream edge node as a library: the binary in `main.rs` is a thin CLI over it, and
//! the system tests and the load generator drive the same code.

pub mod assets;
pub mod cascade;
pub mod config;
pub mod control;
pub mod http;
pub mod log;
pub mod media;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod placement;
pub mod plugins;
pub mod presence;
pub mod relay;
pub mod sessions;
pub mod sfu;
pub mod store;
pub mod tls;
pub mod token;
pub mod udp;
mod web;
