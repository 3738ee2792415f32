//! A real `multistream-node` process on loopback, for system tests and the load generator.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Log lines kept per node: enough to explain a failure, bounded for long benchmark runs.
const LOG_LINES_KEPT: usize = 2_000;

/// Start-up lines queued for the parser.
const STARTUP_LINES_MAX: usize = 64;

fn recent(logs: &Mutex<VecDeque<String>>) -> Vec<String> {
    logs.lock()
        .map(|kept| kept.iter().cloned().collect())
        .unwrap_or_default()
}

/// An empty data directory for a test node, unique to this process.
/// An empty data directory for a node named `name` (removed first if it exists).
pub fn fresh_data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("multistream-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// How long a node may take to print its links.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Where the node binary is: `MULTISTREAM_NODE_BIN`, else beside the running test binary in the
/// cargo target directory.
pub fn node_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MULTISTREAM_NODE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut dir = exe
        .parent()
        .expect("the test binary is in a directory")
        .to_path_buf();
    // Test binaries live in target/<profile>/deps; binaries in target/<profile>.
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("multistream-node")
}

/// A running node. Killed on drop if still running.
pub struct NodeProcess {
    child: Option<Child>,
    pub http: SocketAddr,
    /// The node's UDP media socket.
    pub media: SocketAddr,
    pub base_url: String,
    pub teacher_link: String,
    pub student_link: String,
    pub data_dir: PathBuf,
    /// Whether dropping this keeps the data directory (a node stopped to be restarted).
    keep_data: bool,
    /// The latest stderr lines (logs), kept in the background so the node never blocks on a
    /// full pipe.
    logs: Arc<Mutex<VecDeque<String>>>,
}

impl NodeProcess {
    /// Starts a node on free loopback ports with a fresh data directory.
    pub fn start(name: &str) -> Result<Self, String> {
        Self::start_with(name, &[])
    }

    /// Starts a node with extra `run` flags.
    pub fn start_with(name: &str, extra: &[&str]) -> Result<Self, String> {
        let data_dir = fresh_data_dir(name);
        Self::spawn(data_dir, extra)
    }

    /// Starts a node serving HTTPS with a self-signed certificate made (by the node's own TLS
    /// module) in its data directory; returns the certificate's path for clients to trust.
    pub fn start_tls(name: &str) -> Result<(Self, PathBuf), String> {
        let data_dir = fresh_data_dir(name);
        multistream_node::tls::self_signed(&data_dir, &[]).map_err(|e| e.to_string())?;
        let cert = data_dir.join("tls/self-signed.crt");
        let key = data_dir.join("tls/self-signed.key");
        let (cert_arg, key_arg) = (cert.to_string_lossy(), key.to_string_lossy());
        let node = Self::spawn(
            data_dir.clone(),
            &["--tls-cert", &cert_arg, "--tls-key", &key_arg],
        )?;
        Ok((node, cert))
    }

