//! The relay's links: one QUIC connection from this edge to each peer (ALPN [`RELAY_ALPN`]),
//! carrying relayed media as datagrams (a lost packet never holds up the next) and control
//! messages on one ordered stream. Each edge sends on the connection it dialled and receives on
//! the ones its peers dialled, so there is no dial race to settle.
//!
//! The media thread sends directly ([`RelayLinks::send_datagram`] does not wait) and receives
//! everything through one bounded channel of [`RelayInput`]; the connection tasks run on the
//! node's shared runtime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iroh::endpoint::{Connection, SendDatagramError};
use iroh::{Endpoint, EndpointAddr};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::log::NodeId;
use crate::placement::EdgeReport;
use crate::relay::wire::{CONTROL_MESSAGE_BYTES_MAX, ControlError, LinkMessage};

/// The ALPN of media relaying, versioned.
pub const RELAY_ALPN: &[u8] = b"multistream/relay/1";

/// Inputs waiting for the media thread, at most; past it datagrams and messages are dropped
/// and counted (the relay protocol repeats what matters).
pub const RELAY_INBOUND_QUEUE_MAX: usize = 4_096;

/// Control messages waiting to be written to one peer, at most.
pub const CONTROL_QUEUE_MAX: usize = 1_024;

/// How often an edge sends its peers its [`EdgeReport`].
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// Waits between attempts to reach a peer, from the first to the longest.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// One attempt to reach a peer may take this long (handshakes across regions take a few
/// hundred milliseconds).
const CONNECT_ATTEMPT_MAX: Duration = Duration::from_millis(1_500);

/// What the connection tasks hand the media thread.
#[derive(Debug)]
pub enum RelayInput {
    Message {
        from: NodeId,
        message: LinkMessage,
    },
    Datagram {
        from: NodeId,
        bytes: Bytes,
    },
    /// Our connection to `peer` came up or went down.
    Link {
        peer: NodeId,
        up: bool,
    },
}

/// Per-peer figures for `/metrics`.
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub datagrams_sent: AtomicU64,
    pub datagram_bytes_sent: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub datagram_bytes_received: AtomicU64,
    /// Datagrams not sent: larger than the path allows.
    pub datagrams_too_large: AtomicU64,
    /// Datagrams received that the media thread had no room for.
    pub datagrams_dropped_inbound: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    /// Control messages not sent (queue full, link down) or not readable.
    pub messages_dropped: AtomicU64,
    pub messages_malformed: AtomicU64,
    /// Connections this edge made to the peer.
    pub connections_opened: AtomicU64,
}

struct Slot {
    connection: Mutex<Option<Connection>>,
    control: mpsc::Sender<LinkMessage>,
    counters: Arc<LinkCounters>,
}

/// Outcome of [`RelayLinks::send_datagram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Sent,
    /// The connection's datagram buffer is full: keep it and try again shortly.
    Full,
    /// Link down, or the datagram can never fit: it is gone.
    Dropped,
}

/// The sending side of every link, shared by the media thread and the connection tasks.
pub struct RelayLinks {
    slots: HashMap<NodeId, Slot>,
    controls: Mutex<HashMap<NodeId, mpsc::Receiver<LinkMessage>>>,
    /// Each peer's latest report about itself, and when it came.
    reports: Mutex<HashMap<NodeId, (EdgeReport, Instant)>>,
}

impl RelayLinks {
    pub fn new(peers: &[NodeId]) -> Arc<RelayLinks> {
        let mut slots = HashMap::new();
        let mut controls = HashMap::new();
        for peer in peers {
            let (tx, rx) = mpsc::channel(CONTROL_QUEUE_MAX);
            slots.insert(
                peer.clone(),
                Slot {
                    connection: Mutex::new(None),
                    control: tx,
                    counters: Arc::default(),
                },
            );
            controls.insert(peer.clone(), rx);
        }
        Arc::new(RelayLinks {
            slots,
            controls: Mutex::new(controls),
            reports: Mutex::new(HashMap::new()),
        })
    }

