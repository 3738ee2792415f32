//! `multistream-control`: the control plane's command line.
//!
//! - `run`: serves the API and the admin UI over a database, migrating it on start; over HTTPS
//!   on any address but loopback.
//! - `create-admin`: makes the first administrator (the password comes from the environment or
//!   standard input, never from the command line, where other users could see it).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use multistream_control::db::Db;
use multistream_control::{Settings, bootstrap_admin, serve};

#[derive(Parser)]
#[command(
    name = "multistream-control",
    version,
    about = "The multistream control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the API.
    Run {
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:8100")]
        listen: SocketAddr,
        #[command(flatten)]
        database: Database,
        /// How early a teacher may start a class, in minutes.
        #[arg(long, default_value_t = 15)]
        early_start_minutes: i64,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Prints the public key join tokens are signed with (making the key if missing): give it
    /// to every edge as `--trust-issuer`.
    Issuer {
        #[command(flatten)]
        database: Database,
    },
    /// Makes an organisation's first administrator. The password is read from
    /// MULTISTREAM_ADMIN_PASSWORD, or else from the first line of standard input.
    CreateAdmin {
        #[command(flatten)]
        database: Database,
        #[arg(long)]
        organisation: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
    },
}

/// HTTPS. On a loopback address the API is plain HTTP unless a certificate is given or
/// `--self-signed-tls` is; on any other address it is HTTPS: the certificate given, or one made
/// and kept in the data directory (edges trust it with `--control-ca`).
#[derive(clap::Args)]
struct TlsArgs {
    /// The certificate chain, PEM (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key, PEM (with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate even on a loopback address.
    #[arg(long, conflicts_with_all = ["tls_cert", "no_tls"])]
    self_signed_tls: bool,
    /// Names (host names or IP addresses) the self-signed certificate is made for, besides
    /// localhost and the listening address; repeatable.
    #[arg(long = "public-host")]
    public_hosts: Vec<String>,
    /// Plain HTTP on any address: only behind a reverse proxy that terminates TLS, since edges
    /// send their secrets and admins their passwords.
    #[arg(long, conflicts_with = "tls_cert")]
    no_tls: bool,
}

impl TlsArgs {
    fn material(
        &self,
        listen: SocketAddr,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Option<multistream_control::tls::TlsPem>> {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            return multistream_control::tls::load(cert, key).map(Some);
        }
        if self.no_tls || (listen.ip().is_loopback() && !self.self_signed_tls) {
            return Ok(None);
        }
        let mut names = self.public_hosts.clone();
        if !listen.ip().is_unspecified() {
            names.push(listen.ip().to_string());
        } else if names.is_empty() {
            tracing::warn!(
                "listening on every address with a self-signed certificate for localhost only: pass --public-host with the name or address edges use"
            );
        }
        multistream_control::tls::self_signed(data_dir, &names).map(Some)
    }
}

#[derive(clap::Args)]
struct Database {
    /// The database: sqlite://path/control.db or postgres://user:password@host/database.
    /// Default: control.db in --data-dir.
    #[arg(long, env = "MULTISTREAM_CONTROL_DATABASE")]
    database: Option<String>,
    /// Where the default SQLite database and the issuer key live.
    #[arg(long, default_value = "control-data")]
    data_dir: PathBuf,
}

impl Database {
    async fn open(&self) -> anyhow::Result<Db> {
        let url = match &self.database {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&self.data_dir).map_err(|error| {
                    anyhow::anyhow!("cannot create {}: {error}", self.data_dir.display())
                })?;
                format!("sqlite://{}", self.data_dir.join("control.db").display())
            }
        };
        Ok(Db::open(&url).await?)
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MULTISTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("multistream-control: cannot start a runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("multistream-control: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            listen,
            database,
            early_start_minutes,
            tls,
        } => {
            let db = database.open().await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|error| anyhow::anyhow!("cannot listen on {listen}: {error}"))?;
            let address = listener.local_addr()?;
            let settings = Settings {
                early_start_ms: early_start_minutes.clamp(0, 24 * 60) * 60_000,
                ..Settings::in_data_dir(&database.data_dir)?
            };
            let tls = tls.material(address, &database.data_dir)?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(%address, scheme, "control plane listening");
            println!("control plane: {scheme}://{address}/admin");
            if let Some(path) = tls.as_ref().and_then(|t| t.self_signed.as_ref()) {
                println!(
                    "its certificate is self-signed: start edges with --control-ca {}",
                    path.display()
                );
            }
            let settings = Settings { tls, ..settings };
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            println!(
                "join tokens are signed as {} (edges: --trust-issuer {})",
                settings.issuer.name(),
                settings.issuer.public_hex()
            );
            serve(listener, db, settings, shutdown).await?;
            Ok(())
        }
        Command::Issuer { database } => {
            std::fs::create_dir_all(&database.data_dir)?;
            let settings = Settings::in_data_dir(&database.data_dir)?;
            println!("{}", settings.issuer.public_hex());
            Ok(())
        }
        Command::CreateAdmin {
            database,
            organisation,
            email,
            name,
        } => {
            let password = match std::env::var("MULTISTREAM_ADMIN_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let db = database.open().await?;
            let id = bootstrap_admin(&db, &organisation, &email, &name, &password).await?;
            println!("{id}");
            Ok(())
        }
    }
}
