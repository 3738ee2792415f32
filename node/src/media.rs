//! The media shell: one tokio task that owns the UDP socket and the SFU core, moves datagrams
//! and timestamps between them, and serves peer commands from the HTTP handlers.
//!
//! All SFU state is inside this task; others reach it through a bounded command channel and get
//! answers on oneshot channels. The task reads the clock and does IO; the core does neither.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use multistream_proto::{ParticipantId, SessionId};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

use crate::cascade::RelayShell;
use crate::cascade::link::RelayInput;
pub use crate::cascade::{RelaySetup, RelaySnapshot};
use crate::presence::{PresenceHandle, Who};
use crate::sfu::{
    AddPeerError, Output, PeerId, PeerKind, PeerSpec, Sfu, SfuCounters, SfuEvent, SfuGauges,
};
use crate::udp::{MediaSocket, SocketCounters};

/// Commands waiting for the media task. Each is a WHIP/WHEP request or a metrics scrape;
/// when the queue is full the HTTP edge answers 503 instead of queueing without bound.
pub const MEDIA_COMMAND_QUEUE_MAX: usize = 256;

/// Largest datagram accepted. WebRTC keeps datagrams under about 1200 bytes; anything longer
/// than this is not ours and is counted as oversized and dropped.
const DATAGRAM_BYTES_MAX: usize = 2_047;

/// Datagrams handled before outputs are flushed: a video frame's packets arrive together, and
/// forwarding them as one batch costs each subscriber one poll, and one segmented send, instead
/// of one per packet. 32 datagrams fanned out to a full session
/// ([`crate::sfu::SESSION_PEERS_MAX`]) stay within the core's [`crate::sfu::TRANSMIT_QUEUE_MAX`].
const RECEIVE_BATCH_MAX: usize = 32;

/// Inputs from other edges handled before outputs are flushed.
const RELAY_BATCH_MAX: usize = 64;

/// A peer as the shell knows it: the public resource name and who owns it.
#[derive(Debug, Clone)]
struct Resource {
    peer: PeerId,
    session: SessionId,
    who: Who,
    kind: PeerKind,
    source: multistream_proto::Source,
    connected: bool,
}

/// Answer to a successful WHIP/WHEP offer.
#[derive(Debug)]
pub struct Added {
    /// The resource name to put in the `Location` URL.
    pub resource: String,
    pub answer_sdp: String,
}

/// What a DELETE on a resource did.
#[derive(Debug, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed,
    NotFound,
    /// The resource belongs to someone else and the requester is not a teacher of the session.
    NotYours,
}

/// Counters and gauges for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct MediaSnapshot {
    pub counters: SfuCounters,
    pub gauges: SfuGauges,
    pub socket: SocketCounters,
    /// Media relayed between edges (a node with peers).
    pub relay: Option<RelaySnapshot>,
}

enum Command {
    Add {
        spec: PeerSpec,
        who: Who,
        offer: String,
        reply: oneshot::Sender<Result<Added, AddPeerError>>,
    },
    Remove {
        resource: String,
        session: SessionId,
        requester: ParticipantId,
        requester_is_teacher: bool,
        reply: oneshot::Sender<RemoveOutcome>,
    },
    /// Ends a participant's media: its publishers only (demoted from speaker), or everything
    /// (removed from the class).
    DropParticipant {
        session: SessionId,
        participant: ParticipantId,
        publishers_only: bool,
    },
    Snapshot {
        reply: oneshot::Sender<MediaSnapshot>,
    },
}

/// Why the media task could not take a command.
#[derive(Debug, thiserror::Error)]
pub enum MediaUnavailable {
    #[error("the media engine is busy; try again shortly")]
    Busy,
    #[error("the media engine has stopped")]
    Stopped,
}

#[derive(Clone)]
pub struct MediaHandle {
    tx: mpsc::Sender<Command>,
}

