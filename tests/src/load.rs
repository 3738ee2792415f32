//! The load generator: one simulcast publisher and N subscribers, all str0m clients in this
//! process, against a real node process over loopback UDP. It measures the node, not itself:
//! CPU time and memory are read from the node's `/proc` entries and packet counts from its
//! `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Client, Role, percentile};
use crate::http::{metric, request};
use crate::node_process::{NodeProcess, link_token};
use crate::udp;

/// Subscribers that may be setting up at once: below the node's own limit on connecting peers,
/// so the ramp never hits a 503.
const CONNECTING_AT_ONCE_MAX: usize = 48;

/// How long a whole ramp may take before the run is declared failed.
const RAMP_DEADLINE: Duration = Duration::from_secs(120);

/// Settle time after the last subscriber receives video, before measuring.
const SETTLE: Duration = Duration::from_secs(2);

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct Row {
    pub subscribers: usize,
    pub seconds: f64,
    pub forwarded_per_second: f64,
    /// Every datagram the node sent per second: forwarded media plus RTCP, retransmissions,
    /// bandwidth probes and padding.
    pub datagrams_out_per_second: f64,
    pub node_cpu_seconds: f64,
    pub cpu_seconds_per_million: f64,
    pub packets_per_cpu_second: f64,
    pub node_rss_bytes: u64,
    pub delay_p50_us: u32,
    pub delay_p99_us: u32,
    /// Packets the subscribers received over packets the node forwarded in the window.
    pub delivered_ratio: f64,
    /// With a busy plugin: CPU seconds the plugin thread used per second of the window.
    pub plugin_busy: Option<f64>,
}

impl Row {
    pub fn header() -> &'static str {
        "| subscribers | forwarded pkt/s | all datagrams out/s | node CPU s / M pkt | pkt per CPU-s | node RSS MiB | delay p50 ms | delay p99 ms | delivered | plugin CPU s/s |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    }

    pub fn line(&self) -> String {
        format!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.1} | {:.2} | {:.2} | {:.1}% | {} |",
            self.subscribers,
            self.forwarded_per_second,
            self.datagrams_out_per_second,
            self.cpu_seconds_per_million,
            self.packets_per_cpu_second,
            self.node_rss_bytes as f64 / (1024.0 * 1024.0),
            f64::from(self.delay_p50_us) / 1000.0,
            f64::from(self.delay_p99_us) / 1000.0,
            self.delivered_ratio * 100.0,
            self.plugin_busy
                .map_or_else(|| "–".to_owned(), |busy| format!("{busy:.2}")),
        )
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of the node's threads named `name` (`/proc/<pid>/task/*/stat`).
fn thread_cpu_seconds(pid: u32, name: &str) -> Result<f64, String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
    let mut total = 0.0;
    for task in tasks.flatten() {
        let path = task.path().join("stat");
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        let comm = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map(|(comm, _)| comm);
        if comm == Some(name) {
            total += stat_cpu_seconds(&path.to_string_lossy())?;
        }
    }
    Ok(total)
}

fn stat_cpu_seconds(path: &str) -> Result<f64, String> {
    let stat = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("bad stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or("bad stat field")
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let clock_ticks = 100.0;
    Ok((ticks(11)? + ticks(12)?) / clock_ticks)
}

/// Resident memory of a process in bytes, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| "no VmRSS".into())
}

/// The node's count of forwarded RTP packets and of all datagrams it sent.
async fn forwarded(node: &NodeProcess) -> Result<(f64, f64), String> {
    let page = node.metrics().await?;
    let read =
        |series: &str| metric(&page, series).ok_or_else(|| format!("no {series} in /metrics"));
    Ok((
        read("multistream_rtp_packets_total{direction=\"forwarded\"}")?,
        read("multistream_datagrams_total{direction=\"out\"}")?,
    ))
}

