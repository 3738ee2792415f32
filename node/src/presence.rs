//! Presence: who is in each session and what they are publishing, pushed to every connected
//! classroom client as a roster.
//!
//! An actor task owns all presence state; the WebSocket handlers and the media shell talk to it
//! over a bounded channel. Nothing here is shared behind a lock. A client whose outbound queue is
//! full (it stopped reading) is disconnected rather than allowed to hold memory.

use std::collections::{BTreeSet, HashMap};

use multistream_proto::wire::{ParticipantView, ServerMessage};
use multistream_proto::{ParticipantId, Role, SessionId, Source};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

/// Messages waiting for the presence actor. Joins, leaves and media changes arrive at human
/// pace; 1024 absorbs a whole class reconnecting at once.
pub const PRESENCE_QUEUE_MAX: usize = 1_024;

/// Messages waiting to be written to one client. Rosters replace each other, so a client that is
/// this far behind is not reading and is dropped.
pub const CLIENT_OUTBOUND_QUEUE_MAX: usize = 32;

/// Open classroom connections per session: two tabs for every peer the session allows.
pub const SESSION_CLIENTS_MAX: usize = crate::sfu::SESSION_PEERS_MAX * 2;

/// Who someone is, as a roster shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
}

#[derive(Debug)]
enum Message {
    Join {
        connection: u64,
        session: SessionId,
        who: Who,
        outbound: mpsc::Sender<ServerMessage>,
        reply: oneshot::Sender<bool>,
    },
    Leave {
        connection: u64,
        session: SessionId,
    },
    Live {
        session: SessionId,
        who: Who,
        source: Source,
        live: bool,
    },
    Count {
        reply: oneshot::Sender<Occupancy>,
    },
}

/// Cheap to clone; every holder talks to the one presence actor.
#[derive(Clone)]
pub struct PresenceHandle {
    tx: mpsc::Sender<Message>,
}

impl PresenceHandle {
    /// Starts the actor on the current runtime.
    pub fn spawn() -> Self {
        let (tx, rx) = mpsc::channel(PRESENCE_QUEUE_MAX);
        tokio::spawn(run(rx));
        Self { tx }
    }

    /// Registers a classroom connection. False when the session has no room for another.
    pub async fn join(
        &self,
        connection: u64,
        session: SessionId,
        who: Who,
        outbound: mpsc::Sender<ServerMessage>,
    ) -> bool {
        let (reply, answer) = oneshot::channel();
        let message = Message::Join {
            connection,
            session,
            who,
            outbound,
            reply,
        };
        if self.tx.send(message).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    pub async fn leave(&self, connection: u64, session: SessionId) {
        // The actor only stops with the node; then there is nobody left to tell.
        let _ = self
            .tx
            .send(Message::Leave {
                connection,
                session,
            })
            .await;
    }

    /// Reports that a participant started or stopped publishing a source. Never waits: the
    /// media loop must not stall on presence; if the queue is full the change is dropped and
    /// logged (the next change carries the full state again).
    pub fn set_live(&self, session: SessionId, who: Who, source: Source, live: bool) {
        if self
            .tx
            .try_send(Message::Live {
                session,
                who,
                source,
                live,
            })
            .is_err()
        {
            tracing::warn!("presence queue full; a live-state change was dropped");
        }
    }

    /// Open classroom connections, for metrics.
    pub async fn connections(&self) -> usize {
        self.occupancy().await.connections
    }

    /// Open classroom connections and the sessions they are in.
    pub async fn occupancy(&self) -> Occupancy {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Message::Count { reply }).await.is_err() {
            return Occupancy::default();
        }
        answer.await.unwrap_or_default()
    }
}

/// How many are connected here, and in how many sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub connections: usize,
    /// Sessions with at least one open classroom connection.
    pub sessions: usize,
}

#[derive(Default)]
struct SessionPresence {
    clients: HashMap<u64, (Who, mpsc::Sender<ServerMessage>)>,
    /// Publishing connections per (participant, source); a person may publish from two tabs.
    live: HashMap<(ParticipantId, Source), (Who, u32)>,
}

impl SessionPresence {
    fn roster(&self) -> Vec<ParticipantView> {
        let mut people: HashMap<&ParticipantId, (&Who, BTreeSet<Source>)> = HashMap::new();
        for (who, _) in self.clients.values() {
            people.entry(&who.id).or_insert((who, BTreeSet::new()));
        }
        for ((id, source), (who, _)) in &self.live {
            people
                .entry(id)
                .or_insert((who, BTreeSet::new()))
                .1
                .insert(*source);
        }
        let mut roster: Vec<ParticipantView> = people
            .into_values()
            .map(|(who, live)| ParticipantView {
                id: who.id.clone(),
                name: who.name.clone(),
                role: who.role,
                live: live.into_iter().collect(),
            })
            .collect();
        // Teachers first, then by name: the order a class list is read in.
        roster.sort_by(|a, b| {
            (a.role != Role::Teacher, &a.name, &a.id).cmp(&(
                b.role != Role::Teacher,
                &b.name,
                &b.id,
            ))
        });
        roster
    }

    /// Sends the roster to every client, dropping those that stopped reading.
    fn broadcast(&mut self) {
        let participants = self.roster();
        self.clients.retain(|connection, (_, outbound)| {
            let message = ServerMessage::Roster {
                participants: participants.clone(),
            };
            let delivered = outbound.try_send(message).is_ok();
            if !delivered {
                debug!(connection, "client not reading; disconnecting it");
            }
            delivered
        });
    }
}

async fn run(mut rx: mpsc::Receiver<Message>) {
    let mut sessions: HashMap<SessionId, SessionPresence> = HashMap::new();
    while let Some(message) = rx.recv().await {
        match message {
            Message::Join {
                connection,
                session,
                who,
                outbound,
                reply,
            } => {
                let presence = sessions.entry(session).or_default();
                if presence.clients.len() >= SESSION_CLIENTS_MAX {
                    let _ = reply.send(false);
                    continue;
                }
                presence.clients.insert(connection, (who, outbound));
                let _ = reply.send(true);
                presence.broadcast();
            }
            Message::Leave {
                connection,
                session,
            } => {
                if let Some(presence) = sessions.get_mut(&session) {
                    if presence.clients.remove(&connection).is_some() {
                        presence.broadcast();
                    }
                    if presence.clients.is_empty() && presence.live.is_empty() {
                        sessions.remove(&session);
                    }
                }
            }
            Message::Live {
                session,
                who,
                source,
                live,
            } => {
                let presence = sessions.entry(session.clone()).or_default();
                let key = (who.id.clone(), source);
                if live {
                    presence.live.entry(key).or_insert((who, 0)).1 += 1;
                } else if let Some((_, count)) = presence.live.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        presence.live.remove(&key);
                    }
                }
                presence.broadcast();
                if presence.clients.is_empty() && presence.live.is_empty() {
                    sessions.remove(&session);
                }
            }
            Message::Count { reply } => {
                let _ = reply.send(Occupancy {
                    connections: sessions.values().map(|s| s.clients.len()).sum(),
                    sessions: sessions.values().filter(|s| !s.clients.is_empty()).count(),
                });
            }
        }
    }
}
