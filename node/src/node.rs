//! Starting and stopping a node: bind the sockets, load identity and TLS, start the actors,
//! serve HTTP, print the links, and shut everything down cleanly on request.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use multistream_proto::{Claims, Grants, ParticipantId, Role, SessionId, TokenKind};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{AppState, Refusals};
use crate::log::{LogCore, NodeId};
use crate::presence::PresenceHandle;
use crate::sfu::{Sfu, SfuConfig};
use crate::token::{Issuer, unix_now_secs};

/// Lifetime of the links printed at start: a school day and then some.
pub const DEMO_LINK_LIFETIME_SECS: u64 = 24 * 3600;

/// How long open HTTP requests get to finish at shutdown.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Installs the process-wide crypto providers (str0m's and rustls's) and makes the DTLS
/// certificate all peers share. Idempotent.
pub fn init_crypto() -> anyhow::Result<str0m::config::DtlsCert> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let provider = str0m::crypto::from_feature_flags();
    let cert = provider
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| anyhow!("the crypto backend could not make a DTLS certificate"))?;
    provider.install_process_default();
    Ok(cert)
}

/// Makes sure the data directory exists and is writable, with an error that says which.
/// A number that differs on every start of the node: it tells the session logs of other edges
/// that this is a new incarnation (its forwarded requests are numbered afresh).
fn rand_incarnation() -> u64 {
    u64::from_str_radix(&crate::token::random_hex(8), 16).unwrap_or(1)
}

pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok")
        .with_context(|| format!("cannot write to the data directory {}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Signs a token with the node's identity.
pub fn mint(
    issuer: &Issuer,
    session: SessionId,
    participant: ParticipantId,
    name: String,
    role: Role,
    grants: Grants,
    kind: TokenKind,
    lifetime_secs: u64,
) -> String {
    let now = unix_now_secs();
    issuer.sign(&Claims {
        iss: issuer.name().to_owned(),
        sub: participant,
        sid: session,
        name,
        role,
        grants,
        kind,
        iat: now,
        exp: now + lifetime_secs,
    })
}

fn bind_error(what: &str, addr: SocketAddr, flag: &str, error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        anyhow!(
            "the {what} address {addr} is already in use (is another multistream-node running?); \
             choose another with {flag}"
        )
    } else if error.kind() == std::io::ErrorKind::PermissionDenied {
        anyhow!(
            "not allowed to listen on the {what} address {addr} ({error}); ports below 1024 need privileges; choose another with {flag}"
        )
    } else {
        anyhow!("cannot listen on the {what} address {addr}: {error}")
    }
}

/// Runs a node until `shutdown` resolves. Prints where it listens and the demo links.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    prepare_data_dir(&config.data_dir)?;
    let own = Issuer::load_or_create(&config.data_dir)?;
    let mut issuer = match &config.issuer_key {
        Some(path) => Issuer::cluster(path, own)
            .with_context(|| format!("cannot use the cluster issuer key {}", path.display()))?,
        None => own,
    };
    for key in &config.trusted_issuers {
        issuer.trust(key).context("trusted_issuers")?;
    }
    let dtls_cert = init_crypto()?;

    let udp = std::net::UdpSocket::bind(config.media_addr)
        .map_err(|e| bind_error("media", config.media_addr, "--media", e))?;
    let media_bound = udp.local_addr()?;
    let mut candidate = config.media_public_addr;
    if candidate.port() == 0 {
        candidate.set_port(media_bound.port());
    }

    let tcp = std::net::TcpListener::bind(config.http_addr)
        .map_err(|e| bind_error("HTTP", config.http_addr, "--http", e))?;
    tcp.set_nonblocking(true)?;
    let http_bound = tcp.local_addr()?;

    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::load(cert, key)?),
        _ if crate::tls::is_loopback(http_bound.ip()) => None,
        _ => Some(crate::tls::self_signed(
            &config.data_dir,
            &[config.public_host.clone()],
        )?),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let presence = PresenceHandle::spawn();
    let sfu = Sfu::new(
        Instant::now(),
        SfuConfig {
            candidate_addr: candidate,
            dtls_cert,
            session_peers_max: config.session_peers_max,
        },
    );
    let store = Arc::new(crate::store::Store::open(
        &config.data_dir.join("store.redb"),
    )?);
    let peer_key = crate::peer::load_or_create_key(&config.data_dir)?;
    let node_id = crate::peer::node_id(&peer_key);
    let mut cluster = vec![node_id.clone()];
    let mut peers = Vec::with_capacity(config.peers.len());
    for peer in &config.peers {
        let id = peer
            .id
            .parse()
            .map_err(|error| anyhow!("peer id {} is not a node id: {error}", peer.id))?;
        if peer.id == node_id.0 {
            bail!(
                "--peer lists this node's own id ({}); list only the other edges",
                peer.id
            );
        }
        cluster.push(NodeId(peer.id.clone()));
        peers.push(crate::peer::Peer {
            id,
            addr: peer.addr,
        });
    }
    let edge_name = config
        .edge_name
        .clone()
        .unwrap_or_else(|| format!("edge {}", &node_id.0[..8.min(node_id.0.len())]));
    // Where browsers reach this edge: configured, or made from the HTTP address.
    let scheme = if tls.is_some() { "https" } else { "http" };
    let host = if http_bound.ip().is_unspecified() {
        config.public_host.clone()
    } else {
        http_bound.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let base = format!("{scheme}://{host}:{}", http_bound.port());
    let public_url = config.public_url.clone().unwrap_or_else(|| base.clone());
    // A control plane: enrol (first start) or read the enrolment; trust its key and take the
    // edges it lists as peers.
    let control = match &config.control_url {
        Some(url) => {
            let settings = crate::control::ControlSettings {
                url: url.clone(),
                code: config.enrolment_code.clone(),
                ca: config.control_ca.clone(),
            };
            let me = serde_json::json!({
                "node_id": node_id.0,
                "name": edge_name,
                "peer_addr": config.peer_addr.to_string(),
                "public_url": public_url,
                "capacity": crate::sfu::NODE_PEERS_MAX,
                "version": env!("CARGO_PKG_VERSION"),
            });
            let enrolment =
                crate::control::enrol_if_needed(&config.data_dir, &settings, me).await?;
            issuer
                .trust(&enrolment.issuer_public_key)
                .context("the control plane's issuer key")?;
            for listed in &enrolment.peers {
                if listed.id == node_id.0 || cluster.iter().any(|c| c.0 == listed.id) {
                    continue;
                }
                let (Ok(id), Ok(addr)) = (listed.id.parse(), listed.peer_addr.parse()) else {
                    warn!(peer = %listed.id, "the control plane lists a peer this node cannot use");
                    continue;
                };
                cluster.push(NodeId(listed.id.clone()));
                peers.push(crate::peer::Peer { id, addr });
            }
            Some((settings, enrolment))
        }
        None => None,
    };
    let issuer = Arc::new(issuer);
    // Media relayed between edges: links the peer plane keeps, inputs the media thread takes.
    let peer_ids: Vec<NodeId> = peers.iter().map(|p| NodeId(p.id.to_string())).collect();
    let relay_links = crate::cascade::link::RelayLinks::new(&peer_ids);
    let (relay_tx, relay_rx) =
        tokio::sync::mpsc::channel(crate::cascade::link::RELAY_INBOUND_QUEUE_MAX);
    // What this edge tells its peers about itself, for placing participants; its load is kept
    // current by `report_load` once the server runs.
    let (edge_report, edge_report_rx) = watch::channel(crate::placement::EdgeReport {
        name: edge_name.clone(),
        url: public_url.clone(),
        networks: config
            .campus_networks
            .iter()
            .map(ToString::to_string)
            .collect(),
        load: 0,
        capacity: crate::sfu::NODE_PEERS_MAX as u32,
        issuer: issuer.name().to_owned(),
        trusted: issuer
            .trusted_key_parts()
            .into_iter()
            .take(crate::placement::TRUSTED_ISSUERS_MAX)
            .collect(),
        sessions: 0,
        draining: false,
    });
    // Check in with the control plane, keeping the schedule it sends (and the one kept from
    // before, until it answers).
    let control = control.map(|(settings, enrolment)| {
        let counters = Arc::new(crate::control::ControlCounters::default());
        let (schedule_tx, schedule_rx) =
            watch::channel(crate::control::cached_schedule(&config.data_dir).unwrap_or_default());
        crate::control::spawn_heartbeat(
            settings,
            enrolment,
            peers.iter().map(|p| p.id.to_string()).collect(),
            config.peer_addr.to_string(),
            config.data_dir.clone(),
            edge_report_rx.clone(),
            schedule_tx,
            Arc::clone(&counters),
            stop_rx.clone(),
        );
        crate::control::ControlLink {
            counters,
            schedule: schedule_rx,
        }
    });
    let placement_links = Arc::clone(&relay_links);
    let stop_rx_for_load = stop_rx.clone();
    let relay = (!peers.is_empty()).then(|| crate::media::RelaySetup {
        node: node_id.clone(),
        links: Arc::clone(&relay_links),
        inbound: relay_rx,
    });
    let (media, media_thread) = crate::media::spawn(
        udp,
        sfu,
        candidate,
        presence.clone(),
        relay,
        stop_rx.clone(),
    )
    .context("cannot start the media engine")?;
    let core = LogCore::new(
        node_id.clone(),
        cluster,
        config.cluster_epoch,
        rand_incarnation(),
    );
    // Frames for other edges go to the peer plane; a standalone node has none.
    let (peer_tx, peer_rx) = tokio::sync::mpsc::channel(crate::sessions::SESSIONS_QUEUE_MAX);
    let plugin_dir = config.data_dir.join("plugins");
    std::fs::create_dir_all(&plugin_dir).with_context(|| {
        format!(
            "cannot create the plugin directory {}",
            plugin_dir.display()
        )
    })?;
    let (news_tx, news_rx) = tokio::sync::mpsc::channel(crate::plugins::PLUGIN_QUEUE_MAX);
    let (plugins, catalog) = crate::plugins::spawn(
        crate::plugins::PluginSettings {
            dir: plugin_dir,
            trusted_keys: config.plugin_keys.clone(),
            builtin: config.builtin_plugins,
            cache_dir: Some(config.plugin_cache_dir.clone()),
            limits: multistream_plugin_host::Limits::default(),
        },
        news_tx,
    )
    .context("cannot start the plugin host")?;
    let (sessions, sessions_task) = crate::sessions::spawn(
        core,
        crate::sessions::ClassLimits {
            commands_per_second: config.commands_per_second,
            strokes_per_second: config.strokes_per_second,
            edge_name: edge_name.clone(),
        },
        Arc::clone(&store),
        peer_tx,
        Some(crate::sessions::PluginLink {
            handle: plugins.clone(),
            catalog,
            news: news_rx,
        }),
        stop_rx.clone(),
    )
    .context("cannot start the session logs")?;
    let peer_plane = if peers.is_empty() {
        None
    } else {
        let plane = crate::peer::PeerPlane::start(
            peer_key,
            config.peer_addr,
            peers,
            sessions.clone(),
            Arc::clone(&store),
            peer_rx,
            crate::peer::RelayPlane {
                links: relay_links,
                inbound: relay_tx,
                report: edge_report_rx,
            },
            stop_rx,
        )
        .await?;
        Some(Arc::new(plane))
    };
    let state = AppState {
        issuer: issuer.clone(),
        media,
        presence,
        sessions,
        store,
        plugins,
        edge: multistream_proto::wire::EdgeView {
            id: node_id.0.clone(),
            name: edge_name,
        },
        peers: peer_plane.clone(),
        relay_links: placement_links,
        edge_report: edge_report.subscribe(),
        placements: Arc::new(crate::http::PlacementCounters::default()),
        control,
        refusals: Arc::new(Refusals::default()),
        next_connection: Arc::new(AtomicU64::new(1)),
    };
    tokio::spawn(report_load(
        edge_report,
        state.media.clone(),
        state.presence.clone(),
        state.control.as_ref().map(|c| c.schedule.clone()),
        stop_rx_for_load,
    ));
    // With the peer's address, which placement matches against campus networks.
    let app = crate::http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let server = {
        let handle = handle.clone();
        let tls = tls
            .as_ref()
            .map(|m| (m.cert_pem.clone(), m.key_pem.clone()));
        tokio::spawn(async move {
            match tls {
                Some((cert, key)) => {
                    let rustls = axum_server::tls_rustls::RustlsConfig::from_pem(cert, key)
                        .await
                        .context("the TLS certificate or key is not valid PEM")?;
                    // TCP_NODELAY: classroom messages are small and latency-bound; Nagle's
                    // algorithm with delayed acknowledgements would hold each for ~40 ms.
                    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls)
                        .acceptor(axum_server::accept::NoDelayAcceptor::new());
                    axum_server::from_tcp(tcp)?
                        .acceptor(acceptor)
                        .handle(handle)
                        .serve(app)
                        .await?;
                }
                None => {
                    axum_server::from_tcp(tcp)?
                        .acceptor(axum_server::accept::NoDelayAcceptor::new())
                        .handle(handle)
                        .serve(app)
                        .await?
                }
            }
            anyhow::Ok(())
        })
    };

    let session = config.demo_session.clone();
    let teacher = mint(
        &issuer,
        session.clone(),
        "teacher".parse().expect("valid id"),
        "Teacher".into(),
        Role::Teacher,
        Role::Teacher.default_grants(),
        TokenKind::Access,
        DEMO_LINK_LIFETIME_SECS,
    );
    let invite = mint(
        &issuer,
        session.clone(),
        "teacher".parse().expect("valid id"),
        "Student invitation".into(),
        Role::Student,
        Role::Student.default_grants(),
        TokenKind::Invite,
        DEMO_LINK_LIFETIME_SECS,
    );
    println!(
        "multistream-node {} ({})",
        env!("CARGO_PKG_VERSION"),
        issuer.name()
    );
    println!("  http   {base}");
    println!("  media  udp {media_bound} (browsers send to {candidate})");
    println!("  data   {}", config.data_dir.display());
    println!("  id     {node_id}");
    if let Some(plane) = &peer_plane {
        let bound = plane
            .endpoint
            .bound_sockets()
            .first()
            .map_or_else(|| config.peer_addr.to_string(), ToString::to_string);
        println!("  peers  udp {bound} ({} other edges)", config.peers.len());
    }
    if let Some(path) = tls.as_ref().and_then(|m| m.self_signed_path.as_ref()) {
        println!(
            "  tls    self-signed certificate {} (browsers will ask to trust it once)",
            path.display()
        );
    }
    println!();
    println!(
        "Session \"{session}\", links valid for {} hours:",
        DEMO_LINK_LIFETIME_SECS / 3600
    );
    println!("  teacher  {public_url}/s/{session}#token={teacher}");
    println!("  students {public_url}/s/{session}#invite={invite}");
    println!();
    println!("Press Ctrl-C to stop.");
    info!(%base, media = %media_bound, "node started");

    tokio::select! {
        () = shutdown => info!("shutdown requested"),
        result = async { server.await } => {
            let _ = stop_tx.send(true);
            return match result {
                Ok(Ok(())) => Err(anyhow!("the HTTP server stopped unexpectedly")),
                Ok(Err(error)) => Err(error),
                Err(join) => Err(anyhow!("the HTTP server failed: {join}")),
            };
        }
    }
    handle.graceful_shutdown(Some(HTTP_SHUTDOWN_GRACE));
    let _ = stop_tx.send(true);
    let stopped = tokio::task::spawn_blocking(move || media_thread.join()).await;
    if !matches!(stopped, Ok(Ok(()))) {
        bail!("the media engine failed while stopping");
    }
    // The session task finishes the write it is in; what was acknowledged is already durable.
    let _ = sessions_task.await;
    if let Some(plane) = &peer_plane {
        // Tells the other edges at once, instead of leaving them to time the connections out.
        plane.endpoint.close().await;
    }
    println!("Stopped.");
    Ok(())
}

