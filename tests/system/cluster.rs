//! Three real edge processes on loopback, joined by the QUIC peer plane: a class whose home is
//! one edge, followed by another; clients on both; edges killed with SIGKILL and restarted.
//! Nothing acknowledged is lost, nothing is applied twice, and the logs converge.

use multistream_node::log::{LogCore, NodeId};
use multistream_proto::Role;
use multistream_proto::session::{Command, EventBody, Permission, Point, Scene, Seq, Stroke};
use multistream_proto::wire::ServerMessage;
use multistream_tests::classroom::{Answer, ClassClient};
use multistream_tests::cluster::Cluster;
use multistream_tests::node_process::NodeProcess;

const SESSION: &str = "chemistry";

fn acked(answer: Answer) -> Seq {
    match answer {
        Answer::Ack(seq) => seq,
        Answer::Refused { code, message } => panic!("refused ({code}): {message}"),
    }
}

async fn snapshot(node: &NodeProcess, token: &str) -> (Seq, serde_json::Value) {
    let mut client = ClassClient::connect(node.http, SESSION, token, None)
        .await
        .expect("connects");
    client
        .wait_for(|m| matches!(m, ServerMessage::Snapshot { .. }))
        .await
        .expect("a snapshot");
    let result = (client.seq, client.snapshot.clone().expect("state"));
    client.close().await;
    result
}

