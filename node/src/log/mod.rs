//! The session-log core: one ordered, durable event log per class session, sequenced by the
//! session's home edge and followed by the other edges. Sans-IO, like the SFU core: requests,
//! peer messages, store completions and the time go in; store writes, peer messages, replies to
//! clients and published events come out of [`LogCore::poll_output`]. The shell moves them.
//!
//! ## The protocol
//! - **Home.** The edge that sequences a session ([`LogCore::home_of`]: rendezvous hashing of the
//!   session id over the cluster, so every edge agrees without asking). It decides each request
//!   against the class state ([`class::ClassState::decide`]), appends the event, and asks the
//!   shell to store it. Only when the store reports it durable does the event reach clients and
//!   followers, and only then is the request acknowledged. Writes are group-committed: while one
//!   is in flight, new events gather for the next.
//! - **Followers.** An edge with clients in a session it is not home for sends
//!   [`PeerMessage::Follow`] with the next sequence number it needs; the home answers with
//!   [`PeerMessage::Entries`] (catch-up in chunks, then the live tail, and heartbeats while
//!   idle). A follower stores entries before showing them and then asks for more, which is also
//!   its acknowledgement. A gap (a lost frame) is repaired by asking again from the gap.
//! - **Forwarding.** A follower's clients' requests go to the home as [`PeerMessage::Forward`],
//!   numbered per follower incarnation so the home applies them in the order they were made;
//!   they are resent until answered. The home answers only once the event is durable. The
//!   idempotency key (participant, key) makes a resent or re-submitted command apply once.
//! - **Terms.** Every entry carries the term it was sequenced under (the cluster's configuration
//!   epoch). An edge that has seen a higher term for a session refuses entries of a lower one, so
//!   a home that missed a reconfiguration cannot fork the log. Where a follower's log disagrees
//!   with the home's (same sequence number, different term), the follower drops its divergent
//!   suffix and fetches the home's.

pub mod class;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use multistream_proto::ParticipantId;
use multistream_proto::SessionId;
use multistream_proto::session::{CommandKey, EVENT_BYTES_MAX, Event, Seq, Term};
use serde::{Deserialize, Serialize};

use class::{ClassState, PluginCatalog, Refusal, Request};
use multistream_proto::session::EventBody;

/// Events in one frame of entries.
pub const ENTRIES_PER_FRAME: usize = 128;

/// Frames a home sends in answer to one follow request, at most: a follower far behind stores
/// what came while its next request travels. [`ENTRIES_PER_FRAME`] times this stays well below
/// [`PENDING_EVENTS_MAX`].
pub const CATCH_UP_FRAMES: usize = 8;

/// Events a session's log holds, at most. A class of hours with a busy whiteboard stays far
/// below it; past it, requests are refused.
pub const SESSION_EVENTS_MAX: usize = 1_000_000;

/// Events sequenced but not yet durable, per session, at most; past it requests are refused as
/// busy until the store catches up.
pub const PENDING_EVENTS_MAX: usize = 4_096;

/// Requests a follower holds for the home, per session, at most (while the home is unreachable
/// they wait here, in order).
pub const FORWARD_QUEUE_MAX: usize = 256;

/// Followers of one session the home serves, at most.
pub const FOLLOWERS_MAX: usize = 64;

/// How often the core wants [`LogCore::handle_timeout`].
pub const TICK: Duration = Duration::from_millis(100);

/// A home tells each follower its head this often when there is nothing new.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// A follower that has not heard from the home for this long asks again.
pub const FOLLOW_RETRY: Duration = Duration::from_secs(1);

/// A forwarded request not answered in this long is sent again.
pub const FORWARD_RETRY: Duration = Duration::from_secs(1);

/// A home forgets a follower it has not heard from for this long.
pub const FOLLOWER_TIMEOUT: Duration = Duration::from_secs(10);

/// An edge of the cluster, named by its identity (its public key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client connection on this edge, numbered by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientRef(pub u64);

/// Messages between edges about session logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerMessage {
    /// Follower to home: send me the log from `next`; my entry before it has `prev_term`.
    Follow {
        session: SessionId,
        term: Term,
        next: Seq,
        prev_term: Term,
    },
    /// Home to follower: entries starting at `first` (possibly none: a heartbeat); the home's
    /// entry before `first` has `prev_term`; `head` is the home's last durable entry.
    Entries {
        session: SessionId,
        term: Term,
        first: Seq,
        prev_term: Term,
        head: Seq,
        events: Vec<Event>,
    },
    /// Follower to home: a request of one of its clients.
    Forward {
        session: SessionId,
        incarnation: u64,
        /// The follower's oldest unanswered request: everything before it was answered.
        base: u64,
        id: u64,
        actor: ParticipantId,
        key: Option<CommandKey>,
        request: Request,
    },
    /// Home to follower: what became of a forwarded request (sent once it is durable).
    Forwarded {
        session: SessionId,
        incarnation: u64,
        id: u64,
        result: Result<Seq, Refusal>,
    },
    /// The receiver is not this session's home, or follows a newer term.
    NotHome {
        session: SessionId,
        term: Term,
        home: NodeId,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// Make these events durable, after dropping stored events after `truncate_after` when set;
    /// then call [`LogCore::handle_stored`].
    Store {
        session: SessionId,
        truncate_after: Option<Seq>,
        events: Vec<Event>,
    },
    Send {
        to: NodeId,
        message: PeerMessage,
    },
    /// The answer to a client's request. `Ok` carries the sequence number the request was applied
    /// at (or the log's head, when it changed nothing).
    Reply {
        client: ClientRef,
        key: Option<CommandKey>,
        result: Result<Seq, Refusal>,
    },
    /// A durable event, in order, for the session's clients on this edge.
    Publish {
        session: SessionId,
        event: Event,
    },
    /// The session's log was cut back (a divergent suffix dropped): clients must resynchronize.
    Reset {
        session: SessionId,
    },
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct LogCounters {
    pub events_appended: u64,
    pub events_followed: u64,
    pub requests_refused: u64,
    pub requests_deduplicated: u64,
    /// Requests refused by the shell's per-participant rate limits (counted by the shell).
    pub requests_rate_limited: u64,
    pub forwards_sent: u64,
    pub frames_ignored: u64,
    pub stale_terms_refused: u64,
    pub divergent_entries_dropped: u64,
    pub store_failures: u64,
}

/// Who waits for a request's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Client(ClientRef, Option<CommandKey>),
    Peer(NodeId, u64, u64),
}

