//! multistream's system tests, in one test binary (one link step, shared helpers):
//! - `sfu_core`: the SFU core with str0m clients in virtual time;
//! - `signaling`: WHIP, WHEP and the join endpoint against a real node process over UDP/TCP;
//! - `browser`: the classroom in headless Chromium against a real node process;
//! - `class_log`: the class log over the classroom WebSocket of a real node, across a crash;
//! - `control`: the control plane's API over SQLite and PostgreSQL: scheduling rules, roles;
//! - `control_ui`: the control plane's OpenAPI description and admin UI (in Chromium);
//! - `cluster`: three edge processes joined by the QUIC peer plane, killed and restarted;
//! - `plugin_cli`: plugin signing keys and signed packages from the node's command line;
//! - `placement`: joins placed on the campus, nearest or emptiest edge of a real cluster;
//! - `plugins`: polls, Q&A and a hostile plugin in a real node; signed packages, hot upgrade;
//! - `relay`: media relayed between three edge processes, one copy per edge, a cut link;
//! - `replication`: the session-log core in deterministic simulation;
//! - `tidy`: the rules the codebase keeps (pure cores).

mod browser;
mod class_log;
mod cluster;
mod control;
mod control_ui;
mod placement;
mod plugin_cli;
mod plugins;
mod relay;
mod replication;
mod sfu_core;
mod signaling;
mod tidy;
