//! JSON messages between the classroom client and a node over the session WebSocket
//! (`GET /ws/{session}`). Every message is an object with a `"type"` field.
//!
//! The first client message must be [`ClientMessage::Hello`] with an access token; until then the
//! node sends nothing but an error and closes.

use serde::{Deserialize, Serialize};

use crate::claims::Role;
use crate::ids::{ParticipantId, SessionId, Source};

/// Version of this message set, sent in [`ServerMessage::Welcome`]. A client that sees a newer
/// major version than it knows tells the user to reload.
pub const WIRE_VERSION: u32 = 1;

/// Largest client message the node reads, in bytes. A hello with a token is well under 4 KiB.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Authenticates the connection. Must come first.
    Hello { token: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantView {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// Sources this participant is currently publishing (media connected).
    pub live: Vec<Source>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Sent once after a valid hello.
    Welcome {
        wire_version: u32,
        session: SessionId,
        you: ParticipantView,
        can_publish: bool,
    },
    /// Everyone present in the session (connected over WebSocket or publishing), sent after the
    /// welcome and whenever it changes.
    Roster { participants: Vec<ParticipantView> },
    /// Something the client did was refused; `code` is stable, `message` is for people.
    Error { code: String, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let hello: ClientMessage =
            serde_json::from_str(r#"{"type":"hello","token":"abc"}"#).expect("valid hello");
        assert_eq!(
            hello,
            ClientMessage::Hello {
                token: "abc".into()
            }
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"nope"}"#).is_err());
        let roster = ServerMessage::Roster {
            participants: vec![],
        };
        assert_eq!(
            serde_json::to_string(&roster).expect("serializes"),
            r#"{"type":"roster","participants":[]}"#
        );
    }
}
