//! The session log's vocabulary: commands (what a participant asks for), events (what happened,
//! in the order the session's home edge decided), and their versioned encoding.
//!
//! Every change to a class — someone joins, the teacher switches the scene, a stroke on the
//! whiteboard, a chat line — is one [`Event`] with the session's sequence number. Clients and
//! follower edges see the same events in the same order; the class state each of them shows is a
//! fold of them.
//!
//! ## Encoding and versions
//! Events are JSON objects with a format version `v`. An event kind this build does not know, at
//! a version it does know, is kept as [`EventBody::Opaque`]: an older edge stores and relays it
//! and its fold skips it, so a newer home can add features without stopping older followers. A
//! version above [`EVENT_FORMAT_VERSION`] is refused with [`DecodeError::NewerVersion`]: that is
//! a change older code cannot be trusted to carry.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::claims::Role;
use crate::ids::ParticipantId;

/// The event format this build writes and the newest it reads.
pub const EVENT_FORMAT_VERSION: u32 = 1;

/// Largest encoded event, in bytes. A whiteboard stroke of [`STROKE_POINTS_MAX`] points is
/// about 12 KiB; a plugin's view is at most [`PLUGIN_VIEW_BYTES_MAX`].
pub const EVENT_BYTES_MAX: usize = 32 * 1024;

/// Longest plugin name, in bytes (lowercase ASCII letters, digits and '-').
pub const PLUGIN_NAME_LEN_MAX: usize = 64;

/// Longest plugin action name, in bytes (lowercase ASCII letters, digits, '-' and '_').
pub const PLUGIN_ACTION_LEN_MAX: usize = 64;

/// Largest payload of a plugin action, in bytes of JSON.
pub const PLUGIN_PAYLOAD_BYTES_MAX: usize = 4 * 1024;

/// Largest body of an event a plugin records, in bytes of JSON.
pub const PLUGIN_BODY_BYTES_MAX: usize = 8 * 1024;

/// Largest view (panel) a plugin shows, in bytes of JSON.
pub const PLUGIN_VIEW_BYTES_MAX: usize = 24 * 1024;

/// Longest chat line, in characters.
pub const CHAT_CHARS_MAX: usize = 2_000;

/// Points in one whiteboard stroke, at most. A long stroke is sent as several.
pub const STROKE_POINTS_MAX: usize = 1_000;

/// Longest idempotency key, in bytes.
pub const COMMAND_KEY_LEN_MAX: usize = 64;

/// Pages of one slide deck, at most.
pub const DECK_PAGES_MAX: u32 = 500;

/// A position in a session's log. The first event is 1; 0 means "nothing yet".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    pub const ZERO: Seq = Seq(0);

    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The fencing epoch of a session's log. A home edge sequences under one term; an edge that has
/// seen a higher term never accepts entries of a lower one, so a stale home cannot fork the log.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Term(pub u64);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A client-chosen idempotency key: the same key from the same participant applies once, however
/// often the command is retried or forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommandKey(String);

impl CommandKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CommandKey {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.is_empty() || text.len() > COMMAND_KEY_LEN_MAX {
            return Err(format!(
                "a command key is 1 to {COMMAND_KEY_LEN_MAX} bytes, not {}",
                text.len()
            ));
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err("a command key uses ASCII letters, digits, '-', '_', '.' and ':'".into());
        }
        Ok(Self(text))
    }
}

impl std::str::FromStr for CommandKey {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::try_from(text.to_owned())
    }
}

impl From<CommandKey> for String {
    fn from(key: CommandKey) -> String {
        key.0
    }
}

impl fmt::Display for CommandKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A teaching layout. Students' screens follow the teacher's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scene {
    /// The teacher's camera fills the stage.
    #[default]
    Camera,
    /// The current slide, with the camera beside it.
    SlidesAndCamera,
    /// The whiteboard, with the camera beside it.
    WhiteboardAndCamera,
    /// The shared screen.
    Screen,
}

/// A right beyond what a role gives by default, granted and revoked by the teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Publish camera, microphone or screen ("speaker").
    Speak,
    /// Switch scenes and slides.
    Present,
    /// Draw, erase and undo on the whiteboard.
    Draw,
}

/// A point on the whiteboard, in ten-thousandths of its width and height (0..=10000), so every
/// screen size draws the same picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point(pub u16, pub u16);

