//! The SFU core: forwards RTP from publishers to subscribers, one str0m [`Rtc`] per peer
//! connection, all peers behind one UDP socket.
//!
//! Sans-IO. Inputs are datagrams, timeouts and peer commands, each with the current time as a
//! value; outputs are datagrams to send, events for the shell and the next deadline
//! ([`Sfu::poll_output`]). This module never reads the clock, spawns, locks, sleeps or touches a
//! socket: the shell in `crate::media` does all of that. Randomness lives inside str0m (ICE
//! credentials, SRTP keys).
//!
//! What it owns:
//! - rooms (one per session) with their publishers and subscribers, under named limits;
//! - binding a subscriber to whoever currently publishes the source it asked for, re-binding
//!   when that publisher leaves and another (or the same person) comes back;
//! - per-subscriber simulcast layer choice from the subscriber's bandwidth estimate, switching
//!   only on a keyframe of the new layer;
//! - keyframe requests: one when a subscriber starts, subscribers' own requests forwarded, all
//!   coalesced per publisher layer;
//! - reaping peers that close, time out on ICE or never connect.
//!
//! NACK and RTX are hop by hop: str0m asks the publisher to resend what the node lost, and
//! answers subscribers' NACKs from its own send buffer.

pub mod keyframe;
pub mod layer;
pub mod rewrite;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multistream_proto::{ParticipantId, SessionId, Source};
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::{Codec, PayloadParams};
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc, RtcConfig};
use tracing::{debug, info, warn};

use self::keyframe::VideoCodec;
use self::layer::{BitrateMeter, LayerChoice};
use self::rewrite::Rewriter;

/// Peers (publishers plus subscribers) in one session. A large lecture hall is a few hundred
/// people; past that a class should spread over several edges (cascading).
pub const SESSION_PEERS_MAX: usize = 300;

/// Peers on the whole node. Each costs a DTLS context and send buffers; two thousand is what a
/// small server forwards comfortably at classroom bitrates.
pub const NODE_PEERS_MAX: usize = 2_000;

/// Peers that have an answer but have not finished ICE and DTLS yet. Bounds the work a flood of
/// offers that never connect can cause.
pub const PEERS_CONNECTING_MAX: usize = 128;

/// Media lines in one offer. A camera is audio plus video, a screen is video plus optional audio;
/// four leaves room for a client that adds one more without letting an offer grow unbounded.
pub const PEER_TRACKS_MAX: usize = 4;

/// Simulcast layers per video track. Browsers send at most three.
pub const TRACK_LAYERS_MAX: usize = 4;

/// How long a new peer may take to complete ICE and DTLS before it is dropped.
pub const PEER_CONNECT_DEADLINE: Duration = Duration::from_secs(15);

/// Minimum gap between two keyframe requests to the same publisher layer. Without it every
/// joining subscriber costs the publisher a keyframe; with it a burst of joins shares one.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// Datagrams waiting for the shell to send. The shell flushes after each batch of at most 32
/// received datagrams, each fanned out to at most [`SESSION_PEERS_MAX`] subscribers (9,600);
/// past the limit the newest datagram is dropped and counted.
pub const TRANSMIT_QUEUE_MAX: usize = 16_384;

/// Events waiting for the shell. They are rare (peer connected or removed); the shell drains them
/// after every input.
pub const EVENT_QUEUE_MAX: usize = 4_096;

/// How often every subscriber's simulcast layer is reviewed, besides on each new estimate.
pub const LAYER_REVIEW_INTERVAL: Duration = Duration::from_millis(500);

/// Bandwidth estimate a subscriber starts with before measurements: enough for the middle
/// layer of a typical camera simulcast, so the first picture comes quickly.
pub const SUBSCRIBER_INITIAL_BITRATE_BPS: u64 = 800_000;

/// Wake-ups at the current instant handled inside one poll of a peer. With bandwidth estimation
/// on, str0m's pacer releases one packet per wake-up, so a subscriber given a run of packets in
/// one batch asks for one more wake-up than it has packets. The bound stops a peer that keeps
/// asking from starving the others (its next wake-up then goes through the shell's timer); it
/// leaves room for every packet of a full receive batch (32 datagrams) going to one peer.
const IMMEDIATE_WAKEUPS_MAX: u32 = 40;

/// A wake-up this close to now counts as immediate. str0m's pacer asks for "now plus one
/// microsecond" after a write; the shell's timer cannot wake sooner than a millisecond anyway, so
/// serving such requests at once only removes a timer round trip.
const IMMEDIATE_WAKEUP_SLACK: Duration = Duration::from_micros(500);

/// With no peers there is nothing to wake for; the shell still wakes this often.
const IDLE_WAKE_INTERVAL: Duration = Duration::from_secs(60);

/// Bounds on the source-address cache that spares scanning every peer for each datagram.
const ADDRESS_ROUTES_MAX: usize = NODE_PEERS_MAX * 4;

/// A peer connection, unique for the node's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer-{}", self.0)
    }
}

/// Which way media flows on a peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// Sends media into the session (WHIP).
    Publisher,
    /// Receives media from the session (WHEP).
    Subscriber,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Publisher => "publisher",
            PeerKind::Subscriber => "subscriber",
        }
    }
}

/// Who a new peer is and what it is for.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub session: SessionId,
    pub participant: ParticipantId,
    pub kind: PeerKind,
    pub source: Source,
    /// A publisher who leads the class (a teacher): subscribers of its source watch it rather
    /// than anyone else publishing the same source (a student made a speaker).
    pub lead: bool,
}

/// A packet of a published track as it crosses to another edge: what a subscriber there needs
/// to receive it as if the publisher were local.
#[derive(Debug, Clone)]
pub struct RelayedPacket {
    /// The publisher's track and simulcast layer (indexes, in the order of its media lines and
    /// layers).
    pub track: usize,
    pub layer: usize,
    pub kind: MediaKind,
    /// The codec and its parameters, with the publisher's payload type.
    pub params: PayloadParams,
    /// The publisher's SSRC of this layer, its extended sequence number and RTP time.
    pub ssrc: u32,
    pub seq: u64,
    pub rtp_time: u32,
    pub marker: bool,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    /// The packet starts a keyframe.
    pub keyframe: bool,
    pub payload: Arc<[u8]>,
}

/// One packet on its way to subscribers (the internal form of a local or relayed packet).
struct Media {
    track: usize,
    layer: usize,
    kind: MediaKind,
    pt: Pt,
    params: PayloadParams,
    keyframe: bool,
    ssrc: u32,
    seq: u64,
    rtp_time: u32,
    marker: bool,
    audio_level: Option<i8>,
    voice_activity: Option<bool>,
    video_orientation: Option<str0m::rtp::VideoOrientation>,
    wallclock: Instant,
    payload: Arc<[u8]>,
    payload_len: usize,
}

impl Media {
    fn relayed(&self) -> RelayedPacket {
        RelayedPacket {
            track: self.track,
            layer: self.layer,
            kind: self.kind,
            params: self.params,
            ssrc: self.ssrc,
            seq: self.seq,
            rtp_time: self.rtp_time,
            marker: self.marker,
            audio_level: self.audio_level,
            voice_activity: self.voice_activity,
            keyframe: self.keyframe,
            payload: Arc::clone(&self.payload),
        }
    }
}

/// Relayed packets waiting for the shell, at most; past it they are dropped and counted.
pub const RELAY_QUEUE_MAX: usize = 16_384;

