//! Read-only endpoints the admin UI needs beside the API in `api.rs` (who is in a course, which
//! API keys exist) and the API's OpenAPI description (`GET /api/v1/openapi.json`, the hand-written
//! `control/openapi.json`, embedded). It only reads: nothing here writes to the database. Who
//! asks is checked as in `api.rs` (a session cookie or an API key); refusals have the same shape,
//! `{"error": "<stable code>", "message": "<for people>"}`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sqlx::Row;
use tracing::warn;

use crate::api::{AppState, LIST_ROWS_MAX};
use crate::auth::{self, Principal};

/// The OpenAPI 3.1 description of every endpoint, served as is.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// Where the OpenAPI description is served; a stable path clients may rely on. (The route below
/// spells it out: the system test that compares routes with the description reads `.route(`
/// calls.)
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Longest id accepted in a path: ids are 32 hex digits, session ids a little longer.
const ID_BYTES_MAX: usize = 128;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/courses/{id}/members", get(list_members))
        .route("/api/v1/api-keys", get(list_api_keys))
        .with_state(state)
}

/// A refusal, in the shape `api.rs` answers with.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for Refusal {
    fn from(error: sqlx::Error) -> Self {
        warn!(%error, "a database request failed");
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database",
            "the database could not answer; try again shortly",
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code, "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

type Answer = Result<Response, Refusal>;

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

/// The person behind a request, as `api.rs` finds them: an API key
/// (`Authorization: Bearer mskey_…`) or the admin session cookie.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, Refusal> {
    let unauthorised = || {
        Refusal::new(
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
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == auth::COOKIE)
            .map(|(_, value)| value.to_owned());
        match cookie {
            Some(value) => auth::user_of_cookie(&state.db, &value).await?,
            None => None,
        }
    };
    let user = user.ok_or_else(unauthorised)?;
    auth::principal(&state.db, &user)
        .await?
        .ok_or_else(unauthorised)
}

fn rfc3339(ms: Option<i64>) -> Value {
    ms.and_then(|ms| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
    })
    .and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(Value::Null, Value::String)
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
        Refusal::new(
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
        return Err(Refusal::new(
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
                "created_at": rfc3339(Some(r.try_get::<i64, _>("created_at")?)),
                "last_used_at": rfc3339(r.try_get::<Option<i64>, _>("last_used_at")?),
                "revoked_at": rfc3339(r.try_get::<Option<i64>, _>("revoked_at")?),
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
