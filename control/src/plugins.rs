//! The plugin registry: admins upload signed plugin packages, see what each one is (its
//! manifest: title, version, the event kinds it subscribes to and the capabilities it asks
//! for, read from the component itself in a sandbox), approve a package for the organisation,
//! and roll a version out. Edges learn the rolled-out versions and the approved signers at each
//! check-in, fetch the packages (with their edge secret), check the signatures themselves and
//! keep them in their plugin directory, where the node loads them.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use multistream_plugin_host::package;
use serde_json::{Value, json};
use sqlx::Row;
use tracing::info;

use crate::api::{
    Answer, ApiError, AppState, authenticate, created, ok, require_admin, rfc3339, unique_violation,
};
use crate::db::{new_id, now_ms, sha256_hex};

/// Packages listed at most.
pub const PACKAGES_LISTED_MAX: i64 = 500;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/plugins", get(list).post(upload))
        .route("/api/v1/plugins/{id}/approve", post(approve))
        .route("/api/v1/plugins/{id}/rollout", post(rollout))
        .route("/api/v1/plugins/{id}/package", get(download))
        .layer(DefaultBodyLimit::max(package::PACKAGE_BYTES_MAX))
        .with_state(state)
}

/// Reads a component's manifest in a throwaway sandbox (no cache: nothing of it is kept).
fn manifest_of(wasm: &[u8]) -> Result<Value, String> {
    let runtime =
        multistream_plugin_host::Runtime::new(multistream_plugin_host::Limits::default(), None)
            .map_err(|e| format!("the plugin sandbox cannot start: {e:#}"))?;
    let code = runtime
        .load(wasm)
        .map_err(|e| format!("the component does not load: {e:#}"))?;
    let m = &code.manifest;
    let capabilities: Vec<&str> = m
        .capabilities
        .iter()
        .map(|c| match c {
            multistream_plugin_host::Capability::EmitEvents => "emit-events",
            multistream_plugin_host::Capability::ShowPanel => "show-panel",
            multistream_plugin_host::Capability::PostChat => "post-chat",
            multistream_plugin_host::Capability::StoreState => "store-state",
        })
        .collect();
    Ok(json!({
        "name": m.name,
        "version": m.version,
        "title": m.title,
        "subscribes": m.subscribes,
        "capabilities": capabilities,
    }))
}

async fn upload(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("application/octet-stream"));
    if !binary {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            "send the package (.msplugin) as application/octet-stream",
        ));
    }
    // The signer is whoever the package names: opening it with that key proves the bytes are
    // what they signed. Trusting the signer is the admin's approval, not the upload.
    let signer = match package::open(&body, &[]) {
        Err(package::PackageError::UntrustedKey(key)) => key,
        Err(error) => return Err(ApiError::bad("bad_package", error.to_string())),
        Ok(_) => return Err(ApiError::bad("bad_package", "the package names no signer")),
    };
    let verified = package::open(&body, std::slice::from_ref(&signer))
        .map_err(|error| ApiError::bad("bad_package", error.to_string()))?;
    let wasm = verified.wasm.clone();
    let manifest = tokio::task::spawn_blocking(move || manifest_of(&wasm))
        .await
        .map_err(|_| ApiError::bad("bad_package", "reading the manifest failed"))?
        .map_err(|message| ApiError::bad("bad_component", message))?;
    if manifest["name"] != verified.name || manifest["version"] != verified.version {
        return Err(ApiError::bad(
            "bad_package",
            format!(
                "the package says {} {} but the component is {} {}",
                verified.name, verified.version, manifest["name"], manifest["version"]
            ),
        ));
    }
    let id = new_id();
    let sha256 = sha256_hex(&verified.wasm);
    let inserted = sqlx::query(
        "INSERT INTO plugin_packages (id, name, version, sha256, manifest, package, uploaded_by, uploaded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&verified.name)
    .bind(&verified.version)
    .bind(&sha256)
    .bind(json!({ "manifest": manifest, "signer": signer }).to_string())
    .bind(body.to_vec())
    .bind(&principal.user_id)
    .bind(now_ms())
    .execute(&state.db.pool)
    .await;
    if let Err(error) = inserted {
        return Err(unique_violation(
            error,
            "version_exists",
            "that version of the plugin is already uploaded",
        )?);
    }
    info!(plugin = %verified.name, version = %verified.version, by = %principal.user_id, "plugin package uploaded");
    created(json!({
        "id": id, "name": verified.name, "version": verified.version, "sha256": sha256,
        "signer": signer, "manifest": manifest, "approved": false, "rolled_out": false,
    }))
}