/// Whiteboard coordinates run from 0 to this.
pub const BOARD_EXTENT: u16 = 10_000;

/// One whiteboard stroke. Its id is chosen by the drawing client and unique per participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stroke {
    pub id: u64,
    /// `#rrggbb`.
    pub color: String,
    /// Line width in ten-thousandths of the board width (1..=500).
    pub width: u16,
    pub points: Vec<Point>,
}

/// A slide deck stored on the node, named by the SHA-256 of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deck {
    /// Lowercase hex SHA-256 of the uploaded file.
    pub asset: String,
    /// The file name the teacher uploaded, for display.
    pub title: String,
    pub pages: u32,
}

/// What a participant asks for. The home edge checks it against the sender's rights and the
/// class state, and either appends the event it leads to or refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    Chat {
        text: String,
    },
    RaiseHand,
    /// Lowers the sender's hand, or someone else's (teacher only).
    LowerHand {
        participant: Option<ParticipantId>,
    },
    LowerAllHands,
    SetScene {
        scene: Scene,
    },
    /// Makes an uploaded deck the current one, at its first page.
    OpenDeck {
        deck: Deck,
    },
    /// Shows a page of the current deck (1-based).
    ShowPage {
        page: u32,
    },
    Draw {
        stroke: Stroke,
    },
    /// Removes one stroke (any participant's, for a presenter; one's own otherwise).
    Erase {
        author: ParticipantId,
        stroke: u64,
    },
    /// Removes the sender's most recent stroke still on the board.
    Undo,
    ClearBoard,
    Grant {
        participant: ParticipantId,
        permission: Permission,
    },
    Revoke {
        participant: ParticipantId,
        permission: Permission,
    },
    /// Removes someone from the class (teacher only).
    Remove {
        participant: ParticipantId,
    },
    /// Switches a feature plugin on for this class (teacher only). It must be loaded on the
    /// class's home edge; switching it on again after it was off carries its state on.
    EnablePlugin {
        plugin: String,
    },
    /// Switches a feature plugin off for this class (teacher only); its panels disappear.
    DisablePlugin {
        plugin: String,
    },
    /// Something the sender did in a plugin's panel: a button, a choice, a form. It is recorded
    /// and then given to the plugin, whose answer follows in the log.
    PluginAction {
        plugin: String,
        action: String,
        #[serde(default)]
        payload: serde_json::Value,
    },
}

impl Command {
    /// A short stable name, for metrics and refusals.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Chat { .. } => "chat",
            Command::RaiseHand => "raise_hand",
            Command::LowerHand { .. } => "lower_hand",
            Command::LowerAllHands => "lower_all_hands",
            Command::SetScene { .. } => "set_scene",
            Command::OpenDeck { .. } => "open_deck",
            Command::ShowPage { .. } => "show_page",
            Command::Draw { .. } => "draw",
            Command::Erase { .. } => "erase",
            Command::Undo => "undo",
            Command::ClearBoard => "clear_board",
            Command::Grant { .. } => "grant",
            Command::Revoke { .. } => "revoke",
            Command::Remove { .. } => "remove",
            Command::EnablePlugin { .. } => "enable_plugin",
            Command::DisablePlugin { .. } => "disable_plugin",
            Command::PluginAction { .. } => "plugin_action",
        }
    }
}

