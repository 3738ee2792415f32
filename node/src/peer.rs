//! The peer plane: QUIC (iroh) between the edges of a cluster, carrying session-log frames.
//!
//! The endpoint is strict: no relay, no address lookup (DNS, pkarr), no port mapping — it talks
//! only to the addresses in the configuration, and it accepts connections only from the node ids
//! in the cluster's allow-list. A node's id is its Ed25519 public key (`peer.key` in the data
//! directory).
//!
//! Each frame travels on its own unidirectional stream: a lost or slow frame never holds up
//! another, and the session-log protocol already tolerates loss, repetition and reordering.
//! Outgoing frames wait in a bounded queue per peer; when it is full, or the peer is down, they
//! are dropped and counted, and the log protocol asks again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iroh::endpoint::{Connection, QuicTransportConfig, presets};
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMode, SecretKey};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::log::{NodeId, PeerMessage};
use crate::sessions::{Outgoing, SessionsHandle};
use crate::store::{ASSET_BYTES_MAX, Store};

/// The ALPN of the session-log protocol, versioned.
pub const LOG_ALPN: &[u8] = b"multistream/log/1";

/// The ALPN of asset fetching: an edge asks another for an uploaded asset by its SHA-256.
pub const ASSET_ALPN: &[u8] = b"multistream/asset/1";

/// How long fetching an asset from one peer may take.
const ASSET_FETCH_DEADLINE: Duration = Duration::from_secs(20);

/// The frame format this build writes and the newest it reads.
pub const FRAME_VERSION: u32 = 1;

/// Largest frame, in bytes: a frame of entries holds at most
/// [`crate::log::ENTRIES_PER_FRAME`] events of at most
/// [`multistream_proto::session::EVENT_BYTES_MAX`] each.
pub const FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Frames waiting to be sent to one peer, at most.
pub const PEER_QUEUE_MAX: usize = 1_024;

/// Frames being received from one peer at once, at most.
pub const PEER_STREAMS_MAX: usize = 64;

/// Waits between attempts to reach a peer that is down, from the first to the longest.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// A peer connection silent for this long is dead (a crashed or cut-off edge).
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Keep-alives on an idle peer connection, so silence means trouble.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// The UDP payload size peer connections start with: an Ethernet path's 1,500 bytes less the
/// IPv6 and UDP headers.
const INITIAL_MTU: u16 = 1_452;

/// The key file in the data directory.
const KEY_FILE: &str = "peer.key";

/// The node's peer-plane key, made at first start.
pub fn load_or_create_key(data_dir: &Path) -> anyhow::Result<SecretKey> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "{} is not a peer key (32 bytes); move it away to make a new one",
                    path.display()
                )
            })?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes)
                .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
            crate::token::write_private(&path, &bytes).map_err(|error| {
                anyhow::anyhow!("cannot write the peer key {}: {error}", path.display())
            })?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(error) => Err(anyhow::anyhow!(
            "cannot read the peer key {}: {error}",
            path.display()
        )),
    }
}

/// The node id other edges know this one by.
pub fn node_id(key: &SecretKey) -> NodeId {
    NodeId(key.public().to_string())
}

#[derive(Serialize, Deserialize)]
struct Frame {
    v: u32,
    /// A random number the sending process chose at start: when it changes, the peer restarted
    /// and our connection to it is stale.
    #[serde(default)]
    incarnation: u64,
    message: PeerMessage,
}

/// What this edge knows of another, shared by the receiving and sending sides.
#[derive(Debug, Default)]
struct PeerState {
    /// The incarnation in the peer's latest frame (0 before the first).
    incarnation: AtomicU64,
    /// How often the peer was seen to restart.
    restarts: AtomicU64,
    /// Whether our connection to it is up (checked every [`PROBE_INTERVAL`]).
    up: std::sync::atomic::AtomicBool,
    /// The connection's round-trip time in microseconds, as QUIC estimates it; 0: not known.
    rtt_micros: AtomicU64,
}

