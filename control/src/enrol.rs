//! Edges joining the cluster and keeping in touch.
//!
//! - An admin makes a one-time **enrolment code** (`POST /api/v1/enrolment-codes`): it is shown
//!   once, kept only as a hash, expires, and is consumed by the first enrolment that uses it.
//! - A node started with the code **enrols** (`POST /api/v1/enrol`, no other credential): it
//!   sends its node id (its peer-plane key), addresses, name and capacity, and gets back a
//!   secret for later calls and the cluster's configuration: the other edges, and the key join
//!   tokens are signed with.
//! - Every [`HEARTBEAT_SECS`] the edge **checks in** (`POST /api/v1/edges/{id}/heartbeat`, with
//!   its secret): its version, load and live sessions go into the inventory, and it gets back
//!   its status (an admin may drain or disable it), the edges, and the sessions it hosts, which
//!   it keeps so its classes start and run while the control plane is unreachable.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;
use tracing::info;

use crate::api::{
    Answer, ApiError, AppState, authenticate, created, json_body, ok, require_admin, rfc3339,
};
use crate::db::{now_ms, random_hex, sha256_hex};

/// How long an enrolment code is good for, by default and at most.
pub const ENROLMENT_CODE_MINUTES_DEFAULT: i64 = 60;
pub const ENROLMENT_CODE_MINUTES_MAX: i64 = 7 * 24 * 60;

/// How often an edge checks in.
pub const HEARTBEAT_SECS: u64 = 10;

/// How far ahead an edge is told its sessions.
pub const SCHEDULE_AHEAD_MS: i64 = 14 * 24 * 3_600_000;

/// Sessions one heartbeat answer lists at most.
pub const SCHEDULE_ROWS_MAX: i64 = 500;

/// Enrolment codes start with this.
pub const CODE_PREFIX: &str = "enrol_";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/enrolment-codes", post(create_code))
        .route("/api/v1/enrol", post(enrol))
        .route("/api/v1/edges/{id}/heartbeat", post(heartbeat))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::api::BODY_BYTES_MAX,
        ))
        .with_state(state)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewCode {
    minutes: Option<i64>,
}

async fn create_code(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let request: NewCode = if body.is_empty() {
        NewCode::default()
    } else {
        json_body(&headers, &body)?
    };
    let minutes = request.minutes.unwrap_or(ENROLMENT_CODE_MINUTES_DEFAULT);
    if !(1..=ENROLMENT_CODE_MINUTES_MAX).contains(&minutes) {
        return Err(ApiError::bad(
            "bad_field",
            format!("minutes is between 1 and {ENROLMENT_CODE_MINUTES_MAX}"),
        ));
    }
    let code = format!("{CODE_PREFIX}{}", random_hex(16));
    let now = now_ms();
    let expires_at = now + minutes * 60_000;
    sqlx::query(
        "INSERT INTO enrolment_codes (code_hash, created_by, expires_at, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(sha256_hex(&code))
    .bind(&principal.user_id)
    .bind(expires_at)
    .bind(now)
    .execute(&state.db.pool)
    .await?;
    info!(by = %principal.user_id, minutes, "enrolment code made");
    created(json!({ "code": code, "expires_at": rfc3339(expires_at) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Enrolment {
    code: String,
    node_id: String,
    name: String,
    peer_addr: String,
    public_url: String,
    capacity: i64,
    #[serde(default)]
    version: String,
}

/// The other active edges, as an edge lists its peers.
async fn peers_of(state: &AppState, edge: &str) -> Result<Vec<Value>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, peer_addr, public_url FROM edges WHERE id <> $1 AND status <> 'disabled' ORDER BY id",
    )
    .bind(edge)
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<String, _>("id")?,
                "name": r.try_get::<String, _>("name")?,
                "peer_addr": r.try_get::<String, _>("peer_addr")?,
                "public_url": r.try_get::<String, _>("public_url")?,
            }))
        })
        .collect()
}