    fn spawn(data_dir: PathBuf, extra: &[&str]) -> Result<Self, String> {
        let binary = node_binary();
        if !binary.exists() {
            return Err(format!(
                "{} does not exist; build it first with `cargo build -p multistream-node`",
                binary.display()
            ));
        }
        // `MULTISTREAM_NODE_CPU=1` pins the node to that CPU (with `taskset`), so a benchmark can
        // give the node and the load generator a core each.
        let mut command = match std::env::var("MULTISTREAM_NODE_CPU") {
            Ok(cpu) => {
                let mut command = Command::new("taskset");
                command.args(["-c", &cpu]).arg(&binary);
                command
            }
            Err(_) => Command::new(&binary),
        };
        let mut child = command
            .args([
                "run",
                "--http",
                "127.0.0.1:0",
                "--media",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data_dir)
            // One compile cache for every test node: the first start compiles the plugins.
            .arg("--plugin-cache")
            .arg(binary.with_file_name("plugin-cache"))
            .args(extra)
            .env(
                "MULTISTREAM_LOG",
                std::env::var("MULTISTREAM_LOG")
                    .unwrap_or_else(|_| "info,str0m=warn,dimpl=warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        // Start-up output is a dozen lines; the reader waits when the queue is full.
        let (lines_tx, lines_rx) = mpsc::sync_channel(STARTUP_LINES_MAX);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(mut kept) = kept.lock() else { break };
                if kept.len() == LOG_LINES_KEPT {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        let (mut base_url, mut teacher_link, mut student_link, mut media) =
            (None, None, None, None);
        let deadline = std::time::Instant::now() + START_DEADLINE;
        while student_link.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = lines_rx.recv_timeout(left).map_err(|_| {
                let _ = child.kill();
                let logs = recent(&logs);
                format!(
                    "the node did not print its links in time; its log:\n{}",
                    logs.join("\n")
                )
            })?;
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("media  udp ") {
                media = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            } else if let Some(url) = line.strip_prefix("http ") {
                base_url = Some(url.trim().to_owned());
            } else if let Some(link) = line.strip_prefix("teacher ") {
                teacher_link = Some(link.trim().to_owned());
            } else if let Some(link) = line.strip_prefix("students ") {
                student_link = Some(link.trim().to_owned());
            }
        }
        let base_url = base_url.ok_or("the node printed no http address")?;
        let http: SocketAddr = base_url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .parse()
            .map_err(|e| format!("bad address {base_url}: {e}"))?;
        // Keep draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines_rx {});
        Ok(Self {
            child: Some(child),
            http,
            base_url,
            teacher_link: teacher_link.ok_or("no teacher link")?,
            student_link: student_link.ok_or("no student link")?,
            media: media.ok_or("the node printed no media address")?,
            data_dir,
            keep_data: false,
            logs,
        })
    }

    /// Starts a node on an existing data directory (a restart), with extra `run` flags.
    pub fn start_in(data_dir: PathBuf, extra: &[&str]) -> Result<Self, String> {
        Self::spawn(data_dir, extra)
    }

    /// Kills the node with SIGKILL (a crash: no shutdown path runs) and returns its data
    /// directory, kept for a restart.
    pub fn kill_keeping_data(mut self) -> PathBuf {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.keep_data = true;
        self.data_dir.clone()
    }

    /// Stops the node with SIGTERM and returns whether it exited cleanly and its data
    /// directory, kept for a restart.
    pub fn stop_keeping_data(mut self) -> (bool, PathBuf) {
        self.keep_data = true;
        let dir = self.data_dir.clone();
        (self.stop_inner(), dir)
    }

    /// The latest lines the node logged.
    pub fn recent_logs(&self) -> Vec<String> {
        recent(&self.logs)
    }

    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Mints a token with the node's own CLI (same identity as the running node).
    pub fn token(&self, args: &[&str]) -> Result<String, String> {
        token_in(&self.data_dir, args)
    }

    pub async fn metrics(&self) -> Result<String, String> {
        let response = crate::http::request(self.http, "GET", "/metrics", &[], b"")
            .await
            .map_err(|e| e.to_string())?;
        Ok(response.body)
    }

    /// Polls `/metrics` until `series` satisfies `condition`, within `limit`.
    pub async fn wait_for_metric(
        &self,
        series: &str,
        limit: Duration,
        condition: impl Fn(f64) -> bool,
    ) -> Result<f64, String> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut interval = tokio::time::interval(Duration::from_millis(50));
        loop {
            interval.tick().await;
            let page = self.metrics().await?;
            let value = crate::http::metric(&page, series).unwrap_or(f64::NAN);
            if condition(value) {
                return Ok(value);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("{series} is {value} after {limit:?}"));
            }
        }
    }

    /// Sends SIGTERM (what Ctrl-C and service managers send) and waits up to ten seconds for
    /// the process to exit; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let (done_tx, done) = mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let _ = done_tx.send(child.wait().map(|s| s.success()).unwrap_or(false));
        });
        let clean = done.recv_timeout(STOP_DEADLINE).unwrap_or(false);
        if !clean {
            // What the node said last is the way to find out why.
            eprintln!(
                "the node in {} did not stop cleanly within {STOP_DEADLINE:?}; its last lines:\n{}",
                self.data_dir.display(),
                self.recent_logs().join("\n")
            );
        }
        clean
    }
}

/// How long a node may take to stop after SIGTERM. It finishes the durable write it is in, which
/// on a disk shared with many test nodes can take seconds.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Runs a `multistream-node` command that prints one line (`id`, `token`) on a data directory.
fn node_cli(command: &str, data_dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(node_binary())
        .arg(command)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The peer-plane id of the node whose data directory is `data_dir` (made on first use), as
/// `multistream-node id` prints it.
pub fn node_id(data_dir: &std::path::Path) -> Result<String, String> {
    node_cli("id", data_dir, &[])
}

/// Mints a token with the CLI of the node whose data directory is `data_dir`.
pub fn token_in(data_dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    node_cli("token", data_dir, args)
}

/// A personal token for `identity` (also its display name) in `session`, signed by the node
/// whose data directory is `data_dir`.
pub fn participant_token(
    data_dir: &std::path::Path,
    session: &str,
    identity: &str,
    role: multistream_proto::Role,
) -> Result<String, String> {
    token_in(
        data_dir,
        &[
            "--session",
            session,
            "--identity",
            identity,
            "--name",
            identity,
            "--role",
            role.as_str(),
        ],
    )
}

/// The token in a link's fragment (`#token=` or `#invite=`).
pub fn link_token(link: &str) -> &str {
    link.rsplit_once('=').map_or("", |(_, token)| token)
}
