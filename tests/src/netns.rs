//! Tests that cut the network between edges run in a network namespace of their own: the test
//! runs itself again under `unshare --net`, where only it and the nodes it starts live, and a
//! cut is a pair of policy-routing rules that blackhole one loopback address's traffic to
//! another (the edges bind their peer planes to distinct loopback addresses). Nothing outside
//! the namespace is touched, and the namespace ends with the test.

use std::process::Command;

/// Set in the re-run test's environment.
const INSIDE: &str = "MULTISTREAM_TEST_NETNS";

/// Rule preferences used for cuts start here (below the local table's, which is moved to
/// [`LOCAL_PREF`] so the cuts apply to loopback traffic).
const CUT_PREF_BASE: u32 = 10;
const LOCAL_PREF: u32 = 1_000;

/// In the test process as started: runs test `name` (its full path, `module::test`) again in a
/// fresh network namespace, waits for it and panics if it failed; returns false (the caller
/// returns at once). In the re-run: prepares the namespace and returns true (the caller runs
/// the test).
pub fn run_isolated(name: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        prepare();
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run `unshare --net` (util-linux) for a network namespace: {error}")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} failed in its network namespace ({}); a namespace needs root or CAP_SYS_ADMIN",
        output.status
    );
    false
}

/// For a program (a benchmark) rather than a test: in the process as started, runs the same
/// program with the same arguments in a fresh network namespace and returns its exit status;
/// in the re-run, prepares the namespace and returns `None` (the caller goes on).
pub fn reexec_isolated() -> Option<Result<std::process::ExitStatus, String>> {
    if std::env::var_os(INSIDE).is_some() {
        prepare();
        return None;
    }
    let run = || -> Result<std::process::ExitStatus, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        Command::new("unshare")
            .arg("--net")
            .arg("--")
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env(INSIDE, "1")
            .status()
            .map_err(|error| {
                format!("cannot run `unshare --net` (util-linux) for a network namespace: {error}")
            })
    };
    Some(run())
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|error| panic!("cannot run `ip` (iproute2): {error}"));
    assert!(status.success(), "`ip {}` failed", args.join(" "));
}

/// Loopback up, and the local table consulted after the cut rules.
fn prepare() {
    ip(&["link", "set", "lo", "up"]);
    ip(&[
        "rule",
        "add",
        "pref",
        &LOCAL_PREF.to_string(),
        "lookup",
        "local",
    ]);
    ip(&["rule", "del", "pref", "0"]);
}

/// A cut between two loopback addresses (both directions), numbered `slot` so several can
/// coexist.
pub struct Cut {
    slot: u32,
    a: String,
    b: String,
    active: bool,
}

impl Cut {
    pub fn new(slot: u32, a: &str, b: &str) -> Cut {
        Cut {
            slot,
            a: a.to_owned(),
            b: b.to_owned(),
            active: false,
        }
    }

    fn prefs(&self) -> [String; 2] {
        let base = CUT_PREF_BASE + self.slot * 2;
        [base.to_string(), (base + 1).to_string()]
    }

    /// Nothing passes between the two addresses from now on.
    pub fn cut(&mut self) {
        if self.active {
            return;
        }
        let [one, two] = self.prefs();
        ip(&[
            "rule",
            "add",
            "pref",
            &one,
            "from",
            &self.a,
            "to",
            &self.b,
            "blackhole",
        ]);
        ip(&[
            "rule",
            "add",
            "pref",
            &two,
            "from",
            &self.b,
            "to",
            &self.a,
            "blackhole",
        ]);
        self.active = true;
    }

    /// Traffic passes again.
    pub fn restore(&mut self) {
        if !self.active {
            return;
        }
        for pref in self.prefs() {
            ip(&["rule", "del", "pref", &pref]);
        }
        self.active = false;
    }
}