/// How often each peer's link is checked (and re-made if down), and its round-trip time read.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Another edge as seen from this one, for `/metrics` and placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    pub peer: String,
    pub up: bool,
    pub rtt: Option<Duration>,
    pub restarts: u64,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct PeerCounters {
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
    /// Frames not sent: the peer's queue was full or it could not be reached.
    pub frames_dropped: AtomicU64,
    /// Frames received that could not be read (bad JSON, too large, a newer version).
    pub frames_malformed: AtomicU64,
    /// Connections refused because the remote is not in the allow-list.
    pub connections_refused: AtomicU64,
    pub connections_up: AtomicU64,
    /// Outgoing connections made (a first contact, a reconnection after a failure or a restart).
    pub connections_opened: AtomicU64,
    /// Uploaded assets fetched from other edges.
    pub assets_fetched: AtomicU64,
}

/// The media relay's side of the peer plane: its links, and where what arrives on them goes
/// (the media thread).
#[derive(Clone)]
pub struct RelayPlane {
    pub links: Arc<crate::cascade::link::RelayLinks>,
    pub inbound: mpsc::Sender<crate::cascade::link::RelayInput>,
    /// This edge's report about itself, sent to every peer.
    pub report: watch::Receiver<crate::placement::EdgeReport>,
}

/// One configured edge.
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: EndpointId,
    pub addr: SocketAddr,
}

pub struct PeerPlane {
    pub endpoint: Endpoint,
    pub counters: Arc<PeerCounters>,
    peers: Vec<Peer>,
    states: Arc<HashMap<EndpointId, Arc<PeerState>>>,
}

