//! The plugin thread: one [`Supervisor`] per plugin per class this edge is home for, fed the
//! class's durable events in order; what the plugins answer goes back to the session task as
//! events for the log.
//!
//! - An action event (`plugin_action`) is given to `on_action`; the plugin's own records
//!   (`plugin_event`) and the core kinds it subscribed to go to `on_event`.
//! - Every answer is checked again against the log's limits (sizes, chat rules, participant ids)
//!   before anything of it is used; an answer that breaks them counts as a failed call.
//! - A refused or failed action becomes a notice for the participant who acted; health changes
//!   become `plugin_health` events, so the teacher sees them wherever they are connected.
//! - While a failed plugin waits out its backoff, its events wait in a bounded backlog, in order.
//! - Starting a plugin in a class (after a restart, or when switched on again) replays the log's
//!   events through `on_event` with their effects dropped, except that panels which differ from
//!   what the class shows are sent again; actions the plugin never answered (the edge stopped in
//!   between) are answered then.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use multistream_plugin_host::supervisor::{Health, Stats, Supervisor, SupervisorError};
use multistream_plugin_host::{
    Action, Audience as HostAudience, CallError, Capability, Code, Effect, Event as HostEvent,
    Participant, Role as HostRole, Runtime, package,
};
use multistream_proto::session::{
    Audience, CHAT_CHARS_MAX, Event, EventBody, PLUGIN_BODY_BYTES_MAX, PLUGIN_VIEW_BYTES_MAX,
    PluginHealth, Seq,
};
use multistream_proto::{ParticipantId, Role, SessionId};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{
    BACKLOG_MAX, Job, PACKAGE_EXTENSION, PluginNews, PluginSettings, PluginStatus, PluginsStatus,
    RESCAN_INTERVAL, RefusedPackage, STATUS_INTERVAL, Who,
};
use crate::log::class::{PluginCatalog, PluginInfo};

struct Loaded {
    code: Arc<Code>,
    origin: String,
}

struct Item {
    event: Event,
    actor: Who,
    /// An action from before the plugin (re)started that it never answered: given to it even
    /// though it lies before `handled`.
    unanswered: bool,
}

struct Slot {
    supervisor: Supervisor,
    version: String,
    title: String,
    subscribes: Vec<String>,
    /// The last event given to the plugin (or skipped as not for it).
    handled: Seq,
    /// The panels last sent, per audience: an unchanged panel is not recorded again.
    views: BTreeMap<Audience, serde_json::Value>,
    health: PluginHealth,
    backlog: VecDeque<Item>,
    /// Who switched it on: the actor of the upgrade events.
    enabled_by: ParticipantId,
}

pub(super) struct Worker {
    runtime: Runtime,
    settings: PluginSettings,
    loaded: BTreeMap<String, Loaded>,
    /// Package files seen, with their modification time and length.
    files: HashMap<PathBuf, (Option<SystemTime>, u64)>,
    refused: BTreeMap<String, String>,
    slots: HashMap<(SessionId, String), Slot>,
    /// Counters of plugins in classes that ended or switched them off.
    retired: BTreeMap<String, Stats>,
    news: mpsc::Sender<PluginNews>,
    status: watch::Sender<PluginsStatus>,
    /// Counters changed since the status was last published.
    dirty: bool,
    published_at: Instant,
    upgrades: u64,
    upgrades_failed: u64,
}