/// How often this edge's load in its report is brought up to date.
const LOAD_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps this edge's report to its peers current: its load is the larger of its classroom
/// connections and its media connections (either can fill an edge), against `NODE_PEERS_MAX`;
/// the sessions with someone here; and whether the control plane (`schedule`, when enrolled)
/// says an administrator is draining or has disabled it.
async fn report_load(
    report: watch::Sender<crate::placement::EdgeReport>,
    media: crate::media::MediaHandle,
    presence: PresenceHandle,
    mut schedule: Option<watch::Receiver<crate::control::Schedule>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(LOAD_REPORT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A new status from the control plane is reported at once, not at the next tick.
    let mut schedule_open = schedule.is_some();
    loop {
        let schedule_changed = async {
            match schedule.as_mut() {
                Some(receiver) if schedule_open => receiver.changed().await.is_ok(),
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticks.tick() => {}
            open = schedule_changed => schedule_open = open,
        }
        let occupancy = presence.occupancy().await;
        let media_peers = media.snapshot().await.map_or(0, |snapshot| {
            let gauges = &snapshot.gauges;
            gauges.publishers + gauges.subscribers + gauges.connecting
        });
        let load = u32::try_from(occupancy.connections.max(media_peers)).unwrap_or(u32::MAX);
        let sessions = u32::try_from(occupancy.sessions).unwrap_or(u32::MAX);
        let draining = schedule
            .as_ref()
            .is_some_and(|s| crate::control::takes_no_newcomers(&s.borrow().status));
        report.send_if_modified(|report| {
            let changed =
                (report.load, report.sessions, report.draining) != (load, sessions, draining);
            if report.draining != draining {
                info!(
                    draining,
                    "the control plane changed whether this edge takes newcomers"
                );
            }
            report.load = load;
            report.sessions = sessions;
            report.draining = draining;
            changed
        });
    }
}