    /// Every peer's latest report about itself and how old it is.
    pub fn reports(&self) -> Vec<(NodeId, EdgeReport, Duration)> {
        let Ok(reports) = self.reports.lock() else {
            return Vec::new();
        };
        reports
            .iter()
            .map(|(peer, (report, at))| (peer.clone(), report.clone(), at.elapsed()))
            .collect()
    }

    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.slots.keys()
    }

    pub fn counters(&self, peer: &NodeId) -> Option<&LinkCounters> {
        self.slots.get(peer).map(|s| &*s.counters)
    }

    /// Queues a control message for `to`; false (and counted) when it cannot be.
    pub fn send_message(&self, to: &NodeId, message: LinkMessage) -> bool {
        let Some(slot) = self.slots.get(to) else {
            return false;
        };
        let queued = slot.control.try_send(message).is_ok();
        if !queued {
            slot.counters
                .messages_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Sends one datagram to `to` now, if the connection has room for it.
    pub fn send_datagram(&self, to: &NodeId, datagram: Bytes) -> Sent {
        let Some(slot) = self.slots.get(to) else {
            return Sent::Dropped;
        };
        let connection = match slot.connection.lock() {
            Ok(guard) => guard.clone(),
            Err(_) => None,
        };
        let Some(connection) = connection else {
            return Sent::Dropped;
        };
        let length = datagram.len();
        if connection
            .max_datagram_size()
            .is_none_or(|max| length > max)
        {
            slot.counters
                .datagrams_too_large
                .fetch_add(1, Ordering::Relaxed);
            return Sent::Dropped;
        }
        if connection.datagram_send_buffer_space() < length {
            return Sent::Full;
        }
        match connection.send_datagram(datagram) {
            Ok(()) => {
                slot.counters.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                slot.counters
                    .datagram_bytes_sent
                    .fetch_add(length as u64, Ordering::Relaxed);
                Sent::Sent
            }
            Err(SendDatagramError::TooLarge) => {
                slot.counters
                    .datagrams_too_large
                    .fetch_add(1, Ordering::Relaxed);
                Sent::Dropped
            }
            Err(_) => Sent::Dropped,
        }
    }

    /// Starts one dialling task per peer: each keeps a connection up, writes the control
    /// messages queued for it and this edge's `report`, and tells the media thread the link's
    /// state.
    pub fn start(
        self: &Arc<Self>,
        endpoint: Endpoint,
        addresses: Vec<(NodeId, EndpointAddr)>,
        inbound: mpsc::Sender<RelayInput>,
        report: watch::Receiver<EdgeReport>,
        shutdown: watch::Receiver<bool>,
    ) {
        let mut controls = match self.controls.lock() {
            Ok(mut guard) => std::mem::take(&mut *guard),
            Err(_) => return,
        };
        for (peer, address) in addresses {
            let Some(control) = controls.remove(&peer) else {
                continue;
            };
            let link = Link {
                links: Arc::clone(self),
                endpoint: endpoint.clone(),
                peer,
                address,
            };
            tokio::spawn(dial(
                link,
                control,
                inbound.clone(),
                report.clone(),
                shutdown.clone(),
            ));
        }
    }
}

/// The peer one dialling task keeps a connection to.
struct Link {
    links: Arc<RelayLinks>,
    endpoint: Endpoint,
    peer: NodeId,
    address: EndpointAddr,
}

async fn dial(
    link: Link,
    mut control: mpsc::Receiver<LinkMessage>,
    inbound: mpsc::Sender<RelayInput>,
    report: watch::Receiver<EdgeReport>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Link {
        links,
        endpoint,
        peer,
        address,
    } = link;
    let Some(slot) = links.slots.get(&peer) else {
        return;
    };
    let mut wait = RECONNECT_MIN;
    loop {
        // An attempt is bounded: a fresh one sends its first packet at once, where a long one
        // waits out QUIC's growing retransmission timer, so a restored link is found sooner.
        let attempt = tokio::time::timeout(
            CONNECT_ATTEMPT_MAX,
            endpoint.connect(address.clone(), RELAY_ALPN),
        );
        let connected = tokio::select! {
            _ = shutdown.changed() => return,
            connected = attempt => connected
                .map_err(|_| "no answer in time".to_owned())
                .and_then(|c| c.map_err(|error| error.to_string())),
        };
        let connection = match connected {
            Ok(connection) => connection,
            Err(error) => {
                debug!(%peer, %error, "relay link: peer unreachable");
                // What queued while the link was down is stale; the relay core repeats it.
                while control.try_recv().is_ok() {
                    slot.counters
                        .messages_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        wait = RECONNECT_MIN;
        let mut stream = match connection.open_uni().await {
            Ok(stream) => stream,
            Err(error) => {
                debug!(%peer, %error, "relay link: no control stream");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        info!(%peer, "relay link up");
        slot.counters
            .connections_opened
            .fetch_add(1, Ordering::Relaxed);
        if let Ok(mut guard) = slot.connection.lock() {
            *guard = Some(connection.clone());
        }
        if inbound
            .send(RelayInput::Link {
                peer: peer.clone(),
                up: true,
            })
            .await
            .is_err()
        {
            return;
        }
        let mut reporting = tokio::time::interval(REPORT_INTERVAL);
        reporting.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    connection.close(0u32.into(), b"shutting down");
                    return;
                }
                _ = connection.closed() => break,
                message = control.recv() => {
                    let Some(message) = message else { return };
                    if write_message(&mut stream, &message).await.is_err() {
                        slot.counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    slot.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
                }
                _ = reporting.tick() => {
                    let message = LinkMessage::Edge { report: report.borrow().clone() };
                    if write_message(&mut stream, &message).await.is_err() {
                        break;
                    }
                }
            }
        }
        info!(%peer, "relay link down");
        connection.close(0u32.into(), b"reconnecting");
        if let Ok(mut guard) = slot.connection.lock() {
            *guard = None;
        }
        if inbound
            .send(RelayInput::Link {
                peer: peer.clone(),
                up: false,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Writes one control message: its length (4 bytes, big-endian), then its JSON.
async fn write_message(
    stream: &mut iroh::endpoint::SendStream,
    message: &LinkMessage,
) -> Result<(), iroh::endpoint::WriteError> {
    let bytes = message.encode();
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    stream.write_all(&length.to_be_bytes()).await?;
    stream.write_all(&bytes).await
}

/// Receives what a peer sends on the connection it dialled: datagrams and the control stream.
pub async fn serve(
    links: Arc<RelayLinks>,
    connection: Connection,
    from: NodeId,
    inbound: mpsc::Sender<RelayInput>,
) {
    let Some(counters) = links.slots.get(&from).map(|s| Arc::clone(&s.counters)) else {
        return;
    };
    let datagrams = {
        let (connection, from, inbound, counters) = (
            connection.clone(),
            from.clone(),
            inbound.clone(),
            Arc::clone(&counters),
        );
        async move {
            while let Ok(bytes) = connection.read_datagram().await {
                counters.datagrams_received.fetch_add(1, Ordering::Relaxed);
                counters
                    .datagram_bytes_received
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let input = RelayInput::Datagram {
                    from: from.clone(),
                    bytes,
                };
                if inbound.try_send(input).is_err() {
                    counters
                        .datagrams_dropped_inbound
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    let control = async {
        // One ordered stream per connection; a second one would be a misbehaving peer.
        let Ok(mut stream) = connection.accept_uni().await else {
            return;
        };
        loop {
            let mut length = [0u8; 4];
            if stream.read_exact(&mut length).await.is_err() {
                return;
            }
            let length = u32::from_be_bytes(length) as usize;
            if length > CONTROL_MESSAGE_BYTES_MAX {
                counters.messages_malformed.fetch_add(1, Ordering::Relaxed);
                warn!(%from, length, "relay link: a control message over the limit; closing");
                connection.close(2u32.into(), b"control message too long");
                return;
            }
            let mut bytes = vec![0u8; length];
            if stream.read_exact(&mut bytes).await.is_err() {
                return;
            }
            match LinkMessage::decode(&bytes) {
                Ok(LinkMessage::Edge { report }) => {
                    counters.messages_received.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut reports) = links.reports.lock() {
                        reports.insert(from.clone(), (report, Instant::now()));
                    }
                }
                Ok(message) => {
                    counters.messages_received.fetch_add(1, Ordering::Relaxed);
                    let input = RelayInput::Message {
                        from: from.clone(),
                        message,
                    };
                    if inbound.try_send(input).is_err() {
                        counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(error @ (ControlError::TooLong | ControlError::Malformed(_))) => {
                    counters.messages_malformed.fetch_add(1, Ordering::Relaxed);
                    warn!(%from, %error, "relay link: a control message this node cannot read");
                }
                Err(error) => {
                    counters.messages_malformed.fetch_add(1, Ordering::Relaxed);
                    warn!(%from, %error, "relay link: a control message refused");
                }
            }
        }
    };
    tokio::join!(datagrams, control);
}
