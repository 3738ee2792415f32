//! The relay's shell, on the media thread: ties the SFU core's relay API, the relay core and the links
//! to the other edges together.
//!
//! - **Catalogs.** Every edge tells its peers which publishers it can relay — its own, and those
//!   it hears of (with the edges in between), so a chain forms where two edges have no link.
//!   Each catalog replaces the sender's previous one.
//! - **Remote publishers.** For each publisher heard of, by the shortest route over links that
//!   are up, this edge adds a remote publisher to the SFU core while the session has subscribers
//!   here; subscribers bind to it like to a local one.
//! - **Demand.** The highest layer this edge's subscribers want of a remote publisher becomes
//!   the relay core's demand for its tracks (the relay core subscribes, refreshes, ends).
//! - **Media.** Packets of exported local publishers leave the SFU core
//!   ([`Sfu::poll_relayed`]), become datagrams for each importing edge, and wait in a
//!   [`SendQueue`] when a connection's buffer is full; imported packets go to
//!   [`Sfu::handle_relayed`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use multistream_proto::{ParticipantId, SessionId, Source};
use str0m::format::PayloadParams;
use str0m::media::MediaKind;
use tokio::sync::mpsc;
use tracing::{debug, info};

pub mod link;

use self::link::{RelayInput, RelayLinks, Sent};
use crate::log::NodeId;
use crate::presence::{PresenceHandle, Who};
use crate::relay::wire::{
    Announced, AnnouncedTrack, Catalog, LinkMessage, WirePacket, decode_datagram, encode_datagram,
};
use crate::relay::{
    REFRESH_INTERVAL, RELAY_HOPS_MAX, RelayCore, RelayOutput, SendQueue, TrackId, TrackKind,
};
use crate::sfu::{PeerId, PeerKind, PeerSpec, RelayedPacket, Sfu, SfuEvent};

/// How often remote publishers and demand are brought in line with the subscribers here.
const REVIEW_INTERVAL: Duration = Duration::from_millis(100);

/// A catalog changed by a new or departed publisher goes out at most this soon.
const CATALOG_DEBOUNCE: Duration = Duration::from_millis(50);

/// The catalog of a peer whose link is down is still trusted this long (the remote students'
/// video freezes and resumes rather than disappears).
const CATALOG_STALE_AFTER: Duration = Duration::from_secs(60);

/// A datagram queue with something waiting is retried this often.
const QUEUE_RETRY: Duration = Duration::from_millis(2);

/// What the media thread needs to relay: this edge's id, the links and what arrives on them.
pub struct RelaySetup {
    pub node: NodeId,
    pub links: Arc<RelayLinks>,
    pub inbound: mpsc::Receiver<RelayInput>,
}

type PubKey = (SessionId, ParticipantId, Source);

struct LocalPub {
    key: PubKey,
    who: Who,
    lead: bool,
    tracks: Vec<AnnouncedTrack>,
    codecs: Vec<PayloadParams>,
    relayed: bool,
}

struct RemotePub {
    announced: Announced,
    /// Next hop first, the origin last.
    route: Vec<NodeId>,
    codecs: HashMap<u8, PayloadParams>,
    sfu: Option<PeerId>,
    /// The demand last given to the relay core, per kind.
    demand: BTreeMap<TrackKind, (Vec<NodeId>, Option<u8>)>,
}

/// Figures for `/metrics`, besides the relay core's and the links'.
#[derive(Debug, Clone, Default)]
pub struct ShellCounters {
    /// Relayed packets handed to this edge's subscribers.
    pub delivered: u64,
    /// Datagrams or packets from another edge that could not be read.
    pub malformed: u64,
    /// Relayed packets whose payload type the origin's codec table does not name.
    pub unknown_codec: u64,
    /// Remote publishers added to the SFU core (and removed).
    pub remote_added: u64,
    pub remote_removed: u64,
    pub catalogs_sent: u64,
    pub catalogs_received: u64,
}

/// A snapshot for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct RelaySnapshot {
    pub core: crate::relay::RelayCounters,
    pub shell: ShellCounters,
    pub imports: usize,
    pub exports: usize,
    pub remote_publishers: usize,
    pub dropped_audio: u64,
    pub dropped_video: u64,
    pub queued: usize,
    /// Per peer: datagrams and bytes sent and received, datagrams too large, and control
    /// messages dropped or unreadable.
    pub links: Vec<LinkFigures>,
}

