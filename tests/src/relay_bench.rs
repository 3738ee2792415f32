//! The cascade benchmark: a teacher publishing on edge 0 of a chain of three edge processes
//! (0 — 1 — 2: edge 2 knows only edge 1, so its media passes two relay hops) and students on
//! every edge, all str0m clients in this process sharing one clock, so the delay from the
//! publisher to each student is measured directly. It reports:
//! - the delay per number of relay hops (p50 / p99);
//! - edge 0's relay egress to edge 1 as edge 1's audience grows (it should stay flat);
//! - the time from a cut link's restore to the next video frame.
//!
//! Cutting a link needs the network namespace of [`crate::netns`]; the benchmark re-runs itself
//! in one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multistream_proto::Role as ProtoRole;

use crate::client::{Role, percentile};
use crate::cluster::Cluster;
use crate::http::metric;
use crate::load::start_client;
use crate::netns::Cut;
use crate::node_process::NodeProcess;
use crate::udp;

const SESSION: &str = "cascade";

/// Students connecting at once, at most (below a node's limit on peers in setup).
const CONNECTING_AT_ONCE_MAX: usize = 32;

/// How long anything may take to start flowing.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Time for bandwidth estimates to ramp up and students to reach their layers before a
/// measurement window.
const SETTLE: Duration = Duration::from_secs(8);

/// One configuration's figures.
#[derive(Debug, Clone)]
pub struct Row {
    /// Students on edge 1.
    pub audience: usize,
    /// Edge 0's relay egress to edge 1, bits per second (datagrams, QUIC overhead aside).
    pub egress_bps: f64,
    /// Edge 0's relay datagrams to edge 1 per second.
    pub egress_datagrams: f64,
    /// Packets the teacher sent edge 0 per second.
    pub published: f64,
    /// Delay from the teacher to a student on edge 0, 1 and 2 (0, 1 and 2 relay hops): p50 and
    /// p99 in microseconds.
    pub delay: [(u32, u32); 3],
}

impl Row {
    pub fn header() -> &'static str {
        "| students on edge 1 | edge 0 → 1 relay kbit/s | datagrams/s | teacher pkt/s in | delay 0 hops p50 / p99 ms | 1 hop | 2 hops |\n|---:|---:|---:|---:|---:|---:|---:|"
    }

    pub fn line(&self) -> String {
        let ms = |(p50, p99): (u32, u32)| {
            format!(
                "{:.2} / {:.2}",
                f64::from(p50) / 1000.0,
                f64::from(p99) / 1000.0
            )
        };
        format!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
            self.audience,
            self.egress_bps / 1000.0,
            self.egress_datagrams,
            self.published,
            ms(self.delay[0]),
            ms(self.delay[1]),
            ms(self.delay[2]),
        )
    }
}

/// The chain: edge 0 and 2 each know only edge 1.
pub struct Chain {
    pub cluster: Cluster,
    pub edges: Vec<NodeProcess>,
}

impl Chain {
    pub async fn start(name: &str) -> Result<Chain, String> {
        let cluster = Cluster::spread(name, 3)?;
        let edges = vec![
            cluster.start_with_peers(0, &[1])?,
            cluster.start_with_peers(1, &[0, 2])?,
            cluster.start_with_peers(2, &[1])?,
        ];
        let chain = Chain { cluster, edges };
        for (i, j) in [(0, 1), (1, 0), (1, 2), (2, 1)] {
            chain.edges[i]
                .wait_for_metric(&chain.link(j), START_LIMIT, |v| v == 1.0)
                .await?;
        }
        Ok(chain)
    }

    /// The `/metrics` series of a relay link to edge `j`.
    pub fn link(&self, j: usize) -> String {
        format!(
            "multistream_relay_link_up{{peer=\"{}\"}}",
            self.cluster.ids[j]
        )
    }

    fn token(&self, edge: usize, name: &str, role: ProtoRole) -> Result<String, String> {
        self.cluster.token(edge, SESSION, name, role)
    }

    async fn stop(self) {
        for edge in self.edges {
            edge.stop();
        }
    }
}

async fn students(
    chain: &Chain,
    edge: usize,
    count: usize,
    prefix: &str,
    clock_base: Instant,
    window: &Arc<AtomicU64>,
) -> Result<Vec<udp::Running>, String> {
    let token = chain.token(edge, prefix, ProtoRole::Student)?;
    let endpoint = format!("/whep/{SESSION}");
    let mut out: Vec<udp::Running> = Vec::with_capacity(count);
    for _ in 0..count {
        while out.iter().filter(|w| !w.now().connected).count() >= CONNECTING_AT_ONCE_MAX {
            let pending = out
                .iter_mut()
                .find(|w| !w.now().connected)
                .ok_or("no pending student")?;
            if !pending.wait_for(START_LIMIT, |s| s.connected).await {
                return Err("students did not connect in time".into());
            }
        }
        out.push(
            start_client(
                &chain.edges[edge],
                &endpoint,
                &token,
                Role::Subscriber,
                clock_base,
                window,
            )
            .await?,
        );
    }
    for student in &mut out {
        if !student.wait_for(START_LIMIT, |s| s.video_frames > 0).await {
            return Err(format!(
                "a student on edge {edge} got no video: {:?}",
                student.now()
            ));
        }
    }
    Ok(out)
}

