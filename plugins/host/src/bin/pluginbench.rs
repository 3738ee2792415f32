//! `pluginbench`: measures the plugin host with the polls and hostile components. Prints a
//! Markdown table: compile time, instantiate time (p50/p99), call time on a warm instance
//! (p50/p99) for an action and for an event, and the time from a runaway call to its
//! containment (p50/p99).
//!
//! Usage: `pluginbench [--iterations 1000]`, after
//! `cargo build --release --bins` and
//! `cargo build --release --target wasm32-wasip2 -p multistream-plugin-polls -p multistream-plugin-hostile`
//! (the components are found in the same cargo target directory).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use multistream_plugin_host::{Action, Effect, Event, Limits, Participant, Role, Runtime};

fn component(name: &str) -> Result<Vec<u8>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/pluginbench → target/
    let target = exe
        .ancestors()
        .nth(2)
        .ok_or("the benchmark is not inside a cargo target directory")?;
    let path: PathBuf = target
        .join("wasm32-wasip2/release")
        .join(format!("multistream_plugin_{name}.wasm"));
    std::fs::read(&path).map_err(|e| {
        format!(
            "{}: {e}; build it with `cargo build --release --target wasm32-wasip2 -p multistream-plugin-{name}`",
            path.display()
        )
    })
}

fn quantiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (
        pick(0.5).as_secs_f64() * 1e6,
        pick(0.99).as_secs_f64() * 1e6,
    )
}

fn person(id: &str, role: Role) -> Participant {
    Participant {
        id: id.into(),
        name: id.into(),
        role,
    }
}

fn main() -> std::process::ExitCode {
    let mut iterations = 1_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--iterations", Some(n)) if n >= 10 => iterations = n,
            _ => {
                eprintln!("usage: pluginbench [--iterations N>=10]");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    match run(iterations) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pluginbench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(iterations: usize) -> Result<(), String> {
    let limits = Limits::default();
    let runtime = Runtime::new(limits, None).map_err(|e| e.to_string())?;
    let polls_wasm = component("polls")?;
    let hostile_wasm = component("hostile")?;
    println!("| measure | figure |\n|---|---:|");

    let started = Instant::now();
    let polls = runtime.load(&polls_wasm).map_err(|e| e.to_string())?;
    println!(
        "| compile and load the polls component ({} KiB) | {:.1} ms |",
        polls_wasm.len() / 1024,
        started.elapsed().as_secs_f64() * 1e3
    );

    let mut times = Vec::with_capacity(iterations);
    for n in 0..iterations {
        let started = Instant::now();
        let instance = runtime
            .instantiate(&polls, "bench", n as u64)
            .map_err(|e| e.to_string())?;
        times.push(started.elapsed());
        drop(instance);
    }
    let (p50, p99) = quantiles(times);
    println!("| instantiate a plugin (pooling allocator): p50 / p99 µs | {p50:.1} / {p99:.1} |");

    // A warm polls instance with one open poll.
    let mut warm = runtime
        .instantiate(&polls, "bench", 0)
        .map_err(|e| e.to_string())?;
    let teacher = person("t-1", Role::Teacher);
    let mut seq = 0;
    let mut record = |warm: &mut multistream_plugin_host::Instance,
                      actor: &Participant,
                      effects: Vec<Effect>|
     -> Result<(), String> {
        for effect in effects {
            if let Effect::Emit(body) = effect {
                seq += 1;
                let event = Event {
                    seq,
                    at_ms: 1_800_000_000_000 + seq,
                    actor: actor.clone(),
                    kind: "plugin".into(),
                    plugin: "polls".into(),
                    body,
                };
                warm.on_event(&event).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    };
    let act = |name: &str, payload: &str, actor: &Participant| Action {
        actor: actor.clone(),
        at_ms: 1_800_000_000_000,
        name: name.into(),
        payload: payload.into(),
    };
    let created = warm
        .on_action(&act(
            "create",
            r#"{"question":"Which?","options":["a","b","c"]}"#,
            &teacher,
        ))
        .map_err(|e| e.to_string())?;
    record(&mut warm, &teacher, created)?;
    let opened = warm
        .on_action(&act("open", r#"{"poll":1}"#, &teacher))
        .map_err(|e| e.to_string())?;
    record(&mut warm, &teacher, opened)?;

    let mut action_times = Vec::with_capacity(iterations);
    let mut event_times = Vec::with_capacity(iterations);
    for n in 0..iterations {
        let student = person(&format!("s-{}", n % 30), Role::Student);
        let payload = format!(r#"{{"poll":1,"choices":[{}]}}"#, n % 3);
        let started = Instant::now();
        let effects = warm
            .on_action(&act("vote", &payload, &student))
            .map_err(|e| e.to_string())?;
        action_times.push(started.elapsed());
        for effect in effects {
            if let Effect::Emit(body) = effect {
                seq += 1;
                let event = Event {
                    seq,
                    at_ms: 1_800_000_000_000 + seq,
                    actor: student.clone(),
                    kind: "plugin".into(),
                    plugin: "polls".into(),
                    body,
                };
                let started = Instant::now();
                warm.on_event(&event).map_err(|e| e.to_string())?;
                event_times.push(started.elapsed());
            }
        }
    }
    let (p50, p99) = quantiles(action_times);
    println!("| polls: a vote action on a warm instance: p50 / p99 µs | {p50:.1} / {p99:.1} |");
    let (p50, p99) = quantiles(event_times);
    println!(
        "| polls: a vote event on a warm instance (folds it, renders 30+ panels): p50 / p99 µs | {p50:.1} / {p99:.1} |"
    );

    let hostile = runtime.load(&hostile_wasm).map_err(|e| e.to_string())?;
    let mut runaway = Vec::new();
    for n in 0..20 {
        let mut instance = runtime
            .instantiate(&hostile, "bench", n)
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let result = instance.on_action(&act("loop", "{}", &teacher));
        runaway.push(started.elapsed());
        if result.is_ok() {
            return Err("a looping plugin returned".into());
        }
    }
    let (p50, p99) = quantiles(runaway);
    println!(
        "| a runaway call stopped (deadline {} ms): p50 / p99 ms | {:.1} / {:.1} |",
        limits.call_deadline.as_millis(),
        p50 / 1e3,
        p99 / 1e3
    );
    Ok(())
}
