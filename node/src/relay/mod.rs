//! The media relay core: which tracks this edge receives from other edges and sends to them,
//! one copy per edge whatever the number of its subscribers. Sans-IO, like the SFU and log
//! cores: control messages, media datagrams, local demand, link changes and the time go in;
//! messages, datagrams and deliveries come out of [`RelayCore::poll_output`].
//!
//! ## The protocol
//! - A track is named cluster-wide by [`TrackId`]: the session, the publishing participant, the
//!   source and the kind. Its **origin** is the edge its publisher is connected to.
//! - An edge whose participants want a remote track **imports** it: it sends
//!   [`RelayMessage::Subscribe`] along a route (the next hop first, the origin last) with the
//!   highest simulcast layer any of its subscribers needs. The next hop **exports** the track to
//!   it, assigning a channel number for the datagrams, and sends every packet of layers up to
//!   that one once. A hop that is not the origin imports the track itself (a chain); the path of
//!   a request lists the edges it passed, and an edge on it refuses, so chains never loop.
//! - Subscriptions are refreshed every [`REFRESH_INTERVAL`]; an export not refreshed for
//!   [`EXPORT_TIMEOUT`] ends. The last subscriber leaving ends an import at once
//!   ([`RelayMessage::Unsubscribe`]).
//! - Keyframe requests travel upstream, coalesced per track and layer, to the origin, which asks
//!   its publisher.
//! - A link that drops stalls the imports behind it (video freezes); when it is back, they are
//!   subscribed again and a keyframe is asked for, so video resumes by itself.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multistream_proto::{ParticipantId, SessionId, Source};
use serde::{Deserialize, Serialize};

use crate::log::NodeId;

pub mod wire;

/// Tracks one edge may import from this one at once; beyond it, subscriptions are refused.
pub const RELAYED_TRACKS_PER_PEER_MAX: usize = 64;

/// Tracks this edge imports at once, at most.
pub const IMPORTS_MAX: usize = 512;

/// Edges a relay chain may pass through, the origin included.
pub const RELAY_HOPS_MAX: usize = 4;

/// Highest simulcast layer index (layers are 0 = lowest).
pub const LAYER_MAX: u8 = 3;

/// An importer re-sends its subscriptions this often (also how it notices a lost one).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// An export whose importer has not refreshed it for this long ends.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(7);

/// A flowing import that gets no media for this long counts as stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(1);

/// Keyframe requests for one track layer are forwarded at most this often.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

/// Datagrams waiting for one peer, at most (see [`SendQueue`]).
pub const DATAGRAM_QUEUE_MAX: usize = 2_048;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
}

/// A published track, named the same on every edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrackId {
    pub session: SessionId,
    pub publisher: ParticipantId,
    pub source: Source,
    pub kind: TrackKind,
}

