//! `logbench`: measures the session log. Prints a Markdown table of:
//! - durable appends per second straight into the store, one event per commit and
//!   group-committed;
//! - chat commands acknowledged per second through a node (one in flight; many in flight, which
//!   the node group-commits);
//! - chat latency from one classroom client's send to another's receipt (p50/p99), on one node
//!   and across two edges (both directions);
//! - the same from one Chromium page to another (`tests/e2e/chat_latency.mjs`), on one node and
//!   across two edges;
//! - the rate at which a follower edge catches up with a 100,000-event log;
//! - bytes on disk per 10,000 chat events.
//!
//! Usage: `logbench [--samples 500] [--catch-up 100000] [--browser-samples 200]` (0 browser
//! samples skips the browser figures). Build with
//! `cargo build --release --bins` (the node binary is found beside this one).

use std::time::{Duration, Instant};

use multistream_node::store::Store;
use multistream_proto::Role;
use multistream_proto::session::{Command, Event, EventBody, Seq, Term};
use multistream_tests::classroom::{Answer, ClassClient};
use multistream_tests::cluster::Cluster;
use multistream_tests::node_process::{NodeProcess, fresh_data_dir, participant_token};

fn main() -> std::process::ExitCode {
    let mut samples = 500usize;
    let mut catch_up = 100_000u64;
    let mut browser_samples = 200usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match (arg.as_str(), value.parse::<u64>()) {
            ("--samples", Ok(n)) if n > 10 => samples = n as usize,
            ("--catch-up", Ok(n)) if n > 0 => catch_up = n,
            ("--browser-samples", Ok(n)) if n == 0 || n >= 10 => browser_samples = n as usize,
            _ => {
                eprintln!(
                    "usage: logbench [--samples N>10] [--catch-up EVENTS] [--browser-samples 0|N>=10]"
                );
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("logbench: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("| measure | figure |\n|---|---:|");
    let result = (|| {
        store_appends()?;
        runtime.block_on(node_acks(samples))?;
        runtime.block_on(latency_one_node(samples))?;
        runtime.block_on(latency_two_edges(samples))?;
        if browser_samples > 0 {
            browser_latency(browser_samples)?;
        }
        runtime.block_on(follower_catch_up(catch_up))?;
        bytes_on_disk()
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("logbench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn chat_event(seq: u64, text: &str) -> Event {
    Event {
        seq: Seq(seq),
        term: Term(1),
        at_ms: 1_800_000_000_000 + seq,
        actor: "student-4711".parse().expect("valid id"),
        key: Some(format!("k-{seq}").parse().expect("valid key")),
        body: EventBody::Chat { text: text.into() },
    }
}

/// A typical chat line.
const LINE: &str = "Could you go over the second derivative example again?";

fn store_appends() -> Result<(), String> {
    let dir = fresh_data_dir("logbench-store");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let store = Store::open(&dir.join("store.redb")).map_err(|e| e.to_string())?;
    let session = "bench".parse().map_err(|e| format!("{e}"))?;
    let single = 2_000u64;
    let started = Instant::now();
    for seq in 1..=single {
        store
            .append(&session, None, &[chat_event(seq, LINE)], 0)
            .map_err(|e| e.to_string())?;
    }
    let rate = single as f64 / started.elapsed().as_secs_f64();
    println!("| store: durable appends/s, one event per commit | {rate:.0} |");
    let batch = 100u64;
    let batches = 200u64;
    let started = Instant::now();
    for b in 0..batches {
        let events: Vec<Event> = (0..batch)
            .map(|i| chat_event(single + 1 + b * batch + i, LINE))
            .collect();
        store
            .append(&session, None, &events, 0)
            .map_err(|e| e.to_string())?;
    }
    let rate = (batch * batches) as f64 / started.elapsed().as_secs_f64();
    println!("| store: durable appends/s, group-committed ({batch} per commit) | {rate:.0} |");
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn token(node: &NodeProcess, session: &str, identity: &str, role: Role) -> Result<String, String> {
    participant_token(&node.data_dir, session, identity, role)
}

async fn node_acks(samples: usize) -> Result<(), String> {
    // The per-connection rate limit is lifted: this measures the node, not the limit.
    let node = NodeProcess::start_with("logbench-acks", &["--commands-per-second", "100000"])?;
    let teacher = token(&node, "acks", "teacher-1", Role::Teacher)?;
    let mut client = ClassClient::connect(node.http, "acks", &teacher, None).await?;
    let started = Instant::now();
    for n in 0..samples {
        match client
            .command(Command::Chat {
                text: format!("{LINE} {n}"),
            })
            .await?
        {
            Answer::Ack(_) => {}
            Answer::Refused { message, .. } => return Err(message),
        }
    }
    let rate = samples as f64 / started.elapsed().as_secs_f64();
    println!("| node: chat commands acknowledged/s, one in flight | {rate:.0} |");
    // Many in flight: the node group-commits what arrives while a write is in progress.
    let in_flight = 32usize;
    let total = samples * 4;
    let started = Instant::now();
    let mut sent = 0usize;
    let mut answered = 0usize;
    while answered < total {
        while sent < total && sent - answered < in_flight {
            let message = multistream_proto::wire::ClientMessage::Command {
                key: format!("burst-{sent}").parse().map_err(|e: String| e)?,
                command: Command::Chat {
                    text: format!("{LINE} burst {sent}"),
                },
            };
            client
                .send_raw(&serde_json::to_string(&message).map_err(|e| e.to_string())?)
                .await?;
            sent += 1;
        }
        match client.next().await? {
            multistream_proto::wire::ServerMessage::Ack { .. } => answered += 1,
            multistream_proto::wire::ServerMessage::Refused { code, message, .. } => {
                if code == "rate_limited" {
                    return Err("the benchmark hit the per-connection rate limit".into());
                }
                return Err(message);
            }
            _ => {}
        }
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!(
        "| node: chat commands acknowledged/s, {in_flight} in flight (group commit) | {rate:.0} |"
    );
    node.stop();
    Ok(())
}

/// Sends `samples` chat lines from `from` and times their arrival at `to`; returns (p50, p99) ms.
async fn chat_latency(
    from: &mut ClassClient,
    to: &mut ClassClient,
    samples: usize,
    tag: &str,
) -> Result<(f64, f64), String> {
    let mut delays = Vec::with_capacity(samples);
    // Paced like a lively class chat, under the per-connection rate limit.
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    for n in 0..samples {
        pace.tick().await;
        let text = format!("{tag} {n}");
        let started = Instant::now();
        let message = multistream_proto::wire::ClientMessage::Command {
            key: format!("{tag}-{n}").parse().map_err(|e: String| e)?,
            command: Command::Chat { text: text.clone() },
        };
        from.send_raw(&serde_json::to_string(&message).map_err(|e| e.to_string())?)
            .await?;
        to.wait_for_event(|e| matches!(&e.body, EventBody::Chat { text: t } if *t == text))
            .await?;
        delays.push(started.elapsed().as_secs_f64() * 1000.0);
        to.events.clear();
    }
    delays.sort_by(f64::total_cmp);
    let pick = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    Ok((pick(0.5), pick(0.99)))
}

async fn latency_one_node(samples: usize) -> Result<(), String> {
    let node = NodeProcess::start("logbench-latency")?;
    let a = token(&node, "latency", "student-a", Role::Student)?;
    let b = token(&node, "latency", "student-b", Role::Student)?;
    let mut sender = ClassClient::connect(node.http, "latency", &a, None).await?;
    let mut receiver = ClassClient::connect(node.http, "latency", &b, None).await?;
    let (p50, p99) = chat_latency(&mut sender, &mut receiver, samples, "one").await?;
    println!("| chat latency, client to client on one node: p50 / p99 ms | {p50:.2} / {p99:.2} |");
    node.stop();
    Ok(())
}

async fn latency_two_edges(samples: usize) -> Result<(), String> {
    let cluster = Cluster::new("logbench-edges", 2)?;
    let session = cluster.session_homed_on(0, "latency");
    let home = cluster.start(0)?;
    let follower = cluster.start(1)?;
    let on_home = cluster.token(0, &session, "student-h", Role::Student)?;
    let on_follower = cluster.token(1, &session, "student-f", Role::Student)?;
    let mut at_home = ClassClient::connect(home.http, &session, &on_home, None).await?;
    let mut at_follower = ClassClient::connect(follower.http, &session, &on_follower, None).await?;
    let (p50, p99) = chat_latency(&mut at_follower, &mut at_home, samples, "up").await?;
    println!(
        "| chat latency across two edges, follower's client to home's: p50 / p99 ms | {p50:.2} / {p99:.2} |"
    );
    let (p50, p99) = chat_latency(&mut at_home, &mut at_follower, samples, "down").await?;
    println!(
        "| chat latency across two edges, home's client to follower's: p50 / p99 ms | {p50:.2} / {p99:.2} |"
    );
    home.stop();
    follower.stop();
    Ok(())
}

/// Runs `tests/e2e/chat_latency.mjs` from a teacher link to an invitation link; (p50, p99) ms.
fn browser_chat_latency(
    sender_link: &str,
    receiver_link: &str,
    samples: usize,
) -> Result<(f64, f64), String> {
    let e2e = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    let output = std::process::Command::new("node")
        .arg("chat_latency.mjs")
        .current_dir(&e2e)
        .env("SENDER_LINK", sender_link)
        .env("RECEIVER_LINK", receiver_link)
        .env("SAMPLES", samples.to_string())
        .output()
        .map_err(|e| format!("cannot run node (Node.js) for the browser figures: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the browser latency script failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let figures: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("the browser latency script printed {line:?}: {e}"))?;
    let get = |name: &str| {
        figures[name]
            .as_f64()
            .ok_or(format!("no {name} in {figures}"))
    };
    Ok((get("p50_ms")?, get("p99_ms")?))
}

fn browser_latency(samples: usize) -> Result<(), String> {
    let node = NodeProcess::start("logbench-browser")?;
    let (p50, p99) = browser_chat_latency(&node.teacher_link, &node.student_link, samples)?;
    println!(
        "| chat latency, browser to browser on one node: p50 / p99 ms | {p50:.2} / {p99:.2} |"
    );
    node.stop();
    let cluster = Cluster::new("logbench-browser-edges", 2)?;
    let (sender, receiver) = (cluster.start(0)?, cluster.start(1)?);
    let home = cluster.home("demo");
    let (p50, p99) = browser_chat_latency(&sender.teacher_link, &receiver.student_link, samples)?;
    println!(
        "| chat latency, browser to browser across two edges (class home: {}): p50 / p99 ms | {p50:.2} / {p99:.2} |",
        if home == 0 {
            "the sender's edge"
        } else {
            "the receiver's edge"
        }
    );
    sender.stop();
    receiver.stop();
    Ok(())
}

async fn follower_catch_up(events: u64) -> Result<(), String> {
    let cluster = Cluster::new("logbench-catchup", 2)?;
    let session = cluster.session_homed_on(0, "catchup");
    {
        // The home's log, written straight into its store before it starts.
        let store = Store::open(&cluster.dirs[0].join("store.redb")).map_err(|e| e.to_string())?;
        let id = session.parse().map_err(|e| format!("{e}"))?;
        let mut seq = 1;
        while seq <= events {
            let end = (seq + 1_000).min(events + 1);
            let batch: Vec<Event> = (seq..end).map(|s| chat_event(s, LINE)).collect();
            store
                .append(&id, None, &batch, 0)
                .map_err(|e| e.to_string())?;
            seq = end;
        }
    }
    let home = cluster.start(0)?;
    let follower = cluster.start(1)?;
    let token = cluster.token(1, &session, "student-f", Role::Student)?;
    let started = Instant::now();
    // A client on the follower makes it follow the session.
    let client = ClassClient::connect(follower.http, &session, &token, None).await?;
    follower
        .wait_for_metric(
            "multistream_log_events_total{origin=\"followed\"}",
            Duration::from_secs(600),
            |n| n >= events as f64,
        )
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "| follower catch-up of a {events}-event log: events/s ({elapsed:.2} s) | {:.0} |",
        events as f64 / elapsed
    );
    client.close().await;
    home.stop();
    follower.stop();
    Ok(())
}

fn bytes_on_disk() -> Result<(), String> {
    let dir = fresh_data_dir("logbench-bytes");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("store.redb");
    let session = "bytes".parse().map_err(|e| format!("{e}"))?;
    let empty = {
        let _store = Store::open(&path).map_err(|e| e.to_string())?;
        std::fs::metadata(&path).map_err(|e| e.to_string())?.len()
    };
    {
        let store = Store::open(&path).map_err(|e| e.to_string())?;
        for batch in 0..100u64 {
            let events: Vec<Event> = (1..=100)
                .map(|i| chat_event(batch * 100 + i, LINE))
                .collect();
            store
                .append(&session, None, &events, 0)
                .map_err(|e| e.to_string())?;
        }
    }
    let full = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
    let encoded: usize = (1..=10_000u64)
        .map(|s| chat_event(s, LINE).encode().len())
        .sum();
    println!(
        "| bytes on disk per 10,000 chat events (encoded: {encoded}) | {} |",
        full.saturating_sub(empty)
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
