//! The classroom in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/e2e/classroom.mjs`) against a real node process. One teacher publishes camera and
//! microphone; two students join through the invitation link and must decode video and receive
//! audio; one leaves (its peer is freed on the node) and rejoins.
//!
//! Needs `node`, Chromium and `tests/e2e/node_modules` (the README's test command installs them).
//! A missing browser fails the test: it is never skipped.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use multistream_tests::node_process::NodeProcess;

/// The whole browser scenario's limit; the script has its own 90-second bound inside.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(150);

#[test]
fn a_teacher_and_two_students_in_chromium() {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {} (the README's test command does)",
        e2e.display()
    );
    let node = NodeProcess::start("browser").expect("the node starts");
    let mut script = Command::new("node")
        .arg("classroom.mjs")
        .current_dir(&e2e)
        .env("MULTISTREAM_URL", &node.base_url)
        .env("TEACHER_LINK", &node.teacher_link)
        .env("STUDENT_LINK", &node.student_link)
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
    assert!(node.stop(), "the node exits cleanly after the class");
}
