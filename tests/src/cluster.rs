//! A cluster of real edge processes on loopback: data directories, node ids, peer-plane ports,
//! and the flags that join them.

use std::path::PathBuf;

use multistream_node::log::{LogCore, NodeId};
use multistream_proto::Role;

use crate::node_process::{NodeProcess, fresh_data_dir, node_id, participant_token};

/// Edges with data directories, ids and a free UDP port each for the peer plane.
pub struct Cluster {
    pub dirs: Vec<PathBuf>,
    pub ids: Vec<String>,
    pub peer_addrs: Vec<String>,
}

impl Cluster {
    /// Makes `edges` data directories (and ids) named after `name`.
    pub fn new(name: &str, edges: usize) -> Result<Cluster, String> {
        Self::with_hosts(name, edges, |_| "127.0.0.1".to_owned())
    }

    /// Like [`Cluster::new`], with edge `i`'s peer plane on its own loopback address
    /// (`127.0.0.1{i}`, from 127.0.0.10), so the link between two edges can be cut
    /// ([`crate::netns::Cut`]).
    pub fn spread(name: &str, edges: usize) -> Result<Cluster, String> {
        Self::with_hosts(name, edges, |i| format!("127.0.0.{}", 10 + i))
    }

    /// The loopback address of edge `i`'s peer plane.
    pub fn peer_host(&self, i: usize) -> &str {
        self.peer_addrs[i]
            .rsplit_once(':')
            .map_or("", |(host, _)| host)
    }

    fn with_hosts(
        name: &str,
        edges: usize,
        host: impl Fn(usize) -> String,
    ) -> Result<Cluster, String> {
        let mut cluster = Cluster {
            dirs: Vec::new(),
            ids: Vec::new(),
            peer_addrs: Vec::new(),
        };
        for i in 0..edges {
            let dir = fresh_data_dir(&format!("{name}-{i}"));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            cluster.ids.push(node_id(&dir)?);
            cluster.dirs.push(dir);
            // A free port: bind, read, release (the edge binds it a moment later).
            let probe =
                std::net::UdpSocket::bind(format!("{}:0", host(i))).map_err(|e| e.to_string())?;
            cluster
                .peer_addrs
                .push(probe.local_addr().map_err(|e| e.to_string())?.to_string());
        }
        Ok(cluster)
    }

    /// Starts edge `i` listing the edges in `peers`.
    pub fn start_with_peers(&self, i: usize, peers: &[usize]) -> Result<NodeProcess, String> {
        self.start_with_peers_and(i, peers, &[])
    }

    /// Starts edge `i` listing every other edge, with extra `run` flags.
    pub fn start_with(&self, i: usize, extra: &[&str]) -> Result<NodeProcess, String> {
        let others: Vec<usize> = (0..self.ids.len()).filter(|&j| j != i).collect();
        self.start_with_peers_and(i, &others, extra)
    }

    fn start_with_peers_and(
        &self,
        i: usize,
        peers: &[usize],
        extra: &[&str],
    ) -> Result<NodeProcess, String> {
        let peers: Vec<(usize, String)> = peers
            .iter()
            .map(|&j| (j, self.peer_addrs[j].clone()))
            .collect();
        self.start_reaching(i, &peers, extra)
    }

    /// Starts edge `i` listing each edge in `peers` at the address given with it (a
    /// [`crate::link_proxy::LinkProxy`] in front of that edge, to cut the link), with extra
    /// `run` flags.
    pub fn start_reaching(
        &self,
        i: usize,
        peers: &[(usize, String)],
        extra: &[&str],
    ) -> Result<NodeProcess, String> {
        let mut args = vec!["--peer-addr".to_owned(), self.peer_addrs[i].clone()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        for (j, addr) in peers {
            args.push("--peer".into());
            args.push(format!("{}@{}", self.ids[*j], addr));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        NodeProcess::start_in(self.dirs[i].clone(), &args)
    }

    /// Starts edge `i` listing every other edge.
    pub fn start(&self, i: usize) -> Result<NodeProcess, String> {
        let others: Vec<usize> = (0..self.ids.len()).filter(|&j| j != i).collect();
        self.start_with_peers(i, &others)
    }

    /// Index of a session's home edge, as every edge computes it.
    pub fn home(&self, session: &str) -> usize {
        let ids: Vec<NodeId> = self.ids.iter().map(|id| NodeId(id.clone())).collect();
        let core = LogCore::new(ids[0].clone(), ids.clone(), 1, 1);
        let home = core.home_of(&session.parse().expect("a valid session id"));
        ids.iter().position(|id| *id == home).unwrap_or(0)
    }

    /// A session whose home is edge `i`.
    pub fn session_homed_on(&self, i: usize, prefix: &str) -> String {
        (0..10_000)
            .map(|n| format!("{prefix}-{n}"))
            .find(|s| self.home(s) == i)
            .expect("some session hashes to every edge")
    }

    /// Makes a cluster issuer key (with the node's `issuer-key` command) in edge 0's data
    /// directory; returns its path, for every edge's `--issuer-key`, and the public key the
    /// command printed.
    pub fn issuer_key(&self) -> Result<(String, String), String> {
        let key = self.dirs[0].join("cluster-issuer.key");
        let key = key.to_string_lossy().to_string();
        let made = std::process::Command::new(crate::node_process::node_binary())
            .args(["issuer-key", "--out", &key])
            .output()
            .map_err(|e| format!("the node binary does not run: {e}"))?;
        if !made.status.success() {
            return Err(String::from_utf8_lossy(&made.stderr).into_owned());
        }
        let public = String::from_utf8_lossy(&made.stdout).trim().to_owned();
        Ok((key, public))
    }

    /// A token for `session` signed by edge `i`.
    pub fn token(
        &self,
        i: usize,
        session: &str,
        identity: &str,
        role: Role,
    ) -> Result<String, String> {
        participant_token(&self.dirs[i], session, identity, role)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