impl Worker {
    pub(super) fn new(
        settings: PluginSettings,
        news: mpsc::Sender<PluginNews>,
        status: watch::Sender<PluginsStatus>,
    ) -> anyhow::Result<Worker> {
        if let Some(dir) = &settings.cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        let runtime = Runtime::new(settings.limits, settings.cache_dir.as_deref())?;
        let mut worker = Worker {
            runtime,
            settings,
            loaded: BTreeMap::new(),
            files: HashMap::new(),
            refused: BTreeMap::new(),
            slots: HashMap::new(),
            retired: BTreeMap::new(),
            news,
            status,
            dirty: true,
            published_at: Instant::now(),
            upgrades: 0,
            upgrades_failed: 0,
        };
        if worker.settings.builtin {
            for (name, wasm) in super::builtin::BUILTIN {
                let code = worker.runtime.load(wasm).map_err(|e| {
                    anyhow::anyhow!("the built-in plugin {name} does not load: {e:#}")
                })?;
                worker.loaded.insert(
                    code.manifest.name.clone(),
                    Loaded {
                        code: Arc::new(code),
                        origin: "built in".into(),
                    },
                );
            }
        }
        worker.rescan(Instant::now());
        worker.publish_status(Instant::now());
        for (name, loaded) in &worker.loaded {
            info!(plugin = %name, version = %loaded.code.manifest.version, origin = %loaded.origin, "plugin loaded");
        }
        Ok(worker)
    }

    pub(super) fn catalog(&self) -> PluginCatalog {
        self.loaded
            .iter()
            .map(|(name, loaded)| {
                (
                    name.clone(),
                    PluginInfo {
                        version: loaded.code.manifest.version.clone(),
                        title: loaded.code.manifest.title.clone(),
                        subscribes: loaded.code.manifest.subscribes.clone(),
                    },
                )
            })
            .collect()
    }

    pub(super) fn run(&mut self, jobs: std::sync::mpsc::Receiver<Job>) {
        let mut rescan_at = Instant::now() + RESCAN_INTERVAL;
        loop {
            let now = Instant::now();
            let wake = self
                .slots
                .values()
                .filter(|slot| !slot.backlog.is_empty())
                .filter_map(|slot| slot.supervisor.retry_at())
                .chain([rescan_at])
                .chain(self.dirty.then_some(self.published_at + STATUS_INTERVAL))
                .min()
                .unwrap_or(rescan_at);
            match jobs.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(job) => self.handle(job),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= rescan_at {
                self.rescan(now);
                rescan_at = now + RESCAN_INTERVAL;
            }
            let waiting: Vec<(SessionId, String)> = self
                .slots
                .iter()
                .filter(|(_, slot)| {
                    !slot.backlog.is_empty()
                        && slot.supervisor.retry_at().is_none_or(|at| at <= now)
                })
                .map(|(key, _)| key.clone())
                .collect();
            for key in waiting {
                self.pump(&key, now);
            }
            if self.dirty && now >= self.published_at + STATUS_INTERVAL {
                self.publish_status(now);
            }
        }
    }

    fn publish_status(&mut self, now: Instant) {
        let status = self.status();
        self.status.send_replace(status);
        self.dirty = false;
        self.published_at = now;
    }

