//! Deterministic simulation of the session-log core: several edges, each a real
//! [`LogCore`] with a simulated durable store, clients that join and send commands through them,
//! and a seeded network that drops, duplicates, delays and reorders frames, partitions and heals,
//! and crashes and restarts edges (which keep only what their store made durable).
//!
//! Everything is driven from one seed in virtual time, so a failing seed replays exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use multistream_node::log::class::{ClassState, Request};
use multistream_node::log::{ClientRef, LogCore, LogOutput, NodeId, PeerMessage};
use multistream_proto::session::{Command, CommandKey, Event, Scene, Seq};
use multistream_proto::{ParticipantId, Role, SessionId};

/// A small deterministic generator (SplitMix64): the simulation needs reproducibility, not
/// cryptographic quality.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A number in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low).max(1)
    }
}

/// How hostile the simulated world is.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub sessions: usize,
    pub clients_per_session: usize,
    pub commands_per_client: usize,
    /// Virtual time with faults; then the world heals and runs until it settles.
    pub chaos: Duration,
    pub drop: f64,
    pub duplicate: f64,
    pub max_delay: Duration,
    pub crashes: bool,
    pub partitions: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            sessions: 2,
            clients_per_session: 4,
            commands_per_client: 12,
            chaos: Duration::from_secs(30),
            drop: 0.1,
            duplicate: 0.05,
            max_delay: Duration::from_millis(40),
            crashes: true,
            partitions: true,
        }
    }
}

/// What one run did, for the sweep's summary.
#[derive(Debug, Default, Clone)]
pub struct SimReport {
    pub events: u64,
    pub acknowledged: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub frames_dropped: u64,
}

enum Happening {
    Deliver {
        from: usize,
        to: usize,
        message: PeerMessage,
    },
    Stored {
        node: usize,
        incarnation: u64,
        session: SessionId,
        truncate_after: Option<Seq>,
        events: Vec<Event>,
    },
    Tick {
        node: usize,
        incarnation: u64,
    },
    Client {
        client: usize,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Partition,
    Heal,
}

struct SimNode {
    id: NodeId,
    core: Option<LogCore>,
    incarnation: u64,
    /// What survives a crash.
    store: BTreeMap<SessionId, Vec<Event>>,
    /// Per session, the last sequence number published to this edge's clients.
    published: HashMap<SessionId, Seq>,
}

struct SimClient {
    actor: ParticipantId,
    session: SessionId,
    role: Role,
    node: usize,
    /// The connection on `node`, while connected.
    connection: Option<ClientRef>,
    joined: bool,
    /// Commands not yet acknowledged, in order; the first is in flight when `in_flight`.
    todo: Vec<(CommandKey, Command)>,
    in_flight: bool,
}

struct World {
    now: Instant,
    start: Instant,
    rng: Rng,
    config: SimConfig,
    nodes: Vec<SimNode>,
    clients: Vec<SimClient>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    happenings: HashMap<usize, Happening>,
    counter: u64,
    next_slot: usize,
    cut: HashSet<(usize, usize)>,
    connections: HashMap<(usize, ClientRef), usize>,
    next_connection: u64,
    /// Acknowledged commands: (actor, key) → sequence number.
    acknowledged: HashMap<(ParticipantId, CommandKey), Seq>,
    healed: bool,
    report: SimReport,
}

/// Runs one seed; `Err` says which property broke.
pub fn run(seed: u64, config: &SimConfig) -> Result<SimReport, String> {
    let start = Instant::now();
    let mut world = World {
        now: start,
        start,
        rng: Rng::new(seed),
        config: config.clone(),
        nodes: Vec::new(),
        clients: Vec::new(),
        queue: BinaryHeap::new(),
        happenings: HashMap::new(),
        counter: 0,
        next_slot: 0,
        cut: HashSet::new(),
        connections: HashMap::new(),
        next_connection: 1,
        acknowledged: HashMap::new(),
        healed: false,
        report: SimReport::default(),
    };
    world.setup()?;
    let chaos_end = start + config.chaos;
    let deadline = chaos_end + Duration::from_secs(120);
    while let Some(Reverse((at, _, slot))) = world.queue.pop() {
        if at > deadline {
            return Err(format!(
                "the world did not settle within 120 s of healing: {}",
                world.unsettled()
            ));
        }
        world.now = at;
        if !world.healed && at >= chaos_end {
            world.heal_all()?;
        }
        let Some(happening) = world.happenings.remove(&slot) else {
            continue;
        };
        world.happen(happening)?;
        if world.healed && world.settled() {
            break;
        }
    }
    world.check_final()?;
    Ok(world.report)
}

impl World {
    fn at(&mut self, delay: Duration, happening: Happening) {
        self.counter += 1;
        let slot = self.next_slot;
        self.next_slot += 1;
        self.happenings.insert(slot, happening);
        self.queue
            .push(Reverse((self.now + delay, self.counter, slot)));
    }

