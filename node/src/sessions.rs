//! The session-log shell: one tokio task that owns the [`LogCore`], feeds it client requests,
//! peer frames, store completions and the time, and carries out what it asks — writes on the
//! store thread, frames to peers, answers and events to the clients on this edge.
//!
//! The store is written on its own thread (redb commits block on fsync); the task never waits
//! for it. Every queue here has a named limit: a client that cannot keep up is dropped and
//! resumes from its last sequence number when it reconnects.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multistream_proto::session::{Command, CommandKey, Event, Seq};
use multistream_proto::{ParticipantId, Role, SessionId};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::log::class::{ClassState, Refusal, Request};
use crate::log::{ClientRef, LogCore, LogCounters, LogOutput, NodeId, PeerMessage};
use crate::plugins::{PluginFeed, PluginNews, PluginsHandle};
use crate::store::Store;

/// Messages waiting for the session task.
pub const SESSIONS_QUEUE_MAX: usize = 4_096;

/// Messages waiting to be written to one client; past it the client is dropped (it resumes).
pub const CLIENT_QUEUE_MAX: usize = 1_024;

/// Store writes waiting for the store thread.
pub const STORE_QUEUE_MAX: usize = 256;

/// A reconnecting client that missed more events than this gets a snapshot instead.
pub const RESUME_EVENTS_MAX: usize = 5_000;

/// A participant whose last connection closed is marked gone this long afterwards, unless they
/// are back by then: a reload or a network blip is not leaving the class.
pub const LEAVE_GRACE: Duration = Duration::from_secs(5);

/// Rate limits per participant in a class, from the configuration.
#[derive(Debug, Clone)]
pub struct ClassLimits {
    /// Class commands per second, sustained; twice that in a burst.
    pub commands_per_second: f64,
    /// Whiteboard commands (draw, erase, undo) per second, sustained; twice that in a burst.
    pub strokes_per_second: f64,
    /// This edge's name for people.
    pub edge_name: String,
}

/// A token bucket: `rate` per second, holding at most twice that.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: f64, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate * 2.0,
            at: now,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate * 2.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One participant's buckets, shared by all their connections to this edge.
#[derive(Debug)]
struct Rates {
    commands: TokenBucket,
    strokes: TokenBucket,
}

/// Pending requests of one client (sent, not yet answered), at most.
pub const CLIENT_PENDING_MAX: usize = 64;

/// What the session task sends a client connection.
#[derive(Debug, Clone)]
pub enum ToClient {
    Snapshot {
        seq: Seq,
        state: serde_json::Value,
    },
    Event(Event),
    /// The event at this position is not for this client (see [`ClassState::visible`]).
    Hidden(Seq),
    Reply {
        key: Option<CommandKey>,
        result: Result<Seq, Refusal>,
    },
}

/// Frames for other edges, for the peer plane to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub to: NodeId,
    pub message: PeerMessage,
}

/// A client connection's place in the session task.
pub struct Attached {
    pub client: ClientRef,
    pub inbound: mpsc::Receiver<ToClient>,
}

/// Why a client could not attach.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("the class service is not running")]
    Stopped,
    #[error("the class service is overloaded; try again")]
    Busy,
}

enum Message {
    Attach {
        session: SessionId,
        actor: ParticipantId,
        name: String,
        role: Role,
        resume_from: Option<Seq>,
        reply: oneshot::Sender<Attached>,
    },
    Request {
        client: ClientRef,
        key: CommandKey,
        command: Command,
    },
    Detach {
        client: ClientRef,
        left: bool,
    },
    Peer {
        from: NodeId,
        message: PeerMessage,
    },
    Stored {
        session: SessionId,
        result: Result<(), String>,
    },
    State {
        session: SessionId,
        reply: oneshot::Sender<Option<ClassState>>,
    },
    Counters {
        reply: oneshot::Sender<LogCounters>,
    },
}

#[derive(Clone)]
pub struct SessionsHandle {
    tx: mpsc::Sender<Message>,
}

