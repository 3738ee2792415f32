//! Feature plugins on the node: which are loaded (built in, or signed packages from
//! `<data_dir>/plugins/`), and the plugin thread that runs them for the classes this edge is home
//! for.
//!
//! The session task tells the thread about every durable event of a class with a plugin on
//! ([`PluginFeed`]); the thread calls the plugins under the host's limits (`worker.rs`) and sends
//! back what they answered as events for the log ([`PluginNews::Output`]), which the home
//! appends like any other: they replicate to the other edges and stay for the replay. Plugin
//! calls never run on the session task or the media thread, so a plugin that loops costs the
//! class nothing but its own feature.
//!
//! The plugin directory is checked every [`RESCAN_INTERVAL`]: a new signed package is verified
//! and loaded, and the classes running an older version of it move to the new one with their
//! state (snapshot, then restore) — a hot upgrade, recorded in each class's log.

pub mod builtin;
mod signing;
mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use multistream_proto::session::{Audience, Event, EventBody, Seq};
use multistream_proto::{ParticipantId, Role, SessionId};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::log::LogCore;
use crate::log::class::PluginCatalog;

pub use signing::{make_signing_key, sign_component};

/// Jobs waiting for the plugin thread. Past it, the classes whose events did not fit are
/// rebuilt from their logs once there is room (nothing is lost, the plugins only lag).
pub const PLUGIN_QUEUE_MAX: usize = 8_192;

/// Events waiting for one plugin of one class while it is being rebuilt after a failure.
pub const BACKLOG_MAX: usize = 1_024;

/// How often the plugin directory is checked for new packages.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// File name extension of signed plugin packages.
pub const PACKAGE_EXTENSION: &str = "msplugin";

/// Where plugins come from and whom to trust.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Signed packages (`*.msplugin`) are loaded from here.
    pub dir: PathBuf,
    /// Public keys (hex) whose packages load.
    pub trusted_keys: Vec<String>,
    /// Whether the built-in plugins are offered.
    pub builtin: bool,
    /// Compiled code is cached here.
    pub cache_dir: Option<PathBuf>,
    pub limits: multistream_plugin_host::Limits,
}

/// What the plugin thread tells the session task.
#[derive(Debug)]
pub enum PluginNews {
    /// The plugins now loaded (after a package was added or upgraded).
    Catalog(PluginCatalog),
    /// Events for a class's log, each with its actor.
    Output {
        session: SessionId,
        events: Vec<(ParticipantId, EventBody)>,
    },
}

/// A participant as plugins see them.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
}

impl Who {
    /// Someone the class state does not know (never the case for an event's actor in practice):
    /// named by their id, with the least rights.
    pub(crate) fn unknown(id: &ParticipantId) -> Who {
        Who {
            id: id.clone(),
            name: id.to_string(),
            role: Role::Guest,
        }
    }
}

pub(crate) enum Job {
    /// Run `plugin` for `session`: rebuild its state from `history` (the log up to now) and
    /// take it from there. Ignored when it runs already at the loaded version, unless `force`.
    Start {
        session: SessionId,
        plugin: String,
        history: Vec<Event>,
        members: BTreeMap<ParticipantId, Who>,
        /// The panels the class shows now.
        views: BTreeMap<Audience, serde_json::Value>,
        force: bool,
    },
    /// A durable event of a class with plugins on.
    Event {
        session: SessionId,
        event: Event,
        actor: Who,
    },
    Stop {
        session: SessionId,
        plugin: String,
    },
}

/// The loaded plugins, their counters, and the packages that were refused.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginsStatus {
    pub plugins: Vec<PluginStatus>,
    /// Package files refused, with the reason.
    pub refused: Vec<RefusedPackage>,
    pub upgrades: u64,
    pub upgrades_failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub version: String,
    pub title: String,
    /// "built in", or the package file and its signer's key.
    pub origin: String,
    pub capabilities: Vec<String>,
    pub subscribes: Vec<String>,
    /// Classes it runs in now, and how many of them see it degraded or quarantined.
    pub classes: usize,
    pub degraded: usize,
    pub quarantined: usize,
    pub calls: u64,
    pub failures: u64,
    pub restarts: u64,
    pub call_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefusedPackage {
    pub file: String,
    pub reason: String,
}

/// The session task's and the HTTP handlers' way to the plugin thread.
#[derive(Clone)]
pub struct PluginsHandle {
    tx: std::sync::mpsc::SyncSender<Job>,
    /// The thread publishes its status here (at most [`STATUS_INTERVAL`] old), so `/metrics`
    /// never waits behind a busy plugin.
    status: watch::Receiver<PluginsStatus>,
}

/// How stale the published plugin status may be while plugins are being called.
pub const STATUS_INTERVAL: Duration = Duration::from_millis(200);

impl PluginsHandle {
    /// The loaded plugins and their counters.
    pub fn status(&self) -> PluginsStatus {
        self.status.borrow().clone()
    }
}

/// Starts the plugin thread: loads the built-in plugins and the signed packages of the plugin
/// directory (a bad package is refused and reported, the rest load), and returns once they are
/// ready, with what loaded.
pub fn spawn(
    settings: PluginSettings,
    news: mpsc::Sender<PluginNews>,
) -> anyhow::Result<(PluginsHandle, PluginCatalog)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(PLUGIN_QUEUE_MAX);
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let (status_tx, status) = watch::channel(PluginsStatus::default());
    std::thread::Builder::new()
        .name("plugins".into())
        .spawn(move || {
            lower_priority();
            match worker::Worker::new(settings, news, status_tx) {
                Ok(mut worker) => {
                    let _ = ready_tx.send(Ok(worker.catalog()));
                    worker.run(rx);
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            }
        })?;
    let catalog = ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the plugin thread stopped while loading"))??;
    Ok((PluginsHandle { tx, status }, catalog))
}

