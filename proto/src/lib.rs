//! The shared vocabulary of multistream: identifiers, roles, media sources, join-token claims and
//! the JSON messages the classroom client exchanges with a node over its WebSocket.
//!
//! This crate owns names and their validation rules. It does no IO, holds no keys and never
//! signs or verifies anything: the node does that with the types defined here.

pub mod claims;
pub mod ids;
pub mod jwt;
pub mod session;
pub mod wire;

pub use claims::{Claims, Grants, Role, TokenKind};
pub use ids::{IdError, ParticipantId, SessionId, Source};