impl SessionsHandle {
    /// Registers a client connection, sends it the class (a snapshot, or the events after
    /// `resume_from`), and joins its participant to the class.
    pub async fn attach(
        &self,
        session: SessionId,
        actor: ParticipantId,
        name: String,
        role: Role,
        resume_from: Option<Seq>,
    ) -> Result<Attached, AttachError> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Attach {
            session,
            actor,
            name,
            role,
            resume_from,
            reply,
        })?;
        answer.await.map_err(|_| AttachError::Stopped)
    }

    /// A command from an attached client; the answer arrives on its inbound queue.
    pub fn request(
        &self,
        client: ClientRef,
        key: CommandKey,
        command: Command,
    ) -> Result<(), AttachError> {
        self.send(Message::Request {
            client,
            key,
            command,
        })
    }

    /// The client's connection closed.
    pub fn detach(&self, client: ClientRef) {
        self.detach_leaving(client, false);
    }

    /// A client connection ended; `left`: the participant said they are leaving (no grace).
    pub fn detach_leaving(&self, client: ClientRef, left: bool) {
        // If the queue is full the task is overloaded; the client's inbound queue closing when
        // the task next writes to it detaches it then.
        let _ = self.send(Message::Detach { client, left });
    }

    /// A frame from another edge.
    pub fn peer(&self, from: NodeId, message: PeerMessage) -> Result<(), AttachError> {
        self.send(Message::Peer { from, message })
    }

    /// The durable class state of a session open on this edge.
    pub async fn state(&self, session: SessionId) -> Option<ClassState> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::State { session, reply }).ok()?;
        answer.await.ok().flatten()
    }

    pub async fn counters(&self) -> Option<LogCounters> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Counters { reply }).ok()?;
        answer.await.ok()
    }

    fn send(&self, message: Message) -> Result<(), AttachError> {
        self.tx.try_send(message).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => AttachError::Busy,
            mpsc::error::TrySendError::Closed(_) => AttachError::Stopped,
        })
    }
}

struct Client {
    session: SessionId,
    actor: ParticipantId,
    outbound: mpsc::Sender<ToClient>,
    pending: usize,
}

struct Task {
    core: LogCore,
    clients: HashMap<ClientRef, Client>,
    by_session: HashMap<SessionId, HashSet<ClientRef>>,
    /// Connections per (session, participant) on this edge: the participant leaves when the
    /// last one closes.
    connections: HashMap<(SessionId, ParticipantId), usize>,
    /// Participants whose last connection closed, and when they count as gone.
    leaving: HashMap<(SessionId, ParticipantId), Instant>,
    /// Rate limits of the participants connected here.
    rates: HashMap<(SessionId, ParticipantId), Rates>,
    limits: ClassLimits,
    /// Commands refused by the rate limits.
    rate_limited: u64,
    next_client: u64,
    store: std::sync::mpsc::SyncSender<StoreWrite>,
    peers: mpsc::Sender<Outgoing>,
    started: Instant,
    started_wall_ms: u64,
    /// The plugin thread's feed, when plugins run on this node.
    plugins: Option<PluginFeed>,
    /// This edge's name for people, recorded with the joins through it.
    edge_name: String,
}

/// The session task's link to the plugin thread: its handle, the plugins it loaded, and the
/// channel its answers come back on.
pub struct PluginLink {
    pub handle: PluginsHandle,
    pub catalog: crate::log::class::PluginCatalog,
    pub news: mpsc::Receiver<PluginNews>,
}

struct StoreWrite {
    session: SessionId,
    truncate_after: Option<Seq>,
    events: Vec<Event>,
}