/// One link's figures.
#[derive(Debug, Clone, Default)]
pub struct LinkFigures {
    pub peer: String,
    pub up: bool,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub datagrams_too_large: u64,
    pub datagrams_dropped_inbound: u64,
    pub messages_dropped: u64,
    pub messages_malformed: u64,
}

pub struct RelayShell {
    node: NodeId,
    /// Remote publishers are shown live in the rosters here.
    presence: PresenceHandle,
    core: RelayCore,
    links: Arc<RelayLinks>,
    local: HashMap<PeerId, LocalPub>,
    /// Each peer's latest catalog and when it came.
    catalogs: HashMap<NodeId, (Vec<Announced>, Instant)>,
    up: HashSet<NodeId>,
    remote: BTreeMap<PubKey, RemotePub>,
    by_remote: HashMap<PeerId, PubKey>,
    queues: HashMap<NodeId, SendQueue<(TrackKind, Bytes)>>,
    catalog_at: Instant,
    review_at: Instant,
    core_at: Instant,
    counters: ShellCounters,
}

impl RelayShell {
    pub fn new(
        now: Instant,
        node: NodeId,
        links: Arc<RelayLinks>,
        presence: PresenceHandle,
    ) -> Self {
        Self {
            presence,
            core: RelayCore::new(node.clone()),
            node,
            links,
            local: HashMap::new(),
            catalogs: HashMap::new(),
            up: HashSet::new(),
            remote: BTreeMap::new(),
            by_remote: HashMap::new(),
            queues: HashMap::new(),
            catalog_at: now + REFRESH_INTERVAL,
            review_at: now + REVIEW_INTERVAL,
            core_at: now,
            counters: ShellCounters::default(),
        }
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        let mut at = self.catalog_at.min(self.review_at).min(self.core_at);
        if self.queues.values().any(|q| !q.is_empty()) {
            at = at.min(now + QUEUE_RETRY);
        }
        at
    }

    pub fn handle_timeout(&mut self, now: Instant, sfu: &mut Sfu) {
        if now >= self.review_at {
            self.review_at = now + REVIEW_INTERVAL;
            self.review(now, sfu);
        }
        if now >= self.core_at {
            self.core.handle_timeout(now);
            self.core_at = self.core.poll_timeout(now);
        }
        if now >= self.catalog_at {
            self.catalog_at = now + REFRESH_INTERVAL;
            self.send_catalog(now, sfu, None);
        }
    }