/// Control messages between edges about relayed tracks (on the peer plane's reliable streams).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RelayMessage {
    /// Send me `track`, layers up to `max_layer`, on a channel of your choosing. `route` is the
    /// rest of the way to the origin after the receiver (empty: the receiver is the origin);
    /// `path` the edges the request came through, the sender last.
    Subscribe {
        track: TrackId,
        max_layer: u8,
        route: Vec<NodeId>,
        path: Vec<NodeId>,
    },
    /// The track comes on this channel.
    Accepted {
        track: TrackId,
        channel: u32,
    },
    Unsubscribe {
        track: TrackId,
    },
    /// A subscriber downstream needs a keyframe of this layer.
    Keyframe {
        track: TrackId,
        layer: u8,
    },
    /// The subscription was refused; `code` is stable.
    Refused {
        track: TrackId,
        code: String,
        message: String,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayOutput {
    Send {
        to: NodeId,
        message: RelayMessage,
    },
    /// A media packet for another edge, as a datagram on `channel`.
    Datagram {
        to: NodeId,
        channel: u32,
        kind: TrackKind,
        layer: u8,
        packet: Arc<[u8]>,
    },
    /// A relayed packet for this edge's subscribers.
    Deliver {
        track: TrackId,
        layer: u8,
        packet: Arc<[u8]>,
    },
    /// The origin's publisher should send a keyframe of this layer.
    LocalKeyframe {
        track: TrackId,
        layer: u8,
    },
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct RelayCounters {
    pub datagrams_out: u64,
    pub datagrams_in: u64,
    pub datagrams_unknown: u64,
    pub subscriptions_refused: u64,
    pub keyframes_forwarded: u64,
    pub stalls: u64,
    pub resumes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImportState {
    /// Subscribed, no answer yet (or refused: tried again at the next refresh).
    Requesting,
    Flowing,
    /// No media for a while, or the link is down: frozen, waiting.
    Stalled,
}

#[derive(Debug)]
struct Import {
    route: Vec<NodeId>,
    /// Highest layer this edge's own subscribers need; `None`: none here.
    local: Option<u8>,
    /// The layer last asked for upstream.
    requested: u8,
    channel: Option<u32>,
    state: ImportState,
    refreshed_at: Instant,
    media_at: Option<Instant>,
    refused: Option<(String, String)>,
    keyframe_at: BTreeMap<u8, Instant>,
    /// Layers a subscriber here wants a keyframe of before the subscription is accepted: asked
    /// for with the first keyframe request once it is.
    keyframes_pending: BTreeSet<u8>,
}

impl Import {
    fn new(route: Vec<NodeId>, local: Option<u8>, requested: u8, now: Instant) -> Self {
        Self {
            route,
            local,
            requested,
            channel: None,
            state: ImportState::Requesting,
            refreshed_at: now,
            media_at: None,
            refused: None,
            keyframe_at: BTreeMap::new(),
            keyframes_pending: BTreeSet::new(),
        }
    }
}

#[derive(Debug)]
struct Export {
    channel: u32,
    max_layer: u8,
    refreshed_at: Instant,
}

/// The relay core of one edge.
pub struct RelayCore {
    node: NodeId,
    /// Tracks published on this edge.
    local: BTreeSet<TrackId>,
    imports: BTreeMap<TrackId, Import>,
    /// By track, then by the importing edge.
    exports: BTreeMap<TrackId, BTreeMap<NodeId, Export>>,
    /// (upstream edge, channel) → track, for incoming datagrams.
    channels: BTreeMap<(NodeId, u32), TrackId>,
    next_channel: u32,
    /// Edges whose link is down.
    down: BTreeSet<NodeId>,
    local_keyframe_at: BTreeMap<(TrackId, u8), Instant>,
    outputs: VecDeque<RelayOutput>,
    pub counters: RelayCounters,
}

impl RelayCore {
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            local: BTreeSet::new(),
            imports: BTreeMap::new(),
            exports: BTreeMap::new(),
            channels: BTreeMap::new(),
            next_channel: 1,
            down: BTreeSet::new(),
            local_keyframe_at: BTreeMap::new(),
            outputs: VecDeque::new(),
            counters: RelayCounters::default(),
        }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// A track is published on this edge (or no longer is).
    pub fn set_local(&mut self, track: TrackId, published: bool) {
        if published {
            self.local.insert(track);
        } else {
            self.local.remove(&track);
        }
    }

    /// The edges this edge sends `track` to, and the highest layer each asked for.
    pub fn exports_of(&self, track: &TrackId) -> Vec<(NodeId, u8)> {
        self.exports
            .get(track)
            .map(|e| e.iter().map(|(n, x)| (n.clone(), x.max_layer)).collect())
            .unwrap_or_default()
    }

    /// Tracks imported now.
    pub fn imports_len(&self) -> usize {
        self.imports.len()
    }

    /// Exports now: (track, importing edge) pairs.
    pub fn exports_len(&self) -> usize {
        self.exports.values().map(BTreeMap::len).sum()
    }

    /// Whether `track` is imported and media flows.
    pub fn is_flowing(&self, track: &TrackId) -> bool {
        self.imports
            .get(track)
            .is_some_and(|i| i.state == ImportState::Flowing)
    }

    /// Why the last subscription to `track` was refused, while it is.
    pub fn refusal(&self, track: &TrackId) -> Option<&(String, String)> {
        self.imports.get(track).and_then(|i| i.refused.as_ref())
    }

    /// This edge's subscribers of a remote `track` need layers up to `max_layer` (`None`: there
    /// are none left). `route` leads to the origin, next hop first.
    pub fn set_demand(
        &mut self,
        now: Instant,
        track: &TrackId,
        route: Vec<NodeId>,
        max_layer: Option<u8>,
    ) {
        let max_layer = max_layer.map(|l| l.min(LAYER_MAX));
        match self.imports.get_mut(track) {
            Some(import) => {
                import.local = max_layer;
                if !route.is_empty() && import.route != route {
                    let old = std::mem::replace(&mut import.route, route);
                    let channel = import.channel.take();
                    import.state = ImportState::Requesting;
                    // A new route: the old next hop stops sending at once rather than at its
                    // export's timeout.
                    if let Some(previous) = old.first()
                        && import.route.first() != Some(previous)
                    {
                        if let Some(channel) = channel {
                            self.channels.remove(&(previous.clone(), channel));
                        }
                        self.outputs.push_back(RelayOutput::Send {
                            to: previous.clone(),
                            message: RelayMessage::Unsubscribe {
                                track: track.clone(),
                            },
                        });
                    }
                }
            }
            None => {
                let Some(layer) = max_layer else {
                    return;
                };
                if route.is_empty() || self.imports.len() >= IMPORTS_MAX {
                    return;
                }
                self.imports
                    .insert(track.clone(), Import::new(route, Some(layer), layer, now));
            }
        }
        self.review_import(now, track, true);
    }

    /// A subscriber here needs a keyframe of a relayed track.
    pub fn request_keyframe(&mut self, now: Instant, track: &TrackId, layer: u8) {
        if self.local.contains(track) {
            self.local_keyframe(now, track, layer);
            return;
        }
        let Some(import) = self.imports.get_mut(track) else {
            return;
        };
        let behind_cut = import
            .route
            .first()
            .is_some_and(|next| self.down.contains(next));
        if import.channel.is_none() || behind_cut {
            // Not flowing (yet, or again): the fresh start asks for this layer too.
            import.keyframes_pending.insert(layer.min(LAYER_MAX));
            return;
        }
        if import
            .keyframe_at
            .get(&layer)
            .is_some_and(|at| now.saturating_duration_since(*at) < KEYFRAME_INTERVAL)
        {
            return;
        }
        import.keyframe_at.insert(layer, now);
        let Some(next) = import.route.first().cloned() else {
            return;
        };
        self.counters.keyframes_forwarded += 1;
        self.outputs.push_back(RelayOutput::Send {
            to: next,
            message: RelayMessage::Keyframe {
                track: track.clone(),
                layer,
            },
        });
    }

    /// A packet of a track published on this edge: one datagram to each edge that imports it.
    pub fn handle_local_media(&mut self, track: &TrackId, layer: u8, packet: Arc<[u8]>) {
        self.export_media(track, layer, &packet);
    }

    /// A datagram from another edge.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: &NodeId,
        channel: u32,
        layer: u8,
        packet: Arc<[u8]>,
    ) {
        self.counters.datagrams_in += 1;
        let Some(track) = self.channels.get(&(from.clone(), channel)).cloned() else {
            self.counters.datagrams_unknown += 1;
            return;
        };
        let Some(import) = self.imports.get_mut(&track) else {
            self.counters.datagrams_unknown += 1;
            return;
        };
        let resumed = import.state == ImportState::Stalled;
        import.state = ImportState::Flowing;
        import.media_at = Some(now);
        let local = import.local;
        if resumed {
            self.counters.resumes += 1;
        }
        if local.is_some_and(|l| layer <= l) {
            self.outputs.push_back(RelayOutput::Deliver {
                track: track.clone(),
                layer,
                packet: Arc::clone(&packet),
            });
        }
        self.export_media(&track, layer, &packet);
    }

    fn export_media(&mut self, track: &TrackId, layer: u8, packet: &Arc<[u8]>) {
        let Some(exports) = self.exports.get(track) else {
            return;
        };
        for (to, export) in exports {
            if layer > export.max_layer || self.down.contains(to) {
                continue;
            }
            self.counters.datagrams_out += 1;
            self.outputs.push_back(RelayOutput::Datagram {
                to: to.clone(),
                channel: export.channel,
                kind: track.kind,
                layer,
                packet: Arc::clone(packet),
            });
        }
    }

    /// A control message from another edge (already checked to be in the cluster).
    pub fn handle_message(&mut self, now: Instant, from: NodeId, message: RelayMessage) {
        match message {
            RelayMessage::Subscribe {
                track,
                max_layer,
                route,
                path,
            } => self.subscribe(now, from, track, max_layer, route, path),
            RelayMessage::Accepted { track, channel } => {
                let Some(import) = self.imports.get_mut(&track) else {
                    return;
                };
                if import.route.first() != Some(&from) {
                    return;
                }
                import.refused = None;
                let old = import.channel.replace(channel);
                if old == Some(channel) {
                    // A refresh answered.
                    return;
                }
                if let Some(old) = old {
                    self.channels.remove(&(from.clone(), old));
                }
                self.channels.insert((from, channel), track.clone());
                // A fresh start: the decoders need a keyframe, of the layer asked for and of
                // any layer a subscriber here asked for meanwhile.
                let mut layers = std::mem::take(&mut import.keyframes_pending);
                layers.insert(import.requested);
                import.keyframe_at.clear();
                for layer in layers {
                    self.request_keyframe(now, &track, layer);
                }
            }
            RelayMessage::Unsubscribe { track } => {
                self.unexport(&track, &from);
                // A chain ends behind its last importer.
                self.review_import(now, &track, false);
            }
            RelayMessage::Keyframe { track, layer } => {
                let exported = self
                    .exports
                    .get(&track)
                    .is_some_and(|e| e.contains_key(&from));
                if exported {
                    self.request_keyframe(now, &track, layer);
                }
            }
            RelayMessage::Refused {
                track,
                code,
                message,
            } => {
                if let Some(import) = self.imports.get_mut(&track)
                    && import.route.first() == Some(&from)
                {
                    import.refused = Some((code, message));
                    import.state = ImportState::Requesting;
                    if let Some(old) = import.channel.take() {
                        self.channels.remove(&(from, old));
                    }
                }
            }
        }
    }

    fn refuse(&mut self, to: NodeId, track: TrackId, code: &str, message: String) {
        self.counters.subscriptions_refused += 1;
        self.outputs.push_back(RelayOutput::Send {
            to,
            message: RelayMessage::Refused {
                track,
                code: code.into(),
                message,
            },
        });
    }

    fn subscribe(
        &mut self,
        now: Instant,
        from: NodeId,
        track: TrackId,
        max_layer: u8,
        route: Vec<NodeId>,
        path: Vec<NodeId>,
    ) {
        if path.contains(&self.node) || route.contains(&self.node) || route.contains(&from) {
            return self.refuse(
                from,
                track,
                "loop",
                "this relay route passes this edge twice".into(),
            );
        }
        if path.len() + route.len() + 1 > RELAY_HOPS_MAX {
            return self.refuse(
                from,
                track,
                "too_far",
                format!("a relay route passes at most {RELAY_HOPS_MAX} edges"),
            );
        }
        let is_origin = self.local.contains(&track);
        if !is_origin && route.is_empty() {
            return self.refuse(
                from,
                track,
                "unknown_track",
                "that track is not published on this edge".into(),
            );
        }
        let already = self
            .exports
            .get(&track)
            .is_some_and(|e| e.contains_key(&from));
        let count = self
            .exports
            .values()
            .filter(|e| e.contains_key(&from))
            .count();
        if !already && count >= RELAYED_TRACKS_PER_PEER_MAX {
            return self.refuse(
                from,
                track,
                "limit",
                format!("an edge relays at most {RELAYED_TRACKS_PER_PEER_MAX} tracks to another"),
            );
        }
        let max_layer = max_layer.min(LAYER_MAX);
        let channel = match self.exports.get_mut(&track).and_then(|e| e.get_mut(&from)) {
            Some(export) => {
                export.max_layer = max_layer;
                export.refreshed_at = now;
                export.channel
            }
            None => {
                let channel = self.next_channel;
                self.next_channel = self.next_channel.wrapping_add(1).max(1);
                self.exports.entry(track.clone()).or_default().insert(
                    from.clone(),
                    Export {
                        channel,
                        max_layer,
                        refreshed_at: now,
                    },
                );
                channel
            }
        };
        self.outputs.push_back(RelayOutput::Send {
            to: from.clone(),
            message: RelayMessage::Accepted {
                track: track.clone(),
                channel,
            },
        });
        if is_origin {
            return;
        }
        // A chain: this edge imports the track to pass it on.
        let mut path = path;
        path.push(from);
        match self.imports.get_mut(&track) {
            Some(import) => {
                import.route = route;
            }
            None => {
                if self.imports.len() >= IMPORTS_MAX {
                    return;
                }
                self.imports
                    .insert(track.clone(), Import::new(route, None, max_layer, now));
            }
        }
        self.review_import_with_path(now, &track, true, path);
    }

    fn unexport(&mut self, track: &TrackId, to: &NodeId) {
        let Some(exports) = self.exports.get_mut(track) else {
            return;
        };
        exports.remove(to);
        if exports.is_empty() {
            self.exports.remove(track);
        }
    }

    /// The highest layer an import must ask for: its own subscribers' and its exports'.
    fn needed(&self, track: &TrackId) -> Option<u8> {
        let local = self.imports.get(track).and_then(|i| i.local);
        let exported = self
            .exports
            .get(track)
            .and_then(|e| e.values().map(|x| x.max_layer).max());
        local.max(exported)
    }

    fn review_import(&mut self, now: Instant, track: &TrackId, changed: bool) {
        self.review_import_with_path(now, track, changed, Vec::new());
    }

    /// Subscribes, re-subscribes with another layer, or ends an import, as its need says.
    fn review_import_with_path(
        &mut self,
        now: Instant,
        track: &TrackId,
        changed: bool,
        path: Vec<NodeId>,
    ) {
        let needed = self.needed(track);
        let Some(import) = self.imports.get_mut(track) else {
            return;
        };
        let Some(next) = import.route.first().cloned() else {
            return;
        };
        let Some(layer) = needed else {
            let import = self.imports.remove(track);
            if let Some(channel) = import.and_then(|i| i.channel) {
                self.channels.remove(&(next.clone(), channel));
            }
            self.outputs.push_back(RelayOutput::Send {
                to: next,
                message: RelayMessage::Unsubscribe {
                    track: track.clone(),
                },
            });
            return;
        };
        if !changed && layer == import.requested {
            return;
        }
        import.requested = layer;
        import.refreshed_at = now;
        if self.down.contains(&next) {
            return;
        }
        let mut path = path;
        path.push(self.node.clone());
        self.outputs.push_back(RelayOutput::Send {
            to: next,
            message: RelayMessage::Subscribe {
                track: track.clone(),
                max_layer: layer,
                route: import.route[1..].to_vec(),
                path,
            },
        });
    }

    /// The link to `peer` went down (`up = false`) or came back.
    pub fn set_link(&mut self, now: Instant, peer: &NodeId, up: bool) {
        if !up {
            if !self.down.insert(peer.clone()) {
                return;
            }
            for import in self.imports.values_mut() {
                if import.route.first() == Some(peer) && import.state != ImportState::Stalled {
                    import.state = ImportState::Stalled;
                    self.counters.stalls += 1;
                }
            }
            return;
        }
        if !self.down.remove(peer) {
            return;
        }
        let behind: Vec<TrackId> = self
            .imports
            .iter()
            .filter(|(_, i)| i.route.first() == Some(peer))
            .map(|(t, _)| t.clone())
            .collect();
        for track in behind {
            if let Some(import) = self.imports.get_mut(&track) {
                // What comes next is a fresh start, whatever channel it comes on.
                if let Some(channel) = import.channel.take() {
                    self.channels.remove(&(peer.clone(), channel));
                }
            }
            self.review_import(now, &track, true);
        }
    }

    /// Refreshes subscriptions, ends exports nobody refreshed, notices stalled imports.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<TrackId> = self
            .imports
            .iter()
            .filter(|(_, i)| now.saturating_duration_since(i.refreshed_at) >= REFRESH_INTERVAL)
            .map(|(t, _)| t.clone())
            .collect();
        for track in due {
            self.review_import(now, &track, true);
        }
        for import in self.imports.values_mut() {
            if import.state == ImportState::Flowing
                && import
                    .media_at
                    .is_some_and(|at| now.saturating_duration_since(at) >= STALL_AFTER)
            {
                import.state = ImportState::Stalled;
                self.counters.stalls += 1;
            }
        }
        let mut ended = Vec::new();
        for (track, exports) in &mut self.exports {
            exports.retain(|to, export| {
                let alive = now.saturating_duration_since(export.refreshed_at) < EXPORT_TIMEOUT;
                if !alive {
                    ended.push((track.clone(), to.clone()));
                }
                alive
            });
        }
        self.exports.retain(|_, e| !e.is_empty());
        for (track, _) in ended {
            if !self.local.contains(&track) {
                self.review_import(now, &track, false);
            }
        }
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        now + Duration::from_millis(250)
    }

    pub fn poll_output(&mut self) -> Option<RelayOutput> {
        self.outputs.pop_front()
    }

    fn local_keyframe(&mut self, now: Instant, track: &TrackId, layer: u8) {
        let key = (track.clone(), layer);
        if self
            .local_keyframe_at
            .get(&key)
            .is_some_and(|at| now.saturating_duration_since(*at) < KEYFRAME_INTERVAL)
        {
            return;
        }
        self.local_keyframe_at.insert(key, now);
        self.outputs.push_back(RelayOutput::LocalKeyframe {
            track: track.clone(),
            layer,
        });
    }
}

