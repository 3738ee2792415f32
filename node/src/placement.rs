//! Which edge should serve a participant: the rule a join applies before it answers, pure so it
//! can be tested on its own. In order:
//! 1. **Campus networks.** An edge configured for the network the browser comes from (by IP
//!    prefix) serves it: the school's own box on the school's own network.
//! 2. **Lowest round-trip time.** Otherwise the edge the browser measured nearest (it times a few
//!    requests to each candidate's `/healthz` and sends the figures with its join); edges within
//!    [`RTT_TIE`] of the best count as equally near.
//! 3. **Least load.** Among those, the edge with the most room; this edge when nothing is known.
//!
//! An edge that is unreachable from here, or full, is never chosen. The decision carries its
//! reason, for the join response and the metrics.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::log::NodeId;

/// Round-trip times this close to the best count as a tie (then load decides).
pub const RTT_TIE: Duration = Duration::from_millis(5);

/// Campus prefixes per edge, at most.
pub const PREFIXES_PER_EDGE_MAX: usize = 64;

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            // An IPv4 client seen through an IPv6 socket.
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a network like 10.20.0.0/16 or 2001:db8::/32");
        let (addr, len) = text.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(bad());
        }
        Ok(Prefix { addr, len })
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// An edge that could serve the participant, as this edge knows it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: NodeId,
    /// Campus networks it serves.
    pub prefixes: Vec<Prefix>,
    /// Participants connected to it now, and how many it takes.
    pub load: usize,
    pub capacity: usize,
    /// Whether this edge can reach it (its peer connection is up; always true for this edge).
    pub reachable: bool,
}

/// Why an edge was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// The browser's address is in a network the edge serves.
    Campus { network: String },
    /// The browser measured it nearest.
    Nearest { rtt_ms: u64 },
    /// Nothing else told them apart: the one with the most room.
    LeastLoaded,
    /// No other edge can take the participant.
    OnlyChoice,
}

impl Reason {
    /// A short stable name, for metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Campus { .. } => "campus",
            Reason::Nearest { .. } => "nearest",
            Reason::LeastLoaded => "least_loaded",
            Reason::OnlyChoice => "only_choice",
        }
    }
}

/// The edge chosen and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub edge: NodeId,
    pub reason: Reason,
}