/// Why a peer could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddPeerError {
    #[error("the offer is not valid SDP: {0}")]
    SdpMalformed(String),
    #[error("the offer has {found} media sections; at most {PEER_TRACKS_MAX} are allowed")]
    TooManyTracks { found: usize },
    #[error("the offer has no audio or video section")]
    NoMedia,
    #[error("the offer does not {0}")]
    WrongDirection(&'static str),
    #[error("the session already has {SESSION_PEERS_MAX} connections")]
    SessionFull,
    #[error("the node already has {NODE_PEERS_MAX} connections")]
    NodeFull,
    #[error("too many connections are being set up at once; try again shortly")]
    TooManyConnecting,
    #[error("the offer could not be accepted: {0}")]
    Negotiation(String),
}

/// Why a peer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Its owner asked (WHIP/WHEP DELETE).
    Left,
    /// DTLS close from the remote side.
    Closed,
    /// ICE stopped getting through.
    IceTimeout,
    /// ICE did not complete within [`PEER_CONNECT_DEADLINE`].
    NeverConnected,
    /// ICE completed but DTLS did not within [`PEER_CONNECT_DEADLINE`]: typically a client
    /// whose DTLS certificate is RSA (GStreamer's webrtcbin by default), which str0m's DTLS
    /// server does not accept.
    DtlsIncomplete,
    /// str0m reported an error for this peer; it is dropped so the others carry on.
    Failed,
    /// The node is shutting down.
    Shutdown,
}

impl RemoveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoveReason::Left => "left",
            RemoveReason::Closed => "closed",
            RemoveReason::IceTimeout => "ice_timeout",
            RemoveReason::NeverConnected => "never_connected",
            RemoveReason::DtlsIncomplete => "dtls_incomplete",
            RemoveReason::Failed => "failed",
            RemoveReason::Shutdown => "shutdown",
        }
    }
}

/// What the core tells the shell besides datagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    PeerConnected {
        peer: PeerId,
        spec: PeerSpecView,
    },
    PeerRemoved {
        peer: PeerId,
        spec: PeerSpecView,
        reason: RemoveReason,
    },
}

/// The identifying part of a peer, carried in events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpecView {
    pub session: SessionId,
    pub participant: ParticipantId,
    pub kind: PeerKind,
    pub source: Source,
}

/// What [`Sfu::poll_output`] returns.
#[derive(Debug)]
pub enum Output {
    Transmit(Transmit),
    Event(SfuEvent),
    /// Nothing more until this time or the next input.
    Timeout(Instant),
}

/// Counters the shell exports as metrics. Monotonic unless named as a gauge.
#[derive(Debug, Default, Clone)]
pub struct SfuCounters {
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    /// RTP packets received from publishers.
    pub rtp_in: u64,
    /// RTP packets written to subscribers.
    pub rtp_forwarded: u64,
    pub rtp_forwarded_bytes: u64,
    /// Datagrams that are not STUN, DTLS, RTP or RTCP.
    pub datagrams_malformed: u64,
    /// Datagrams that no peer accepted.
    pub datagrams_unrouted: u64,
    /// Datagrams dropped because [`TRANSMIT_QUEUE_MAX`] was reached.
    pub transmit_dropped: u64,
    /// RTP packets that could not be forwarded to a subscriber (no common codec).
    pub rtp_unforwardable: u64,
    pub keyframe_requests_sent: u64,
    pub keyframe_requests_coalesced: u64,
    pub layer_switches: u64,
    /// Times a peer's `Rtc` was woken by its own timer (RTCP, estimation, retransmission).
    pub peer_wakeups: u64,
    pub peer_errors: u64,
    pub peers_removed: HashMap<&'static str, u64>,
    /// Relayed packets dropped because [`RELAY_QUEUE_MAX`] was reached.
    pub relay_dropped: u64,
    /// Packets received from other edges for remote publishers.
    pub relayed_in: u64,
}

/// Settings of the core.
#[derive(Clone)]
pub struct SfuConfig {
    /// The address browsers send media to (the node's UDP socket as seen from them).
    pub candidate_addr: SocketAddr,
    /// One DTLS certificate shared by all peers: making one per peer costs a key generation.
    pub dtls_cert: DtlsCert,
    /// Per-session peer limit; at most [`SESSION_PEERS_MAX`].
    pub session_peers_max: usize,
}

struct PubLayer {
    rid: Option<Rid>,
    meter: BitrateMeter,
    keyframe_requested_at: Option<Instant>,
    /// A remote publisher's layer as its origin edge measures it (bits per second, 0: not
    /// sent): a layer this edge does not import yet can still be chosen.
    advertised_bps: u64,
}

struct PubTrack {
    mid: Mid,
    kind: MediaKind,
    layers: Vec<PubLayer>,
}

#[derive(Default)]
struct Publisher {
    tracks: Vec<PubTrack>,
    /// Incoming SSRC → (track index, layer index). Filled on first sight of each SSRC.
    routes: HashMap<u32, (usize, usize)>,
    /// When it finished ICE and DTLS: the most recently connected publisher of a source is the
    /// one subscribers see.
    connected_at: Option<Instant>,
    /// Its packets are also handed out for other edges ([`Sfu::poll_relayed`]).
    relayed: bool,
    /// A publisher on another edge whose packets come relayed ([`Sfu::handle_relayed`]); its
    /// keyframe requests go out through [`Sfu::poll_remote_keyframe`].
    remote: bool,
}

struct SubTrack {
    mid: Mid,
    kind: MediaKind,
    /// Our send SSRC on this media line, once str0m has declared it.
    ssrc: Option<Ssrc>,
    rewriter: Rewriter,
    /// Index of the publisher track that feeds this line.
    feed: Option<usize>,
    /// Publisher payload type → ours, learned per payload type.
    pt_map: Vec<(Pt, Option<Pt>)>,
    /// The simulcast layer being forwarded (index into the publisher track's layers).
    layer_current: Option<usize>,
    /// The layer wanted; differs from `layer_current` until a keyframe of it arrives.
    layer_target: Option<usize>,
    layer_switched_at: Option<Instant>,
}

impl SubTrack {
    fn new(mid: Mid, kind: MediaKind, clock_rate_hz: u32) -> Self {
        Self {
            mid,
            kind,
            ssrc: None,
            rewriter: Rewriter::new(clock_rate_hz),
            feed: None,
            pt_map: Vec::new(),
            layer_current: None,
            layer_target: None,
            layer_switched_at: None,
        }
    }

    fn unbind(&mut self) {
        self.feed = None;
        self.pt_map.clear();
        self.layer_current = None;
        self.layer_target = None;
    }
}

#[derive(Default)]
struct Subscriber {
    tracks: Vec<SubTrack>,
    feed: Option<PeerId>,
    estimate_bps: Option<u64>,
}

enum Role {
    Publisher(Publisher),
    Subscriber(Subscriber),
}

struct Peer {
    spec: PeerSpec,
    rtc: Rtc,
    role: Role,
    created_at: Instant,
    connected: bool,
    timeout: Instant,
    addrs: Vec<SocketAddr>,
    /// Set when a removal is decided during a poll; acted on right after.
    doomed: Option<RemoveReason>,
    /// ICE got through at least once (tells a DTLS failure from a network one).
    ice_connected: bool,
}

impl Peer {
    fn view(&self) -> PeerSpecView {
        PeerSpecView {
            session: self.spec.session.clone(),
            participant: self.spec.participant.clone(),
            kind: self.spec.kind,
            source: self.spec.source,
        }
    }
}

#[derive(Default)]
struct Room {
    publishers: Vec<PeerId>,
    subscribers: Vec<PeerId>,
}

impl Room {
    fn len(&self) -> usize {
        self.publishers.len() + self.subscribers.len()
    }
}