/// Starts the session task with the logs the store holds. `peers` receives frames for other
/// edges (dropped when it is full: the protocol repairs losses).
pub fn spawn(
    core: LogCore,
    limits: ClassLimits,
    store: Arc<Store>,
    peers: mpsc::Sender<Outgoing>,
    plugins: Option<PluginLink>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SessionsHandle, tokio::task::JoinHandle<()>)> {
    let mut core = core;
    let (plugins, mut news) = match plugins {
        Some(link) => {
            core.set_plugins(link.catalog.clone());
            (
                Some(PluginFeed::new(link.handle, link.catalog)),
                Some(link.news),
            )
        }
        None => (None, None),
    };
    let (tx, mut rx) = mpsc::channel(SESSIONS_QUEUE_MAX);
    let handle = SessionsHandle { tx: tx.clone() };
    let (store_tx, store_rx) = std::sync::mpsc::sync_channel::<StoreWrite>(STORE_QUEUE_MAX);
    let writer_store = Arc::clone(&store);
    let completions = tx.clone();
    std::thread::Builder::new()
        .name("store".into())
        .spawn(move || {
            while let Ok(write) = store_rx.recv() {
                let result = writer_store
                    .append(
                        &write.session,
                        write.truncate_after,
                        &write.events,
                        unix_ms(),
                    )
                    .map_err(|e| e.to_string());
                if completions
                    .blocking_send(Message::Stored {
                        session: write.session,
                        result,
                    })
                    .is_err()
                {
                    return;
                }
            }
        })?;
    let mut task = Task {
        core,
        clients: HashMap::new(),
        by_session: HashMap::new(),
        connections: HashMap::new(),
        leaving: HashMap::new(),
        rates: HashMap::new(),
        rate_limited: 0,
        next_client: 1,
        store: store_tx,
        peers,
        started: Instant::now(),
        started_wall_ms: unix_ms(),
        edge_name: limits.edge_name.clone(),
        limits,
        plugins,
    };
    let now = Instant::now();
    let stored = store.sessions()?;
    for session in &stored {
        let events = store.load(session)?;
        task.core.open(now, session, events);
    }
    if !stored.is_empty() {
        info!(
            sessions = stored.len(),
            "session logs loaded from the store"
        );
    }
    // Whoever was connected through this edge before it stopped is gone: say so in the log.
    let me = task.core.node().0.clone();
    let wall = task.wall_ms(now);
    if let Some(feed) = &mut task.plugins {
        feed.start_all(&task.core, &stored);
    }
    for session in stored {
        let gone: Vec<ParticipantId> = task
            .core
            .durable_state(&session)
            .map(|state| {
                state
                    .members
                    .iter()
                    .filter(|(_, m)| m.present && m.edge.as_deref() == Some(me.as_str()))
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for participant in gone {
            task.core.handle_request(
                now,
                wall,
                &session,
                ClientRef(0),
                participant,
                None,
                Request::Leave,
            );
        }
    }
    task.drain();
    let join = tokio::spawn(async move {
        loop {
            let deadline = task
                .core
                .poll_timeout()
                .into_iter()
                .chain(task.leaving.values().copied())
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = shutdown.changed() => break,
                message = rx.recv() => match message {
                    Some(message) => task.handle(message),
                    None => break,
                },
                Some(news) = async {
                    match news.as_mut() {
                        Some(news) => news.recv().await,
                        None => std::future::pending().await,
                    }
                } => task.plugin_news(news),
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    task.core.handle_timeout(now);
                    task.leave_due(now);
                    if let Some(feed) = &mut task.plugins {
                        feed.tick(&task.core);
                    }
                }
            }
            task.drain();
        }
        info!("session task stopping");
    });
    Ok((handle, join))
}

impl Task {
    fn wall_ms(&self, now: Instant) -> u64 {
        self.started_wall_ms + now.saturating_duration_since(self.started).as_millis() as u64
    }

    fn plugin_news(&mut self, news: PluginNews) {
        match news {
            PluginNews::Catalog(catalog) => {
                if let Some(feed) = &mut self.plugins {
                    feed.set_catalog(catalog.clone());
                }
                self.core.set_plugins(catalog);
            }
            PluginNews::Output { session, events } => {
                let wall = self.wall_ms(Instant::now());
                self.core.append_plugin_output(wall, &session, events);
            }
        }
    }

