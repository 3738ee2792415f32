//! `multistream-node`: run an edge node, or mint a join token with its identity.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use multistream_node::config::{DEFAULT_DATA_DIR, FileConfig};
use multistream_node::node;
use multistream_node::token::{Issuer, parse_lifetime};
use multistream_proto::{Grants, ParticipantId, Role, SessionId, TokenKind};

#[derive(Parser)]
#[command(
    name = "multistream-node",
    version,
    about = "A multistream edge node: live classes over WebRTC."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node (the default).
    Run(RunArgs),
    /// Mint a join token signed with this node's identity.
    Token(TokenArgs),
    /// Print this node's id for other edges' `--peer` lists (made on first use).
    Id(IdArgs),
    /// Make a key to sign plugin packages with (keep it safe; edges trust its public key).
    PluginKey(PluginKeyArgs),
    /// Sign a built plugin component into a package edges will load.
    PluginSign(PluginSignArgs),
    /// Make a cluster issuer key: give the file to every edge (`issuer_key`), and tokens one
    /// edge signs are accepted by all.
    IssuerKey(PluginKeyArgs),
}

#[derive(Args)]
struct PluginKeyArgs {
    /// Where to write the new key (never overwritten).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct PluginSignArgs {
    /// The signing key (from `multistream-node plugin-key`).
    #[arg(long)]
    key: PathBuf,
    /// Directory for the package [default: the current directory].
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// The component, e.g. target/wasm32-wasip2/release/my_plugin.wasm.
    component: PathBuf,
}

#[derive(Args)]
struct IdArgs {
    /// Data directory holding the node's keys [default: ./multistream-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Config file, to find the data directory.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct RunArgs {
    /// TOML config file; flags override its keys.
    #[arg(long, short = 'c', env = "MULTISTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP(S) address for pages, WHIP, WHEP and metrics [default: 127.0.0.1:8080].
    #[arg(long = "http")]
    http_addr: Option<std::net::SocketAddr>,
    /// UDP address for all media [default: 127.0.0.1:8090].
    #[arg(long = "media")]
    media_addr: Option<std::net::SocketAddr>,
    /// Address browsers reach this machine at (IP or IP:port), when not the bind address.
    #[arg(long)]
    public_addr: Option<String>,
    /// Directory for the node's identity key and TLS certificate [default: ./multistream-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// UDP address other edges of the cluster reach this node at (QUIC) [default: 127.0.0.1:8091].
    #[arg(long)]
    peer_addr: Option<std::net::SocketAddr>,
    /// Another edge of the cluster, as <node id>@<ip:port>; repeat for each.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// The cluster configuration's epoch; raise it on every edge when the edges change [default: 1].
    #[arg(long)]
    cluster_epoch: Option<u64>,
    /// Class commands a participant may send per second [default: 30].
    #[arg(long)]
    commands_per_second: Option<f64>,
    /// A public key (hex, from `plugin-key`) whose signed packages in <data-dir>/plugins load;
    /// repeat for each.
    #[arg(long = "plugin-key")]
    plugin_keys: Vec<String>,
    /// Where compiled plugin code is cached [default: <data-dir>/plugin-cache].
    #[arg(long)]
    plugin_cache: Option<PathBuf>,
    /// This edge's name for people, e.g. "North campus" [default: from its node id].
    #[arg(long)]
    edge_name: Option<String>,
    /// The cluster issuer key (from `issuer-key`), shared by every edge of the cluster.
    #[arg(long)]
    issuer_key: Option<PathBuf>,
    /// The base URL browsers reach this edge at, e.g. https://north.example.org:8443; other
    /// edges send participants here [default: from --http and the scheme].
    #[arg(long)]
    public_url: Option<String>,
    /// A campus network this edge serves, e.g. 10.20.0.0/16: browsers joining from it are
    /// placed on this edge; repeat for each.
    #[arg(long = "campus-network")]
    campus_networks: Vec<String>,
    /// A public key (hex) whose tokens this node accepts besides its own and the cluster's;
    /// repeat for each.
    #[arg(long = "trust-issuer")]
    trusted_issuers: Vec<String>,
    /// The control plane this edge is enrolled with, e.g. https://control.school.example.
    #[arg(long)]
    control_url: Option<String>,
    /// A one-time enrolment code from the control plane's admin (first start only).
    #[arg(long, env = "MULTISTREAM_ENROLMENT_CODE")]
    enrolment_code: Option<String>,
    /// PEM certificates to trust for the control plane's HTTPS [default: the system's].
    #[arg(long)]
    control_ca: Option<PathBuf>,
    /// PEM certificate chain to serve HTTPS with (with --tls-key).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
}