impl PeerPlane {
    /// Binds the endpoint and starts accepting frames from allowed peers and sending the
    /// session task's outgoing frames.
    pub async fn start(
        key: SecretKey,
        listen: SocketAddr,
        peers: Vec<Peer>,
        sessions: SessionsHandle,
        store: Arc<Store>,
        outgoing: mpsc::Receiver<Outgoing>,
        relay: RelayPlane,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<PeerPlane> {
        let idle = IDLE_TIMEOUT
            .try_into()
            .map_err(|_| anyhow::anyhow!("the peer idle timeout is out of range"))?;
        let transport = QuicTransportConfig::builder()
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(KEEP_ALIVE)
            // Relayed RTP packets (about 1,200 bytes plus the relay's header) must fit in one
            // datagram; MTU discovery lowers this again on a path that cannot carry it.
            .initial_mtu(INITIAL_MTU)
            .build();
        let endpoint = Endpoint::builder(presets::Minimal)
            .secret_key(key)
            .transport_config(transport)
            .relay_mode(RelayMode::Disabled)
            .clear_address_lookup()
            .alpns(vec![
                LOG_ALPN.to_vec(),
                ASSET_ALPN.to_vec(),
                crate::cascade::link::RELAY_ALPN.to_vec(),
            ])
            // Only the configured address: iroh's defaults would also listen on every IPv6
            // interface, and offer those addresses to peers.
            .clear_ip_transports()
            .bind_addr(listen)
            .map_err(|error| anyhow::anyhow!("the peer address {listen} is not usable: {error}"))?
            .bind()
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot listen for other edges on {listen} ({error}); choose another with --peer-addr"
                )
            })?;
        let counters = Arc::new(PeerCounters::default());
        let allowed: Arc<HashMap<EndpointId, Arc<PeerState>>> = Arc::new(
            peers
                .iter()
                .map(|p| (p.id, Arc::new(PeerState::default())))
                .collect(),
        );
        let mut incarnation = [0u8; 8];
        aws_lc_rs::rand::fill(&mut incarnation)
            .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
        let incarnation = u64::from_le_bytes(incarnation).max(1);
        relay.links.start(
            endpoint.clone(),
            peers
                .iter()
                .map(|p| {
                    let address = EndpointAddr::new(p.id).with_ip_addr(p.addr);
                    (NodeId(p.id.to_string()), address)
                })
                .collect(),
            relay.inbound.clone(),
            relay.report.clone(),
            shutdown.clone(),
        );
        tokio::spawn(accept_loop(
            endpoint.clone(),
            Arc::clone(&allowed),
            sessions,
            store,
            relay,
            Arc::clone(&counters),
            shutdown.clone(),
        ));
        tokio::spawn(send_loop(
            endpoint.clone(),
            peers.clone(),
            Arc::clone(&allowed),
            incarnation,
            outgoing,
            Arc::clone(&counters),
            shutdown,
        ));
        Ok(PeerPlane {
            endpoint,
            counters,
            peers,
            states: allowed,
        })
    }

    /// Every configured peer's link: up or down, and its round-trip time.
    pub fn links(&self) -> Vec<LinkView> {
        self.peers
            .iter()
            .map(|peer| {
                let state = self.states.get(&peer.id);
                let load = |f: fn(&PeerState) -> u64| state.map_or(0, |s| f(s));
                let rtt = load(|s| s.rtt_micros.load(Ordering::Relaxed));
                LinkView {
                    peer: peer.id.to_string(),
                    up: state.is_some_and(|s| s.up.load(Ordering::Relaxed)),
                    rtt: (rtt > 0).then(|| Duration::from_micros(rtt)),
                    restarts: load(|s| s.restarts.load(Ordering::Relaxed)),
                }
            })
            .collect()
    }

    /// Fetches an uploaded asset from the other edges, trying each in turn; the bytes are
    /// checked against the address before they are returned.
    pub async fn fetch_asset(&self, address: &str) -> Option<(String, Vec<u8>)> {
        for peer in &self.peers {
            let target = EndpointAddr::new(peer.id).with_ip_addr(peer.addr);
            let fetched = tokio::time::timeout(ASSET_FETCH_DEADLINE, async {
                let connection = self.endpoint.connect(target, ASSET_ALPN).await.ok()?;
                let (mut send, mut receive) = connection.open_bi().await.ok()?;
                send.write_all(address.as_bytes()).await.ok()?;
                send.finish().ok()?;
                let answer = receive.read_to_end(ASSET_BYTES_MAX + 1_024).await.ok()?;
                connection.close(0u32.into(), b"done");
                decode_asset_answer(&answer)
            })
            .await;
            if let Ok(Some((media_type, bytes))) = fetched {
                if crate::assets::sha256_hex(&bytes) == address {
                    self.counters.assets_fetched.fetch_add(1, Ordering::Relaxed);
                    info!(%address, peer = %peer.id, bytes = bytes.len(), "asset fetched from a peer");
                    return Some((media_type, bytes));
                }
                warn!(%address, peer = %peer.id, "a peer sent an asset that does not match its address");
            }
        }
        None
    }
}

/// An asset answer: one byte of media-type length, the media type, then the bytes. An empty
/// answer means "not here".
fn decode_asset_answer(answer: &[u8]) -> Option<(String, Vec<u8>)> {
    let (&length, rest) = answer.split_first()?;
    let length = usize::from(length);
    if rest.len() < length {
        return None;
    }
    let media_type = std::str::from_utf8(&rest[..length]).ok()?.to_owned();
    Some((media_type, rest[length..].to_vec()))
}

/// Answers one asset request on a connection from an allowed peer.
async fn serve_asset(connection: Connection, store: Arc<Store>) {
    let Ok((mut send, mut receive)) = connection.accept_bi().await else {
        return;
    };
    let Ok(request) = receive.read_to_end(64).await else {
        return;
    };
    let address = String::from_utf8_lossy(&request).into_owned();
    let found = if crate::assets::is_address(&address) {
        tokio::task::spawn_blocking(move || store.asset(&address))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    } else {
        None
    };
    let mut answer = Vec::new();
    if let Some((media_type, bytes)) = found {
        let media_type = media_type.as_bytes();
        let length = u8::try_from(media_type.len()).unwrap_or(0);
        answer.push(length);
        answer.extend_from_slice(&media_type[..usize::from(length)]);
        answer.extend_from_slice(&bytes);
    }
    let _ = send.write_all(&answer).await;
    let _ = send.finish();
    connection.closed().await;
}