    fn handle(&mut self, job: Job) {
        let now = Instant::now();
        self.dirty = true;
        match job {
            Job::Start {
                session,
                plugin,
                history,
                members,
                views,
                force,
            } => self.start(now, session, plugin, history, members, views, force),
            Job::Event {
                session,
                event,
                actor,
            } => {
                let keys: Vec<(SessionId, String)> = self
                    .slots
                    .keys()
                    .filter(|(s, _)| *s == session)
                    .cloned()
                    .collect();
                for key in keys {
                    let Some(slot) = self.slots.get_mut(&key) else {
                        continue;
                    };
                    if slot.backlog.len() >= BACKLOG_MAX {
                        // It has been down for long; what it misses is in the log, and it is
                        // rebuilt from there when it is switched on again.
                        slot.supervisor.reject(now, "its backlog overflowed".into());
                        continue;
                    }
                    slot.backlog.push_back(Item {
                        event: event.clone(),
                        actor: actor.clone(),
                        unanswered: false,
                    });
                    self.pump(&key, now);
                }
            }
            Job::Stop { session, plugin } => {
                if let Some(slot) = self.slots.remove(&(session, plugin.clone())) {
                    retire(&mut self.retired, &plugin, &slot.supervisor.stats);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        now: Instant,
        session: SessionId,
        plugin: String,
        history: Vec<Event>,
        members: BTreeMap<ParticipantId, Who>,
        views: BTreeMap<Audience, serde_json::Value>,
        force: bool,
    ) {
        let key = (session.clone(), plugin.clone());
        let Some(loaded) = self.loaded.get(&plugin) else {
            let reason =
                format!("the plugin {plugin:?} is not installed on this class's home edge");
            warn!(%session, %plugin, "{reason}");
            let actor = history.last().map(|e| e.actor.clone());
            if let Some(actor) = actor {
                self.send_output(
                    &session,
                    vec![(
                        actor,
                        EventBody::PluginHealth {
                            plugin,
                            health: PluginHealth::Quarantined,
                            reason,
                        },
                    )],
                );
            }
            return;
        };
        let manifest = &loaded.code.manifest;
        if !force
            && self
                .slots
                .get(&key)
                .is_some_and(|slot| slot.version == manifest.version)
        {
            return;
        }
        if let Some(old) = self.slots.remove(&key) {
            retire(&mut self.retired, &plugin, &old.supervisor.stats);
        }
        let enabled_by = history
            .iter()
            .rev()
            .find(|e| matches!(&e.body, EventBody::PluginEnabled { plugin: p, .. } if *p == plugin))
            .map(|e| e.actor.clone());
        let Some(enabled_by) = enabled_by else {
            return;
        };
        let mut slot = Slot {
            supervisor: Supervisor::new(
                Arc::clone(&loaded.code),
                session.as_str(),
                seed(&session, &plugin),
            ),
            version: manifest.version.clone(),
            title: manifest.title.clone(),
            subscribes: manifest.subscribes.clone(),
            handled: Seq::ZERO,
            views: BTreeMap::new(),
            health: PluginHealth::Healthy,
            backlog: VecDeque::new(),
            enabled_by,
        };
        // Rebuild the state from the log, keeping only the panels it leads to.
        let mut answered = Seq::ZERO;
        let mut replayed: BTreeMap<Audience, serde_json::Value> = BTreeMap::new();
        let last = history.last().map(|e| e.seq).unwrap_or_default();
        for event in &history {
            if let Some(cause) = caused_by(&event.body, &plugin) {
                answered = answered.max(cause);
            }
            let actor = members
                .get(&event.actor)
                .cloned()
                .unwrap_or_else(|| Who::unknown(&event.actor));
            let Some(input) = event_input(&slot, &plugin, event, &actor) else {
                continue;
            };
            if let Ok(effects) = slot.supervisor.on_event(&self.runtime, now, &input) {
                for effect in effects {
                    if let Effect::Show(view) = effect
                        && let (Ok(audience), Ok(value)) = (
                            audience(&view.audience),
                            serde_json::from_str::<serde_json::Value>(&view.body),
                        )
                    {
                        replayed.insert(audience, value);
                    }
                }
            }
        }
        slot.views = views;
        let mut output = Vec::new();
        for (audience, view) in replayed {
            if slot.views.get(&audience) != Some(&view) {
                slot.views.insert(audience.clone(), view.clone());
                output.push((
                    slot.enabled_by.clone(),
                    EventBody::PluginView {
                        plugin: plugin.clone(),
                        cause: last,
                        audience,
                        view,
                    },
                ));
            }
        }
        output.extend(health_change(&plugin, &mut slot));
        // Actions the plugin never answered (the edge stopped in between) are answered now.
        slot.handled = last;
        for event in history.into_iter().filter(|e| e.seq > answered) {
            if matches!(&event.body, EventBody::PluginAction { plugin: p, .. } if *p == plugin) {
                let actor = members
                    .get(&event.actor)
                    .cloned()
                    .unwrap_or_else(|| Who::unknown(&event.actor));
                slot.backlog.push_back(Item {
                    event,
                    actor,
                    unanswered: true,
                });
            }
        }
        info!(%session, %plugin, version = %slot.version, "plugin started for the class");
        self.slots.insert(key.clone(), slot);
        self.send_output(&session, output);
        self.pump(&key, now);
    }

    /// Gives a slot's waiting events to its plugin, in order, until it must wait for a rebuild.
    fn pump(&mut self, key: &(SessionId, String), now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let plugin = &key.1;
        let mut output = Vec::new();
        while let Some(item) = slot.backlog.pop_front() {
            match step(&self.runtime, plugin, slot, &item, now) {
                Some(events) => output.extend(events),
                None => {
                    slot.backlog.push_front(item);
                    break;
                }
            }
        }
        self.send_output(&key.0, output);
    }

    fn send_output(&self, session: &SessionId, events: Vec<(ParticipantId, EventBody)>) {
        if events.is_empty() {
            return;
        }
        let news = PluginNews::Output {
            session: session.clone(),
            events,
        };
        // Waits for the session task rather than losing a plugin's answer.
        let _ = self.news.blocking_send(news);
    }

    /// Loads packages that are new or changed in the plugin directory; a new version of a
    /// loaded plugin is moved into the classes that run it.
    fn rescan(&mut self, now: Instant) {
        let Ok(entries) = std::fs::read_dir(&self.settings.dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == PACKAGE_EXTENSION))
            .collect();
        paths.sort();
        let mut changed = false;
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mark = (meta.modified().ok(), meta.len());
            if self.files.get(&path) == Some(&mark) {
                continue;
            }
            self.files.insert(path.clone(), mark);
            // Named by file name only: `/api/plugins` is public, the node's paths are not.
            let file = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            match self.load_package(&path) {
                Ok(code) => {
                    self.refused.remove(&file);
                    changed |= self.install(now, code, &file);
                }
                Err(reason) => {
                    warn!(package = %file, dir = %self.settings.dir.display(), %reason, "plugin package refused");
                    self.refused.insert(file, reason);
                    self.dirty = true;
                }
            }
        }
        if changed {
            self.dirty = true;
            let _ = self.news.blocking_send(PluginNews::Catalog(self.catalog()));
        }
    }

    fn load_package(&self, path: &std::path::Path) -> Result<(Code, String), String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
        if bytes.len() > package::PACKAGE_BYTES_MAX {
            return Err(package::PackageError::TooLarge(bytes.len()).to_string());
        }
        // The configured signers, and those the control plane approved (written beside the
        // packages by the control link).
        let mut trusted = self.settings.trusted_keys.clone();
        if let Ok(approved) =
            std::fs::read_to_string(self.settings.dir.join(crate::control::TRUSTED_KEYS_FILE))
        {
            trusted.extend(
                approved
                    .lines()
                    .map(|l| l.trim().to_owned())
                    .filter(|l| l.len() == 64),
            );
        }
        let verified = package::open(&bytes, &trusted).map_err(|e| e.to_string())?;
        let code = self
            .runtime
            .load(&verified.wasm)
            .map_err(|e| format!("the component does not load: {e:#}"))?;
        if code.manifest.name != verified.name || code.manifest.version != verified.version {
            return Err(format!(
                "the package says {} {} but the component is {} {}",
                verified.name, verified.version, code.manifest.name, code.manifest.version
            ));
        }
        Ok((code, verified.key))
    }