impl MediaHandle {
    pub async fn add_peer(
        &self,
        spec: PeerSpec,
        who: Who,
        offer: String,
    ) -> Result<Result<Added, AddPeerError>, MediaUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Add {
            spec,
            who,
            offer,
            reply,
        })?;
        answer.await.map_err(|_| MediaUnavailable::Stopped)
    }

    pub async fn remove_peer(
        &self,
        resource: String,
        session: SessionId,
        requester: ParticipantId,
        requester_is_teacher: bool,
    ) -> Result<RemoveOutcome, MediaUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Remove {
            resource,
            session,
            requester,
            requester_is_teacher,
            reply,
        })?;
        answer.await.map_err(|_| MediaUnavailable::Stopped)
    }

    /// Ends a participant's publishers (or all its peers) in a session.
    pub fn drop_participant(
        &self,
        session: SessionId,
        participant: ParticipantId,
        publishers_only: bool,
    ) -> Result<(), MediaUnavailable> {
        self.send(Command::DropParticipant {
            session,
            participant,
            publishers_only,
        })
    }

    pub async fn snapshot(&self) -> Result<MediaSnapshot, MediaUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Snapshot { reply })?;
        answer.await.map_err(|_| MediaUnavailable::Stopped)
    }

    fn send(&self, command: Command) -> Result<(), MediaUnavailable> {
        self.tx.try_send(command).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => MediaUnavailable::Busy,
            mpsc::error::TrySendError::Closed(_) => MediaUnavailable::Stopped,
        })
    }
}