/// What happened. Joins and leaves are written by the edge the participant is connected to;
/// everything else follows from an accepted [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    Joined {
        name: String,
        role: Role,
        /// The edge the participant is connected through (its node id), so that edge can mark
        /// its participants as gone if it restarts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edge: Option<String>,
        /// That edge's name for people ("North campus"), shown beside the participant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edge_name: Option<String>,
    },
    Left,
    Chat {
        text: String,
    },
    HandRaised,
    HandLowered {
        participant: ParticipantId,
    },
    AllHandsLowered,
    SceneSet {
        scene: Scene,
    },
    DeckOpened {
        deck: Deck,
    },
    PageShown {
        page: u32,
    },
    Drawn {
        stroke: Stroke,
    },
    Erased {
        author: ParticipantId,
        stroke: u64,
    },
    BoardCleared,
    Granted {
        participant: ParticipantId,
        permission: Permission,
    },
    Revoked {
        participant: ParticipantId,
        permission: Permission,
    },
    Removed {
        participant: ParticipantId,
    },
    /// A plugin was switched on (or upgraded: the same plugin at another version).
    PluginEnabled {
        plugin: String,
        version: String,
        title: String,
    },
    PluginDisabled {
        plugin: String,
    },
    /// A participant's action in a plugin's panel, recorded before the plugin sees it.
    PluginAction {
        plugin: String,
        action: String,
        payload: serde_json::Value,
    },
    /// An event the plugin recorded (its own state change). `cause` is the event it answered;
    /// the actor is that event's actor. Only the plugin reads these; clients see its views.
    PluginEvent {
        plugin: String,
        cause: Seq,
        body: serde_json::Value,
    },
    /// A panel of the plugin for an audience; it replaces the audience's previous one.
    PluginView {
        plugin: String,
        cause: Seq,
        audience: Audience,
        view: serde_json::Value,
    },
    /// A chat line in the plugin's name.
    PluginChat {
        plugin: String,
        cause: Seq,
        text: String,
    },
    /// A message for one participant: why the plugin refused their action, or that it failed.
    PluginNotice {
        plugin: String,
        cause: Seq,
        to: ParticipantId,
        message: String,
    },
    /// The plugin's health changed (a failed call, a rebuild, a quarantine).
    PluginHealth {
        plugin: String,
        health: PluginHealth,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// An event kind a newer edge wrote that this build does not know: kept, relayed and
    /// skipped by the fold.
    #[serde(skip)]
    Opaque(serde_json::Value),
}

/// The `type` names of [`EventBody`] this build understands.
const KNOWN_EVENT_TYPES: &[&str] = &[
    "joined",
    "left",
    "chat",
    "hand_raised",
    "hand_lowered",
    "all_hands_lowered",
    "scene_set",
    "deck_opened",
    "page_shown",
    "drawn",
    "erased",
    "board_cleared",
    "granted",
    "revoked",
    "removed",
    "plugin_enabled",
    "plugin_disabled",
    "plugin_action",
    "plugin_event",
    "plugin_view",
    "plugin_chat",
    "plugin_notice",
    "plugin_health",
];

/// One entry of a session's log.
impl EventBody {
    /// The event's kind, as its `type` field says (for an opaque event, whatever it says).
    pub fn kind(&self) -> &str {
        match self {
            EventBody::Joined { .. } => "joined",
            EventBody::Left => "left",
            EventBody::Chat { .. } => "chat",
            EventBody::HandRaised => "hand_raised",
            EventBody::HandLowered { .. } => "hand_lowered",
            EventBody::AllHandsLowered => "all_hands_lowered",
            EventBody::SceneSet { .. } => "scene_set",
            EventBody::DeckOpened { .. } => "deck_opened",
            EventBody::PageShown { .. } => "page_shown",
            EventBody::Drawn { .. } => "drawn",
            EventBody::Erased { .. } => "erased",
            EventBody::BoardCleared => "board_cleared",
            EventBody::Granted { .. } => "granted",
            EventBody::Revoked { .. } => "revoked",
            EventBody::Removed { .. } => "removed",
            EventBody::PluginEnabled { .. } => "plugin_enabled",
            EventBody::PluginDisabled { .. } => "plugin_disabled",
            EventBody::PluginAction { .. } => "plugin_action",
            EventBody::PluginEvent { .. } => "plugin_event",
            EventBody::PluginView { .. } => "plugin_view",
            EventBody::PluginChat { .. } => "plugin_chat",
            EventBody::PluginNotice { .. } => "plugin_notice",
            EventBody::PluginHealth { .. } => "plugin_health",
            EventBody::Opaque(value) => value.get("type").and_then(|t| t.as_str()).unwrap_or(""),
        }
    }

    /// The plugin an event of a plugin kind belongs to.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            EventBody::PluginEnabled { plugin, .. }
            | EventBody::PluginDisabled { plugin }
            | EventBody::PluginAction { plugin, .. }
            | EventBody::PluginEvent { plugin, .. }
            | EventBody::PluginView { plugin, .. }
            | EventBody::PluginChat { plugin, .. }
            | EventBody::PluginNotice { plugin, .. }
            | EventBody::PluginHealth { plugin, .. } => Some(plugin),
            _ => None,
        }
    }
}