fn chat_texts(state: &serde_json::Value) -> Vec<String> {
    state["chat"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_class_spans_edges_and_survives_their_crashes() {
    let cluster = Cluster::new("cluster", 3).expect("data directories");
    let home = cluster.home(SESSION);
    let follower = (home + 1) % 3;
    let start = |i: usize| cluster.start(i).expect("the edge starts");
    let mut nodes: Vec<Option<NodeProcess>> = (0..3).map(|i| Some(start(i))).collect();
    let node = |nodes: &Vec<Option<NodeProcess>>, i: usize| -> std::net::SocketAddr {
        nodes[i].as_ref().expect("running").http
    };

    let teacher_token = cluster
        .token(home, SESSION, "teacher-1", Role::Teacher)
        .expect("a token");
    let student_token = cluster
        .token(follower, SESSION, "student-1", Role::Student)
        .expect("a token");
    let mut teacher = ClassClient::connect(node(&nodes, home), SESSION, &teacher_token, None)
        .await
        .expect("the teacher connects to the home edge");
    let mut student = ClassClient::connect(node(&nodes, follower), SESSION, &student_token, None)
        .await
        .expect("the student connects to another edge");

    // A chat line from the follower's student reaches the teacher on the home edge, and the
    // teacher's scene change reaches the student.
    let line = acked(
        student
            .command(Command::Chat {
                text: "hello from the other campus".into(),
            })
            .await
            .expect("answered"),
    );
    teacher
        .wait_for_event(|e| e.seq == line && matches!(e.body, EventBody::Chat { .. }))
        .await
        .expect("the teacher sees the student's line");
    acked(
        teacher
            .command(Command::SetScene {
                scene: Scene::WhiteboardAndCamera,
            })
            .await
            .expect("answered"),
    );
    student
        .wait_for_event(|e| {
            matches!(
                e.body,
                EventBody::SceneSet {
                    scene: Scene::WhiteboardAndCamera
                }
            )
        })
        .await
        .expect("the student follows the scene");
    // The teacher lets the student draw; the student's stroke reaches the teacher.
    acked(
        teacher
            .command(Command::Grant {
                participant: "student-1".parse().expect("valid"),
                permission: Permission::Draw,
            })
            .await
            .expect("answered"),
    );
    let stroke = Stroke {
        id: 1,
        color: "#0055aa".into(),
        width: 12,
        points: vec![
            Point(1_000, 1_000),
            Point(5_000, 2_500),
            Point(9_000, 8_000),
        ],
    };
    let drawn = acked(
        student
            .command(Command::Draw {
                stroke: stroke.clone(),
            })
            .await
            .expect("answered"),
    );
    let seen = teacher
        .wait_for_event(|e| e.seq == drawn)
        .await
        .expect("the teacher sees the stroke");
    assert_eq!(seen.body, EventBody::Drawn { stroke });

    // Slides uploaded on the home edge are served by the follower too (fetched over the peer
    // plane by their address, checked, and kept).
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRa slide from campus one";
    let bearer = format!("Bearer {teacher_token}");
    let uploaded = multistream_tests::http::request(
        node(&nodes, home),
        "POST",
        &format!("/api/sessions/{SESSION}/assets"),
        &[("Authorization", &bearer)],
        png,
    )
    .await
    .expect("uploads");
    assert_eq!(uploaded.status, 201, "{}", uploaded.body);
    let answer: serde_json::Value = serde_json::from_str(&uploaded.body).expect("json");
    let address = answer["asset"].as_str().expect("an address");
    let fetched = multistream_tests::http::request(
        node(&nodes, follower),
        "GET",
        &format!("/api/assets/{address}"),
        &[],
        b"",
    )
    .await
    .expect("answers");
    assert_eq!(fetched.status, 200, "the follower serves the home's upload");
    assert_eq!(fetched.header("content-type"), Some("image/png"));
    let page = nodes[follower]
        .as_ref()
        .expect("running")
        .metrics()
        .await
        .expect("metrics");
    assert_eq!(
        multistream_tests::http::metric(&page, "multistream_peer_assets_fetched_total"),
        Some(1.0),
        "fetched from the home edge"
    );
    // A busy class keeps one connection per direction: no reconnection for each frame.
    for i in [home, follower] {
        let page = nodes[i]
            .as_ref()
            .expect("running")
            .metrics()
            .await
            .expect("metrics");
        let opened =
            multistream_tests::http::metric(&page, "multistream_peer_connections_opened_total");
        assert!(
            opened.is_some_and(|n| n <= 2.0),
            "edge {i} opened {opened:?} peer connections"
        );
    }

    // SIGKILL the follower; restart it; the student resumes where it was.
    let resume = student.seq;
    drop(student);
    let dir = nodes[follower].take().expect("running").kill_keeping_data();
    assert_eq!(dir, cluster.dirs[follower]);
    acked(
        teacher
            .command(Command::Chat {
                text: "while the other campus was down".into(),
            })
            .await
            .expect("the home carries on"),
    );
    nodes[follower] = Some(start(follower));
    let mut student = ClassClient::connect(
        node(&nodes, follower),
        SESSION,
        &student_token,
        Some(resume),
    )
    .await
    .expect("the student reconnects");
    student
        .wait_for_event(|e| matches!(&e.body, EventBody::Chat { text } if text == "while the other campus was down"))
        .await
        .expect("the restarted follower catches up and the student resumes");

    // SIGKILL the home; the student's line waits on the follower and is delivered once the
    // home is back.
    drop(teacher);
    nodes[home].take().expect("running").kill_keeping_data();
    let key = "while-home-down".parse().expect("valid key");
    let text = "sent while the home edge was down";
    let forwards = "multistream_log_frames_total{kind=\"forward_sent\"}";
    let follower_node = nodes[follower].as_ref().expect("running");
    let page = follower_node.metrics().await.expect("metrics");
    let before = multistream_tests::http::metric(&page, forwards).unwrap_or(0.0);
    let send = student.command_with_key(key, Command::Chat { text: text.into() });
    let restart = async {
        // Restart the home only once the follower has tried to forward the line to it.
        follower_node
            .wait_for_metric(forwards, std::time::Duration::from_secs(10), |n| n > before)
            .await
            .expect("the follower tries to forward the line");
        start(home)
    };
    let (answer, restarted) = tokio::join!(send, restart);
    nodes[home] = Some(restarted);
    let seq = acked(answer.expect("answered once the home is back"));

    // Every edge that holds the class converges to the same log: a fresh client on each sees
    // the same position and the same chat, with the queued line exactly once.
    let mut states = Vec::new();
    for i in [home, follower] {
        let token = cluster
            .token(i, SESSION, &format!("observer-{i}"), Role::Guest)
            .expect("a token");
        // Poll (bounded) until the edge's log holds the line.
        let mut last = (Seq(0), serde_json::Value::Null);
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(100));
        for _ in 0..50 {
            poll.tick().await;
            last = snapshot(nodes[i].as_ref().expect("running"), &token).await;
            if last.0 >= seq {
                break;
            }
        }
        states.push(last);
    }
    let chats: Vec<Vec<String>> = states.iter().map(|(_, s)| chat_texts(s)).collect();
    assert_eq!(chats[0], chats[1], "the edges' chats differ");
    assert_eq!(
        chats[0].iter().filter(|t| *t == text).count(),
        1,
        "{:?}",
        chats[0]
    );
    assert!(chats[0].contains(&"hello from the other campus".to_owned()));
    for node in nodes.into_iter().flatten() {
        assert!(node.stop(), "an edge stops cleanly");
    }
}

#[tokio::test]
async fn an_edge_outside_the_cluster_is_refused() {
    let cluster = Cluster::new("intruder", 3).expect("data directories");
    let start =
        |i: usize, peers: &[usize]| cluster.start_with_peers(i, peers).expect("the edge starts");
    // Edges 0 and 1 form the cluster; edge 2 lists edge 0, which does not list it.
    let member = start(0, &[1]);
    let _other = start(1, &[0]);
    let intruder = start(2, &[0]);
    // A session the intruder believes edge 0 is home for, so it tries to follow it there.
    let pair = [
        NodeId(cluster.ids[2].clone()),
        NodeId(cluster.ids[0].clone()),
    ];
    let core = LogCore::new(pair[0].clone(), pair.to_vec(), 1, 1);
    let session = (0..200)
        .map(|n| format!("class-{n}"))
        .find(|s| core.home_of(&s.parse().expect("valid")) == pair[1])
        .expect("some session hashes to edge 0");
    let token = cluster
        .token(2, &session, "s-1", Role::Student)
        .expect("a token");
    let client = ClassClient::connect(intruder.http, &session, &token, None)
        .await
        .expect("the intruder's own client connects");
    let refused = member
        .wait_for_metric(
            "multistream_peer_connections_refused_total",
            std::time::Duration::from_secs(10),
            |n| n >= 1.0,
        )
        .await;
    assert!(refused.is_ok(), "edge 0 refuses the intruder: {refused:?}");
    let logs = member.recent_logs().join("\n");
    assert!(logs.contains("not in this cluster's peer list"), "{logs}");
    client.close().await;
}

#[tokio::test]
async fn bad_frames_from_a_peer_are_counted_and_harm_nothing() {
    use iroh::endpoint::presets;
    use iroh::{Endpoint, EndpointAddr, RelayMode, SecretKey};
    use multistream_node::peer::LOG_ALPN;

    // A peer the edge lists, played by this test with its own QUIC endpoint.
    let key = SecretKey::from_bytes(&[7u8; 32]);
    let cluster = Cluster::new("bad-frames", 1).expect("a data directory");
    let edge = NodeProcess::start_in(
        cluster.dirs[0].clone(),
        &[
            "--peer-addr",
            &cluster.peer_addrs[0],
            "--peer",
            &format!("{}@127.0.0.1:9", key.public()),
        ],
    )
    .expect("the edge starts");
    let endpoint = Endpoint::builder(presets::Minimal)
        .secret_key(key)
        .relay_mode(RelayMode::Disabled)
        .clear_address_lookup()
        .bind_addr("127.0.0.1:0")
        .expect("an address")
        .bind()
        .await
        .expect("binds");
    let edge_id = cluster.ids[0].parse().expect("an id");
    let address =
        EndpointAddr::new(edge_id).with_ip_addr(cluster.peer_addrs[0].parse().expect("addr"));
    let connection = endpoint
        .connect(address, LOG_ALPN)
        .await
        .expect("the edge accepts a listed peer");
    let oversized = vec![b'x'; 5 * 1024 * 1024];
    let frames: Vec<&[u8]> = vec![
        b"not json at all",
        br#"{"v":99,"message":{"type":"follow"}}"#,
        br#"{"v":1,"message":{"type":"no_such_message"}}"#,
        &oversized,
    ];
    for frame in frames {
        let mut stream = connection.open_uni().await.expect("a stream");
        // The edge may stop reading an oversized frame early; that is its right.
        let _ = stream.write_all(frame).await;
        let _ = stream.finish();
    }
    let malformed = edge
        .wait_for_metric(
            "multistream_peer_frames_total{direction=\"malformed\"}",
            std::time::Duration::from_secs(10),
            |n| n >= 4.0,
        )
        .await;
    assert!(
        malformed.is_ok(),
        "each bad frame is counted: {malformed:?}"
    );
    // Forged entries for a session this edge is home of (the test peer is not its home) are
    // ignored, and the class on the edge goes on.
    let pair = [
        NodeId(cluster.ids[0].clone()),
        NodeId(endpoint.id().to_string()),
    ];
    let core = LogCore::new(pair[0].clone(), pair.to_vec(), 1, 1);
    let session = (0..200)
        .map(|n| format!("forged-{n}"))
        .find(|s| core.home_of(&s.parse().expect("valid")) == pair[0])
        .expect("some session hashes to the edge");
    let session = session.as_str();
    let forged = format!(
        r#"{{"v":1,"message":{{"type":"entries","session":"{session}","term":9,"first":1,"prev_term":0,"head":1,"events":[]}}}}"#
    );
    let mut stream = connection.open_uni().await.expect("a stream");
    stream.write_all(forged.as_bytes()).await.expect("sent");
    stream.finish().expect("finished");
    let ignored = edge
        .wait_for_metric(
            "multistream_log_frames_total{kind=\"ignored\"}",
            std::time::Duration::from_secs(10),
            |n| n >= 1.0,
        )
        .await;
    assert!(ignored.is_ok(), "forged entries are ignored: {ignored:?}");
    let teacher = cluster
        .token(0, session, "t-1", Role::Teacher)
        .expect("a token");
    let mut client = ClassClient::connect(edge.http, session, &teacher, None)
        .await
        .expect("the edge still serves classes");
    let answer = client
        .command(Command::Chat {
            text: "all fine".into(),
        })
        .await
        .expect("answered");
    assert!(matches!(answer, Answer::Ack(_)), "{answer:?}");
    client.close().await;
    connection.close(0u32.into(), b"done");
    endpoint.close().await;
    assert!(edge.stop(), "the edge stops cleanly");
}

/// Edges that share a cluster issuer key accept each other's tokens, so a participant sent to
/// another edge needs no new one; an edge's own token is good on that edge only; a node that
/// just trusts the cluster's public key accepts the cluster's tokens too.
#[tokio::test]
async fn a_cluster_issuer_token_is_accepted_by_every_edge() {
    let cluster = Cluster::new("issuer", 2).expect("a cluster");
    let (key_arg, public) = cluster.issuer_key().expect("a cluster issuer key");
    assert_eq!(public.len(), 64, "{public}");

    let edge0 = cluster
        .start_with(
            0,
            &["--issuer-key", &key_arg, "--edge-name", "North campus"],
        )
        .expect("edge 0 starts");
    let edge1 = cluster
        .start_with(
            1,
            &["--issuer-key", &key_arg, "--edge-name", "South campus"],
        )
        .expect("edge 1 starts");
    let token = |extra: &[&str]| {
        let mut args = vec![
            "--session",
            SESSION,
            "--identity",
            "ada",
            "--name",
            "Ada",
            "--role",
            "student",
        ];
        args.extend_from_slice(extra);
        multistream_tests::node_process::token_in(&cluster.dirs[0], &args).expect("minted")
    };
    let cluster_token = token(&["--issuer-key", &key_arg]);
    for (edge, name) in [(&edge0, "North campus"), (&edge1, "South campus")] {
        let mut client = ClassClient::connect(edge.http, SESSION, &cluster_token, None)
            .await
            .unwrap_or_else(|e| panic!("the cluster's token is refused: {e}"));
        // The class records which edge Ada is connected through, by name.
        client
            .wait_for_event(
                |e| matches!(&e.body, EventBody::Joined { edge_name: Some(n), .. } if n == name),
            )
            .await
            .unwrap_or_else(|e| panic!("Ada's join through {name}: {e}"));
        client.close().await;
    }
    // Edge 0's own key: good on edge 0, refused with a reason elsewhere.
    let own_token = token(&[]);
    let client = ClassClient::connect(edge0.http, SESSION, &own_token, None)
        .await
        .expect("edge 0 accepts its own token");
    client.close().await;
    let refused = ClassClient::connect(edge1.http, SESSION, &own_token, None).await;
    let error = refused.err().expect("edge 1 refuses edge 0's own token");
    assert!(error.contains("does not trust"), "{error}");

    // A node outside the cluster that trusts the cluster's public key.
    let verifier =
        NodeProcess::start_with("issuer-verifier", &["--trust-issuer", &public]).expect("starts");
    let client = ClassClient::connect(verifier.http, SESSION, &cluster_token, None)
        .await
        .expect("a trusting node accepts the cluster's token");
    client.close().await;
    assert!(verifier.stop());
    assert!(edge1.stop());
    assert!(edge0.stop());
}

/// Each edge keeps a link to every other and knows its round-trip time, even with no class
/// spanning them; a dead peer shows as down, and up again when it is back.
#[tokio::test]
async fn edges_watch_their_links_and_round_trip_times() {
    let cluster = Cluster::new("links", 2).expect("a cluster");
    let edge0 = cluster.start(0).expect("edge 0 starts");
    let edge1 = cluster.start(1).expect("edge 1 starts");
    let up = format!("multistream_peer_link_up{{peer=\"{}\"}}", cluster.ids[1]);
    let rtt = format!(
        "multistream_peer_rtt_seconds{{peer=\"{}\"}}",
        cluster.ids[1]
    );
    let limit = std::time::Duration::from_secs(15);
    edge0
        .wait_for_metric(&up, limit, |v| v == 1.0)
        .await
        .expect("the link to edge 1 comes up");
    let measured = edge0
        .wait_for_metric(&rtt, limit, |v| v > 0.0)
        .await
        .expect("its round-trip time is known");
    assert!(measured < 0.5, "loopback round trip: {measured} s");
    println!(
        "edge 0 → edge 1 round trip on loopback: {:.3} ms",
        measured * 1000.0
    );

    let data = edge1.kill_keeping_data();
    edge0
        .wait_for_metric(&up, limit, |v| v == 0.0)
        .await
        .expect("a dead edge shows as down");
    let page = edge0.metrics().await.expect("metrics");
    assert!(
        multistream_tests::http::metric(&page, &rtt).is_none(),
        "no round-trip time for a link that is down"
    );
    let edge1 = NodeProcess::start_in(
        data,
        &[
            "--peer-addr",
            &cluster.peer_addrs[1],
            "--peer",
            &format!("{}@{}", cluster.ids[0], cluster.peer_addrs[0]),
        ],
    )
    .expect("edge 1 restarts");
    edge0
        .wait_for_metric(&up, limit, |v| v == 1.0)
        .await
        .expect("the link comes back by itself");
    assert!(edge1.stop());
    assert!(edge0.stop());
}
