//! Media relayed between real edge processes over the QUIC peer plane: a teacher publishes on
//! edge 0, students watch on edges 1 and 2 through str0m clients over UDP. Edge 0 sends one
//! copy of each track to each edge, whatever the number of its students; a cut link between
//! edges 0 and 1 is routed around through edge 2, and without that detour the students' video
//! freezes and comes back by itself when the link does.
//!
//! The test runs in a network namespace of its own ([`multistream_tests::netns`]), where a cut
//! is real: the kernel refuses every packet between the two edges' addresses, whatever path
//! QUIC tries.

use std::time::{Duration, Instant};

use multistream_proto::wire::ServerMessage;
use multistream_proto::{Role as ProtoRole, Source};
use multistream_tests::classroom::ClassClient;
use multistream_tests::client::{Client, Role};
use multistream_tests::cluster::Cluster;
use multistream_tests::http::{metric, request};
use multistream_tests::netns::{self, Cut};
use multistream_tests::node_process::NodeProcess;
use multistream_tests::udp;

const SESSION: &str = "relay-physics";

/// Publishes (WHIP) or watches (WHEP) on `node`.
async fn connect(node: &NodeProcess, token: &str, role: Role) -> udp::Running {
    let (socket, addr) = udp::bind().await.expect("binds on loopback");
    let now = Instant::now();
    let (mut client, sdp) = Client::new(now, now, addr, role);
    let endpoint = match role {
        Role::Publisher { .. } => format!("/whip/{SESSION}"),
        Role::Subscriber => format!("/whep/{SESSION}"),
    };
    let response = request(
        node.http,
        "POST",
        &endpoint,
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/sdp"),
        ],
        sdp.as_bytes(),
    )
    .await
    .expect("the node answers");
    assert_eq!(response.status, 201, "{endpoint}: {}", response.body);
    client
        .accept_answer(&response.body)
        .expect("the answer is valid SDP");
    udp::spawn(client, socket)
}

async fn watcher(cluster: &Cluster, edge: usize, node: &NodeProcess, name: &str) -> udp::Running {
    let token = cluster
        .token(edge, SESSION, name, ProtoRole::Student)
        .expect("a student token");
    connect(node, &token, Role::Subscriber).await
}

/// Waits until a watcher has seen `more` video frames beyond what it had; returns how long
/// that took.
async fn more_frames(watcher: &mut udp::Running, more: u64, limit: Duration) -> Option<Duration> {
    let base = watcher.now().video_frames;
    let started = Instant::now();
    watcher
        .wait_for(limit, |s| s.video_frames >= base + more)
        .await
        .then(|| started.elapsed())
}

fn watching(summary: &udp::Summary) -> bool {
    summary.video_frames > 15 && summary.audio_packets > 15
}

async fn figure(node: &NodeProcess, series: &str) -> f64 {
    let page = node.metrics().await.expect("metrics");
    metric(&page, series).unwrap_or(0.0)
}

#[test]
fn media_crosses_edges_once_per_edge_and_survives_a_cut_link() {
    if netns::run_isolated("relay::media_crosses_edges_once_per_edge_and_survives_a_cut_link") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(crossing_edges());
    }
}