    /// Makes a verified package the loaded version of its plugin. Returns whether the catalog
    /// changed.
    fn install(&mut self, now: Instant, (code, key): (Code, String), file: &str) -> bool {
        let name = code.manifest.name.clone();
        let version = code.manifest.version.clone();
        if self
            .loaded
            .get(&name)
            .is_some_and(|l| l.code.manifest.version == version)
        {
            return false;
        }
        let code = Arc::new(code);
        info!(plugin = %name, %version, package = %file, "plugin package loaded");
        let running: Vec<(SessionId, String)> = self
            .slots
            .keys()
            .filter(|(_, plugin)| *plugin == name)
            .cloned()
            .collect();
        for key in running {
            let Some(slot) = self.slots.get_mut(&key) else {
                continue;
            };
            match slot
                .supervisor
                .upgrade(&self.runtime, now, Arc::clone(&code))
            {
                Ok(()) => {
                    self.upgrades += 1;
                    slot.version.clone_from(&version);
                    slot.title.clone_from(&code.manifest.title);
                    slot.subscribes.clone_from(&code.manifest.subscribes);
                    info!(session = %key.0, plugin = %name, %version, "plugin upgraded in a running class, state carried over");
                    let event = (
                        slot.enabled_by.clone(),
                        EventBody::PluginEnabled {
                            plugin: name.clone(),
                            version: version.clone(),
                            title: code.manifest.title.clone(),
                        },
                    );
                    self.send_output(&key.0, vec![event]);
                }
                Err(error) => {
                    self.upgrades_failed += 1;
                    warn!(session = %key.0, plugin = %name, %version, %error, "upgrade failed; the class keeps the running version");
                }
            }
        }
        self.loaded.insert(
            name,
            Loaded {
                code,
                origin: format!("{file} (signed by {key})"),
            },
        );
        true
    }

