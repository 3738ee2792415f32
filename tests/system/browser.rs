//! The classroom in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/e2e/classroom.mjs`) against a real node process. One teacher publishes camera and
//! microphone; two students join through the invitation link and must decode video and receive
//! audio; one leaves (its peer is freed on the node) and rejoins. Then the class state through
//! the page's controls: the teacher switches to the whiteboard scene, draws, uploads two PNG
//! slides and turns to page 2, and writes in the chat, and every student sees it; a raised hand
//! reaches the teacher; a student's scene change is refused and the page shows why; a reloaded
//! page gets the class back from a snapshot; the teacher lets a student draw and removes
//! another. The scenario runs over plain HTTP on loopback and over HTTPS with the node's
//! self-signed certificate. A second scenario (`tests/e2e/two_edges.mjs`) puts the teacher on one
//! edge of a two-edge cluster and two students on the other, and checks that the teacher's
//! camera and microphone (relayed between the edges, one copy for both) and the class state
//! reach across. A third (`tests/e2e/nearest_edge.mjs`)
//! follows a join that one edge places on another, then the page moving to the first edge when
//! the second is killed.
//!
//! Needs `node`, Chromium and `tests/e2e/node_modules` (the README's test command installs them).
//! A missing browser fails the test: it is never skipped.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use multistream_tests::cluster::Cluster;
use multistream_tests::node_process::NodeProcess;

/// The whole browser scenario's limit; the script has its own 90-second bound inside.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(150);

/// Runs `classroom.mjs` against a node; `ca` is the certificate to trust when it serves HTTPS.
fn run_scenario(node: &NodeProcess, ca: Option<&Path>) {
    let mut env = vec![
        ("MULTISTREAM_URL", node.base_url.clone()),
        ("TEACHER_LINK", node.teacher_link.clone()),
        ("STUDENT_LINK", node.student_link.clone()),
    ];
    if let Some(ca) = ca {
        env.push(("NODE_EXTRA_CA_CERTS", ca.display().to_string()));
    }
    run_script("classroom.mjs", &env, &[node]);
}

/// Runs the e2e script `script` (in `tests/e2e`) with `env`, within [`SCENARIO_DEADLINE`]; on
/// failure panics with the latest log lines of each of `nodes`.
fn run_script(script: &str, env: &[(&str, String)], nodes: &[&NodeProcess]) {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {} (the README's test command does)",
        e2e.display()
    );
    let mut command = Command::new("node");
    command.arg(script).current_dir(&e2e);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .expect("`node` (Node.js) runs; install it to run the browser test");
    let (done_tx, done) = std::sync::mpsc::sync_channel(1);
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = match done.recv_timeout(SCENARIO_DEADLINE) {
        Ok(status) => status.expect("the script's status"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the browser scenario {script} did not finish within {SCENARIO_DEADLINE:?}");
        }
    };
    if !status.success() {
        let logs: Vec<String> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                format!(
                    "node {i} ({}) log:\n{}",
                    node.base_url,
                    node.recent_logs().join("\n")
                )
            })
            .collect();
        panic!(
            "the browser scenario {script} failed ({status});\n{}",
            logs.join("\n")
        );
    }
}

#[test]
fn a_teacher_and_two_students_in_chromium() {
    let node = NodeProcess::start("browser").expect("the node starts");
    run_scenario(&node, None);
    assert!(node.stop(), "the node exits cleanly after the class");
}

/// The same class over HTTPS and secure WebSockets, as students on other machines use it, with
/// the node's own self-signed certificate.
#[test]
fn the_class_works_over_https() {
    let (node, cert) = NodeProcess::start_tls("browser-https").expect("the node starts with TLS");
    assert!(node.base_url.starts_with("https://"), "{}", node.base_url);
    run_scenario(&node, Some(&cert));
    assert!(node.stop(), "the node exits cleanly after the class");
}

/// One class across two edges (`tests/e2e/two_edges.mjs`): the teacher's page on edge 0, two
/// students' pages on edge 1 (each joining through edge 1's invitation, in its own browser
/// context; each link signed by its own edge). The teacher turns on camera and microphone, and
/// both students decode the video (frames keep coming) and receive the audio that edge 1 imports
/// once from edge 0 (checked in both edges' relay metrics, which drop to nothing when the
/// students leave). Scene, whiteboard, slides (the image fetched by edge 1 from edge 0 by its
/// address) and chat reach the students, and a student's chat reaches the teacher. The edges
/// are named, and each page shows its own edge and the edge beside every person.
#[test]
fn a_teacher_and_two_students_on_two_edges_in_chromium() {
    const NAMES: [&str; 2] = ["North campus", "South campus"];
    let cluster = Cluster::new("browser-edges", 2).expect("the cluster's data directories and ids");
    let edge0 = cluster
        .start_with(0, &["--edge-name", NAMES[0]])
        .expect("edge 0 starts");
    let edge1 = cluster
        .start_with(1, &["--edge-name", NAMES[1]])
        .expect("edge 1 starts");
    let env = [
        ("TEACHER_URL", edge0.base_url.clone()),
        ("TEACHER_LINK", edge0.teacher_link.clone()),
        ("STUDENT_URL", edge1.base_url.clone()),
        ("STUDENT_LINK", edge1.student_link.clone()),
        ("CLASS_HOME_EDGE", cluster.home("demo").to_string()),
        ("TEACHER_EDGE_NAME", NAMES[0].to_owned()),
        ("STUDENT_EDGE_NAME", NAMES[1].to_owned()),
    ];
    run_script("two_edges.mjs", &env, &[&edge0, &edge1]);
    assert!(edge1.stop(), "edge 1 exits cleanly after the class");
    assert!(edge0.stop(), "edge 0 exits cleanly after the class");
}

