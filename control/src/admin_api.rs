//! Read-only endpoints the admin UI needs beside the API in `api.rs` (who is in a course, which
//! API keys and enrolment codes exist) and the API's OpenAPI description
//! (`GET /api/v1/openapi.json`, the hand-written `control/openapi.json`, embedded). It only
//! reads: nothing here writes to the database. Who asks is checked as in `api.rs` (a session
//! cookie or an API key); refusals have the same shape,
//! `{"error": "<stable code>", "message": "<for people>"}`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sqlx::Row;

use crate::api::{Answer, ApiError, AppState, LIST_ROWS_MAX, authenticate, require_admin, rfc3339};
use crate::db::now_ms;

/// The OpenAPI 3.1 description of every endpoint, served as is.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// Where the OpenAPI description is served; a stable path clients may rely on. (The route below
/// spells it out: the system test that compares routes with the description reads `.route(`
/// calls.)
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Longest id accepted in a path: ids are 32 hex digits, session ids a little longer.
const ID_BYTES_MAX: usize = 128;

/// Hex digits of an enrolment code's SHA-256 shown as its id: enough to tell a few thousand
/// codes apart, and a prefix of a hash says nothing about the code itself.
const CODE_ID_HEX_DIGITS: usize = 12;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/courses/{id}/members", get(list_members))
        .route("/api/v1/api-keys", get(list_api_keys))
        .route("/api/v1/enrolment-codes", get(list_enrolment_codes))
        .with_state(state)
}

async fn openapi() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        OPENAPI_JSON,
    )
        .into_response()
}

/// Who holds which role in a course: its administrators and teachers may see this (it lists
/// names and emails, so students may not).
async fn list_members(
    State(state): State<AppState>,
    Path(course): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "there is no such course",
        )
    };
    if course.len() > ID_BYTES_MAX {
        return Err(not_found());
    }
    let exists = sqlx::query("SELECT id FROM courses WHERE id = $1 AND organisation_id = $2")
        .bind(&course)
        .bind(&principal.organisation_id)
        .fetch_optional(&state.db.pool)
        .await?;
    if exists.is_none() || !principal.sees(&course) {
        // A course they may not see is not told apart from one that does not exist.
        return Err(not_found());
    }
    if !principal.schedules(&course) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only an administrator or a teacher of the course may see who is in it",
        ));
    }
    let rows = sqlx::query(
        "SELECT u.id, u.name, u.email, r.role FROM user_roles r JOIN users u ON u.id = r.user_id \
         WHERE r.course_id = $1 AND u.organisation_id = $2 ORDER BY u.name, u.id, r.role LIMIT $3",
    )
    .bind(&course)
    .bind(&principal.organisation_id)
    .bind(LIST_ROWS_MAX)
    .fetch_all(&state.db.pool)
    .await?;
    let members: Result<Vec<Value>, sqlx::Error> = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "user_id": r.try_get::<String, _>("id")?,
                "name": r.try_get::<String, _>("name")?,
                "email": r.try_get::<String, _>("email")?,
                "role": r.try_get::<String, _>("role")?,
            }))
        })
        .collect();
    Ok(axum::Json(json!({ "course": course, "members": members? })).into_response())
}

/// API keys: one's own; an administrator sees every key of the organisation, with its owner.
/// Never the key itself (only its hash is kept).
async fn list_api_keys(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    let rows = sqlx::query(
        "SELECT k.id, k.name, k.created_at, k.last_used_at, k.revoked_at, u.id AS owner_id, u.name AS owner_name, \
         u.email AS owner_email FROM api_keys k JOIN users u ON u.id = k.user_id \
         WHERE u.organisation_id = $1 AND ($2 = 1 OR k.user_id = $3) \
         ORDER BY k.created_at DESC, k.id LIMIT $4",
    )
    .bind(&principal.organisation_id)
    .bind(i64::from(principal.admin))
    .bind(&principal.user_id)
    .bind(LIST_ROWS_MAX)
    .fetch_all(&state.db.pool)
    .await?;
    let keys: Result<Vec<Value>, sqlx::Error> = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<String, _>("id")?,
                "name": r.try_get::<String, _>("name")?,
                "created_at": rfc3339(r.try_get::<i64, _>("created_at")?),
                "last_used_at": r.try_get::<Option<i64>, _>("last_used_at")?.map_or(Value::Null, rfc3339),
                "revoked_at": r.try_get::<Option<i64>, _>("revoked_at")?.map_or(Value::Null, rfc3339),
                "owner": {
                    "id": r.try_get::<String, _>("owner_id")?,
                    "name": r.try_get::<String, _>("owner_name")?,
                    "email": r.try_get::<String, _>("owner_email")?,
                },
            }))
        })
        .collect();
    Ok(axum::Json(json!({ "api_keys": keys? })).into_response())
}

/// The enrolment codes the organisation's administrators made, newest first, for
/// administrators: when each was made and expires, and whether it is still open, expired, or
/// was used (when, and by which edge). Never the code: only its hash is kept, and of that only a
/// short prefix is shown, as an opaque id.
async fn list_enrolment_codes(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let rows = sqlx::query(
        "SELECT c.code_hash, c.created_at, c.expires_at, c.used_at, c.used_by, \
         e.name AS edge_name, u.id AS creator_id, u.name AS creator_name \
         FROM enrolment_codes c JOIN users u ON u.id = c.created_by \
         LEFT JOIN edges e ON e.id = c.used_by WHERE u.organisation_id = $1 \
         ORDER BY c.created_at DESC, c.code_hash LIMIT $2",
    )
    .bind(&principal.organisation_id)
    .bind(LIST_ROWS_MAX)
    .fetch_all(&state.db.pool)
    .await?;
    let now = now_ms();
    let codes: Result<Vec<Value>, sqlx::Error> = rows
        .iter()
        .map(|r| {
            let hash: String = r.try_get("code_hash")?;
            let expires_at: i64 = r.try_get("expires_at")?;
            let used_at: Option<i64> = r.try_get("used_at")?;
            // As enrolling decides: a code is good while unused and before its expiry.
            let code_state = if used_at.is_some() {
                "used"
            } else if expires_at <= now {
                "expired"
            } else {
                "open"
            };
            let used_by = match r.try_get::<Option<String>, _>("used_by")? {
                Some(id) => json!({
                    "id": id,
                    "name": r.try_get::<Option<String>, _>("edge_name")?,
                }),
                None => Value::Null,
            };
            Ok(json!({
                "id": hash.chars().take(CODE_ID_HEX_DIGITS).collect::<String>(),
                "state": code_state,
                "created_at": rfc3339(r.try_get::<i64, _>("created_at")?),
                "expires_at": rfc3339(expires_at),
                "used_at": used_at.map_or(Value::Null, rfc3339),
                "used_by": used_by,
                "created_by": {
                    "id": r.try_get::<String, _>("creator_id")?,
                    "name": r.try_get::<String, _>("creator_name")?,
                },
            }))
        })
        .collect();
    Ok(axum::Json(json!({ "enrolment_codes": codes? })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_description_is_json_at_its_path() {
        let document: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        assert!(document["paths"][OPENAPI_PATH].is_object());
    }
}
