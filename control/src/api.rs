//! The HTTP API (`/api/v1/...`): people and roles, courses, edges, sessions. Every request is
//! checked here: who asks (cookie or API key), whether their role allows it, the body's type and
//! size, and every field. A refusal is a status code and a JSON body
//! `{"error": "<stable code>", "message": "<for people>"}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use tracing::{info, warn};

use crate::auth::{self, Principal, Role, SignInLimiter};
use crate::db::{Db, new_id, now_ms, random_hex, sha256_hex};
use crate::schedule::{self, Booked, EdgeFacts, Proposal};

/// Largest request body accepted.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// Longest name, title, email, code or room accepted.
pub const TEXT_BYTES_MAX: usize = 200;

/// Plugins one session may switch on at start.
pub const SESSION_PLUGINS_MAX: usize = 16;

/// Rows one list answers with at most.
pub const LIST_ROWS_MAX: i64 = 1_000;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub limiter: Arc<SignInLimiter>,
    /// How early a teacher may start a class.
    pub early_start_ms: i64,
    /// Bookings are checked and written one at a time, so two at once cannot both take the
    /// same teacher or room.
    pub booking: Arc<tokio::sync::Mutex<()>>,
    /// Signs join tokens.
    pub issuer: Arc<crate::issuer::ControlIssuer>,
    /// How often edges check in, in seconds.
    pub heartbeat_secs: u64,
    /// Served over HTTPS: the admin cookie is marked `Secure`.
    pub secure_cookies: bool,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/sign-in", post(sign_in))
        .route("/api/v1/sign-out", post(sign_out))
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/courses", get(list_courses).post(create_course))
        .route("/api/v1/courses/{id}/members", post(add_member))
        .route("/api/v1/api-keys", post(create_api_key))
        .route("/api/v1/api-keys/{id}", delete(revoke_api_key))
        .route("/api/v1/edges", get(list_edges).post(register_edge))
        .route("/api/v1/edges/{id}/status", post(set_edge_status))
        .route("/api/v1/sessions", get(list_sessions).post(create_session))
        .route(
            "/api/v1/sessions/{id}",
            get(get_session).patch(edit_session),
        )
        .route("/api/v1/sessions/{id}/cancel", post(cancel_session))
        .route("/api/v1/sessions/{id}/start", post(start_session))
        .route("/api/v1/sessions/{id}/join-token", post(join_token))
        .route("/api/v1/issuer", get(issuer))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

/// A refusal.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no such {what}"),
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        warn!(%error, "a database request failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database",
            "the database could not answer; try again shortly",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let (Some(detail), Some(object)) = (self.detail, body.as_object_mut()) {
            object.insert("detail".into(), detail);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

pub(crate) type Answer = Result<Response, ApiError>;

/// Reads a JSON body: the content type must say JSON, and every field must parse.
pub(crate) fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<T, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            "send the body as application/json",
        ));
    }
    serde_json::from_slice(bytes).map_err(|error| ApiError::bad("bad_json", error.to_string()))
}

/// A required text field: trimmed, not empty, not too long.
pub(crate) fn text(field: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::bad("bad_field", format!("{field} is empty")));
    }
    if value.len() > TEXT_BYTES_MAX || value.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "bad_field",
            format!("{field} is at most {TEXT_BYTES_MAX} bytes of printable text"),
        ));
    }
    Ok(value.to_owned())
}

/// An RFC 3339 time ("2027-01-11T09:00:00+01:00") as milliseconds since the epoch.
fn time(field: &str, value: &str) -> Result<i64, ApiError> {
    let parsed =
        time::OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
            ApiError::bad(
                "bad_time",
                format!("{field} is not a time like 2027-01-11T09:00:00Z"),
            )
        })?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ApiError::bad("bad_time", format!("{field} is out of range")))
}

pub(crate) fn rfc3339(ms: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

/// The person behind a request: an API key (`Authorization: Bearer mskey_…`) or the admin
/// session cookie.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let unauthorised = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorised",
            "sign in, or send an API key as Authorization: Bearer mskey_…",
        )
    };
    let user = if let Some(value) = headers.get(header::AUTHORIZATION) {
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(unauthorised)?;
        auth::user_of_api_key(&state.db, key.trim()).await?
    } else {
        match cookie(headers, auth::COOKIE) {
            Some(value) => auth::user_of_cookie(&state.db, &value).await?,
            None => None,
        }
    };
    let user = user.ok_or_else(unauthorised)?;
    auth::principal(&state.db, &user)
        .await?
        .ok_or_else(unauthorised)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

pub(crate) fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("only an administrator may do this"))
    }
}

pub(crate) fn created(body: Value) -> Answer {
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

pub(crate) fn ok(body: Value) -> Answer {
    Ok(axum::Json(body).into_response())
}

// ---- Signing in ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
}