    fn handle(&mut self, message: Message) {
        let now = Instant::now();
        let wall = self.wall_ms(now);
        match message {
            Message::Attach {
                session,
                actor,
                name,
                role,
                resume_from,
                reply,
            } => {
                if !self.core.is_open(&session) {
                    self.core.open(now, &session, Vec::new());
                }
                let client = ClientRef(self.next_client);
                self.next_client += 1;
                let (outbound, inbound) = mpsc::channel(CLIENT_QUEUE_MAX);
                // The class first: events after the client's position, or a snapshot.
                let durable = self.core.durable(&session).unwrap_or_default();
                let resumable = resume_from.filter(|from| {
                    *from <= durable && (durable.0 - from.0) as usize <= RESUME_EVENTS_MAX
                });
                match resumable {
                    Some(from) => {
                        let state = self.core.durable_state(&session);
                        for event in self.core.durable_since(&session, from).unwrap_or(&[]) {
                            let _ = outbound.try_send(for_client(state, event, &actor));
                        }
                    }
                    None => {
                        let _ = outbound.try_send(self.snapshot(&session, &actor));
                    }
                }
                self.clients.insert(
                    client,
                    Client {
                        session: session.clone(),
                        actor: actor.clone(),
                        outbound,
                        pending: 0,
                    },
                );
                self.by_session
                    .entry(session.clone())
                    .or_default()
                    .insert(client);
                *self
                    .connections
                    .entry((session.clone(), actor.clone()))
                    .or_default() += 1;
                // Back within the grace period: they never left.
                self.leaving.remove(&(session.clone(), actor.clone()));
                self.core.handle_request(
                    now,
                    wall,
                    &session,
                    client,
                    actor,
                    None,
                    Request::Join {
                        name,
                        role,
                        edge: Some(self.core.node().0.clone()),
                        edge_name: Some(self.edge_name.clone()),
                    },
                );
                let _ = reply.send(Attached { client, inbound });
            }
            Message::Request {
                client,
                key,
                command,
            } => {
                let Some(entry) = self.clients.get_mut(&client) else {
                    return;
                };
                if entry.pending >= CLIENT_PENDING_MAX {
                    let refusal = Refusal::new(
                        "busy",
                        format!("at most {CLIENT_PENDING_MAX} commands may wait for an answer"),
                    );
                    let _ = entry.outbound.try_send(ToClient::Reply {
                        key: Some(key),
                        result: Err(refusal),
                    });
                    return;
                }
                let (session, actor) = (entry.session.clone(), entry.actor.clone());
                let (commands_rate, strokes_rate) = (
                    self.limits.commands_per_second,
                    self.limits.strokes_per_second,
                );
                let rates = self
                    .rates
                    .entry((session.clone(), actor.clone()))
                    .or_insert_with(|| Rates {
                        commands: TokenBucket::new(commands_rate, now),
                        strokes: TokenBucket::new(strokes_rate, now),
                    });
                let drawing = matches!(
                    command,
                    Command::Draw { .. } | Command::Erase { .. } | Command::Undo
                );
                if !rates.commands.allow(now) || (drawing && !rates.strokes.allow(now)) {
                    self.rate_limited += 1;
                    let refusal = Refusal::new(
                        "rate_limited",
                        "too many changes at once; slow down for a moment",
                    );
                    let _ = entry.outbound.try_send(ToClient::Reply {
                        key: Some(key),
                        result: Err(refusal),
                    });
                    return;
                }
                entry.pending += 1;
                self.core.handle_request(
                    now,
                    wall,
                    &session,
                    client,
                    actor,
                    Some(key),
                    Request::Command { command },
                );
            }
            Message::Detach { client, left } => {
                // A participant who said they are leaving is gone at once, unless another of
                // their connections is still open.
                if let Some(key) = self.detach(now, client).filter(|_| left) {
                    self.leaving.insert(key, now);
                    self.leave_due(now);
                }
            }
            Message::Peer { from, message } => {
                self.core.handle_peer(now, wall, from, message);
            }
            Message::Stored { session, result } => {
                self.core.handle_stored(now, &session, result);
            }
            Message::State { session, reply } => {
                let _ = reply.send(self.core.durable_state(&session).cloned());
            }
            Message::Counters { reply } => {
                let mut counters = self.core.counters.clone();
                counters.requests_rate_limited = self.rate_limited;
                let _ = reply.send(counters);
            }
        }
    }

    fn snapshot(&self, session: &SessionId, viewer: &ParticipantId) -> ToClient {
        let state = self
            .core
            .durable_state(session)
            .map(|state| state.snapshot_for(viewer))
            .unwrap_or(serde_json::Value::Null);
        ToClient::Snapshot {
            seq: self.core.durable(session).unwrap_or_default(),
            state,
        }
    }