async fn enrol(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let request: Enrolment = json_body(&headers, &body)?;
    let edge = crate::api::EdgeFields::check(
        &request.node_id,
        &request.name,
        &request.peer_addr,
        &request.public_url,
        request.capacity,
    )?;
    let (node_id, name, peer_addr, public_url, capacity) = (
        edge.id,
        edge.name,
        edge.peer_addr,
        edge.public_url,
        edge.capacity,
    );
    let version: String = request.version.chars().take(64).collect();
    let now = now_ms();
    // One transaction: the code is consumed (a second use, or an expired code, changes
    // nothing), the edge written and the code marked as used by it, or none of these.
    let mut tx = state.db.pool.begin().await?;
    let consumed = sqlx::query(
        "UPDATE enrolment_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(sha256_hex(request.code.trim()))
    .execute(&mut *tx)
    .await?;
    if consumed.rows_affected() != 1 {
        info!(node = %node_id, "an enrolment with a bad, used or expired code was refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_code",
            "that enrolment code is not valid, was used already, or has expired; ask an administrator for a new one",
        ));
    }
    let secret = format!("edge_{}", random_hex(32));
    let existing = sqlx::query("SELECT id FROM edges WHERE id = $1")
        .bind(&node_id)
        .fetch_optional(&mut *tx)
        .await?;
    if existing.is_some() {
        // Enrolling again (a rebuilt box keeping its key): new addresses and a new secret.
        sqlx::query(
            "UPDATE edges SET name = $1, peer_addr = $2, public_url = $3, capacity = $4, version = $5, secret_hash = $6, last_seen_at = $7 WHERE id = $8",
        )
        .bind(&name)
        .bind(peer_addr.to_string())
        .bind(&public_url)
        .bind(capacity)
        .bind(&version)
        .bind(sha256_hex(&secret))
        .bind(now)
        .bind(&node_id)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(
            "INSERT INTO edges (id, name, peer_addr, public_url, capacity, status, version, secret_hash, last_seen_at, enrolled_at) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $8)",
        )
        .bind(&node_id)
        .bind(&name)
        .bind(peer_addr.to_string())
        .bind(&public_url)
        .bind(capacity)
        .bind(&version)
        .bind(sha256_hex(&secret))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE enrolment_codes SET used_by = $1 WHERE code_hash = $2")
        .bind(&node_id)
        .bind(sha256_hex(request.code.trim()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    info!(node = %node_id, %name, "edge enrolled");
    created(json!({
        "edge_id": node_id,
        "secret": secret,
        "issuer_public_key": state.issuer.public_hex(),
        "peers": peers_of(&state, &node_id).await?,
        "heartbeat_seconds": state.heartbeat_secs,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Heartbeat {
    #[serde(default)]
    version: String,
    #[serde(default)]
    load: i64,
    /// Sessions with someone connected on the edge now.
    #[serde(default)]
    sessions: i64,
    /// The edges listed differ from the ones it runs with: it links with them after a restart.
    #[serde(default)]
    restart_needed: bool,
    /// Whether it can record a class (sessions requiring a recording are booked only on an
    /// edge that can).
    #[serde(default)]
    recorder: bool,
    /// Its name and addresses now (a restarted edge may have new ones); all three or none.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    public_url: Option<String>,
    #[serde(default)]
    peer_addr: Option<String>,
}

async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let edge = sqlx::query("SELECT id, status FROM edges WHERE id = $1 AND secret_hash = $2")
        .bind(&id)
        .bind(sha256_hex(secret.trim()))
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unknown_edge",
                "this edge is not enrolled, or its secret is wrong; enrol it again",
            )
        })?;
    let request: Heartbeat = json_body(&headers, &body)?;
    // Its name and addresses now, if it sent them (all three, checked as at enrolment).
    let moved = match (&request.name, &request.public_url, &request.peer_addr) {
        (Some(name), Some(public_url), Some(peer_addr)) => Some(crate::api::EdgeFields::check(
            &id, name, peer_addr, public_url, 1,
        )?),
        _ => None,
    };
    let now = now_ms();
    sqlx::query(
        "UPDATE edges SET version = $1, load = $2, sessions = $3, last_seen_at = $4, restart_needed = $5, recorder = $6, \
         name = COALESCE($7, name), public_url = COALESCE($8, public_url), peer_addr = COALESCE($9, peer_addr) WHERE id = $10",
    )
    .bind(request.version.chars().take(64).collect::<String>())
    .bind(request.load.clamp(0, i64::from(u32::MAX)))
    .bind(request.sessions.clamp(0, i64::from(u32::MAX)))
    .bind(now)
    .bind(i64::from(request.restart_needed))
    .bind(i64::from(request.recorder))
    .bind(moved.as_ref().map(|m| m.name.clone()))
    .bind(moved.as_ref().map(|m| m.public_url.clone()))
    .bind(moved.as_ref().map(|m| m.peer_addr.to_string()))
    .bind(&id)
    .execute(&state.db.pool)
    .await?;
    let rows = sqlx::query(
        "SELECT s.id, s.title, c.title AS course, s.starts_at, s.ends_at, s.teacher_id, s.status, s.plugins, s.capacity \
         FROM sessions s JOIN courses c ON c.id = s.course_id \
         WHERE s.home_edge_id = $1 AND s.ends_at > $2 AND s.starts_at < $3 ORDER BY s.starts_at, s.id LIMIT $4",
    )
    .bind(&id)
    .bind(now)
    .bind(now + SCHEDULE_AHEAD_MS)
    .bind(SCHEDULE_ROWS_MAX)
    .fetch_all(&state.db.pool)
    .await?;
    let mut sessions = Vec::with_capacity(rows.len());
    for row in &rows {
        let plugins: String = row.try_get("plugins")?;
        sessions.push(json!({
            "id": row.try_get::<String, _>("id")?,
            "title": row.try_get::<String, _>("title")?,
            "course": row.try_get::<String, _>("course")?,
            "starts_at_ms": row.try_get::<i64, _>("starts_at")?,
            "ends_at_ms": row.try_get::<i64, _>("ends_at")?,
            "teacher_id": row.try_get::<String, _>("teacher_id")?,
            "status": row.try_get::<String, _>("status")?,
            "plugins": serde_json::from_str::<Value>(&plugins).unwrap_or_else(|_| json!([])),
            "capacity": row.try_get::<i64, _>("capacity")?,
        }));
    }
    ok(json!({
        "status": edge.try_get::<String, _>("status")?,
        "issuer_public_key": state.issuer.public_hex(),
        "peers": peers_of(&state, &id).await?,
        "sessions": sessions,
        "plugins": crate::plugins::for_edges(&state).await?,
        "heartbeat_seconds": state.heartbeat_secs,
    }))
}