/// Chooses the edge for a participant whose browser comes from `client` and measured `rtts` to
/// some candidates. `this` is the deciding edge, which must be among `candidates`.
pub fn choose(
    this: &NodeId,
    client: IpAddr,
    candidates: &[Candidate],
    rtts: &[(NodeId, Duration)],
) -> Decision {
    let usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| (c.reachable || c.node == *this) && c.load < c.capacity)
        .collect();
    if usable.len() <= 1 {
        let edge = usable
            .first()
            .map_or_else(|| this.clone(), |c| c.node.clone());
        return Decision {
            edge,
            reason: Reason::OnlyChoice,
        };
    }
    // 1. Campus networks: the longest matching prefix wins.
    let campus = usable
        .iter()
        .flat_map(|c| c.prefixes.iter().map(move |p| (c, p)))
        .filter(|(_, p)| p.contains(client))
        .max_by_key(|(_, p)| p.len);
    if let Some((candidate, prefix)) = campus {
        return Decision {
            edge: candidate.node.clone(),
            reason: Reason::Campus {
                network: prefix.to_string(),
            },
        };
    }
    // 2. Lowest round-trip time the browser measured, ties within RTT_TIE.
    let measured: Vec<(&Candidate, Duration)> = usable
        .iter()
        .filter_map(|c| {
            rtts.iter()
                .find(|(node, _)| *node == c.node)
                .map(|(_, rtt)| (*c, *rtt))
        })
        .collect();
    let room = |c: &Candidate| c.capacity.saturating_sub(c.load);
    if let Some(best) = measured.iter().map(|(_, rtt)| *rtt).min() {
        let near: Vec<&(&Candidate, Duration)> = measured
            .iter()
            .filter(|(_, rtt)| *rtt <= best + RTT_TIE)
            .collect();
        let (chosen, rtt) = near
            .iter()
            .max_by(|a, b| {
                room(a.0)
                    .cmp(&room(b.0))
                    .then_with(|| b.1.cmp(&a.1))
                    .then_with(|| b.0.node.cmp(&a.0.node))
            })
            .map(|(c, rtt)| (*c, *rtt))
            .unwrap_or((measured[0].0, measured[0].1));
        return Decision {
            edge: chosen.node.clone(),
            reason: Reason::Nearest {
                rtt_ms: rtt.as_millis() as u64,
            },
        };
    }
    // 3. Least load; this edge first among equals (no redirect for nothing).
    let chosen = usable
        .iter()
        .max_by(|a, b| {
            room(a)
                .cmp(&room(b))
                .then_with(|| (a.node == *this).cmp(&(b.node == *this)))
                .then_with(|| b.node.cmp(&a.node))
        })
        .map_or_else(|| this.clone(), |c| c.node.clone());
    Decision {
        edge: chosen,
        reason: Reason::LeastLoaded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId(name.into())
    }

    fn edge(name: &str, prefixes: &[&str], load: usize) -> Candidate {
        Candidate {
            node: node(name),
            prefixes: prefixes
                .iter()
                .map(|p| p.parse().expect("a prefix"))
                .collect(),
            load,
            capacity: 100,
            reachable: true,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn prefixes_parse_and_match() {
        let net: Prefix = "10.20.0.0/16".parse().expect("valid");
        assert!(net.contains("10.20.3.4".parse().expect("ip")));
        assert!(!net.contains("10.21.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.20.9.9".parse().expect("ip")));
        let v6: Prefix = "2001:db8::/32".parse().expect("valid");
        assert!(v6.contains("2001:db8:1::5".parse().expect("ip")));
        assert!(!v6.contains("10.20.3.4".parse().expect("ip")));
        let all: Prefix = "0.0.0.0/0".parse().expect("valid");
        assert!(all.contains("192.0.2.1".parse().expect("ip")));
        for bad in ["10.0.0.0", "10.0.0.0/33", "campus/8", "::/129"] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_campus_edge_wins_then_the_nearest_then_the_emptiest() {
        let this = node("central");
        let edges = [
            edge("central", &[], 50),
            edge("north", &["10.1.0.0/16"], 90),
            edge("south", &["10.2.0.0/16", "10.2.7.0/24"], 10),
        ];
        let campus = choose(&this, "10.1.4.4".parse().expect("ip"), &edges, &[]);
        assert_eq!(campus.edge, node("north"));
        assert_eq!(
            campus.reason,
            Reason::Campus {
                network: "10.1.0.0/16".into()
            }
        );
        // Campus beats a nearer measurement.
        let rtts = [(node("central"), ms(3)), (node("north"), ms(40))];
        assert_eq!(
            choose(&this, "10.1.4.4".parse().expect("ip"), &edges, &rtts).edge,
            node("north")
        );
        // The longest prefix wins.
        let narrow = choose(&this, "10.2.7.1".parse().expect("ip"), &edges, &[]);
        assert_eq!(
            narrow.reason,
            Reason::Campus {
                network: "10.2.7.0/24".into()
            }
        );

        // Off campus: the nearest, and among near ones the emptiest.
        let home: IpAddr = "198.51.100.7".parse().expect("ip");
        let rtts = [
            (node("central"), ms(30)),
            (node("north"), ms(12)),
            (node("south"), ms(15)),
        ];
        let nearest = choose(&this, home, &edges, &rtts);
        assert_eq!(
            nearest.edge,
            node("south"),
            "12 and 15 ms tie; south has room"
        );
        assert_eq!(nearest.reason, Reason::Nearest { rtt_ms: 15 });
        let rtts = [(node("north"), ms(12)), (node("south"), ms(40))];
        assert_eq!(choose(&this, home, &edges, &rtts).edge, node("north"));

        // Nothing measured: the most room.
        let emptiest = choose(&this, home, &edges, &[]);
        assert_eq!(emptiest.edge, node("south"));
        assert_eq!(emptiest.reason, Reason::LeastLoaded);
    }

    #[test]
    fn unreachable_or_full_edges_are_never_chosen() {
        let this = node("central");
        let mut north = edge("north", &["10.1.0.0/16"], 0);
        north.reachable = false;
        let mut south = edge("south", &[], 100);
        south.capacity = 100;
        let edges = [edge("central", &[], 99), north, south];
        let decision = choose(
            &this,
            "10.1.0.9".parse().expect("ip"),
            &edges,
            &[(node("south"), ms(1))],
        );
        assert_eq!(decision.edge, node("central"));
        assert_eq!(decision.reason, Reason::OnlyChoice);
        // A standalone edge: itself.
        let alone = choose(&this, "10.1.0.9".parse().expect("ip"), &[], &[]);
        assert_eq!(alone.edge, this);
        // Equal room, nothing measured: no redirect.
        let twins = [edge("central", &[], 5), edge("east", &[], 5)];
        let stay = choose(&this, "192.0.2.1".parse().expect("ip"), &twins, &[]);
        assert_eq!(stay.edge, node("central"));
    }
}
