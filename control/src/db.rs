//! The database: SQLite (one file, nothing to install) or PostgreSQL, chosen by URL, through
//! sqlx's `Any` driver so one set of queries serves both. Queries are written once, with `$1`
//! placeholders (both drivers read them), and every value goes in as a bound parameter, never
//! spliced into SQL text. The schema is in `migrations/sqlite` and `migrations/postgres`
//! (the same tables; only column types differ where the dialects do) and is applied at start.

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions};

/// Connections the pool keeps open at most.
pub const POOL_CONNECTIONS_MAX: u32 = 16;

/// How long a request waits for a free connection before it fails.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "{0:?} is not a database URL: use sqlite://path/to/control.db or postgres://user:password@host/database"
    )]
    BadUrl(String),
    #[error("cannot open the database: {0}")]
    Connect(sqlx::Error),
    #[error("cannot apply the schema migrations: {0}")]
    Migrate(sqlx::migrate::MigrateError),
}

impl Db {
    /// Opens (creating an SQLite file if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Db, OpenError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            // Never echo a URL that may hold a password.
            return Err(OpenError::BadUrl(redact(url)));
        };
        let url = match dialect {
            // Create the file on first start, and wait rather than fail when another writer holds
            // the lock briefly.
            Dialect::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|_| OpenError::BadUrl(redact(&url)))?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(match dialect {
                // One writer at a time in SQLite; more connections only queue on its lock.
                Dialect::Sqlite => 1,
                Dialect::Postgres => POOL_CONNECTIONS_MAX,
            })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // Foreign keys are off by default in SQLite; WAL lets readers go on
                        // while a write commits.
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *connection)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(OpenError::Connect)?;
        let migrator = match dialect {
            Dialect::Sqlite => &SQLITE,
            Dialect::Postgres => &POSTGRES,
        };
        migrator.run(&pool).await.map_err(OpenError::Migrate)?;
        Ok(Db { pool, dialect })
    }

    /// The schema versions applied, oldest first.
    pub async fn migrations(&self) -> Result<Vec<i64>, sqlx::Error> {
        use sqlx::Row;
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("version"))
            .collect()
    }
}

/// A URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:…{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A fresh unguessable id (128 bits, hex).
pub fn new_id() -> String {
    random_hex(16)
}

/// `bytes` random bytes from the system source, in hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The system random source does not fail on Linux; if it ever did, an id of zeros would be
    // refused by the unique constraints rather than silently shared.
    let _ = aws_lc_rs::rand::fill(&mut buffer);
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, hex: how secrets (API keys, cookies, enrolment codes) are stored, and
/// how plugin components are named.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://control:s3cret@db.school.example/control"),
            "postgres://control:…@db.school.example/control"
        );
        assert_eq!(redact("sqlite://control.db"), "sqlite://control.db");
    }
}