async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let request: SignIn = json_body(&headers, &body)?;
    let now = Instant::now();
    if !state.limiter.allows(now, peer.ip(), &request.email) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!(
                "too many failed sign-ins; wait {} minutes",
                auth::SIGN_IN_WINDOW.as_secs() / 60
            ),
        ));
    }
    let row = sqlx::query("SELECT id, password_hash FROM users WHERE email = $1 AND disabled = 0")
        .bind(request.email.trim().to_lowercase())
        .fetch_optional(&state.db.pool)
        .await?;
    let hash: Option<String> = row
        .as_ref()
        .map(|r| r.try_get("password_hash"))
        .transpose()?
        .flatten();
    let password = request.password;
    // Verified off the runtime: argon2 is slow on purpose. An unknown email costs the same.
    let matches = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => auth::verify_password(&password, &hash),
        None => {
            let _ = auth::verify_password(&password, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false);
    let Some(row) = row.filter(|_| matches) else {
        state.limiter.failed(now, peer.ip(), &request.email);
        info!(peer = %peer.ip(), "a sign-in failed");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "that email and password do not match",
        ));
    };
    let user: String = row.try_get("id")?;
    let token = random_hex(32);
    let created_at = now_ms();
    sqlx::query("INSERT INTO admin_sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(sha256_hex(&token))
        .bind(&user)
        .bind(created_at)
        .bind(created_at + auth::ADMIN_SESSION_MS)
        .execute(&state.db.pool)
        .await?;
    info!(%user, "signed in");
    let principal = auth::principal(&state.db, &user)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let mut response = axum::Json(principal_view(&principal)).into_response();
    let cookie = format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        auth::COOKIE,
        auth::ADMIN_SESSION_MS / 1000,
        if state.secure_cookies { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// An argon2id hash of a random password, made once: checking an unknown email against it
/// costs what checking a real one does, so timing does not tell which emails exist.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_password(&random_hex(16)).unwrap_or_default())
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    if let Some(value) = cookie(&headers, auth::COOKIE) {
        sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
            .bind(sha256_hex(&value))
            .execute(&state.db.pool)
            .await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let clear = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        auth::COOKIE,
        if state.secure_cookies { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

fn principal_view(p: &Principal) -> Value {
    let courses: serde_json::Map<String, Value> = p
        .courses
        .iter()
        .map(|(course, roles)| (course.clone(), json!(roles)))
        .collect();
    json!({
        "id": p.user_id,
        "organisation": p.organisation_id,
        "name": p.name,
        "email": p.email,
        "admin": p.admin,
        "courses": courses,
    })
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    ok(principal_view(&principal))
}

// ---- People ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    name: String,
    #[serde(default)]
    password: Option<String>,
    /// `true` makes them an administrator of the organisation.
    #[serde(default)]
    admin: bool,
}

fn email(value: &str) -> Result<String, ApiError> {
    let value = text("email", value)?.to_lowercase();
    let valid = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !value.contains(char::is_whitespace)
    });
    if !valid {
        return Err(ApiError::bad(
            "bad_field",
            "email is not an address like name@school.example",
        ));
    }
    Ok(value)
}

async fn create_user(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let request: NewUser = json_body(&headers, &body)?;
    let email = email(&request.email)?;
    let name = text("name", &request.name)?;
    let hash = match request.password {
        Some(password) => {
            auth::check_new_password(&password).map_err(|m| ApiError::bad("weak_password", m))?;
            Some(
                tokio::task::spawn_blocking(move || auth::hash_password(&password))
                    .await
                    .map_err(|_| ApiError::bad("bad_field", "the password could not be hashed"))?
                    .map_err(|m| ApiError::bad("bad_field", m))?,
            )
        }
        None => None,
    };
    let id = new_id();
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO users (id, organisation_id, email, name, password_hash, disabled, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6)",
    )
    .bind(&id)
    .bind(&principal.organisation_id)
    .bind(&email)
    .bind(&name)
    .bind(hash)
    .bind(now)
    .execute(&state.db.pool)
    .await;
    if let Err(error) = inserted {
        return Err(unique_violation(
            error,
            "email_taken",
            "someone already has that email",
        )?);
    }
    if request.admin {
        grant(&state.db, &id, Role::Admin, None).await?;
    }
    info!(user = %id, by = %principal.user_id, "user created");
    created(json!({ "id": id, "email": email, "name": name, "admin": request.admin }))
}

/// Turns a unique-constraint failure into a 409 with `code`; other errors stay errors.
pub(crate) fn unique_violation(
    error: sqlx::Error,
    code: &'static str,
    message: &str,
) -> Result<ApiError, ApiError> {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Ok(ApiError::new(StatusCode::CONFLICT, code, message))
        }
        _ => Err(error.into()),
    }
}

async fn grant(db: &Db, user: &str, role: Role, course: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO user_roles (id, user_id, role, course_id, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(new_id())
        .bind(user)
        .bind(role.as_str())
        .bind(course)
        .bind(now_ms())
        .execute(&db.pool)
        .await?;
    Ok(())
}

async fn list_users(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let rows = sqlx::query(
        "SELECT id, email, name, disabled FROM users WHERE organisation_id = $1 ORDER BY name, id LIMIT $2",
    )
    .bind(&principal.organisation_id)
    .bind(LIST_ROWS_MAX)
    .fetch_all(&state.db.pool)
    .await?;
    let users: Result<Vec<Value>, sqlx::Error> = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<String, _>("id")?,
                "email": r.try_get::<String, _>("email")?,
                "name": r.try_get::<String, _>("name")?,
                "disabled": r.try_get::<i64, _>("disabled")? != 0,
            }))
        })
        .collect();
    ok(json!({ "users": users? }))
}