/// The SFU state machine. See the module docs.
pub struct Sfu {
    config: SfuConfig,
    peers: HashMap<PeerId, Peer>,
    /// Every peer's next timer, ordered: one entry per peer, kept in step with `Peer::timeout`,
    /// so finding what is due costs a range query instead of a scan of all peers.
    timers: BTreeSet<(Instant, PeerId)>,
    /// Connection deadlines of peers still setting up (at most [`PEERS_CONNECTING_MAX`]).
    setup_deadlines: BTreeSet<(Instant, PeerId)>,
    rooms: HashMap<SessionId, Room>,
    address_routes: HashMap<SocketAddr, PeerId>,
    next_peer: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SfuEvent>,
    /// Peers whose `Rtc` may have output after something was written into it.
    dirty: Vec<PeerId>,
    next_layer_review: Option<Instant>,
    counters: SfuCounters,
    /// Scratch buffer of events drained from one `Rtc`, kept to avoid an allocation per poll.
    scratch_events: Vec<Event>,
    /// The latest time any input carried.
    last_now: Instant,
    /// Packets of relayed publishers, for other edges.
    relay_out: VecDeque<(PeerId, RelayedPacket)>,
    /// Keyframe requests for remote publishers: (publisher, track, layer).
    remote_keyframes: VecDeque<(PeerId, usize, usize)>,
}

impl Sfu {
    pub fn new(now: Instant, config: SfuConfig) -> Self {
        let mut config = config;
        config.session_peers_max = config.session_peers_max.clamp(1, SESSION_PEERS_MAX);
        Self {
            config,
            peers: HashMap::new(),
            timers: BTreeSet::new(),
            setup_deadlines: BTreeSet::new(),
            rooms: HashMap::new(),
            address_routes: HashMap::new(),
            next_peer: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            next_layer_review: None,
            counters: SfuCounters::default(),
            scratch_events: Vec::new(),
            last_now: now,
            relay_out: VecDeque::new(),
            remote_keyframes: VecDeque::new(),
        }
    }

    pub fn counters(&self) -> &SfuCounters {
        &self.counters
    }

    /// Number of peers by kind, and of tracks (media lines), as gauges.
    pub fn gauges(&self) -> SfuGauges {
        let mut gauges = SfuGauges {
            sessions: self.rooms.len(),
            ..SfuGauges::default()
        };
        for peer in self.peers.values() {
            match &peer.role {
                // Not a connection: a feed from another edge (counted by the relay).
                Role::Publisher(publisher) if publisher.remote => continue,
                Role::Publisher(publisher) => {
                    gauges.publishers += 1;
                    gauges.tracks_published += publisher.tracks.len();
                }
                Role::Subscriber(subscriber) => {
                    gauges.subscribers += 1;
                    gauges.tracks_subscribed += subscriber
                        .tracks
                        .iter()
                        .filter(|t| t.feed.is_some())
                        .count();
                }
            }
            if !peer.connected {
                gauges.connecting += 1;
            }
        }
        gauges
    }

    /// Accepts a WHIP or WHEP offer and returns the peer's id and the SDP answer.
    pub fn add_peer(
        &mut self,
        now: Instant,
        spec: PeerSpec,
        offer_sdp: &str,
    ) -> Result<(PeerId, String), AddPeerError> {
        self.last_now = self.last_now.max(now);
        let media_sections = offer_sdp
            .lines()
            .filter(|line| line.starts_with("m="))
            .count();
        if media_sections > PEER_TRACKS_MAX {
            return Err(AddPeerError::TooManyTracks {
                found: media_sections,
            });
        }

        let (rtc, answer) = self.negotiate(now, spec.kind, offer_sdp)?;
        let wants_send = offer_sdp
            .lines()
            .any(|l| l == "a=sendonly" || l == "a=sendrecv");
        let wants_receive = offer_sdp
            .lines()
            .any(|l| l == "a=recvonly" || l == "a=sendrecv");
        match spec.kind {
            PeerKind::Publisher if !wants_send => {
                return Err(AddPeerError::WrongDirection(
                    "send any media (WHIP needs sendonly)",
                ));
            }
            PeerKind::Subscriber if !wants_receive => {
                return Err(AddPeerError::WrongDirection(
                    "receive any media (WHEP needs recvonly)",
                ));
            }
            _ => {}
        }
        self.check_room(&spec.session)?;
        if self.peers.values().filter(|p| !p.connected).count() >= PEERS_CONNECTING_MAX {
            return Err(AddPeerError::TooManyConnecting);
        }

        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        let role = match spec.kind {
            PeerKind::Publisher => Role::Publisher(Publisher::default()),
            PeerKind::Subscriber => Role::Subscriber(Subscriber::default()),
        };
        info!(%id, session = %spec.session, participant = %spec.participant,
              kind = spec.kind.as_str(), source = %spec.source, "peer added");
        let room = self.rooms.entry(spec.session.clone()).or_default();
        match spec.kind {
            PeerKind::Publisher => room.publishers.push(id),
            PeerKind::Subscriber => room.subscribers.push(id),
        }
        self.timers.insert((now, id));
        self.setup_deadlines
            .insert((now + PEER_CONNECT_DEADLINE, id));
        self.peers.insert(
            id,
            Peer {
                spec,
                rtc,
                role,
                created_at: now,
                connected: false,
                timeout: now,
                addrs: Vec::new(),
                doomed: None,
                ice_connected: false,
            },
        );
        // Learn the media lines now: str0m only announces them (MediaAdded) once SRTP is up,
        // and a subscriber must be bound before that.
        for mid_text in offer_sdp
            .lines()
            .filter_map(|l| l.trim_end().strip_prefix("a=mid:"))
        {
            let mid = Mid::from(mid_text);
            let Some(peer) = self.peers.get(&id) else {
                break;
            };
            let Some(media) = peer.rtc.media(mid) else {
                continue;
            };
            let kind = media.kind();
            let rids = match media.rids_rx() {
                str0m::media::Rids::Specific(rids) => rids.clone(),
                _ => Vec::new(),
            };
            self.media_added(id, mid, kind, &rids);
        }
        let has_media = match self.peers.get(&id).map(|p| &p.role) {
            Some(Role::Publisher(publisher)) => !publisher.tracks.is_empty(),
            Some(Role::Subscriber(subscriber)) => !subscriber.tracks.is_empty(),
            None => false,
        };
        if !has_media {
            self.remove_peer_quietly(id);
            return Err(AddPeerError::NoMedia);
        }
        if let Some(Role::Subscriber(_)) = self.peers.get(&id).map(|p| &p.role) {
            self.bind_subscriber(now, id);
        }
        Ok((id, answer.to_sdp_string()))
    }