    fn wall_ms(&self) -> u64 {
        1_800_000_000_000 + self.now.duration_since(self.start).as_millis() as u64
    }

    fn setup(&mut self) -> Result<(), String> {
        let ids: Vec<NodeId> = (0..self.config.nodes)
            .map(|i| NodeId(format!("node-{i}")))
            .collect();
        for id in &ids {
            self.nodes.push(SimNode {
                id: id.clone(),
                core: None,
                incarnation: 0,
                store: BTreeMap::new(),
                published: HashMap::new(),
            });
        }
        for node in 0..self.nodes.len() {
            self.start_node(node)?;
        }
        for s in 0..self.config.sessions {
            let session: SessionId = format!("class-{s}").parse().expect("valid session id");
            for c in 0..self.config.clients_per_session {
                let role = if c == 0 { Role::Teacher } else { Role::Student };
                let actor: ParticipantId = format!("s{s}-p{c}").parse().expect("valid id");
                let mut todo = Vec::new();
                for n in 0..self.config.commands_per_client {
                    let key: CommandKey = format!("{actor}-{n}").parse().expect("valid key");
                    let command = match (role, n % 4) {
                        (Role::Teacher, 1) => Command::SetScene {
                            scene: [Scene::Camera, Scene::WhiteboardAndCamera, Scene::Screen]
                                [n % 3],
                        },
                        (_, 2) => Command::RaiseHand,
                        (_, 3) => Command::LowerHand { participant: None },
                        _ => Command::Chat {
                            text: format!("line {n} from {actor}"),
                        },
                    };
                    todo.push((key, command));
                }
                let node = self.rng.range(0, self.nodes.len() as u64) as usize;
                self.clients.push(SimClient {
                    actor,
                    session: session.clone(),
                    role,
                    node,
                    connection: None,
                    joined: false,
                    todo,
                    in_flight: false,
                });
                let client = self.clients.len() - 1;
                let delay = Duration::from_millis(self.rng.range(1, 500));
                self.at(delay, Happening::Client { client });
            }
        }
        if self.config.crashes {
            for _ in 0..self.rng.range(1, 4) {
                let node = self.rng.range(0, self.nodes.len() as u64) as usize;
                let when = Duration::from_millis(
                    self.rng.range(500, self.config.chaos.as_millis() as u64),
                );
                self.at(when, Happening::Crash { node });
            }
        }
        if self.config.partitions {
            for _ in 0..self.rng.range(1, 4) {
                let when = Duration::from_millis(
                    self.rng.range(200, self.config.chaos.as_millis() as u64),
                );
                self.at(when, Happening::Partition);
            }
        }
        Ok(())
    }

    fn start_node(&mut self, node: usize) -> Result<(), String> {
        let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id.clone()).collect();
        let sim_node = &mut self.nodes[node];
        sim_node.incarnation += 1;
        let mut core = LogCore::new(sim_node.id.clone(), ids, 1, sim_node.incarnation);
        for (session, events) in &sim_node.store {
            core.open(self.now, session, events.clone());
        }
        sim_node.published = sim_node
            .store
            .iter()
            .map(|(s, e)| (s.clone(), Seq(e.len() as u64)))
            .collect();
        sim_node.core = Some(core);
        let incarnation = sim_node.incarnation;
        self.at(
            Duration::from_millis(100),
            Happening::Tick { node, incarnation },
        );
        self.drain(node)
    }