// ---- Courses ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCourse {
    code: String,
    title: String,
}

async fn create_course(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let request: NewCourse = json_body(&headers, &body)?;
    let code = text("code", &request.code)?;
    let title = text("title", &request.title)?;
    let id = new_id();
    let inserted = sqlx::query("INSERT INTO courses (id, organisation_id, code, title, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&id)
        .bind(&principal.organisation_id)
        .bind(&code)
        .bind(&title)
        .bind(now_ms())
        .execute(&state.db.pool)
        .await;
    if let Err(error) = inserted {
        return Err(unique_violation(
            error,
            "code_taken",
            "a course already has that code",
        )?);
    }
    created(json!({ "id": id, "code": code, "title": title }))
}

async fn list_courses(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let rows = sqlx::query(
        "SELECT id, code, title FROM courses WHERE organisation_id = $1 ORDER BY code LIMIT $2",
    )
    .bind(&principal.organisation_id)
    .bind(LIST_ROWS_MAX)
    .fetch_all(&state.db.pool)
    .await?;
    let mut courses = Vec::new();
    for row in rows {
        let id: String = row.try_get("id")?;
        if !principal.sees(&id) {
            continue;
        }
        courses.push(json!({
            "id": id,
            "code": row.try_get::<String, _>("code")?,
            "title": row.try_get::<String, _>("title")?,
            "roles": principal.courses.get(&id).cloned().unwrap_or_default(),
        }));
    }
    ok(json!({ "courses": courses }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    user_id: String,
    role: String,
}

async fn add_member(
    State(state): State<AppState>,
    Path(course): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let request: NewMember = json_body(&headers, &body)?;
    let role = match Role::parse(&request.role) {
        Some(Role::Admin) | None => {
            return Err(ApiError::bad(
                "bad_role",
                "a course role is teacher, teaching_assistant, student, guest or captioner",
            ));
        }
        Some(role) => role,
    };
    let in_org = |table: &'static str| {
        let sql = match table {
            "courses" => "SELECT id FROM courses WHERE id = $1 AND organisation_id = $2",
            _ => "SELECT id FROM users WHERE id = $1 AND organisation_id = $2",
        };
        sqlx::query(sql)
    };
    if in_org("courses")
        .bind(&course)
        .bind(&principal.organisation_id)
        .fetch_optional(&state.db.pool)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("course"));
    }
    if in_org("users")
        .bind(&request.user_id)
        .bind(&principal.organisation_id)
        .fetch_optional(&state.db.pool)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("user"));
    }
    if let Err(error) = grant(&state.db, &request.user_id, role, Some(&course)).await {
        return Err(unique_violation(
            error,
            "already_member",
            "they already have that role in this course",
        )?);
    }
    created(json!({ "course": course, "user_id": request.user_id, "role": role }))
}

// ---- API keys ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApiKey {
    name: String,
}

async fn create_api_key(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let request: NewApiKey = json_body(&headers, &body)?;
    let name = text("name", &request.name)?;
    let key = format!("{}{}", auth::API_KEY_PREFIX, random_hex(24));
    let id = new_id();
    sqlx::query("INSERT INTO api_keys (id, user_id, name, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&id)
        .bind(&principal.user_id)
        .bind(&name)
        .bind(sha256_hex(&key))
        .bind(now_ms())
        .execute(&state.db.pool)
        .await?;
    info!(key = %id, user = %principal.user_id, "API key created");
    // The key is shown this once; only its hash is kept.
    created(json!({ "id": id, "name": name, "key": key }))
}

async fn revoke_api_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let row = sqlx::query(
        "SELECT k.user_id FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1 AND u.organisation_id = $2",
    )
    .bind(&id)
    .bind(&principal.organisation_id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("API key"))?;
    let owner: String = row.try_get("user_id")?;
    if owner != principal.user_id && !principal.admin {
        return Err(ApiError::forbidden(
            "only its owner or an administrator may revoke a key",
        ));
    }
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(&id)
        .execute(&state.db.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- Edges ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEdge {
    id: String,
    name: String,
    peer_addr: String,
    public_url: String,
    capacity: i64,
}

async fn register_edge(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let request: NewEdge = json_body(&headers, &body)?;
    let edge = EdgeFields::check(
        &request.id,
        &request.name,
        &request.peer_addr,
        &request.public_url,
        request.capacity,
    )?;
    let inserted = sqlx::query(
        "INSERT INTO edges (id, name, peer_addr, public_url, capacity, status, enrolled_at) VALUES ($1, $2, $3, $4, $5, 'active', $6)",
    )
    .bind(&edge.id)
    .bind(&edge.name)
    .bind(edge.peer_addr.to_string())
    .bind(&edge.public_url)
    .bind(edge.capacity)
    .bind(now_ms())
    .execute(&state.db.pool)
    .await;
    if let Err(error) = inserted {
        return Err(unique_violation(
            error,
            "edge_exists",
            "that edge is already registered",
        )?);
    }
    created(json!({ "id": edge.id, "name": edge.name, "status": "active" }))
}

/// An edge's id, name, addresses and capacity, checked (by registration and enrolment alike).
pub(crate) struct EdgeFields {
    pub id: String,
    pub name: String,
    pub peer_addr: SocketAddr,
    pub public_url: String,
    pub capacity: i64,
}

impl EdgeFields {
    pub(crate) fn check(
        id: &str,
        name: &str,
        peer_addr: &str,
        public_url: &str,
        capacity: i64,
    ) -> Result<EdgeFields, ApiError> {
        let id = id.trim().to_lowercase();
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::bad(
                "bad_field",
                "id is the edge's node id: 64 hex digits (multistream-node id)",
            ));
        }
        let peer_addr = peer_addr
            .trim()
            .parse()
            .map_err(|_| ApiError::bad("bad_field", "peer_addr is an ip:port"))?;
        let public_url = text("public_url", public_url)?;
        if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
            return Err(ApiError::bad("bad_field", "public_url is an http(s) URL"));
        }
        if !(1..=crate::EDGE_CAPACITY_MAX).contains(&capacity) {
            return Err(ApiError::bad(
                "bad_field",
                format!("capacity is between 1 and {}", crate::EDGE_CAPACITY_MAX),
            ));
        }
        Ok(EdgeFields {
            id,
            name: text("name", name)?,
            peer_addr,
            public_url,
            capacity,
        })
    }
}

