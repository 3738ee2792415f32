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
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
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
        let mut args = vec!["--peer-addr".to_owned(), self.peer_addrs[i].clone()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        for &j in peers {
            args.push("--peer".into());
            args.push(format!("{}@{}", self.ids[j], self.peer_addrs[j]));
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