    fn status(&self) -> PluginsStatus {
        let plugins = self
            .loaded
            .iter()
            .map(|(name, loaded)| {
                let manifest = &loaded.code.manifest;
                let mut status = PluginStatus {
                    name: name.clone(),
                    version: manifest.version.clone(),
                    title: manifest.title.clone(),
                    origin: loaded.origin.clone(),
                    capabilities: manifest
                        .capabilities
                        .iter()
                        .map(|c| capability_name(*c).to_owned())
                        .collect(),
                    subscribes: manifest.subscribes.clone(),
                    classes: 0,
                    degraded: 0,
                    quarantined: 0,
                    calls: 0,
                    failures: 0,
                    restarts: 0,
                    call_seconds: 0.0,
                };
                let mut add = |stats: &Stats| {
                    status.calls += stats.calls;
                    status.failures += stats.failures;
                    status.restarts += stats.restarts;
                    status.call_seconds += stats.call_time.as_secs_f64();
                };
                if let Some(stats) = self.retired.get(name) {
                    add(stats);
                }
                for ((_, plugin), slot) in &self.slots {
                    if plugin == name {
                        add(&slot.supervisor.stats);
                        status.classes += 1;
                        match slot.supervisor.health() {
                            Health::Healthy => {}
                            Health::Degraded { .. } => status.degraded += 1,
                            Health::Quarantined { .. } => status.quarantined += 1,
                        }
                    }
                }
                status
            })
            .collect();
        PluginsStatus {
            plugins,
            refused: self
                .refused
                .iter()
                .map(|(file, reason)| RefusedPackage {
                    file: file.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            upgrades: self.upgrades,
            upgrades_failed: self.upgrades_failed,
        }
    }
}

/// A capability as the contract names it.
fn capability_name(capability: Capability) -> &'static str {
    match capability {
        Capability::EmitEvents => "emit-events",
        Capability::ShowPanel => "show-panel",
        Capability::PostChat => "post-chat",
        Capability::StoreState => "store-state",
    }
}

fn retire(retired: &mut BTreeMap<String, Stats>, plugin: &str, stats: &Stats) {
    let total = retired.entry(plugin.to_owned()).or_default();
    total.calls += stats.calls;
    total.failures += stats.failures;
    total.restarts += stats.restarts;
    total.call_time += stats.call_time;
}

/// The random seed of a plugin in a class: the same on every edge and every rebuild.
fn seed(session: &SessionId, plugin: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in session.as_str().bytes().chain([0]).chain(plugin.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The event a plugin's answer was caused by, for events of `plugin`'s answers.
fn caused_by(body: &EventBody, plugin: &str) -> Option<Seq> {
    match body {
        EventBody::PluginEvent {
            plugin: p, cause, ..
        }
        | EventBody::PluginView {
            plugin: p, cause, ..
        }
        | EventBody::PluginChat {
            plugin: p, cause, ..
        }
        | EventBody::PluginNotice {
            plugin: p, cause, ..
        } if p == plugin => Some(*cause),
        _ => None,
    }
}

fn participant(who: &Who) -> Participant {
    Participant {
        id: who.id.to_string(),
        name: who.name.clone(),
        role: match who.role {
            Role::Teacher => HostRole::Teacher,
            Role::Student => HostRole::Student,
            Role::Guest => HostRole::Guest,
        },
    }
}

/// The event as `on_event` gets it, when the plugin takes it: its own records, and the core
/// kinds it subscribed to.
fn event_input(slot: &Slot, plugin: &str, event: &Event, actor: &Who) -> Option<HostEvent> {
    let (kind, from, body) = match &event.body {
        EventBody::PluginEvent {
            plugin: p, body, ..
        } if p == plugin => ("plugin".to_owned(), p.clone(), body.to_string()),
        EventBody::PluginEnabled { plugin: p, .. } if p == plugin => (
            "enabled".to_owned(),
            String::new(),
            serde_json::to_string(&event.body).ok()?,
        ),
        EventBody::Opaque(_)
        | EventBody::PluginEvent { .. }
        | EventBody::PluginAction { .. }
        | EventBody::PluginView { .. }
        | EventBody::PluginNotice { .. } => return None,
        body => {
            let value = serde_json::to_value(body).ok()?;
            let kind = value.get("type")?.as_str()?.to_owned();
            if !slot.subscribes.contains(&kind) {
                return None;
            }
            (kind, String::new(), value.to_string())
        }
    };
    Some(HostEvent {
        seq: event.seq.0,
        at_ms: event.at_ms,
        actor: participant(actor),
        kind,
        plugin: from,
        body,
    })
}

/// Gives one event to a slot's plugin. `None`: the plugin is being rebuilt; try again later.
fn step(
    runtime: &Runtime,
    plugin: &str,
    slot: &mut Slot,
    item: &Item,
    now: Instant,
) -> Option<Vec<(ParticipantId, EventBody)>> {
    let event = &item.event;
    if event.seq <= slot.handled && !item.unanswered {
        return Some(Vec::new());
    }
    let mut output = Vec::new();
    let (result, action) = match &event.body {
        EventBody::PluginAction {
            plugin: p,
            action,
            payload,
        } if p == plugin => {
            let action = Action {
                actor: participant(&item.actor),
                at_ms: event.at_ms,
                name: action.clone(),
                payload: payload.to_string(),
            };
            (Some(slot.supervisor.on_action(runtime, now, &action)), true)
        }
        _ => match event_input(slot, plugin, event, &item.actor) {
            Some(input) => (Some(slot.supervisor.on_event(runtime, now, &input)), false),
            None => (None, false),
        },
    };
    let notice = |message: String| EventBody::PluginNotice {
        plugin: plugin.to_owned(),
        cause: event.seq,
        to: event.actor.clone(),
        message,
    };
    match result {
        None => {}
        Some(Ok(effects)) => match convert(plugin, slot, event.seq, effects) {
            Ok(bodies) => output.extend(bodies.into_iter().map(|b| (event.actor.clone(), b))),
            Err(reason) => {
                warn!(%plugin, %reason, "plugin answer refused");
                slot.supervisor.reject(now, reason);
                if action {
                    output.push((
                        event.actor.clone(),
                        notice(format!("{} failed to answer; try again", slot.title)),
                    ));
                }
            }
        },
        Some(Err(SupervisorError::Restarting)) => return None,
        Some(Err(SupervisorError::Call(CallError::Refused(message)))) if action => {
            output.push((event.actor.clone(), notice(message)));
        }
        Some(Err(error)) if action => {
            let message = format!("{} failed: {}", slot.title, first_line(&error.to_string()));
            output.push((event.actor.clone(), notice(message)));
        }
        // A failed event is counted by the supervisor and shows in the plugin's health.
        Some(Err(_)) => {}
    }
    slot.handled = slot.handled.max(event.seq);
    output.extend(health_change(plugin, slot));
    Some(output)
}

/// The first line of an error, at most 300 characters: a wasm backtrace is for the node's log,
/// not for the class.
fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// A `plugin_health` event when the plugin's health changed since the last one.
fn health_change(plugin: &str, slot: &mut Slot) -> Option<(ParticipantId, EventBody)> {
    let (health, reason) = match slot.supervisor.health() {
        Health::Healthy => (PluginHealth::Healthy, String::new()),
        Health::Degraded { reason } => (PluginHealth::Degraded, reason.clone()),
        Health::Quarantined { reason } => (PluginHealth::Quarantined, reason.clone()),
    };
    if health == slot.health {
        return None;
    }
    slot.health = health;
    Some((
        slot.enabled_by.clone(),
        EventBody::PluginHealth {
            plugin: plugin.to_owned(),
            health,
            reason: first_line(&reason),
        },
    ))
}

fn audience(audience: &HostAudience) -> Result<Audience, String> {
    Ok(match audience {
        HostAudience::Everyone => Audience::Everyone,
        HostAudience::Teachers => Audience::Teachers,
        HostAudience::Students => Audience::Students,
        HostAudience::Participant(id) => Audience::Participant {
            id: id
                .parse()
                .map_err(|e| format!("a panel for {id:?}, which is not a participant id: {e}"))?,
        },
    })
}

/// A plugin's answer as log events, checked against the log's rules. All or nothing.
fn convert(
    plugin: &str,
    slot: &mut Slot,
    cause: Seq,
    effects: Vec<Effect>,
) -> Result<Vec<EventBody>, String> {
    let mut bodies = Vec::new();
    let mut views = Vec::new();
    for effect in effects {
        match effect {
            Effect::Emit(body) => {
                if body.len() > PLUGIN_BODY_BYTES_MAX {
                    return Err(format!(
                        "an event of {} bytes; the limit is {PLUGIN_BODY_BYTES_MAX}",
                        body.len()
                    ));
                }
                let body =
                    serde_json::from_str(&body).map_err(|e| format!("an event body: {e}"))?;
                bodies.push(EventBody::PluginEvent {
                    plugin: plugin.to_owned(),
                    cause,
                    body,
                });
            }
            Effect::Show(view) => {
                if view.body.len() > PLUGIN_VIEW_BYTES_MAX {
                    return Err(format!(
                        "a panel of {} bytes; the limit is {PLUGIN_VIEW_BYTES_MAX}",
                        view.body.len()
                    ));
                }
                let value = serde_json::from_str::<serde_json::Value>(&view.body)
                    .map_err(|e| format!("a panel: {e}"))?;
                if !value.is_object() {
                    return Err("a panel is a JSON object".into());
                }
                views.push((audience(&view.audience)?, value));
            }
            Effect::PostChat(text) => {
                let text = text.trim();
                let chars = text.chars().count();
                if chars == 0 || chars > CHAT_CHARS_MAX {
                    return Err(format!(
                        "a chat line has 1 to {CHAT_CHARS_MAX} characters, not {chars}"
                    ));
                }
                bodies.push(EventBody::PluginChat {
                    plugin: plugin.to_owned(),
                    cause,
                    text: text.to_owned(),
                });
            }
        }
    }
    for (audience, view) in views {
        if slot.views.get(&audience) == Some(&view) {
            continue;
        }
        slot.views.insert(audience.clone(), view.clone());
        bodies.push(EventBody::PluginView {
            plugin: plugin.to_owned(),
            cause,
            audience,
            view,
        });
    }
    Ok(bodies)
}
