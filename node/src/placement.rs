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
//!
//! Besides the rule, this module owns what an edge tells its peers about itself
//! ([`EdgeReport`]), how a report becomes a [`Candidate`], and the checks on the addresses
//! browsers are sent to ([`parse_origin`]): a peer's report is believed only within these
//! limits. The join endpoint (`crate::http`) gathers the candidates and applies the decision.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::log::NodeId;

/// Round-trip times this close to the best count as a tie (then load decides).
pub const RTT_TIE: Duration = Duration::from_millis(5);

/// Campus prefixes per edge, at most.
pub const PREFIXES_PER_EDGE_MAX: usize = 64;

/// Round-trip times a browser may send with its join, at most: one per edge it measured (a
/// cluster is a handful of edges; more is a broken or hostile client).
pub const RTTS_MAX: usize = 16;

/// Largest round-trip time a browser may report, in milliseconds: a minute is already no
/// connection at all.
pub const RTT_MS_MAX: f64 = 60_000.0;

/// A peer's report is believed this long: three of its reports missed, and it is not offered.
pub const REPORT_FRESH_MAX: Duration = crate::cascade::link::REPORT_INTERVAL.saturating_mul(3);

/// Trusted issuers a peer's report may list, at most.
pub const TRUSTED_ISSUERS_MAX: usize = 8;

/// Longest base URL an edge may have (scheme, host and port).
pub const ORIGIN_CHARS_MAX: usize = 200;

/// A browser-facing base URL, checked: `http` or `https`, a host name or IP address, an
/// optional port, nothing else (no path, query, user or fragment; a trailing `/` is dropped).
/// What passes is safe to put in a `Location`, a JSON answer and a Content-Security-Policy.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("{text:?} is not a base URL like https://north.example.org:8443 ({why})")
    };
    let trimmed = text.trim().trim_end_matches('/');
    if trimmed.len() > ORIGIN_CHARS_MAX {
        return Err(bad("too long"));
    }
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad("the scheme is http or https"));
    }
    // The host: a bracketed IPv6 address, or a name or IPv4 address; then an optional port.
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (address, after) = inner.split_once(']').ok_or_else(|| bad("an unclosed ["))?;
        address
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address in brackets"))?;
        (format!("[{address}]"), after)
    } else {
        let end = rest.find(':').unwrap_or(rest.len());
        let (host, after) = rest.split_at(end);
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && !host.starts_with(['.', '-']);
        if !host_ok {
            return Err(bad("the host is a name or an IP address"));
        }
        (host.to_ascii_lowercase(), after)
    };
    let port = match port {
        "" => String::new(),
        _ => {
            let digits = port
                .strip_prefix(':')
                .ok_or_else(|| bad("no path, query or fragment"))?;
            let number: u16 = digits.parse().map_err(|_| bad("the port is a number"))?;
            if number == 0 {
                return Err(bad("port 0"));
            }
            format!(":{number}")
        }
    };
    Ok(format!("{scheme}://{host}{port}"))
}

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

/// What an edge tells its peers about itself every [`crate::cascade::link::REPORT_INTERVAL`] (on
/// its relay link), so each can place participants on any of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EdgeReport {
    /// Its name for people ("North campus").
    pub name: String,
    /// Where browsers reach it (scheme, host and port), empty if not configured.
    pub url: String,
    /// The campus networks it serves, as `10.20.0.0/16` prefixes.
    pub networks: Vec<String>,
    /// Participants connected to it now, and how many it takes.
    pub load: u32,
    pub capacity: u32,
    /// The issuer it signs tokens as (`iss`): edges that share a cluster issuer accept each
    /// other's tokens, so a participant is sent only to an edge whose issuer is ours. Empty from
    /// an edge that does not say.
    #[serde(default)]
    pub issuer: String,
    /// The other issuers whose tokens it accepts, by the key part of their names (the hex after
    /// the `:` of an `iss`): a control plane's, for an enrolled edge. A participant holding such a token may be sent to it. At most
    /// [`TRUSTED_ISSUERS_MAX`] are believed.
    #[serde(default)]
    pub trusted: Vec<String>,
    /// Sessions with someone connected to it now.
    #[serde(default)]
    pub sessions: u32,
    /// An administrator is draining it: it keeps the participants it has and takes no new ones
    /// while another edge can.
    #[serde(default)]
    pub draining: bool,
}

impl EdgeReport {
    /// This report as a candidate for placement, with `reachable` as this edge sees it. Networks
    /// that do not parse are left out, and at most [`PREFIXES_PER_EDGE_MAX`] are used.
    pub fn candidate(&self, node: NodeId, reachable: bool) -> Candidate {
        Candidate {
            node,
            prefixes: self
                .networks
                .iter()
                .take(PREFIXES_PER_EDGE_MAX)
                .filter_map(|text| text.parse().ok())
                .collect(),
            load: self.load as usize,
            capacity: self.capacity as usize,
            reachable,
            draining: self.draining,
        }
    }

