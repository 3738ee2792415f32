//! The class state: a deterministic fold of a session's log, and the rules that decide whether
//! a participant's request becomes an event.
//!
//! Pure: no clock, no IO. Every edge folds the same events into the same state, which is what the
//! digest checks in the simulation compare.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use multistream_proto::session::{
    Audience, BOARD_EXTENT, CHAT_CHARS_MAX, Command, CommandKey, DECK_PAGES_MAX, Deck, Event,
    EventBody, PLUGIN_ACTION_LEN_MAX, PLUGIN_PAYLOAD_BYTES_MAX, Permission, PluginHealth,
    STROKE_POINTS_MAX, Scene, Seq, Stroke, valid_plugin_name,
};
use multistream_proto::{ParticipantId, Role};
use serde::Serialize;

/// Chat lines kept in the state for late joiners; the log keeps all of them.
pub const CHAT_KEPT_MAX: usize = 500;

/// Strokes on the board at once, at most; a board this full must be cleared first.
pub const BOARD_STROKES_MAX: usize = 20_000;

/// Participants in one session, at most (joins beyond it are refused).
pub const MEMBERS_MAX: usize = 1_000;

/// What a participant asks the home edge for: a client's command, or a join or leave written
/// by the edge the participant is connected to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Join {
        name: String,
        role: Role,
        /// The edge the participant is connected through.
        #[serde(default)]
        edge: Option<String>,
        /// That edge's name for people.
        #[serde(default)]
        edge_name: Option<String>,
    },
    Leave,
    Command {
        command: Command,
    },
}

/// Why a request was refused. `code` is stable (clients and tests match on it); `message` is for
/// people.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new("invalid", message)
}

fn not_permitted(message: impl Into<String>) -> Refusal {
    Refusal::new("not_permitted", message)
}

/// Someone who has joined the class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub name: String,
    pub role: Role,
    /// Connected now (joined and not left).
    pub present: bool,
    pub removed: bool,
    pub permissions: BTreeSet<Permission>,
    /// The edge the participant is connected through, while present.
    pub edge: Option<String>,
    /// That edge's name for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_name: Option<String>,
}

impl Member {
    fn may(&self, permission: Permission) -> bool {
        self.role == Role::Teacher || self.permissions.contains(&permission)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatLine {
    pub seq: Seq,
    pub at_ms: u64,
    pub from: ParticipantId,
    pub text: String,
    /// For a line a plugin posted: the plugin's name (`from` is whoever's action led to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

/// A plugin loaded on the home edge, as the rules need to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub version: String,
    pub title: String,
    /// The core event kinds it asks for besides its own.
    pub subscribes: Vec<String>,
}

/// The plugins a home edge can switch on, by name.
pub type PluginCatalog = BTreeMap<String, PluginInfo>;

/// A plugin that was switched on in this class at some point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassPlugin {
    pub title: String,
    pub version: String,
    pub enabled: bool,
    pub health: PluginHealth,
    /// Why it is degraded or quarantined.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The latest panel for each audience, with the sequence number it came at. Shown to each
    /// participant filtered ([`ClassState::snapshot_for`]).
    #[serde(skip)]
    pub views: BTreeMap<Audience, (Seq, serde_json::Value)>,
}

/// Plugins that were ever on in one class, at most.
pub const CLASS_PLUGINS_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoardStroke {
    pub author: ParticipantId,
    pub stroke: Stroke,
}

/// The class as every edge sees it after folding the log up to `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClassState {
    pub seq: Seq,
    pub members: BTreeMap<ParticipantId, Member>,
    pub scene: Scene,
    pub deck: Option<Deck>,
    pub page: u32,
    pub board: Vec<BoardStroke>,
    pub chat: VecDeque<ChatLine>,
    /// Raised hands, in the order they went up.
    pub hands: Vec<ParticipantId>,
    /// Commands applied, by sender and idempotency key: a retried command is answered with the
    /// sequence number it got the first time.
    #[serde(skip)]
    applied: HashMap<(ParticipantId, CommandKey), Seq>,
    /// Feature plugins that were switched on in this class, by name.
    pub plugins: BTreeMap<String, ClassPlugin>,
    /// Events of kinds this build does not know, skipped.
    pub opaque_events: u64,
}

impl ClassState {
    /// The sequence number a command from `actor` with `key` was applied at, if it was.
    pub fn applied(&self, actor: &ParticipantId, key: &CommandKey) -> Option<Seq> {
        self.applied.get(&(actor.clone(), key.clone())).copied()
    }

