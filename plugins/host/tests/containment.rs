//! Real plugin components under the host's limits: the polls plugin works; the hostile plugin's
//! loop, memory bomb, panic, flood, oversized answer, missing capability and garbage each fail
//! that call only, and the runtime goes on serving other plugins.
//!
//! The components are built by the README's test command (`tests/run.sh`) before the tests run:
//! `cargo build --release --target wasm32-wasip2 -p multistream-plugin-polls -p
//! multistream-plugin-qa -p multistream-plugin-hostile`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use multistream_plugin_host::{
    Action, CallError, Capability, Effect, Event, Limits, Participant, Role, Runtime,
};

/// The wasm32-wasip2 build of a plugin crate, beside this test's cargo target directory.
fn component(name: &str) -> Vec<u8> {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary is inside a cargo target directory")
        .to_path_buf();
    let path: PathBuf = target
        .join("wasm32-wasip2/release")
        .join(format!("multistream_plugin_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{} is missing ({error}): build the plugins first with \
             `cargo build --release --target wasm32-wasip2 -p multistream-plugin-{name}` \
             (tests/run.sh does)",
            path.display()
        )
    })
}

fn person(id: &str, role: Role) -> Participant {
    Participant {
        id: id.into(),
        name: id.to_uppercase(),
        role,
    }
}

fn action(actor: &Participant, name: &str, payload: &str) -> Action {
    Action {
        actor: actor.clone(),
        at_ms: 1_800_000_000_000,
        name: name.into(),
        payload: payload.into(),
    }
}