/// Who a plugin's view is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Audience {
    Everyone,
    /// Participants with the teacher role.
    Teachers,
    /// Everyone without the teacher role.
    Students,
    /// One participant.
    Participant {
        id: ParticipantId,
    },
}

/// How a plugin is doing in a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginHealth {
    #[default]
    Healthy,
    /// A call failed recently; the plugin is being rebuilt and may be behind.
    Degraded,
    /// It failed too often and gets no more calls until the teacher switches it off and on.
    Quarantined,
}

/// Whether `name` is a valid plugin name.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= PLUGIN_NAME_LEN_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: Seq,
    pub term: Term,
    /// When the home edge sequenced it, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who caused it.
    pub actor: ParticipantId,
    /// The idempotency key of the command it came from (none for joins and leaves).
    pub key: Option<CommandKey>,
    pub body: EventBody,
}

/// Why bytes are not an event this build can use.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event is {len} bytes; the limit is {EVENT_BYTES_MAX}")]
    TooLarge { len: usize },
    #[error("event is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "event was written in format version {found}, and this node reads up to version \
         {supported}; upgrade this node"
    )]
    NewerVersion { found: u32, supported: u32 },
    #[error("event lacks a valid {field:?} field")]
    Missing { field: &'static str },
}

#[derive(Serialize, Deserialize)]
struct Envelope<B> {
    v: u32,
    seq: Seq,
    term: Term,
    at: u64,
    actor: ParticipantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<CommandKey>,
    body: B,
}

impl Event {
    fn envelope(&self) -> Envelope<serde_json::Value> {
        let body = match &self.body {
            EventBody::Opaque(value) => value.clone(),
            // A tagged enum of strings, integers and lists always converts.
            known => serde_json::to_value(known).unwrap_or(serde_json::Value::Null),
        };
        Envelope {
            v: EVENT_FORMAT_VERSION,
            seq: self.seq,
            term: self.term,
            at: self.at_ms,
            actor: self.actor.clone(),
            key: self.key.clone(),
            body,
        }
    }