    /// Folds one event in. Events must come in sequence order.
    pub fn apply(&mut self, event: &multistream_proto::session::Event) {
        self.seq = event.seq;
        if let Some(key) = &event.key {
            self.applied
                .insert((event.actor.clone(), key.clone()), event.seq);
        }
        let actor = &event.actor;
        match &event.body {
            EventBody::Joined {
                name,
                role,
                edge,
                edge_name,
            } => {
                let member = self.members.entry(actor.clone()).or_insert_with(|| Member {
                    name: name.clone(),
                    role: *role,
                    present: true,
                    removed: false,
                    permissions: BTreeSet::new(),
                    edge: None,
                    edge_name: None,
                });
                member.name.clone_from(name);
                member.present = true;
                member.edge.clone_from(edge);
                member.edge_name.clone_from(edge_name);
            }
            EventBody::Left => {
                if let Some(member) = self.members.get_mut(actor) {
                    member.present = false;
                    member.edge = None;
                    member.edge_name = None;
                }
                self.hands.retain(|p| p != actor);
            }
            EventBody::Chat { text } => self.push_chat(event, text, None),
            EventBody::HandRaised => {
                if !self.hands.contains(actor) {
                    self.hands.push(actor.clone());
                }
            }
            EventBody::HandLowered { participant } => self.hands.retain(|p| p != participant),
            EventBody::AllHandsLowered => self.hands.clear(),
            EventBody::SceneSet { scene } => self.scene = *scene,
            EventBody::DeckOpened { deck } => {
                self.deck = Some(deck.clone());
                self.page = 1;
            }
            EventBody::PageShown { page } => self.page = *page,
            EventBody::Drawn { stroke } => self.board.push(BoardStroke {
                author: actor.clone(),
                stroke: stroke.clone(),
            }),
            EventBody::Erased { author, stroke } => self
                .board
                .retain(|s| !(s.author == *author && s.stroke.id == *stroke)),
            EventBody::BoardCleared => self.board.clear(),
            EventBody::Granted {
                participant,
                permission,
            } => {
                if let Some(member) = self.members.get_mut(participant) {
                    member.permissions.insert(*permission);
                }
            }
            EventBody::Revoked {
                participant,
                permission,
            } => {
                if let Some(member) = self.members.get_mut(participant) {
                    member.permissions.remove(permission);
                }
            }
            EventBody::Removed { participant } => {
                if let Some(member) = self.members.get_mut(participant) {
                    member.removed = true;
                    member.present = false;
                    member.permissions.clear();
                }
                self.hands.retain(|p| p != participant);
            }
            EventBody::PluginEnabled {
                plugin,
                version,
                title,
            } => {
                let entry = self
                    .plugins
                    .entry(plugin.clone())
                    .or_insert_with(|| ClassPlugin {
                        title: title.clone(),
                        version: version.clone(),
                        enabled: true,
                        health: PluginHealth::Healthy,
                        reason: String::new(),
                        views: BTreeMap::new(),
                    });
                entry.title.clone_from(title);
                entry.version.clone_from(version);
                entry.enabled = true;
                entry.health = PluginHealth::Healthy;
                entry.reason.clear();
            }
            EventBody::PluginDisabled { plugin } => {
                if let Some(entry) = self.plugins.get_mut(plugin) {
                    entry.enabled = false;
                    entry.views.clear();
                }
            }
            EventBody::PluginView {
                plugin,
                audience,
                view,
                ..
            } => {
                if let Some(entry) = self.plugins.get_mut(plugin).filter(|p| p.enabled) {
                    entry
                        .views
                        .insert(audience.clone(), (event.seq, view.clone()));
                }
            }
            EventBody::PluginChat { plugin, text, .. } => {
                self.push_chat(event, text, Some(plugin.clone()));
            }
            EventBody::PluginHealth {
                plugin,
                health,
                reason,
            } => {
                if let Some(entry) = self.plugins.get_mut(plugin) {
                    entry.health = *health;
                    entry.reason.clone_from(reason);
                }
            }
            EventBody::PluginAction { .. }
            | EventBody::PluginEvent { .. }
            | EventBody::PluginNotice { .. } => {}
            EventBody::Opaque(_) => self.opaque_events += 1,
        }
    }

    fn push_chat(&mut self, event: &Event, text: &str, plugin: Option<String>) {
        if self.chat.len() >= CHAT_KEPT_MAX {
            self.chat.pop_front();
        }
        self.chat.push_back(ChatLine {
            seq: event.seq,
            at_ms: event.at_ms,
            from: event.actor.clone(),
            text: text.to_owned(),
            plugin,
        });
    }

    /// Whether the teachers' panels are for `participant`: plugins see roles, not the
    /// permissions a teacher grants, so a student allowed to present still gets the students'.
    fn leads(&self, participant: &ParticipantId) -> bool {
        self.members
            .get(participant)
            .is_some_and(|m| m.role == Role::Teacher)
    }

    fn addressed_to(&self, audience: &Audience, participant: &ParticipantId) -> bool {
        match audience {
            Audience::Everyone => true,
            Audience::Teachers => self.leads(participant),
            Audience::Students => !self.leads(participant),
            Audience::Participant { id } => id == participant,
        }
    }