async fn crossing_edges() {
    let cluster = Cluster::spread("relay", 3).expect("a cluster");
    let mut cut = Cut::new(0, cluster.peer_host(0), cluster.peer_host(1));
    let edge0 = cluster.start(0).expect("edge 0 starts");
    let edge1 = cluster.start(1).expect("edge 1 starts");
    let edge2 = cluster.start(2).expect("edge 2 starts");
    let link = |j: usize| format!("multistream_relay_link_up{{peer=\"{}\"}}", cluster.ids[j]);
    let limit = Duration::from_secs(15);
    for (node, others) in [(&edge0, [1, 2]), (&edge1, [0, 2]), (&edge2, [0, 1])] {
        for j in others {
            node.wait_for_metric(&link(j), limit, |v| v == 1.0)
                .await
                .expect("the relay links come up");
        }
    }

    let teacher = cluster
        .token(0, SESSION, "teacher", ProtoRole::Teacher)
        .expect("a teacher token");
    let mut publisher = connect(&edge0, &teacher, Role::Publisher { simulcast: true }).await;
    assert!(
        publisher.wait_for(limit, |s| s.connected).await,
        "the teacher publishes"
    );
    let mut at_home = watcher(&cluster, 0, &edge0, "hana").await;
    let mut on1 = vec![
        watcher(&cluster, 1, &edge1, "ana").await,
        watcher(&cluster, 1, &edge1, "ben").await,
    ];
    let mut on2 = vec![
        watcher(&cluster, 2, &edge2, "cleo").await,
        watcher(&cluster, 2, &edge2, "dev").await,
        watcher(&cluster, 2, &edge2, "eli").await,
    ];
    for w in std::iter::once(&mut at_home)
        .chain(on1.iter_mut())
        .chain(on2.iter_mut())
    {
        assert!(
            w.wait_for(limit, watching).await,
            "every student receives audio and video: {:?}",
            w.now()
        );
        assert_eq!(
            w.now().first_frame_keyframe,
            Some(true),
            "decoding starts on a keyframe"
        );
    }

    // A student's class page on edge 1 shows the teacher, who is on edge 0, as live.
    let ana = cluster
        .token(1, SESSION, "ana", ProtoRole::Student)
        .expect("a student token");
    let mut class = ClassClient::connect(edge1.http, SESSION, &ana, None)
        .await
        .expect("the classroom opens on edge 1");
    class
        .wait_for(|m| match m {
            ServerMessage::Roster { participants } => participants.iter().any(|p| {
                p.id.as_str() == "teacher"
                    && p.name == "teacher"
                    && p.role == ProtoRole::Teacher
                    && p.live.contains(&Source::Camera)
            }),
            _ => false,
        })
        .await
        .expect("edge 1's roster shows the teacher live");
    class.leave().await;

    // One copy per edge: audio and video to each of the two edges, however many students each
    // has.
    edge0
        .wait_for_metric("multistream_relay_exports", limit, |v| v == 4.0)
        .await
        .expect("edge 0 exports two tracks to each of two edges");
    for node in [&edge1, &edge2] {
        assert_eq!(figure(node, "multistream_relay_imports").await, 2.0);
    }
    let sent_to = |j: usize| {
        format!(
            "multistream_relay_datagrams_sent_total{{peer=\"{}\"}}",
            cluster.ids[j]
        )
    };
    let received = "multistream_rtp_packets_total{direction=\"in\"}";
    let window = |page: &str| {
        (
            metric(page, received).unwrap_or(0.0),
            metric(page, &sent_to(1)).unwrap_or(0.0),
            metric(page, &sent_to(2)).unwrap_or(0.0),
        )
    };
    let before = window(&edge0.metrics().await.expect("metrics"));
    more_frames(&mut on1[0], 30, limit)
        .await
        .expect("video keeps flowing");
    let after = window(&edge0.metrics().await.expect("metrics"));
    let (published, to_1, to_2) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    println!(
        "edge 0 over one window: {published} packets in from the teacher, {to_1} datagrams to edge 1 (2 students), {to_2} to edge 2 (3 students)"
    );
    assert!(to_1 > 0.0 && to_2 > 0.0, "both edges are sent media");
    assert!(
        to_1 <= published && to_2 <= published,
        "never more than one copy of a packet per edge"
    );
    let forwarded = "multistream_rtp_packets_total{direction=\"forwarded\"}";
    assert!(
        figure(&edge2, forwarded).await
            > figure(&edge2, "multistream_relay_packets_delivered_total").await,
        "edge 2 fans the one copy out to its three students"
    );

    // Cut the link between edges 0 and 1: edge 1 routes around it, through edge 2.
    cut.cut();
    edge1
        .wait_for_metric(&link(0), limit, |v| v == 0.0)
        .await
        .expect("edge 1 sees its link to edge 0 go down");
    let rerouted = more_frames(&mut on1[0], 30, limit)
        .await
        .expect("edge 1's students get video again, through edge 2");
    println!("link 0–1 down: edge 1's video resumed through edge 2 within {rerouted:?}");
    assert!(
        more_frames(&mut at_home, 30, limit).await.is_some(),
        "the home edge's class is unaffected"
    );
    edge2
        .wait_for_metric("multistream_relay_exports", limit, |v| v >= 2.0)
        .await
        .expect("edge 2 passes the teacher's tracks on to edge 1");
    cut.restore();
    edge1
        .wait_for_metric(&link(0), limit, |v| v == 1.0)
        .await
        .expect("the link comes back");
    edge0
        .wait_for_metric("multistream_relay_exports", limit, |v| v == 4.0)
        .await
        .expect("edge 1 takes the direct route again");
    assert!(more_frames(&mut on1[1], 30, limit).await.is_some());

    // The last student on edge 2 leaving ends what edge 0 sends there.
    for w in on2 {
        w.stop().await;
    }
    edge0
        .wait_for_metric("multistream_relay_exports", limit, |v| v == 2.0)
        .await
        .expect("edge 0 stops sending to edge 2 when its students are gone");
    edge2
        .wait_for_metric("multistream_relay_imports", limit, |v| v == 0.0)
        .await
        .expect("edge 2 imports nothing");

    // Without edge 2 there is no detour: the video freezes, then resumes by itself.
    assert!(edge2.stop(), "edge 2 exits cleanly");
    edge1
        .wait_for_metric(&link(2), limit, |v| v == 0.0)
        .await
        .expect("edge 1 sees edge 2 gone");
    cut.cut();
    edge1
        .wait_for_metric(&link(0), limit, |v| v == 0.0)
        .await
        .expect("the link is down again");
    let frozen = on1[0].now().video_frames;
    assert!(
        more_frames(&mut at_home, 30, limit).await.is_some(),
        "the home edge's class is unaffected"
    );
    assert!(
        on1[0].now().video_frames <= frozen + 2,
        "with no route, edge 1's video is frozen"
    );
    let restored = Instant::now();
    cut.restore();
    on1[0]
        .wait_for(limit, |s| s.video_frames > frozen + 2)
        .await
        .then_some(())
        .expect("video resumes by itself when the link is back");
    println!(
        "link restored → next video frame on edge 1: {:?}",
        restored.elapsed()
    );
    assert!(
        figure(&edge1, "multistream_relay_resumes_total").await >= 1.0,
        "the resume is counted"
    );

    for w in on1 {
        w.stop().await;
    }
    at_home.stop().await;
    publisher.stop().await;
    assert!(edge1.stop(), "edge 1 exits cleanly");
    assert!(edge0.stop(), "edge 0 exits cleanly");
}