/// The feature plugins built into the node, through the page's own controls
/// (`tests/e2e/plugins.mjs`): the teacher switches Polls on under "Features", creates and opens
/// a poll; two students vote (one changes their vote) and the teacher's panel shows the exact
/// live counts; the results are shown and the students see the bars. Then Q&A: questions are
/// asked, upvoted, sorted by votes and marked answered, on every page. Every page stays in step
/// with the class log although the plugins' own events are hidden from it.
#[test]
fn polls_and_questions_in_chromium() {
    let node = NodeProcess::start("browser-plugins").expect("the node starts");
    let env = [
        ("MULTISTREAM_URL", node.base_url.clone()),
        ("TEACHER_LINK", node.teacher_link.clone()),
        ("STUDENT_LINK", node.student_link.clone()),
    ];
    run_script("plugins.mjs", &env, &[&node]);
    assert!(node.stop(), "the node exits cleanly after the class");
}

/// Placement and moving between edges in Chromium (`tests/e2e/nearest_edge.mjs`): two edges with
/// a cluster issuer; edge 1 serves the browser's own network (127.0.0.1/32), so a personal link
/// to edge 0 (as a control plane's join link is) and a join through edge 0's invitation are both
/// sent there; then edge 1 is killed and the page carries on through edge 0, the class's home,
/// with the same token and its place in the log.
#[test]
fn a_join_is_sent_to_its_campus_edge_and_moves_when_it_dies_in_chromium() {
    let cluster =
        Cluster::new("browser-nearest", 2).expect("the cluster's data directories and ids");
    let (key_arg, _) = cluster.issuer_key().expect("a cluster issuer key");
    let edge0 = cluster
        .start_with(0, &["--issuer-key", &key_arg, "--edge-name", "Central"])
        .expect("edge 0 starts");
    let edge1 = cluster
        .start_with(
            1,
            &[
                "--issuer-key",
                &key_arg,
                "--edge-name",
                "North campus",
                "--campus-network",
                "127.0.0.1/32",
            ],
        )
        .expect("edge 1 starts");
    // Each edge must know the other (its URL goes into the pages' policy) before the pages load.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    for edge in [&edge0, &edge1] {
        let listed = runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let answer =
                    multistream_tests::http::request(edge.http, "GET", "/api/edges", &[], b"")
                        .await
                        .map(|r| r.body)
                        .unwrap_or_default();
                let edges: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
                if edges["edges"]
                    .as_array()
                    .is_some_and(|list| list.len() == 2)
                {
                    return true;
                }
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        assert!(listed, "{} does not list both edges", edge.base_url);
    }
    let session = cluster.session_homed_on(0, "nearest");
    let invite = multistream_tests::node_process::token_in(
        &cluster.dirs[0],
        &[
            "--session",
            &session,
            "--identity",
            "teacher",
            "--name",
            "Invitation",
            "--role",
            "student",
            "--invite",
            "--issuer-key",
            &key_arg,
        ],
    )
    .expect("an invitation");
    // A personal link, as a control plane's join link is: an access token on the class's home.
    let personal = multistream_tests::node_process::token_in(
        &cluster.dirs[0],
        &[
            "--session",
            &session,
            "--identity",
            "s-linked",
            "--name",
            "Student Linked",
            "--role",
            "student",
            "--issuer-key",
            &key_arg,
        ],
    )
    .expect("a personal token");
    let env = [
        (
            "INVITE_LINK",
            format!("{}/s/{session}#invite={invite}", edge0.base_url),
        ),
        (
            "PERSONAL_LINK",
            format!("{}/s/{session}#token={personal}", edge0.base_url),
        ),
        ("EDGE0_URL", edge0.base_url.clone()),
        ("EDGE1_URL", edge1.base_url.clone()),
        ("EDGE1_PID", edge1.pid().expect("running").to_string()),
    ];
    run_script("nearest_edge.mjs", &env, &[&edge0, &edge1]);
    drop(edge1);
    assert!(edge0.stop(), "edge 0 exits cleanly after the class");
}
