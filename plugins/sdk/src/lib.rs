//! The multistream plugin SDK: write a classroom feature as a [`Plugin`] — a reducer over its
//! class's session log — and test it with [`testing::Harness`] without a node.
//!
//! The types here mirror the WIT contract in `wit/plugin.wit` (`multistream:plugin@0.1.0`); a
//! plugin written against them is built for `wasm32-wasip2` and loaded by a node, or run natively
//! by the harness in `cargo test`.
//!
//! The rule that makes a plugin safe to restart, upgrade and replay: change state only in
//! [`Plugin::on_event`]. An action is checked and turned into an emitted event
//! ([`Context::emit`]); the event comes back through `on_event`, in log order, on every replica
//! and in every replay.

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the bindings wit-bindgen generates
pub mod guest;
pub mod testing;
pub mod view;

/// Makes a [`Plugin`] the component's exports (a no-op outside `wasm32`).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! plugin {
    ($plugin:ty) => {};
}

use serde::{Deserialize, Serialize};

/// A participant's role in the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Teacher,
    Student,
    Guest,
}

/// Someone in the class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: String,
    pub name: String,
    pub role: Role,
}

impl Participant {
    pub fn is_teacher(&self) -> bool {
        self.role == Role::Teacher
    }
}

/// An event of the session log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    /// When the home edge recorded it, ms since the Unix epoch: the only clock a plugin has.
    pub at_ms: u64,
    pub actor: Participant,
    /// "plugin" for plugin events, else a core kind ("joined", "chat", ...).
    pub kind: String,
    /// The emitting plugin's name, for "plugin" events.
    pub plugin: String,
    /// JSON.
    pub body: String,
}

/// A participant's action in the plugin's panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub actor: Participant,
    pub at_ms: u64,
    pub name: String,
    /// JSON.
    pub payload: String,
}

/// Who a view is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Audience {
    Everyone,
    Teachers,
    Students,
    Participant(String),
}

/// What a plugin asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Append a plugin event (JSON body) to the session log.
    Emit(String),
    /// Show a panel (a JSON view) to an audience.
    Show { audience: Audience, body: String },
    /// Post a chat line in the plugin's name.
    PostChat(String),
}

/// What a plugin may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    EmitEvents,
    ShowPanel,
    PostChat,
    StoreState,
}

/// Who the plugin is and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub title: String,
    pub subscribes: Vec<String>,
    pub capabilities: Vec<Capability>,
}

impl Manifest {
    /// A manifest that subscribes to no core events (add them to `subscribes` if needed).
    /// `version` is usually `env!("CARGO_PKG_VERSION")`.
    pub fn new(name: &str, version: &str, title: &str, capabilities: &[Capability]) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            title: title.into(),
            subscribes: Vec::new(),
            capabilities: capabilities.to_vec(),
        }
    }
}

/// A snapshot of a state that serializes to JSON (for [`Plugin::snapshot`]).
pub fn snapshot_json(state: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(state).unwrap_or_default()
}

/// The state from a [`snapshot_json`] snapshot (for [`Plugin::restore`]).
pub fn restore_json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|error| format!("not a {what} snapshot: {error}"))
}

/// Log levels of [`Host::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// What the host offers during a call.
pub trait Host {
    fn log(&mut self, level: Level, message: &str);
    fn kv_get(&mut self, key: &str) -> Option<Vec<u8>>;
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    fn kv_delete(&mut self, key: &str);
    /// Seeded from the class and the event being handled: the same on every replay.
    fn random_u64(&mut self) -> u64;
}

/// One call's effects, and the host.
pub struct Context<'a> {
    effects: Vec<Effect>,
    host: &'a mut dyn Host,
}

impl<'a> Context<'a> {
    pub fn new(host: &'a mut dyn Host) -> Self {
        Self {
            effects: Vec::new(),
            host,
        }
    }

    /// Appends a plugin event to the log; it comes back through [`Plugin::on_event`].
    pub fn emit(&mut self, body: &impl Serialize) {
        if let Ok(json) = serde_json::to_string(body) {
            self.effects.push(Effect::Emit(json));
        }
    }

    /// Shows a panel to an audience (replacing what it showed that audience before).
    pub fn show(&mut self, audience: Audience, view: &impl Serialize) {
        if let Ok(body) = serde_json::to_string(view) {
            self.effects.push(Effect::Show { audience, body });
        }
    }

    /// Posts a chat line in the plugin's name.
    pub fn post_chat(&mut self, text: impl Into<String>) {
        self.effects.push(Effect::PostChat(text.into()));
    }

    pub fn log(&mut self, level: Level, message: &str) {
        self.host.log(level, message);
    }

    /// Adds an effect as it is (the host still checks that event and view bodies are JSON).
    pub fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    pub fn host(&mut self) -> &mut dyn Host {
        self.host
    }

    pub fn into_effects(self) -> Vec<Effect> {
        self.effects
    }
}

/// A classroom feature.
pub trait Plugin: Sized {
    fn manifest() -> Manifest;

    /// A fresh instance for a class that has not used the plugin yet.
    fn new() -> Self;

    /// An event of the log: the plugin's own (change state here) or a subscribed core kind.
    fn on_event(&mut self, context: &mut Context<'_>, event: &Event) -> Result<(), String>;

    /// A participant's action: check it, and emit the event that records it.
    fn on_action(&mut self, context: &mut Context<'_>, action: &Action) -> Result<(), String>;

    /// The whole state.
    fn snapshot(&self) -> Vec<u8>;

    /// The state from a snapshot (of this version or an older one).
    fn restore(bytes: &[u8]) -> Result<Self, String>;
}

/// Parses a JSON payload or body, with an error a participant can read.
pub fn parse<T: for<'de> Deserialize<'de>>(json: &str, what: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|error| format!("{what} is not understood: {error}"))
}
