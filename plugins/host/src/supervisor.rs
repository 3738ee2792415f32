//! Keeps one plugin running for one class: calls it, and when a call fails, contains the
//! failure. A failed call fails alone; an instance a trap, timeout or memory fault left unusable
//! is rebuilt from the last snapshot plus the events handled since, after a backoff; a plugin
//! that keeps failing is quarantined and shows as degraded, and the class goes on without it.
//!
//! Time is an argument, as in the node's cores, so the policy is testable without waiting.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Action, CallError, Code, Effect, Event, Instance, Runtime};

/// Failures within [`FAILURE_WINDOW`] that quarantine a plugin.
pub const FAILURES_TO_QUARANTINE: usize = 5;
/// The window in which failures count towards quarantine.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// First wait before rebuilding a failed instance; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Events handled between snapshots (what a rebuild replays, at most).
pub const SNAPSHOT_EVERY: usize = 100;

/// How a plugin is doing, for the teacher's view and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// A call failed recently; the plugin is being rebuilt (or was) and may be behind.
    Degraded {
        reason: String,
    },
    /// It failed too often; it gets no more calls until it is reloaded.
    Quarantined {
        reason: String,
    },
}

/// Why the supervisor gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the plugin is restarting after a failure; try again shortly")]
    Restarting,
    #[error("the plugin is switched off after repeated failures: {0}")]
    Quarantined(String),
    #[error("the plugin could not be rebuilt: {0}")]
    Rebuild(String),
}

/// Counters for metrics.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub calls: u64,
    pub failures: u64,
    pub restarts: u64,
    pub call_time: Duration,
}

pub struct Supervisor {
    code: Arc<Code>,
    class: String,
    seed: u64,
    instance: Option<Instance>,
    snapshot: Option<Vec<u8>>,
    /// Events handled since the snapshot: what a rebuild replays.
    replay: Vec<Event>,
    failures: VecDeque<Instant>,
    backoff: Duration,
    retry_at: Option<Instant>,
    health: Health,
    pub stats: Stats,
}

