//! A virtual-time world: the SFU core and str0m clients exchanging datagrams through an in-memory
//! network with a fixed one-way latency, with no sockets and no real clock.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use multistream_node::sfu::{
    AddPeerError, Output, PeerId, PeerKind, PeerSpec, Sfu, SfuConfig, SfuEvent,
};
use multistream_proto::Source;

use crate::client::{Client, Role};

/// One-way latency of the virtual network.
pub const LATENCY: Duration = Duration::from_millis(5);

/// Steps in a row without time moving after which the world declares a bug: a deadline that
/// stays in the past would otherwise spin forever (as it would spin a real node's loop).
const STALLED_STEPS_MAX: u32 = 100_000;

struct InFlight {
    deliver_at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

pub struct World {
    pub now: Instant,
    pub clock_base: Instant,
    pub sfu: Sfu,
    pub sfu_addr: SocketAddr,
    pub clients: Vec<Client>,
    pub events: Vec<SfuEvent>,
    /// Datagrams to or from these addresses vanish (a dead or unplugged peer).
    pub blackholed: HashSet<SocketAddr>,
    /// Datagrams for which this returns true are lost: `(from, to, bytes)`.
    #[allow(clippy::type_complexity)]
    pub drop_if: Option<Box<dyn Fn(SocketAddr, SocketAddr, &[u8]) -> bool>>,
    /// Every n-th datagram sent from this address is lost (deterministic loss).
    pub lossy: Option<(SocketAddr, u64)>,
    lossy_count: u64,
    /// Datagrams the SFU sent to each address, including ones that vanished.
    pub sent_to: std::collections::HashMap<SocketAddr, u64>,
    in_flight: VecDeque<InFlight>,
    next_port: u16,
    /// The core's deadline as of the last [`World::pump`].
    sfu_next: Instant,
    /// Consecutive steps in which time did not move.
    stalled_steps: u32,
}

impl World {
    pub fn new(session_peers_max: usize) -> Self {
        let dtls_cert = multistream_node::node::init_crypto().expect("crypto initialises");
        let now = Instant::now();
        let sfu_addr: SocketAddr = "127.0.0.1:5000".parse().expect("valid");
        let sfu = Sfu::new(
            now,
            SfuConfig {
                candidate_addr: sfu_addr,
                dtls_cert,
                session_peers_max,
            },
        );
        Self {
            now,
            clock_base: now,
            sfu,
            sfu_addr,
            clients: Vec::new(),
            events: Vec::new(),
            blackholed: HashSet::new(),
            drop_if: None,
            lossy: None,
            lossy_count: 0,
            sent_to: Default::default(),
            in_flight: VecDeque::new(),
            next_port: 6000,
            sfu_next: now,
            stalled_steps: 0,
        }
    }

    /// Adds a client and connects it through `add_peer`. Returns its index and peer id.
    pub fn join(&mut self, role: Role, source: Source) -> Result<(usize, PeerId), AddPeerError> {
        self.join_as(role, source, None, false)
    }

    /// Like [`World::join`], as a named participant, and as the class lead (a teacher) or not.
    pub fn join_as(
        &mut self,
        role: Role,
        source: Source,
        participant: Option<&str>,
        lead: bool,
    ) -> Result<(usize, PeerId), AddPeerError> {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.next_port)
            .parse()
            .expect("valid");
        self.next_port += 1;
        let (mut client, offer) = Client::new(self.now, self.clock_base, addr, role);
        let kind = match role {
            Role::Publisher { .. } => PeerKind::Publisher,
            Role::Subscriber => PeerKind::Subscriber,
        };
        let participant = match participant {
            Some(name) => name.parse().expect("valid participant id"),
            None => format!("p{}", self.next_port).parse().expect("valid"),
        };
        let spec = PeerSpec {
            session: "class".parse().expect("valid"),
            participant,
            kind,
            source,
            lead,
        };
        let (peer, answer) = self.sfu.add_peer(self.now, spec, &offer)?;
        client
            .accept_answer(&answer)
            .expect("the SFU's answer is acceptable");
        client.handle_timeout(self.now);
        self.clients.push(client);
        self.pump();
        Ok((self.clients.len() - 1, peer))
    }

    /// Moves every pending datagram into the network and SFU events into `events`.
    pub fn pump(&mut self) {
        for client in &mut self.clients {
            for transmit in client.take_transmits() {
                self.in_flight.push_back(InFlight {
                    deliver_at: self.now + LATENCY,
                    from: transmit.source,
                    to: transmit.destination,
                    bytes: transmit.contents.to_vec(),
                });
            }
        }
        loop {
            match self.sfu.poll_output() {
                Output::Transmit(transmit) => {
                    *self.sent_to.entry(transmit.destination).or_default() += 1;
                    self.in_flight.push_back(InFlight {
                        deliver_at: self.now + LATENCY,
                        from: transmit.source,
                        to: transmit.destination,
                        bytes: transmit.contents.to_vec(),
                    });
                }
                Output::Event(event) => self.events.push(event),
                Output::Timeout(at) => {
                    self.sfu_next = at;
                    break;
                }
            }
        }
    }

    /// Advances to the next thing that happens, and makes it happen.
    pub fn step(&mut self, limit: Instant) {
        self.pump();
        let mut next = limit.min(self.sfu_next);
        for client in &self.clients {
            next = next.min(client.timeout());
        }
        if let Some(first) = self.in_flight.iter().map(|d| d.deliver_at).min() {
            next = next.min(first);
        }
        if next <= self.now {
            self.stalled_steps += 1;
            assert!(
                self.stalled_steps < STALLED_STEPS_MAX,
                "virtual time is stuck at {:?}: something keeps asking to be woken in the past",
                self.now - self.clock_base
            );
        } else {
            self.stalled_steps = 0;
        }
        self.now = self.now.max(next);
        let now = self.now;
        let (due, later): (Vec<InFlight>, Vec<InFlight>) =
            self.in_flight.drain(..).partition(|d| d.deliver_at <= now);
        self.in_flight = later.into();
        for datagram in due {
            if self.blackholed.contains(&datagram.from) || self.blackholed.contains(&datagram.to) {
                continue;
            }
            if self
                .drop_if
                .as_ref()
                .is_some_and(|drop| drop(datagram.from, datagram.to, &datagram.bytes))
            {
                continue;
            }
            if let Some((from, every)) = self.lossy {
                if datagram.from == from {
                    self.lossy_count += 1;
                    if self.lossy_count % every == 0 {
                        continue;
                    }
                }
            }
            if datagram.to == self.sfu_addr {
                self.sfu
                    .handle_datagram(now, datagram.from, datagram.to, &datagram.bytes);
            } else if let Some(client) = self.clients.iter_mut().find(|c| c.addr == datagram.to) {
                client.handle_datagram(now, datagram.from, &datagram.bytes);
            }
        }
        self.pump();
        if self.sfu_next <= now {
            self.sfu.handle_timeout(now);
        }
        for client in &mut self.clients {
            if client.timeout() <= now {
                client.handle_timeout(now);
            }
        }
        self.pump();
    }

    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.step(end);
        }
    }

    /// Runs until `condition` holds or `limit` of virtual time passes; returns whether it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut condition: impl FnMut(&World) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if condition(self) {
                return true;
            }
            self.step(end);
        }
        condition(self)
    }

    /// Injects a raw datagram as if `from` sent it to the SFU.
    pub fn inject(&mut self, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.sfu.handle_datagram(now, from, self.sfu_addr, bytes);
        self.pump();
    }
}