    fn happen(&mut self, happening: Happening) -> Result<(), String> {
        match happening {
            Happening::Deliver { from, to, message } => {
                let wall = self.wall_ms();
                let now = self.now;
                let from_id = self.nodes[from].id.clone();
                let target = &mut self.nodes[to];
                if let Some(core) = target.core.as_mut() {
                    if let PeerMessage::Follow { session, .. }
                    | PeerMessage::Forward { session, .. } = &message
                    {
                        if !core.is_open(session) {
                            let stored = target.store.get(session).cloned().unwrap_or_default();
                            core.open(now, session, stored);
                        }
                    }
                    core.handle_peer(now, wall, from_id, message);
                    self.drain(to)?;
                }
            }
            Happening::Stored {
                node,
                incarnation,
                session,
                truncate_after,
                events,
            } => {
                if self.nodes[node].incarnation != incarnation || self.nodes[node].core.is_none() {
                    return Ok(());
                }
                let log = self.nodes[node].store.entry(session.clone()).or_default();
                if let Some(keep) = truncate_after {
                    log.truncate(keep.0 as usize);
                }
                for event in events {
                    if event.seq.0 != log.len() as u64 + 1 {
                        return Err(format!(
                            "node {node} stored {} after {} entries: the core skipped or repeated",
                            event.seq,
                            log.len()
                        ));
                    }
                    log.push(event);
                }
                let now = self.now;
                if let Some(core) = self.nodes[node].core.as_mut() {
                    core.handle_stored(now, &session, Ok(()));
                }
                self.drain(node)?;
            }
            Happening::Tick { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation {
                    return Ok(());
                }
                let now = self.now;
                let Some(core) = self.nodes[node].core.as_mut() else {
                    return Ok(());
                };
                core.handle_timeout(now);
                let next = core
                    .poll_timeout()
                    .map(|at| at.saturating_duration_since(now))
                    .unwrap_or(Duration::from_millis(100))
                    .max(Duration::from_millis(1));
                self.drain(node)?;
                self.at(next, Happening::Tick { node, incarnation });
                self.check_prefixes()?;
            }
            Happening::Client { client } => self.client_step(client)?,
            Happening::Crash { node } => {
                if self.healed || self.nodes[node].core.is_none() {
                    return Ok(());
                }
                self.report.crashes += 1;
                self.nodes[node].core = None;
                // Its clients lose their connections and will reconnect somewhere.
                for c in 0..self.clients.len() {
                    if self.clients[c].node == node && self.clients[c].connection.is_some() {
                        self.clients[c].connection = None;
                        self.clients[c].in_flight = false;
                        self.clients[c].joined = false;
                        let delay = Duration::from_millis(self.rng.range(100, 2_000));
                        self.at(delay, Happening::Client { client: c });
                    }
                }
                let down = Duration::from_millis(self.rng.range(200, 5_000));
                self.at(down, Happening::Restart { node });
            }
            Happening::Restart { node } => {
                if self.nodes[node].core.is_none() {
                    self.start_node(node)?;
                }
            }
            Happening::Partition => {
                if self.healed {
                    return Ok(());
                }
                self.report.partitions += 1;
                let a = self.rng.range(0, self.nodes.len() as u64) as usize;
                let b = (a + 1 + self.rng.range(0, self.nodes.len() as u64 - 1) as usize)
                    % self.nodes.len();
                self.cut.insert((a, b));
                self.cut.insert((b, a));
                let length = Duration::from_millis(self.rng.range(500, 6_000));
                self.at(length, Happening::Heal);
            }
            Happening::Heal => self.cut.clear(),
        }
        Ok(())
    }

    fn heal_all(&mut self) -> Result<(), String> {
        self.healed = true;
        self.cut.clear();
        for node in 0..self.nodes.len() {
            if self.nodes[node].core.is_none() {
                self.start_node(node)?;
            }
        }
        Ok(())
    }

    fn client_step(&mut self, client: usize) -> Result<(), String> {
        let c = &self.clients[client];
        if c.todo.is_empty() && c.joined {
            return Ok(());
        }
        let node = c.node;
        if self.nodes[node].core.is_none() {
            // Reconnect through another edge (the browser's retry).
            let other = self.rng.range(0, self.nodes.len() as u64) as usize;
            self.clients[client].node = other;
            let delay = Duration::from_millis(self.rng.range(100, 1_000));
            self.at(delay, Happening::Client { client });
            return Ok(());
        }
        if self.clients[client].connection.is_none() {
            let connection = ClientRef(self.next_connection);
            self.next_connection += 1;
            self.connections.insert((node, connection), client);
            self.clients[client].connection = Some(connection);
            let session = self.clients[client].session.clone();
            let now = self.now;
            let target = &mut self.nodes[node];
            if let Some(core) = target.core.as_mut() {
                if !core.is_open(&session) {
                    let stored = target.store.get(&session).cloned().unwrap_or_default();
                    core.open(now, &session, stored);
                }
            }
        }
        if self.clients[client].in_flight {
            return Ok(());
        }
        let c = &self.clients[client];
        let (key, request) = if !c.joined {
            (
                None,
                Request::Join {
                    name: c.actor.to_string(),
                    role: c.role,
                    edge: Some(self.nodes[node].id.0.clone()),
                    edge_name: None,
                },
            )
        } else {
            let (key, command) = c.todo[0].clone();
            (Some(key), Request::Command { command })
        };
        let connection = c.connection.expect("connected above");
        let actor = c.actor.clone();
        let session = c.session.clone();
        self.clients[client].in_flight = true;
        let (now, wall) = (self.now, self.wall_ms());
        if let Some(core) = self.nodes[node].core.as_mut() {
            core.handle_request(now, wall, &session, connection, actor, key, request);
        }
        self.drain(node)
    }

