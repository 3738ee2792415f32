//! The class log through a real node process: commands over the classroom WebSocket, permission
//! refusals, resuming without gaps or repeats, bad input, and the log surviving a crash.

use multistream_proto::Role;
use multistream_proto::session::{Command, EventBody, Permission, Scene, Seq};
use multistream_proto::wire::ServerMessage;
use multistream_tests::classroom::{Answer, ClassClient};
use multistream_tests::node_process::{NodeProcess, participant_token};

fn token(node: &NodeProcess, identity: &str, role: Role) -> String {
    participant_token(&node.data_dir, "physics", identity, role).expect("the CLI mints a token")
}

fn refused(answer: &Answer) -> &str {
    match answer {
        Answer::Refused { code, .. } => code,
        Answer::Ack(seq) => panic!("expected a refusal, got an acknowledgement at {seq}"),
    }
}

fn acked(answer: Answer) -> Seq {
    match answer {
        Answer::Ack(seq) => seq,
        Answer::Refused { code, message } => panic!("refused ({code}): {message}"),
    }
}

#[tokio::test]
async fn a_class_runs_on_its_log_resumes_and_survives_a_crash() {
    let node = NodeProcess::start("class-log").expect("the node starts");
    let teacher_token = token(&node, "teacher-1", Role::Teacher);
    let student_token = token(&node, "student-1", Role::Student);
    let mut teacher = ClassClient::connect(node.http, "physics", &teacher_token, None)
        .await
        .expect("the teacher connects");
    let mut student = ClassClient::connect(node.http, "physics", &student_token, None)
        .await
        .expect("the student connects");
    for client in [&mut teacher, &mut student] {
        client
            .wait_for(|m| matches!(m, ServerMessage::Snapshot { .. }))
            .await
            .expect("a snapshot follows the welcome");
    }
    // Both see the student join.
    teacher
        .wait_for_event(|e| {
            e.actor.as_str() == "student-1" && matches!(e.body, EventBody::Joined { .. })
        })
        .await
        .expect("the teacher sees the student join");

    // A student chats, raises a hand; cannot change the scene or clear the board.
    let chat = acked(
        student
            .command(Command::Chat {
                text: "Is light a wave?".into(),
            })
            .await
            .expect("answered"),
    );
    let seen = teacher
        .wait_for_event(
            |e| matches!(&e.body, EventBody::Chat { text } if text == "Is light a wave?"),
        )
        .await
        .expect("the teacher sees the chat line");
    assert_eq!(seen.seq, chat);
    acked(student.command(Command::RaiseHand).await.expect("answered"));
    let scene = Command::SetScene {
        scene: Scene::WhiteboardAndCamera,
    };
    assert_eq!(
        refused(&student.command(scene.clone()).await.expect("answered")),
        "not_permitted"
    );
    assert_eq!(
        refused(
            &student
                .command(Command::ClearBoard)
                .await
                .expect("answered")
        ),
        "not_permitted"
    );
    // The teacher switches the scene and lowers all hands; the student follows.
    acked(teacher.command(scene).await.expect("answered"));
    acked(
        teacher
            .command(Command::LowerAllHands)
            .await
            .expect("answered"),
    );
    student
        .wait_for_event(|e| matches!(e.body, EventBody::AllHandsLowered))
        .await
        .expect("the student sees hands lowered");
    // Granted, the student may present.
    acked(
        teacher
            .command(Command::Grant {
                participant: "student-1".parse().expect("valid"),
                permission: Permission::Present,
            })
            .await
            .expect("answered"),
    );
    acked(
        student
            .command(Command::SetScene {
                scene: Scene::Screen,
            })
            .await
            .expect("answered"),
    );

    // The same key twice applies once and answers with the same position.
    let key = "retry-1".parse().expect("valid key");
    let first = acked(
        student
            .command_with_key(
                key,
                Command::Chat {
                    text: "once".into(),
                },
            )
            .await
            .expect("answered"),
    );
    let key = "retry-1".parse().expect("valid key");
    let again = acked(
        student
            .command_with_key(
                key,
                Command::Chat {
                    text: "once".into(),
                },
            )
            .await
            .expect("answered"),
    );
    assert_eq!(first, again);

    // Bad input gets an answer, not a dropped connection.
    student.send_raw("{not json").await.expect("sent");
    student
        .wait_for(|m| matches!(m, ServerMessage::Error { code, .. } if code == "bad_message"))
        .await
        .expect("a bad message is answered");
    let empty = student
        .command(Command::Chat { text: "   ".into() })
        .await
        .expect("answered");
    assert_eq!(refused(&empty), "invalid");

    // The student drops; the teacher carries on; the student resumes without gaps or repeats.
    let resume_at = student.seq;
    student.close().await;
    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(acked(
            teacher
                .command(Command::Chat {
                    text: format!("while you were away {n}"),
                })
                .await
                .expect("answered"),
        ));
    }
    let mut student = ClassClient::connect(node.http, "physics", &student_token, Some(resume_at))
        .await
        .expect("the student reconnects");
    for seq in &missed {
        student
            .wait_for_event(|e| e.seq == *seq)
            .await
            .expect("the missed events arrive");
    }
    assert!(
        student.snapshot.is_none(),
        "a resume sends events, not a snapshot"
    );
    let last_seq = teacher.seq;
    teacher.close().await;
    student.close().await;

    // A crash (SIGKILL) loses nothing acknowledged: the restarted node's snapshot has it all.
    // Someone connected at the moment of the crash is marked gone when the node comes back.
    let watcher_token = token(&node, "watcher-1", Role::Guest);
    let _watcher = ClassClient::connect(node.http, "physics", &watcher_token, None)
        .await
        .expect("a watcher connects");
    let mut probe = ClassClient::connect(node.http, "physics", &teacher_token, None)
        .await
        .expect("connects");
    probe
        .wait_for(|m| matches!(m, ServerMessage::Snapshot { .. }))
        .await
        .expect("a snapshot");
    let in_snapshot = probe
        .snapshot
        .as_ref()
        .and_then(|s| s["members"]["watcher-1"]["present"].as_bool());
    if in_snapshot != Some(true) {
        probe
            .wait_for_event(|e| {
                e.actor.as_str() == "watcher-1" && matches!(e.body, EventBody::Joined { .. })
            })
            .await
            .expect("the watcher's join is durable");
    }
    let data_dir = node.kill_keeping_data();
    let node = NodeProcess::start_in(data_dir, &[]).expect("the node restarts");
    let mut teacher = ClassClient::connect(node.http, "physics", &teacher_token, None)
        .await
        .expect("the teacher reconnects");
    teacher
        .wait_for(|m| matches!(m, ServerMessage::Snapshot { .. }))
        .await
        .expect("a snapshot");
    assert!(
        teacher.seq >= last_seq,
        "the log kept {last_seq} events, now at {}",
        teacher.seq
    );
    let state = teacher.snapshot.clone().expect("a snapshot state");
    assert_eq!(state["scene"], "screen");
    let chat: Vec<&str> = state["chat"]
        .as_array()
        .expect("chat lines")
        .iter()
        .filter_map(|line| line["text"].as_str())
        .collect();
    for line in ["Is light a wave?", "once", "while you were away 2"] {
        assert!(
            chat.contains(&line),
            "{line:?} survived the crash: {chat:?}"
        );
    }
    assert_eq!(chat.iter().filter(|l| **l == "once").count(), 1);
    let watcher_present = state["members"]["watcher-1"]["present"].as_bool();
    if watcher_present != Some(false) {
        teacher
            .wait_for_event(|e| {
                e.actor.as_str() == "watcher-1" && matches!(e.body, EventBody::Left)
            })
            .await
            .expect("the restarted node marks the watcher gone");
    }
    teacher.close().await;
    assert!(node.stop(), "the node stops cleanly");
}