    /// Forgets a client connection; when it was its participant's last, they count as gone
    /// after [`LEAVE_GRACE`], and their key is returned.
    fn detach(&mut self, now: Instant, client: ClientRef) -> Option<(SessionId, ParticipantId)> {
        let entry = self.clients.remove(&client)?;
        if let Some(set) = self.by_session.get_mut(&entry.session) {
            set.remove(&client);
        }
        let key = (entry.session.clone(), entry.actor.clone());
        let last = match self.connections.get_mut(&key) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => {
                self.connections.remove(&key);
                true
            }
        };
        if !last {
            return None;
        }
        self.leaving.insert(key.clone(), now + LEAVE_GRACE);
        Some(key)
    }

    /// Marks gone the participants whose grace period ended without a new connection.
    fn leave_due(&mut self, now: Instant) {
        let due: Vec<(SessionId, ParticipantId)> = self
            .leaving
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        let wall = self.wall_ms(now);
        for key in due {
            self.leaving.remove(&key);
            if self.connections.contains_key(&key) {
                continue;
            }
            self.rates.remove(&key);
            let (session, actor) = key;
            // Nobody waits for the answer: the connections are gone.
            self.core.handle_request(
                now,
                wall,
                &session,
                ClientRef(0),
                actor,
                None,
                Request::Leave,
            );
        }
    }

    /// Carries out what the core asked for.
    fn drain(&mut self) {
        let mut slow = Vec::new();
        while let Some(output) = self.core.poll_output() {
            match output {
                LogOutput::Store {
                    session,
                    truncate_after,
                    events,
                } => {
                    let write = StoreWrite {
                        session: session.clone(),
                        truncate_after,
                        events,
                    };
                    if let Err(error) = self.store.try_send(write) {
                        // The store thread is gone or hopelessly behind: the write fails, and the
                        // core refuses what waited for it.
                        warn!(%session, %error, "the store cannot take a write");
                        let now = Instant::now();
                        self.core.handle_stored(
                            now,
                            &session,
                            Err("the store is not keeping up".into()),
                        );
                    }
                }
                LogOutput::Send { to, message } => {
                    // A full peer queue loses the frame; the protocol asks again.
                    let _ = self.peers.try_send(Outgoing { to, message });
                }
                LogOutput::Reply {
                    client,
                    key,
                    result,
                } => {
                    let Some(entry) = self.clients.get_mut(&client) else {
                        continue;
                    };
                    if key.is_some() {
                        entry.pending = entry.pending.saturating_sub(1);
                    }
                    if entry
                        .outbound
                        .try_send(ToClient::Reply { key, result })
                        .is_err()
                    {
                        slow.push(client);
                    }
                }
                LogOutput::Publish { session, event } => {
                    let state = self.core.durable_state(&session);
                    for client in self.by_session.get(&session).into_iter().flatten() {
                        if let Some(entry) = self.clients.get(client) {
                            let update = for_client(state, &event, &entry.actor);
                            if entry.outbound.try_send(update).is_err() {
                                slow.push(*client);
                            }
                        }
                    }
                    if let Some(feed) = &mut self.plugins {
                        feed.published(&self.core, &session, &event);
                    }
                }
                LogOutput::Reset { session } => {
                    for client in self.by_session.get(&session).into_iter().flatten() {
                        if let Some(entry) = self.clients.get(client) {
                            let snapshot = self.snapshot(&session, &entry.actor);
                            if entry.outbound.try_send(snapshot).is_err() {
                                slow.push(*client);
                            }
                        }
                    }
                }
            }
        }
        if !slow.is_empty() {
            let now = Instant::now();
            for client in slow {
                // Dropping its queue closes the connection's inbound side; it reconnects and
                // resumes from its last sequence number.
                warn!(
                    client = client.0,
                    "a classroom client fell behind; dropping it"
                );
                self.detach(now, client);
            }
            self.drain();
        }
    }
}

/// An event as one participant's client is shown it.
fn for_client(state: Option<&ClassState>, event: &Event, viewer: &ParticipantId) -> ToClient {
    if state.is_none_or(|state| state.visible(event, viewer)) {
        ToClient::Event(event.clone())
    } else {
        ToClient::Hidden(event.seq)
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