    /// Whether `participant`'s clients are shown `event`. A plugin's own records and actions
    /// stay on the edges (the plugin reads them; an anonymous poll's votes are not for the
    /// class to see), and panels and notices go to whom they are addressed. The rest is for
    /// everyone. Decided against the state the event applies to.
    pub fn visible(&self, event: &Event, participant: &ParticipantId) -> bool {
        match &event.body {
            EventBody::PluginAction { .. } | EventBody::PluginEvent { .. } => false,
            EventBody::PluginView { audience, .. } => self.addressed_to(audience, participant),
            EventBody::PluginNotice { to, .. } => to == participant,
            _ => true,
        }
    }

    /// The state as `participant` is shown it: everything but other people's plugin panels.
    /// Each enabled plugin carries `views`, the panels addressed to them with their sequence
    /// numbers; a client shows the most recent.
    pub fn snapshot_for(&self, participant: &ParticipantId) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let Some(plugins) = value.get_mut("plugins").and_then(|p| p.as_object_mut()) else {
            return value;
        };
        for (name, entry) in &self.plugins {
            let views: Vec<serde_json::Value> = entry
                .views
                .iter()
                .filter(|(audience, _)| self.addressed_to(audience, participant))
                .map(|(audience, (seq, view))| {
                    serde_json::json!({ "seq": seq, "audience": audience, "view": view })
                })
                .collect();
            if let Some(object) = plugins.get_mut(name).and_then(|p| p.as_object_mut()) {
                object.insert("views".into(), serde_json::Value::Array(views));
            }
        }
        value
    }

    /// Decides what a request from `actor` leads to: an event body to append, nothing (the
    /// state already is what was asked for), or a refusal.
    pub fn decide(
        &self,
        actor: &ParticipantId,
        request: &Request,
    ) -> Result<Option<EventBody>, Refusal> {
        self.decide_with(actor, request, &PluginCatalog::new())
    }

    /// [`Self::decide`], on a home edge that has the plugins of `catalog` loaded.
    pub fn decide_with(
        &self,
        actor: &ParticipantId,
        request: &Request,
        catalog: &PluginCatalog,
    ) -> Result<Option<EventBody>, Refusal> {
        let command = match request {
            Request::Join {
                name,
                role,
                edge,
                edge_name,
            } => {
                return match self.members.get(actor) {
                    Some(member) if member.removed => Err(not_permitted(
                        "you were removed from this class by the teacher",
                    )),
                    Some(member)
                        if member.present
                            && member.name == *name
                            && member.edge == *edge
                            && member.edge_name == *edge_name =>
                    {
                        Ok(None)
                    }
                    None if self.members.len() >= MEMBERS_MAX => Err(Refusal::new(
                        "full",
                        format!("this class has its limit of {MEMBERS_MAX} participants"),
                    )),
                    _ => Ok(Some(EventBody::Joined {
                        name: name.clone(),
                        role: *role,
                        edge: edge.clone(),
                        edge_name: edge_name.clone(),
                    })),
                };
            }
            Request::Leave => {
                return Ok(self
                    .members
                    .get(actor)
                    .filter(|m| m.present)
                    .map(|_| EventBody::Left));
            }
            Request::Command { command } => command,
        };
        let member = match self.members.get(actor) {
            Some(member) if member.removed => {
                return Err(not_permitted("you were removed from this class"));
            }
            Some(member) => member,
            None => {
                return Err(Refusal::new(
                    "not_in_class",
                    "join the class before sending commands",
                ));
            }
        };
        let teacher = member.role == Role::Teacher;
        match command {
            Command::Chat { text } => {
                if member.role == Role::Guest {
                    return Err(not_permitted(
                        "guests can read the chat but not write in it",
                    ));
                }
                let text = text.trim();
                if text.is_empty() {
                    return Err(invalid("a chat line cannot be empty"));
                }
                let chars = text.chars().count();
                if chars > CHAT_CHARS_MAX {
                    return Err(invalid(format!(
                        "a chat line is at most {CHAT_CHARS_MAX} characters; this one has {chars}"
                    )));
                }
                Ok(Some(EventBody::Chat { text: text.into() }))
            }
            Command::RaiseHand => {
                if self.hands.contains(actor) {
                    Ok(None)
                } else {
                    Ok(Some(EventBody::HandRaised))
                }
            }
            Command::LowerHand { participant } => {
                let whose = participant.as_ref().unwrap_or(actor);
                if whose != actor && !teacher {
                    return Err(not_permitted("only the teacher lowers someone else's hand"));
                }
                if !self.hands.contains(whose) {
                    return Ok(None);
                }
                Ok(Some(EventBody::HandLowered {
                    participant: whose.clone(),
                }))
            }
            Command::LowerAllHands => {
                if !teacher {
                    return Err(not_permitted("only the teacher lowers all hands"));
                }
                if self.hands.is_empty() {
                    return Ok(None);
                }
                Ok(Some(EventBody::AllHandsLowered))
            }
            Command::SetScene { scene } => {
                if !member.may(Permission::Present) {
                    return Err(not_permitted(
                        "only the teacher or a presenter changes the scene",
                    ));
                }
                if self.scene == *scene {
                    return Ok(None);
                }
                Ok(Some(EventBody::SceneSet { scene: *scene }))
            }
            Command::OpenDeck { deck } => {
                if !member.may(Permission::Present) {
                    return Err(not_permitted(
                        "only the teacher or a presenter opens slides",
                    ));
                }
                if deck.asset.len() != 64
                    || !deck
                        .asset
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
                {
                    return Err(invalid(
                        "a deck is named by the lowercase hex SHA-256 of its file",
                    ));
                }
                if deck.pages == 0 || deck.pages > DECK_PAGES_MAX {
                    return Err(invalid(format!(
                        "a deck has 1 to {DECK_PAGES_MAX} pages, not {}",
                        deck.pages
                    )));
                }
                if deck.title.chars().count() > 200 {
                    return Err(invalid("a deck title is at most 200 characters"));
                }
                Ok(Some(EventBody::DeckOpened { deck: deck.clone() }))
            }
            Command::ShowPage { page } => {
                if !member.may(Permission::Present) {
                    return Err(not_permitted(
                        "only the teacher or a presenter turns slides",
                    ));
                }
                let Some(deck) = &self.deck else {
                    return Err(Refusal::new("not_found", "no slides are open"));
                };
                if *page == 0 || *page > deck.pages {
                    return Err(invalid(format!(
                        "the deck has pages 1 to {}, not {page}",
                        deck.pages
                    )));
                }
                if self.page == *page {
                    return Ok(None);
                }
                Ok(Some(EventBody::PageShown { page: *page }))
            }
            Command::Draw { stroke } => {
                if !member.may(Permission::Draw) {
                    return Err(not_permitted(
                        "drawing on the whiteboard needs the teacher's permission",
                    ));
                }
                check_stroke(stroke)?;
                if self.board.len() >= BOARD_STROKES_MAX {
                    return Err(Refusal::new(
                        "full",
                        format!("the board holds {BOARD_STROKES_MAX} strokes; clear it first"),
                    ));
                }
                if self
                    .board
                    .iter()
                    .any(|s| s.author == *actor && s.stroke.id == stroke.id)
                {
                    return Err(Refusal::new(
                        "conflict",
                        format!("you already drew stroke {}", stroke.id),
                    ));
                }
                Ok(Some(EventBody::Drawn {
                    stroke: stroke.clone(),
                }))
            }
            Command::Erase { author, stroke } => {
                let own = author == actor && member.may(Permission::Draw);
                if !own && !member.may(Permission::Present) {
                    return Err(not_permitted("you can erase only your own strokes"));
                }
                if !self
                    .board
                    .iter()
                    .any(|s| s.author == *author && s.stroke.id == *stroke)
                {
                    return Ok(None);
                }
                Ok(Some(EventBody::Erased {
                    author: author.clone(),
                    stroke: *stroke,
                }))
            }
            Command::Undo => {
                if !member.may(Permission::Draw) {
                    return Err(not_permitted(
                        "drawing on the whiteboard needs the teacher's permission",
                    ));
                }
                match self.board.iter().rev().find(|s| s.author == *actor) {
                    Some(last) => Ok(Some(EventBody::Erased {
                        author: actor.clone(),
                        stroke: last.stroke.id,
                    })),
                    None => Err(Refusal::new(
                        "not_found",
                        "you have nothing on the board to undo",
                    )),
                }
            }
            Command::ClearBoard => {
                if !member.may(Permission::Present) {
                    return Err(not_permitted(
                        "only the teacher or a presenter clears the board",
                    ));
                }
                if self.board.is_empty() {
                    return Ok(None);
                }
                Ok(Some(EventBody::BoardCleared))
            }
            Command::Grant {
                participant,
                permission,
            }
            | Command::Revoke {
                participant,
                permission,
            } => {
                if !teacher {
                    return Err(not_permitted(
                        "only the teacher grants and revokes permissions",
                    ));
                }
                let Some(target) = self.members.get(participant).filter(|m| !m.removed) else {
                    return Err(Refusal::new(
                        "not_found",
                        format!("{participant} is not in this class"),
                    ));
                };
                let grant = matches!(command, Command::Grant { .. });
                if target.permissions.contains(permission) == grant {
                    return Ok(None);
                }
                Ok(Some(if grant {
                    EventBody::Granted {
                        participant: participant.clone(),
                        permission: *permission,
                    }
                } else {
                    EventBody::Revoked {
                        participant: participant.clone(),
                        permission: *permission,
                    }
                }))
            }
            Command::Remove { participant } => {
                if !teacher {
                    return Err(not_permitted("only the teacher removes participants"));
                }
                let Some(target) = self.members.get(participant) else {
                    return Err(Refusal::new(
                        "not_found",
                        format!("{participant} is not in this class"),
                    ));
                };
                if target.role == Role::Teacher {
                    return Err(not_permitted("a teacher cannot be removed from the class"));
                }
                if target.removed {
                    return Ok(None);
                }
                Ok(Some(EventBody::Removed {
                    participant: participant.clone(),
                }))
            }
            Command::EnablePlugin { plugin } => {
                if !teacher {
                    return Err(not_permitted("only the teacher switches features on"));
                }
                let Some(info) = catalog.get(plugin) else {
                    return Err(Refusal::new(
                        "not_found",
                        format!("the plugin {plugin:?} is not installed on this class's home edge"),
                    ));
                };
                match self.plugins.get(plugin) {
                    Some(on) if on.enabled && on.version == info.version => return Ok(None),
                    None if self.plugins.len() >= CLASS_PLUGINS_MAX => {
                        return Err(Refusal::new(
                            "full",
                            format!("a class uses at most {CLASS_PLUGINS_MAX} plugins"),
                        ));
                    }
                    _ => {}
                }
                Ok(Some(EventBody::PluginEnabled {
                    plugin: plugin.clone(),
                    version: info.version.clone(),
                    title: info.title.clone(),
                }))
            }
            Command::DisablePlugin { plugin } => {
                if !teacher {
                    return Err(not_permitted("only the teacher switches features off"));
                }
                if !self.plugins.get(plugin).is_some_and(|p| p.enabled) {
                    return Ok(None);
                }
                Ok(Some(EventBody::PluginDisabled {
                    plugin: plugin.clone(),
                }))
            }
            Command::PluginAction {
                plugin,
                action,
                payload,
            } => {
                let on = self.plugins.get(plugin).filter(|p| p.enabled);
                let Some(on) = on.filter(|_| valid_plugin_name(plugin)) else {
                    return Err(Refusal::new(
                        "not_found",
                        format!("the feature {plugin:?} is not on in this class"),
                    ));
                };
                if on.health == PluginHealth::Quarantined {
                    return Err(Refusal::new(
                        "unavailable",
                        format!(
                            "{} is switched off after repeated failures; the teacher can switch it off and on again",
                            on.title
                        ),
                    ));
                }
                let action_ok = !action.is_empty()
                    && action.len() <= PLUGIN_ACTION_LEN_MAX
                    && action.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    });
                if !action_ok {
                    return Err(invalid(format!(
                        "an action name is 1 to {PLUGIN_ACTION_LEN_MAX} lowercase letters, digits, '-' or '_'"
                    )));
                }
                let size = serde_json::to_vec(payload).map(|b| b.len()).unwrap_or(0);
                if size > PLUGIN_PAYLOAD_BYTES_MAX {
                    return Err(invalid(format!(
                        "an action's data is at most {PLUGIN_PAYLOAD_BYTES_MAX} bytes; this is {size}"
                    )));
                }
                Ok(Some(EventBody::PluginAction {
                    plugin: plugin.clone(),
                    action: action.clone(),
                    payload: payload.clone(),
                }))
            }
        }
    }
}