#[derive(Debug)]
struct Follower {
    /// The next entry to send.
    next: Seq,
    heard_at: Instant,
    beat_at: Instant,
    /// Forward ids applied from each incarnation of this follower (the next one expected).
    expected_forward: HashMap<u64, u64>,
}

#[derive(Debug)]
struct Forward {
    id: u64,
    client: ClientRef,
    actor: ParticipantId,
    key: Option<CommandKey>,
    request: Request,
    sent_at: Option<Instant>,
}

#[derive(Debug)]
struct SessionLog {
    home: NodeId,
    term: Term,
    /// Every entry: `events[i].seq == i + 1`. Beyond `durable` they are being stored.
    events: Vec<Event>,
    durable: Seq,
    /// A store write covering entries up to this one is in flight.
    writing: Option<Seq>,
    /// Entries to drop from the store before the next write.
    truncate_after: Option<Seq>,
    /// Fold of all `events` (the home decides against it, including entries still being stored).
    state: ClassState,
    /// Fold of the durable entries: what clients are shown.
    durable_state: ClassState,
    waiters: BTreeMap<Seq, Vec<Origin>>,
    followers: BTreeMap<NodeId, Follower>,
    // Follower side.
    heard_at: Option<Instant>,
    follow_sent_at: Option<Instant>,
    forwards: VecDeque<Forward>,
    next_forward_id: u64,
    failed: Option<String>,
}

impl SessionLog {
    fn head(&self) -> Seq {
        Seq(self.events.len() as u64)
    }

    fn term_at(&self, seq: Seq) -> Term {
        match seq.0 {
            0 => Term(0),
            n => self
                .events
                .get(n as usize - 1)
                .map(|e| e.term)
                .unwrap_or(Term(0)),
        }
    }

    fn refold(&mut self) {
        let mut state = ClassState::default();
        for event in &self.events[..self.durable.0 as usize] {
            state.apply(event);
        }
        self.durable_state = state.clone();
        for event in &self.events[self.durable.0 as usize..] {
            state.apply(event);
        }
        self.state = state;
    }
}

/// The session-log core of one edge.
pub struct LogCore {
    node: NodeId,
    cluster: Vec<NodeId>,
    epoch: Term,
    incarnation: u64,
    sessions: HashMap<SessionId, SessionLog>,
    outputs: VecDeque<LogOutput>,
    next_tick: Option<Instant>,
    /// The plugins loaded on this edge, for the rules of the sessions it is home for.
    plugins: PluginCatalog,
    pub counters: LogCounters,
}

