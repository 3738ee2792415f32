//! `loadgen`: measures a node's forwarding. One simulcast publisher (about 2.15 Mbps in three
//! layers plus Opus) and N subscribers, all in this process, against a real node process.
//!
//! Usage: `loadgen [--subscribers 1,10,50,100,200] [--seconds 20] [--repeat 3] [--busy-plugin N]`.
//! With `--busy-plugin N`, a plugin on the node spins N iterations per call, 20 calls a second,
//! throughout (the hostile test plugin, signed and loaded from the node's plugin directory; build
//! it with `cargo build --release --target wasm32-wasip2 -p multistream-plugin-hostile`); the
//! last column is the CPU the plugin thread got. The node binary is found
//! beside this one (build both with `cargo build --release --bins`) or at `MULTISTREAM_NODE_BIN`.
//! Prints a Markdown table.

use std::time::Duration;

use multistream_tests::load::{BusyPlugin, Row, measure_with};

fn main() -> std::process::ExitCode {
    let mut subscribers = vec![1usize, 10, 50, 100, 200];
    let mut seconds = 20u64;
    let mut repeat = 1usize;
    let mut busy = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--subscribers" => match value
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<usize>, _>>()
            {
                Ok(list) if !list.is_empty() => subscribers = list,
                _ => {
                    return usage(&format!(
                        "--subscribers wants a list like 1,10,50, not {value:?}"
                    ));
                }
            },
            "--repeat" => match value.parse() {
                Ok(n) if n > 0 => repeat = n,
                _ => return usage(&format!("--repeat wants a positive number, not {value:?}")),
            },
            "--busy-plugin" => match value.parse() {
                Ok(iterations) => busy = Some(BusyPlugin { iterations }),
                _ => {
                    return usage(&format!(
                        "--busy-plugin wants a number of iterations, not {value:?}"
                    ));
                }
            },
            "--seconds" => match value.parse() {
                Ok(n) if n > 0 => seconds = n,
                _ => return usage(&format!("--seconds wants a positive number, not {value:?}")),
            },
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    // One thread for all the clients: the other core is the node's.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return usage(&format!("cannot start a runtime: {error}")),
    };
    println!("{}", Row::header());
    for n in subscribers {
        // Each run starts a fresh node; with --repeat the median run (by CPU per packet) is
        // printed, the others go to stderr, since single runs vary by tens of percent here.
        let mut rows = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            match runtime.block_on(measure_with(n, Duration::from_secs(seconds), busy)) {
                Ok(row) => rows.push(row),
                Err(error) => {
                    eprintln!("loadgen: N = {n}: {error}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        rows.sort_by(|a, b| {
            a.cpu_seconds_per_million
                .total_cmp(&b.cpu_seconds_per_million)
        });
        let median = rows.len() / 2;
        for (index, row) in rows.iter().enumerate() {
            if index != median {
                eprintln!("loadgen: other run: {}", row.line());
            }
        }
        println!("{}", rows[median].line());
    }
    std::process::ExitCode::SUCCESS
}

fn usage(problem: &str) -> std::process::ExitCode {
    eprintln!(
        "loadgen: {problem}\nusage: loadgen [--subscribers 1,10,50,100,200] [--seconds 20] [--repeat 3] [--busy-plugin ITERATIONS]"
    );
    std::process::ExitCode::from(2)
}