/// Datagrams waiting for one peer's QUIC connection, with a drop policy: when full, the oldest
/// video goes first, so audio keeps flowing through congestion; audio is dropped only when
/// there is nothing else.
#[derive(Debug)]
pub struct SendQueue<T> {
    audio: VecDeque<T>,
    video: VecDeque<T>,
    pub dropped_audio: u64,
    pub dropped_video: u64,
}

impl<T> Default for SendQueue<T> {
    fn default() -> Self {
        Self {
            audio: VecDeque::new(),
            video: VecDeque::new(),
            dropped_audio: 0,
            dropped_video: 0,
        }
    }
}

impl<T> SendQueue<T> {
    pub fn len(&self) -> usize {
        self.audio.len() + self.video.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, kind: TrackKind, item: T) {
        if self.len() >= DATAGRAM_QUEUE_MAX {
            if self.video.pop_front().is_some() {
                self.dropped_video += 1;
            } else if kind == TrackKind::Video {
                self.dropped_video += 1;
                return;
            } else if self.audio.pop_front().is_some() {
                self.dropped_audio += 1;
            }
        }
        match kind {
            TrackKind::Audio => self.audio.push_back(item),
            TrackKind::Video => self.video.push_back(item),
        }
    }

    /// The next datagram to send: audio first.
    pub fn pop(&mut self) -> Option<T> {
        self.audio.pop_front().or_else(|| self.video.pop_front())
    }

    /// Puts back what [`Self::pop`] returned and could not be sent yet, to go first next time.
    pub fn unpop(&mut self, kind: TrackKind, item: T) {
        match kind {
            TrackKind::Audio => self.audio.push_front(item),
            TrackKind::Video => self.video.push_front(item),
        }
    }
}

#[cfg(test)]
mod tests;