async fn accept_loop(
    endpoint: Endpoint,
    allowed: Arc<HashMap<EndpointId, Arc<PeerState>>>,
    sessions: SessionsHandle,
    store: Arc<Store>,
    relay: RelayPlane,
    counters: Arc<PeerCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            _ = shutdown.changed() => return,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
        };
        let allowed = Arc::clone(&allowed);
        let sessions = sessions.clone();
        let store = Arc::clone(&store);
        let relay = relay.clone();
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(error) => {
                    debug!(%error, "an incoming peer connection failed");
                    return;
                }
            };
            let remote = connection.remote_id();
            let Some(state) = allowed.get(&remote) else {
                counters.connections_refused.fetch_add(1, Ordering::Relaxed);
                warn!(%remote, "refused a peer connection: not in this cluster's peer list");
                connection.close(1u32.into(), b"not in this cluster's peer list");
                return;
            };
            if connection.alpn() == ASSET_ALPN {
                serve_asset(connection, store).await;
                return;
            }
            if connection.alpn() == crate::cascade::link::RELAY_ALPN {
                let from = NodeId(remote.to_string());
                crate::cascade::link::serve(relay.links, connection, from, relay.inbound).await;
                return;
            }
            info!(%remote, "peer connected");
            let state = Arc::clone(state);
            receive_frames(
                connection,
                NodeId(remote.to_string()),
                state,
                sessions,
                counters,
            )
            .await;
            info!(%remote, "peer connection closed");
        });
    }
}

async fn receive_frames(
    connection: Connection,
    from: NodeId,
    state: Arc<PeerState>,
    sessions: SessionsHandle,
    counters: Arc<PeerCounters>,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(PEER_STREAMS_MAX));
    loop {
        let Ok(mut stream) = connection.accept_uni().await else {
            return;
        };
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        let (sessions, counters, from) = (sessions.clone(), Arc::clone(&counters), from.clone());
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let _permit = permit;
            let bytes = match stream.read_to_end(FRAME_BYTES_MAX).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    counters.frames_malformed.fetch_add(1, Ordering::Relaxed);
                    debug!(%from, %error, "a peer frame could not be read");
                    return;
                }
            };
            match serde_json::from_slice::<Frame>(&bytes) {
                Ok(frame) if frame.v <= FRAME_VERSION => {
                    counters.frames_received.fetch_add(1, Ordering::Relaxed);
                    let previous = state.incarnation.swap(frame.incarnation, Ordering::Relaxed);
                    if previous != 0 && previous != frame.incarnation {
                        state.restarts.fetch_add(1, Ordering::Relaxed);
                        info!(%from, "peer restarted; renewing the connection to it");
                    }
                    if sessions.peer(from, frame.message).is_err() {
                        counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(frame) => {
                    counters.frames_malformed.fetch_add(1, Ordering::Relaxed);
                    warn!(%from, version = frame.v, "a peer sent a newer frame version; upgrade this node");
                }
                Err(error) => {
                    counters.frames_malformed.fetch_add(1, Ordering::Relaxed);
                    warn!(%from, %error, "a peer sent a frame this node cannot read");
                }
            }
        });
    }
}

