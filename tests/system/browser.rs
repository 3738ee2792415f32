//! The classroom in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/e2e/classroom.mjs`) against a real node process. One teacher publishes camera and
//! microphone; two students join through the invitation link and must decode video and receive
//! audio; one leaves (its peer is freed on the node) and rejoins. Then the class state through
//! the page's controls: the teacher switches to the whiteboard scene, draws, uploads two PNG
//! slides and turns to page 2, and writes in the chat, and every student sees it; a raised hand
//! reaches the teacher; a student's scene change is refused and the page shows why; a reloaded
//! page gets the class back from a snapshot; the teacher lets a student draw and removes
//! another. The scenario runs over plain HTTP on loopback and over HTTPS with the node's
//! self-signed certificate.
//!
//! Needs `node`, Chromium and `tests/e2e/node_modules` (the README's test command installs them).
//! A missing browser fails the test: it is never skipped.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use multistream_tests::node_process::NodeProcess;

/// The whole browser scenario's limit; the script has its own 90-second bound inside.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(150);

/// Runs `classroom.mjs` against a node; `ca` is the certificate to trust when it serves HTTPS.
fn run_scenario(node: &NodeProcess, ca: Option<&Path>) {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {} (the README's test command does)",
        e2e.display()
    );
    let mut command = Command::new("node");
    command
        .arg("classroom.mjs")
        .current_dir(&e2e)
        .env("MULTISTREAM_URL", &node.base_url)
        .env("TEACHER_LINK", &node.teacher_link)
        .env("STUDENT_LINK", &node.student_link);
    if let Some(ca) = ca {
        command.env("NODE_EXTRA_CA_CERTS", ca);
    }
    let mut script = command
        .spawn()
        .expect("`node` (Node.js) runs; install it to run the browser test");
    let (done_tx, done) = std::sync::mpsc::sync_channel(1);
    let pid = script.id();
    std::thread::spawn(move || {
        let _ = done_tx.send(script.wait());
    });
    let status = match done.recv_timeout(SCENARIO_DEADLINE) {
        Ok(status) => status.expect("the script's status"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the browser scenario did not finish within {SCENARIO_DEADLINE:?}");
        }
    };
    if !status.success() {
        let logs = node.recent_logs();
        panic!(
            "the browser scenario failed ({status}); node log:\n{}",
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