impl LogCore {
    /// `cluster` lists every edge, this one included; `epoch` is the cluster configuration's
    /// epoch (the term new entries are sequenced under); `incarnation` differs on every start of
    /// this edge (it numbers forwarded requests).
    pub fn new(node: NodeId, cluster: Vec<NodeId>, epoch: u64, incarnation: u64) -> Self {
        let mut cluster = cluster;
        if !cluster.contains(&node) {
            cluster.push(node.clone());
        }
        cluster.sort();
        cluster.dedup();
        Self {
            node,
            cluster,
            epoch: Term(epoch.max(1)),
            incarnation,
            sessions: HashMap::new(),
            outputs: VecDeque::new(),
            next_tick: None,
            plugins: PluginCatalog::new(),
            counters: LogCounters::default(),
        }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The home edge of a session: the cluster member with the highest hash of (member,
    /// session). Every edge with the same cluster list agrees.
    pub fn home_of(&self, session: &SessionId) -> NodeId {
        self.cluster
            .iter()
            .max_by_key(|node| fnv1a(node.0.as_bytes(), session.as_str().as_bytes()))
            .cloned()
            .unwrap_or_else(|| self.node.clone())
    }

    pub fn is_home(&self, session: &SessionId) -> bool {
        self.home_of(session) == self.node
    }

    /// Opens a session with the entries its store holds (none for a new one). Opening an open
    /// session does nothing. A follower starts following at once.
    pub fn open(&mut self, now: Instant, session: &SessionId, stored: Vec<Event>) {
        if self.sessions.contains_key(session) {
            return;
        }
        let home = self.home_of(session);
        let durable = Seq(stored.len() as u64);
        let stored_term = stored.last().map(|e| e.term).unwrap_or_default();
        let mut log = SessionLog {
            home,
            term: self.epoch.max(stored_term),
            events: stored,
            durable,
            writing: None,
            truncate_after: None,
            state: ClassState::default(),
            durable_state: ClassState::default(),
            waiters: BTreeMap::new(),
            followers: BTreeMap::new(),
            heard_at: None,
            follow_sent_at: None,
            forwards: VecDeque::new(),
            next_forward_id: 1,
            failed: None,
        };
        log.refold();
        let following = log.home != self.node;
        self.sessions.insert(session.clone(), log);
        if following {
            self.follow(now, session);
        }
        self.next_tick.get_or_insert(now + TICK);
    }

    pub fn is_open(&self, session: &SessionId) -> bool {
        self.sessions.contains_key(session)
    }

    /// The class state folded over every entry, including entries still being stored (what the
    /// home decides against). Clients are shown [`LogCore::durable_state`].
    pub fn state(&self, session: &SessionId) -> Option<&ClassState> {
        self.sessions.get(session).map(|s| &s.state)
    }

    /// The class state folded over the durable entries.
    pub fn durable_state(&self, session: &SessionId) -> Option<&ClassState> {
        self.sessions.get(session).map(|s| &s.durable_state)
    }

    /// Durable entries after `after`, for a client resuming or catching up.
    pub fn durable_since(&self, session: &SessionId, after: Seq) -> Option<&[Event]> {
        let log = self.sessions.get(session)?;
        let from = (after.0 as usize).min(log.durable.0 as usize);
        log.events.get(from..log.durable.0 as usize)
    }

    /// The last durable entry of a session.
    pub fn durable(&self, session: &SessionId) -> Option<Seq> {
        self.sessions.get(session).map(|s| s.durable)
    }

    /// All durable entries (for the simulation's checks and for snapshots).
    pub fn durable_events(&self, session: &SessionId) -> &[Event] {
        self.durable_since(session, Seq::ZERO).unwrap_or(&[])
    }

    /// The plugins this edge has loaded (and their versions), which the sessions it is home for
    /// can switch on.
    pub fn set_plugins(&mut self, catalog: PluginCatalog) {
        self.plugins = catalog;
    }

    /// Appends what a plugin answered (its records, panels, chat lines, notices, health) to a
    /// session this edge is home for; each event with the actor of the event that caused it.
    /// Plugins run only on the home, so elsewhere this does nothing. Returns how many events
    /// were appended: an event over [`EVENT_BYTES_MAX`] or beyond the log's limits is dropped
    /// and counted as refused.
    pub fn append_plugin_output(
        &mut self,
        wall_ms: u64,
        session: &SessionId,
        events: Vec<(ParticipantId, EventBody)>,
    ) -> usize {
        let Some(log) = self.sessions.get_mut(session) else {
            return 0;
        };
        if log.home != self.node || log.failed.is_some() {
            return 0;
        }
        let mut appended = 0;
        for (actor, body) in events {
            let pending = log.events.len() - log.durable.0 as usize;
            let event = Event {
                seq: log.head().next(),
                term: log.term,
                at_ms: wall_ms,
                actor,
                key: None,
                body,
            };
            if pending >= PENDING_EVENTS_MAX
                || log.events.len() >= SESSION_EVENTS_MAX
                || event.encode().len() > EVENT_BYTES_MAX
            {
                self.counters.requests_refused += 1;
                continue;
            }
            log.state.apply(&event);
            log.events.push(event);
            self.counters.events_appended += 1;
            appended += 1;
        }
        if appended > 0 {
            self.start_write(session);
        }
        appended
    }

    /// A request from a client on this edge. The session must be open.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_request(
        &mut self,
        now: Instant,
        wall_ms: u64,
        session: &SessionId,
        client: ClientRef,
        actor: ParticipantId,
        key: Option<CommandKey>,
        request: Request,
    ) {
        let Some(log) = self.sessions.get_mut(session) else {
            self.outputs.push_back(LogOutput::Reply {
                client,
                key,
                result: Err(Refusal::new(
                    "unknown_session",
                    "this session is not open here",
                )),
            });
            return;
        };
        if log.home == self.node {
            let origin = Origin::Client(client, key.clone());
            self.sequence(now, wall_ms, session, origin, actor, key, request);
            return;
        }
        if log.forwards.len() >= FORWARD_QUEUE_MAX {
            self.counters.requests_refused += 1;
            self.outputs.push_back(LogOutput::Reply {
                client,
                key,
                result: Err(Refusal::new(
                    "busy",
                    "the class's home edge is unreachable and this edge's queue is full; try again shortly",
                )),
            });
            return;
        }
        let id = log.next_forward_id;
        log.next_forward_id += 1;
        log.forwards.push_back(Forward {
            id,
            client,
            actor,
            key,
            request,
            sent_at: None,
        });
        self.send_forwards(now, session);
    }

    /// Sequences a request on the home: decide, append, store.
    #[allow(clippy::too_many_arguments)]
    fn sequence(
        &mut self,
        now: Instant,
        wall_ms: u64,
        session: &SessionId,
        origin: Origin,
        actor: ParticipantId,
        key: Option<CommandKey>,
        request: Request,
    ) {
        let Some(log) = self.sessions.get_mut(session) else {
            return;
        };
        let answer = |outputs: &mut VecDeque<LogOutput>, origin: Origin, result| match origin {
            Origin::Client(client, key) => outputs.push_back(LogOutput::Reply {
                client,
                key,
                result,
            }),
            Origin::Peer(node, incarnation, id) => outputs.push_back(LogOutput::Send {
                to: node,
                message: PeerMessage::Forwarded {
                    session: session.clone(),
                    incarnation,
                    id,
                    result,
                },
            }),
        };
        if let Some(error) = &log.failed {
            self.counters.requests_refused += 1;
            let refusal = Refusal::new(
                "storage",
                format!("this class's log cannot be written: {error}"),
            );
            answer(&mut self.outputs, origin, Err(refusal));
            return;
        }
        if let Some(key) = &key {
            if let Some(seq) = log.state.applied(&actor, key) {
                self.counters.requests_deduplicated += 1;
                if seq <= log.durable {
                    answer(&mut self.outputs, origin, Ok(seq));
                } else {
                    log.waiters.entry(seq).or_default().push(origin);
                }
                return;
            }
        }
        let body = match log.state.decide_with(&actor, &request, &self.plugins) {
            Ok(Some(body)) => body,
            Ok(None) => {
                // Nothing changes; answer once what is already there is durable.
                let head = log.head();
                if head <= log.durable {
                    answer(&mut self.outputs, origin, Ok(head));
                } else {
                    log.waiters.entry(head).or_default().push(origin);
                }
                return;
            }
            Err(refusal) => {
                self.counters.requests_refused += 1;
                answer(&mut self.outputs, origin, Err(refusal));
                return;
            }
        };
        let pending = log.events.len() - log.durable.0 as usize;
        if pending >= PENDING_EVENTS_MAX || log.events.len() >= SESSION_EVENTS_MAX {
            self.counters.requests_refused += 1;
            let refusal = if log.events.len() >= SESSION_EVENTS_MAX {
                Refusal::new(
                    "full",
                    format!("this class's log holds {SESSION_EVENTS_MAX} events"),
                )
            } else {
                Refusal::new(
                    "busy",
                    "the class's log is catching up with its disk; try again shortly",
                )
            };
            answer(&mut self.outputs, origin, Err(refusal));
            return;
        }
        let event = Event {
            seq: log.head().next(),
            term: log.term,
            at_ms: wall_ms,
            actor,
            key,
            body,
        };
        let size = event.encode().len();
        if size > EVENT_BYTES_MAX {
            self.counters.requests_refused += 1;
            let refusal = Refusal::new(
                "too_large",
                format!(
                    "this change is {size} bytes once recorded; the limit is {EVENT_BYTES_MAX}"
                ),
            );
            answer(&mut self.outputs, origin, Err(refusal));
            return;
        }
        log.state.apply(&event);
        log.waiters.entry(event.seq).or_default().push(origin);
        log.events.push(event);
        self.counters.events_appended += 1;
        self.start_write(session);
        let _ = now;
    }

    fn start_write(&mut self, session: &SessionId) {
        let Some(log) = self.sessions.get_mut(session) else {
            return;
        };
        if log.writing.is_some() || log.head() <= log.durable && log.truncate_after.is_none() {
            return;
        }
        let from = log.durable.0 as usize;
        let events = log.events[from..].to_vec();
        log.writing = Some(log.head());
        self.outputs.push_back(LogOutput::Store {
            session: session.clone(),
            truncate_after: log.truncate_after.take(),
            events,
        });
    }

    /// The store finished the write it was given for `session`.
    pub fn handle_stored(&mut self, now: Instant, session: &SessionId, result: Result<(), String>) {
        let Some(log) = self.sessions.get_mut(session) else {
            return;
        };
        let Some(upto) = log.writing.take() else {
            return;
        };
        if let Err(error) = result {
            // What was not stored is forgotten: the state returns to the durable log and every
            // waiting request is refused. The session takes no more writes.
            self.counters.store_failures += 1;
            tracing::error!(session = %session, %error, "the session log cannot be stored");
            log.events.truncate(log.durable.0 as usize);
            log.refold();
            log.failed = Some(error.clone());
            let waiters = std::mem::take(&mut log.waiters);
            for origin in waiters.into_values().flatten() {
                let refusal = Refusal::new(
                    "storage",
                    format!("the class's log could not be stored: {error}"),
                );
                self.outputs
                    .push_back(reply_output(session, origin, Err(refusal)));
            }
            return;
        }
        let old = log.durable;
        log.durable = upto;
        for seq in (old.0 + 1)..=upto.0 {
            let event = log.events[seq as usize - 1].clone();
            log.durable_state.apply(&event);
            self.outputs.push_back(LogOutput::Publish {
                session: session.clone(),
                event,
            });
        }
        let later = log.waiters.split_off(&upto.next());
        let done = std::mem::replace(&mut log.waiters, later);
        for (seq, origins) in done {
            for origin in origins {
                self.outputs
                    .push_back(reply_output(session, origin, Ok(seq)));
            }
        }
        let home = log.home == self.node;
        if home {
            self.push_tail(now, session, old);
        } else {
            // Storing is the follower's acknowledgement: ask for what follows.
            self.follow(now, session);
        }
        self.start_write(session);
    }

    /// Sends newly durable entries to followers that were caught up.
    fn push_tail(&mut self, now: Instant, session: &SessionId, old: Seq) {
        let Some(log) = self.sessions.get_mut(session) else {
            return;
        };
        let durable = log.durable;
        for (node, follower) in &mut log.followers {
            if follower.next != old.next() {
                continue;
            }
            let mut first = follower.next;
            while first <= durable {
                let (message, next) = entries_frame(session, log.term, &log.events, durable, first);
                self.outputs.push_back(LogOutput::Send {
                    to: node.clone(),
                    message,
                });
                first = next;
            }
            follower.next = first;
            follower.beat_at = now;
        }
    }

    fn follow(&mut self, now: Instant, session: &SessionId) {
        let Some(log) = self.sessions.get_mut(session) else {
            return;
        };
        if log.home == self.node {
            return;
        }
        // Ask for what follows what is stored or being stored.
        let next = log.head().next();
        log.follow_sent_at = Some(now);
        self.outputs.push_back(LogOutput::Send {
            to: log.home.clone(),
            message: PeerMessage::Follow {
                session: session.clone(),
                term: log.term,
                next,
                prev_term: log.term_at(Seq(next.0 - 1)),
            },
        });
    }

    fn send_forwards(&mut self, now: Instant, session: &SessionId) {
        let Some(log) = self.sessions.get_mut(session) else {
            return;
        };
        let base = log.forwards.front().map(|f| f.id).unwrap_or(0);
        for forward in &mut log.forwards {
            if forward
                .sent_at
                .is_some_and(|at| now.saturating_duration_since(at) < FORWARD_RETRY)
            {
                continue;
            }
            forward.sent_at = Some(now);
            self.counters.forwards_sent += 1;
            self.outputs.push_back(LogOutput::Send {
                to: log.home.clone(),
                message: PeerMessage::Forward {
                    session: session.clone(),
                    incarnation: self.incarnation,
                    base,
                    id: forward.id,
                    actor: forward.actor.clone(),
                    key: forward.key.clone(),
                    request: forward.request.clone(),
                },
            });
        }
    }

    /// A message from another edge. Messages about sessions not open here open them (a follower
    /// asking the home for a session the home has not seen yet).
    pub fn handle_peer(&mut self, now: Instant, wall_ms: u64, from: NodeId, message: PeerMessage) {
        if !self.cluster.contains(&from) {
            self.counters.frames_ignored += 1;
            return;
        }
        match message {
            PeerMessage::Follow {
                session,
                term,
                next,
                prev_term,
            } => self.on_follow(now, from, session, term, next, prev_term),
            PeerMessage::Entries {
                session,
                term,
                first,
                prev_term,
                head,
                events,
            } => self.on_entries(now, from, session, term, first, prev_term, head, events),
            PeerMessage::Forward {
                session,
                incarnation,
                base,
                id,
                actor,
                key,
                request,
            } => self.on_forward(
                now,
                wall_ms,
                from,
                session,
                (incarnation, base, id),
                actor,
                key,
                request,
            ),
            PeerMessage::Forwarded {
                session,
                incarnation,
                id,
                result,
            } => {
                if incarnation != self.incarnation {
                    return;
                }
                let Some(log) = self.sessions.get_mut(&session) else {
                    return;
                };
                if log.forwards.front().is_some_and(|f| f.id == id) {
                    if let Some(forward) = log.forwards.pop_front() {
                        self.outputs.push_back(LogOutput::Reply {
                            client: forward.client,
                            key: forward.key,
                            result,
                        });
                    }
                    // The next one may go at once.
                    if let Some(next) = log.forwards.front_mut() {
                        next.sent_at = None;
                    }
                    self.send_forwards(now, &session);
                }
            }
            PeerMessage::NotHome {
                session,
                term,
                home,
            } => {
                tracing::warn!(%session, %from, %home, %term, "a peer says it is not this session's home; check that every edge has the same cluster list");
                self.counters.frames_ignored += 1;
            }
        }
    }

    /// Whether this edge is the session's home and so answers a follower's message; if not,
    /// tells the sender who is. A session unknown here is opened (the shell opens stored ones
    /// before handing messages over, so it is new).
    fn serve_as_home(&mut self, now: Instant, from: &NodeId, session: &SessionId) -> bool {
        if !self.is_home(session) {
            self.counters.frames_ignored += 1;
            let home = self.home_of(session);
            self.outputs.push_back(LogOutput::Send {
                to: from.clone(),
                message: PeerMessage::NotHome {
                    session: session.clone(),
                    term: self.epoch,
                    home,
                },
            });
            return false;
        }
        if !self.sessions.contains_key(session) {
            self.open(now, session, Vec::new());
        }
        true
    }

    fn on_follow(
        &mut self,
        now: Instant,
        from: NodeId,
        session: SessionId,
        term: Term,
        next: Seq,
        prev_term: Term,
    ) {
        if !self.serve_as_home(now, &from, &session) {
            return;
        }
        let Some(log) = self.sessions.get_mut(&session) else {
            return;
        };
        if term > log.term {
            // The follower has seen a newer configuration than this home: this home is stale.
            self.counters.stale_terms_refused += 1;
            return;
        }
        if !log.followers.contains_key(&from) && log.followers.len() >= FOLLOWERS_MAX {
            self.counters.frames_ignored += 1;
            return;
        }
        // Where the follower's log ends beyond the home's, start at the home's end (the
        // follower drops its extra entries); where its last entry's term differs from the
        // home's, resend that entry (the follower replaces what disagrees).
        let claimed = Seq(next.0.saturating_sub(1));
        let start = if claimed > log.durable {
            log.durable.next()
        } else if claimed > Seq::ZERO && log.term_at(claimed) != prev_term {
            claimed
        } else {
            next
        };
        let durable = log.durable;
        let follower = log.followers.entry(from.clone()).or_insert(Follower {
            next,
            heard_at: now,
            beat_at: now,
            expected_forward: HashMap::new(),
        });
        follower.heard_at = now;
        follower.beat_at = now;
        // Up to CATCH_UP_FRAMES frames per request (always one, a heartbeat when there is
        // nothing new): a follower far behind stores several while the next request travels.
        let mut first = start;
        for frame in 0..CATCH_UP_FRAMES {
            if frame > 0 && first > durable {
                break;
            }
            let (message, next) = entries_frame(&session, log.term, &log.events, durable, first);
            self.outputs.push_back(LogOutput::Send {
                to: from.clone(),
                message,
            });
            first = next;
        }
        follower.next = first;
    }

    #[allow(clippy::too_many_arguments)]
    fn on_entries(
        &mut self,
        now: Instant,
        from: NodeId,
        session: SessionId,
        term: Term,
        first: Seq,
        prev_term: Term,
        head: Seq,
        events: Vec<Event>,
    ) {
        let Some(log) = self.sessions.get_mut(&session) else {
            self.counters.frames_ignored += 1;
            return;
        };
        if from != log.home {
            self.counters.frames_ignored += 1;
            return;
        }
        if term < log.term {
            self.counters.stale_terms_refused += 1;
            return;
        }
        log.term = term;
        log.heard_at = Some(now);
        if first.0 == 0
            || events
                .iter()
                .enumerate()
                .any(|(i, e)| e.seq.0 != first.0 + i as u64)
        {
            self.counters.frames_ignored += 1;
            return;
        }
        let received = log.head();
        if first > received.next() {
            // A gap: a frame was lost. Ask again from where this log ends.
            self.counters.frames_ignored += 1;
            if log
                .follow_sent_at
                .is_none_or(|at| now.saturating_duration_since(at) >= TICK)
            {
                self.follow(now, &session);
            }
            return;
        }
        let before = Seq(first.0 - 1);
        if log.term_at(before) != prev_term && before > Seq::ZERO {
            // Our entry before the frame disagrees with the home's: drop it and ask again.
            if log.writing.is_some() {
                return;
            }
            self.counters.divergent_entries_dropped += 1;
            truncate(log, Seq(before.0 - 1));
            self.outputs.push_back(LogOutput::Reset {
                session: session.clone(),
            });
            self.follow(now, &session);
            self.start_write(&session);
            return;
        }
        let mut appended = false;
        let frame_len = events.len() as u64;
        for event in events {
            let seq = event.seq;
            if seq <= log.head() {
                if log.term_at(seq) == event.term {
                    continue;
                }
                if log.writing.is_some() {
                    // Cut only between writes; the home will send this again.
                    break;
                }
                self.counters.divergent_entries_dropped += 1;
                truncate(log, Seq(seq.0 - 1));
                self.outputs.push_back(LogOutput::Reset {
                    session: session.clone(),
                });
            }
            if log.events.len() >= SESSION_EVENTS_MAX
                || log.events.len() - log.durable.0 as usize >= PENDING_EVENTS_MAX
            {
                break;
            }
            log.state.apply(&event);
            log.events.push(event);
            self.counters.events_followed += 1;
            appended = true;
        }
        let frame_end = Seq(first.0 + frame_len - 1);
        if frame_end == head && log.head() > head && log.writing.is_none() {
            // The home's log ends before ours: ours has entries the home never had.
            self.counters.divergent_entries_dropped += 1;
            truncate(log, head);
            self.outputs.push_back(LogOutput::Reset {
                session: session.clone(),
            });
            self.start_write(&session);
            return;
        }
        if appended {
            self.start_write(&session);
        } else if head > log.head()
            && log.writing.is_none()
            && log
                .follow_sent_at
                .is_none_or(|at| now.saturating_duration_since(at) >= TICK)
        {
            // A heartbeat says there is more than we have.
            self.follow(now, &session);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_forward(
        &mut self,
        now: Instant,
        wall_ms: u64,
        from: NodeId,
        session: SessionId,
        (incarnation, base, id): (u64, u64, u64),
        actor: ParticipantId,
        key: Option<CommandKey>,
        request: Request,
    ) {
        if !self.serve_as_home(now, &from, &session) {
            return;
        }
        let Some(log) = self.sessions.get_mut(&session) else {
            return;
        };
        let Some(follower) = log.followers.get_mut(&from) else {
            // Forwards are taken from followers only (they follow before they forward).
            self.counters.frames_ignored += 1;
            return;
        };
        follower.heard_at = now;
        // Everything before `base` was answered (perhaps by this home before it restarted).
        let expected = follower.expected_forward.entry(incarnation).or_insert(base);
        *expected = (*expected).max(base);
        if follower.expected_forward.len() > 16 {
            // Old incarnations of the follower: keep the current one.
            follower.expected_forward.retain(|&i, _| i == incarnation);
        }
        let Some(expected) = follower.expected_forward.get_mut(&incarnation) else {
            return;
        };
        if id > *expected {
            // An earlier one was lost; the follower resends in order.
            self.counters.frames_ignored += 1;
            return;
        }
        if id == *expected {
            *expected += 1;
        }
        // A resent request (id below expected) is answered again: through its key when it has
        // one, else by deciding it again (joins and leaves decide to nothing the second time).
        let origin = Origin::Peer(from, incarnation, id);
        self.sequence(now, wall_ms, &session, origin, actor, key, request);
    }

    /// Periodic work: heartbeats, follow and forward retries, forgetting silent followers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|at| at > now) {
            return;
        }
        self.next_tick = Some(now + TICK);
        let ids: Vec<SessionId> = self.sessions.keys().cloned().collect();
        for session in ids {
            let Some(log) = self.sessions.get_mut(&session) else {
                continue;
            };
            if log.home == self.node {
                log.followers
                    .retain(|_, f| now.saturating_duration_since(f.heard_at) < FOLLOWER_TIMEOUT);
                let durable = log.durable;
                for (node, follower) in &mut log.followers {
                    if now.saturating_duration_since(follower.beat_at) < HEARTBEAT_INTERVAL {
                        continue;
                    }
                    follower.beat_at = now;
                    // Nothing after the head: a heartbeat.
                    let (message, _) =
                        entries_frame(&session, log.term, &log.events, durable, durable.next());
                    self.outputs.push_back(LogOutput::Send {
                        to: node.clone(),
                        message,
                    });
                }
            } else {
                let silent = log
                    .heard_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= FOLLOW_RETRY);
                let asked_long_ago = log
                    .follow_sent_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= FOLLOW_RETRY);
                if silent && asked_long_ago && log.writing.is_none() {
                    self.follow(now, &session);
                }
                self.send_forwards(now, &session);
            }
        }
    }

    /// When [`LogCore::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    pub fn poll_output(&mut self) -> Option<LogOutput> {
        self.outputs.pop_front()
    }
}