/// Publishes (WHIP) or watches (WHEP) on `endpoint` of `node` with a client whose delays are
/// stamped against `clock_base` and recorded from `window` on.
pub async fn start_client(
    node: &NodeProcess,
    endpoint: &str,
    token: &str,
    role: Role,
    clock_base: Instant,
    window: &Arc<AtomicU64>,
) -> Result<udp::Running, String> {
    let (socket, addr) = udp::bind().await.map_err(|e| e.to_string())?;
    let (mut client, sdp) = Client::new(Instant::now(), clock_base, addr, role);
    client.delay_window_start_us = window.clone();
    let bearer = format!("Bearer {token}");
    let response = request(
        node.http,
        "POST",
        endpoint,
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/sdp"),
        ],
        sdp.as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    if response.status != 201 {
        return Err(format!(
            "{endpoint} answered {}: {}",
            response.status, response.body
        ));
    }
    client.accept_answer(&response.body)?;
    Ok(udp::spawn(client, socket))
}

/// A plugin kept busy during the measurement: the hostile test plugin's `spin` action, sent
/// [`SPINS_PER_SECOND`] times a second with this many iterations each.
#[derive(Debug, Clone, Copy)]
pub struct BusyPlugin {
    pub iterations: u64,
}

/// Spin actions per second sent to a busy plugin (under the node's per-participant limit).
pub const SPINS_PER_SECOND: u64 = 20;

/// A node whose plugin directory holds the hostile test plugin, signed with a fresh key that
/// the node trusts.
fn node_with_hostile_plugin(name: &str) -> Result<NodeProcess, String> {
    let data = crate::node_process::fresh_data_dir(name);
    let plugins = data.join("plugins");
    std::fs::create_dir_all(&plugins).map_err(|e| e.to_string())?;
    let binary = crate::node_process::node_binary();
    let target = binary
        .parent()
        .and_then(|p| p.parent())
        .ok_or("the node binary is not in a cargo target directory")?;
    let wasm = target.join("wasm32-wasip2/release/multistream_plugin_hostile.wasm");
    if !wasm.exists() {
        return Err(format!(
            "{} is missing: cargo build --release --target wasm32-wasip2 -p multistream-plugin-hostile",
            wasm.display()
        ));
    }
    let run = |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new(&binary)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let key = data.join("signing.key");
    let public = run(&["plugin-key", "--out", &key.to_string_lossy()])?;
    run(&[
        "plugin-sign",
        "--key",
        &key.to_string_lossy(),
        "--out",
        &plugins.to_string_lossy(),
        &wasm.to_string_lossy(),
    ])?;
    NodeProcess::start_in(data, &["--plugin-key", &public])
}

/// Switches the hostile plugin on in the demo class and keeps it spinning until `stop`.
async fn keep_plugin_busy(
    node: &NodeProcess,
    busy: BusyPlugin,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    use multistream_proto::session::Command;
    let token = node.token(&[
        "--session",
        "demo",
        "--identity",
        "bench-teacher",
        "--name",
        "Bench",
        "--role",
        "teacher",
        "--lifetime",
        "2h",
    ])?;
    let mut teacher =
        crate::classroom::ClassClient::connect(node.http, "demo", &token, None).await?;
    match teacher
        .command(Command::EnablePlugin {
            plugin: "hostile".into(),
        })
        .await?
    {
        crate::classroom::Answer::Ack(_) => {}
        refused => return Err(format!("enabling the busy plugin: {refused:?}")),
    }
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1_000 / SPINS_PER_SECOND));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let spin = Command::PluginAction {
                plugin: "hostile".into(),
                action: "spin".into(),
                payload: serde_json::json!({ "iterations": busy.iterations }),
            };
            if teacher.command(spin).await.is_err() {
                return;
            }
        }
    }))
}

/// Runs one configuration against a fresh node and measures it over `window`.
pub async fn measure(subscribers: usize, window: Duration) -> Result<Row, String> {
    measure_with(subscribers, window, None).await
}