    /// A publisher on another edge, fed by [`Sfu::handle_relayed`]: subscribers here bind to it
    /// like to a local one. `tracks` lists its media lines: kind and number of simulcast layers.
    pub fn add_remote_publisher(
        &mut self,
        now: Instant,
        spec: PeerSpec,
        tracks: &[(MediaKind, usize)],
    ) -> Result<PeerId, AddPeerError> {
        self.last_now = self.last_now.max(now);
        if tracks.is_empty() {
            return Err(AddPeerError::NoMedia);
        }
        if tracks.len() > PEER_TRACKS_MAX {
            return Err(AddPeerError::TooManyTracks {
                found: tracks.len(),
            });
        }
        self.check_room(&spec.session)?;
        let publisher = Publisher {
            tracks: tracks
                .iter()
                .map(|(kind, layers)| PubTrack {
                    mid: Mid::new(),
                    kind: *kind,
                    layers: (0..(*layers).clamp(1, TRACK_LAYERS_MAX))
                        .map(|_| PubLayer {
                            rid: None,
                            meter: BitrateMeter::default(),
                            keyframe_requested_at: None,
                            advertised_bps: 0,
                        })
                        .collect(),
                })
                .collect(),
            remote: true,
            ..Publisher::default()
        };
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        info!(%id, session = %spec.session, participant = %spec.participant,
              source = %spec.source, "remote publisher added");
        self.rooms
            .entry(spec.session.clone())
            .or_default()
            .publishers
            .push(id);
        self.timers.insert((now, id));
        self.peers.insert(
            id,
            Peer {
                spec,
                // Never connected to anything: it only keeps the peer's shape. Its media comes
                // from another edge.
                rtc: self.rtc_config(PeerKind::Publisher).build(now),
                role: Role::Publisher(publisher),
                created_at: now,
                connected: false,
                timeout: now,
                addrs: Vec::new(),
                doomed: None,
                ice_connected: true,
            },
        );
        self.connected(now, id);
        Ok(id)
    }

    /// Whether the node and the session have room for one more peer.
    fn check_room(&self, session: &SessionId) -> Result<(), AddPeerError> {
        if self.peers.len() >= NODE_PEERS_MAX {
            return Err(AddPeerError::NodeFull);
        }
        if self
            .rooms
            .get(session)
            .is_some_and(|r| r.len() >= self.config.session_peers_max)
        {
            return Err(AddPeerError::SessionFull);
        }
        Ok(())
    }

    /// A packet relayed from another edge for a remote publisher.
    pub fn handle_relayed(&mut self, now: Instant, remote: PeerId, packet: RelayedPacket) {
        self.last_now = self.last_now.max(now);
        let Some(peer) = self.peers.get_mut(&remote) else {
            return;
        };
        let Role::Publisher(publisher) = &mut peer.role else {
            return;
        };
        if !publisher.remote {
            return;
        }
        let Some(layer) = publisher
            .tracks
            .get_mut(packet.track)
            .and_then(|t| t.layers.get_mut(packet.layer))
        else {
            return;
        };
        layer.meter.record(now, packet.payload.len());
        self.counters.relayed_in += 1;
        let media = Media {
            track: packet.track,
            layer: packet.layer,
            kind: packet.kind,
            pt: packet.params.pt(),
            params: packet.params,
            keyframe: packet.keyframe,
            ssrc: packet.ssrc,
            seq: packet.seq,
            rtp_time: packet.rtp_time,
            marker: packet.marker,
            audio_level: packet.audio_level,
            voice_activity: packet.voice_activity,
            video_orientation: None,
            wallclock: now,
            payload_len: packet.payload.len(),
            payload: packet.payload,
        };
        self.fan_out(now, remote, media);
    }

    /// A publisher's media lines: kind and number of simulcast layers, in the order relayed
    /// packets name them (what another edge needs for [`Sfu::add_remote_publisher`]).
    pub fn publisher_tracks(&self, publisher: PeerId) -> Option<Vec<(MediaKind, usize)>> {
        match &self.peers.get(&publisher)?.role {
            Role::Publisher(p) => Some(p.tracks.iter().map(|t| (t.kind, t.layers.len())).collect()),
            Role::Subscriber(_) => None,
        }
    }

    /// A publisher's codec table as negotiated (payload type → codec), which another edge needs
    /// to read its relayed packets.
    pub fn publisher_codecs(&self, publisher: PeerId) -> Option<Vec<PayloadParams>> {
        let peer = self.peers.get(&publisher)?;
        match &peer.role {
            Role::Publisher(_) => Some(peer.rtc.codec_config().params().to_vec()),
            Role::Subscriber(_) => None,
        }
    }

    /// A publisher's layer bitrates as measured here (bits per second, 0 for a layer not being
    /// sent), per media line: what another edge needs to choose layers it does not import yet.
    pub fn publisher_layer_rates(&self, now: Instant, publisher: PeerId) -> Option<Vec<Vec<u64>>> {
        match &self.peers.get(&publisher)?.role {
            Role::Publisher(p) => Some(
                p.tracks
                    .iter()
                    .map(|t| t.layers.iter().map(|l| l.meter.bitrate_bps(now)).collect())
                    .collect(),
            ),
            Role::Subscriber(_) => None,
        }
    }

    /// A remote publisher's layer bitrates as its origin measures them (see
    /// [`Sfu::publisher_layer_rates`]).
    pub fn set_remote_layer_rates(&mut self, publisher: PeerId, rates: &[Vec<u64>]) {
        let Some(Role::Publisher(p)) = self.peers.get_mut(&publisher).map(|p| &mut p.role) else {
            return;
        };
        if !p.remote {
            return;
        }
        for (track, rates) in p.tracks.iter_mut().zip(rates) {
            for (layer, bps) in track.layers.iter_mut().zip(rates) {
                layer.advertised_bps = *bps;
            }
        }
    }

    /// How many subscribers a session has on this edge.
    pub fn subscribers_in(&self, session: &SessionId) -> usize {
        self.rooms.get(session).map_or(0, |r| r.subscribers.len())
    }

    /// Whether a publisher's packets are also handed out for other edges.
    pub fn set_relayed(&mut self, publisher: PeerId, relayed: bool) {
        if let Some(Role::Publisher(p)) = self.peers.get_mut(&publisher).map(|p| &mut p.role) {
            p.relayed = relayed;
        }
    }

    /// The next packet of a relayed publisher, for other edges.
    pub fn poll_relayed(&mut self) -> Option<(PeerId, RelayedPacket)> {
        self.relay_out.pop_front()
    }

    /// The next keyframe request for a remote publisher: (publisher, track, layer).
    pub fn poll_remote_keyframe(&mut self) -> Option<(PeerId, usize, usize)> {
        self.remote_keyframes.pop_front()
    }

    /// The highest simulcast layer the subscribers here want of a (remote) publisher's tracks,
    /// if any subscriber watches it.
    pub fn wanted_layer(&self, publisher: PeerId) -> Option<usize> {
        let room = self
            .peers
            .get(&publisher)
            .and_then(|p| self.rooms.get(&p.spec.session))?;
        room.subscribers
            .iter()
            .filter_map(|id| match &self.peers.get(id)?.role {
                Role::Subscriber(s) if s.feed == Some(publisher) => Some(s),
                _ => None,
            })
            .flat_map(|s| s.tracks.iter())
            .map(|t| t.layer_target.or(t.layer_current).unwrap_or(0))
            .max()
    }

    /// Asks a publisher here for a keyframe (a subscriber on another edge needs one).
    pub fn request_publisher_keyframe(
        &mut self,
        now: Instant,
        publisher: PeerId,
        track: usize,
        layer: usize,
    ) {
        self.last_now = self.last_now.max(now);
        self.request_keyframe(now, publisher, track, layer);
    }