    fn on_reply(
        &mut self,
        node: usize,
        connection: ClientRef,
        key: Option<CommandKey>,
        result: Result<Seq, multistream_node::log::class::Refusal>,
    ) -> Result<(), String> {
        let Some(&client) = self.connections.get(&(node, connection)) else {
            return Ok(());
        };
        if self.clients[client].connection != Some(connection) {
            return Ok(());
        }
        self.clients[client].in_flight = false;
        match (&key, result) {
            (None, Ok(_)) => self.clients[client].joined = true,
            (Some(key), Ok(seq)) => {
                let actor = self.clients[client].actor.clone();
                if let Some(previous) = self.acknowledged.insert((actor.clone(), key.clone()), seq)
                {
                    if previous != seq {
                        return Err(format!(
                            "{actor}'s command {key} was acknowledged at {previous} and again at {seq}"
                        ));
                    }
                }
                self.report.acknowledged += 1;
                if self.clients[client]
                    .todo
                    .first()
                    .is_some_and(|(k, _)| k == key)
                {
                    self.clients[client].todo.remove(0);
                }
            }
            (_, Err(refusal)) => {
                // Busy or storage refusals are retried with the same key; anything else would be
                // a bug in this scripted class (every command is permitted).
                if !matches!(refusal.code.as_str(), "busy" | "storage" | "not_in_class") {
                    return Err(format!(
                        "{} was refused {:?}: {}",
                        self.clients[client].actor, key, refusal.message
                    ));
                }
                if refusal.code == "not_in_class" {
                    self.clients[client].joined = false;
                }
            }
        }
        let delay = Duration::from_millis(self.rng.range(5, 300));
        self.at(delay, Happening::Client { client });
        Ok(())
    }

    /// Moves a node's outputs into the world.
    fn drain(&mut self, node: usize) -> Result<(), String> {
        loop {
            let Some(output) = self.nodes[node]
                .core
                .as_mut()
                .and_then(LogCore::poll_output)
            else {
                return Ok(());
            };
            match output {
                LogOutput::Store {
                    session,
                    truncate_after,
                    events,
                } => {
                    let incarnation = self.nodes[node].incarnation;
                    let delay = Duration::from_micros(self.rng.range(200, 5_000));
                    self.at(
                        delay,
                        Happening::Stored {
                            node,
                            incarnation,
                            session,
                            truncate_after,
                            events,
                        },
                    );
                }
                LogOutput::Send { to, message } => {
                    let Some(to) = self.nodes.iter().position(|n| n.id == to) else {
                        continue;
                    };
                    if self.cut.contains(&(node, to))
                        || (!self.healed && self.rng.chance(self.config.drop))
                    {
                        self.report.frames_dropped += 1;
                        continue;
                    }
                    let copies = if !self.healed && self.rng.chance(self.config.duplicate) {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let delay = Duration::from_micros(
                            self.rng
                                .range(100, self.config.max_delay.as_micros() as u64),
                        );
                        self.at(
                            delay,
                            Happening::Deliver {
                                from: node,
                                to,
                                message: message.clone(),
                            },
                        );
                    }
                }
                LogOutput::Reply {
                    client,
                    key,
                    result,
                } => self.on_reply(node, client, key, result)?,
                LogOutput::Publish { session, event } => {
                    let last = self.nodes[node]
                        .published
                        .entry(session.clone())
                        .or_default();
                    if event.seq != last.next() {
                        return Err(format!(
                            "node {node} published {} of {session} after {}: a gap or a repeat",
                            event.seq, last
                        ));
                    }
                    *last = event.seq;
                }
                LogOutput::Reset { session } => {
                    let stored = self.nodes[node]
                        .core
                        .as_ref()
                        .and_then(|c| c.durable(&session))
                        .unwrap_or_default();
                    self.nodes[node].published.insert(session, stored);
                }
            }
        }
    }

    fn home_index(&self, session: &SessionId) -> Option<usize> {
        let core = self.nodes.iter().find_map(|n| n.core.as_ref())?;
        let home = core.home_of(session);
        self.nodes.iter().position(|n| n.id == home)
    }

    fn sessions(&self) -> Vec<SessionId> {
        let mut sessions: Vec<SessionId> = self.clients.iter().map(|c| c.session.clone()).collect();
        sessions.sort();
        sessions.dedup();
        sessions
    }