    /// A peer connection of the SFU core came or went; `who` owns it (a local peer).
    pub fn event(&mut self, now: Instant, event: &SfuEvent, who: Option<Who>, sfu: &mut Sfu) {
        match event {
            SfuEvent::PeerConnected { peer, spec } => {
                if spec.kind != PeerKind::Publisher || self.by_remote.contains_key(peer) {
                    return;
                }
                let Some(who) = who else {
                    return;
                };
                let lead = sfu.peer_spec(*peer).is_some_and(|s| s.lead);
                let tracks: Vec<AnnouncedTrack> = sfu
                    .publisher_tracks(*peer)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(kind, layers)| AnnouncedTrack {
                        kind: track_kind(kind),
                        layers: u8::try_from(layers).unwrap_or(u8::MAX),
                        rates: Vec::new(),
                    })
                    .collect();
                let key = (spec.session.clone(), spec.participant.clone(), spec.source);
                for kind in kinds(&tracks) {
                    self.core.set_local(track_id(&key, kind), true);
                }
                self.local.insert(
                    *peer,
                    LocalPub {
                        key,
                        who,
                        lead,
                        tracks,
                        codecs: sfu.publisher_codecs(*peer).unwrap_or_default(),
                        relayed: false,
                    },
                );
                self.catalog_soon(now);
            }
            SfuEvent::PeerRemoved { peer, .. } => {
                if let Some(key) = self.by_remote.remove(peer) {
                    // Removed by the SFU core itself (a failure): added again on review.
                    if let Some(remote) = self.remote.get_mut(&key) {
                        remote.sfu = None;
                    }
                    return;
                }
                let Some(local) = self.local.remove(peer) else {
                    return;
                };
                // Another publisher of the same participant and source may still be here (a
                // reconnect overlapping the old connection).
                let still = self.local.values().any(|l| l.key == local.key);
                if !still {
                    for kind in kinds(&local.tracks) {
                        self.core.set_local(track_id(&local.key, kind), false);
                    }
                }
                self.catalog_soon(now);
            }
        }
    }

    /// Something from a link.
    pub fn input(&mut self, now: Instant, input: RelayInput, sfu: &mut Sfu) {
        match input {
            RelayInput::Datagram { from, bytes } => match decode_datagram(&bytes) {
                Ok((channel, layer, packet)) => {
                    self.core
                        .handle_datagram(now, &from, channel, layer, Arc::from(packet));
                }
                Err(_) => self.counters.malformed += 1,
            },
            RelayInput::Message { from, message } => match message {
                LinkMessage::Relay { message } => self.core.handle_message(now, from, message),
                LinkMessage::Catalog { catalog } => {
                    self.counters.catalogs_received += 1;
                    self.catalogs.insert(from, (catalog.publishers, now));
                    self.review(now, sfu);
                }
                // Reports are kept by the links.
                LinkMessage::Edge { .. } => {}
            },
            RelayInput::Link { peer, up } => {
                self.core.set_link(now, &peer, up);
                if up {
                    self.up.insert(peer.clone());
                    self.send_catalog(now, sfu, Some(&peer));
                } else {
                    self.up.remove(&peer);
                    // What waited for the link is stale now.
                    if let Some(queue) = self.queues.get_mut(&peer) {
                        while queue.pop().is_some() {}
                    }
                }
                self.review(now, sfu);
            }
        }
    }

    /// Moves what the SFU core and the relay core have for each other, and sends datagrams.
    /// True when the SFU core was given something (so it may have output again).
    pub fn pump(&mut self, now: Instant, sfu: &mut Sfu) -> bool {
        let mut fed = false;
        while let Some((peer, packet)) = sfu.poll_relayed() {
            let Some(local) = self.local.get(&peer) else {
                continue;
            };
            let kind = track_kind(packet.kind);
            let layer = u8::try_from(packet.layer).unwrap_or(u8::MAX);
            let wire = WirePacket {
                track: u8::try_from(packet.track).unwrap_or(u8::MAX),
                layer,
                kind,
                pt: *packet.params.pt(),
                ssrc: packet.ssrc,
                seq: packet.seq,
                rtp_time: packet.rtp_time,
                marker: packet.marker,
                keyframe: packet.keyframe,
                audio_level: packet.audio_level,
                voice_activity: packet.voice_activity,
            };
            let bytes = wire.encode(&packet.payload);
            let track = track_id(&local.key, kind);
            self.core
                .handle_local_media(&track, layer, Arc::from(bytes));
        }
        let mut keyframes = Vec::new();
        while let Some(request) = sfu.poll_remote_keyframe() {
            keyframes.push(request);
        }
        if !keyframes.is_empty() {
            // A subscriber that just bound or moved up a layer: its demand first, so the
            // import it needs exists when the keyframe request reaches the relay core.
            self.review(now, sfu);
        }
        for (peer, track, layer) in keyframes {
            let Some(remote) = self.by_remote.get(&peer).and_then(|k| self.remote.get(k)) else {
                continue;
            };
            let Some(kind) = remote.announced.tracks.get(track).map(|t| t.kind) else {
                continue;
            };
            let id = track_id(&remote_key(&remote.announced), kind);
            self.core
                .request_keyframe(now, &id, u8::try_from(layer).unwrap_or(u8::MAX));
        }
        while let Some(output) = self.core.poll_output() {
            match output {
                RelayOutput::Send { to, message } => {
                    self.links.send_message(&to, LinkMessage::Relay { message });
                }
                RelayOutput::Datagram {
                    to,
                    channel,
                    kind,
                    layer,
                    packet,
                } => {
                    let datagram = Bytes::from(encode_datagram(channel, layer, &packet));
                    let queue = self.queues.entry(to.clone()).or_default();
                    // Behind what already waits, or waiting itself when the connection is full.
                    if !queue.is_empty()
                        || self.links.send_datagram(&to, datagram.clone()) == Sent::Full
                    {
                        queue.push(kind, (kind, datagram));
                    }
                }
                RelayOutput::Deliver {
                    track,
                    layer: _,
                    packet,
                } => {
                    fed |= self.deliver(now, &track, &packet, sfu);
                }
                RelayOutput::LocalKeyframe { track, layer } => {
                    for (peer, local) in &self.local {
                        if track_id(&local.key, track.kind) != track {
                            continue;
                        }
                        for (index, t) in local.tracks.iter().enumerate() {
                            if t.kind == track.kind {
                                sfu.request_publisher_keyframe(
                                    now,
                                    *peer,
                                    index,
                                    usize::from(layer),
                                );
                                fed = true;
                            }
                        }
                    }
                }
            }
        }
        self.drain_queues();
        fed
    }

    fn deliver(&mut self, now: Instant, track: &TrackId, packet: &[u8], sfu: &mut Sfu) -> bool {
        let key = (track.session.clone(), track.publisher.clone(), track.source);
        let Some(remote) = self.remote.get(&key) else {
            return false;
        };
        let Some(id) = remote.sfu else {
            return false;
        };
        let Ok((wire, payload)) = WirePacket::decode(packet) else {
            self.counters.malformed += 1;
            return false;
        };
        let Some(params) = remote.codecs.get(&wire.pt).copied() else {
            self.counters.unknown_codec += 1;
            return false;
        };
        self.counters.delivered += 1;
        sfu.handle_relayed(
            now,
            id,
            RelayedPacket {
                track: usize::from(wire.track),
                layer: usize::from(wire.layer),
                kind: match wire.kind {
                    TrackKind::Audio => MediaKind::Audio,
                    TrackKind::Video => MediaKind::Video,
                },
                params,
                ssrc: wire.ssrc,
                seq: wire.seq,
                rtp_time: wire.rtp_time,
                marker: wire.marker,
                audio_level: wire.audio_level,
                voice_activity: wire.voice_activity,
                keyframe: wire.keyframe,
                payload: Arc::from(payload),
            },
        );
        true
    }

    fn drain_queues(&mut self) {
        for (to, queue) in &mut self.queues {
            while let Some((kind, datagram)) = queue.pop() {
                if self.links.send_datagram(to, datagram.clone()) == Sent::Full {
                    queue.unpop(kind, (kind, datagram));
                    break;
                }
            }
        }
    }

    fn catalog_soon(&mut self, now: Instant) {
        self.catalog_at = self.catalog_at.min(now + CATALOG_DEBOUNCE);
    }

    /// Tells one peer (or every peer whose link is up) what this edge can relay.
    fn send_catalog(&mut self, now: Instant, sfu: &Sfu, only: Option<&NodeId>) {
        let mut publishers: Vec<Announced> = self
            .local
            .iter()
            .map(|(peer, local)| {
                let rates = sfu.publisher_layer_rates(now, *peer).unwrap_or_default();
                let mut tracks = local.tracks.clone();
                for (track, rates) in tracks.iter_mut().zip(rates) {
                    track.rates = rates;
                }
                Announced {
                    session: local.key.0.clone(),
                    participant: local.key.1.clone(),
                    name: local.who.name.clone(),
                    role: local.who.role,
                    source: local.key.2,
                    lead: local.lead,
                    tracks,
                    origin: self.node.clone(),
                    via: Vec::new(),
                    codecs: local.codecs.clone(),
                }
            })
            .collect();
        for remote in self.remote.values() {
            let mut announced = remote.announced.clone();
            announced.via = remote.route[..remote.route.len().saturating_sub(1)].to_vec();
            publishers.push(announced);
        }
        publishers.truncate(crate::relay::wire::CATALOG_PUBLISHERS_MAX);
        let targets: Vec<NodeId> = match only {
            Some(peer) => vec![peer.clone()],
            None => self.up.iter().cloned().collect(),
        };
        for peer in targets {
            // A peer is not told of routes through itself.
            let catalog = Catalog {
                publishers: publishers
                    .iter()
                    .filter(|p| p.origin != peer && !p.via.contains(&peer))
                    .cloned()
                    .collect(),
            };
            self.counters.catalogs_sent += 1;
            self.links
                .send_message(&peer, LinkMessage::Catalog { catalog });
        }
    }

    /// Brings remote publishers, their routes and the demand for them in line with the
    /// catalogs and the subscribers here; marks which local publishers are exported.
    fn review(&mut self, now: Instant, sfu: &mut Sfu) {
        // The best route to every publisher heard of.
        let mut best: BTreeMap<PubKey, (bool, Vec<NodeId>, Announced)> = BTreeMap::new();
        self.catalogs.retain(|sender, (_, at)| {
            self.up.contains(sender) || now.saturating_duration_since(*at) < CATALOG_STALE_AFTER
        });
        let local_keys: HashSet<&PubKey> = self.local.values().map(|l| &l.key).collect();
        for (sender, (publishers, _)) in &self.catalogs {
            let down = !self.up.contains(sender);
            for announced in publishers {
                if announced.origin == self.node || announced.via.contains(&self.node) {
                    continue;
                }
                let mut route = Vec::with_capacity(announced.via.len() + 2);
                if *sender != announced.origin {
                    route.push(sender.clone());
                    route.extend(announced.via.iter().cloned());
                }
                route.push(announced.origin.clone());
                if route.len() >= RELAY_HOPS_MAX {
                    continue;
                }
                let key = remote_key(announced);
                if local_keys.contains(&key) {
                    continue;
                }
                let better = best
                    .get(&key)
                    .is_none_or(|(d, r, _)| (down, route.len(), &route[0]) < (*d, r.len(), &r[0]));
                if better {
                    best.insert(key, (down, route, announced.clone()));
                }
            }
        }
        // Gone from every catalog: removed here too.
        let gone: Vec<PubKey> = self
            .remote
            .keys()
            .filter(|k| !best.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(remote) = self.remote.remove(&key) {
                self.drop_remote(now, &key, remote, sfu);
            }
        }
        for (key, (_, route, announced)) in best {
            let codecs = announced.codecs.iter().map(|p| (*p.pt(), *p)).collect();
            match self.remote.get_mut(&key) {
                Some(remote) => {
                    remote.route = route;
                    remote.codecs = codecs;
                    remote.announced = announced;
                }
                None => {
                    self.presence
                        .set_live(key.0.clone(), remote_who(&announced), key.2, true);
                    self.remote.insert(
                        key,
                        RemotePub {
                            announced,
                            route,
                            codecs,
                            sfu: None,
                            demand: BTreeMap::new(),
                        },
                    );
                }
            }
        }
        // Remote publishers exist in the SFU core while their session has subscribers here.
        let keys: Vec<PubKey> = self.remote.keys().cloned().collect();
        for key in keys {
            let wanted = sfu.subscribers_in(&key.0) > 0;
            let Some(remote) = self.remote.get_mut(&key) else {
                continue;
            };
            match (wanted, remote.sfu) {
                (true, None) => {
                    let spec = PeerSpec {
                        session: key.0.clone(),
                        participant: key.1.clone(),
                        kind: PeerKind::Publisher,
                        source: key.2,
                        lead: remote.announced.lead,
                    };
                    let tracks: Vec<(MediaKind, usize)> = remote
                        .announced
                        .tracks
                        .iter()
                        .map(|t| (t.media_kind(), usize::from(t.layers)))
                        .collect();
                    match sfu.add_remote_publisher(now, spec, &tracks) {
                        Ok(id) => {
                            info!(session = %key.0, participant = %key.1, source = %key.2,
                                  origin = %remote.announced.origin, "relaying a publisher from another edge");
                            self.counters.remote_added += 1;
                            remote.sfu = Some(id);
                            self.by_remote.insert(id, key.clone());
                        }
                        Err(error) => {
                            debug!(session = %key.0, %error, "no room for a remote publisher");
                        }
                    }
                }
                (false, Some(id)) => {
                    remote.sfu = None;
                    self.by_remote.remove(&id);
                    sfu.remove_peer(now, id);
                    self.counters.remote_removed += 1;
                }
                _ => {}
            }
            // Demand: the highest layer any subscriber here wants, per kind.
            let Some(remote) = self.remote.get_mut(&key) else {
                continue;
            };
            if let Some(id) = remote.sfu {
                let rates: Vec<Vec<u64>> = remote
                    .announced
                    .tracks
                    .iter()
                    .map(|t| t.rates.clone())
                    .collect();
                sfu.set_remote_layer_rates(id, &rates);
            }
            let layer = remote.sfu.and_then(|id| sfu.wanted_layer(id));
            for kind in kinds(&remote.announced.tracks) {
                let want = layer.map(|l| match kind {
                    TrackKind::Audio => 0,
                    TrackKind::Video => u8::try_from(l).unwrap_or(u8::MAX),
                });
                let demand = (remote.route.clone(), want);
                if remote.demand.get(&kind) == Some(&demand) {
                    continue;
                }
                self.core
                    .set_demand(now, &track_id(&key, kind), demand.0.clone(), want);
                remote.demand.insert(kind, demand);
            }
        }
        // Local publishers hand their packets out only while some edge imports them.
        for (peer, local) in &mut self.local {
            let exported = kinds(&local.tracks)
                .into_iter()
                .any(|kind| !self.core.exports_of(&track_id(&local.key, kind)).is_empty());
            if exported != local.relayed {
                local.relayed = exported;
                sfu.set_relayed(*peer, exported);
            }
        }
    }

    fn drop_remote(&mut self, now: Instant, key: &PubKey, remote: RemotePub, sfu: &mut Sfu) {
        self.presence
            .set_live(key.0.clone(), remote_who(&remote.announced), key.2, false);
        for kind in remote.demand.keys() {
            self.core
                .set_demand(now, &track_id(key, *kind), remote.route.clone(), None);
        }
        if let Some(id) = remote.sfu {
            self.by_remote.remove(&id);
            sfu.remove_peer(now, id);
            self.counters.remote_removed += 1;
        }
    }

    pub fn snapshot(&self) -> RelaySnapshot {
        RelaySnapshot {
            core: self.core.counters.clone(),
            shell: self.counters.clone(),
            imports: self.core.imports_len(),
            exports: self.core.exports_len(),
            remote_publishers: self.by_remote.len(),
            dropped_audio: self.queues.values().map(|q| q.dropped_audio).sum(),
            dropped_video: self.queues.values().map(|q| q.dropped_video).sum(),
            queued: self.queues.values().map(|q| q.len()).sum(),
            links: {
                let mut links: Vec<LinkFigures> = self
                    .links
                    .peers()
                    .filter_map(|peer| {
                        let c = self.links.counters(peer)?;
                        let load = |a: &std::sync::atomic::AtomicU64| {
                            a.load(std::sync::atomic::Ordering::Relaxed)
                        };
                        Some(LinkFigures {
                            peer: peer.0.clone(),
                            up: self.up.contains(peer),
                            datagrams_sent: load(&c.datagrams_sent),
                            bytes_sent: load(&c.datagram_bytes_sent),
                            datagrams_received: load(&c.datagrams_received),
                            bytes_received: load(&c.datagram_bytes_received),
                            datagrams_too_large: load(&c.datagrams_too_large),
                            datagrams_dropped_inbound: load(&c.datagrams_dropped_inbound),
                            messages_dropped: load(&c.messages_dropped),
                            messages_malformed: load(&c.messages_malformed),
                        })
                    })
                    .collect();
                links.sort_by(|a, b| a.peer.cmp(&b.peer));
                links
            },
        }
    }
}

fn track_kind(kind: MediaKind) -> TrackKind {
    match kind {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
    }
}

fn kinds(tracks: &[AnnouncedTrack]) -> Vec<TrackKind> {
    let mut kinds: Vec<TrackKind> = tracks.iter().map(|t| t.kind).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

fn track_id(key: &PubKey, kind: TrackKind) -> TrackId {
    TrackId {
        session: key.0.clone(),
        publisher: key.1.clone(),
        source: key.2,
        kind,
    }
}

fn remote_who(announced: &Announced) -> Who {
    Who {
        id: announced.participant.clone(),
        name: announced.name.clone(),
        role: announced.role,
    }
}

fn remote_key(announced: &Announced) -> PubKey {
    (
        announced.session.clone(),
        announced.participant.clone(),
        announced.source,
    )
}