async fn send_loop(
    endpoint: Endpoint,
    peers: Vec<Peer>,
    states: Arc<HashMap<EndpointId, Arc<PeerState>>>,
    incarnation: u64,
    mut outgoing: mpsc::Receiver<Outgoing>,
    counters: Arc<PeerCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut queues: HashMap<String, mpsc::Sender<PeerMessage>> = HashMap::new();
    for peer in peers {
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
        queues.insert(peer.id.to_string(), tx);
        let state = states.get(&peer.id).cloned().unwrap_or_default();
        tokio::spawn(peer_sender(
            endpoint.clone(),
            peer,
            state,
            incarnation,
            rx,
            Arc::clone(&counters),
            shutdown.clone(),
        ));
    }
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => return,
            frame = outgoing.recv() => match frame {
                Some(frame) => frame,
                None => return,
            },
        };
        match queues.get(&frame.to.0) {
            Some(queue) if queue.try_send(frame.message).is_ok() => {}
            _ => {
                counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Keeps a connection to one peer and sends its frames, reconnecting with backoff.
async fn peer_sender(
    endpoint: Endpoint,
    peer: Peer,
    state: Arc<PeerState>,
    incarnation: u64,
    mut frames: mpsc::Receiver<PeerMessage>,
    counters: Arc<PeerCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let address = EndpointAddr::new(peer.id).with_ip_addr(peer.addr);
    let mut connection: Option<Connection> = None;
    // The peer's restart count when our connection was made.
    let mut made_at_restart = 0;
    let mut wait = RECONNECT_MIN;
    // The link is also checked on its own, so its state and round-trip time are known even
    // while no class spans the two edges.
    let mut probe = tokio::time::interval(PROBE_INTERVAL);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            _ = shutdown.changed() => return,
            message = frames.recv() => match message {
                Some(message) => Some(message),
                None => return,
            },
            _ = probe.tick() => None,
        };
        let restarted = state.restarts.load(Ordering::Relaxed) != made_at_restart;
        if connection
            .as_ref()
            .is_some_and(|c| restarted || c.close_reason().is_some())
        {
            if let Some(old) = connection.take() {
                old.close(0u32.into(), b"reconnecting");
            }
            counters.connections_up.fetch_sub(1, Ordering::Relaxed);
            state.up.store(false, Ordering::Relaxed);
        }
        if connection.is_none() {
            made_at_restart = state.restarts.load(Ordering::Relaxed);
            match endpoint.connect(address.clone(), LOG_ALPN).await {
                Ok(fresh) => {
                    info!(peer = %peer.id, addr = %peer.addr, "connected to peer");
                    counters.connections_up.fetch_add(1, Ordering::Relaxed);
                    counters.connections_opened.fetch_add(1, Ordering::Relaxed);
                    state.up.store(true, Ordering::Relaxed);
                    connection = Some(fresh);
                    wait = RECONNECT_MIN;
                }
                Err(error) => {
                    state.up.store(false, Ordering::Relaxed);
                    state.rtt_micros.store(0, Ordering::Relaxed);
                    if message.is_some() {
                        counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    debug!(peer = %peer.id, %error, "peer unreachable; dropping a frame");
                    // Drop what queued meanwhile too: it is stale, and the log protocol repeats
                    // what matters.
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    while frames.try_recv().is_ok() {
                        counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    wait = (wait * 2).min(RECONNECT_MAX);
                    continue;
                }
            }
        }
        let Some(open) = connection.as_ref() else {
            continue;
        };
        let Some(message) = message else {
            // A probe: the link is up; note its round-trip time.
            if let Some(rtt) = open.rtt(iroh::endpoint::PathId::ZERO) {
                let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
                state.rtt_micros.store(micros, Ordering::Relaxed);
            }
            continue;
        };
        let bytes = match serde_json::to_vec(&Frame {
            v: FRAME_VERSION,
            incarnation,
            message,
        }) {
            Ok(bytes) => bytes,
            Err(_) => continue,
        };
        let sent = async {
            let mut stream = open.open_uni().await.map_err(|e| e.to_string())?;
            stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
            stream.finish().map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        }
        .await;
        match sent {
            Ok(()) => {
                counters.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
                debug!(peer = %peer.id, %error, "a frame to a peer was lost");
                connection = None;
                counters.connections_up.fetch_sub(1, Ordering::Relaxed);
                state.up.store(false, Ordering::Relaxed);
            }
        }
    }
}