fn reply_output(session: &SessionId, origin: Origin, result: Result<Seq, Refusal>) -> LogOutput {
    match origin {
        Origin::Client(client, key) => LogOutput::Reply {
            client,
            key,
            result,
        },
        Origin::Peer(node, incarnation, id) => LogOutput::Send {
            to: node,
            message: PeerMessage::Forwarded {
                session: session.clone(),
                incarnation,
                id,
                result,
            },
        },
    }
}

/// A frame of the durable entries from `first` (at most [`ENTRIES_PER_FRAME`]; none when
/// `first` is past `durable`, which makes it a heartbeat), and the entry after it.
fn entries_frame(
    session: &SessionId,
    term: Term,
    events: &[Event],
    durable: Seq,
    first: Seq,
) -> (PeerMessage, Seq) {
    let end = (first.0 as usize - 1 + ENTRIES_PER_FRAME).min(durable.0 as usize);
    let frame = events
        .get(first.0 as usize - 1..end)
        .map(<[Event]>::to_vec)
        .unwrap_or_default();
    let next = Seq(first.0 + frame.len() as u64);
    let message = PeerMessage::Entries {
        session: session.clone(),
        term,
        first,
        prev_term: term_at(events, Seq(first.0 - 1)),
        head: durable,
        events: frame,
    };
    (message, next)
}