fn runtime() -> Runtime {
    let limits = Limits {
        call_deadline: Duration::from_millis(100),
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    Runtime::new(limits, None).expect("the plugin engine starts")
}

#[test]
fn the_polls_plugin_runs_in_the_host() {
    let runtime = runtime();
    let code = runtime.load(&component("polls")).expect("polls loads");
    assert_eq!(code.manifest.name, "polls");
    assert!(code.manifest.capabilities.contains(&Capability::ShowPanel));
    let mut polls = runtime
        .instantiate(&code, "physics", 1)
        .expect("instantiates");
    let teacher = person("t-1", Role::Teacher);
    let effects = polls
        .on_action(&action(
            &teacher,
            "create",
            r#"{"question":"Is light a wave?","options":["Yes","No"]}"#,
        ))
        .expect("the poll is created");
    let [Effect::Emit(body)] = effects.as_slice() else {
        panic!("one event to record: {effects:?}");
    };
    // The host records the event and hands it back: now the plugin shows its panels.
    let event = Event {
        seq: 7,
        at_ms: 1_800_000_000_001,
        actor: teacher.clone(),
        kind: "plugin".into(),
        plugin: "polls".into(),
        body: body.clone(),
    };
    let views = polls.on_event(&event).expect("the event is folded");
    assert!(
        views
            .iter()
            .any(|e| matches!(e, Effect::Show(v) if v.body.contains("Is light a wave?"))),
        "{views:?}"
    );
    // A student cannot create polls: the plugin's own refusal, and the instance is fine.
    let student = person("s-1", Role::Student);
    let refused = polls.on_action(&action(&student, "create", "{}"));
    assert!(matches!(refused, Err(CallError::Refused(_))), "{refused:?}");
    assert!(!polls.is_poisoned());
    // Snapshot and restore into a fresh instance.
    let snapshot = polls.snapshot().expect("snapshots");
    let mut again = runtime
        .instantiate(&code, "physics", 1)
        .expect("instantiates");
    again.restore(&snapshot).expect("restores");
    assert_eq!(again.snapshot().expect("snapshots"), snapshot);
}

#[test]
fn hostile_calls_are_contained_and_the_runtime_carries_on() {
    let runtime = runtime();
    let hostile = runtime.load(&component("hostile")).expect("loads");
    let polls = runtime.load(&component("polls")).expect("loads");
    let teacher = person("t-1", Role::Teacher);
    let mut poll = runtime
        .instantiate(&polls, "class", 2)
        .expect("instantiates");

    let mut contained = Vec::new();
    for (name, expect) in [
        ("loop", "timeout"),
        ("grow", "memory"),
        ("panic", "trap"),
        ("flood", "invalid"),
        ("huge", "invalid"),
        ("chat", "invalid"),
        ("garbage", "invalid"),
    ] {
        let mut instance = runtime
            .instantiate(&hostile, "class", 3)
            .expect("instantiates");
        let started = Instant::now();
        let result = instance.on_action(&action(&teacher, name, "{}"));
        let took = started.elapsed();
        let kind = match &result {
            Err(CallError::Timeout(_)) => "timeout",
            Err(CallError::OutOfMemory(_)) => "memory",
            Err(CallError::Trap(_)) => "trap",
            Err(CallError::InvalidOutput(_)) => "invalid",
            other => panic!("{name}: expected a contained failure, got {other:?}"),
        };
        assert_eq!(kind, expect, "{name}: {result:?}");
        assert_eq!(
            instance.is_poisoned(),
            result.as_ref().err().is_some_and(CallError::poisons),
            "{name}"
        );
        contained.push((name, took));
        // Another plugin in the same runtime is unaffected.
        let created = poll.on_action(&action(
            &teacher,
            "create",
            r#"{"question":"Still here?","options":["Yes","No"]}"#,
        ));
        assert!(created.is_ok(), "polls after {name}: {created:?}");
    }
    // A fresh hostile instance behaves when asked to.
    let mut fresh = runtime
        .instantiate(&hostile, "class", 4)
        .expect("instantiates");
    let counted = fresh.on_action(&action(&teacher, "count", "{}"));
    assert!(
        matches!(counted.as_deref(), Ok([Effect::Emit(_)])),
        "{counted:?}"
    );
    for (name, took) in contained {
        eprintln!("contained {name} in {:.1} ms", took.as_secs_f64() * 1000.0);
        assert!(took < Duration::from_secs(5), "{name} took {took:?}");
    }
}

#[test]
fn the_qa_plugin_loads_and_takes_a_question() {
    let runtime = runtime();
    let code = runtime.load(&component("qa")).expect("qa loads");
    assert_eq!(code.manifest.name, "qa");
    let mut qa = runtime
        .instantiate(&code, "physics", 1)
        .expect("instantiates");
    let student = person("s-1", Role::Student);
    let effects = qa
        .on_action(&action(&student, "ask", r#"{"text":"What is a photon?"}"#))
        .expect("asked");
    assert!(matches!(effects.as_slice(), [Effect::Emit(body)] if body.contains("photon")));
}

#[test]
fn a_component_that_is_not_a_plugin_is_refused() {
    let runtime = runtime();
    let refused = runtime.load(b"\0asm\x0d\0\x01\0garbage");
    assert!(refused.is_err());
    let empty = runtime.load(b"");
    assert!(empty.is_err());
}

#[test]
fn a_failing_plugin_is_rebuilt_from_its_history_and_quarantined_if_it_keeps_failing() {
    use std::sync::Arc;

    use multistream_plugin_host::supervisor::{
        BACKOFF_MIN, FAILURES_TO_QUARANTINE, Health, Supervisor, SupervisorError,
    };

    let runtime = runtime();
    let code = Arc::new(runtime.load(&component("hostile")).expect("loads"));
    let mut supervisor = Supervisor::new(Arc::clone(&code), "class", 9);
    let teacher = person("t-1", Role::Teacher);
    let mut now = Instant::now();
    let mut seq = 0;
    // "count" emits the next count; the event coming back is where the plugin keeps it.
    let mut count = |supervisor: &mut Supervisor, now: Instant| -> String {
        let effects = supervisor
            .on_action(&runtime, now, &action(&teacher, "count", "{}"))
            .expect("counts");
        let [Effect::Emit(body)] = effects.as_slice() else {
            panic!("one event: {effects:?}");
        };
        seq += 1;
        let event = Event {
            seq,
            at_ms: 1_800_000_000_000,
            actor: teacher.clone(),
            kind: "plugin".into(),
            plugin: "hostile".into(),
            body: body.clone(),
        };
        supervisor.on_event(&runtime, now, &event).expect("folds");
        body.clone()
    };
    assert_eq!(count(&mut supervisor, now), "1");
    assert_eq!(count(&mut supervisor, now), "2");

    // A panic fails that call; the instance is rebuilt after a backoff, from its history.
    let failed = supervisor.on_action(&runtime, now, &action(&teacher, "panic", "{}"));
    assert!(
        matches!(failed, Err(SupervisorError::Call(CallError::Trap(_)))),
        "{failed:?}"
    );
    assert!(matches!(supervisor.health(), Health::Degraded { .. }));
    let early = supervisor.on_action(&runtime, now, &action(&teacher, "count", "{}"));
    assert!(
        matches!(early, Err(SupervisorError::Restarting)),
        "{early:?}"
    );
    now += BACKOFF_MIN * 2;
    assert_eq!(
        count(&mut supervisor, now),
        "3",
        "the state survived the rebuild"
    );
    assert_eq!(supervisor.health(), &Health::Healthy);
    assert_eq!(supervisor.stats.restarts, 1);

    // Failing again and again within the window quarantines it.
    for _ in 0..FAILURES_TO_QUARANTINE {
        now += Duration::from_secs(11);
        let _ = supervisor.on_action(&runtime, now, &action(&teacher, "garbage", "{}"));
    }
    assert!(
        matches!(supervisor.health(), Health::Quarantined { .. }),
        "{:?}",
        supervisor.health()
    );
    let refused = supervisor.on_action(&runtime, now, &action(&teacher, "count", "{}"));
    assert!(
        matches!(refused, Err(SupervisorError::Quarantined(_))),
        "{refused:?}"
    );
}
