//! A control plane for the tests: the real service (`multistream_control::serve`) on a loopback
//! port of this process, over a fresh SQLite file or a fresh PostgreSQL database, with its first
//! administrator made. Requests go through [`crate::http`], with JSON bodies and a cookie or an
//! API key.

use std::net::SocketAddr;

use multistream_control::db::Db;
use serde_json::Value;

use crate::http::{Response, request};

/// The PostgreSQL server the tests use: a URL whose role may create databases. `tests/run.sh`
/// installs and starts one and sets it.
pub const POSTGRES_ENV: &str = "MULTISTREAM_TEST_POSTGRES";

/// The first administrator's sign-in.
pub const ADMIN_EMAIL: &str = "admin@school.example";
pub const ADMIN_PASSWORD: &str = "a long admin passphrase";

pub struct Control {
    pub addr: SocketAddr,
    pub db: Db,
    pub admin_id: String,
    /// The public key its join tokens are signed with (an edge's `--trust-issuer`).
    pub issuer_public: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Its data directory (issuer key, SQLite file), removed when it stops.
    dir: std::path::PathBuf,
    /// A PostgreSQL database to drop when it stops: the server's admin URL and the name.
    postgres: Option<(String, String)>,
    /// Served over HTTPS with this self-signed certificate (its file, for an edge's
    /// `--control-ca`, and its PEM).
    pub tls: Option<(std::path::PathBuf, Vec<u8>)>,
}

/// Which database a control plane runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Control {
    /// Starts a control plane on a fresh database of `backend`, over plain HTTP.
    pub async fn start(name: &str, backend: Backend) -> Result<Control, String> {
        Control::start_with(name, backend, false).await
    }

    /// Starts a control plane on a fresh database of `backend`, over HTTPS with a self-signed
    /// certificate when `tls`.
    pub async fn start_with(name: &str, backend: Backend, tls: bool) -> Result<Control, String> {
        let dir = crate::node_process::fresh_data_dir(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (url, postgres) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.join("control.db").display()),
                None,
            ),
            Backend::Postgres => {
                let admin_url = std::env::var(POSTGRES_ENV).map_err(|_| {
                    format!(
                        "{POSTGRES_ENV} is not set: the control plane's PostgreSQL tests need a server \
                         (tests/run.sh installs and starts one; or set it to postgres://user:password@127.0.0.1/db \
                         for a role that may create databases)"
                    )
                })?;
                let database = format!("ms_test_{}", multistream_control::db::random_hex(6));
                create_postgres_database(&admin_url, &database).await?;
                let url = match admin_url.rsplit_once('/') {
                    Some((server, _)) => format!("{server}/{database}"),
                    None => return Err(format!("{POSTGRES_ENV} has no database part")),
                };
                (url, Some((admin_url, database)))
            }
        };
        let db = Db::open(&url).await.map_err(|e| e.to_string())?;
        let admin_id = multistream_control::bootstrap_admin(
            &db,
            "Northfield School",
            ADMIN_EMAIL,
            "Ada Admin",
            ADMIN_PASSWORD,
        )
        .await
        .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let pem = if tls {
            Some(multistream_control::tls::self_signed(&dir, &[]).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let tls = pem
            .as_ref()
            .and_then(|pem| pem.self_signed.clone().map(|path| (path, pem.cert.clone())));
        let settings = multistream_control::Settings {
            // Edges in tests check in often, so schedule changes reach them quickly.
            heartbeat_secs: 1,
            tls: pem,
            ..multistream_control::Settings::in_data_dir(&dir).map_err(|e| e.to_string())?
        };
        let issuer_public = settings.issuer.public_hex();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = db.clone();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            let _ = multistream_control::serve(listener, serving, settings, shutdown).await;
        });
        Ok(Control {
            addr,
            db,
            admin_id,
            issuer_public,
            stop: Some(stop),
            dir,
            postgres,
            tls,
        })
    }

    /// Its base URL, `http://…` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops serving and removes the database.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.db.pool.close().await;
        if let Some((admin_url, name)) = &self.postgres {
            let _ = drop_postgres_database(admin_url, name).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// One request; `auth` is a cookie header value (`ms_admin=…`) or an API key.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers: Vec<(&str, String)> = Vec::new();
        if body.is_some() {
            headers.push(("Content-Type", "application/json".into()));
        }
        match auth {
            Some(cookie) if cookie.starts_with("ms_admin=") => {
                headers.push(("Cookie", cookie.to_owned()))
            }
            Some(key) => headers.push(("Authorization", format!("Bearer {key}"))),
            None => {}
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.send(method, path, &headers, text.as_bytes()).await
    }

    /// One request with these headers and body, over HTTPS when the control plane serves it.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let answer = match &self.tls {
            Some((_, roots)) => {
                let name = self.addr.ip().to_string();
                crate::http::request_tls(self.addr, roots, &name, method, path, headers, body).await
            }
            None => request(self.addr, method, path, headers, body).await,
        };
        answer.unwrap_or_else(|error| {
            panic!("{method} {path}: the control plane does not answer: {error}")
        })
    }

    /// Signs in; returns the cookie to send back.
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<String, Response> {
        let body = serde_json::json!({ "email": email, "password": password });
        let response = self
            .call("POST", "/api/v1/sign-in", None, Some(&body))
            .await;
        if response.status != 200 {
            return Err(response);
        }
        let cookie = response
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .map(str::to_owned);
        cookie.ok_or(response)
    }
}

/// The JSON of a response body.
pub fn json(response: &Response) -> Value {
    serde_json::from_str(&response.body)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", response.body))
}

async fn create_postgres_database(admin_url: &str, name: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut connection = sqlx::postgres::PgConnection::connect(admin_url)
        .await
        .map_err(|e| {
            format!(
                "cannot reach PostgreSQL at {}: {e}",
                multistream_control::db::redact(admin_url)
            )
        })?;
    // A database name cannot be a bound parameter; it is made here from hex digits only.
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .map_err(|e| format!("cannot create the test database: {e}"))?;
    Ok(())
}

async fn drop_postgres_database(admin_url: &str, name: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut connection = sqlx::postgres::PgConnection::connect(admin_url)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A time (milliseconds since the Unix epoch) in RFC 3339, UTC, as the API reads it.
pub fn rfc3339_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
