//! The control plane benchmark: the real service ([`crate::control::Control`]) on a fresh SQLite
//! or PostgreSQL database in this process, and HTTP clients beside it on the same multi-thread
//! runtime. It measures:
//! - sessions scheduled per second through `POST /api/v1/sessions`, by one client and by many
//!   at once, each client booking its own teacher's lessons an hour apart so no booking collides
//!   (no rooms); with the latency of each request;
//! - join tokens issued through `POST /api/v1/sessions/{id}/join-token` by 50 clients at once,
//!   each a student asking with their own API key, then an administrator's script asking for the
//!   students of the course in turn; with the latency of each request.
//!
//! Every request opens its own TCP connection ([`crate::http::request`] sends
//! `Connection: close`), so connection set-up is part of every latency. Any refusal stops the
//! measurement with the response: a figure is only printed for requests that all succeeded.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::control::{ADMIN_EMAIL, ADMIN_PASSWORD, Backend, Control, POSTGRES_ENV};
use crate::http::{Response, request};

/// Clients scheduling at once: one alone, then the 50.
pub const SCHEDULING_CLIENTS: [usize; 2] = [1, 50];

/// Clients asking for join tokens at once (the figure).
pub const TOKEN_CLIENTS: usize = 50;

/// Students enrolled in the course of the session tokens are issued for. The first
/// [`TOKEN_CLIENTS`] have a password and an API key of their own.
pub const STUDENTS_ENROLLED: usize = 1_000;

/// Sessions one run schedules at most: with one client, a lesson an hour, that is 11 years.
pub const SESSIONS_MAX: usize = 100_000;

/// Setup requests in flight at once: setup is not measured, only kept short.
const SETUP_AT_ONCE: usize = 16;

/// One teacher's lessons start this far apart and last [`LESSON_MS`], so none overlaps another.
const LESSON_SPACING_MS: i64 = 3_600_000;
const LESSON_MS: i64 = 50 * 60_000;

/// Participants per session, and the benchmark edge's limit (above every session's).
const SESSION_CAPACITY: i64 = 30;
const EDGE_CAPACITY: i64 = 1_000;

/// Milliseconds in a day: lessons are booked from tomorrow on.
const DAY_MS: i64 = 86_400_000;

/// How long the join-token clients run: a number of requests each, or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLoad {
    PerClient(usize),
    Seconds(u64),
}

/// Who asks for the join tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// Each client is a student with their own API key, asking for their own token.
    Students,
    /// Each client is an administrator's script (one API key) asking for the students of the
    /// course in turn (`{"user_id": …}`).
    Admin,
}

/// What a run of requests measured: latencies sorted, in microseconds.
#[derive(Debug, Clone)]
pub struct Figures {
    pub elapsed: Duration,
    pub latency_us: Vec<u32>,
}

impl Figures {
    pub fn requests(&self) -> usize {
        self.latency_us.len()
    }

    pub fn per_second(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// The latency at `percent`, in milliseconds.
    pub fn percentile_ms(&self, percent: usize) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        let index = (self.latency_us.len() - 1) * percent / 100;
        f64::from(self.latency_us[index]) / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency_us
            .last()
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    }
}

/// The backend's name in a table.
pub fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    }
}

/// One scheduling run.
#[derive(Debug, Clone)]
pub struct SchedulingRow {
    pub backend: Backend,
    pub clients: usize,
    pub figures: Figures,
}

impl SchedulingRow {
    pub fn header() -> &'static str {
        "| backend | clients | sessions | seconds | sessions/s | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    }

    pub fn line(&self) -> String {
        let f = &self.figures;
        format!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} |",
            backend_name(self.backend),
            self.clients,
            f.requests(),
            f.elapsed.as_secs_f64(),
            f.per_second(),
            f.percentile_ms(50),
            f.percentile_ms(99),
            f.max_ms(),
        )
    }
}

/// One join-token run.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub backend: Backend,
    pub asker: Asker,
    pub figures: Figures,
}

impl TokenRow {
    pub fn header() -> &'static str {
        "| backend | who asks | clients | requests | seconds | requests/s | p50 ms | p99 ms | max ms |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    }

