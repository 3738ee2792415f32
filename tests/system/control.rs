//! The control plane over a real database, SQLite and PostgreSQL alike: migrations, signing in
//! (and its rate limit), people, courses and roles, edges, the scheduling rules, join tokens, and
//! who may do what (the authorisation matrix); each backend runs the same scenario. Then with
//! real edge processes: an edge admits the control plane's tokens offline; two edges enrol and a
//! class across them goes on when the control plane stops; a plugin rolled out reaches an edge.

use multistream_tests::control::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Backend, Control, json, rfc3339_utc as at,
};
use serde_json::{Value, json};

/// Milliseconds in an hour.
const HOUR: i64 = 3_600_000;

fn code(response: &multistream_tests::http::Response) -> String {
    let body = json(response);
    body["detail"]["code"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn create(control: &Control, auth: &str, path: &str, body: Value) -> Value {
    let response = control.call("POST", path, Some(auth), Some(&body)).await;
    assert_eq!(response.status, 201, "POST {path}: {}", response.body);
    json(&response)
}

async fn api_key(control: &Control, cookie: &str, name: &str) -> String {
    let key = create(control, cookie, "/api/v1/api-keys", json!({ "name": name })).await;
    key["key"].as_str().expect("a key").to_owned()
}

async fn scenario(backend: Backend) {
    let control = Control::start(&format!("control-{backend:?}"), backend)
        .await
        .expect("the control plane starts");
    assert_eq!(
        control.db.migrations().await.expect("migrations"),
        vec![1, 2, 3],
        "the schema is migrated"
    );

    // Signing in: a wrong password is refused, then too many attempts are held back.
    let admin = control
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect("the admin signs in");
    let me = control.call("GET", "/api/v1/me", Some(&admin), None).await;
    assert_eq!(json(&me)["admin"], true, "{}", me.body);
    assert_eq!(
        control.call("GET", "/api/v1/me", None, None).await.status,
        401
    );
    assert_eq!(
        control
            .call("GET", "/api/v1/me", Some("mskey_forged"), None)
            .await
            .status,
        401
    );
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let refused = control
            .sign_in("nobody@school.example", "wrong password!")
            .await
            .expect_err("refused");
        statuses.push(refused.status);
    }
    assert_eq!(
        statuses,
        vec![401, 401, 401, 401, 401, 429],
        "the sixth failure in a row is rate-limited"
    );

    // People, a course and its roles; an edge.
    let user = |email: &str, name: &str| json!({ "email": email, "name": name, "password": format!("{name}'s passphrase") });
    let tess = create(
        &control,
        &admin,
        "/api/v1/users",
        user("tess@school.example", "Tess Teacher"),
    )
    .await;
    let uma = create(
        &control,
        &admin,
        "/api/v1/users",
        json!({ "email": "uma@school.example", "name": "Uma Teacher" }),
    )
    .await;
    let sam = create(
        &control,
        &admin,
        "/api/v1/users",
        user("sam@school.example", "Sam Student"),
    )
    .await;
    let id = |v: &Value| v["id"].as_str().expect("an id").to_owned();
    let (tess, uma, sam) = (id(&tess), id(&uma), id(&sam));
    let taken = control
        .call(
            "POST",
            "/api/v1/users",
            Some(&admin),
            Some(&user("TESS@school.example", "Again")),
        )
        .await;
    assert_eq!((taken.status, code(&taken)), (409, "email_taken".into()));
    let physics = id(&create(
        &control,
        &admin,
        "/api/v1/courses",
        json!({ "code": "PHY-101", "title": "Physics" }),
    )
    .await);
    let history = id(&create(
        &control,
        &admin,
        "/api/v1/courses",
        json!({ "code": "HIS-200", "title": "History" }),
    )
    .await);
    for (who, role, course) in [
        (&tess, "teacher", &physics),
        (&sam, "student", &physics),
        (&uma, "teacher", &history),
    ] {
        create(
            &control,
            &admin,
            &format!("/api/v1/courses/{course}/members"),
            json!({ "user_id": who, "role": role }),
        )
        .await;
    }
    let bad_role = control
        .call(
            "POST",
            &format!("/api/v1/courses/{physics}/members"),
            Some(&admin),
            Some(&json!({ "user_id": sam, "role": "admin" })),
        )
        .await;
    assert_eq!(bad_role.status, 400);
    let north = "a".repeat(64);
    let south = "b".repeat(64);
    for (edge, name, capacity) in [(&north, "North campus", 100), (&south, "South campus", 100)] {
        create(
            &control,
            &admin,
            "/api/v1/edges",
            json!({ "id": edge, "name": name, "peer_addr": "127.0.0.1:7081", "public_url": "https://north.school.example", "capacity": capacity }),
        )
        .await;
    }
    let disabled = control
        .call(
            "POST",
            &format!("/api/v1/edges/{south}/status"),
            Some(&admin),
            Some(&json!({ "status": "disabled" })),
        )
        .await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);

    // API keys for scripts: Tess and Sam sign in and make one each.
    let tess_key = key_of(&control, "tess@school.example", "Tess Teacher's passphrase").await;
    let sam_key = key_of(&control, "sam@school.example", "Sam Student's passphrase").await;
    let weak = control
        .call(
            "POST",
            "/api/v1/users",
            Some(&admin),
            Some(&json!({ "email": "w@school.example", "name": "W", "password": "short" })),
        )
        .await;
    assert_eq!((weak.status, code(&weak)), (400, "weak_password".into()));

    // Scheduling.
    let now = multistream_control::db::now_ms();
    let start = now + 48 * HOUR;
    let session = |starts: i64, ends: i64, room: Option<&str>| {
        json!({
            "course_id": physics, "title": "Optics", "starts_at": at(starts), "ends_at": at(ends),
            "home_edge_id": north, "room": room, "capacity": 30, "plugins": ["polls"],
        })
    };
    let optics = create(
        &control,
        &tess_key,
        "/api/v1/sessions",
        session(start, start + HOUR, Some("B12")),
    )
    .await;
    assert_eq!(optics["status"], "scheduled");
    assert_eq!(
        optics["teacher_id"].as_str(),
        Some(tess.as_str()),
        "a teacher's session is theirs"
    );
    let refusals: [(Value, u16, &str); 8] = [
        (session(start + HOUR, start, None), 422, "ends_before_start"),
        // No edge here records yet: a class that requires a recording cannot be booked.
        (
            json!({ "recording_policy": "required" }),
            422,
            "recorder_unavailable",
        ),
        (
            json!({ "home_edge_id": "c".repeat(64) }),
            422,
            "unknown_edge",
        ),
        (json!({ "home_edge_id": south }), 422, "edge_unavailable"),
        (json!({ "capacity": 101 }), 422, "above_edge_capacity"),
        (
            json!({ "starts_at": at(start + HOUR / 2), "ends_at": at(start + 2 * HOUR), "room": null }),
            409,
            "teacher_busy",
        ),
        (json!({ "starts_at": "tomorrow at nine" }), 400, "bad_time"),
        (json!({ "capacity": 0 }), 422, "bad_capacity"),
    ];
    for (change, status, expected) in refusals {
        let mut body = session(start + 3 * HOUR, start + 4 * HOUR, None);
        for (key, value) in change.as_object().expect("an object") {
            body[key] = value.clone();
        }
        let response = control
            .call("POST", "/api/v1/sessions", Some(&tess_key), Some(&body))
            .await;
        assert_eq!(
            (response.status, code(&response)),
            (status, expected.to_owned()),
            "{}",
            response.body
        );
    }
    // The room is taken by another teacher's class at the same time.
    let room_clash =
        create_as_admin_for(&control, &admin, &uma, &history, &north, start, Some("B12")).await;
    assert_eq!(
        (room_clash.status, code(&room_clash)),
        (409, "room_busy".into()),
        "{}",
        room_clash.body
    );
    let elsewhere =
        create_as_admin_for(&control, &admin, &uma, &history, &north, start, Some("C3")).await;
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.body);

    // Bad requests: wrong content type, too large, not JSON, unknown fields.
    let raw = |content_type: &'static str, body: Vec<u8>| {
        let key = tess_key.clone();
        let addr = control.addr;
        async move {
            multistream_tests::http::request(
                addr,
                "POST",
                "/api/v1/sessions",
                &[
                    ("Authorization", &format!("Bearer {key}")),
                    ("Content-Type", content_type),
                ],
                &body,
            )
            .await
            .expect("answers")
        }
    };
    assert_eq!(raw("text/plain", b"{}".to_vec()).await.status, 415);
    assert_eq!(
        raw("application/json", vec![b' '; 70_000]).await.status,
        413
    );
    assert_eq!(
        raw("application/json", b"{not json".to_vec()).await.status,
        400
    );
    let unknown = raw(
        "application/json",
        br#"{"course_id":"x","sneaky":1}"#.to_vec(),
    )
    .await;
    assert_eq!((unknown.status, code(&unknown)), (400, "bad_json".into()));

    // Who may do what.
    let optics_id = optics["id"].as_str().expect("an id").to_owned();
    let student_books = control
        .call(
            "POST",
            "/api/v1/sessions",
            Some(&sam_key),
            Some(&session(start + 5 * HOUR, start + 6 * HOUR, None)),
        )
        .await;
    assert_eq!(
        student_books.status, 403,
        "a student cannot schedule: {}",
        student_books.body
    );
    let student_sees = control
        .call(
            "GET",
            &format!("/api/v1/sessions?course={physics}"),
            Some(&sam_key),
            None,
        )
        .await;
    assert_eq!(
        json(&student_sees)["sessions"].as_array().map(Vec::len),
        Some(1),
        "{}",
        student_sees.body
    );
    assert_eq!(
        control
            .call(
                "POST",
                &format!("/api/v1/sessions/{optics_id}/cancel"),
                Some(&sam_key),
                None
            )
            .await
            .status,
        403
    );
    assert_eq!(
        control
            .call("GET", "/api/v1/users", Some(&tess_key), None)
            .await
            .status,
        403,
        "only admins list people"
    );
    assert_eq!(
        control
            .call(
                "POST",
                "/api/v1/courses",
                Some(&tess_key),
                Some(&json!({"code": "X", "title": "X"}))
            )
            .await
            .status,
        403
    );
    // A teacher sees only their courses.
    let courses = json(
        &control
            .call("GET", "/api/v1/courses", Some(&tess_key), None)
            .await,
    );
    let codes: Vec<&str> = courses["courses"]
        .as_array()
        .expect("courses")
        .iter()
        .filter_map(|c| c["code"].as_str())
        .collect();
    assert_eq!(codes, vec!["PHY-101"]);
    let history_session = json(&elsewhere)["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        control
            .call(
                "GET",
                &format!("/api/v1/sessions/{history_session}"),
                Some(&tess_key),
                None
            )
            .await
            .status,
        404
    );
    // A teacher schedules only themselves, and only in their courses.
    let mut for_uma = session(start + 7 * HOUR, start + 8 * HOUR, None);
    for_uma["teacher_id"] = json!(uma);
    assert_eq!(
        control
            .call("POST", "/api/v1/sessions", Some(&tess_key), Some(&for_uma))
            .await
            .status,
        403
    );
    let mut in_history = session(start + 7 * HOUR, start + 8 * HOUR, None);
    in_history["course_id"] = json!(history);
    assert_eq!(
        control
            .call(
                "POST",
                "/api/v1/sessions",
                Some(&tess_key),
                Some(&in_history)
            )
            .await
            .status,
        403
    );

    // Starting: not days early; within the margin, yes.
    let early = control
        .call(
            "POST",
            &format!("/api/v1/sessions/{optics_id}/start"),
            Some(&tess_key),
            None,
        )
        .await;
    assert_eq!(
        (early.status, code(&early)),
        (409, "too_early".into()),
        "{}",
        early.body
    );
    let soon = create(
        &control,
        &tess_key,
        "/api/v1/sessions",
        session(now + 10 * 60_000, now + HOUR, None),
    )
    .await;
    let soon_id = soon["id"].as_str().expect("an id").to_owned();
    let started = control
        .call(
            "POST",
            &format!("/api/v1/sessions/{soon_id}/start"),
            Some(&tess_key),
            None,
        )
        .await;
    assert_eq!(
        (started.status, json(&started)["status"].clone()),
        (200, json!("live")),
        "{}",
        started.body
    );

    // Join tokens: each person gets their own, with the role their course gives them.
    let teacher_join = control
        .call(
            "POST",
            &format!("/api/v1/sessions/{soon_id}/join-token"),
            Some(&tess_key),
            None,
        )
        .await;
    assert_eq!(teacher_join.status, 200, "{}", teacher_join.body);
    let teacher_join = json(&teacher_join);
    assert_eq!(teacher_join["role"], "teacher");
    let link = teacher_join["link"].as_str().expect("a link");
    assert!(
        link.starts_with(&format!("https://north.school.example/s/{soon_id}#token=")),
        "{link}"
    );
    let student_join = json(
        &control
            .call(
                "POST",
                &format!("/api/v1/sessions/{soon_id}/join-token"),
                Some(&sam_key),
                None,
            )
            .await,
    );
    assert_eq!(student_join["role"], "student");
    let for_tess = json!({ "user_id": tess });
    let sam_for_tess = control
        .call(
            "POST",
            &format!("/api/v1/sessions/{soon_id}/join-token"),
            Some(&sam_key),
            Some(&for_tess),
        )
        .await;
    assert_eq!(
        sam_for_tess.status, 403,
        "a student cannot issue tokens for others"
    );
    let for_uma = json!({ "user_id": uma });
    let outsider = control
        .call(
            "POST",
            &format!("/api/v1/sessions/{soon_id}/join-token"),
            Some(&admin),
            Some(&for_uma),
        )
        .await;
    assert_eq!(
        outsider.status, 403,
        "Uma has no role in Physics: {}",
        outsider.body
    );
    let issuer = json(&control.call("GET", "/api/v1/issuer", None, None).await);
    assert_eq!(
        issuer["public_key"].as_str(),
        Some(control.issuer_public.as_str())
    );

    // Editing re-checks the rules; a cancelled session cannot start.
    let clash = control
        .call(
            "PATCH",
            &format!("/api/v1/sessions/{optics_id}"),
            Some(&tess_key),
            Some(&json!({ "starts_at": at(now + 20 * 60_000), "ends_at": at(now + 40 * 60_000) })),
        )
        .await;
    assert_eq!(
        (clash.status, code(&clash)),
        (409, "teacher_busy".into()),
        "{}",
        clash.body
    );
    let moved = control
        .call(
            "PATCH",
            &format!("/api/v1/sessions/{optics_id}"),
            Some(&tess_key),
            Some(&json!({ "title": "Optics II", "capacity": 40 })),
        )
        .await;
    assert_eq!(
        (moved.status, json(&moved)["title"].clone()),
        (200, json!("Optics II")),
        "{}",
        moved.body
    );
    assert_eq!(
        control
            .call(
                "POST",
                &format!("/api/v1/sessions/{optics_id}/cancel"),
                Some(&tess_key),
                None
            )
            .await
            .status,
        200
    );
    let cancelled = control
        .call(
            "POST",
            &format!("/api/v1/sessions/{optics_id}/start"),
            Some(&tess_key),
            None,
        )
        .await;
    assert_eq!(
        (cancelled.status, code(&cancelled)),
        (409, "cancelled".into())
    );

    // A revoked key stops working.
    let spare = api_key(&control, &admin, "spare").await;
    let spare_id = json(&control.call("GET", "/api/v1/me", Some(&spare), None).await)["id"].clone();
    assert_eq!(spare_id, json!(control.admin_id));
    let keys = json(
        &create_raw(
            &control,
            &admin,
            "/api/v1/api-keys",
            json!({ "name": "to revoke" }),
        )
        .await,
    );
    let revoked = control
        .call(
            "DELETE",
            &format!("/api/v1/api-keys/{}", keys["id"].as_str().expect("id")),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(revoked.status, 204);
    assert_eq!(
        control
            .call(
                "GET",
                "/api/v1/me",
                Some(keys["key"].as_str().expect("key")),
                None
            )
            .await
            .status,
        401
    );

    // Enrolment codes: admins only, a bounded lifetime, good once and only until they expire.
    let refused = control
        .call("POST", "/api/v1/enrolment-codes", Some(&tess_key), None)
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    for minutes in [0, 7 * 24 * 60 + 1] {
        let bad = control
            .call(
                "POST",
                "/api/v1/enrolment-codes",
                Some(&admin),
                Some(&json!({ "minutes": minutes })),
            )
            .await;
        assert_eq!(
            (bad.status, code(&bad)),
            (400, "bad_field".into()),
            "{}",
            bad.body
        );
    }
    let enrol = |code: &str, node: char| {
        json!({ "code": code, "node_id": node.to_string().repeat(64), "name": "Annex",
                "peer_addr": "127.0.0.1:9", "public_url": "http://127.0.0.1:9", "capacity": 5 })
    };
    let stale = create(
        &control,
        &admin,
        "/api/v1/enrolment-codes",
        json!({ "minutes": 5 }),
    )
    .await;
    let stale = stale["code"].as_str().expect("a code").to_owned();
    // Its five minutes pass (the clock is the database's row, moved back).
    sqlx::query("UPDATE enrolment_codes SET expires_at = $1")
        .bind(multistream_control::db::now_ms() - 1)
        .execute(&control.db.pool)
        .await
        .expect("the code's expiry moves back");
    let expired = control
        .call("POST", "/api/v1/enrol", None, Some(&enrol(&stale, 'd')))
        .await;
    assert_eq!(
        (expired.status, code(&expired)),
        (401, "bad_code".into()),
        "{}",
        expired.body
    );
    let fresh = create(&control, &admin, "/api/v1/enrolment-codes", json!({})).await;
    let fresh = fresh["code"].as_str().expect("a code").to_owned();
    let enrolled = control
        .call("POST", "/api/v1/enrol", None, Some(&enrol(&fresh, 'd')))
        .await;
    assert_eq!(enrolled.status, 201, "{}", enrolled.body);
    let secret = json(&enrolled)["secret"]
        .as_str()
        .expect("a secret")
        .to_owned();
    let again = control
        .call("POST", "/api/v1/enrol", None, Some(&enrol(&fresh, 'f')))
        .await;
    assert_eq!(
        (again.status, code(&again)),
        (401, "bad_code".into()),
        "{}",
        again.body
    );
    // Its check-ins: with its secret only, and a bad address in one is refused.
    let heartbeat = format!("/api/v1/edges/{}/heartbeat", "d".repeat(64));
    let wrong = control
        .call("POST", &heartbeat, Some("edge_wrong"), Some(&json!({})))
        .await;
    assert_eq!(
        (wrong.status, code(&wrong)),
        (401, "unknown_edge".into()),
        "{}",
        wrong.body
    );
    let moved = control
        .call(
            "POST",
            &heartbeat,
            Some(&secret),
            Some(&json!({ "load": 3, "sessions": 1, "name": "Annex", "public_url": "ftp://annex", "peer_addr": "127.0.0.1:9" })),
        )
        .await;
    assert_eq!(
        (moved.status, code(&moved)),
        (400, "bad_field".into()),
        "{}",
        moved.body
    );
    let checked_in = control
        .call(
            "POST",
            &heartbeat,
            Some(&secret),
            Some(&json!({ "load": 3, "sessions": 1, "name": "Annex", "public_url": "http://127.0.0.1:10", "peer_addr": "127.0.0.1:11", "recorder": true })),
        )
        .await;
    assert_eq!(checked_in.status, 200, "{}", checked_in.body);
    let inventory = json(
        &control
            .call("GET", "/api/v1/edges", Some(&admin), None)
            .await,
    );
    let annex = inventory["edges"]
        .as_array()
        .and_then(|edges| edges.iter().find(|e| e["id"] == "d".repeat(64)))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (
            &annex["public_url"],
            &annex["peer_addr"],
            &annex["load"],
            &annex["sessions"],
            &annex["health"]
        ),
        (
            &json!("http://127.0.0.1:10"),
            &json!("127.0.0.1:11"),
            &json!(3),
            &json!(1),
            &json!("healthy")
        ),
        "{inventory}"
    );
    // An edge that says it records may take a class that requires a recording.
    let recorded = control
        .call(
            "POST",
            "/api/v1/sessions",
            Some(&admin),
            Some(&json!({
                "course_id": history, "title": "Recorded lecture", "starts_at": at(start + 30 * HOUR),
                "ends_at": at(start + 31 * HOUR), "teacher_id": uma, "home_edge_id": "d".repeat(64),
                "capacity": 5, "recording_policy": "required",
            })),
        )
        .await;
    assert_eq!(recorded.status, 201, "{}", recorded.body);
    assert_eq!(annex["recorder"], true, "{inventory}");

    // Signing out ends the cookie.
    assert_eq!(
        control
            .call("POST", "/api/v1/sign-out", Some(&admin), None)
            .await
            .status,
        204
    );
    assert_eq!(
        control
            .call("GET", "/api/v1/me", Some(&admin), None)
            .await
            .status,
        401
    );
    control.stop().await;
}