/// An edge that has not checked in for this many heartbeat intervals is shown as stale.
pub const STALE_AFTER_HEARTBEATS: i64 = 3;

/// How an edge is doing, from when it last checked in: `healthy`, `stale` or `never_seen`.
pub fn edge_health(last_seen_at: Option<i64>, now: i64, heartbeat_secs: u64) -> &'static str {
    let stale_ms = i64::try_from(heartbeat_secs.saturating_mul(1000))
        .unwrap_or(i64::MAX)
        .saturating_mul(STALE_AFTER_HEARTBEATS);
    match last_seen_at {
        None => "never_seen",
        Some(seen) if now.saturating_sub(seen) <= stale_ms => "healthy",
        Some(_) => "stale",
    }
}

pub(crate) fn edge_view(row: &AnyRow, now: i64, heartbeat_secs: u64) -> Result<Value, sqlx::Error> {
    let last_seen_at = row.try_get::<Option<i64>, _>("last_seen_at")?;
    Ok(json!({
        "id": row.try_get::<String, _>("id")?,
        "name": row.try_get::<String, _>("name")?,
        "peer_addr": row.try_get::<String, _>("peer_addr")?,
        "public_url": row.try_get::<String, _>("public_url")?,
        "capacity": row.try_get::<i64, _>("capacity")?,
        "status": row.try_get::<String, _>("status")?,
        "version": row.try_get::<String, _>("version")?,
        "load": row.try_get::<i64, _>("load")?,
        "sessions": row.try_get::<i64, _>("sessions")?,
        "last_seen_at": last_seen_at.map_or(Value::Null, rfc3339),
        "health": edge_health(last_seen_at, now, heartbeat_secs),
        "restart_needed": row.try_get::<i64, _>("restart_needed")? != 0,
        "recorder": row.try_get::<i64, _>("recorder")? != 0,
    }))
}

async fn list_edges(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let rows = sqlx::query("SELECT * FROM edges ORDER BY name, id LIMIT $1")
        .bind(LIST_ROWS_MAX)
        .fetch_all(&state.db.pool)
        .await?;
    let now = now_ms();
    let edges: Result<Vec<Value>, sqlx::Error> = rows
        .iter()
        .map(|row| edge_view(row, now, state.heartbeat_secs))
        .collect();
    ok(json!({ "edges": edges? }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeStatus {
    status: String,
}

async fn set_edge_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let request: EdgeStatus = json_body(&headers, &body)?;
    if !["active", "draining", "disabled"].contains(&request.status.as_str()) {
        return Err(ApiError::bad(
            "bad_field",
            "status is active, draining or disabled",
        ));
    }
    let done = sqlx::query("UPDATE edges SET status = $1 WHERE id = $2")
        .bind(&request.status)
        .bind(&id)
        .execute(&state.db.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("edge"));
    }
    info!(edge = %id, status = %request.status, by = %principal.user_id, "edge status changed");
    ok(json!({ "id": id, "status": request.status }))
}

// ---- Sessions ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionFields {
    course_id: Option<String>,
    title: Option<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    teacher_id: Option<String>,
    home_edge_id: Option<String>,
    /// `null` or absent: no room.
    #[serde(default)]
    room: Option<String>,
    recording_policy: Option<String>,
    plugins: Option<Vec<String>>,
    capacity: Option<i64>,
}