    /// Whether it accepts tokens signed by issuer `iss`: its own, or one it trusts (matched by
    /// the key part of the name, `<prefix>:<public key hex>`).
    pub fn accepts(&self, iss: &str) -> bool {
        if !self.issuer.is_empty() && self.issuer == iss {
            return true;
        }
        let Some(key) = multistream_proto::jwt::issuer_key_part(iss) else {
            return false;
        };
        !key.is_empty()
            && self
                .trusted
                .iter()
                .take(TRUSTED_ISSUERS_MAX)
                .any(|trusted| trusted.eq_ignore_ascii_case(key))
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
    /// Being drained: chosen only when no edge that is not can take the participant.
    pub draining: bool,
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
    let open: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| (c.reachable || c.node == *this) && c.load < c.capacity)
        .collect();
    // Edges being drained take newcomers only when nothing else can: teaching comes first.
    let usable: Vec<&Candidate> = if open.iter().any(|c| !c.draining) {
        open.into_iter().filter(|c| !c.draining).collect()
    } else {
        open
    };
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
            draining: false,
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
    fn origins_are_checked_and_normalised() {
        for (text, origin) in [
            (
                "https://North.Example.org:8443/",
                "https://north.example.org:8443",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("HTTP://[::1]:80", "http://[::1]:80"),
            ("https://edge", "https://edge"),
        ] {
            assert_eq!(parse_origin(text).as_deref(), Ok(origin), "{text}");
        }
        for bad in [
            "",
            "north.example.org",
            "ftp://north",
            "https://north/path",
            "https://north:0",
            "https://north:99999",
            "https://user@north",
            "https://north?x=1",
            "https://no rth",
            "https://north;script-src *",
            "https://[::1",
            "https://[nope]:80",
            "https://",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad:?}");
        }
        let long = format!("https://{}.org", "a".repeat(ORIGIN_CHARS_MAX));
        assert!(parse_origin(&long).is_err());
    }

    #[test]
    fn a_report_becomes_a_candidate_within_its_limits() {
        let mut networks = vec!["10.1.0.0/16".to_owned(), "not a network".to_owned()];
        networks.extend((0..100).map(|i| format!("10.2.{i}.0/24")));
        let report = EdgeReport {
            name: "North".into(),
            url: "https://north".into(),
            networks,
            load: 3,
            capacity: 10,
            ..EdgeReport::default()
        };
        let candidate = report.candidate(node("north"), true);
        assert_eq!(candidate.prefixes.len(), PREFIXES_PER_EDGE_MAX - 1);
        assert_eq!((candidate.load, candidate.capacity), (3, 10));
        // A report from an edge that predates the issuer field still reads.
        let old: EdgeReport =
            serde_json::from_str(r#"{"name":"n","url":"","networks":[],"load":0,"capacity":1}"#)
                .expect("reads");
        assert_eq!(old.issuer, "");
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

    #[test]
    fn a_draining_edge_takes_newcomers_only_when_no_other_can() {
        let this = node("central");
        let campus = "10.1.0.9".parse().expect("ip");
        let mut north = edge("north", &["10.1.0.0/16"], 0);
        north.draining = true;
        // Its own campus goes elsewhere while it drains, even to a farther edge.
        let edges = [edge("central", &[], 50), north.clone()];
        let decision = choose(&this, campus, &edges, &[(node("north"), ms(1))]);
        assert_eq!(decision.edge, node("central"));
        // The draining edge itself sends a newcomer to the one edge that is not draining.
        let mut central = edge("central", &[], 0);
        central.draining = true;
        let away = choose(
            &this,
            campus,
            &[central.clone(), edge("east", &[], 90)],
            &[],
        );
        assert_eq!(away.edge, node("east"));
        // Every edge draining: the rule applies among them as usual (teaching comes first).
        let all = choose(&this, campus, &[central, north], &[]);
        assert_eq!(all.edge, node("north"));
        assert_eq!(all.reason.as_str(), "campus");
    }

    #[test]
    fn an_edge_accepts_its_own_issuer_and_the_ones_it_trusts() {
        let report = EdgeReport {
            issuer: "multistream-node:aa11".into(),
            trusted: vec!["BB22".into()],
            ..EdgeReport::default()
        };
        assert!(report.accepts("multistream-node:aa11"));
        assert!(report.accepts("multistream-control:bb22"));
        assert!(!report.accepts("multistream-control:cc33"));
        assert!(!report.accepts("no key part"));
        assert!(!EdgeReport::default().accepts(""));
    }
}
