//! The control plane's admin UI and its OpenAPI description, against the real service in this
//! process (over a fresh SQLite file):
//! - the OpenAPI description at `/api/v1/openapi.json` parses, every `$ref` in it resolves, and it
//!   documents exactly the routes the API's routers register (read from their source: a route
//!   added without documenting it fails here), each of which the live service answers;
//! - the UI's page and assets carry a strict Content-Security-Policy and `nosniff`, and the page
//!   has no inline script or style;
//! - the read-only endpoints the UI adds (a course's members, API keys, enrolment codes) answer
//!   whom they should, and never show a secret;
//! - in Chromium (`tests/e2e/admin.mjs`): an administrator signs in with the keyboard, creates a
//!   course, a teacher and an edge, makes an enrolment code, uploads (after a refused garbage
//!   file), approves and rolls out a signed plugin package, schedules, lists and edits a
//!   session, and sees refusals.
//!
//! The browser test needs `node`, Chromium and `tests/e2e/node_modules` (the README's test command
//! installs them); a missing browser fails the test, it is never skipped.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use multistream_tests::control::{ADMIN_EMAIL, ADMIN_PASSWORD, Backend, Control, json};
use multistream_tests::http::request;
use serde_json::{Value, json};

/// The whole browser scenario's limit; the script has its own 60-second bound inside.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(120);

/// The one source whose routes are not the API: the admin UI's pages (`web.rs`). Every other
/// module of `control/src` that registers a route is part of the HTTP API and must be described.
const PAGES_SOURCE: &str = "web.rs";

/// The HTTP methods axum's method routers are made with.
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every `(method, path)` the routers in `source` register: the path literal that opens each
/// `.route(` call and the method functions (`get(…)`, `.post(…)`, …) among its arguments.
fn routes_in(file: &str, source: &str) -> BTreeSet<(String, String)> {
    // Comments may mention `.route(`; only code counts.
    let code: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut routes = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find(".route(") {
        let after = &rest[at + ".route(".len()..];
        let (mut depth, mut in_string, mut escaped, mut end) = (1usize, false, false, None);
        for (i, c) in after.char_indices() {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_string = true,
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.unwrap_or_else(|| panic!("{file}: a .route( call does not close"));
        let arguments = after[..end].trim_start();
        rest = &after[end..];
        let path = arguments
            .strip_prefix('"')
            .and_then(|a| a.split_once('"'))
            .map(|(path, handlers)| (path.to_owned(), handlers.to_owned()));
        let Some((path, handlers)) = path else {
            panic!(
                "{file}: a route's path is not a string literal ({}…); write it out so this test \
                 can compare the routes with the OpenAPI description",
                &arguments[..arguments.len().min(40)]
            );
        };
        // Handlers' own string literals (a closure answering "ok") are not code.
        let handlers: String = handlers.split('"').step_by(2).collect();
        let mut found = false;
        for method in METHODS {
            let call = format!("{method}(");
            let mut from = 0;
            while let Some(offset) = handlers[from..].find(&call) {
                let start = from + offset;
                let before = handlers[..start].chars().next_back();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                    routes.insert((method.to_owned(), path.clone()));
                    found = true;
                }
                from = start + call.len();
            }
        }
        assert!(
            found,
            "{file}: the route {path} has no method this test recognises"
        );
    }
    routes
}

/// The routes of the API's routers, from their source: every module of `control/src` but the
/// pages' (a new module with its own router is covered without being listed here).
fn source_routes() -> BTreeSet<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../control/src");
    let mut routes = BTreeSet::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("control/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with(PAGES_SOURCE) {
            files.push(path);
        }
    }
    for path in files {
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        routes.extend(routes_in(&path.display().to_string(), &source));
    }
    // The reading works: a route of api.rs and one of admin_api.rs are among them.
    for known in [("post", "/api/v1/sign-in"), ("get", "/api/v1/openapi.json")] {
        assert!(
            routes.contains(&(known.0.to_owned(), known.1.to_owned())),
            "{known:?} is not among the routes read from control/src: {routes:?}"
        );
    }
    routes
}