fn term_at(events: &[Event], seq: Seq) -> Term {
    match seq.0 {
        0 => Term(0),
        n => events
            .get(n as usize - 1)
            .map(|e| e.term)
            .unwrap_or(Term(0)),
    }
}

/// Drops a follower's entries after `keep` (which must not be in a write in flight).
fn truncate(log: &mut SessionLog, keep: Seq) {
    log.events.truncate(keep.0 as usize);
    if log.durable > keep {
        log.durable = keep;
        log.truncate_after = Some(keep);
    }
    log.refold();
}

/// FNV-1a over two byte strings with a 64-bit finalizer, for rendezvous hashing (stable across
/// builds and platforms).
fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.iter().chain([0u8].iter()).chain(b.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV alone barely mixes the first bytes into the last bits; a finalizer spreads every
    // input bit over the whole word, so homes spread evenly over the cluster.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use multistream_proto::Role;
    use multistream_proto::session::{Command, EventBody};

    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId(name.into())
    }

    /// A session whose home, under rendezvous hashing over `a` and `b`, is `a`.
    fn session_homed_on_a(core: &LogCore) -> SessionId {
        (0..100)
            .map(|i| format!("class-{i}").parse::<SessionId>().expect("valid"))
            .find(|s| core.home_of(s) == node("a"))
            .expect("some session hashes to a")
    }

    fn event(seq: u64, term: u64, text: &str) -> Event {
        Event {
            seq: Seq(seq),
            term: Term(term),
            at_ms: 0,
            actor: "p".parse().expect("valid"),
            key: None,
            body: EventBody::Chat { text: text.into() },
        }
    }

    /// Delivers messages between two cores and completes every store write at once, until quiet.
    fn pump(now: Instant, cores: &mut [&mut LogCore; 2]) -> Vec<LogOutput> {
        let mut seen = Vec::new();
        for _ in 0..100 {
            let mut moved = false;
            for i in 0..2 {
                while let Some(output) = cores[i].poll_output() {
                    moved = true;
                    match &output {
                        LogOutput::Send { to, message } => {
                            let from = cores[i].node().clone();
                            let j = usize::from(cores[1 - i].node() == to) * (1 - i)
                                + usize::from(cores[i].node() == to) * i;
                            cores[j].handle_peer(now, 0, from, message.clone());
                        }
                        LogOutput::Store { session, .. } => {
                            cores[i].handle_stored(now, session, Ok(()))
                        }
                        _ => {}
                    }
                    seen.push(output);
                }
            }
            if !moved {
                break;
            }
        }
        seen
    }

    #[test]
    fn homes_spread_over_the_cluster() {
        let core = LogCore::new(node("a"), vec![node("a"), node("b"), node("c")], 1, 1);
        let mut counts = std::collections::HashMap::new();
        for i in 0..300 {
            let session: SessionId = format!("class-{i}").parse().expect("valid");
            *counts.entry(core.home_of(&session)).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(counts.values().all(|&n| n > 60), "{counts:?}");
    }

    #[test]
    fn a_follower_refuses_entries_of_an_older_term() {
        let now = Instant::now();
        let cluster = vec![node("a"), node("b")];
        let mut b = LogCore::new(node("b"), cluster.clone(), 2, 1);
        let probe = LogCore::new(node("a"), cluster, 1, 1);
        let session = session_homed_on_a(&probe);
        b.open(now, &session, Vec::new());
        while b.poll_output().is_some() {}
        b.handle_peer(
            now,
            0,
            node("a"),
            PeerMessage::Entries {
                session: session.clone(),
                term: Term(1),
                first: Seq(1),
                prev_term: Term(0),
                head: Seq(1),
                events: vec![event(1, 1, "from a stale home")],
            },
        );
        assert_eq!(b.counters.stale_terms_refused, 1);
        assert!(b.poll_output().is_none(), "nothing is stored or published");
        assert_eq!(b.durable(&session), Some(Seq(0)));
    }

    #[test]
    fn a_follower_drops_a_divergent_suffix_and_takes_the_homes_log() {
        let now = Instant::now();
        let cluster = vec![node("a"), node("b")];
        let mut a = LogCore::new(node("a"), cluster.clone(), 2, 1);
        let mut b = LogCore::new(node("b"), cluster, 2, 1);
        let session = session_homed_on_a(&a);
        a.open(
            now,
            &session,
            vec![event(1, 1, "one"), event(2, 2, "two, as the home has it")],
        );
        b.open(
            now,
            &session,
            vec![
                event(1, 1, "one"),
                event(2, 1, "two, from a stale home"),
                event(3, 1, "three, from a stale home"),
            ],
        );
        let outputs = pump(now, &mut [&mut a, &mut b]);
        assert!(outputs.iter().any(|o| matches!(o, LogOutput::Reset { .. })));
        assert!(outputs.iter().any(|o| matches!(
            o,
            LogOutput::Store {
                truncate_after: Some(Seq(1)),
                ..
            }
        )));
        assert_eq!(b.durable_events(&session), a.durable_events(&session));
        assert!(b.counters.divergent_entries_dropped >= 1);
    }

    #[test]
    fn a_follower_forwards_and_answers_only_once_the_home_has_stored() {
        let now = Instant::now();
        let cluster = vec![node("a"), node("b")];
        let mut a = LogCore::new(node("a"), cluster.clone(), 1, 1);
        let mut b = LogCore::new(node("b"), cluster, 1, 1);
        let session = session_homed_on_a(&a);
        a.open(now, &session, Vec::new());
        b.open(now, &session, Vec::new());
        pump(now, &mut [&mut a, &mut b]);
        let student: ParticipantId = "s".parse().expect("valid");
        b.handle_request(
            now,
            5,
            &session,
            ClientRef(1),
            student.clone(),
            None,
            Request::Join {
                name: "S".into(),
                role: Role::Student,
                edge: None,
                edge_name: None,
            },
        );
        let key: CommandKey = "k1".parse().expect("valid");
        for _ in 0..2 {
            // The same key twice: applied once, answered twice with the same position.
            b.handle_request(
                now,
                6,
                &session,
                ClientRef(1),
                student.clone(),
                Some(key.clone()),
                Request::Command {
                    command: Command::Chat { text: "hi".into() },
                },
            );
        }
        let outputs = pump(now, &mut [&mut a, &mut b]);
        let replies: Vec<&Result<Seq, Refusal>> = outputs
            .iter()
            .filter_map(|o| match o {
                LogOutput::Reply { result, .. } => Some(result),
                _ => None,
            })
            .collect();
        assert_eq!(replies, vec![&Ok(Seq(1)), &Ok(Seq(2)), &Ok(Seq(2))]);
        assert_eq!(a.durable_events(&session).len(), 2);
        assert_eq!(b.durable_events(&session), a.durable_events(&session));
    }
}