#[derive(Args)]
struct TokenArgs {
    /// Session the token is for.
    #[arg(long)]
    session: SessionId,
    /// Participant id (stable across reconnects), e.g. a school user id.
    #[arg(long)]
    identity: ParticipantId,
    /// Name shown to others.
    #[arg(long)]
    name: String,
    /// teacher, student or guest.
    #[arg(long, default_value = "student")]
    role: Role,
    /// How long the token is valid: 90m, 2h, 7d...
    #[arg(long, default_value = "12h")]
    lifetime: String,
    /// Allow publishing whatever the role (for example a student presenting).
    #[arg(long, conflicts_with = "no_publish")]
    publish: bool,
    /// Forbid publishing whatever the role.
    #[arg(long)]
    no_publish: bool,
    /// Make a shareable invitation link token instead of a personal one.
    #[arg(long)]
    invite: bool,
    /// Data directory holding the node's identity [default: ./multistream-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Config file, to find the data directory.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Sign with this cluster issuer key instead of the node's own [default: the config's
    /// `issuer_key`].
    #[arg(long)]
    issuer_key: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MULTISTREAM_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,str0m=warn,dimpl=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Token(args)) => token(args),
        Some(Command::Id(args)) => id(args),
        Some(Command::PluginKey(args)) => {
            multistream_node::plugins::make_signing_key(&args.out).map(|public| {
                println!("{public}");
                eprintln!(
                    "Wrote {}; keep it safe. Edges load packages signed with it once they trust the public key above.",
                    args.out.display()
                );
            })
        }
        Some(Command::PluginSign(args)) => {
            multistream_node::plugins::sign_component(&args.key, &args.component, &args.out).map(
                |(path, public)| {
                    println!("{}", path.display());
                    eprintln!("Signed with key {public}.");
                },
            )
        }
        Some(Command::IssuerKey(args)) => Issuer::create_cluster_key(&args.out)
            .map(|public| {
                println!("{public}");
                eprintln!(
                    "Wrote {}; copy it to every edge of the cluster (`issuer_key` in its config, or --issuer-key) and keep it secret. Verifiers that only check tokens trust the public key above.",
                    args.out.display()
                );
            })
            .map_err(anyhow::Error::from),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn file_config(path: Option<&PathBuf>) -> anyhow::Result<FileConfig> {
    Ok(match path {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    })
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let flags = FileConfig {
        http_addr: args.http_addr,
        media_addr: args.media_addr,
        public_addr: args.public_addr,
        data_dir: args.data_dir,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        peer_addr: args.peer_addr,
        peers: (!args.peers.is_empty()).then_some(args.peers),
        cluster_epoch: args.cluster_epoch,
        commands_per_second: args.commands_per_second,
        plugin_keys: (!args.plugin_keys.is_empty()).then_some(args.plugin_keys),
        plugin_cache_dir: args.plugin_cache,
        issuer_key: args.issuer_key,
        edge_name: args.edge_name,
        public_url: args.public_url,
        campus_networks: (!args.campus_networks.is_empty()).then_some(args.campus_networks),
        trusted_issuers: (!args.trusted_issuers.is_empty()).then_some(args.trusted_issuers),
        control_url: args.control_url,
        enrolment_code: args.enrolment_code,
        control_ca: args.control_ca,
        ..FileConfig::default()
    };
    let config = file_config(args.config.as_ref())?.overlay(flags).settle()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(node::run(config, shutdown_signal()))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// The data directory a `token` or `id` command works on: the flag, else the config file's, else
/// the default; created if missing.
fn data_dir_of(flag: Option<PathBuf>, config: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    let data_dir = match flag {
        Some(dir) => dir,
        None => file_config(config)?
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
    };
    node::prepare_data_dir(&data_dir)?;
    Ok(data_dir)
}

fn id(args: IdArgs) -> anyhow::Result<()> {
    let data_dir = data_dir_of(args.data_dir, args.config.as_ref())?;
    let key = multistream_node::peer::load_or_create_key(&data_dir)?;
    println!("{}", key.public());
    Ok(())
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let data_dir = data_dir_of(args.data_dir, args.config.as_ref())?;
    let own = Issuer::load_or_create(&data_dir)?;
    let cluster_key = match args.issuer_key {
        Some(path) => Some(path),
        None => file_config(args.config.as_ref())?.issuer_key,
    };
    let issuer = match cluster_key {
        Some(path) => Issuer::cluster(&path, own)?,
        None => own,
    };
    let lifetime = parse_lifetime(&args.lifetime).map_err(anyhow::Error::msg)?;
    let name = multistream_proto::claims::validate_display_name(&args.name)?;
    let defaults = args.role.default_grants();
    let grants = Grants {
        publish: (defaults.publish || args.publish) && !args.no_publish,
        subscribe: defaults.subscribe,
    };
    let kind = if args.invite {
        TokenKind::Invite
    } else {
        TokenKind::Access
    };
    let token = node::mint(
        &issuer,
        args.session,
        args.identity,
        name,
        args.role,
        grants,
        kind,
        lifetime,
    );
    println!("{token}");
    Ok(())
}