/// The operations an OpenAPI document describes, as `(method, path)`.
fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"]
        .as_object()
        .expect("the description has paths");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                assert!(
                    operation["responses"].is_object(),
                    "{method} {path} has no responses"
                );
                assert!(
                    operation["summary"].is_string(),
                    "{method} {path} has no summary"
                );
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

/// Checks that every `$ref` in `value` points at something in `document`; returns how many.
fn check_refs(document: &Value, value: &Value) -> usize {
    match value {
        Value::Object(map) => {
            let mut count = 0;
            if let Some(reference) = map.get("$ref") {
                let pointer = reference
                    .as_str()
                    .and_then(|r| r.strip_prefix('#'))
                    .unwrap_or_else(|| panic!("$ref {reference} is not a local reference"));
                assert!(
                    document.pointer(pointer).is_some(),
                    "$ref {reference} points at nothing"
                );
                count += 1;
            }
            count + map.values().map(|v| check_refs(document, v)).sum::<usize>()
        }
        Value::Array(items) => items.iter().map(|v| check_refs(document, v)).sum(),
        _ => 0,
    }
}

/// The path with every `{parameter}` filled in with `x`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "x"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_documents_every_route() {
    let control = Control::start("control-openapi", Backend::Sqlite)
        .await
        .expect("the control plane starts");

    let response = control
        .call("GET", "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        response.headers
    );
    let document = json(&response);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "an OpenAPI 3.1 document: {}",
        document["openapi"]
    );
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["cookie"]["type"], "apiKey");
    assert_eq!(schemes["cookie"]["in"], "cookie");
    assert_eq!(schemes["cookie"]["name"], "ms_admin");
    assert_eq!(schemes["apiKey"]["type"], "http");
    assert_eq!(schemes["apiKey"]["scheme"], "bearer");
    let error = &document["components"]["schemas"]["Error"];
    assert_eq!(error["required"], json!(["error", "message"]));
    assert!(error["properties"]["detail"].is_object());
    let references = check_refs(&document, &document);
    assert!(references > 50, "only {references} $refs?");

    // The description and the routers agree, both ways.
    let registered = source_routes();
    let documented = documented_routes(&document);
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes registered but not in control/openapi.json: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(
        stale.is_empty(),
        "control/openapi.json describes routes no router registers: {stale:?}"
    );

    // And the live service answers each documented operation (unauthenticated: a refusal is
    // fine, "no such route" or "no such method" is not).
    for (method, path) in &documented {
        let path = concrete(path);
        let response = request(
            control.addr,
            &method.to_uppercase(),
            &path,
            &[("Content-Length", "0")],
            b"",
        )
        .await
        .expect("the control plane answers");
        assert!(
            response.status != 404 && response.status != 405,
            "{method} {path}: {} {}",
            response.status,
            response.body
        );
    }
    control.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_is_served_under_a_strict_policy() {
    let control = Control::start("control-ui-headers", Backend::Sqlite)
        .await
        .expect("the control plane starts");
    for path in ["/", "/admin", "/admin/app.js", "/admin/style.css"] {
        let response = control.call("GET", path, None, None).await;
        assert_eq!(response.status, 200, "GET {path}");
        let policy = response
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("GET {path} has no Content-Security-Policy"));
        assert!(policy.contains("default-src 'self'"), "{policy}");
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "GET {path}"
        );
        let expected = match path {
            "/admin/app.js" => "text/javascript",
            "/admin/style.css" => "text/css",
            _ => "text/html",
        };
        assert!(
            response
                .header("content-type")
                .is_some_and(|t| t.starts_with(expected)),
            "GET {path}: {:?}",
            response.header("content-type")
        );
    }
    assert_eq!(
        control
            .call("GET", "/admin/secrets.txt", None, None)
            .await
            .status,
        404
    );
    // Nothing inline: the policy would block it, so it must not be there to need it.
    let page = control.call("GET", "/", None, None).await.body;
    for script in page.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap_or_default();
        assert!(tag.contains("src="), "an inline script: <script{tag}>");
    }
    assert!(!page.contains("<style"), "an inline stylesheet");
    assert!(!page.contains(" style="), "an inline style attribute");
    assert!(
        !page.to_lowercase().contains(" onclick="),
        "an inline event handler"
    );
    // Every form field has a label.
    for id in page
        .split(" id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
    {
        let field = page
            .split(&format!(" id=\"{id}\""))
            .next()
            .and_then(|before| before.rsplit('<').next())
            .unwrap_or_default();
        if (field.starts_with("input") && !field.contains("readonly")
            || field.starts_with("select"))
            && !field.contains("type=\"hidden\"")
        {
            assert!(
                page.contains(&format!("for=\"{id}\"")),
                "the field #{id} has no <label for>"
            );
        }
    }
    control.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_api_keys_are_listed_to_whom_they_should_be() {
    let control = Control::start("control-ui-lists", Backend::Sqlite)
        .await
        .expect("the control plane starts");
    let admin = control
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect("the admin signs in");
    let post = async |auth: &str, path: &str, body: Value| {
        let response = control.call("POST", path, Some(auth), Some(&body)).await;
        assert_eq!(response.status, 201, "POST {path}: {}", response.body);
        json(&response)
    };
    let course = post(
        &admin,
        "/api/v1/courses",
        json!({ "code": "PHY-101", "title": "Physics" }),
    )
    .await["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let members_path = format!("/api/v1/courses/{course}/members");
    let members = control.call("GET", &members_path, Some(&admin), None).await;
    assert_eq!(members.status, 200, "{}", members.body);
    assert_eq!(json(&members)["members"], json!([]));

    let person = async |email: &str, role: &str| {
        let user = post(
            &admin,
            "/api/v1/users",
            json!({ "email": email, "name": email, "password": "a long enough password" }),
        )
        .await;
        let id = user["id"].as_str().expect("an id").to_owned();
        post(
            &admin,
            &members_path,
            json!({ "user_id": id, "role": role }),
        )
        .await;
        let cookie = control
            .sign_in(email, "a long enough password")
            .await
            .expect("they sign in");
        (id, cookie)
    };
    let (teacher_id, teacher) = person("teacher@school.example", "teacher").await;
    let (_, student) = person("student@school.example", "student").await;

    // The course's teacher and an admin see who is in it; a student does not; nobody sees
    // another organisation's course or a course that does not exist.
    for auth in [&admin, &teacher] {
        let members = control.call("GET", &members_path, Some(auth), None).await;
        assert_eq!(members.status, 200, "{}", members.body);
        let roles: Vec<(String, String)> = json(&members)["members"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|m| {
                (
                    m["email"].as_str().unwrap_or_default().to_owned(),
                    m["role"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            roles,
            vec![
                ("student@school.example".into(), "student".into()),
                ("teacher@school.example".into(), "teacher".into()),
            ]
        );
    }
    let refused = control
        .call("GET", &members_path, Some(&student), None)
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(json(&refused)["error"], "forbidden");
    let missing = control
        .call("GET", "/api/v1/courses/nope/members", Some(&admin), None)
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(json(&missing)["error"], "not_found");
    assert_eq!(
        control.call("GET", &members_path, None, None).await.status,
        401
    );

    // API keys: one's own (never the key itself); an admin sees the organisation's.
    let key = post(&teacher, "/api/v1/api-keys", json!({ "name": "timetable" })).await;
    let secret = key["key"].as_str().expect("a key").to_owned();
    let listed = control
        .call("GET", "/api/v1/api-keys", Some(&teacher), None)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        !listed.body.contains(&secret),
        "a listed key shows its secret"
    );
    let keys = json(&listed)["api_keys"].clone();
    assert_eq!(keys.as_array().map(Vec::len), Some(1), "{keys}");
    assert_eq!(keys[0]["name"], "timetable");
    assert_eq!(keys[0]["owner"]["id"], teacher_id.as_str());
    assert_eq!(keys[0]["revoked_at"], Value::Null);
    let student_keys = control
        .call("GET", "/api/v1/api-keys", Some(&student), None)
        .await;
    assert_eq!(json(&student_keys)["api_keys"], json!([]));
    // The key itself works for listing, and revoking shows.
    let by_key = control
        .call("GET", "/api/v1/api-keys", Some(&secret), None)
        .await;
    assert_eq!(by_key.status, 200, "{}", by_key.body);
    assert!(json(&by_key)["api_keys"][0]["last_used_at"].is_string());
    let revoke = control
        .call(
            "DELETE",
            &format!("/api/v1/api-keys/{}", key["id"].as_str().expect("an id")),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(revoke.status, 204, "{}", revoke.body);
    let all = json(
        &control
            .call("GET", "/api/v1/api-keys", Some(&admin), None)
            .await,
    );
    assert!(all["api_keys"][0]["revoked_at"].is_string(), "{all}");
    control.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_codes_are_listed_to_administrators_only_on_sqlite() {
    enrolment_codes_are_listed_to_administrators_only(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_codes_are_listed_to_administrators_only_on_postgresql() {
    enrolment_codes_are_listed_to_administrators_only(Backend::Postgres).await;
}

/// Enrolment codes are listed to administrators only, newest first, each open, used (by which
/// edge) or expired, under an opaque id: never the code, nor the whole of its hash. (On both
/// databases: the list joins the edges for the name of the one that used a code.)
async fn enrolment_codes_are_listed_to_administrators_only(backend: Backend) {
    use multistream_control::db::{now_ms, sha256_hex};

    let control = Control::start(&format!("control-ui-enrolment-codes-{backend:?}"), backend)
        .await
        .expect("the control plane starts");
    let admin = control
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect("the admin signs in");
    let post = async |auth: Option<&str>, path: &str, body: Value| {
        let response = control.call("POST", path, auth, Some(&body)).await;
        assert_eq!(response.status, 201, "POST {path}: {}", response.body);
        json(&response)
    };
    let list = async |auth: Option<&str>| {
        control
            .call("GET", "/api/v1/enrolment-codes", auth, None)
            .await
    };
    let empty = list(Some(&admin)).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(json(&empty)["enrolment_codes"], json!([]));

    // A teacher of a course, with a cookie and an API key.
    let course = post(
        Some(&admin),
        "/api/v1/courses",
        json!({ "code": "PHY-101", "title": "Physics" }),
    )
    .await;
    let teacher = post(
        Some(&admin),
        "/api/v1/users",
        json!({
            "email": "teacher@school.example",
            "name": "Teacher",
            "password": "a long enough password",
        }),
    )
    .await;
    post(
        Some(&admin),
        &format!(
            "/api/v1/courses/{}/members",
            course["id"].as_str().expect("an id")
        ),
        json!({ "user_id": teacher["id"], "role": "teacher" }),
    )
    .await;
    let teacher_cookie = control
        .sign_in("teacher@school.example", "a long enough password")
        .await
        .expect("the teacher signs in");
    let teacher_key = post(
        Some(&teacher_cookie),
        "/api/v1/api-keys",
        json!({ "name": "script" }),
    )
    .await["key"]
        .as_str()
        .expect("a key")
        .to_owned();

    // Three codes: one an edge enrols with, one left open, one expired.
    let code_of = |made: &Value| made["code"].as_str().expect("a code").to_owned();
    let used = code_of(
        &post(
            Some(&admin),
            "/api/v1/enrolment-codes",
            json!({ "minutes": 30 }),
        )
        .await,
    );
    let open = code_of(&post(Some(&admin), "/api/v1/enrolment-codes", json!({})).await);
    post(
        None,
        "/api/v1/enrol",
        json!({
            "code": used,
            "node_id": "a".repeat(64),
            "name": "North",
            "peer_addr": "127.0.0.1:9",
            "public_url": "http://127.0.0.1:9",
            "capacity": 5,
        }),
    )
    .await;
    let expired = "enrol_00000000000000000000000000000000";
    sqlx::query(
        "INSERT INTO enrolment_codes (code_hash, created_by, expires_at, created_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(sha256_hex(expired))
    .bind(&control.admin_id)
    .bind(now_ms() - 60_000)
    .bind(now_ms() - 120_000)
    .execute(&control.db.pool)
    .await
    .expect("an expired code is written");

    let listed = list(Some(&admin)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    for code in [&used, &open, &expired.to_owned()] {
        let hex = code.trim_start_matches("enrol_");
        assert!(
            !listed.body.contains(hex),
            "the list shows a code: {}",
            listed.body
        );
        assert!(
            !listed.body.contains(&sha256_hex(code)),
            "the list shows a code's whole hash: {}",
            listed.body
        );
    }
    let codes = json(&listed)["enrolment_codes"].clone();
    let codes = codes.as_array().expect("a list");
    assert_eq!(codes.len(), 3, "{codes:?}");
    let row_of = |code: &str| {
        let hash = sha256_hex(code);
        let rows: Vec<&Value> = codes
            .iter()
            .filter(|row| {
                row["id"]
                    .as_str()
                    .is_some_and(|id| id.len() == 12 && hash.starts_with(id))
            })
            .collect();
        assert_eq!(rows.len(), 1, "{code}'s row by its id: {codes:?}");
        rows[0].clone()
    };
    let (used_row, open_row, expired_row) = (row_of(&used), row_of(&open), row_of(expired));
    assert_eq!(used_row["state"], "used", "{used_row}");
    assert!(used_row["used_at"].is_string(), "{used_row}");
    assert_eq!(
        used_row["used_by"],
        json!({ "id": "a".repeat(64), "name": "North" })
    );
    assert_eq!(open_row["state"], "open", "{open_row}");
    assert_eq!(
        (&open_row["used_at"], &open_row["used_by"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(expired_row["state"], "expired", "{expired_row}");
    for row in [&used_row, &open_row, &expired_row] {
        assert_eq!(row["created_by"]["id"], control.admin_id.as_str());
        assert!(row["created_at"].is_string() && row["expires_at"].is_string());
    }
    // Newest first: the expired code was made before the others.
    assert_eq!(codes[2]["id"], expired_row["id"], "{codes:?}");

    // Nobody else: a teacher's cookie and API key are refused, and no one signed in at all.
    for auth in [&teacher_cookie, &teacher_key] {
        let refused = list(Some(auth)).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert_eq!(json(&refused)["error"], "forbidden");
        assert!(!refused.body.contains("enrol_"), "{}", refused.body);
    }
    assert_eq!(list(None).await.status, 401);
    control.stop().await;
}

/// Runs the e2e script `script` (in `tests/e2e`) with `env`, within [`SCENARIO_DEADLINE`].
async fn run_script(script: &'static str, env: Vec<(&'static str, String)>) {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {} (the README's test command does)",
        e2e.display()
    );
    // The script runs on a blocking thread; the control plane keeps serving on the runtime.
    let status = tokio::task::spawn_blocking(move || {
        let mut command = Command::new("node");
        command.arg(script).current_dir(&e2e);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .expect("`node` (Node.js) runs; install it to run the browser test");
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = done_tx.send(child.wait());
        });
        match done.recv_timeout(SCENARIO_DEADLINE) {
            Ok(status) => status.expect("the script's status"),
            Err(_) => {
                let _ = Command::new("kill").arg(pid.to_string()).status();
                panic!("the browser scenario {script} did not finish within {SCENARIO_DEADLINE:?}");
            }
        }
    })
    .await
    .expect("the script's thread");
    assert!(
        status.success(),
        "the browser scenario {script} failed ({status}); its output is above"
    );
}

/// The admin UI in Chromium (`tests/e2e/admin.mjs`), then what it did, checked through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_schedules_a_session_in_chromium() {
    let control = Control::start("control-ui-browser", Backend::Sqlite)
        .await
        .expect("the control plane starts");
    // A real edge that trusts the control plane's tokens, for the teacher's link.
    let edge = multistream_tests::node_process::NodeProcess::start_with(
        "control-ui-edge",
        &["--trust-issuer", &control.issuer_public],
    )
    .expect("the edge starts");
    let edge_id = multistream_tests::node_process::node_id(&edge.data_dir).expect("its id");
    // A signed plugin package, for the page to upload.
    let signing = multistream_tests::node_process::fresh_data_dir("control-ui-signing");
    let (key, signer) = crate::plugins::signing_key(&signing, "school.key");
    let package = crate::plugins::cli(&[
        "plugin-sign",
        "--key",
        &key.to_string_lossy(),
        "--out",
        &signing.to_string_lossy(),
        &crate::plugins::wasm("multistream_plugin_polls.wasm").to_string_lossy(),
    ]);
    // `<name>-<version>.msplugin`, as `plugin-sign` names it.
    let version = Path::new(&package)
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_prefix("polls-"))
        .and_then(|f| f.strip_suffix(".msplugin"))
        .unwrap_or_else(|| panic!("{package} is not named polls-<version>.msplugin"))
        .to_owned();
    run_script(
        "admin.mjs",
        vec![
            ("CONTROL_URL", format!("http://{}", control.addr)),
            ("ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ("EDGE_ID", edge_id),
            ("EDGE_URL", edge.base_url.clone()),
            ("PLUGIN_PACKAGE", package.clone()),
            ("PLUGIN_NAME", "polls".to_owned()),
            ("PLUGIN_VERSION", version.clone()),
            ("PLUGIN_SIGNER", signer.clone()),
        ],
    )
    .await;
    assert!(edge.stop(), "the edge exits cleanly");
    let _ = std::fs::remove_dir_all(&signing);

    // What the page did is in the database.
    let admin = control
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect("the admin signs in");
    let sessions = json(
        &control
            .call("GET", "/api/v1/sessions", Some(&admin), None)
            .await,
    );
    let sessions = sessions["sessions"].as_array().expect("a list").clone();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    assert_eq!(session["title"], "Waves and sound");
    assert_eq!(session["room"], "Lab 2");
    assert_eq!(session["capacity"], 30);
    assert_eq!(session["recording_policy"], "optional");
    assert_eq!(session["plugins"], json!(["polls", "questions"]));
    assert_eq!(session["status"], "scheduled");
    let teacher = control
        .sign_in("grace@school.example", "teacher passphrase 1")
        .await
        .expect("the teacher made on the page signs in with their password");
    let mine = json(
        &control
            .call("GET", "/api/v1/me", Some(&teacher), None)
            .await,
    );
    assert_eq!(session["teacher_id"], mine["id"]);
    assert_eq!(
        mine["courses"][session["course_id"].as_str().expect("a course")],
        json!(["teacher"])
    );
    let edges = json(
        &control
            .call("GET", "/api/v1/edges", Some(&admin), None)
            .await,
    );
    assert_eq!(edges["edges"][0]["id"], session["home_edge_id"]);
    assert_eq!(
        edges["edges"][0]["status"], "draining",
        "the page drained the edge"
    );

    // The package the page uploaded, approved and rolled out.
    let plugins = json(
        &control
            .call("GET", "/api/v1/plugins", Some(&admin), None)
            .await,
    );
    let plugins = plugins["plugins"].as_array().expect("a list").clone();
    assert_eq!(plugins.len(), 1, "only the signed package: {plugins:?}");
    let plugin = &plugins[0];
    assert_eq!(plugin["name"], "polls");
    assert_eq!(plugin["version"], version.as_str());
    assert_eq!(plugin["signer"], signer.as_str());
    assert_eq!(plugin["approved"], true, "the page approved it: {plugin}");
    assert_eq!(
        (
            &plugin["approved_by"]["name"],
            plugin["approved_at"].is_string()
        ),
        (&json!("Ada Admin"), true),
        "who approved it and when: {plugin}"
    );
    assert_eq!(
        plugin["rolled_out"], true,
        "the page rolled it out: {plugin}"
    );

    // The enrolment code the page made: listed, open, never shown again.
    let listed = control
        .call("GET", "/api/v1/enrolment-codes", Some(&admin), None)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(!listed.body.contains("enrol_"), "{}", listed.body);
    let codes = json(&listed)["enrolment_codes"].clone();
    assert_eq!(codes.as_array().map(Vec::len), Some(1), "{codes}");
    assert_eq!(codes[0]["state"], "open", "{codes}");
    assert_eq!(codes[0]["created_by"]["id"], control.admin_id.as_str());
    control.stop().await;
}