/// The teacher, publishing simulcast on edge 0.
async fn teacher(
    chain: &Chain,
    clock_base: Instant,
    window: &Arc<AtomicU64>,
) -> Result<udp::Running, String> {
    let token = chain.token(0, "teacher", ProtoRole::Teacher)?;
    let mut publisher = start_client(
        &chain.edges[0],
        &format!("/whip/{SESSION}"),
        &token,
        Role::Publisher { simulcast: true },
        clock_base,
        window,
    )
    .await?;
    if !publisher.wait_for(START_LIMIT, |s| s.connected).await {
        return Err("the teacher did not connect".into());
    }
    Ok(publisher)
}

async fn egress(node: &NodeProcess, peer: &str) -> Result<(f64, f64, f64), String> {
    let page = node.metrics().await?;
    let read = |series: &str| metric(&page, series).ok_or_else(|| format!("no {series}"));
    Ok((
        read(&format!(
            "multistream_relay_bytes_sent_total{{peer=\"{peer}\"}}"
        ))?,
        read(&format!(
            "multistream_relay_datagrams_sent_total{{peer=\"{peer}\"}}"
        ))?,
        read("multistream_rtp_packets_total{direction=\"in\"}")?,
    ))
}

/// One run: a fresh chain, the teacher, one student on edges 0 and 2, `audience` on edge 1;
/// figures over `window` after the rates settle.
pub async fn measure(audience: usize, window: Duration) -> Result<Row, String> {
    let chain = Chain::start(&format!("cascade-{audience}")).await?;
    let clock_base = Instant::now();
    let delay_window = Arc::new(AtomicU64::new(u64::MAX));
    let publisher = teacher(&chain, clock_base, &delay_window).await?;
    let near = students(&chain, 0, 1, "near", clock_base, &delay_window).await?;
    let one_hop = students(&chain, 1, audience, "mid", clock_base, &delay_window).await?;
    let two_hops = students(&chain, 2, 1, "far", clock_base, &delay_window).await?;
    // Let bandwidth estimates and layers settle, so the window measures the steady state.
    tokio::time::sleep(SETTLE).await;

    let peer = chain.cluster.ids[1].clone();
    let started = Instant::now();
    delay_window.store(
        started.duration_since(clock_base).as_micros() as u64,
        Ordering::Relaxed,
    );
    let before = egress(&chain.edges[0], &peer).await?;
    // The measurement window: a fixed span of steady relaying.
    tokio::time::sleep(window).await;
    let after = egress(&chain.edges[0], &peer).await?;
    let elapsed = started.elapsed().as_secs_f64();
    delay_window.store(u64::MAX, Ordering::Relaxed);

    let mut delays: [Vec<u32>; 3] = Default::default();
    for (hops, group) in [near, one_hop, two_hops].into_iter().enumerate() {
        for student in group {
            delays[hops].extend(student.stop().await.delays_us);
        }
    }
    publisher.stop().await;
    chain.stop().await;
    let mut delay = [(0, 0); 3];
    for (hops, samples) in delays.iter_mut().enumerate() {
        if samples.is_empty() {
            return Err(format!("no delay samples {hops} hops away"));
        }
        delay[hops] = (percentile(samples, 50), percentile(samples, 99));
    }
    Ok(Row {
        audience,
        egress_bps: (after.0 - before.0) * 8.0 / elapsed,
        egress_datagrams: (after.1 - before.1) / elapsed,
        published: (after.2 - before.2) / elapsed,
        delay,
    })
}

/// Cuts the link between edges 0 and 1 of a chain until both sides see it down, restores it,
/// and times the next video frame of a student on edge 1 and one on edge 2; `rounds` times.
/// Returns the (edge 1, edge 2) times of each round.
pub async fn restore_times(rounds: usize) -> Result<Vec<(Duration, Duration)>, String> {
    let chain = Chain::start("cascade-restore").await?;
    let mut cut = Cut::new(0, chain.cluster.peer_host(0), chain.cluster.peer_host(1));
    let clock_base = Instant::now();
    let window = Arc::new(AtomicU64::new(u64::MAX));
    let publisher = teacher(&chain, clock_base, &window).await?;
    let mut mid = students(&chain, 1, 1, "mid", clock_base, &window).await?;
    let mut far = students(&chain, 2, 1, "far", clock_base, &window).await?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        cut.cut();
        chain.edges[1]
            .wait_for_metric(&chain.link(0), START_LIMIT, |v| v == 0.0)
            .await?;
        chain.edges[0]
            .wait_for_metric(&chain.link(1), START_LIMIT, |v| v == 0.0)
            .await?;
        let frozen = (mid[0].now().video_frames, far[0].now().video_frames);
        let restored = Instant::now();
        cut.restore();
        if !mid[0]
            .wait_for(START_LIMIT, |s| s.video_frames > frozen.0 + 1)
            .await
        {
            return Err("edge 1's video did not resume".into());
        }
        let one = restored.elapsed();
        if !far[0]
            .wait_for(START_LIMIT, |s| s.video_frames > frozen.1 + 1)
            .await
        {
            return Err("edge 2's video did not resume".into());
        }
        times.push((one, restored.elapsed()));
    }
    for student in mid.drain(..).chain(far.drain(..)) {
        student.stop().await;
    }
    publisher.stop().await;
    chain.stop().await;
    Ok(times)
}
