//! Shared pieces of multistream's system tests and load generator: a str0m-based WebRTC client,
//! a virtual-time world around the SFU core, a minimal HTTP client, and a handle on a real node
//! process.

pub mod classroom;
pub mod client;
pub mod cluster;
pub mod control;
pub mod control_bench;
pub mod http;
pub mod load;
pub mod netns;
pub mod node_process;
pub mod relay_bench;
pub mod sim;
pub mod udp;
pub mod world;
