//! Runs a plugin against a scripted class without a node, as the host would: actions become
//! emitted events, emitted events are appended to an in-memory log and handed back through
//! `on_event` in order, views are kept per audience, and the plugin can be restarted from its
//! snapshot or rebuilt from the log.
//!
//! ```text
//! let mut class = Harness::<Polls>::new();
//! let teacher = class.teacher("t-1", "Ms Rivera");
//! class.act(&teacher, "create", r#"{"question":"2+2?","options":["3","4"]}"#)?;
//! assert!(class.view(&Audience::Teachers).unwrap().contains("2+2?"));
//! ```

use std::collections::{BTreeMap, HashMap};

use crate::{Action, Audience, Effect, Event, Host, Level, Participant, Plugin, Role};

/// The host side of the harness: an in-memory key-value store, a seeded random source, and the
/// log lines the plugin wrote.
#[derive(Debug, Default)]
pub struct TestHost {
    pub kv: HashMap<String, Vec<u8>>,
    pub logs: Vec<(Level, String)>,
    seed: u64,
}

impl Host for TestHost {
    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_owned()));
    }

    fn kv_get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.kv.get(key).cloned()
    }

    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.kv.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&mut self, key: &str) {
        self.kv.remove(key);
    }

    fn random_u64(&mut self) -> u64 {
        // SplitMix64: reproducible across runs.
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A class with one plugin in it.
pub struct Harness<P: Plugin> {
    pub plugin: P,
    pub host: TestHost,
    /// Every event handed to the plugin, in order (its own and scripted core events).
    pub log: Vec<Event>,
    /// The latest view per audience.
    pub views: BTreeMap<Audience, String>,
    /// Chat lines the plugin posted.
    pub chat: Vec<String>,
    name: String,
    clock_ms: u64,
}

impl<P: Plugin> Default for Harness<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Plugin> Harness<P> {
    pub fn new() -> Self {
        Self {
            plugin: P::new(),
            host: TestHost::default(),
            log: Vec::new(),
            views: BTreeMap::new(),
            chat: Vec::new(),
            name: P::manifest().name,
            clock_ms: 1_800_000_000_000,
        }
    }

    pub fn teacher(&self, id: &str, name: &str) -> Participant {
        participant(id, name, Role::Teacher)
    }

    pub fn student(&self, id: &str, name: &str) -> Participant {
        participant(id, name, Role::Student)
    }

    /// Moves the class's clock on.
    pub fn advance_ms(&mut self, ms: u64) {
        self.clock_ms += ms;
    }

    /// A participant's action, carried out as the host would; returns the plugin's error, if
    /// it refused.
    pub fn act(&mut self, actor: &Participant, name: &str, payload: &str) -> Result<(), String> {
        let action = Action {
            actor: actor.clone(),
            at_ms: self.clock_ms,
            name: name.to_owned(),
            payload: payload.to_owned(),
        };
        let mut context = crate::Context::new(&mut self.host);
        self.plugin.on_action(&mut context, &action)?;
        let effects = context.into_effects();
        self.apply(actor, effects)
    }

    /// A core event of the class (a chat line, someone joining) as the plugin would get it.
    pub fn core_event(
        &mut self,
        actor: &Participant,
        kind: &str,
        body: &str,
    ) -> Result<(), String> {
        let event = self.append(actor, kind, "", body);
        self.deliver(actor, &event)
    }

    /// The teacher switches the plugin on: it gets its "enabled" event, as in a class.
    pub fn enable(&mut self, teacher: &Participant) -> Result<(), String> {
        self.core_event(teacher, "enabled", "{}")
    }

    /// The latest view for an audience.
    pub fn view(&self, audience: &Audience) -> Option<&str> {
        self.views.get(audience).map(String::as_str)
    }

    /// The view a participant sees: their own, else their role's, else everyone's.
    pub fn view_of(&self, participant: &Participant) -> Option<&str> {
        let role = if participant.is_teacher() {
            Audience::Teachers
        } else {
            Audience::Students
        };
        self.view(&Audience::Participant(participant.id.clone()))
            .or_else(|| self.view(&role))
            .or_else(|| self.view(&Audience::Everyone))
    }

    /// Restarts the plugin from its snapshot (as after a crash or a hot upgrade).
    pub fn restart_from_snapshot(&mut self) -> Result<(), String> {
        let bytes = self.plugin.snapshot();
        self.plugin = P::restore(&bytes)?;
        Ok(())
    }

    /// Rebuilds the plugin from nothing by replaying the log (as a new replica would).
    pub fn rebuild_from_log(&mut self) -> Result<(), String> {
        self.plugin = P::new();
        self.views.clear();
        let log = std::mem::take(&mut self.log);
        for event in &log {
            let mut context = crate::Context::new(&mut self.host);
            self.plugin.on_event(&mut context, event)?;
            for effect in context.into_effects() {
                if let Effect::Show { audience, body } = effect {
                    self.views.insert(audience, body);
                }
            }
        }
        self.log = log;
        Ok(())
    }

    fn append(&mut self, actor: &Participant, kind: &str, plugin: &str, body: &str) -> Event {
        let event = Event {
            seq: self.log.len() as u64 + 1,
            at_ms: self.clock_ms,
            actor: actor.clone(),
            kind: kind.to_owned(),
            plugin: plugin.to_owned(),
            body: body.to_owned(),
        };
        self.log.push(event.clone());
        event
    }

    fn deliver(&mut self, actor: &Participant, event: &Event) -> Result<(), String> {
        let mut context = crate::Context::new(&mut self.host);
        self.plugin.on_event(&mut context, event)?;
        let effects = context.into_effects();
        self.apply(actor, effects)
    }

    fn apply(&mut self, actor: &Participant, effects: Vec<Effect>) -> Result<(), String> {
        for effect in effects {
            match effect {
                Effect::Emit(body) => {
                    let name = self.name.clone();
                    let event = self.append(actor, "plugin", &name, &body);
                    self.deliver(actor, &event)?;
                }
                Effect::Show { audience, body } => {
                    self.views.insert(audience, body);
                }
                Effect::PostChat(text) => self.chat.push(text),
            }
        }
        Ok(())
    }
}

fn participant(id: &str, name: &str, role: Role) -> Participant {
    Participant {
        id: id.to_owned(),
        name: name.to_owned(),
        role,
    }
}