/// A session as stored.
#[derive(Debug, Clone)]
struct SessionRow {
    id: String,
    course_id: String,
    title: String,
    starts_at: i64,
    ends_at: i64,
    teacher_id: String,
    home_edge_id: String,
    room: Option<String>,
    recording_policy: String,
    plugins: Vec<String>,
    capacity: i64,
    status: String,
    started_at: Option<i64>,
}

impl SessionRow {
    fn read(row: &AnyRow) -> Result<SessionRow, sqlx::Error> {
        let plugins: String = row.try_get("plugins")?;
        Ok(SessionRow {
            id: row.try_get("id")?,
            course_id: row.try_get("course_id")?,
            title: row.try_get("title")?,
            starts_at: row.try_get("starts_at")?,
            ends_at: row.try_get("ends_at")?,
            teacher_id: row.try_get("teacher_id")?,
            home_edge_id: row.try_get("home_edge_id")?,
            room: row.try_get("room")?,
            recording_policy: row.try_get("recording_policy")?,
            plugins: serde_json::from_str(&plugins).unwrap_or_default(),
            capacity: row.try_get("capacity")?,
            status: row.try_get("status")?,
            started_at: row.try_get("started_at")?,
        })
    }

    /// Its status as people should read it: `scheduled` or `live` past its end is `ended` (the
    /// row keeps what was set; the schedule's rules read the times).
    fn status_at(&self, now: i64) -> &str {
        match self.status.as_str() {
            "scheduled" | "live" if now >= self.ends_at => "ended",
            status => status,
        }
    }

    fn view(&self) -> Value {
        json!({
            "id": self.id,
            "course_id": self.course_id,
            "title": self.title,
            "starts_at": rfc3339(self.starts_at),
            "ends_at": rfc3339(self.ends_at),
            "teacher_id": self.teacher_id,
            "home_edge_id": self.home_edge_id,
            "room": self.room,
            "recording_policy": self.recording_policy,
            "plugins": self.plugins,
            "capacity": self.capacity,
            "status": self.status_at(now_ms()),
            "started_at": self.started_at.map_or(Value::Null, rfc3339),
        })
    }
}

async fn load_session(db: &Db, principal: &Principal, id: &str) -> Result<SessionRow, ApiError> {
    let row = sqlx::query(
        "SELECT s.* FROM sessions s JOIN courses c ON c.id = s.course_id WHERE s.id = $1 AND c.organisation_id = $2",
    )
    .bind(id)
    .bind(&principal.organisation_id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("session"))?;
    let session = SessionRow::read(&row)?;
    if !principal.sees(&session.course_id) {
        // Not told apart from a session that does not exist.
        return Err(ApiError::not_found("session"));
    }
    Ok(session)
}

