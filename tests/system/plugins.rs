//! Feature plugins in a real node: polls and Q&A in a class (actions recorded in the log, the
//! plugins' answers following, private records and other people's panels hidden), rebuilt from
//! the log after a crash; a hostile plugin contained while the class and another plugin go on;
//! signed packages loaded, bad ones refused; a hot upgrade that keeps a running poll's votes.

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant};

use multistream_proto::Role;
use multistream_proto::session::{Audience, Command, Event, EventBody, PluginHealth, Seq};
use multistream_proto::wire::ServerMessage;
use multistream_tests::classroom::{Answer, ClassClient};
use multistream_tests::node_process::{
    NodeProcess, fresh_data_dir, node_binary, participant_token,
};
use serde_json::{Value, json};

const SESSION: &str = "optics";

async fn join(node: &NodeProcess, identity: &str, role: Role) -> ClassClient {
    join_session(node, SESSION, identity, role).await
}

async fn join_session(
    node: &NodeProcess,
    session: &str,
    identity: &str,
    role: Role,
) -> ClassClient {
    let token =
        participant_token(&node.data_dir, session, identity, role).expect("the CLI mints a token");
    let mut client = ClassClient::connect(node.http, session, &token, None)
        .await
        .expect("connects");
    client
        .wait_for(|m| matches!(m, ServerMessage::Snapshot { .. }))
        .await
        .expect("a snapshot follows the welcome");
    client
}

fn acked(answer: Answer) -> Seq {
    match answer {
        Answer::Ack(seq) => seq,
        Answer::Refused { code, message } => panic!("refused ({code}): {message}"),
    }
}

fn refused(answer: Answer) -> String {
    match answer {
        Answer::Refused { code, .. } => code,
        Answer::Ack(seq) => panic!("expected a refusal, got an acknowledgement at {seq}"),
    }
}

async fn act(client: &mut ClassClient, plugin: &str, action: &str, payload: Value) -> Seq {
    acked(
        client
            .command(Command::PluginAction {
                plugin: plugin.into(),
                action: action.into(),
                payload,
            })
            .await
            .expect("answered"),
    )
}

async fn enable(client: &mut ClassClient, plugin: &str) -> Seq {
    acked(
        client
            .command(Command::EnablePlugin {
                plugin: plugin.into(),
            })
            .await
            .expect("answered"),
    )
}

/// Waits for a panel of `plugin` for `audience` that satisfies `condition`.
async fn view_where(
    client: &mut ClassClient,
    plugin: &str,
    audience: Audience,
    condition: impl Fn(&Value) -> bool,
) -> Value {
    let event = client
        .wait_for_event(|e| match &e.body {
            EventBody::PluginView {
                plugin: p,
                audience: a,
                view,
                ..
            } => p == plugin && *a == audience && condition(view),
            _ => false,
        })
        .await
        .unwrap_or_else(|e| {
            let seen: Vec<&Event> = client
                .events
                .iter()
                .filter(
                    |e| matches!(&e.body, EventBody::PluginView { plugin: p, .. } if p == plugin),
                )
                .collect();
            let kinds: Vec<(u64, &str)> = client.events.iter().map(|e| (e.seq.0, e.body.kind())).collect();
            panic!(
                "no {plugin} panel for {audience:?} as expected: {e}; at seq {} ({} hidden); events {kinds:?}; panels seen: {seen:?}",
                client.seq, client.hidden
            )
        });
    match event.body {
        EventBody::PluginView { view, .. } => view,
        _ => unreachable!("matched a view"),
    }
}