    /// Parses an offer and makes the peer's `Rtc` and answer.
    ///
    /// The SDP parser and negotiation are str0m's; a panic in them on some hostile offer would be
    /// a bug there, but it must not take down every class on the node. Nothing of `self` is
    /// touched here, so unwinding out of this step leaves the core consistent, and the offer is
    /// refused like any malformed one.
    fn negotiate(
        &self,
        now: Instant,
        kind: PeerKind,
        offer_sdp: &str,
    ) -> Result<(Rtc, str0m::change::SdpAnswer), AddPeerError> {
        let config = self.rtc_config(kind);
        let candidate_addr = self.config.candidate_addr;
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let offer = SdpOffer::from_sdp_string(offer_sdp)
                .map_err(|error| AddPeerError::SdpMalformed(error.to_string()))?;
            let mut rtc = config.build(now);
            let candidate = Candidate::host(candidate_addr, "udp")
                .map_err(|error| AddPeerError::Negotiation(error.to_string()))?;
            rtc.add_local_candidate(candidate);
            let answer = rtc
                .sdp_api()
                .accept_offer(offer)
                .map_err(|error| AddPeerError::Negotiation(error.to_string()))?;
            Ok((rtc, answer))
        }));
        attempt.unwrap_or_else(|_| {
            warn!("an offer made the SDP parser panic; refused as malformed");
            Err(AddPeerError::SdpMalformed(
                "the offer could not be parsed".into(),
            ))
        })
    }

    /// Removes a peer at its owner's request. Returns false if it is not (or no longer) here.
    pub fn remove_peer(&mut self, now: Instant, id: PeerId) -> bool {
        self.last_now = self.last_now.max(now);
        if !self.peers.contains_key(&id) {
            return false;
        }
        self.remove(now, id, RemoveReason::Left);
        true
    }

    /// The spec of a live peer.
    /// The publisher a subscriber is watching, if any.
    pub fn feed_of(&self, subscriber: PeerId) -> Option<PeerId> {
        match &self.peers.get(&subscriber)?.role {
            Role::Subscriber(s) => s.feed,
            Role::Publisher(_) => None,
        }
    }

    pub fn peer_spec(&self, id: PeerId) -> Option<&PeerSpec> {
        self.peers.get(&id).map(|peer| &peer.spec)
    }

    /// Closes every peer (DTLS close_notify) and forgets them: the node is stopping.
    pub fn shutdown(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(peer) = self.peers.get_mut(&id) {
                // Errors here only mean the peer was already closing.
                let _ = peer.rtc.close();
            }
            self.drive(now, id);
            self.remove(now, id, RemoveReason::Shutdown);
        }
    }

    /// Feeds one received UDP datagram.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        self.last_now = self.last_now.max(now);
        self.counters.datagrams_in += 1;
        self.counters.bytes_in += contents.len() as u64;
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, contents) else {
            self.counters.datagrams_malformed += 1;
            return;
        };
        let input = Input::Receive(now, receive);
        let cached = self.address_routes.get(&source).copied().filter(|id| {
            self.peers
                .get(id)
                .is_some_and(|peer| peer.rtc.accepts(&input))
        });
        let found = cached.or_else(|| {
            self.peers
                .iter()
                .find(|(_, peer)| peer.rtc.accepts(&input))
                .map(|(id, _)| *id)
        });
        let Some(id) = found else {
            self.counters.datagrams_unrouted += 1;
            return;
        };
        if cached.is_none() {
            if self.address_routes.len() >= ADDRESS_ROUTES_MAX {
                self.address_routes.clear();
            }
            self.address_routes.insert(source, id);
            if let Some(peer) = self.peers.get_mut(&id) {
                if peer.addrs.len() < 8 {
                    peer.addrs.push(source);
                }
            }
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if let Err(error) = peer.rtc.handle_input(input) {
            self.counters.peer_errors += 1;
            debug!(%id, %error, "peer rejected a datagram");
        }
        // Subscribers written to are driven later, in `poll_output`: a batch of datagrams
        // then costs each subscriber one poll instead of one per packet.
        self.drive(now, id);
    }

    /// Advances time: timers of every peer due at `now`, reaping, layer review.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        let due: Vec<PeerId> = self
            .timers
            .range(..=(now, PeerId(u64::MAX)))
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            self.counters.peer_wakeups += 1;
            if let Some(peer) = self.peers.get_mut(&id) {
                if let Err(error) = peer.rtc.handle_input(Input::Timeout(now)) {
                    self.counters.peer_errors += 1;
                    warn!(%id, %error, "peer failed on timeout");
                    peer.doomed = Some(RemoveReason::Failed);
                }
            }
            self.drive(now, id);
        }
        let stale: Vec<PeerId> = self
            .setup_deadlines
            .range(..=(now, PeerId(u64::MAX)))
            .map(|(_, id)| *id)
            .collect();
        for id in stale {
            let reason = self.setup_failure(id);
            self.remove(now, id, reason);
        }
        if self.next_layer_review.is_none_or(|at| at <= now) {
            self.next_layer_review = Some(now + LAYER_REVIEW_INTERVAL);
            let subscribers: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, p)| matches!(p.role, Role::Subscriber(_)) && p.connected)
                .map(|(id, _)| *id)
                .collect();
            for id in subscribers {
                self.review_layers(now, id);
            }
        }
    }

    /// Next output: datagrams first, then events, then the deadline for [`Sfu::handle_timeout`].
    pub fn poll_output(&mut self) -> Output {
        if !self.dirty.is_empty() {
            self.drain_dirty(self.last_now);
        }
        if let Some(transmit) = self.transmits.pop_front() {
            return Output::Transmit(transmit);
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        debug_assert_eq!(
            self.timers.len(),
            self.peers.len(),
            "one timer entry per peer"
        );
        let next = [
            self.timers.first().map(|(at, _)| *at),
            self.setup_deadlines.first().map(|(at, _)| *at),
            self.next_layer_review,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.last_now + IDLE_WAKE_INTERVAL);
        Output::Timeout(next)
    }

    fn rtc_config(&self, kind: PeerKind) -> RtcConfig {
        let config = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_dtls_cert(self.config.dtls_cert.clone())
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            // Stats events are not used; computing them costs per packet.
            .set_stats_interval(None);
        match kind {
            // Bandwidth estimation drives the simulcast layer each subscriber gets.
            PeerKind::Subscriber => config.enable_bwe(Some(str0m::bwe::Bitrate::bps(
                SUBSCRIBER_INITIAL_BITRATE_BPS,
            ))),
            PeerKind::Publisher => config,
        }
    }

    /// Polls a peer's `Rtc` until it has nothing more, handling what comes out.
    fn drive(&mut self, now: Instant, id: PeerId) {
        let mut events = std::mem::take(&mut self.scratch_events);
        if let Some(peer) = self.peers.get_mut(&id) {
            let mut immediate_wakeups = 0;
            loop {
                match peer.rtc.poll_output() {
                    // str0m asks to be woken at once after media was written (its pacer and send
                    // streams stamp and release packets on time input). Doing it here, rather than
                    // through the shell's timer, sends forwarded media without a timer round trip.
                    Ok(RtcOutput::Timeout(at))
                        if at <= now + IMMEDIATE_WAKEUP_SLACK
                            && immediate_wakeups < IMMEDIATE_WAKEUPS_MAX =>
                    {
                        immediate_wakeups += 1;
                        if let Err(error) = peer.rtc.handle_input(Input::Timeout(at.max(now))) {
                            self.counters.peer_errors += 1;
                            warn!(%id, %error, "peer failed on an immediate wake-up; dropping it");
                            peer.doomed = Some(RemoveReason::Failed);
                            break;
                        }
                    }
                    Ok(RtcOutput::Timeout(at)) => {
                        if peer.timeout != at {
                            self.timers.remove(&(peer.timeout, id));
                            self.timers.insert((at, id));
                            peer.timeout = at;
                        }
                        break;
                    }
                    Ok(RtcOutput::Transmit(transmit)) => {
                        self.counters.datagrams_out += 1;
                        self.counters.bytes_out += transmit.contents.len() as u64;
                        if self.transmits.len() >= TRANSMIT_QUEUE_MAX {
                            self.counters.transmit_dropped += 1;
                        } else {
                            self.transmits.push_back(transmit);
                        }
                    }
                    Ok(RtcOutput::Event(event)) => events.push(event),
                    Err(error) => {
                        self.counters.peer_errors += 1;
                        warn!(%id, %error, "peer failed; dropping it");
                        peer.doomed = Some(RemoveReason::Failed);
                        break;
                    }
                }
            }
            if !peer.rtc.is_alive() && peer.doomed.is_none() {
                peer.doomed = Some(RemoveReason::Closed);
            }
        }
        for event in events.drain(..) {
            self.handle_rtc_event(now, id, event);
        }
        self.scratch_events = events;
        if let Some(reason) = self.peers.get(&id).and_then(|p| p.doomed) {
            self.remove(now, id, reason);
        }
    }

    fn drain_dirty(&mut self, now: Instant) {
        // Each round can only make peers dirty by forwarding or requesting keyframes, which do
        // not loop back more than once or twice; the bound is a guard against a bug.
        for _ in 0..8 {
            if self.dirty.is_empty() {
                return;
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for id in dirty.drain(..) {
                self.drive(now, id);
            }
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
        }
    }

    fn handle_rtc_event(&mut self, now: Instant, id: PeerId, event: Event) {
        match event {
            Event::RtpPacket(packet) => self.forward(now, id, packet),
            Event::Connected => self.connected(now, id),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    if peer.connected {
                        peer.doomed = Some(RemoveReason::IceTimeout);
                    }
                }
                if self.peers.get(&id).is_some_and(|p| !p.connected) {
                    let reason = self.setup_failure(id);
                    if let Some(peer) = self.peers.get_mut(&id) {
                        peer.doomed = Some(reason);
                    }
                }
            }
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.ice_connected = true;
                }
            }
            Event::KeyframeRequest(request) => self.subscriber_wants_keyframe(now, id, request.mid),
            Event::EgressBitrateEstimate(estimate) => {
                let bps = match estimate {
                    str0m::bwe::BweKind::Twcc { estimate, .. } => estimate.as_u64(),
                    str0m::bwe::BweKind::Remb { estimate, .. } => estimate.as_u64(),
                    _ => return,
                };
                if let Some(Role::Subscriber(subscriber)) =
                    self.peers.get_mut(&id).map(|p| &mut p.role)
                {
                    subscriber.estimate_bps = Some(bps);
                }
                self.review_layers(now, id);
            }
            Event::Closed => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.doomed.get_or_insert(RemoveReason::Closed);
                }
            }
            _ => {}
        }
    }

    /// Records a media line of a new peer. Lines that are not audio or video are ignored.
    fn media_added(&mut self, id: PeerId, mid: Mid, kind: MediaKind, rids: &[Rid]) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !matches!(kind, MediaKind::Audio | MediaKind::Video) {
            return;
        }
        match &mut peer.role {
            Role::Publisher(publisher) => {
                let mut layers: Vec<PubLayer> = rids
                    .iter()
                    .take(TRACK_LAYERS_MAX)
                    .map(|rid| PubLayer {
                        rid: Some(*rid),
                        meter: BitrateMeter::default(),
                        keyframe_requested_at: None,
                        advertised_bps: 0,
                    })
                    .collect();
                if layers.is_empty() {
                    layers.push(PubLayer {
                        rid: None,
                        meter: BitrateMeter::default(),
                        keyframe_requested_at: None,
                        advertised_bps: 0,
                    });
                }
                publisher.tracks.push(PubTrack { mid, kind, layers });
            }
            Role::Subscriber(subscriber) => {
                let clock_rate_hz = if kind == MediaKind::Audio {
                    48_000
                } else {
                    90_000
                };
                subscriber
                    .tracks
                    .push(SubTrack::new(mid, kind, clock_rate_hz));
            }
        }
    }

    fn connected(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.connected = true;
        self.setup_deadlines
            .remove(&(peer.created_at + PEER_CONNECT_DEADLINE, id));
        let kind = peer.spec.kind;
        let view = peer.view();
        info!(%id, session = %view.session, kind = kind.as_str(), "peer connected");
        if let Role::Publisher(publisher) = &mut peer.role {
            publisher.connected_at = Some(now);
        }
        self.push_event(SfuEvent::PeerConnected {
            peer: id,
            spec: view.clone(),
        });
        match kind {
            PeerKind::Publisher => {
                // The newest publisher of a source takes over its audience.
                let subscribers = self.rooms.get(&view.session).map(|r| r.subscribers.clone());
                for subscriber in subscribers.unwrap_or_default() {
                    let same_source = self
                        .peers
                        .get(&subscriber)
                        .is_some_and(|p| p.spec.source == view.source);
                    if same_source {
                        self.bind_subscriber(now, subscriber);
                    }
                }
            }
            PeerKind::Subscriber => self.start_feed(now, id),
        }
    }

    /// Points a subscriber at the most recently connected publisher of its source, if any.
    fn bind_subscriber(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let (session, source) = (peer.spec.session.clone(), peer.spec.source);
        let watcher = peer.spec.participant.clone();
        // The class lead first, then the most recently connected; never one's own stream.
        let candidate = self.rooms.get(&session).and_then(|room| {
            room.publishers
                .iter()
                .filter_map(|pid| {
                    let publisher = self.peers.get(pid)?;
                    let Role::Publisher(p) = &publisher.role else {
                        return None;
                    };
                    (publisher.spec.source == source
                        && publisher.doomed.is_none()
                        && publisher.spec.participant != watcher)
                        .then_some((publisher.spec.lead, p.connected_at?, *pid))
                })
                .max()
                .map(|(_, _, pid)| pid)
        });
        let feed_tracks: Vec<MediaKind> = candidate
            .and_then(|pid| self.peers.get(&pid))
            .map(|p| match &p.role {
                Role::Publisher(publisher) => publisher.tracks.iter().map(|t| t.kind).collect(),
                Role::Subscriber(_) => Vec::new(),
            })
            .unwrap_or_default();
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Role::Subscriber(subscriber) = &mut peer.role else {
            return;
        };
        if subscriber.feed == candidate && candidate.is_some() {
            return;
        }
        subscriber.feed = candidate;
        for track in &mut subscriber.tracks {
            track.unbind();
        }
        // Each subscriber line takes the first unused publisher track of its kind.
        let mut used = vec![false; feed_tracks.len()];
        for track in &mut subscriber.tracks {
            if let Some(index) = feed_tracks
                .iter()
                .enumerate()
                .position(|(i, k)| *k == track.kind && !used[i])
            {
                used[index] = true;
                track.feed = Some(index);
            }
        }
        debug!(%id, feed = ?candidate, "subscriber bound");
        if peer.connected {
            self.start_feed(now, id);
        }
    }

    /// A connected, bound subscriber needs a layer and a keyframe to start decoding.
    fn start_feed(&mut self, now: Instant, id: PeerId) {
        self.review_layers(now, id);
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Role::Subscriber(subscriber) = &peer.role else {
            return;
        };
        let Some(feed) = subscriber.feed else { return };
        let wanted: Vec<(usize, usize)> = subscriber
            .tracks
            .iter()
            .filter(|t| t.kind == MediaKind::Video)
            .filter_map(|t| Some((t.feed?, t.layer_target?)))
            .collect();
        for (track, layer) in wanted {
            self.request_keyframe(now, feed, track, layer);
        }
    }

    /// Why a peer that never connected failed, said once in the log in words an operator can act
    /// on.
    fn setup_failure(&self, id: PeerId) -> RemoveReason {
        let Some(peer) = self.peers.get(&id) else {
            return RemoveReason::NeverConnected;
        };
        if peer.ice_connected {
            warn!(
                %id, session = %peer.spec.session, participant = %peer.spec.participant,
                "ICE connected but the DTLS handshake never completed; the client probably uses \
                 an RSA DTLS certificate (GStreamer webrtcbin does by default), and this node \
                 accepts ECDSA only: configure the client with an ECDSA certificate"
            );
            RemoveReason::DtlsIncomplete
        } else {
            debug!(%id, "peer never completed ICE");
            RemoveReason::NeverConnected
        }
    }

    /// Chooses each video line's simulcast layer from the subscriber's estimate.
    fn review_layers(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Role::Subscriber(subscriber) = &peer.role else {
            return;
        };
        let Some(feed_id) = subscriber.feed else {
            return;
        };
        let Some(Role::Publisher(publisher)) = self.peers.get(&feed_id).map(|p| &p.role) else {
            return;
        };
        let estimate = subscriber.estimate_bps;
        let mut changes: Vec<(usize, usize)> = Vec::new();
        let mut desired_bps = 0u64;
        for (line, track) in subscriber.tracks.iter().enumerate() {
            let Some(pub_track) = track.feed.and_then(|i| publisher.tracks.get(i)) else {
                continue;
            };
            if track.kind != MediaKind::Video {
                continue;
            }
            // A remote publisher's layers that are not imported yet count at their origin's
            // rates, so a subscriber here can move up to one (and the relay then imports it).
            let rates: Vec<LayerChoice> = pub_track
                .layers
                .iter()
                .map(|layer| match layer.meter.is_active(now) {
                    true => LayerChoice {
                        bitrate_bps: layer.meter.bitrate_bps(now),
                        active: true,
                    },
                    false => LayerChoice {
                        bitrate_bps: layer.advertised_bps,
                        active: publisher.remote && layer.advertised_bps > 0,
                    },
                })
                .collect();
            desired_bps += rates.iter().map(|r| r.bitrate_bps).max().unwrap_or(0);
            let current = track.layer_target.or(track.layer_current);
            let recently = track
                .layer_switched_at
                .is_some_and(|at| now.duration_since(at) < layer::LAYER_UPGRADE_HOLD);
            if let Some(choice) = layer::choose(&rates, estimate, current, recently) {
                if Some(choice) != current {
                    changes.push((line, choice));
                }
            }
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if desired_bps > 0 {
            // Ask BWE to probe up to what the best layers need, with room for audio.
            peer.rtc.bwe().set_bitrate(
                str0m::bwe::Bitrate::bps(desired_bps / 4),
                str0m::bwe::Bitrate::bps(desired_bps + desired_bps / 4 + 64_000),
            );
        }
        let Role::Subscriber(subscriber) = &mut peer.role else {
            return;
        };
        let mut requests = Vec::new();
        for (line, layer) in changes {
            let track = &mut subscriber.tracks[line];
            track.layer_target = Some(layer);
            if let Some(feed_track) = track.feed {
                requests.push((feed_track, layer));
            }
        }
        if peer.connected {
            for (track, layer) in requests {
                self.request_keyframe(now, feed_id, track, layer);
            }
        }
    }

    fn subscriber_wants_keyframe(&mut self, now: Instant, id: PeerId, mid: Mid) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Role::Subscriber(subscriber) = &peer.role else {
            return;
        };
        let Some(feed) = subscriber.feed else { return };
        let Some(track) = subscriber.tracks.iter().find(|t| t.mid == mid) else {
            return;
        };
        let (Some(pub_track), Some(layer)) =
            (track.feed, track.layer_target.or(track.layer_current))
        else {
            return;
        };
        self.request_keyframe(now, feed, pub_track, layer);
    }

    /// Asks a publisher for a keyframe on one layer, at most once per
    /// [`KEYFRAME_REQUEST_INTERVAL`].
    fn request_keyframe(&mut self, now: Instant, publisher_id: PeerId, track: usize, layer: usize) {
        let Some(peer) = self.peers.get_mut(&publisher_id) else {
            return;
        };
        if !peer.connected {
            return;
        }
        let Role::Publisher(publisher) = &mut peer.role else {
            return;
        };
        let Some(pub_track) = publisher.tracks.get_mut(track) else {
            return;
        };
        let mid = pub_track.mid;
        let Some(pub_layer) = pub_track.layers.get_mut(layer) else {
            return;
        };
        if pub_layer
            .keyframe_requested_at
            .is_some_and(|at| now.duration_since(at) < KEYFRAME_REQUEST_INTERVAL)
        {
            self.counters.keyframe_requests_coalesced += 1;
            return;
        }
        if publisher.remote {
            // Its publisher is on another edge: the request travels there.
            pub_layer.keyframe_requested_at = Some(now);
            self.counters.keyframe_requests_sent += 1;
            self.remote_keyframes
                .push_back((publisher_id, track, layer));
            return;
        }
        let rid = pub_layer.rid;
        let mut api = peer.rtc.direct_api();
        let Some(stream) = api.stream_rx_by_mid(mid, rid) else {
            // The layer has not sent anything yet; its first packets will start with a keyframe.
            return;
        };
        stream.request_keyframe(KeyframeRequestKind::Pli);
        pub_layer.keyframe_requested_at = Some(now);
        self.counters.keyframe_requests_sent += 1;
        self.dirty.push(publisher_id);
    }

    /// Forwards one RTP packet from a publisher to every subscriber bound to it.
    fn forward(&mut self, now: Instant, publisher_id: PeerId, packet: RtpPacket) {
        self.counters.rtp_in += 1;
        let Some(peer) = self.peers.get_mut(&publisher_id) else {
            return;
        };
        let Role::Publisher(publisher) = &mut peer.role else {
            return;
        };
        let ssrc = *packet.header.ssrc;
        let route = match publisher.routes.get(&ssrc) {
            Some(route) => Some(*route),
            None => {
                let found = peer
                    .rtc
                    .direct_api()
                    .stream_rx(&packet.header.ssrc)
                    .map(|s| (s.mid(), s.rid()));
                let route = found.and_then(|(mid, rid)| {
                    let track = publisher.tracks.iter().position(|t| t.mid == mid)?;
                    let layer = publisher.tracks[track]
                        .layers
                        .iter()
                        .position(|l| l.rid == rid)?;
                    Some((track, layer))
                });
                if let Some(route) = route {
                    if publisher.routes.len() < PEER_TRACKS_MAX * TRACK_LAYERS_MAX * 2 {
                        publisher.routes.insert(ssrc, route);
                    }
                }
                route
            }
        };
        let Some((track_index, layer_index)) = route else {
            return;
        };
        let relayed = publisher.relayed;
        let track = &mut publisher.tracks[track_index];
        track.layers[layer_index]
            .meter
            .record(now, packet.payload.len());
        let kind = track.kind;
        let pt = packet.header.payload_type;
        let params: Option<PayloadParams> = peer.rtc.codec_config().find(|p| p.pt() == pt).copied();
        let Some(params) = params else {
            self.counters.rtp_unforwardable += 1;
            return;
        };
        let keyframe = kind == MediaKind::Video
            && match params.spec().codec {
                Codec::Vp8 => keyframe::starts_keyframe(VideoCodec::Vp8, &packet.payload),
                Codec::H264 => keyframe::starts_keyframe(VideoCodec::H264, &packet.payload),
                _ => false,
            };
        // One shared copy of the payload for every subscriber's send queue and RTX cache.
        let payload_len = packet.payload.len();
        let payload: Arc<[u8]> = packet.payload.into();
        let media = Media {
            track: track_index,
            layer: layer_index,
            kind,
            pt,
            params,
            keyframe,
            ssrc,
            seq: *packet.seq_no,
            rtp_time: packet.header.timestamp,
            marker: packet.header.marker,
            audio_level: packet.header.ext_vals.audio_level,
            voice_activity: packet.header.ext_vals.voice_activity,
            video_orientation: packet.header.ext_vals.video_orientation,
            wallclock: packet.timestamp,
            payload,
            payload_len,
        };
        if relayed {
            if self.relay_out.len() < RELAY_QUEUE_MAX {
                self.relay_out.push_back((publisher_id, media.relayed()));
            } else {
                self.counters.relay_dropped += 1;
            }
        }
        self.fan_out(now, publisher_id, media);
    }

    /// Writes one packet of a publisher (local or relayed from another edge) to every
    /// subscriber bound to it.
    fn fan_out(&mut self, now: Instant, publisher_id: PeerId, media: Media) {
        let Media {
            track: track_index,
            layer: layer_index,
            kind,
            pt,
            params,
            keyframe,
            ssrc,
            seq,
            rtp_time,
            marker,
            audio_level,
            voice_activity,
            video_orientation,
            wallclock,
            payload,
            payload_len,
        } = media;
        let Some(peer) = self.peers.get(&publisher_id) else {
            return;
        };
        // Borrow the room by the publisher's session id (no clone on the packet path); the
        // borrow of `peer` ends here, so subscribers can be borrowed from `self.peers`.
        let Some(room) = self.rooms.get(&peer.spec.session) else {
            return;
        };
        for subscriber_id in &room.subscribers {
            let Some(sub_peer) = self.peers.get_mut(subscriber_id) else {
                continue;
            };
            if !sub_peer.connected {
                continue;
            }
            let Role::Subscriber(subscriber) = &mut sub_peer.role else {
                continue;
            };
            if subscriber.feed != Some(publisher_id) {
                continue;
            }
            for line in &mut subscriber.tracks {
                if line.feed != Some(track_index) {
                    continue;
                }
                if kind == MediaKind::Video {
                    let switching = line
                        .layer_target
                        .is_some_and(|t| Some(t) != line.layer_current);
                    if switching && line.layer_target == Some(layer_index) && keyframe {
                        line.layer_current = Some(layer_index);
                        line.layer_switched_at = Some(now);
                        self.counters.layer_switches += 1;
                    }
                    if line.layer_current != Some(layer_index) {
                        continue;
                    }
                }
                let out_pt = match line.pt_map.iter().find(|(from, _)| *from == pt) {
                    Some((_, to)) => *to,
                    None => {
                        // The subscriber's own payload type for the same codec and parameters,
                        // if its browser accepted that codec on this line.
                        let to = sub_peer
                            .rtc
                            .codec_config()
                            .match_params(params)
                            .map(|p| p.pt())
                            .filter(|pt| {
                                sub_peer
                                    .rtc
                                    .media(line.mid)
                                    .is_some_and(|m| m.remote_pts().contains(pt))
                            });
                        if line.pt_map.len() < 16 {
                            line.pt_map.push((pt, to));
                        }
                        to
                    }
                };
                let Some(out_pt) = out_pt else {
                    self.counters.rtp_unforwardable += 1;
                    continue;
                };
                if line.ssrc.is_none() {
                    line.ssrc = sub_peer
                        .rtc
                        .direct_api()
                        .stream_tx_by_mid(line.mid, None)
                        .map(|stream| {
                            // Forwarded media leaves at once: the publisher already paced it,
                            // and holding it for a pacer costs a timer wake-up per packet.
                            // Bandwidth estimation still runs (TWCC feedback, probes).
                            stream.set_unpaced(true);
                            stream.ssrc()
                        });
                }
                let Some(out_ssrc) = line.ssrc else { continue };
                let (seq_out, time_out) = line.rewriter.rewrite(ssrc, seq, rtp_time, now);
                let mut ext = ExtensionValues::default();
                ext.audio_level = audio_level;
                ext.voice_activity = voice_activity;
                ext.video_orientation = video_orientation;
                let write = RtpWrite::new(
                    out_pt,
                    seq_out.into(),
                    time_out,
                    wallclock,
                    Arc::clone(&payload),
                )
                .marker(marker)
                .ext_vals(ext)
                .nackable(kind == MediaKind::Video);
                let mut api = sub_peer.rtc.direct_api();
                let Some(stream) = api.stream_tx(&out_ssrc) else {
                    continue;
                };
                stream.write_rtp(write);
                self.counters.rtp_forwarded += 1;
                self.counters.rtp_forwarded_bytes += payload_len as u64;
                self.dirty.push(*subscriber_id);
            }
        }
    }

    fn push_event(&mut self, event: SfuEvent) {
        if self.events.len() < EVENT_QUEUE_MAX {
            self.events.push_back(event);
        } else {
            warn!("SFU event queue full; dropping {event:?}");
        }
    }

    fn remove(&mut self, now: Instant, id: PeerId, reason: RemoveReason) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        self.forget_timers(id, &peer);
        if peer.rtc.is_alive() {
            let _ = peer.rtc.close();
            // Drain the close_notify so the browser learns at once.
            while let Ok(RtcOutput::Transmit(transmit)) = peer.rtc.poll_output() {
                if self.transmits.len() < TRANSMIT_QUEUE_MAX {
                    self.transmits.push_back(transmit);
                }
            }
        }
        for addr in &peer.addrs {
            if self.address_routes.get(addr) == Some(&id) {
                self.address_routes.remove(addr);
            }
        }
        *self
            .counters
            .peers_removed
            .entry(reason.as_str())
            .or_default() += 1;
        let view = peer.view();
        info!(%id, session = %view.session, kind = view.kind.as_str(), reason = reason.as_str(), "peer removed");
        if let Some(room) = self.rooms.get_mut(&view.session) {
            room.publishers.retain(|p| *p != id);
            room.subscribers.retain(|p| *p != id);
            if room.len() == 0 {
                self.rooms.remove(&view.session);
            }
        }
        if view.kind == PeerKind::Publisher {
            let orphans: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, p)| matches!(&p.role, Role::Subscriber(s) if s.feed == Some(id)))
                .map(|(sid, _)| *sid)
                .collect();
            for orphan in orphans {
                if let Some(Role::Subscriber(subscriber)) =
                    self.peers.get_mut(&orphan).map(|p| &mut p.role)
                {
                    subscriber.feed = None;
                    for track in &mut subscriber.tracks {
                        track.unbind();
                    }
                }
                self.bind_subscriber(now, orphan);
            }
        }
        self.push_event(SfuEvent::PeerRemoved {
            peer: id,
            spec: view,
            reason,
        });
    }

    fn forget_timers(&mut self, id: PeerId, peer: &Peer) {
        self.timers.remove(&(peer.timeout, id));
        self.setup_deadlines
            .remove(&(peer.created_at + PEER_CONNECT_DEADLINE, id));
    }

    /// Drops a peer that never became one (its offer had no usable media): no event.
    fn remove_peer_quietly(&mut self, id: PeerId) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        self.forget_timers(id, &peer);
        if let Some(room) = self.rooms.get_mut(&peer.spec.session) {
            room.publishers.retain(|p| *p != id);
            room.subscribers.retain(|p| *p != id);
            if room.len() == 0 {
                self.rooms.remove(&peer.spec.session);
            }
        }
    }
}

/// Gauges of the core, read by the metrics endpoint.
#[derive(Debug, Default, Clone, Copy)]
pub struct SfuGauges {
    pub sessions: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub connecting: usize,
    pub tracks_published: usize,
    pub tracks_subscribed: usize,
}