async fn create_raw(
    control: &Control,
    auth: &str,
    path: &str,
    body: Value,
) -> multistream_tests::http::Response {
    control.call("POST", path, Some(auth), Some(&body)).await
}

/// Signs in as someone and makes them an API key.
async fn key_of(control: &Control, email: &str, password: &str) -> String {
    let cookie = control
        .sign_in(email, password)
        .await
        .expect("they sign in");
    api_key(control, &cookie, "a script").await
}

async fn create_as_admin_for(
    control: &Control,
    admin: &str,
    teacher: &str,
    course: &str,
    edge: &str,
    start: i64,
    room: Option<&str>,
) -> multistream_tests::http::Response {
    let body = json!({
        "course_id": course, "title": "Revolutions", "starts_at": at(start), "ends_at": at(start + HOUR),
        "teacher_id": teacher, "home_edge_id": edge, "room": room, "capacity": 25,
    });
    control
        .call("POST", "/api/v1/sessions", Some(admin), Some(&body))
        .await
}

/// An edge that trusts the control plane's key admits the people it issued tokens for, with
/// the role the control plane gave them, and no call to the control plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_admits_the_control_planes_tokens() {
    let control = Control::start("control-edge", Backend::Sqlite)
        .await
        .expect("the control plane starts");
    let admin = control
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect("signs in");
    let edge = multistream_tests::node_process::NodeProcess::start_with(
        "control-edge-node",
        &["--trust-issuer", &control.issuer_public],
    )
    .expect("the edge starts");
    let edge_id = multistream_tests::node_process::node_id(&edge.data_dir).expect("its id");
    create(
        &control,
        &admin,
        "/api/v1/edges",
        json!({ "id": edge_id, "name": "North campus", "peer_addr": "127.0.0.1:7081", "public_url": edge.base_url, "capacity": 100 }),
    )
    .await;
    let course = create(
        &control,
        &admin,
        "/api/v1/courses",
        json!({ "code": "BIO-1", "title": "Biology" }),
    )
    .await;
    let course = course["id"].as_str().expect("an id").to_owned();
    let teacher = create(
        &control,
        &admin,
        "/api/v1/users",
        json!({ "email": "t@school.example", "name": "Tara Teacher" }),
    )
    .await;
    let teacher = teacher["id"].as_str().expect("an id").to_owned();
    create(
        &control,
        &admin,
        &format!("/api/v1/courses/{course}/members"),
        json!({ "user_id": teacher, "role": "teacher" }),
    )
    .await;
    let now = multistream_control::db::now_ms();
    let session = create(
        &control,
        &admin,
        "/api/v1/sessions",
        json!({ "course_id": course, "title": "Cells", "starts_at": at(now), "ends_at": at(now + HOUR), "teacher_id": teacher, "home_edge_id": edge_id, "capacity": 30 }),
    )
    .await;
    let session = session["id"].as_str().expect("an id").to_owned();
    let join = json(
        &control
            .call(
                "POST",
                &format!("/api/v1/sessions/{session}/join-token"),
                Some(&admin),
                Some(&json!({ "user_id": teacher })),
            )
            .await,
    );
    let token = join["token"].as_str().expect("a token");
    let mut class =
        multistream_tests::classroom::ClassClient::connect(edge.http, &session, token, None)
            .await
            .expect("the edge admits the control plane's token");
    let joined = class
        .wait_for(|m| {
            matches!(m, multistream_proto::wire::ServerMessage::Welcome { .. })
                || matches!(m, multistream_proto::wire::ServerMessage::Roster { .. })
        })
        .await
        .expect("the class answers");
    let _ = joined;
    class.leave().await;
    // The same claims signed by a control plane the edge does not trust are refused.
    let forged = forged_token(&session, token);
    let refused =
        multistream_tests::classroom::ClassClient::connect(edge.http, &session, &forged, None)
            .await;
    assert!(
        refused.is_err(),
        "a token from an untrusted issuer is refused"
    );
    assert!(edge.stop());
    control.stop().await;
}