    pub fn line(&self) -> String {
        let f = &self.figures;
        let asker = match self.asker {
            Asker::Students => "each a student, own API key".to_owned(),
            Asker::Admin => format!("admin key, for {STUDENTS_ENROLLED} students in turn"),
        };
        format!(
            "| {} | {asker} | {TOKEN_CLIENTS} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} |",
            backend_name(self.backend),
            f.requests(),
            f.elapsed.as_secs_f64(),
            f.per_second(),
            f.percentile_ms(50),
            f.percentile_ms(99),
            f.max_ms(),
        )
    }
}

/// Refuses PostgreSQL when there is no server to run it on, rather than skipping it.
pub fn check_backends(backends: &[Backend]) -> Result<(), String> {
    if backends.contains(&Backend::Postgres) && std::env::var_os(POSTGRES_ENV).is_none() {
        return Err(format!(
            "PostgreSQL was asked for but {POSTGRES_ENV} is not set: set it to the URL of a role \
             that may create databases (postgres://user:password@127.0.0.1:5432/db), or pass \
             --backends sqlite"
        ));
    }
    Ok(())
}

/// Schedules `sessions` sessions by `clients` clients at once on a fresh database.
pub async fn measure_scheduling(
    backend: Backend,
    clients: usize,
    sessions: usize,
) -> Result<SchedulingRow, String> {
    let name = format!("controlbench-{backend:?}-schedule-{clients}").to_lowercase();
    let control = Control::start(&name, backend).await?;
    let figures = scheduling(control.addr, clients, sessions).await;
    control.stop().await;
    Ok(SchedulingRow {
        backend,
        clients,
        figures: figures?,
    })
}

async fn scheduling(addr: SocketAddr, clients: usize, sessions: usize) -> Result<Figures, String> {
    let admin = admin_key(addr).await?;
    let edge = register_edge(addr, &admin).await?;
    // One course and one teacher per client, so that concurrent bookings never wait on each
    // other's teacher.
    let teachers = in_parallel(clients, |k| {
        let admin = admin.clone();
        async move {
            let teacher = id_of(
                &created(
                    addr,
                    "/api/v1/users",
                    &admin,
                    &json!({
                        "email": format!("teacher{k}@bench.example"),
                        "name": format!("Teacher {k}"),
                    }),
                )
                .await?,
            )?;
            let course = id_of(
                &created(
                    addr,
                    "/api/v1/courses",
                    &admin,
                    &json!({ "code": format!("BENCH-{k}"), "title": format!("Course {k}") }),
                )
                .await?,
            )?;
            created(
                addr,
                &format!("/api/v1/courses/{course}/members"),
                &admin,
                &json!({ "user_id": teacher, "role": "teacher" }),
            )
            .await?;
            Ok((teacher, course))
        }
    })
    .await?;
    let first = tomorrow_ms();
    run_clients(clients, |k| {
        let (teacher, course) = teachers[k].clone();
        let (admin, edge) = (admin.clone(), edge.clone());
        // The sessions shared out as evenly as they go.
        let count = sessions / clients + usize::from(k < sessions % clients);
        async move {
            let mut latency = Vec::with_capacity(count);
            let mut starts_at = first;
            for lesson in 0..count {
                let body = json!({
                    "course_id": course,
                    "title": format!("Lesson {lesson}"),
                    "starts_at": crate::control::rfc3339_utc(starts_at),
                    "ends_at": crate::control::rfc3339_utc(starts_at + LESSON_MS),
                    "teacher_id": teacher,
                    "home_edge_id": edge,
                    "capacity": SESSION_CAPACITY,
                });
                let started = Instant::now();
                let response = call(addr, "POST", "/api/v1/sessions", &admin, Some(&body)).await?;
                latency.push(micros(started.elapsed()));
                expect(&response, 201, "POST /api/v1/sessions")?;
                starts_at += LESSON_SPACING_MS;
            }
            Ok(latency)
        }
    })
    .await
}

/// Issues join tokens from [`TOKEN_CLIENTS`] clients at once on a fresh database: one run with
/// students asking for themselves, one with an administrator asking for them.
pub async fn measure_tokens(backend: Backend, load: TokenLoad) -> Result<Vec<TokenRow>, String> {
    let name = format!("controlbench-{backend:?}-tokens").to_lowercase();
    let control = Control::start(&name, backend).await?;
    let rows = tokens(control.addr, backend, load).await;
    control.stop().await;
    rows
}

