//! JSON messages between the classroom client and a node over the session WebSocket
//! (`GET /ws/{session}`). Every message is an object with a `"type"` field.
//!
//! The first client message must be [`ClientMessage::Hello`] with an access token; until then the
//! node sends nothing but an error and closes.

use serde::{Deserialize, Serialize};

use crate::claims::Role;
use crate::ids::{ParticipantId, SessionId, Source};
use crate::session::{Command, CommandKey, Event, Seq};

/// Version of this message set, sent in [`ServerMessage::Welcome`]. A client that sees a newer
/// major version than it knows tells the user to reload.
pub const WIRE_VERSION: u32 = 1;

/// Largest client message the node reads, in bytes: a whiteboard stroke of the most points
/// allowed, with room to spare.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Authenticates the connection. Must come first. A client that was connected before gives
    /// the last sequence number it saw and gets what followed instead of a full snapshot.
    Hello {
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_from: Option<Seq>,
    },
    /// Asks for a change to the class. Answered with [`ServerMessage::Ack`] once the change is
    /// durable on the session's home edge, or [`ServerMessage::Refused`].
    Command { key: CommandKey, command: Command },
}

/// An edge, as people see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeView {
    /// Its node id.
    pub id: String,
    /// Its name for people ("North campus").
    pub name: String,
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
        /// The edge this connection is served by.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edge: Option<EdgeView>,
    },
    /// Everyone present in the session (connected over WebSocket or publishing), sent after the
    /// welcome and whenever it changes.
    Roster { participants: Vec<ParticipantView> },
    /// Something the client did was refused; `code` is stable, `message` is for people.
    Error { code: String, message: String },
    /// The class as of `seq`: sent after the welcome (unless the client resumed) and whenever
    /// the client must start over. `state` is the node's class state (members, scene, slides,
    /// board, recent chat, hands).
    Snapshot { seq: Seq, state: serde_json::Value },
    /// One durable event of the session's log, in order.
    Event { event: Event },
    /// The event at `seq` is not for this participant (a plugin's private record, or a panel for
    /// someone else): the client's position moves on without it.
    Hidden { seq: Seq },
    /// The command with this key is durable at `seq`.
    Ack { key: CommandKey, seq: Seq },
    /// The command with this key was refused; `code` is stable, `message` is for people.
    Refused {
        key: CommandKey,
        code: String,
        message: String,
    },
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
                token: "abc".into(),
                resume_from: None,
            }
        );
        let command: ClientMessage = serde_json::from_str(
            r#"{"type":"command","key":"k1","command":{"type":"chat","text":"hi"}}"#,
        )
        .expect("valid command");
        assert!(matches!(command, ClientMessage::Command { .. }));
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