/// Starts the media engine on its own thread, with a single-threaded runtime: the packet path
/// never waits for a worker of the shared runtime, and timers and socket readiness are polled
/// by the one thread that acts on them. It runs until `shutdown` turns true, then closes every
/// peer (so browsers learn at once) and returns.
pub fn spawn(
    socket: std::net::UdpSocket,
    sfu: Sfu,
    candidate_addr: SocketAddr,
    presence: PresenceHandle,
    relay: Option<RelaySetup>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(MediaHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(MEDIA_COMMAND_QUEUE_MAX);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let join = std::thread::Builder::new()
        .name("media".into())
        .spawn(move || {
            runtime.block_on(async move {
                let socket = match MediaSocket::new(socket, DATAGRAM_BYTES_MAX) {
                    Ok(socket) => socket,
                    Err(error) => {
                        tracing::error!(%error, "the media socket cannot be used");
                        return;
                    }
                };
                let (relay, relay_in) = match relay {
                    Some(setup) => (
                        Some(RelayShell::new(
                            Instant::now(),
                            setup.node,
                            setup.links,
                            presence.clone(),
                        )),
                        Some(setup.inbound),
                    ),
                    None => (None, None),
                };
                let task = MediaTask {
                    socket,
                    sfu,
                    candidate_addr,
                    presence,
                    resources: HashMap::new(),
                    by_peer: HashMap::new(),
                    relay,
                };
                info!(
                    segmentation = task.socket.segmentation(),
                    "media engine running"
                );
                task.run(rx, relay_in, shutdown).await;
            });
        })?;
    Ok((MediaHandle { tx }, join))
}

struct MediaTask {
    socket: MediaSocket,
    sfu: Sfu,
    candidate_addr: SocketAddr,
    presence: PresenceHandle,
    resources: HashMap<String, Resource>,
    by_peer: HashMap<PeerId, String>,
    relay: Option<RelayShell>,
}

impl MediaTask {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut relay_in: Option<mpsc::Receiver<RelayInput>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut inputs = Vec::with_capacity(RELAY_BATCH_MAX);
        loop {
            let deadline = self.flush().await;
            let from_edges = async {
                match relay_in.as_mut() {
                    Some(rx) => rx.recv_many(&mut inputs, RELAY_BATCH_MAX).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                received = from_edges => {
                    if received == 0 {
                        // The peer plane stopped: the node is shutting down.
                        relay_in = None;
                    }
                    let now = Instant::now();
                    if let Some(relay) = self.relay.as_mut() {
                        for input in inputs.drain(..) {
                            relay.input(now, input, &mut self.sfu);
                        }
                    }
                    inputs.clear();
                },
                readable = self.socket.readable() => match readable {
                    Ok(()) => self.receive().await,
                    Err(error) => {
                        tracing::error!(%error, "the media socket failed");
                        break;
                    }
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    self.sfu.handle_timeout(now);
                    if let Some(relay) = self.relay.as_mut() {
                        relay.handle_timeout(now, &mut self.sfu);
                    }
                }
            }
        }
        info!("media engine stopping; closing all peers");
        self.sfu.shutdown(Instant::now());
        self.flush().await;
    }

    /// Hands what is waiting on the socket to the core, flushing outputs after every
    /// [`RECEIVE_BATCH_MAX`] datagrams.
    async fn receive(&mut self) {
        let mut handled = 0;
        while handled < RECEIVE_BATCH_MAX {
            let count = self.socket.try_receive();
            if count == 0 {
                break;
            }
            let now = Instant::now();
            for index in 0..count {
                if let Some((source, datagram)) = self.socket.received(index) {
                    self.sfu
                        .handle_datagram(now, source, self.candidate_addr, datagram);
                }
                handled += 1;
                // With GRO one read can bring many datagrams; the core's transmit queue is
                // sized for RECEIVE_BATCH_MAX at a time.
                if handled % RECEIVE_BATCH_MAX == 0 {
                    self.flush().await;
                }
            }
        }
    }

    /// Sends every pending datagram, hands events on, moves media between the SFU core and
    /// the relay, and returns the next deadline.
    async fn flush(&mut self) -> Instant {
        loop {
            let at = loop {
                match self.sfu.poll_output() {
                    Output::Transmit(transmit) => {
                        self.socket
                            .send(transmit.destination, &transmit.contents)
                            .await;
                    }
                    Output::Event(event) => self.event(event),
                    Output::Timeout(at) => break at,
                }
            };
            let now = Instant::now();
            let relay_at = match self.relay.as_mut() {
                Some(relay) => {
                    if relay.pump(now, &mut self.sfu) {
                        continue;
                    }
                    relay.poll_timeout(now)
                }
                None => at,
            };
            self.socket.flush().await;
            return at.min(relay_at);
        }
    }

    fn event(&mut self, event: SfuEvent) {
        if let Some(relay) = self.relay.as_mut() {
            let peer = match &event {
                SfuEvent::PeerConnected { peer, .. } | SfuEvent::PeerRemoved { peer, .. } => peer,
            };
            let who = self
                .by_peer
                .get(peer)
                .and_then(|name| self.resources.get(name))
                .map(|r| r.who.clone());
            relay.event(Instant::now(), &event, who, &mut self.sfu);
        }
        let (peer, live) = match event {
            SfuEvent::PeerConnected { peer, .. } => (peer, true),
            SfuEvent::PeerRemoved { peer, .. } => (peer, false),
        };
        let Some(name) = self.by_peer.get(&peer).cloned() else {
            return;
        };
        let Some(resource) = self.resources.get_mut(&name) else {
            return;
        };
        let was_connected = resource.connected;
        resource.connected = live;
        if resource.kind == PeerKind::Publisher && was_connected != live {
            self.presence.set_live(
                resource.session.clone(),
                resource.who.clone(),
                resource.source,
                live,
            );
        }
        if !live {
            self.resources.remove(&name);
            self.by_peer.remove(&peer);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Add {
                spec,
                who,
                offer,
                reply,
            } => {
                let kind = spec.kind;
                let source = spec.source;
                let session = spec.session.clone();
                let result =
                    self.sfu
                        .add_peer(Instant::now(), spec, &offer)
                        .map(|(peer, answer)| {
                            let name = resource_name();
                            self.resources.insert(
                                name.clone(),
                                Resource {
                                    peer,
                                    session,
                                    who,
                                    kind,
                                    source,
                                    connected: false,
                                },
                            );
                            self.by_peer.insert(peer, name.clone());
                            Added {
                                resource: name,
                                answer_sdp: answer,
                            }
                        });
                let _ = reply.send(result);
            }
            Command::Remove {
                resource,
                session,
                requester,
                requester_is_teacher,
                reply,
            } => {
                let outcome = match self.resources.get(&resource) {
                    Some(entry) if entry.session != session => RemoveOutcome::NotFound,
                    Some(entry) if entry.who.id != requester && !requester_is_teacher => {
                        RemoveOutcome::NotYours
                    }
                    Some(entry) => {
                        let peer = entry.peer;
                        self.sfu.remove_peer(Instant::now(), peer);
                        RemoveOutcome::Removed
                    }
                    None => RemoveOutcome::NotFound,
                };
                let _ = reply.send(outcome);
            }
            Command::DropParticipant {
                session,
                participant,
                publishers_only,
            } => {
                let peers: Vec<PeerId> = self
                    .resources
                    .values()
                    .filter(|r| {
                        r.session == session
                            && r.who.id == participant
                            && (!publishers_only || r.kind == PeerKind::Publisher)
                    })
                    .map(|r| r.peer)
                    .collect();
                for peer in peers {
                    info!(%session, %participant, "ending a participant's media by the teacher's decision");
                    self.sfu.remove_peer(Instant::now(), peer);
                }
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(MediaSnapshot {
                    counters: self.sfu.counters().clone(),
                    gauges: self.sfu.gauges(),
                    socket: self.socket.counters,
                    relay: self.relay.as_ref().map(RelayShell::snapshot),
                });
            }
        }
    }
}

/// An unguessable resource name: knowing one must not let anyone else find the others.
fn resource_name() -> String {
    crate::token::random_hex(16)
}