/// A teacher's token for `session`, signed by a control plane the edge does not trust.
fn forged_token(session: &str, claims_from: &str) -> String {
    let dir = multistream_tests::node_process::fresh_data_dir("control-stranger");
    std::fs::create_dir_all(&dir).expect("a directory");
    let stranger = multistream_control::issuer::ControlIssuer::load_or_create(&dir).expect("a key");
    let mut claims: multistream_proto::Claims = {
        let payload = claims_from.split('.').nth(1).expect("a payload");
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .expect("base64url");
        serde_json::from_slice(&bytes).expect("claims")
    };
    claims.iss = stranger.name().to_owned();
    assert_eq!(claims.sid.as_str(), session);
    let _ = std::fs::remove_dir_all(&dir);
    stranger.sign(&claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_on_postgresql() {
    scenario(Backend::Postgres).await;
}

async fn chat(class: &mut multistream_tests::classroom::ClassClient, text: &str) {
    let answer = class
        .command(multistream_proto::session::Command::Chat { text: text.into() })
        .await
        .expect("the class answers");
    assert!(
        matches!(answer, multistream_tests::classroom::Answer::Ack(_)),
        "{answer:?}"
    );
}

async fn hears(class: &mut multistream_tests::classroom::ClassClient, text: &str) {
    class
        .wait_for_event(|e| matches!(&e.body, multistream_proto::session::EventBody::Chat { text: t } if t == text))
        .await
        .unwrap_or_else(|error| panic!("{text:?} does not arrive: {error}"));
}

/// Two real edges enrol with the control plane (one-time codes; the second learns of the first,
/// the first of the second at its next start); a session is scheduled on one; a teacher and a
/// student join with the control plane's tokens, on different edges. Then the control plane
/// stops: the class goes on, and a student with a token issued before can still join. A session
/// the control plane cancelled is refused by the edge from the schedule it keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_goes_on_when_the_control_plane_stops() {
    use multistream_tests::classroom::ClassClient;
    use multistream_tests::cluster::Cluster;
    use multistream_tests::node_process::NodeProcess;

    let control = Control::start("control-class", Backend::Sqlite)
        .await
        .expect("the control plane starts");
    let admin = control
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect("signs in");
    let url = format!("http://{}", control.addr);
    let cluster = Cluster::new("control-class-edges", 2).expect("two edge directories");
    let mut edges = Vec::new();
    for (i, name) in [(0, "North campus"), (1, "South campus")] {
        let code = create(
            &control,
            &admin,
            "/api/v1/enrolment-codes",
            json!({ "minutes": 10 }),
        )
        .await;
        let code = code["code"].as_str().expect("a code").to_owned();
        let edge = cluster
            .start_reaching(
                i,
                &[],
                &[
                    "--control-url",
                    &url,
                    "--enrolment-code",
                    &code,
                    "--edge-name",
                    name,
                    "--campus-network",
                    CAMPUS[i],
                ],
            )
            .expect("the edge enrols and starts");
        // A code is good once.
        if i == 0 {
            let again = control
                .call("POST", "/api/v1/enrol", None, Some(&json!({ "code": code, "node_id": "e".repeat(64), "name": "Thief", "peer_addr": "127.0.0.1:9", "public_url": "http://127.0.0.1:9", "capacity": 5 })))
                .await;
            assert_eq!(
                (again.status, code_of(&again)),
                (401, "bad_code".into()),
                "{}",
                again.body
            );
        }
        edges.push(edge);
    }
    // Edge 0 enrolled before edge 1 existed: it says it needs a restart to link with it (the
    // edges agree on each class's home from one membership list), and the inventory shows so.
    edges[0]
        .wait_for_metric(
            "multistream_control_restart_needed",
            std::time::Duration::from_secs(20),
            |v| v == 1.0,
        )
        .await
        .expect("edge 0 notices the new edge");
    let north = edge_listed(&control, &admin, "North campus", |e| {
        e["restart_needed"] == true
    })
    .await;
    assert_eq!(north["health"], "healthy", "{north}");
    // It learns of it at its next start, which needs no code any more.
    let (clean, dir0) = edges.remove(0).stop_keeping_data();
    assert!(clean);
    let edge0 = NodeProcess::start_in(
        dir0,
        &[
            "--peer-addr",
            &cluster.peer_addrs[0],
            "--control-url",
            &url,
            "--edge-name",
            "North campus",
            "--campus-network",
            CAMPUS[0],
        ],
    )
    .expect("edge 0 restarts");
    let edge1 = edges.remove(0);
    for (node, peer) in [(&edge0, 1), (&edge1, 0)] {
        node.wait_for_metric(
            &format!("multistream_peer_link_up{{peer=\"{}\"}}", cluster.ids[peer]),
            std::time::Duration::from_secs(20),
            |v| v == 1.0,
        )
        .await
        .expect("the edges the control plane listed link up");
    }
    let inventory = json(
        &control
            .call("GET", "/api/v1/edges", Some(&admin), None)
            .await,
    );
    let listed: Vec<&str> = inventory["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(listed, vec!["North campus", "South campus"], "{inventory}");

    // A class on edge 0.
    let course = create(
        &control,
        &admin,
        "/api/v1/courses",
        json!({ "code": "GEO-3", "title": "Geography" }),
    )
    .await;
    let course = course["id"].as_str().expect("an id").to_owned();
    let mut people = Vec::new();
    for (email, name, role) in [
        ("tom@school.example", "Tom Teacher", "teacher"),
        ("sue@school.example", "Sue Student", "student"),
        ("ned@school.example", "Ned Newcomer", "student"),
    ] {
        let user = create(
            &control,
            &admin,
            "/api/v1/users",
            json!({ "email": email, "name": name }),
        )
        .await;
        let id = user["id"].as_str().expect("an id").to_owned();
        create(
            &control,
            &admin,
            &format!("/api/v1/courses/{course}/members"),
            json!({ "user_id": id, "role": role }),
        )
        .await;
        people.push(id);
    }
    let now = multistream_control::db::now_ms();
    let class = |title: &str, starts: i64| json!({ "course_id": course, "title": title, "starts_at": at(starts), "ends_at": at(starts + HOUR), "teacher_id": people[0], "home_edge_id": cluster.ids[0], "capacity": 30 });
    let rivers = create(&control, &admin, "/api/v1/sessions", class("Rivers", now)).await;
    let rivers = rivers["id"].as_str().expect("an id").to_owned();
    let token = |user: &str| {
        let (control, admin, rivers) = (&control, admin.clone(), rivers.clone());
        let user = user.to_owned();
        async move {
            let join = json(
                &control
                    .call(
                        "POST",
                        &format!("/api/v1/sessions/{rivers}/join-token"),
                        Some(&admin),
                        Some(&json!({ "user_id": user })),
                    )
                    .await,
            );
            join["token"].as_str().expect("a token").to_owned()
        }
    };
    let (tom, sue, ned) = (
        token(&people[0]).await,
        token(&people[1]).await,
        token(&people[2]).await,
    );
    let mut teacher = ClassClient::connect(edge0.http, &rivers, &tom, None)
        .await
        .expect("the teacher joins on edge 0");
    let mut student = ClassClient::connect(edge1.http, &rivers, &sue, None)
        .await
        .expect("the student joins on edge 1");
    chat(&mut teacher, "Good morning, both campuses").await;
    hears(&mut student, "Good morning, both campuses").await;

    // The inventory: each edge has the class on, and edge 0 runs with the current membership.
    for name in ["North campus", "South campus"] {
        let edge = edge_listed(&control, &admin, name, |e| e["sessions"] == 1).await;
        assert_eq!(
            (&edge["health"], &edge["restart_needed"]),
            (&json!("healthy"), &json!(false)),
            "{edge}"
        );
    }

    // The join link lands on the home edge, which places its holder: from South campus's
    // network, on South campus, with the same token (the edges trust the control plane's key).
    let link = json(
        &control
            .call(
                "POST",
                &format!("/api/v1/sessions/{rivers}/join-token"),
                Some(&admin),
                Some(&json!({ "user_id": people[2] })),
            )
            .await,
    );
    let link = link["link"].as_str().expect("a link").to_owned();
    assert!(
        link.starts_with(&format!("http://{}/s/{rivers}#token=", edge0.http)),
        "{link}"
    );
    let placed = place(edge0.http, &rivers, &ned, CAMPUS_HOST[1]).await;
    assert_eq!(placed["placement"]["reason"], "campus", "{placed}");
    assert_eq!(
        placed["redirect"],
        format!("http://{}/s/{rivers}", edge1.http),
        "{placed}"
    );
    let here = place(edge0.http, &rivers, &ned, CAMPUS_HOST[0]).await;
    assert!(here.get("redirect").is_none(), "{here}");
    let forged = multistream_tests::http::request_from(
        CAMPUS_HOST[1].parse().expect("an address"),
        edge0.http,
        "POST",
        &format!("/api/sessions/{rivers}/place"),
        &[("Authorization", "Bearer not-a-token")],
        b"{}",
    )
    .await
    .expect("answers");
    assert_eq!(forged.status, 401, "{}", forged.body);

    // South campus is drained: its own campus is placed on North campus now, by either edge,
    // and its class goes on.
    let drained = control
        .call(
            "POST",
            &format!("/api/v1/edges/{}/status", cluster.ids[1]),
            Some(&admin),
            Some(&json!({ "status": "draining" })),
        )
        .await;
    assert_eq!(drained.status, 200, "{}", drained.body);
    edge1
        .wait_for_metric(
            "multistream_control_takes_newcomers",
            std::time::Duration::from_secs(20),
            |v| v == 0.0,
        )
        .await
        .expect("edge 1 hears it is drained");
    // It tells its peers at its next report (every 2 s).
    let to_north = json!(format!("http://{}/s/{rivers}", edge0.http));
    let away = placed_until(edge1.http, &rivers, &ned, CAMPUS_HOST[1], |a| {
        a["redirect"] == to_north
    })
    .await;
    assert_eq!(away["placement"]["reason"], "only_choice", "{away}");
    placed_until(edge0.http, &rivers, &ned, CAMPUS_HOST[1], |a| {
        a.get("redirect").is_none()
    })
    .await;
    chat(&mut teacher, "Still here on both campuses").await;
    hears(&mut student, "Still here on both campuses").await;

    // A cancelled session: the edge refuses it from the schedule it keeps.
    let later = create(
        &control,
        &admin,
        "/api/v1/sessions",
        class("Deltas", now + 2 * HOUR),
    )
    .await;
    let later = later["id"].as_str().expect("an id").to_owned();
    let later_token = json(
        &control
            .call(
                "POST",
                &format!("/api/v1/sessions/{later}/join-token"),
                Some(&admin),
                Some(&json!({ "user_id": people[1] })),
            )
            .await,
    );
    let later_token = later_token["token"].as_str().expect("a token").to_owned();
    assert_eq!(
        control
            .call(
                "POST",
                &format!("/api/v1/sessions/{later}/cancel"),
                Some(&admin),
                None
            )
            .await
            .status,
        200
    );
    edge0
        .wait_for_metric(
            "multistream_control_sessions_scheduled",
            std::time::Duration::from_secs(20),
            |v| v == 2.0,
        )
        .await
        .expect("the schedule reaches the edge");
    let mut refused = false;
    for _ in 0..50 {
        if ClassClient::connect(edge0.http, &later, &later_token, None)
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "a cancelled session is refused");

    // The control plane stops; the class goes on, and a newcomer with a token joins.
    control.stop().await;
    edge1
        .wait_for_metric(
            "multistream_control_heartbeats_total{outcome=\"failed\"}",
            std::time::Duration::from_secs(20),
            |v| v >= 1.0,
        )
        .await
        .expect("the edge notices the control plane is gone");
    chat(&mut teacher, "The river bends here").await;
    hears(&mut student, "The river bends here").await;
    let mut newcomer = ClassClient::connect(edge1.http, &rivers, &ned, None)
        .await
        .expect("a newcomer joins without the control plane");
    chat(&mut student, "Welcome, Ned").await;
    hears(&mut newcomer, "Welcome, Ned").await;
    hears(&mut teacher, "Welcome, Ned").await;
    for class in [teacher, student, newcomer] {
        class.leave().await;
    }
    assert!(edge1.stop());
    assert!(edge0.stop());
}

/// The campus networks of the two edges in [`a_class_goes_on_when_the_control_plane_stops`], and
/// an address in each that a test client sends from.
const CAMPUS: [&str; 2] = ["127.0.0.21/32", "127.0.0.22/32"];
const CAMPUS_HOST: [&str; 2] = ["127.0.0.21", "127.0.0.22"];

/// Asks `edge` where the holder of `token` should be, as a browser at `from` that measured
/// nothing.
async fn place(edge: std::net::SocketAddr, session: &str, token: &str, from: &str) -> Value {
    let answer = multistream_tests::http::request_from(
        from.parse().expect("an address"),
        edge,
        "POST",
        &format!("/api/sessions/{session}/place"),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    )
    .await
    .expect("the edge answers");
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).expect("JSON")
}

/// [`place`] until its answer is as `expected` (within 20 s: news of a drained edge spreads in
/// a check-in and a report).
async fn placed_until(
    edge: std::net::SocketAddr,
    session: &str,
    token: &str,
    from: &str,
    expected: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let answer = place(edge, session, token, from).await;
        if expected(&answer) {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the placement is not as expected: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The edge named `name` in the control plane's inventory, once `ready` holds for it (edges
/// check in every second in tests).
async fn edge_listed(
    control: &Control,
    admin: &str,
    name: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let inventory = json(
            &control
                .call("GET", "/api/v1/edges", Some(admin), None)
                .await,
        );
        let edge = inventory["edges"]
            .as_array()
            .and_then(|edges| edges.iter().find(|e| e["name"] == name))
            .cloned()
            .unwrap_or(Value::Null);
        if ready(&edge) {
            return edge;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} is not as expected in the inventory: {inventory}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn code_of(response: &multistream_tests::http::Response) -> String {
    code(response)
}

/// An admin uploads a signed plugin package (the control plane reads its manifest in a
/// sandbox), approves it and rolls it out; an enrolled edge fetches it at its next check-in,
/// checks the signature against the approved signer and loads it. Bad uploads are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_rolled_out_reaches_the_edges() {
    use multistream_tests::node_process::NodeProcess;

    // Over HTTPS, as a control plane on any address but loopback serves: the edge trusts its
    // self-signed certificate with --control-ca, and only that.
    let control = Control::start_with("control-plugins", Backend::Sqlite, true)
        .await
        .expect("the control plane starts");
    let (ca, _) = control.tls.clone().expect("served over TLS");
    let signed_in = control
        .call(
            "POST",
            "/api/v1/sign-in",
            None,
            Some(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
        )
        .await;
    let cookie = signed_in.header("set-cookie").unwrap_or_default();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "an HTTPS control plane's cookie is Secure: {cookie}"
    );
    let admin = control
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect("signs in");
    let enrolment = create(&control, &admin, "/api/v1/enrolment-codes", json!({})).await;
    let enrolment = enrolment["code"].as_str().expect("a code").to_owned();
    let url = control.url();
    assert!(url.starts_with("https://"), "{url}");
    // Without the certificate the edge cannot trust the control plane, and says so.
    let untrusting = NodeProcess::start_with(
        "control-plugins-untrusting",
        &["--control-url", &url, "--enrolment-code", &enrolment],
    );
    assert!(
        untrusting.is_err(),
        "an edge enrolled with a control plane it cannot authenticate"
    );
    let ca = ca.to_string_lossy().into_owned();
    let edge = NodeProcess::start_with(
        "control-plugins-edge",
        &[
            "--control-url",
            &url,
            "--enrolment-code",
            &enrolment,
            "--control-ca",
            &ca,
        ],
    )
    .expect("the edge enrols over HTTPS");

    let dir = multistream_tests::node_process::fresh_data_dir("control-plugins-signing");
    let (key, public) = crate::plugins::signing_key(&dir, "school.key");
    let package = crate::plugins::cli(&[
        "plugin-sign",
        "--key",
        &key.to_string_lossy(),
        "--out",
        &dir.to_string_lossy(),
        &crate::plugins::wasm("multistream_plugin_polls_next.wasm").to_string_lossy(),
    ]);
    let bytes = std::fs::read(&package).expect("the package");
    let upload = |content_type: &'static str, body: Vec<u8>| {
        let (control, admin) = (&control, admin.clone());
        async move {
            control
                .send(
                    "POST",
                    "/api/v1/plugins",
                    &[("Cookie", &admin), ("Content-Type", content_type)],
                    &body,
                )
                .await
        }
    };
    assert_eq!(upload("application/json", bytes.clone()).await.status, 415);
    let garbage = upload("application/octet-stream", b"not a package".to_vec()).await;
    assert_eq!(
        (garbage.status, code(&garbage)),
        (400, "bad_package".into()),
        "{}",
        garbage.body
    );
    let mut altered = bytes.clone();
    let last = altered.len() - 1;
    altered[last] ^= 0xff;
    let altered = upload("application/octet-stream", altered).await;
    assert_eq!(
        (altered.status, code(&altered)),
        (400, "bad_package".into()),
        "{}",
        altered.body
    );
    let uploaded = upload("application/octet-stream", bytes.clone()).await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.body);
    let uploaded = json(&uploaded);
    assert_eq!(uploaded["signer"].as_str(), Some(public.as_str()));
    assert_eq!(uploaded["manifest"]["name"], "polls");
    assert_eq!(uploaded["manifest"]["version"], "0.2.0-next");
    assert!(
        uploaded["manifest"]["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "show-panel")),
        "{uploaded}"
    );
    let again = upload("application/octet-stream", bytes).await;
    assert_eq!((again.status, code(&again)), (409, "version_exists".into()));
    let id = uploaded["id"].as_str().expect("an id").to_owned();
    let early = control
        .call(
            "POST",
            &format!("/api/v1/plugins/{id}/rollout"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((early.status, code(&early)), (409, "not_approved".into()));
    assert_eq!(
        control
            .call(
                "POST",
                &format!("/api/v1/plugins/{id}/approve"),
                Some(&admin),
                None
            )
            .await
            .status,
        200
    );
    assert_eq!(
        control
            .call(
                "POST",
                &format!("/api/v1/plugins/{id}/rollout"),
                Some(&admin),
                None
            )
            .await
            .status,
        200
    );
    let listed = json(
        &control
            .call("GET", "/api/v1/plugins", Some(&admin), None)
            .await,
    );
    assert_eq!(listed["plugins"][0]["rolled_out"], true, "{listed}");

    // The edge fetches it and loads it: polls moves to the rolled-out version.
    edge.wait_for_metric(
        "multistream_control_plugins_installed_total",
        std::time::Duration::from_secs(20),
        |v| v == 1.0,
    )
    .await
    .expect("the edge installs the rolled-out package");
    let mut version = Value::Null;
    for _ in 0..100 {
        let offered = multistream_tests::http::request(edge.http, "GET", "/api/plugins", &[], b"")
            .await
            .expect("answers");
        let offered: Value = serde_json::from_str(&offered.body).expect("JSON");
        version = offered["plugins"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "polls"))
            .map_or(Value::Null, |p| p["version"].clone());
        if version == "0.2.0-next" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        version, "0.2.0-next",
        "the edge runs the rolled-out version"
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(edge.stop());
    control.stop().await;
}