async fn list(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let rows = sqlx::query(
        "SELECT p.id, p.name, p.version, p.sha256, p.manifest, p.uploaded_at, p.approved_at, \
         p.approved_by, u.name AS approver, \
         (SELECT COUNT(*) FROM plugin_rollouts r WHERE r.package_id = p.id) AS rolled \
         FROM plugin_packages p LEFT JOIN users u ON u.id = p.approved_by \
         ORDER BY p.name, p.uploaded_at LIMIT $1",
    )
    .bind(PACKAGES_LISTED_MAX)
    .fetch_all(&state.db.pool)
    .await?;
    let mut packages = Vec::with_capacity(rows.len());
    for row in &rows {
        let meta: Value =
            serde_json::from_str(&row.try_get::<String, _>("manifest")?).unwrap_or(Value::Null);
        let approved_at = row.try_get::<Option<i64>, _>("approved_at")?;
        let approved_by = match (
            row.try_get::<Option<String>, _>("approved_by")?,
            row.try_get::<Option<String>, _>("approver")?,
        ) {
            (Some(id), name) => json!({ "id": id, "name": name }),
            (None, _) => Value::Null,
        };
        packages.push(json!({
            "id": row.try_get::<String, _>("id")?,
            "name": row.try_get::<String, _>("name")?,
            "version": row.try_get::<String, _>("version")?,
            "sha256": row.try_get::<String, _>("sha256")?,
            "signer": meta["signer"],
            "manifest": meta["manifest"],
            "uploaded_at": rfc3339(row.try_get("uploaded_at")?),
            "approved": approved_at.is_some(),
            "approved_at": approved_at.map_or(Value::Null, rfc3339),
            "approved_by": approved_by,
            "rolled_out": row.try_get::<i64, _>("rolled")? > 0,
        }));
    }
    ok(json!({ "plugins": packages }))
}

async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let done =
        sqlx::query("UPDATE plugin_packages SET approved_at = $1, approved_by = $2 WHERE id = $3")
            .bind(now_ms())
            .bind(&principal.user_id)
            .bind(&id)
            .execute(&state.db.pool)
            .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("plugin package"));
    }
    info!(package = %id, by = %principal.user_id, "plugin package approved");
    ok(json!({ "id": id, "approved": true }))
}

async fn rollout(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let principal = authenticate(&state, &headers).await?;
    require_admin(&principal)?;
    let row = sqlx::query("SELECT name, version, approved_at FROM plugin_packages WHERE id = $1")
        .bind(&id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("plugin package"))?;
    if row.try_get::<Option<i64>, _>("approved_at")?.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_approved",
            "approve the package before rolling it out",
        ));
    }
    let name: String = row.try_get("name")?;
    let version: String = row.try_get("version")?;
    sqlx::query(
        "INSERT INTO plugin_rollouts (name, package_id, rolled_at, rolled_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET package_id = $2, rolled_at = $3, rolled_by = $4",
    )
    .bind(&name)
    .bind(&id)
    .bind(now_ms())
    .bind(&principal.user_id)
    .execute(&state.db.pool)
    .await?;
    info!(plugin = %name, %version, by = %principal.user_id, "plugin rolled out");
    ok(json!({ "name": name, "version": version, "package": id }))
}

/// The package's bytes, for an edge (its secret) or an admin.
async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let edge = sqlx::query("SELECT id FROM edges WHERE secret_hash = $1 AND status <> 'disabled'")
        .bind(sha256_hex(&bearer))
        .fetch_optional(&state.db.pool)
        .await?;
    if edge.is_none() {
        let principal = authenticate(&state, &headers).await?;
        require_admin(&principal)?;
    }
    let row = sqlx::query(
        "SELECT package FROM plugin_packages WHERE id = $1 AND approved_at IS NOT NULL",
    )
    .bind(&id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("approved plugin package"))?;
    let bytes: Vec<u8> = row.try_get("package")?;
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// What edges are told at check-in: the rolled-out packages and the signers approved.
pub async fn for_edges(state: &AppState) -> Result<Value, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT p.id, p.name, p.version, p.sha256, p.manifest FROM plugin_rollouts r \
         JOIN plugin_packages p ON p.id = r.package_id WHERE p.approved_at IS NOT NULL ORDER BY p.name",
    )
    .fetch_all(&state.db.pool)
    .await?;
    let mut plugins = Vec::with_capacity(rows.len());
    for row in &rows {
        let meta: Value =
            serde_json::from_str(&row.try_get::<String, _>("manifest")?).unwrap_or(Value::Null);
        plugins.push(json!({
            "id": row.try_get::<String, _>("id")?,
            "name": row.try_get::<String, _>("name")?,
            "version": row.try_get::<String, _>("version")?,
            "sha256": row.try_get::<String, _>("sha256")?,
            "signer": meta["signer"],
        }));
    }
    Ok(Value::Array(plugins))
}