/// Applies `fields` over `base` (or builds a new session) and checks every field and rule.
async fn settle(
    state: &AppState,
    principal: &Principal,
    base: Option<SessionRow>,
    fields: SessionFields,
) -> Result<SessionRow, ApiError> {
    let creating = base.is_none();
    let missing = |field: &str| ApiError::bad("missing_field", format!("{field} is required"));
    let mut session = match base {
        Some(session) => session,
        None => SessionRow {
            id: String::new(),
            course_id: fields
                .course_id
                .clone()
                .ok_or_else(|| missing("course_id"))?,
            title: String::new(),
            starts_at: 0,
            ends_at: 0,
            teacher_id: fields
                .teacher_id
                .clone()
                .unwrap_or_else(|| principal.user_id.clone()),
            home_edge_id: String::new(),
            room: None,
            recording_policy: "off".into(),
            plugins: Vec::new(),
            capacity: 0,
            status: "scheduled".into(),
            started_at: None,
        },
    };
    if !creating
        && fields
            .course_id
            .as_ref()
            .is_some_and(|c| *c != session.course_id)
    {
        return Err(ApiError::bad(
            "bad_field",
            "a session cannot move to another course",
        ));
    }
    if let Some(title) = &fields.title {
        session.title = text("title", title)?;
    } else if creating {
        return Err(missing("title"));
    }
    match (&fields.starts_at, creating) {
        (Some(value), _) => session.starts_at = time("starts_at", value)?,
        (None, true) => return Err(missing("starts_at")),
        _ => {}
    }
    match (&fields.ends_at, creating) {
        (Some(value), _) => session.ends_at = time("ends_at", value)?,
        (None, true) => return Err(missing("ends_at")),
        _ => {}
    }
    if let Some(teacher) = &fields.teacher_id {
        session.teacher_id = teacher.clone();
    }
    match (&fields.home_edge_id, creating) {
        (Some(edge), _) => session.home_edge_id = edge.clone(),
        (None, true) => return Err(missing("home_edge_id")),
        _ => {}
    }
    if fields.room.is_some() || creating {
        session.room = fields
            .room
            .as_deref()
            .map(|r| text("room", r))
            .transpose()?;
    }
    if let Some(policy) = &fields.recording_policy {
        if !["off", "optional", "required"].contains(&policy.as_str()) {
            return Err(ApiError::bad(
                "bad_field",
                "recording_policy is off, optional or required",
            ));
        }
        session.recording_policy = policy.clone();
    }
    if let Some(plugins) = &fields.plugins {
        if plugins.len() > SESSION_PLUGINS_MAX
            || plugins.iter().any(|p| {
                p.is_empty()
                    || p.len() > 64
                    || !p
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
        {
            return Err(ApiError::bad(
                "bad_field",
                format!(
                    "plugins is a list of at most {SESSION_PLUGINS_MAX} plugin names (a-z, 0-9, -)"
                ),
            ));
        }
        session.plugins = plugins.clone();
    }
    match (fields.capacity, creating) {
        (Some(capacity), _) => session.capacity = capacity,
        (None, true) => return Err(missing("capacity")),
        _ => {}
    }

    // Who may book it: an administrator, or a teacher of the course booking themselves.
    let course = sqlx::query("SELECT id FROM courses WHERE id = $1 AND organisation_id = $2")
        .bind(&session.course_id)
        .bind(&principal.organisation_id)
        .fetch_optional(&state.db.pool)
        .await?;
    if course.is_none() {
        return Err(ApiError::not_found("course"));
    }
    if !principal.schedules(&session.course_id) {
        return Err(ApiError::forbidden(
            "only an administrator or a teacher of the course may schedule its sessions",
        ));
    }
    if !principal.admin && session.teacher_id != principal.user_id {
        return Err(ApiError::forbidden(
            "a teacher schedules sessions they teach themselves",
        ));
    }
    let teacher = auth::principal(&state.db, &session.teacher_id).await?;
    if !teacher.is_some_and(|t| {
        t.organisation_id == principal.organisation_id && t.has(&session.course_id, Role::Teacher)
    }) {
        return Err(ApiError::bad(
            "not_a_teacher",
            "teacher_id is not a teacher of this course",
        ));
    }

    let edge = sqlx::query("SELECT id, status, capacity, recorder FROM edges WHERE id = $1")
        .bind(&session.home_edge_id)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|r| -> Result<EdgeFacts, sqlx::Error> {
            Ok(EdgeFacts {
                id: r.try_get("id")?,
                status: r.try_get("status")?,
                capacity: r.try_get("capacity")?,
                records: r.try_get::<i64, _>("recorder")? != 0,
            })
        })
        .transpose()?;
    let overlapping = sqlx::query(
        "SELECT s.id, s.title, s.teacher_id, s.room FROM sessions s JOIN courses c ON c.id = s.course_id \
         WHERE c.organisation_id = $1 AND s.status IN ('scheduled', 'live') AND s.starts_at < $2 AND s.ends_at > $3 \
         AND s.id <> $4 AND (s.teacher_id = $5 OR s.room = $6)",
    )
    .bind(&principal.organisation_id)
    .bind(session.ends_at)
    .bind(session.starts_at)
    .bind(&session.id)
    .bind(&session.teacher_id)
    .bind(session.room.clone().unwrap_or_default())
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|r| -> Result<Booked, sqlx::Error> {
        Ok(Booked {
            id: r.try_get("id")?,
            title: r.try_get("title")?,
            teacher_id: r.try_get("teacher_id")?,
            room: r.try_get("room")?,
        })
    })
    .collect::<Result<Vec<_>, _>>()?;
    let proposal = Proposal {
        starts_at: session.starts_at,
        ends_at: session.ends_at,
        teacher_id: session.teacher_id.clone(),
        room: session.room.clone(),
        capacity: session.capacity,
        recording_required: session.recording_policy == "required",
    };
    schedule::check(
        &proposal,
        edge.as_ref(),
        &session.home_edge_id,
        &overlapping,
    )
    .map_err(|refusal| {
        let status = match refusal {
            schedule::Refusal::TeacherBusy { .. } | schedule::Refusal::RoomBusy { .. } => {
                StatusCode::CONFLICT
            }
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError {
            status,
            code: "schedule_refused",
            message: refusal.to_string(),
            detail: serde_json::to_value(&refusal).ok(),
        }
    })?;
    Ok(session)
}

async fn create_session(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let fields: SessionFields = json_body(&headers, &body)?;
    let _booking = state.booking.lock().await;
    let mut session = settle(&state, &principal, None, fields).await?;
    // A session id edges accept (proto's id rules).
    session.id = format!("s-{}", random_hex(12));
    let now = now_ms();
    sqlx::query(
        "INSERT INTO sessions (id, course_id, title, starts_at, ends_at, teacher_id, home_edge_id, room, recording_policy, plugins, capacity, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'scheduled', $12, $12)",
    )
    .bind(&session.id)
    .bind(&session.course_id)
    .bind(&session.title)
    .bind(session.starts_at)
    .bind(session.ends_at)
    .bind(&session.teacher_id)
    .bind(&session.home_edge_id)
    .bind(session.room.clone())
    .bind(&session.recording_policy)
    .bind(serde_json::to_string(&session.plugins).unwrap_or_else(|_| "[]".into()))
    .bind(session.capacity)
    .bind(now)
    .execute(&state.db.pool)
    .await?;
    info!(session = %session.id, course = %session.course_id, by = %principal.user_id, "session scheduled");
    created(session.view())
}

async fn edit_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let fields: SessionFields = json_body(&headers, &body)?;
    let _booking = state.booking.lock().await;
    let base = load_session(&state.db, &principal, &id).await?;
    if base.status != "scheduled" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_editable",
            format!("a {} session cannot be changed", base.status),
        ));
    }
    let session = settle(&state, &principal, Some(base), fields).await?;
    sqlx::query(
        "UPDATE sessions SET title = $1, starts_at = $2, ends_at = $3, teacher_id = $4, home_edge_id = $5, room = $6, \
         recording_policy = $7, plugins = $8, capacity = $9, updated_at = $10 WHERE id = $11",
    )
    .bind(&session.title)
    .bind(session.starts_at)
    .bind(session.ends_at)
    .bind(&session.teacher_id)
    .bind(&session.home_edge_id)
    .bind(session.room.clone())
    .bind(&session.recording_policy)
    .bind(serde_json::to_string(&session.plugins).unwrap_or_else(|_| "[]".into()))
    .bind(session.capacity)
    .bind(now_ms())
    .bind(&session.id)
    .execute(&state.db.pool)
    .await?;
    ok(session.view())
}