/// [`measure`], optionally with a plugin kept busy on the node all the while.
pub async fn measure_with(
    subscribers: usize,
    window: Duration,
    busy: Option<BusyPlugin>,
) -> Result<Row, String> {
    let node = match busy {
        Some(_) => node_with_hostile_plugin(&format!("load-busy-{subscribers}"))?,
        None => NodeProcess::start(&format!("load-{subscribers}"))?,
    };
    let pid = node.pid().ok_or("the node is not running")?;
    let teacher = link_token(&node.teacher_link).to_owned();
    let viewer = node.token(&[
        "--session",
        "demo",
        "--identity",
        "viewer",
        "--name",
        "Viewer",
        "--lifetime",
        "2h",
    ])?;
    let clock_base = Instant::now();
    let delay_window = Arc::new(AtomicU64::new(u64::MAX));
    let mut publisher = start_client(
        &node,
        "/whip/demo",
        &teacher,
        Role::Publisher { simulcast: true },
        clock_base,
        &delay_window,
    )
    .await?;
    if !publisher
        .wait_for(Duration::from_secs(10), |s| s.connected)
        .await
    {
        return Err("the publisher did not connect".into());
    }
    let ramp_end = tokio::time::Instant::now() + RAMP_DEADLINE;
    let mut watchers: Vec<udp::Running> = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        // Keep the number of subscribers in setup bounded.
        while watchers.iter().filter(|w| !w.now().connected).count() >= CONNECTING_AT_ONCE_MAX {
            let pending = watchers
                .iter_mut()
                .find(|w| !w.now().connected)
                .ok_or("no pending watcher")?;
            if !pending
                .wait_for(ramp_end - tokio::time::Instant::now(), |s| s.connected)
                .await
            {
                return Err("subscribers did not connect in time".into());
            }
        }
        watchers.push(
            start_client(
                &node,
                "/whep/demo",
                &viewer,
                Role::Subscriber,
                clock_base,
                &delay_window,
            )
            .await?,
        );
    }
    for watcher in &mut watchers {
        let left = ramp_end.saturating_duration_since(tokio::time::Instant::now());
        if !watcher.wait_for(left, |s| s.video_frames > 0).await {
            return Err(format!(
                "a subscriber received no video: {:?}",
                watcher.now()
            ));
        }
    }
    let stop_spinning = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinner = match busy {
        Some(busy) => Some(keep_plugin_busy(&node, busy, Arc::clone(&stop_spinning)).await?),
        None => None,
    };
    // Let rates, estimates and layers settle so the window measures the steady state.
    tokio::time::sleep(SETTLE).await;

    let received = |watchers: &[udp::Running]| -> u64 {
        watchers
            .iter()
            .map(|w| {
                let s = w.now();
                s.video_packets + s.audio_packets
            })
            .sum()
    };
    let started = Instant::now();
    delay_window.store(
        started.duration_since(clock_base).as_micros() as u64,
        Ordering::Relaxed,
    );
    let (cpu_before, forwarded_before, received_before) = (
        cpu_seconds(pid)?,
        forwarded(&node).await?,
        received(&watchers),
    );
    let plugin_before = thread_cpu_seconds(pid, "plugins")?;
    // The measurement window itself: a fixed span of steady forwarding.
    tokio::time::sleep(window).await;
    let (cpu_after, forwarded_after, received_after) = (
        cpu_seconds(pid)?,
        forwarded(&node).await?,
        received(&watchers),
    );
    let plugin_after = thread_cpu_seconds(pid, "plugins")?;
    let elapsed = started.elapsed().as_secs_f64();
    let rss = rss_bytes(pid)?;
    stop_spinning.store(true, Ordering::Relaxed);
    if let Some(spinner) = spinner {
        spinner.abort();
    }
    delay_window.store(u64::MAX, Ordering::Relaxed);

    let mut delays: Vec<u32> = Vec::new();
    for watcher in watchers {
        delays.extend(watcher.stop().await.delays_us);
    }
    publisher.stop().await;
    node.stop();

    let forwarded_count = forwarded_after.0 - forwarded_before.0;
    let datagrams_out = forwarded_after.1 - forwarded_before.1;
    let cpu = cpu_after - cpu_before;
    Ok(Row {
        subscribers,
        seconds: elapsed,
        forwarded_per_second: forwarded_count / elapsed,
        datagrams_out_per_second: datagrams_out / elapsed,
        node_cpu_seconds: cpu,
        cpu_seconds_per_million: if forwarded_count > 0.0 {
            cpu / forwarded_count * 1e6
        } else {
            f64::NAN
        },
        packets_per_cpu_second: if cpu > 0.0 {
            forwarded_count / cpu
        } else {
            f64::NAN
        },
        node_rss_bytes: rss,
        delay_p50_us: percentile(&mut delays, 50),
        delay_p99_us: percentile(&mut delays, 99),
        delivered_ratio: if forwarded_count > 0.0 {
            (received_after - received_before) as f64 / forwarded_count
        } else {
            0.0
        },
        plugin_busy: busy.map(|_| (plugin_after - plugin_before) / elapsed),
    })
}