#[tokio::test]
async fn slides_upload_by_content_and_only_for_presenters() {
    use multistream_tests::http::request;
    let node = NodeProcess::start("class-assets").expect("the node starts");
    let teacher = token(&node, "teacher-1", Role::Teacher);
    let student = token(&node, "student-1", Role::Student);
    let auth = |token: &str| format!("Bearer {token}");
    let path = "/api/sessions/physics/assets";
    // A tiny PNG (header only is enough for type checking).
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRslide-one";
    let bearer = auth(&teacher);
    let stored = request(node.http, "POST", path, &[("Authorization", &bearer)], png)
        .await
        .expect("uploads");
    assert_eq!(stored.status, 201, "{}", stored.body);
    let answer: serde_json::Value = serde_json::from_str(&stored.body).expect("json");
    let page = answer["asset"].as_str().expect("an address").to_owned();
    assert_eq!(answer["media_type"], "image/png");
    let fetched = request(node.http, "GET", &format!("/api/assets/{page}"), &[], b"")
        .await
        .expect("downloads");
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.header("content-type"), Some("image/png"));
    assert!(
        fetched
            .header("cache-control")
            .is_some_and(|v| v.contains("immutable"))
    );

    // A deck manifest naming uploaded pages; a page that was never uploaded is refused.
    let manifest = format!(r#"{{"title":"Optics","pages":["{page}","{page}"]}}"#);
    let deck = request(
        node.http,
        "POST",
        path,
        &[("Authorization", &bearer)],
        manifest.as_bytes(),
    )
    .await
    .expect("uploads");
    assert_eq!(deck.status, 201, "{}", deck.body);
    assert!(deck.body.contains(r#""pages":2"#), "{}", deck.body);
    let missing = format!(r#"{{"title":"x","pages":["{}"]}}"#, "b".repeat(64));
    let refused = request(
        node.http,
        "POST",
        path,
        &[("Authorization", &bearer)],
        missing.as_bytes(),
    )
    .await
    .expect("answers");
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("missing_page"), "{}", refused.body);

    // Not an accepted type; not a presenter; no token; unknown asset.
    let svg = request(
        node.http,
        "POST",
        path,
        &[("Authorization", &bearer)],
        b"<svg onload=alert(1)>",
    )
    .await
    .expect("answers");
    assert_eq!(svg.status, 415);
    let student_bearer = auth(&student);
    let by_student = request(
        node.http,
        "POST",
        path,
        &[("Authorization", &student_bearer)],
        png,
    )
    .await
    .expect("answers");
    assert_eq!(by_student.status, 403, "{}", by_student.body);
    let anonymous = request(node.http, "POST", path, &[], png)
        .await
        .expect("answers");
    assert_eq!(anonymous.status, 401);
    let unknown = request(
        node.http,
        "GET",
        &format!("/api/assets/{}", "c".repeat(64)),
        &[],
        b"",
    )
    .await
    .expect("answers");
    assert_eq!(unknown.status, 404);
    let traversal = request(node.http, "GET", "/api/assets/..%2F..%2Fetc", &[], b"")
        .await
        .expect("answers");
    assert_eq!(traversal.status, 404);
    assert!(node.stop());
}

#[tokio::test]
async fn a_flood_of_strokes_is_rate_limited_not_queued() {
    use multistream_proto::session::{Point, Stroke};
    use multistream_proto::wire::ClientMessage;
    let node = NodeProcess::start("class-flood").expect("the node starts");
    let teacher_token = token(&node, "teacher-1", Role::Teacher);
    // Two tabs of the same person share one allowance.
    let mut tabs = Vec::new();
    for _ in 0..2 {
        tabs.push(
            ClassClient::connect(node.http, "physics", &teacher_token, None)
                .await
                .expect("connects"),
        );
    }
    // Per tab, no more than the stroke burst (twice 10 per second); together, more. Fewer than
    // the command burst in all, so only strokes are cut off.
    let per_tab = 20;
    for (t, tab) in tabs.iter_mut().enumerate() {
        for n in 0..per_tab {
            let id = (t * per_tab + n) as u64;
            let message = ClientMessage::Command {
                key: format!("flood-{id}").parse().expect("valid key"),
                command: Command::Draw {
                    stroke: Stroke {
                        id,
                        color: "#000000".into(),
                        width: 5,
                        points: vec![Point(0, 0), Point(100, 100)],
                    },
                },
            };
            tab.send_raw(&serde_json::to_string(&message).expect("json"))
                .await
                .expect("sent");
        }
    }
    let (mut acked, mut limited) = (0, 0);
    for tab in &mut tabs {
        let mut answered = 0;
        while answered < per_tab {
            match tab.next().await.expect("answers keep coming") {
                ServerMessage::Ack { .. } => acked += 1,
                ServerMessage::Refused { code, .. } => {
                    assert_eq!(code, "rate_limited");
                    limited += 1;
                }
                _ => continue,
            }
            answered += 1;
        }
    }
    assert!(acked >= 10, "a burst is allowed ({acked} acknowledged)");
    assert!(limited > 0, "a flood from two tabs is cut off");
    // The connections stay usable.
    let answer = tabs[0]
        .command(Command::Chat {
            text: "still here".into(),
        })
        .await
        .expect("answered");
    assert!(matches!(answer, Answer::Ack(_)), "{answer:?}");
    let page = node.metrics().await.expect("metrics");
    let counted = multistream_tests::http::metric(
        &page,
        "multistream_log_requests_total{outcome=\"rate_limited\"}",
    );
    assert_eq!(counted, Some(f64::from(limited)), "counted");
    for tab in tabs {
        tab.close().await;
    }
    assert!(node.stop());
}

#[tokio::test]
async fn a_reload_is_not_leaving_but_going_away_is() {
    let node = NodeProcess::start("class-leave").expect("the node starts");
    let teacher_token = token(&node, "teacher-1", Role::Teacher);
    let student_token = token(&node, "student-1", Role::Student);
    let mut teacher = ClassClient::connect(node.http, "physics", &teacher_token, None)
        .await
        .expect("connects");
    let student = ClassClient::connect(node.http, "physics", &student_token, None)
        .await
        .expect("connects");
    teacher
        .wait_for_event(|e| {
            e.actor.as_str() == "student-1" && matches!(e.body, EventBody::Joined { .. })
        })
        .await
        .expect("the student joins");
    // A reload: the old connection closes and a new one opens at once.
    student.close().await;
    let mut student = ClassClient::connect(node.http, "physics", &student_token, None)
        .await
        .expect("reconnects");
    acked(student.command(Command::RaiseHand).await.expect("answered"));
    let hand = teacher
        .wait_for_event(|e| matches!(e.body, EventBody::HandRaised))
        .await
        .expect("the hand goes up");
    assert!(
        !teacher
            .events
            .iter()
            .any(|e| e.seq < hand.seq && matches!(e.body, EventBody::Left)),
        "a reload is not a leave"
    );
    // Going away: after the grace period the student is marked gone and the hand comes down.
    student.close().await;
    let left = teacher
        .wait_for_event(|e| e.actor.as_str() == "student-1" && matches!(e.body, EventBody::Left))
        .await
        .expect("the student is marked gone");
    assert!(left.seq > hand.seq);

    // Saying so: gone at once, without the grace a dropped connection gets.
    let mut student = ClassClient::connect(node.http, "physics", &student_token, None)
        .await
        .expect("reconnects");
    student
        .wait_for(|m| matches!(m, ServerMessage::Snapshot { .. }))
        .await
        .expect("a snapshot");
    let back = teacher
        .wait_for_event(|e| {
            e.seq > left.seq
                && e.actor.as_str() == "student-1"
                && matches!(e.body, EventBody::Joined { .. })
        })
        .await
        .expect("the student is back");
    let started = std::time::Instant::now();
    student.leave().await;
    teacher
        .wait_for_event(|e| {
            e.seq > back.seq && e.actor.as_str() == "student-1" && matches!(e.body, EventBody::Left)
        })
        .await
        .expect("the student is marked gone");
    let took = started.elapsed();
    assert!(
        took < multistream_node::sessions::LEAVE_GRACE / 2,
        "a participant who says they leave is gone at once, not after the grace ({took:?})"
    );
    teacher.close().await;
    assert!(node.stop());
}
