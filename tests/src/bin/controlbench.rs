//! `controlbench`: measures the control plane (`multistream-control`) on SQLite and on
//! PostgreSQL, each on a fresh database, with the service and its clients in this process:
//! - sessions scheduled per second through `POST /api/v1/sessions` by 1 and by 50 clients at once
//!   (one teacher per client, lessons an hour apart, so no booking collides), with p50/p99/max
//!   latency per request;
//! - join tokens issued through `POST /api/v1/sessions/{id}/join-token` by 50 clients at once
//!   (students with their own API keys, then an administrator's key asking for 1,000 students in
//!   turn), with requests per second and p50/p99/max latency.
//!
//! Usage:
//! `controlbench [--sessions 2000] [--tokens 200 | --seconds S] [--backends sqlite,postgres]`
//! (`--tokens` is per client). PostgreSQL needs `MULTISTREAM_TEST_POSTGRES`: the URL of a role
//! that may create databases; without it, asking for PostgreSQL fails. Prints Markdown tables.

use multistream_tests::control::Backend;
use multistream_tests::control_bench::{
    SCHEDULING_CLIENTS, SESSIONS_MAX, SchedulingRow, TOKEN_CLIENTS, TokenLoad, TokenRow,
    check_backends, measure_scheduling, measure_tokens,
};

fn main() -> std::process::ExitCode {
    let mut sessions = 2000usize;
    let mut load = None;
    let mut backends = vec![Backend::Sqlite, Backend::Postgres];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--sessions" => match value.parse() {
                Ok(n) if (1..=SESSIONS_MAX).contains(&n) => sessions = n,
                _ => {
                    return usage(&format!(
                        "--sessions wants a number from 1 to {SESSIONS_MAX}, not {value:?}"
                    ));
                }
            },
            "--tokens" | "--seconds" if load.is_some() => {
                return usage("give --tokens or --seconds, not both");
            }
            "--tokens" => match value.parse() {
                Ok(n) if n > 0 => load = Some(TokenLoad::PerClient(n)),
                _ => return usage(&format!("--tokens wants a positive number, not {value:?}")),
            },
            "--seconds" => match value.parse() {
                Ok(n) if n > 0 => load = Some(TokenLoad::Seconds(n)),
                _ => return usage(&format!("--seconds wants a positive number, not {value:?}")),
            },
            "--backends" => {
                let parsed = value
                    .split(',')
                    .map(|name| match name.trim() {
                        "sqlite" => Ok(Backend::Sqlite),
                        "postgres" => Ok(Backend::Postgres),
                        _ => Err(()),
                    })
                    .collect::<Result<Vec<_>, _>>();
                match parsed {
                    Ok(list) if !list.is_empty() => backends = list,
                    _ => {
                        return usage(&format!(
                            "--backends wants sqlite, postgres or sqlite,postgres, not {value:?}"
                        ));
                    }
                }
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let load = load.unwrap_or(TokenLoad::PerClient(200));
    if let Err(problem) = check_backends(&backends) {
        eprintln!("controlbench: {problem}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return usage(&format!("cannot start a runtime: {error}")),
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "Every request opens its own TCP connection (`Connection: close`, no keep-alive). The \
         control plane and its clients share this process: one multi-thread tokio runtime, \
         {threads} worker threads.\n"
    );

    println!("Sessions scheduled (`POST /api/v1/sessions`), a fresh database per row:\n");
    println!("{}", SchedulingRow::header());
    for &backend in &backends {
        for clients in SCHEDULING_CLIENTS {
            match runtime.block_on(measure_scheduling(backend, clients, sessions)) {
                Ok(row) => println!("{}", row.line()),
                Err(error) => {
                    eprintln!(
                        "controlbench: scheduling on {backend:?}, {clients} clients: {error}"
                    );
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
    }

    let how_long = match load {
        TokenLoad::PerClient(n) => format!("{n} requests each"),
        TokenLoad::Seconds(s) => format!("for {s} s"),
    };
    println!(
        "\nJoin tokens issued (`POST /api/v1/sessions/{{id}}/join-token`) by {TOKEN_CLIENTS} clients \
         at once, {how_long}:\n"
    );
    println!("{}", TokenRow::header());
    for &backend in &backends {
        match runtime.block_on(measure_tokens(backend, load)) {
            Ok(rows) => {
                for row in rows {
                    println!("{}", row.line());
                }
            }
            Err(error) => {
                eprintln!("controlbench: join tokens on {backend:?}: {error}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}

fn usage(problem: &str) -> std::process::ExitCode {
    eprintln!(
        "controlbench: {problem}\nusage: controlbench [--sessions 2000] [--tokens 200 | --seconds S] [--backends sqlite,postgres]"
    );
    std::process::ExitCode::from(2)
}
