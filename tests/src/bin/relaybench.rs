//! `relaybench`: measures media relayed between edges. A chain of three edge processes
//! (0 — 1 — 2), a simulcast teacher on edge 0, one student on edge 0, `N` on edge 1 and one on
//! edge 2, all in this process; then a link cut and restored.
//!
//! Usage: `relaybench [--audience 1,10,100] [--seconds 10] [--rounds 5]`. Runs itself in a
//! network namespace of its own (`unshare --net`, so root or CAP_SYS_ADMIN). The node binary is
//! found beside this one (`cargo build --release --bins`) or at `MULTISTREAM_NODE_BIN`. Prints
//! Markdown tables.

use std::time::Duration;

use multistream_tests::relay_bench::{Row, measure, restore_times};

fn main() -> std::process::ExitCode {
    if let Some(outcome) = multistream_tests::netns::reexec_isolated() {
        return match outcome {
            Ok(status) if status.success() => std::process::ExitCode::SUCCESS,
            Ok(_) => std::process::ExitCode::FAILURE,
            Err(error) => usage(&error),
        };
    }
    let mut audience = vec![1usize, 10, 100];
    let mut seconds = 10u64;
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--audience" => match value
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<usize>, _>>()
            {
                Ok(list) if !list.is_empty() => audience = list,
                _ => {
                    return usage(&format!(
                        "--audience wants a list like 1,10,100, not {value:?}"
                    ));
                }
            },
            "--seconds" => match value.parse() {
                Ok(n) if n > 0 => seconds = n,
                _ => return usage(&format!("--seconds wants a positive number, not {value:?}")),
            },
            "--rounds" => match value.parse() {
                Ok(n) => rounds = n,
                _ => return usage(&format!("--rounds wants a number, not {value:?}")),
            },
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return usage(&format!("cannot start a runtime: {error}")),
    };
    println!("{}", Row::header());
    for n in audience {
        match runtime.block_on(measure(n, Duration::from_secs(seconds))) {
            Ok(row) => println!("{}", row.line()),
            Err(error) => {
                eprintln!("relaybench: {n} students: {error}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    if rounds > 0 {
        match runtime.block_on(restore_times(rounds)) {
            Ok(mut times) => {
                println!(
                    "\n| link 0 — 1 restored → next video frame | edge 1 (1 hop) | edge 2 (2 hops) |\n|---|---:|---:|"
                );
                for (round, (one, two)) in times.iter().enumerate() {
                    println!(
                        "| round {} | {:.0} ms | {:.0} ms |",
                        round + 1,
                        one.as_secs_f64() * 1000.0,
                        two.as_secs_f64() * 1000.0
                    );
                }
                times.sort();
                let (one, two) = times[times.len() / 2];
                println!(
                    "| median | {:.0} ms | {:.0} ms |",
                    one.as_secs_f64() * 1000.0,
                    two.as_secs_f64() * 1000.0
                );
            }
            Err(error) => {
                eprintln!("relaybench: restore: {error}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}

fn usage(problem: &str) -> std::process::ExitCode {
    eprintln!(
        "relaybench: {problem}\nusage: relaybench [--audience 1,10,100] [--seconds 10] [--rounds 5]"
    );
    std::process::ExitCode::from(2)
}