/// Largest stroke id: JavaScript numbers hold integers exactly only up to 2^53 - 1, and every
/// browser in the class must be able to name a stroke to erase it.
pub const STROKE_ID_MAX: u64 = (1 << 53) - 1;

fn check_stroke(stroke: &Stroke) -> Result<(), Refusal> {
    if stroke.id > STROKE_ID_MAX {
        return Err(invalid(format!(
            "a stroke id is at most {STROKE_ID_MAX} (browsers cannot hold larger integers exactly)"
        )));
    }
    if stroke.points.is_empty() || stroke.points.len() > STROKE_POINTS_MAX {
        return Err(invalid(format!(
            "a stroke has 1 to {STROKE_POINTS_MAX} points, not {}",
            stroke.points.len()
        )));
    }
    if stroke
        .points
        .iter()
        .any(|p| p.0 > BOARD_EXTENT || p.1 > BOARD_EXTENT)
    {
        return Err(invalid(format!(
            "stroke points run from 0 to {BOARD_EXTENT} on each axis"
        )));
    }
    if !(1..=500).contains(&stroke.width) {
        return Err(invalid("a stroke is 1 to 500 units wide"));
    }
    let color = stroke.color.as_bytes();
    if color.len() != 7 || color[0] != b'#' || !color[1..].iter().all(u8::is_ascii_hexdigit) {
        return Err(invalid("a stroke color is written #rrggbb"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use multistream_proto::session::{Event, Point, Term};

    use super::*;

    fn id(name: &str) -> ParticipantId {
        name.parse().expect("valid id")
    }

    /// A class with a teacher, a student and a guest, applying what `decide` allows.
    struct Class {
        state: ClassState,
        catalog: PluginCatalog,
    }

    impl Class {
        fn new() -> Self {
            let mut class = Class {
                state: ClassState::default(),
                catalog: PluginCatalog::from([(
                    "polls".to_owned(),
                    PluginInfo {
                        version: "1.0.0".into(),
                        title: "Polls".into(),
                        subscribes: Vec::new(),
                    },
                )]),
            };
            for (who, role) in [
                ("t", Role::Teacher),
                ("s", Role::Student),
                ("g", Role::Guest),
            ] {
                class
                    .request(
                        who,
                        Request::Join {
                            name: who.to_uppercase(),
                            role,
                            edge: None,
                            edge_name: None,
                        },
                    )
                    .expect("joins");
            }
            class
        }

        fn request(&mut self, who: &str, request: Request) -> Result<Option<EventBody>, Refusal> {
            let actor = id(who);
            let decided = self.state.decide_with(&actor, &request, &self.catalog)?;
            if let Some(body) = &decided {
                let event = Event {
                    seq: self.state.seq.next(),
                    term: Term(1),
                    at_ms: 0,
                    actor,
                    key: None,
                    body: body.clone(),
                };
                self.state.apply(&event);
            }
            Ok(decided)
        }

        fn command(&mut self, who: &str, command: Command) -> Result<Option<EventBody>, Refusal> {
            self.request(who, Request::Command { command })
        }

        /// Appends what a plugin answered, as the home does.
        fn plugin_answer(&mut self, who: &str, body: EventBody) -> Event {
            let event = Event {
                seq: self.state.seq.next(),
                term: Term(1),
                at_ms: 0,
                actor: id(who),
                key: None,
                body,
            };
            self.state.apply(&event);
            event
        }
    }

    fn view(audience: Audience, text: &str) -> EventBody {
        EventBody::PluginView {
            plugin: "polls".into(),
            cause: Seq(1),
            audience,
            view: serde_json::json!({ "title": text, "blocks": [] }),
        }
    }

    #[test]
    fn plugins_are_switched_by_the_teacher_and_their_actions_checked() {
        let mut class = Class::new();
        let enable = |plugin: &str| Command::EnablePlugin {
            plugin: plugin.into(),
        };
        let action = |name: &str, payload: serde_json::Value| Command::PluginAction {
            plugin: "polls".into(),
            action: name.into(),
            payload,
        };
        assert_eq!(code(class.command("s", enable("polls"))), "not_permitted");
        assert_eq!(code(class.command("t", enable("chess"))), "not_found");
        assert_eq!(
            code(class.command("s", action("vote", serde_json::json!({})))),
            "not_found"
        );
        assert!(matches!(
            class.command("t", enable("polls")),
            Ok(Some(EventBody::PluginEnabled { ref version, .. })) if version == "1.0.0"
        ));
        assert_eq!(class.command("t", enable("polls")), Ok(None));
        assert!(
            class
                .command("s", action("vote", serde_json::json!({"poll": 1})))
                .is_ok()
        );
        assert_eq!(
            code(class.command("s", action("Vote!", serde_json::json!({})))),
            "invalid"
        );
        let big = serde_json::json!({ "text": "x".repeat(PLUGIN_PAYLOAD_BYTES_MAX) });
        assert_eq!(code(class.command("s", action("ask", big))), "invalid");

        // Quarantined: actions are refused until the teacher switches it off and on.
        class.plugin_answer(
            "t",
            EventBody::PluginHealth {
                plugin: "polls".into(),
                health: PluginHealth::Quarantined,
                reason: "5 failures".into(),
            },
        );
        assert_eq!(
            code(class.command("s", action("vote", serde_json::json!({})))),
            "unavailable"
        );
        let off = Command::DisablePlugin {
            plugin: "polls".into(),
        };
        assert_eq!(code(class.command("s", off.clone())), "not_permitted");
        assert!(matches!(class.command("t", off.clone()), Ok(Some(_))));
        assert_eq!(class.command("t", off), Ok(None));
        assert!(matches!(class.command("t", enable("polls")), Ok(Some(_))));
        assert!(
            class
                .command("s", action("vote", serde_json::json!({})))
                .is_ok()
        );
    }

    #[test]
    fn panels_and_private_records_reach_only_whom_they_are_for() {
        let mut class = Class::new();
        class
            .command(
                "t",
                Command::EnablePlugin {
                    plugin: "polls".into(),
                },
            )
            .expect("enabled");
        let (t, s, g) = (id("t"), id("s"), id("g"));
        let for_teachers = class.plugin_answer("t", view(Audience::Teachers, "results"));
        let for_students = class.plugin_answer("t", view(Audience::Students, "vote"));
        let for_s = class.plugin_answer(
            "s",
            view(Audience::Participant { id: s.clone() }, "your vote"),
        );
        let record = class.plugin_answer(
            "s",
            EventBody::PluginEvent {
                plugin: "polls".into(),
                cause: Seq(5),
                body: serde_json::json!({"voter": "s"}),
            },
        );
        let notice = class.plugin_answer(
            "s",
            EventBody::PluginNotice {
                plugin: "polls".into(),
                cause: Seq(5),
                to: s.clone(),
                message: "closed".into(),
            },
        );
        let state = &class.state;
        assert!(state.visible(&for_teachers, &t) && !state.visible(&for_teachers, &s));
        assert!(!state.visible(&for_students, &t) && state.visible(&for_students, &g));
        assert!(
            state.visible(&for_s, &s) && !state.visible(&for_s, &g) && !state.visible(&for_s, &t)
        );
        for who in [&t, &s, &g] {
            assert!(!state.visible(&record, who));
        }
        assert!(state.visible(&notice, &s) && !state.visible(&notice, &t));

        // A presenter is still a student to plugins.
        class
            .command(
                "t",
                Command::Grant {
                    participant: g.clone(),
                    permission: Permission::Present,
                },
            )
            .expect("granted");
        assert!(!class.state.visible(&for_teachers, &g));

        let titles = |state: &ClassState, who: &ParticipantId| -> Vec<String> {
            state.snapshot_for(who)["plugins"]["polls"]["views"]
                .as_array()
                .expect("views")
                .iter()
                .map(|v| v["view"]["title"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(titles(&class.state, &t), ["results"]);
        assert_eq!(titles(&class.state, &s), ["vote", "your vote"]);
        assert_eq!(titles(&class.state, &g), ["vote"]);

        // Switched off: its panels go.
        class
            .command(
                "t",
                Command::DisablePlugin {
                    plugin: "polls".into(),
                },
            )
            .expect("disabled");
        assert!(titles(&class.state, &s).is_empty());
    }

    fn stroke(id: u64) -> Stroke {
        Stroke {
            id,
            color: "#ff0000".into(),
            width: 10,
            points: vec![Point(0, 0), Point(10_000, 10_000)],
        }
    }

    fn code(result: Result<Option<EventBody>, Refusal>) -> String {
        result.expect_err("refused").code
    }

    #[test]
    fn students_cannot_present_or_clear_until_granted() {
        let mut class = Class::new();
        let scene = Command::SetScene {
            scene: Scene::WhiteboardAndCamera,
        };
        assert_eq!(code(class.command("s", scene.clone())), "not_permitted");
        assert_eq!(
            code(class.command("s", Command::ClearBoard)),
            "not_permitted"
        );
        assert_eq!(
            code(class.command("s", Command::ShowPage { page: 2 })),
            "not_permitted"
        );
        assert_eq!(
            code(class.command(
                "s",
                Command::Grant {
                    participant: id("s"),
                    permission: Permission::Present,
                }
            )),
            "not_permitted"
        );
        class
            .command(
                "t",
                Command::Grant {
                    participant: id("s"),
                    permission: Permission::Present,
                },
            )
            .expect("the teacher grants");
        assert!(
            class
                .command("s", scene.clone())
                .expect("now allowed")
                .is_some()
        );
        assert_eq!(class.state.scene, Scene::WhiteboardAndCamera);
        // The same scene again changes nothing.
        assert_eq!(class.command("t", scene).expect("allowed"), None);
        class
            .command(
                "t",
                Command::Revoke {
                    participant: id("s"),
                    permission: Permission::Present,
                },
            )
            .expect("revoked");
        assert_eq!(
            code(class.command(
                "s",
                Command::SetScene {
                    scene: Scene::Camera
                }
            )),
            "not_permitted"
        );
    }

    #[test]
    fn chat_is_checked_and_guests_only_read() {
        let mut class = Class::new();
        assert!(
            class
                .command(
                    "s",
                    Command::Chat {
                        text: " hello ".into()
                    }
                )
                .is_ok()
        );
        assert_eq!(
            class.state.chat.back().map(|l| l.text.as_str()),
            Some("hello")
        );
        assert_eq!(
            code(class.command("g", Command::Chat { text: "hi".into() })),
            "not_permitted"
        );
        assert_eq!(
            code(class.command("s", Command::Chat { text: "  ".into() })),
            "invalid"
        );
        let long = "x".repeat(CHAT_CHARS_MAX + 1);
        assert_eq!(
            code(class.command("s", Command::Chat { text: long })),
            "invalid"
        );
        assert_eq!(
            code(class.command("nobody", Command::Chat { text: "hi".into() })),
            "not_in_class"
        );
    }

    #[test]
    fn whiteboard_drawing_needs_permission_and_undo_takes_back_ones_own() {
        let mut class = Class::new();
        assert_eq!(
            code(class.command("s", Command::Draw { stroke: stroke(1) })),
            "not_permitted"
        );
        class
            .command(
                "t",
                Command::Grant {
                    participant: id("s"),
                    permission: Permission::Draw,
                },
            )
            .expect("granted");
        class
            .command("s", Command::Draw { stroke: stroke(1) })
            .expect("draws");
        class
            .command("t", Command::Draw { stroke: stroke(1) })
            .expect("same id, other author");
        class
            .command("s", Command::Draw { stroke: stroke(2) })
            .expect("draws");
        assert_eq!(
            code(class.command("s", Command::Draw { stroke: stroke(2) })),
            "conflict"
        );
        let mut bad = stroke(3);
        bad.points.push(Point(10_001, 0));
        assert_eq!(
            code(class.command("s", Command::Draw { stroke: bad })),
            "invalid"
        );
        assert_eq!(
            code(class.command(
                "s",
                Command::Draw {
                    stroke: stroke(STROKE_ID_MAX + 1)
                }
            )),
            "invalid"
        );
        let mut bad = stroke(3);
        bad.color = "red".into();
        assert_eq!(
            code(class.command("s", Command::Draw { stroke: bad })),
            "invalid"
        );
        // A student erases only its own strokes.
        assert_eq!(
            code(class.command(
                "s",
                Command::Erase {
                    author: id("t"),
                    stroke: 1,
                }
            )),
            "not_permitted"
        );
        class.command("s", Command::Undo).expect("undo");
        let left: Vec<(String, u64)> = class
            .state
            .board
            .iter()
            .map(|s| (s.author.to_string(), s.stroke.id))
            .collect();
        assert_eq!(left, vec![("s".to_owned(), 1), ("t".to_owned(), 1)]);
        class.command("t", Command::ClearBoard).expect("clears");
        assert!(class.state.board.is_empty());
        assert_eq!(code(class.command("s", Command::Undo)), "not_found");
    }

    #[test]
    fn hands_and_removal() {
        let mut class = Class::new();
        class.command("s", Command::RaiseHand).expect("raises");
        assert_eq!(class.command("s", Command::RaiseHand).expect("again"), None);
        class.command("g", Command::RaiseHand).expect("raises");
        assert_eq!(class.state.hands, vec![id("s"), id("g")]);
        assert_eq!(
            code(class.command(
                "s",
                Command::LowerHand {
                    participant: Some(id("g")),
                }
            )),
            "not_permitted"
        );
        assert_eq!(
            code(class.command("s", Command::LowerAllHands)),
            "not_permitted"
        );
        class
            .command("t", Command::LowerAllHands)
            .expect("lowers all");
        assert!(class.state.hands.is_empty());

        assert_eq!(
            code(class.command(
                "s",
                Command::Remove {
                    participant: id("g")
                }
            )),
            "not_permitted"
        );
        assert_eq!(
            code(class.command(
                "t",
                Command::Remove {
                    participant: id("t")
                }
            )),
            "not_permitted"
        );
        class
            .command(
                "t",
                Command::Remove {
                    participant: id("g"),
                },
            )
            .expect("removes");
        assert_eq!(
            code(class.command("g", Command::RaiseHand)),
            "not_permitted"
        );
        let rejoin = Request::Join {
            name: "G".into(),
            role: Role::Guest,
            edge: None,
            edge_name: None,
        };
        assert_eq!(code(class.request("g", rejoin)), "not_permitted");
    }

    #[test]
    fn slides_open_at_page_one_and_pages_stay_in_range() {
        let mut class = Class::new();
        assert_eq!(
            code(class.command("t", Command::ShowPage { page: 1 })),
            "not_found"
        );
        let deck = Deck {
            asset: "0f".repeat(32),
            title: "Optics.pdf".into(),
            pages: 3,
        };
        class
            .command("t", Command::OpenDeck { deck })
            .expect("opens");
        assert_eq!(class.state.page, 1);
        class
            .command("t", Command::ShowPage { page: 3 })
            .expect("turns");
        assert_eq!(
            code(class.command("t", Command::ShowPage { page: 4 })),
            "invalid"
        );
        assert_eq!(
            code(class.command("t", Command::ShowPage { page: 0 })),
            "invalid"
        );
        let bad = Deck {
            asset: "not-a-hash".into(),
            title: "x".into(),
            pages: 1,
        };
        assert_eq!(
            code(class.command("t", Command::OpenDeck { deck: bad })),
            "invalid"
        );
    }
}
