//! The session-log core under deterministic simulation: three edges, two classes, clients that
//! join and send commands, a network that drops, duplicates, delays and reorders, partitions,
//! and edges that crash and restart with only their durable state.
//!
//! `MULTISTREAM_SIM_SEEDS=N` sweeps N seeds (default 200); `MULTISTREAM_SIM_SEED=S` replays one.

use multistream_tests::sim::{SimConfig, run};

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name} must be a number, not {value:?}"),
    }
}

#[test]
fn seeded_sweep_keeps_every_acknowledged_event_once_and_converges() {
    let config = SimConfig::default();
    let seeds: Vec<u64> = match env_u64("MULTISTREAM_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("MULTISTREAM_SIM_SEEDS").unwrap_or(200)).collect(),
    };
    let mut failures = Vec::new();
    let (mut events, mut acknowledged, mut crashes, mut partitions) = (0, 0, 0, 0);
    for &seed in &seeds {
        match run(seed, &config) {
            Ok(report) => {
                events += report.events;
                acknowledged += report.acknowledged;
                crashes += report.crashes;
                partitions += report.partitions;
            }
            Err(problem) => {
                eprintln!(
                    "seed {seed} failed: {problem}\n  replay: MULTISTREAM_SIM_SEED={seed} cargo test -p multistream-tests --test system replication"
                );
                failures.push(seed);
            }
        }
    }
    eprintln!(
        "simulation: {} seeds, {events} events, {acknowledged} acknowledgements, {crashes} crashes, {partitions} partitions",
        seeds.len()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    assert!(
        acknowledged > 0 && crashes > 0 && partitions > 0,
        "the sweep exercised nothing"
    );
}

/// Longer classes: logs of hundreds of entries, so a follower that was down catches up over
/// many frames while the home keeps appending.
#[test]
fn long_logs_catch_up_over_many_frames() {
    let config = SimConfig {
        clients_per_session: 3,
        commands_per_client: 150,
        chaos: std::time::Duration::from_secs(60),
        ..SimConfig::default()
    };
    let seeds = env_u64("MULTISTREAM_SIM_LONG_SEEDS").unwrap_or(8);
    let mut failures = Vec::new();
    for seed in 1_000..1_000 + seeds {
        if let Err(problem) = run(seed, &config) {
            eprintln!("long-log seed {seed} failed: {problem}");
            failures.push(seed);
        }
    }
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}