async fn tokens(
    addr: SocketAddr,
    backend: Backend,
    load: TokenLoad,
) -> Result<Vec<TokenRow>, String> {
    let admin = admin_key(addr).await?;
    let edge = register_edge(addr, &admin).await?;
    let teacher = id_of(
        &created(
            addr,
            "/api/v1/users",
            &admin,
            &json!({ "email": "teacher@bench.example", "name": "Tess Teacher" }),
        )
        .await?,
    )?;
    let course = id_of(
        &created(
            addr,
            "/api/v1/courses",
            &admin,
            &json!({ "code": "BENCH", "title": "Benchmarks" }),
        )
        .await?,
    )?;
    add_member(addr, &admin, &course, &teacher, "teacher").await?;
    let starts_at = tomorrow_ms();
    let session = id_of(
        &created(
            addr,
            "/api/v1/sessions",
            &admin,
            &json!({
                "course_id": course,
                "title": "The lecture",
                "starts_at": crate::control::rfc3339_utc(starts_at),
                "ends_at": crate::control::rfc3339_utc(starts_at + LESSON_MS),
                "teacher_id": teacher,
                "home_edge_id": edge,
                "capacity": SESSION_CAPACITY,
            }),
        )
        .await?,
    )?;
    // The students: the first TOKEN_CLIENTS sign in (argon2, slow on purpose) and make a key.
    let students = in_parallel(STUDENTS_ENROLLED, |k| {
        let (admin, course) = (admin.clone(), course.clone());
        async move {
            let email = format!("student{k}@bench.example");
            let password = format!("student {k}'s passphrase");
            let mut user = json!({ "email": email, "name": format!("Student {k}") });
            if k < TOKEN_CLIENTS {
                user["password"] = json!(password);
            }
            let student = id_of(&created(addr, "/api/v1/users", &admin, &user).await?)?;
            add_member(addr, &admin, &course, &student, "student").await?;
            let key = if k < TOKEN_CLIENTS {
                let cookie = sign_in(addr, &email, &password).await?;
                Some(new_api_key(addr, &cookie).await?)
            } else {
                None
            };
            Ok((student, key))
        }
    })
    .await?;
    let path = format!("/api/v1/sessions/{session}/join-token");
    let mut rows = Vec::new();
    for asker in [Asker::Students, Asker::Admin] {
        let figures = run_clients(TOKEN_CLIENTS, |k| {
            let path = path.clone();
            let admin = admin.clone();
            let student_key = students[k].1.clone();
            let student_ids: Vec<String> = match asker {
                Asker::Students => Vec::new(),
                Asker::Admin => students.iter().map(|(id, _)| id.clone()).collect(),
            };
            async move {
                let started = Instant::now();
                let mut latency = Vec::new();
                let mut done = 0usize;
                let more = |done: usize| match load {
                    TokenLoad::PerClient(count) => done < count,
                    TokenLoad::Seconds(seconds) => started.elapsed() < Duration::from_secs(seconds),
                };
                while more(done) {
                    let (key, body) = match asker {
                        Asker::Students => {
                            (student_key.clone().ok_or("a student without a key")?, None)
                        }
                        Asker::Admin => {
                            // Client k asks for students k, k + 50, k + 100, …
                            let student =
                                &student_ids[(k + done * TOKEN_CLIENTS) % student_ids.len()];
                            (admin.clone(), Some(json!({ "user_id": student })))
                        }
                    };
                    let asked = Instant::now();
                    let response = call(addr, "POST", &path, &key, body.as_ref()).await?;
                    latency.push(micros(asked.elapsed()));
                    expect(&response, 200, "POST …/join-token")?;
                    done += 1;
                }
                Ok(latency)
            }
        })
        .await?;
        rows.push(TokenRow {
            backend,
            asker,
            figures,
        });
    }
    Ok(rows)
}

