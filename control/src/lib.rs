//! The multistream control plane as a library: the binary in `main.rs` is a thin CLI over it,
//! and the system tests drive the same code. An HTTP API (axum) over SQL (SQLite or
//! PostgreSQL through sqlx): organisations, people and their roles, courses, edges, and the
//! sessions scheduled on them.

use std::future::Future;
use std::sync::Arc;

pub mod admin_api;
pub mod api;
pub mod auth;
pub mod db;
pub mod enrol;
pub mod issuer;
pub mod plugins;
pub mod schedule;
pub mod tls;
pub mod web;

use crate::db::{Db, new_id, now_ms};

/// Participants one edge can be registered for, at most.
pub const EDGE_CAPACITY_MAX: i64 = 10_000;

/// What the service is started with.
#[derive(Clone)]
pub struct Settings {
    /// How early a teacher may start a class before its scheduled start, in milliseconds.
    pub early_start_ms: i64,
    /// The key join tokens are signed with.
    pub issuer: Arc<issuer::ControlIssuer>,
    /// How often edges are told to check in, in seconds.
    pub heartbeat_secs: u64,
    /// Serve HTTPS with this certificate; plain HTTP without (loopback only, by the CLI's rule).
    pub tls: Option<tls::TlsPem>,
}

impl Settings {
    /// The defaults, with the issuer key of `data_dir` (made if missing).
    pub fn in_data_dir(data_dir: &std::path::Path) -> anyhow::Result<Settings> {
        std::fs::create_dir_all(data_dir)
            .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", data_dir.display()))?;
        Ok(Settings {
            early_start_ms: schedule::EARLY_START_MARGIN_MS,
            issuer: Arc::new(issuer::ControlIssuer::load_or_create(data_dir)?),
            heartbeat_secs: enrol::HEARTBEAT_SECS,
            tls: None,
        })
    }
}

/// How long requests in flight may take to finish once `shutdown` completes.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the API on `listener` (over TLS when `settings.tls` is set) until `shutdown`
/// completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: Db,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = api::AppState {
        db,
        limiter: Arc::default(),
        early_start_ms: settings.early_start_ms,
        issuer: settings.issuer,
        heartbeat_secs: settings.heartbeat_secs,
        booking: Arc::default(),
        secure_cookies: settings.tls.is_some(),
    };
    let app = api::router(state.clone())
        .merge(enrol::router(state.clone()))
        .merge(plugins::router(state.clone()))
        .merge(admin_api::router(state))
        .merge(web::router())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let Some(tls) = settings.tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(tls.cert, tls.key)
        .await
        .map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the TLS certificate or key is not valid PEM: {error}"),
            )
        })?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app)
        .await
}

/// Why the first administrator could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0}")]
    Invalid(String),
    #[error("someone already has the email {0}")]
    EmailTaken(String),
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// Makes an organisation (if there is none of that name) and an administrator of it who signs
/// in with `password`; returns the administrator's id.
pub async fn bootstrap_admin(
    db: &Db,
    organisation: &str,
    email: &str,
    name: &str,
    password: &str,
) -> Result<String, BootstrapError> {
    use sqlx::Row;
    auth::check_new_password(password).map_err(BootstrapError::Invalid)?;
    let email = email.trim().to_lowercase();
    if !email.contains('@') {
        return Err(BootstrapError::Invalid(format!(
            "{email:?} is not an email address"
        )));
    }
    let (organisation, name) = (organisation.trim(), name.trim());
    if organisation.is_empty() || name.is_empty() {
        return Err(BootstrapError::Invalid(
            "the organisation and the name must not be empty".into(),
        ));
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|_| BootstrapError::Invalid("hashing the password failed".into()))?
        .map_err(BootstrapError::Invalid)?;
    let now = now_ms();
    let existing = sqlx::query("SELECT id FROM organisations WHERE name = $1")
        .bind(organisation)
        .fetch_optional(&db.pool)
        .await?;
    let organisation_id = match existing {
        Some(row) => row.try_get::<String, _>("id")?,
        None => {
            let id = new_id();
            sqlx::query("INSERT INTO organisations (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(organisation)
                .bind(now)
                .execute(&db.pool)
                .await?;
            id
        }
    };
    let user = new_id();
    let inserted = sqlx::query(
        "INSERT INTO users (id, organisation_id, email, name, password_hash, disabled, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6)",
    )
    .bind(&user)
    .bind(&organisation_id)
    .bind(&email)
    .bind(name)
    .bind(hash)
    .bind(now)
    .execute(&db.pool)
    .await;
    match inserted {
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
            return Err(BootstrapError::EmailTaken(email));
        }
        other => {
            other?;
        }
    }
    sqlx::query("INSERT INTO user_roles (id, user_id, role, course_id, created_at) VALUES ($1, $2, 'admin', NULL, $3)")
        .bind(new_id())
        .bind(&user)
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(user)
}