/// How much less CPU priority the plugin thread has than the rest of the node (a nice value):
/// when a plugin spins, the media thread and the class log still get the core they share.
pub const PLUGIN_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority by [`PLUGIN_NICE`] (Linux: per thread).
fn lower_priority() {
    let thread = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(thread)).unwrap_or(0);
    if let Err(error) = rustix::process::setpriority_process(Some(thread), current + PLUGIN_NICE) {
        tracing::warn!(%error, "cannot lower the plugin thread's priority");
    }
}

/// The session task's side: which events go to the plugin thread.
pub struct PluginFeed {
    handle: PluginsHandle,
    /// What the plugins loaded here subscribe to: only events they take are sent.
    catalog: PluginCatalog,
    /// Classes whose events did not fit the queue: their plugins are rebuilt from the log.
    resync: BTreeSet<SessionId>,
    pub jobs_dropped: u64,
}

impl PluginFeed {
    pub fn new(handle: PluginsHandle, catalog: PluginCatalog) -> Self {
        Self {
            handle,
            catalog,
            resync: BTreeSet::new(),
            jobs_dropped: 0,
        }
    }

    /// The plugins loaded now (after a package was added or upgraded).
    pub fn set_catalog(&mut self, catalog: PluginCatalog) {
        self.catalog = catalog;
    }

    /// Whether `plugin` takes an event of this kind: its own kinds, and what it subscribed to.
    fn takes(&self, plugin: &str, body: &EventBody) -> bool {
        match body.plugin() {
            Some(owner) => owner == plugin,
            None => self
                .catalog
                .get(plugin)
                .is_some_and(|info| info.subscribes.iter().any(|kind| kind == body.kind())),
        }
    }

    /// Starts the plugins of every class this edge is home for (after a restart).
    pub fn start_all(&mut self, core: &LogCore, sessions: &[SessionId]) {
        for session in sessions {
            self.start_session(core, session, false);
        }
    }

    /// A durable event was published on this edge.
    pub fn published(&mut self, core: &LogCore, session: &SessionId, event: &Event) {
        if !core.is_home(session) || self.resync.contains(session) {
            return;
        }
        let Some(state) = core.durable_state(session) else {
            return;
        };
        let job = match &event.body {
            EventBody::PluginEnabled { plugin, .. } => {
                self.start(core, session, plugin, event.seq, false);
                return;
            }
            EventBody::PluginDisabled { plugin } => Job::Stop {
                session: session.clone(),
                plugin: plugin.clone(),
            },
            body if state
                .plugins
                .iter()
                .any(|(name, p)| p.enabled && self.takes(name, body)) =>
            {
                Job::Event {
                    session: session.clone(),
                    event: event.clone(),
                    actor: who(state, &event.actor),
                }
            }
            _ => return,
        };
        self.send(session, job);
    }

    /// Retries the classes that fell behind; call on the task's tick.
    pub fn tick(&mut self, core: &LogCore) {
        let behind: Vec<SessionId> = self.resync.iter().cloned().collect();
        for session in behind {
            self.resync.remove(&session);
            self.start_session(core, &session, true);
        }
    }

    fn start_session(&mut self, core: &LogCore, session: &SessionId, force: bool) {
        if !core.is_home(session) {
            return;
        }
        let Some(state) = core.durable_state(session) else {
            return;
        };
        let head = core.durable(session).unwrap_or_default();
        let enabled: Vec<String> = state
            .plugins
            .iter()
            .filter(|(_, p)| p.enabled)
            .map(|(name, _)| name.clone())
            .collect();
        for plugin in enabled {
            self.start(core, session, &plugin, head, force);
        }
    }

    fn start(&mut self, core: &LogCore, session: &SessionId, plugin: &str, upto: Seq, force: bool) {
        let Some(state) = core.durable_state(session) else {
            return;
        };
        let events = core.durable_events(session);
        // What the plugin takes, not the whole log: a class's whiteboard strokes alone can be
        // hundreds of megabytes.
        let history = events[..(upto.0 as usize).min(events.len())]
            .iter()
            .filter(|e| self.takes(plugin, &e.body))
            .cloned()
            .collect();
        let members = state
            .members
            .keys()
            .map(|id| (id.clone(), who(state, id)))
            .collect();
        let views = state
            .plugins
            .get(plugin)
            .map(|p| {
                p.views
                    .iter()
                    .map(|(audience, (_, view))| (audience.clone(), view.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let job = Job::Start {
            session: session.clone(),
            plugin: plugin.to_owned(),
            history,
            members,
            views,
            force,
        };
        self.send(session, job);
    }

    fn send(&mut self, session: &SessionId, job: Job) {
        if self.handle.tx.try_send(job).is_err() {
            self.jobs_dropped += 1;
            self.resync.insert(session.clone());
        }
    }
}

fn who(state: &crate::log::class::ClassState, id: &ParticipantId) -> Who {
    match state.members.get(id) {
        Some(member) => Who {
            id: id.clone(),
            name: member.name.clone(),
            role: member.role,
        },
        None => Who::unknown(id),
    }
}