/// Runs `clients` clients at once, each returning its requests' latencies in microseconds; the
/// elapsed time runs from the first client's start to the last one's end.
async fn run_clients<F, Fut>(clients: usize, client: F) -> Result<Figures, String>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Vec<u32>, String>> + Send + 'static,
{
    let mut jobs = Vec::with_capacity(clients);
    for k in 0..clients {
        jobs.push(client(k));
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for job in jobs {
        set.spawn(job);
    }
    let mut latency_us = Vec::new();
    while let Some(joined) = set.join_next().await {
        // Dropping the set on an error aborts the other clients.
        latency_us.extend(joined.map_err(|e| format!("a client task failed: {e}"))??);
    }
    let elapsed = started.elapsed();
    latency_us.sort_unstable();
    Ok(Figures {
        elapsed,
        latency_us,
    })
}

/// Runs `make(0..count)` with at most [`SETUP_AT_ONCE`] in flight; the results in order.
async fn in_parallel<T, F, Fut>(count: usize, make: F) -> Result<Vec<T>, String>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    let mut set = JoinSet::new();
    let mut next = 0;
    while next < count || !set.is_empty() {
        while next < count && set.len() < SETUP_AT_ONCE {
            let job = make(next);
            let index = next;
            set.spawn(async move { (index, job.await) });
            next += 1;
        }
        if let Some(joined) = set.join_next().await {
            let (index, result) = joined.map_err(|e| format!("a setup task failed: {e}"))?;
            results[index] = Some(result?);
        }
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| "a setup task gave no answer".to_owned()))
        .collect()
}

/// One request; `auth` is a cookie (`ms_admin=…`) or an API key.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: Option<&Value>,
) -> Result<Response, String> {
    let text = body.map(Value::to_string).unwrap_or_default();
    let authorisation = if auth.starts_with("ms_admin=") {
        ("Cookie", auth.to_owned())
    } else {
        ("Authorization", format!("Bearer {auth}"))
    };
    let mut headers = vec![(authorisation.0, authorisation.1.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    request(addr, method, path, &headers, text.as_bytes())
        .await
        .map_err(|e| format!("{method} {path}: {e}"))
}

fn expect(response: &Response, status: u16, what: &str) -> Result<(), String> {
    if response.status == status {
        Ok(())
    } else {
        Err(format!(
            "{what} answered {} (not {status}): {}",
            response.status, response.body
        ))
    }
}

/// A POST that must create something; its JSON answer.
async fn created(addr: SocketAddr, path: &str, auth: &str, body: &Value) -> Result<Value, String> {
    let response = call(addr, "POST", path, auth, Some(body)).await?;
    expect(&response, 201, &format!("POST {path}"))?;
    serde_json::from_str(&response.body).map_err(|e| format!("POST {path}: not JSON: {e}"))
}

fn id_of(value: &Value) -> Result<String, String> {
    value["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no id in {value}"))
}

async fn add_member(
    addr: SocketAddr,
    admin: &str,
    course: &str,
    user: &str,
    role: &str,
) -> Result<(), String> {
    created(
        addr,
        &format!("/api/v1/courses/{course}/members"),
        admin,
        &json!({ "user_id": user, "role": role }),
    )
    .await
    .map(drop)
}

async fn sign_in(addr: SocketAddr, email: &str, password: &str) -> Result<String, String> {
    let body = json!({ "email": email, "password": password }).to_string();
    let response = request(
        addr,
        "POST",
        "/api/v1/sign-in",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
    .map_err(|e| format!("signing in: {e}"))?;
    expect(&response, 200, "POST /api/v1/sign-in")?;
    response
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| "signing in set no cookie".to_owned())
}

async fn new_api_key(addr: SocketAddr, cookie: &str) -> Result<String, String> {
    let key = created(
        addr,
        "/api/v1/api-keys",
        cookie,
        &json!({ "name": "bench" }),
    )
    .await?;
    key["key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no key in {key}"))
}

/// The first administrator signs in and makes an API key, as a script would.
async fn admin_key(addr: SocketAddr) -> Result<String, String> {
    let cookie = sign_in(addr, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    new_api_key(addr, &cookie).await
}

/// Registers the one edge every session is booked on; its id.
async fn register_edge(addr: SocketAddr, admin: &str) -> Result<String, String> {
    let edge = created(
        addr,
        "/api/v1/edges",
        admin,
        &json!({
            "id": "e".repeat(64),
            "name": "Bench campus",
            "peer_addr": "127.0.0.1:7081",
            "public_url": "https://bench.school.example",
            "capacity": EDGE_CAPACITY,
        }),
    )
    .await?;
    id_of(&edge)
}

fn micros(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

/// Midnight UTC after tomorrow's, in milliseconds since the epoch: every lesson is in the future.
fn tomorrow_ms() -> i64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    (now_ms.div_euclid(DAY_MS) + 2) * DAY_MS
}