async fn get_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let session = load_session(&state.db, &principal, &id).await?;
    ok(session.view())
}

#[derive(Deserialize)]
struct SessionQuery {
    course: Option<String>,
}

async fn list_sessions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SessionQuery>,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let rows = sqlx::query(
        "SELECT s.* FROM sessions s JOIN courses c ON c.id = s.course_id WHERE c.organisation_id = $1 \
         AND ($2 = '' OR s.course_id = $2) ORDER BY s.starts_at, s.id LIMIT $3",
    )
    .bind(&principal.organisation_id)
    .bind(query.course.unwrap_or_default())
    .bind(LIST_ROWS_MAX)
    .fetch_all(&state.db.pool)
    .await?;
    let mut sessions = Vec::new();
    for row in &rows {
        let session = SessionRow::read(row)?;
        if principal.sees(&session.course_id) {
            sessions.push(session.view());
        }
    }
    ok(json!({ "sessions": sessions }))
}

async fn cancel_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let session = load_session(&state.db, &principal, &id).await?;
    if !principal.schedules(&session.course_id)
        || (!principal.admin && session.teacher_id != principal.user_id)
    {
        return Err(ApiError::forbidden(
            "only an administrator or the session's teacher may cancel it",
        ));
    }
    if session.status != "scheduled" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancellable",
            format!("a {} session cannot be cancelled", session.status),
        ));
    }
    sqlx::query("UPDATE sessions SET status = 'cancelled', updated_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(&id)
        .execute(&state.db.pool)
        .await?;
    info!(session = %id, by = %principal.user_id, "session cancelled");
    ok(SessionRow {
        status: "cancelled".into(),
        ..session
    }
    .view())
}

async fn start_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let session = load_session(&state.db, &principal, &id).await?;
    if session.teacher_id != principal.user_id && !principal.admin {
        return Err(ApiError::forbidden(
            "only the session's teacher may start it",
        ));
    }
    let now = now_ms();
    schedule::may_start(
        now,
        &session.status,
        session.starts_at,
        session.ends_at,
        state.early_start_ms,
    )
    .map_err(|refusal| ApiError {
        status: StatusCode::CONFLICT,
        code: "start_refused",
        message: refusal.to_string(),
        detail: serde_json::to_value(&refusal).ok(),
    })?;
    let started_at = session.started_at.unwrap_or(now);
    sqlx::query(
        "UPDATE sessions SET status = 'live', started_at = $1, updated_at = $2 WHERE id = $3",
    )
    .bind(started_at)
    .bind(now)
    .bind(&id)
    .execute(&state.db.pool)
    .await?;
    ok(SessionRow {
        status: "live".into(),
        started_at: Some(started_at),
        ..session
    }
    .view())
}

// ---- Joining ----

/// How long a join token outlives its session's scheduled end (a class that runs over).
pub const TOKEN_GRACE_MS: i64 = 3_600_000;