    /// The event as JSON bytes, in this build's format version.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.envelope()).unwrap_or_default()
    }

    /// Reads an event written by [`Event::encode`], by this or any build with the same format
    /// version.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        if bytes.len() > EVENT_BYTES_MAX {
            return Err(DecodeError::TooLarge { len: bytes.len() });
        }
        let envelope: Envelope<serde_json::Value> = serde_json::from_slice(bytes)?;
        if envelope.v > EVENT_FORMAT_VERSION {
            return Err(DecodeError::NewerVersion {
                found: envelope.v,
                supported: EVENT_FORMAT_VERSION,
            });
        }
        let kind = envelope
            .body
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or(DecodeError::Missing { field: "type" })?;
        let body = if KNOWN_EVENT_TYPES.contains(&kind) {
            serde_json::from_value(envelope.body)?
        } else {
            EventBody::Opaque(envelope.body)
        };
        Ok(Event {
            seq: envelope.seq,
            term: envelope.term,
            at_ms: envelope.at,
            actor: envelope.actor,
            key: envelope.key,
            body,
        })
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.envelope().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let bytes = serde_json::to_vec(&value).map_err(serde::de::Error::custom)?;
        Event::decode(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn participant(name: &str) -> ParticipantId {
        name.parse().expect("valid id")
    }

    fn every_known_body() -> Vec<EventBody> {
        let deck = Deck {
            asset: "ab".repeat(32),
            title: "Week 1.pdf".into(),
            pages: 12,
        };
        let stroke = Stroke {
            id: 7,
            color: "#112233".into(),
            width: 20,
            points: vec![Point(1, 2), Point(3, 4)],
        };
        vec![
            EventBody::Joined {
                name: "Ada".into(),
                role: Role::Student,
                edge: Some("e1".into()),
                edge_name: Some("North campus".into()),
            },
            EventBody::Left,
            EventBody::Chat { text: "hi".into() },
            EventBody::HandRaised,
            EventBody::HandLowered {
                participant: participant("p1"),
            },
            EventBody::AllHandsLowered,
            EventBody::SceneSet {
                scene: Scene::Screen,
            },
            EventBody::DeckOpened { deck },
            EventBody::PageShown { page: 3 },
            EventBody::Drawn { stroke },
            EventBody::Erased {
                author: participant("p1"),
                stroke: 7,
            },
            EventBody::BoardCleared,
            EventBody::Granted {
                participant: participant("p1"),
                permission: Permission::Draw,
            },
            EventBody::Revoked {
                participant: participant("p1"),
                permission: Permission::Speak,
            },
            EventBody::Removed {
                participant: participant("p1"),
            },
            EventBody::PluginEnabled {
                plugin: "polls".into(),
                version: "0.1.0".into(),
                title: "Polls".into(),
            },
            EventBody::PluginDisabled {
                plugin: "polls".into(),
            },
            EventBody::PluginAction {
                plugin: "polls".into(),
                action: "vote".into(),
                payload: serde_json::json!({"poll": 1, "choices": [0]}),
            },
            EventBody::PluginEvent {
                plugin: "polls".into(),
                cause: Seq(3),
                body: serde_json::json!({"type": "voted"}),
            },
            EventBody::PluginView {
                plugin: "polls".into(),
                cause: Seq(3),
                audience: Audience::Participant {
                    id: participant("p1"),
                },
                view: serde_json::json!({"title": "Polls", "blocks": []}),
            },
            EventBody::PluginChat {
                plugin: "polls".into(),
                cause: Seq(3),
                text: "Poll closed".into(),
            },
            EventBody::PluginNotice {
                plugin: "polls".into(),
                cause: Seq(3),
                to: participant("p1"),
                message: "the poll is closed".into(),
            },
            EventBody::PluginHealth {
                plugin: "polls".into(),
                health: PluginHealth::Degraded,
                reason: "the plugin failed".into(),
            },
        ]
    }

    #[test]
    fn every_event_kind_round_trips_and_is_listed_as_known() {
        for (index, body) in every_known_body().into_iter().enumerate() {
            let event = Event {
                seq: Seq(index as u64 + 1),
                term: Term(2),
                at_ms: 1_700_000_000_000,
                actor: participant("teacher-1"),
                key: Some("k-1".parse().expect("valid key")),
                body,
            };
            let bytes = event.encode();
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            assert_eq!(
                value["body"]["type"],
                event.body.kind(),
                "kind() of {bytes:?}"
            );
            let decoded = Event::decode(&bytes).expect("decodes");
            assert!(
                !matches!(decoded.body, EventBody::Opaque(_)),
                "{} is missing from KNOWN_EVENT_TYPES",
                String::from_utf8_lossy(&bytes)
            );
            assert_eq!(decoded, event);
            let via_serde: Event =
                serde_json::from_slice(&serde_json::to_vec(&event).expect("json")).expect("serde");
            assert_eq!(via_serde, event);
        }
    }

    #[test]
    fn an_unknown_kind_is_kept_and_a_newer_version_is_refused() {
        let newer_kind =
            br#"{"v":1,"seq":4,"term":1,"at":5,"actor":"p","body":{"type":"poll_opened","q":"?"}}"#;
        let event = Event::decode(newer_kind).expect("kept");
        let EventBody::Opaque(body) = &event.body else {
            panic!("expected an opaque body, got {:?}", event.body);
        };
        assert_eq!(body["q"], "?");
        // Re-encoding keeps the body as it came.
        assert_eq!(
            Event::decode(&event.encode()).expect("decodes again"),
            event
        );

        let newer_version =
            br#"{"v":2,"seq":4,"term":1,"at":5,"actor":"p","body":{"type":"chat","text":"x"}}"#;
        let error = Event::decode(newer_version).expect_err("refused");
        assert!(
            matches!(
                error,
                DecodeError::NewerVersion {
                    found: 2,
                    supported: 1
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("upgrade this node"));

        let known_but_broken =
            br#"{"v":1,"seq":4,"term":1,"at":5,"actor":"p","body":{"type":"chat"}}"#;
        assert!(matches!(
            Event::decode(known_but_broken),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            Event::decode(&vec![b' '; EVENT_BYTES_MAX + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(Event::decode(b"{").is_err());
    }

    #[test]
    fn command_keys_are_checked() {
        assert!("retry-1:abc".parse::<CommandKey>().is_ok());
        assert!("".parse::<CommandKey>().is_err());
        assert!("a b".parse::<CommandKey>().is_err());
        assert!("x".repeat(65).parse::<CommandKey>().is_err());
    }
}