impl Supervisor {
    pub fn new(code: Arc<Code>, class: &str, seed: u64) -> Self {
        Self {
            code,
            class: class.to_owned(),
            seed,
            instance: None,
            snapshot: None,
            replay: Vec::new(),
            failures: VecDeque::new(),
            backoff: BACKOFF_MIN,
            retry_at: None,
            health: Health::Healthy,
            stats: Stats::default(),
        }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn manifest(&self) -> &crate::Manifest {
        &self.code.manifest
    }

    /// When a rebuild after a failure is due, while one is pending: calls before then are
    /// answered [`SupervisorError::Restarting`].
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|_| self.instance.is_none())
    }

    /// The caller refused an answer the host had accepted (it breaks a rule of the caller's,
    /// such as a size limit): counts as a failed call.
    pub fn reject(&mut self, now: Instant, reason: String) {
        self.failed(now, &CallError::InvalidOutput(reason));
    }

    /// Hot upgrade: moves the plugin's state to `code` (a new version) through snapshot and
    /// restore, without replaying anything. On any failure the running version stays.
    pub fn upgrade(
        &mut self,
        runtime: &Runtime,
        now: Instant,
        code: Arc<Code>,
    ) -> Result<(), SupervisorError> {
        if let Health::Quarantined { reason } = &self.health {
            return Err(SupervisorError::Quarantined(reason.clone()));
        }
        if self.instance.is_none() {
            self.rebuild(runtime, now)?;
        }
        let state = self.call(runtime, now, Instance::snapshot)?;
        let mut instance = runtime
            .instantiate(&code, &self.class, self.seed)
            .map_err(|e| SupervisorError::Rebuild(e.to_string()))?;
        instance.restore(&state).map_err(|e| {
            SupervisorError::Rebuild(format!("the new version refused the state: {e}"))
        })?;
        self.code = code;
        self.instance = Some(instance);
        self.snapshot = Some(state);
        self.replay.clear();
        Ok(())
    }

    /// An event of the log. A failed event is skipped (never replayed), so a plugin cannot be
    /// made to fail on every rebuild by one bad event.
    pub fn on_event(
        &mut self,
        runtime: &Runtime,
        now: Instant,
        event: &Event,
    ) -> Result<Vec<Effect>, SupervisorError> {
        let effects = self.call(runtime, now, |instance| instance.on_event(event))?;
        self.replay.push(event.clone());
        if self.replay.len() >= SNAPSHOT_EVERY {
            self.take_snapshot();
        }
        Ok(effects)
    }

    /// A participant's action.
    pub fn on_action(
        &mut self,
        runtime: &Runtime,
        now: Instant,
        action: &Action,
    ) -> Result<Vec<Effect>, SupervisorError> {
        self.call(runtime, now, |instance| instance.on_action(action))
    }

    /// The plugin's state now (for a hot upgrade or an archive).
    pub fn snapshot(
        &mut self,
        runtime: &Runtime,
        now: Instant,
    ) -> Result<Vec<u8>, SupervisorError> {
        self.call(runtime, now, Instance::snapshot)
    }

    fn take_snapshot(&mut self) {
        if let Some(instance) = &mut self.instance {
            // A plugin that cannot snapshot keeps its replay list; it is rebuilt from further back.
            if let Ok(bytes) = instance.snapshot() {
                self.snapshot = Some(bytes);
                self.replay.clear();
            }
        }
    }

    fn call<R>(
        &mut self,
        runtime: &Runtime,
        now: Instant,
        f: impl FnOnce(&mut Instance) -> Result<R, CallError>,
    ) -> Result<R, SupervisorError> {
        if let Health::Quarantined { reason } = &self.health {
            return Err(SupervisorError::Quarantined(reason.clone()));
        }
        if self.instance.is_none() {
            if self.retry_at.is_some_and(|at| now < at) {
                return Err(SupervisorError::Restarting);
            }
            self.rebuild(runtime, now)?;
        }
        let instance = self.instance.as_mut().ok_or(SupervisorError::Restarting)?;
        self.stats.calls += 1;
        let started = Instant::now();
        let result = f(instance);
        self.stats.call_time += started.elapsed();
        match result {
            Ok(value) => {
                self.backoff = BACKOFF_MIN;
                if matches!(self.health, Health::Degraded { .. }) {
                    self.health = Health::Healthy;
                }
                Ok(value)
            }
            // The plugin's own refusal is an answer, not a failure.
            Err(CallError::Refused(message)) => Err(CallError::Refused(message).into()),
            Err(error) => {
                self.failed(now, &error);
                Err(error.into())
            }
        }
    }

    fn failed(&mut self, now: Instant, error: &CallError) {
        self.stats.failures += 1;
        tracing::warn!(class = %self.class, plugin = %self.code.manifest.name, %error, "plugin call failed");
        while self
            .failures
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > FAILURE_WINDOW)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() >= FAILURES_TO_QUARANTINE {
            tracing::error!(class = %self.class, plugin = %self.code.manifest.name, "plugin quarantined after repeated failures");
            self.health = Health::Quarantined {
                reason: format!(
                    "{} failures within {} s; the last: {error}",
                    self.failures.len(),
                    FAILURE_WINDOW.as_secs()
                ),
            };
            self.instance = None;
            return;
        }
        self.health = Health::Degraded {
            reason: error.to_string(),
        };
        if error.poisons() {
            self.instance = None;
            self.retry_at = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// A fresh instance from the last snapshot plus the events handled since.
    fn rebuild(&mut self, runtime: &Runtime, now: Instant) -> Result<(), SupervisorError> {
        let fresh = self.stats.calls > 0 || self.snapshot.is_some();
        let mut instance = runtime
            .instantiate(&self.code, &self.class, self.seed)
            .map_err(|e| SupervisorError::Rebuild(e.to_string()))?;
        if let Some(snapshot) = &self.snapshot {
            instance
                .restore(snapshot)
                .map_err(|e| SupervisorError::Rebuild(e.to_string()))?;
        }
        for event in &self.replay {
            // Effects were carried out the first time; a replay only rebuilds state.
            if let Err(error) = instance.on_event(event) {
                let error =
                    SupervisorError::Rebuild(format!("replaying event {}: {error}", event.seq));
                self.failed(now, &CallError::Trap(error.to_string()));
                return Err(error);
            }
        }
        if fresh {
            self.stats.restarts += 1;
        }
        self.instance = Some(instance);
        self.retry_at = None;
        Ok(())
    }
}