/// The public key edges verify join tokens with (`--trust-issuer`).
async fn issuer(State(state): State<AppState>) -> Answer {
    ok(json!({ "name": state.issuer.name(), "public_key": state.issuer.public_hex() }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JoinFor {
    /// Someone else (an admin, or a teacher of the course, may issue for others).
    user_id: Option<String>,
}

/// The role an edge gives a person with this course role.
fn class_role(role: Role) -> multistream_proto::Role {
    match role {
        // An assistant helps run the class: on the edge, that is the teacher's role.
        Role::Admin | Role::Teacher | Role::TeachingAssistant => multistream_proto::Role::Teacher,
        Role::Student => multistream_proto::Role::Student,
        Role::Guest | Role::Captioner => multistream_proto::Role::Guest,
    }
}

/// Issues a join token for a session, signed with the control plane's key, and the link that
/// opens the class on its home edge.
async fn join_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let request: JoinFor = if body.is_empty() {
        JoinFor::default()
    } else {
        json_body(&headers, &body)?
    };
    let session = load_session(&state.db, &principal, &id).await?;
    if ["cancelled", "ended"].contains(&session.status.as_str()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_joinable",
            format!("the session is {}", session.status),
        ));
    }
    let now = now_ms();
    if now >= session.ends_at + TOKEN_GRACE_MS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_joinable",
            "the session is over",
        ));
    }
    let user = match request.user_id {
        Some(user) if user != principal.user_id => {
            if !principal.schedules(&session.course_id) {
                return Err(ApiError::forbidden(
                    "only an administrator or a teacher of the course may issue tokens for others",
                ));
            }
            auth::principal(&state.db, &user)
                .await?
                .filter(|p| p.organisation_id == principal.organisation_id)
                .ok_or_else(|| ApiError::not_found("user"))?
        }
        _ => principal.clone(),
    };
    // The strongest role they hold for this session.
    let roles = user
        .courses
        .get(&session.course_id)
        .cloned()
        .unwrap_or_default();
    let role = if user.user_id == session.teacher_id {
        Some(Role::Teacher)
    } else {
        [
            Role::Teacher,
            Role::TeachingAssistant,
            Role::Captioner,
            Role::Student,
            Role::Guest,
        ]
        .into_iter()
        .find(|r| roles.contains(r))
        .or(user.admin.then_some(Role::Admin))
    };
    let Some(role) = role else {
        return Err(ApiError::forbidden(
            "they have no role in this session's course",
        ));
    };
    let edge = sqlx::query("SELECT id, name, public_url FROM edges WHERE id = $1")
        .bind(&session.home_edge_id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("edge"))?;
    let edge_url: String = edge.try_get("public_url")?;
    let sub = user
        .user_id
        .parse()
        .map_err(|_| ApiError::bad("bad_field", "this user's id cannot be a participant id"))?;
    let sid = session
        .id
        .parse()
        .map_err(|_| ApiError::bad("bad_field", "this session's id cannot be used on an edge"))?;
    let name: String = user
        .name
        .chars()
        .take(multistream_proto::claims::DISPLAY_NAME_CHARS_MAX)
        .collect();
    let class_role = class_role(role);
    let claims = multistream_proto::Claims {
        iss: state.issuer.name().to_owned(),
        sub,
        sid,
        name,
        role: class_role,
        grants: class_role.default_grants(),
        kind: multistream_proto::TokenKind::Access,
        iat: u64::try_from(now / 1000).unwrap_or(0),
        exp: u64::try_from((session.ends_at + TOKEN_GRACE_MS) / 1000).unwrap_or(0),
    };
    let token = state.issuer.sign(&claims);
    sqlx::query(
        "INSERT INTO session_participants (session_id, user_id, role, permissions, issued_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (session_id, user_id) DO UPDATE SET role = $3, permissions = $4, issued_at = $5",
    )
    .bind(&session.id)
    .bind(&user.user_id)
    .bind(role.as_str())
    .bind(serde_json::to_string(&claims.grants).unwrap_or_else(|_| "{}".into()))
    .bind(now)
    .execute(&state.db.pool)
    .await?;
    info!(session = %session.id, user = %user.user_id, role = role.as_str(), by = %principal.user_id, "join token issued");
    ok(json!({
        "token": token,
        "link": format!("{}/s/{}#token={token}", edge_url.trim_end_matches('/'), session.id),
        "role": class_role,
        "edge": { "id": session.home_edge_id, "name": edge.try_get::<String, _>("name")?, "url": edge_url },
        "expires_at": rfc3339(session.ends_at + TOKEN_GRACE_MS),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edge_is_stale_after_three_missed_check_ins() {
        let now = 1_000_000;
        assert_eq!(edge_health(None, now, 10), "never_seen");
        assert_eq!(edge_health(Some(now), now, 10), "healthy");
        assert_eq!(edge_health(Some(now - 30_000), now, 10), "healthy");
        assert_eq!(edge_health(Some(now - 30_001), now, 10), "stale");
        // A clock that moved back does not make an edge stale.
        assert_eq!(edge_health(Some(now + 5_000), now, 10), "healthy");
        assert_eq!(edge_health(Some(0), now, u64::MAX), "healthy");
    }

    #[test]
    fn a_session_past_its_end_reads_as_ended() {
        let row = |status: &str| SessionRow {
            id: "s".into(),
            course_id: "c".into(),
            title: "Optics".into(),
            starts_at: 1_000,
            ends_at: 2_000,
            teacher_id: "t".into(),
            home_edge_id: "e".into(),
            room: None,
            recording_policy: "off".into(),
            plugins: Vec::new(),
            capacity: 30,
            status: status.into(),
            started_at: None,
        };
        assert_eq!(row("scheduled").status_at(1_999), "scheduled");
        assert_eq!(row("live").status_at(1_500), "live");
        assert_eq!(row("scheduled").status_at(2_000), "ended");
        assert_eq!(row("live").status_at(9_000), "ended");
        assert_eq!(row("cancelled").status_at(9_000), "cancelled");
    }
}