    /// Every edge's stored log is a prefix of the home's stored log.
    fn check_prefixes(&self) -> Result<(), String> {
        for session in self.sessions() {
            let Some(home) = self.home_index(&session) else {
                continue;
            };
            let home_log = self.nodes[home]
                .store
                .get(&session)
                .cloned()
                .unwrap_or_default();
            for (index, node) in self.nodes.iter().enumerate() {
                let log = node.store.get(&session).cloned().unwrap_or_default();
                if log.len() > home_log.len() || log[..] != home_log[..log.len()] {
                    return Err(format!(
                        "node {index}'s log of {session} ({} entries) is not a prefix of the home's ({} entries)",
                        log.len(),
                        home_log.len()
                    ));
                }
            }
        }
        Ok(())
    }

    fn settled(&self) -> bool {
        if self.clients.iter().any(|c| !c.todo.is_empty() || !c.joined) {
            return false;
        }
        self.sessions().iter().all(|session| {
            let Some(home) = self.home_index(session) else {
                return false;
            };
            let head = self.nodes[home].store.get(session).map(Vec::len);
            self.nodes.iter().enumerate().all(|(i, n)| {
                let interested = i == home
                    || self
                        .clients
                        .iter()
                        .any(|c| c.node == i && c.session == *session)
                    || n.store.contains_key(session);
                !interested || n.store.get(session).map(Vec::len) == head
            })
        })
    }

    fn unsettled(&self) -> String {
        let waiting: Vec<String> = self
            .clients
            .iter()
            .filter(|c| !c.todo.is_empty() || !c.joined)
            .map(|c| {
                format!(
                    "{} ({} left, joined {}, on node {})",
                    c.actor,
                    c.todo.len(),
                    c.joined,
                    c.node
                )
            })
            .collect();
        let logs: Vec<String> = self
            .sessions()
            .iter()
            .map(|s| {
                let lens: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| n.store.get(s).map_or("-".into(), |l| l.len().to_string()))
                    .collect();
                format!("{s}: {}", lens.join("/"))
            })
            .collect();
        format!(
            "clients waiting: [{}]; stored logs: [{}]",
            waiting.join(", "),
            logs.join("; ")
        )
    }

    fn check_final(&mut self) -> Result<(), String> {
        self.check_prefixes()?;
        for session in self.sessions() {
            let home = self.home_index(&session).ok_or("no node is up")?;
            let log = self.nodes[home]
                .store
                .get(&session)
                .cloned()
                .unwrap_or_default();
            self.report.events += log.len() as u64;
            let mut seen = HashSet::new();
            for event in &log {
                if let Some(key) = &event.key {
                    if !seen.insert((event.actor.clone(), key.clone())) {
                        return Err(format!(
                            "{}'s command {key} was applied twice in {session}",
                            event.actor
                        ));
                    }
                }
            }
            // Every edge that holds the session converged to the same log and the same state.
            let mut digest: Option<ClassState> = None;
            for (index, node) in self.nodes.iter().enumerate() {
                let Some(stored) = node.store.get(&session) else {
                    continue;
                };
                if stored != &log {
                    return Err(format!(
                        "node {index}'s log of {session} differs from the home's after healing"
                    ));
                }
                let Some(core) = node.core.as_ref() else {
                    continue;
                };
                let Some(state) = core.state(&session) else {
                    continue;
                };
                let mut folded = ClassState::default();
                for event in stored {
                    folded.apply(event);
                }
                if core.durable_state(&session) != Some(&folded) || state != &folded {
                    return Err(format!(
                        "node {index}'s state of {session} is not the fold of its log"
                    ));
                }
                match &digest {
                    None => digest = Some(state.clone()),
                    Some(first) if first != state => {
                        return Err(format!(
                            "node {index}'s state of {session} differs after healing"
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        for ((actor, key), seq) in &self.acknowledged {
            let session = &self
                .clients
                .iter()
                .find(|c| &c.actor == actor)
                .ok_or("an acknowledged actor without a client")?
                .session;
            let home = self.home_index(session).ok_or("no node is up")?;
            let log = self.nodes[home]
                .store
                .get(session)
                .cloned()
                .unwrap_or_default();
            let found = log.get(seq.0 as usize - 1);
            // Every scripted command changes the class (hands go up before they come down, the
            // scene cycles), so each acknowledged one must be in the log where it was promised.
            let at_seq = found.is_some_and(|e| &e.actor == actor && e.key.as_ref() == Some(key));
            if !at_seq {
                return Err(format!(
                    "{actor}'s acknowledged command {key} is not at {seq} in {session}'s log"
                ));
            }
        }
        Ok(())
    }
}