fn blocks(view: &Value) -> &[Value] {
    view["blocks"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The counts of the first bar chart of a panel.
fn bars(view: &Value) -> Vec<u64> {
    blocks(view)
        .iter()
        .find(|b| b["type"] == "bars")
        .and_then(|b| b["items"].as_array())
        .map(|items| items.iter().filter_map(|i| i["value"].as_u64()).collect())
        .unwrap_or_default()
}

/// The data of the first button of a panel that sends `action`.
fn button_data(view: &Value, action: &str) -> Option<Value> {
    blocks(view)
        .iter()
        .find(|b| b["type"] == "button" && b["action"] == action)
        .map(|b| b["data"].clone())
}

fn health_event(e: &Event, plugin: &str, health: PluginHealth) -> bool {
    matches!(&e.body, EventBody::PluginHealth { plugin: p, health: h, .. } if p == plugin && *h == health)
}

/// Creates a poll through the teacher's panel and opens it; returns its `{"poll": id}`.
async fn open_poll(teacher: &mut ClassClient, create: Value) -> Value {
    act(teacher, "polls", "create", create).await;
    let created = view_where(teacher, "polls", Audience::Teachers, |v| {
        button_data(v, "open").is_some()
    })
    .await;
    let poll = button_data(&created, "open").expect("an open button");
    act(teacher, "polls", "open", poll.clone()).await;
    poll
}

/// Waits until the teacher's polls panel shows these counts.
async fn wait_for_counts(teacher: &mut ClassClient, counts: &[u64]) {
    view_where(teacher, "polls", Audience::Teachers, |v| bars(v) == counts).await;
}

/// Waits until a student's own polls panel marks `choice` as theirs.
async fn wait_for_own_choice(student: &mut ClassClient, id: &str, choice: usize) {
    let audience = Audience::Participant {
        id: id.parse().expect("id"),
    };
    view_where(student, "polls", audience, |v| {
        blocks(v)
            .iter()
            .any(|b| b["type"] == "choices" && b["selected"] == json!([choice]))
    })
    .await;
}

/// A student's single-choice vote.
async fn vote(student: &mut ClassClient, poll: &Value, choice: usize) -> Seq {
    act(
        student,
        "polls",
        "vote",
        json!({"poll": poll, "choices": [choice]}),
    )
    .await
}

/// Waits until a student's polls panel offers a ballot. An action is acknowledged once it is
/// recorded; the plugin opens the poll a moment later, when its own record comes back, and a
/// vote before that is refused as early, as a student's page would never send it.
async fn wait_for_ballot(student: &mut ClassClient) {
    view_where(student, "polls", Audience::Students, |v| {
        blocks(v).iter().any(|b| b["type"] == "choices")
    })
    .await;
}

async fn plugin_list(node: &NodeProcess) -> Value {
    let response = multistream_tests::http::request(node.http, "GET", "/api/plugins", &[], b"")
        .await
        .expect("the node answers");
    assert_eq!(response.status, 200, "{}", response.body);
    serde_json::from_str(&response.body).expect("JSON")
}

pub(crate) fn wasm(file: &str) -> PathBuf {
    let target = node_binary()
        .parent()
        .and_then(|p| p.parent())
        .expect("the node binary is in a cargo target directory")
        .to_path_buf();
    let path = target.join("wasm32-wasip2/release").join(file);
    assert!(
        path.exists(),
        "{} is missing: tests/run.sh builds the plugins for wasm32-wasip2",
        path.display()
    );
    path
}

pub(crate) fn cli(args: &[&str]) -> String {
    let output = Process::new(node_binary())
        .args(args)
        .output()
        .expect("the node binary runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Makes a signing key in `dir` and returns its path and public key.
pub(crate) fn signing_key(dir: &Path, name: &str) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).expect("a directory");
    let path = dir.join(name);
    let public = cli(&["plugin-key", "--out", &path.to_string_lossy()]);
    (path, public)
}

/// Signs a component with `key` and moves the package into `plugins` under `file` (a rename,
/// so the node never reads half a file). Returns the package's path.
fn install(key: &Path, component: &Path, plugins: &Path, file: &str) -> PathBuf {
    let staging = plugins.with_file_name("staging");
    std::fs::create_dir_all(&staging).expect("a directory");
    let made = cli(&[
        "plugin-sign",
        "--key",
        &key.to_string_lossy(),
        "--out",
        &staging.to_string_lossy(),
        &component.to_string_lossy(),
    ]);
    std::fs::create_dir_all(plugins).expect("a directory");
    let target = plugins.join(file);
    std::fs::rename(made, &target).expect("moved into the plugin directory");
    target
}

#[tokio::test]
async fn polls_and_qa_run_in_a_class_keep_private_records_private_and_survive_a_crash() {
    let node = NodeProcess::start("plugins-class").expect("the node starts");
    let offered = plugin_list(&node).await;
    let names: Vec<&str> = offered["plugins"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["polls", "qa"], "the built-in plugins: {offered}");

    let mut teacher = join(&node, "teacher-1", Role::Teacher).await;
    let mut ana = join(&node, "ana", Role::Student).await;
    let mut ben = join(&node, "ben", Role::Student).await;

    // Only the teacher switches features on, and only those the edge has.
    let by_student = ana
        .command(Command::EnablePlugin {
            plugin: "polls".into(),
        })
        .await
        .expect("answered");
    assert_eq!(refused(by_student), "not_permitted");
    let unknown = teacher
        .command(Command::EnablePlugin {
            plugin: "chess".into(),
        })
        .await
        .expect("answered");
    assert_eq!(refused(unknown), "not_found");
    let not_on = ana
        .command(Command::PluginAction {
            plugin: "polls".into(),
            action: "vote".into(),
            payload: json!({"poll": 1, "choices": [0]}),
        })
        .await
        .expect("answered");
    assert_eq!(refused(not_on), "not_found");

    enable(&mut teacher, "polls").await;
    view_where(&mut teacher, "polls", Audience::Teachers, |v| {
        v.to_string().contains("Create poll")
    })
    .await;
    view_where(&mut ana, "polls", Audience::Students, |v| {
        v.to_string().contains("No poll is open")
    })
    .await;

    let poll = open_poll(
        &mut teacher,
        json!({"question": "Is light a wave?", "options": ["Yes", "No", "Both"]}),
    )
    .await;
    wait_for_ballot(&mut ana).await;
    let poll_id = poll["poll"].clone();
    vote(&mut ana, &poll_id, 0).await;
    vote(&mut ben, &poll_id, 2).await;
    vote(&mut ben, &poll_id, 1).await;
    wait_for_counts(&mut teacher, &[1, 1, 0]).await;
    // Ana sees her own choice marked, in a panel for her alone.
    wait_for_own_choice(&mut ana, "ana", 0).await;

    // A refused action comes back to the one who acted, and nobody else.
    let bad = act(
        &mut ana,
        "polls",
        "vote",
        json!({"poll": 99, "choices": [0]}),
    )
    .await;
    let notice = ana
        .wait_for_event(
            |e| matches!(&e.body, EventBody::PluginNotice { cause, .. } if *cause == bad),
        )
        .await
        .expect("a notice for Ana");
    match &notice.body {
        EventBody::PluginNotice { message, .. } => {
            assert!(message.contains("no poll 99"), "{message}")
        }
        _ => unreachable!(),
    }
    // Ben's client must have moved past the notice (hidden) before it is checked.
    ben.wait_for(|m| matches!(m, ServerMessage::Hidden { seq } if *seq >= notice.seq))
        .await
        .expect("the notice reaches Ben only as hidden");

    // What is private stays on the edges: no client sees the plugin's records or the actions,
    // students never see the teacher's panel or another student's.
    for (client, me) in [(&ana, "ana"), (&ben, "ben")] {
        assert!(client.hidden > 0);
        for event in &client.events {
            match &event.body {
                EventBody::PluginAction { .. } | EventBody::PluginEvent { .. } => {
                    panic!("{me} was shown {event:?}")
                }
                EventBody::PluginView { audience, .. } => match audience {
                    Audience::Teachers => panic!("{me} was shown the teacher's panel"),
                    Audience::Participant { id } => assert_eq!(id.as_str(), me),
                    _ => {}
                },
                EventBody::PluginNotice { to, .. } => assert_eq!(to.as_str(), me),
                _ => {}
            }
        }
    }

    // A crash: the poll comes back from the log, votes and all.
    let data = node.kill_keeping_data();
    let node = NodeProcess::start_in(data, &[]).expect("the node restarts");
    let mut teacher = join(&node, "teacher-1", Role::Teacher).await;
    let snapshot = teacher.snapshot.clone().expect("a snapshot");
    let views = snapshot["plugins"]["polls"]["views"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        views.iter().any(|v| bars(&v["view"]) == [1, 1, 0]),
        "the teacher's panel after the restart: {views:?}"
    );
    assert!(
        views.iter().all(|v| v["audience"]["kind"] != "participant"),
        "the teacher is shown no one else's panel: {views:?}"
    );
    let mut ana = join(&node, "ana", Role::Student).await;
    vote(&mut ana, &poll_id, 2).await;
    wait_for_counts(&mut teacher, &[0, 1, 1]).await;

    // Q&A beside it: questions sorted by votes for the teacher.
    let mut ben = join(&node, "ben", Role::Student).await;
    enable(&mut teacher, "qa").await;
    act(
        &mut ana,
        "qa",
        "ask",
        json!({"text": "Why is the sky blue?", "anonymous": false}),
    )
    .await;
    act(
        &mut ben,
        "qa",
        "ask",
        json!({"text": "What is a photon?", "anonymous": true}),
    )
    .await;
    let listed = view_where(&mut ben, "qa", Audience::Students, |v| {
        v.to_string().contains("Why is the sky blue?")
    })
    .await;
    let upvote = blocks(&listed)
        .iter()
        .filter_map(|b| b["items"].as_array())
        .flatten()
        .find(|item| item["text"] == "Why is the sky blue?")
        .and_then(|item| item["buttons"].as_array())
        .and_then(|buttons| buttons.iter().find(|b| b["action"] == "upvote"))
        .map(|b| b["data"].clone())
        .unwrap_or_else(|| panic!("an upvote button on Ana's question: {listed}"));
    act(&mut ben, "qa", "upvote", upvote).await;
    let sorted = view_where(&mut teacher, "qa", Audience::Teachers, |v| {
        let text = v.to_string();
        match (
            text.find("Why is the sky blue?"),
            text.find("What is a photon?"),
        ) {
            (Some(sky), Some(photon)) => sky < photon && text.contains("1 vote"),
            _ => false,
        }
    })
    .await;
    let photon = blocks(&sorted)
        .iter()
        .filter_map(|b| b["items"].as_array())
        .flatten()
        .find(|item| item["text"] == "What is a photon?")
        .cloned()
        .expect("Ben's question is listed");
    assert!(
        photon["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("anonymous")),
        "an anonymous question does not name its author: {photon}"
    );
    node.stop();
}

#[tokio::test]
async fn a_hostile_plugin_is_contained_while_the_class_and_a_poll_go_on() {
    let data = fresh_data_dir("plugins-hostile");
    let keys = data.join("keys");
    let plugins = data.join("plugins");
    let (key, public) = signing_key(&keys, "school.key");
    let (stranger, _) = signing_key(&keys, "stranger.key");
    install(
        &key,
        &wasm("multistream_plugin_hostile.wasm"),
        &plugins,
        "hostile.msplugin",
    );
    // An altered package and one signed by a key the node does not trust.
    let good = install(
        &key,
        &wasm("multistream_plugin_qa.wasm"),
        &plugins,
        "altered.msplugin",
    );
    let mut bytes = std::fs::read(&good).expect("the package");
    let last = bytes.len() - 100;
    bytes[last] ^= 0x5a;
    std::fs::write(&good, bytes).expect("altered");
    install(
        &stranger,
        &wasm("multistream_plugin_qa.wasm"),
        &plugins,
        "stranger.msplugin",
    );
    let node = NodeProcess::start_in(data, &["--plugin-key", &public]).expect("the node starts");

    let offered = plugin_list(&node).await;
    let names: Vec<&str> = offered["plugins"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["hostile", "polls", "qa"], "{offered}");
    let refusals = offered["refused"].to_string();
    assert!(
        refusals.contains("altered.msplugin") && refusals.contains("does not match"),
        "{refusals}"
    );
    assert!(
        refusals.contains("stranger.msplugin") && refusals.contains("does not trust"),
        "{refusals}"
    );

    let mut teacher = join(&node, "teacher-1", Role::Teacher).await;
    let mut ana = join(&node, "ana", Role::Student).await;
    enable(&mut teacher, "hostile").await;
    enable(&mut teacher, "polls").await;
    let poll = open_poll(
        &mut teacher,
        json!({"question": "Still here?", "options": ["Yes", "No"]}),
    )
    .await;
    wait_for_ballot(&mut ana).await;

    // A runaway call: stopped at its deadline, the plugin degraded, the teacher told.
    let started = Instant::now();
    let looped = act(&mut teacher, "hostile", "loop", json!({})).await;
    // The class does not wait for it: a chat line goes through at once.
    let chat_started = Instant::now();
    acked(
        ana.command(Command::Chat {
            text: "is it frozen?".into(),
        })
        .await
        .expect("answered"),
    );
    let chat_latency = chat_started.elapsed();
    teacher
        .wait_for_event(|e| health_event(e, "hostile", PluginHealth::Degraded))
        .await
        .expect("the teacher sees the plugin degraded");
    let contained = started.elapsed();
    let notice = teacher
        .wait_for_event(
            |e| matches!(&e.body, EventBody::PluginNotice { cause, .. } if *cause == looped),
        )
        .await
        .expect("the teacher is told the action failed");
    println!(
        "runaway call contained in {contained:?}; a chat line meanwhile took {chat_latency:?}; notice: {:?}",
        notice.body
    );
    assert!(
        chat_latency < Duration::from_millis(150),
        "the class waited for the plugin: {chat_latency:?}"
    );

    // The poll in the other plugin goes on.
    vote(&mut ana, &poll["poll"], 0).await;
    wait_for_counts(&mut teacher, &[1, 0]).await;

    // Rebuilt after its backoff, it works again and shows healthy.
    act(&mut teacher, "hostile", "count", json!({})).await;
    teacher
        .wait_for_event(|e| health_event(e, "hostile", PluginHealth::Healthy))
        .await
        .expect("healthy again after a good call");

    // Every other kind of misbehaviour fails alone; five failures in a minute quarantine it.
    for action in ["grow", "panic", "flood", "huge", "chat", "garbage"] {
        let answer = teacher
            .command(Command::PluginAction {
                plugin: "hostile".into(),
                action: action.into(),
                payload: json!({}),
            })
            .await
            .expect("answered");
        let seq = match answer {
            Answer::Ack(seq) => seq,
            Answer::Refused { code, .. } if code == "unavailable" => break,
            Answer::Refused { code, message } => panic!("{action} refused ({code}): {message}"),
        };
        let failed = teacher
            .wait_for_event(|e| {
                matches!(&e.body, EventBody::PluginNotice { cause, .. } if *cause == seq)
                    || health_event(e, "hostile", PluginHealth::Quarantined)
            })
            .await
            .unwrap_or_else(|e| panic!("no answer to {action}: {e}"));
        println!("{action}: {:?}", failed.body);
        if matches!(failed.body, EventBody::PluginHealth { .. }) {
            break;
        }
    }
    teacher
        .wait_for_event(|e| health_event(e, "hostile", PluginHealth::Quarantined))
        .await
        .expect("quarantined after repeated failures");
    let after = teacher
        .command(Command::PluginAction {
            plugin: "hostile".into(),
            action: "count".into(),
            payload: json!({}),
        })
        .await
        .expect("answered");
    assert_eq!(refused(after), "unavailable");
    node.wait_for_metric(
        "multistream_plugin_quarantined_classes{plugin=\"hostile\",version=\"0.1.0\"}",
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .await
    .expect("the quarantine shows in the metrics");
    let failures = node
        .wait_for_metric(
            "multistream_plugin_failures_total{plugin=\"hostile\",version=\"0.1.0\"}",
            Duration::from_secs(5),
            |v| v >= 5.0,
        )
        .await
        .expect("failures are counted");
    let page = node.metrics().await.expect("metrics");
    let restarts = multistream_tests::http::metric(
        &page,
        "multistream_plugin_restarts_total{plugin=\"hostile\",version=\"0.1.0\"}",
    )
    .unwrap_or(0.0);
    assert!(restarts >= 1.0, "restarts: {restarts}");
    println!("failures counted: {failures}, restarts: {restarts}");

    // The class and the poll never stopped.
    acked(
        ana.command(Command::Chat {
            text: "still going".into(),
        })
        .await
        .expect("answered"),
    );
    vote(&mut ana, &poll["poll"], 1).await;
    wait_for_counts(&mut teacher, &[0, 1]).await;

    // Off and on again: a fresh start from the log, healthy.
    acked(
        teacher
            .command(Command::DisablePlugin {
                plugin: "hostile".into(),
            })
            .await
            .expect("answered"),
    );
    enable(&mut teacher, "hostile").await;
    act(&mut teacher, "hostile", "count", json!({})).await;
    node.wait_for_metric(
        "multistream_plugin_quarantined_classes{plugin=\"hostile\",version=\"0.1.0\"}",
        Duration::from_secs(5),
        |v| v == 0.0,
    )
    .await
    .expect("no longer quarantined");
    node.stop();
}

#[tokio::test]
async fn a_new_version_is_loaded_into_a_running_class_and_keeps_its_state() {
    let data = fresh_data_dir("plugins-upgrade");
    let (key, public) = signing_key(&data.join("keys"), "school.key");
    let plugins = data.join("plugins");
    let node = NodeProcess::start_in(data, &["--plugin-key", &public]).expect("the node starts");
    let mut teacher = join(&node, "teacher-1", Role::Teacher).await;
    let mut ana = join(&node, "ana", Role::Student).await;
    let mut ben = join(&node, "ben", Role::Student).await;
    enable(&mut teacher, "polls").await;
    let poll = open_poll(
        &mut teacher,
        json!({"question": "Best colour?", "options": ["Red", "Green", "Blue"]}),
    )
    .await;
    wait_for_ballot(&mut ana).await;
    vote(&mut ana, &poll["poll"], 2).await;
    wait_for_counts(&mut teacher, &[0, 0, 1]).await;

    // A new version appears in the plugin directory while the class runs.
    let started = Instant::now();
    install(
        &key,
        &wasm("multistream_plugin_polls_next.wasm"),
        &plugins,
        "polls-next.msplugin",
    );
    teacher
        .wait_for_event(|e| {
            matches!(&e.body, EventBody::PluginEnabled { plugin, version, .. }
                if plugin == "polls" && version == "0.2.0-next")
        })
        .await
        .expect("the class moves to the new version");
    println!("upgraded in {:?}", started.elapsed());

    // The new version has the old one's votes: Ben's vote adds to Ana's.
    vote(&mut ben, &poll["poll"], 0).await;
    wait_for_counts(&mut teacher, &[1, 0, 1]).await;
    // The status is published at most a moment after the change.
    let mut listed = plugin_list(&node).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while listed["upgrades"] != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = plugin_list(&node).await;
    }
    let polls = listed["plugins"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|p| p["name"] == "polls")
        .cloned()
        .expect("polls is listed");
    assert_eq!(polls["version"], "0.2.0-next", "{listed}");
    assert_eq!(listed["upgrades"], 1, "{listed}");
    // Nobody was dropped: both students are still connected and acknowledged.
    acked(
        ana.command(Command::Chat {
            text: "still here".into(),
        })
        .await
        .expect("answered"),
    );
    node.stop();
}

#[tokio::test]
async fn a_student_on_another_edge_votes_in_a_poll_run_by_the_home() {
    let cluster = multistream_tests::cluster::Cluster::new("plugins-edges", 2).expect("a cluster");
    let home = cluster.start(0).expect("the home edge starts");
    let follower = cluster.start(1).expect("the other edge starts");
    let session = cluster.session_homed_on(0, "optics");
    let mut teacher = join_session(&home, &session, "teacher-1", Role::Teacher).await;
    let mut ana = join_session(&follower, &session, "ana", Role::Student).await;
    enable(&mut teacher, "polls").await;
    let poll = open_poll(
        &mut teacher,
        json!({"question": "Which campus?", "options": ["North", "South"], "anonymous": true}),
    )
    .await;
    // Through her own edge: the action is forwarded to the home, the plugin runs there, and its
    // panels come back over the log.
    wait_for_ballot(&mut ana).await;
    vote(&mut ana, &poll["poll"], 1).await;
    wait_for_counts(&mut teacher, &[0, 1]).await;
    wait_for_own_choice(&mut ana, "ana", 1).await;
    assert!(
        ana.events.iter().all(|e| !matches!(
            e.body,
            EventBody::PluginEvent { .. } | EventBody::PluginAction { .. }
        )),
        "the other edge shows its clients no plugin records"
    );
    // The plugin runs on the home only.
    let page = follower.metrics().await.expect("metrics");
    assert_eq!(
        multistream_tests::http::metric(
            &page,
            "multistream_plugin_classes{plugin=\"polls\",version=\"0.1.0\"}"
        ),
        Some(0.0),
        "{page}"
    );
    home.stop();
    follower.stop();
}
