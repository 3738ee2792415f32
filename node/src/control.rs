//! The edge's side of the control plane: enrolling once with a one-time code, then checking in
//! every few seconds. The edge never waits on the control plane to teach: tokens are verified
//! offline with the control plane's key, and the sessions it hosts are kept in the data
//! directory (`schedule.json`), so a class starts on time and runs to the end while the control
//! plane is unreachable; changes arrive at the next successful check-in.
//!
//! What enrolment returned is kept in `control.json` (mode 0600: it holds the edge's secret);
//! later starts use it and need no code.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{info, warn};

/// Largest answer read from the control plane.
const ANSWER_BYTES_MAX: usize = 4 * 1024 * 1024;

/// How long one request to the control plane may take.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Check-ins are at least this far apart, whatever the control plane says.
const HEARTBEAT_MIN: Duration = Duration::from_secs(1);

const ENROLMENT_FILE: &str = "control.json";
const SCHEDULE_FILE: &str = "schedule.json";

/// Sessions kept from the control plane's schedule, at most.
pub const SCHEDULE_SESSIONS_MAX: usize = 500;

/// Where the control plane is and how to trust it.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    pub url: String,
    pub code: Option<String>,
    pub ca: Option<PathBuf>,
}

/// Another edge, as the control plane lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedPeer {
    pub id: String,
    pub name: String,
    pub peer_addr: String,
    pub public_url: String,
}

/// What enrolment gave this edge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolment {
    pub url: String,
    pub edge_id: String,
    pub secret: String,
    pub issuer_public_key: String,
    pub peers: Vec<ListedPeer>,
    pub heartbeat_seconds: u64,
}

/// A session this edge hosts, as the control plane scheduled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    pub id: String,
    pub title: String,
    pub course: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub teacher_id: String,
    pub status: String,
    pub capacity: i64,
}

/// A plugin version the control plane rolled out, and who signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledOut {
    pub id: String,
    pub name: String,
    pub version: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The signer's public key, hex, which the admin approved.
    pub signer: String,
}

/// Whether this edge can record a class, as it tells the control plane: it has no recorder
/// yet, so sessions that require a recording are not booked on it.
pub const RECORDER: bool = false;

/// Plugins rolled out at once, at most.
pub const ROLLED_OUT_MAX: usize = 64;

/// The trusted signers the control plane approved, one public key per line, beside the
/// packages: the node's plugin loader reads it with its own `plugin_keys`.
pub const TRUSTED_KEYS_FILE: &str = "trusted-keys";

/// The control plane's latest answer, kept on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// `active`, `draining` or `disabled`.
    pub status: String,
    pub sessions: Vec<Scheduled>,
    #[serde(default)]
    pub plugins: Vec<RolledOut>,
    /// The other edges of the cluster as the control plane lists them now.
    #[serde(default)]
    pub peers: Vec<ListedPeer>,
}

/// Whether the control plane's list of edges differs from the ones this edge runs with (`running`,
/// node ids): the edges agree on each class's home edge from one membership list, so a change
/// takes effect when the edge restarts.
pub fn membership_changed(running: &[String], listed: &[ListedPeer], me: &str) -> bool {
    let mut listed: Vec<&str> = listed
        .iter()
        .map(|p| p.id.as_str())
        .filter(|id| *id != me)
        .collect();
    let mut running: Vec<&str> = running.iter().map(String::as_str).collect();
    listed.sort_unstable();
    listed.dedup();
    running.sort_unstable();
    running.dedup();
    listed != running
}

/// Whether an edge with this status from the control plane (`active`, `draining`, `disabled`)
/// should send newcomers to other edges. Its classes in progress go on either way.
pub fn takes_no_newcomers(status: &str) -> bool {
    matches!(status, "draining" | "disabled")
}

/// Figures for `/metrics`.
#[derive(Debug, Default)]
pub struct ControlCounters {
    pub heartbeats_ok: AtomicU64,
    pub heartbeats_failed: AtomicU64,
    /// When the last check-in succeeded, Unix seconds (0: never).
    pub last_ok_secs: AtomicU64,
    /// Rolled-out plugin packages fetched and kept.
    pub plugins_installed: AtomicU64,
    /// 1 while the control plane lists other edges than the ones this edge runs with.
    pub restart_needed: AtomicU64,
}

/// What the HTTP handlers see of the control plane.
#[derive(Clone)]
pub struct ControlLink {
    pub counters: Arc<ControlCounters>,
    pub schedule: watch::Receiver<Schedule>,
}

impl ControlLink {
    /// Whether the schedule kept here says `session` was cancelled.
    pub fn is_cancelled(&self, session: &str) -> bool {
        self.schedule
            .borrow()
            .sessions
            .iter()
            .any(|s| s.id == session && s.status == "cancelled")
    }

    /// Prometheus families.
    pub fn render(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let schedule = self.schedule.borrow();
        let now = crate::token::unix_now_secs();
        let last = load(&self.counters.last_ok_secs);
        let mut out = format!(
            "# HELP multistream_control_heartbeats_total Check-ins with the control plane, by outcome.\n\
             # TYPE multistream_control_heartbeats_total counter\n\
             multistream_control_heartbeats_total{{outcome=\"ok\"}} {}\n\
             multistream_control_heartbeats_total{{outcome=\"failed\"}} {}\n\
             # HELP multistream_control_sessions_scheduled Sessions this edge hosts by the schedule kept here.\n\
             # TYPE multistream_control_sessions_scheduled gauge\n\
             multistream_control_sessions_scheduled {}\n\
             # HELP multistream_control_plugins_installed_total Rolled-out plugin packages fetched, checked and kept.\n\
             # TYPE multistream_control_plugins_installed_total counter\n\
             multistream_control_plugins_installed_total {}\n\
             # HELP multistream_control_takes_newcomers Whether the control plane lets this edge take new participants (0: an administrator drains or disabled it).\n\
             # TYPE multistream_control_takes_newcomers gauge\n\
             multistream_control_takes_newcomers {}\n\
             # HELP multistream_control_restart_needed Whether the cluster's edges changed since this edge started (1: it links with them after a restart).\n\
             # TYPE multistream_control_restart_needed gauge\n\
             multistream_control_restart_needed {}\n",
            load(&self.counters.heartbeats_ok),
            load(&self.counters.heartbeats_failed),
            schedule.sessions.len(),
            load(&self.counters.plugins_installed),
            u8::from(!takes_no_newcomers(&schedule.status)),
            load(&self.counters.restart_needed),
        );
        if last > 0 {
            out.push_str(&format!(
                "# HELP multistream_control_last_heartbeat_age_seconds Since the last check-in the control plane answered.\n\
                 # TYPE multistream_control_last_heartbeat_age_seconds gauge\n\
                 multistream_control_last_heartbeat_age_seconds {}\n",
                now.saturating_sub(last)
            ));
        }
        out
    }
}

/// Enrols with the code (first start), or reads what an earlier enrolment kept.
pub async fn enrol_if_needed(
    data_dir: &Path,
    settings: &ControlSettings,
    me: serde_json::Value,
) -> anyhow::Result<Enrolment> {
    let path = data_dir.join(ENROLMENT_FILE);
    if let Ok(bytes) = std::fs::read(&path) {
        let kept: Enrolment = serde_json::from_slice(&bytes).map_err(|error| {
            anyhow::anyhow!(
                "{} cannot be read ({error}); move it away to enrol again",
                path.display()
            )
        })?;
        if kept.url == settings.url && settings.code.is_none() {
            return Ok(refreshed(settings, kept, &path).await);
        }
    }
    let Some(code) = &settings.code else {
        anyhow::bail!(
            "this edge is not enrolled with {}: start it once with --enrolment-code (an administrator makes one in the control plane)",
            settings.url
        );
    };
    let mut body = me;
    if let Some(object) = body.as_object_mut() {
        object.insert("code".into(), serde_json::Value::String(code.clone()));
    }
    let (status, answer) = request(settings, "POST", "/api/v1/enrol", None, &body).await?;
    if status != 201 {
        anyhow::bail!(
            "the control plane refused the enrolment ({status}): {}",
            message_of(&answer)
        );
    }
    #[derive(Deserialize)]
    struct Answer {
        edge_id: String,
        secret: String,
        issuer_public_key: String,
        peers: Vec<ListedPeer>,
        heartbeat_seconds: u64,
    }
    let answer: Answer = serde_json::from_slice(&answer).map_err(|error| {
        anyhow::anyhow!("the control plane's enrolment answer is not valid: {error}")
    })?;
    let enrolment = Enrolment {
        url: settings.url.clone(),
        edge_id: answer.edge_id,
        secret: answer.secret,
        issuer_public_key: answer.issuer_public_key,
        peers: answer.peers,
        heartbeat_seconds: answer.heartbeat_seconds,
    };
    let bytes = serde_json::to_vec_pretty(&enrolment)?;
    let _ = std::fs::remove_file(&path);
    crate::token::write_private(&path, &bytes)
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
    info!(url = %settings.url, "enrolled with the control plane");
    Ok(enrolment)
}

/// An earlier enrolment with the edges the control plane lists now (edges enrolled since this
/// one was), if it answers; as kept otherwise.
async fn refreshed(settings: &ControlSettings, mut kept: Enrolment, path: &Path) -> Enrolment {
    #[derive(Deserialize)]
    struct Answer {
        peers: Vec<ListedPeer>,
    }
    let body = serde_json::json!({ "version": env!("CARGO_PKG_VERSION") });
    let heartbeat = format!("/api/v1/edges/{}/heartbeat", kept.edge_id);
    match request(settings, "POST", &heartbeat, Some(&kept.secret), &body).await {
        Ok((200, bytes)) => {
            if let Ok(answer) = serde_json::from_slice::<Answer>(&bytes) {
                kept.peers = answer.peers;
                if let Ok(bytes) = serde_json::to_vec_pretty(&kept) {
                    let _ = std::fs::remove_file(path);
                    let _ = crate::token::write_private(path, &bytes);
                }
            }
        }
        Ok((status, bytes)) => {
            warn!(status, message = %message_of(&bytes), "the control plane refused this edge's check-in; using the peers kept from before")
        }
        Err(error) => {
            warn!(%error, "the control plane does not answer; starting with the peers kept from before")
        }
    }
    kept
}

/// The schedule kept from the last check-in, if any.
pub fn cached_schedule(data_dir: &Path) -> Option<Schedule> {
    let bytes = std::fs::read(data_dir.join(SCHEDULE_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Checks in every `heartbeat_seconds` until `shutdown`: reports the edge's figures (from
/// `report`, and its addresses: `peer_addr` and the report's URL) and keeps the schedule it
/// gets back, on disk and in `schedule`. `running` is the edges this one links with (node ids),
/// to notice when the cluster's membership changed.
#[allow(clippy::too_many_arguments)]
pub fn spawn_heartbeat(
    settings: ControlSettings,
    enrolment: Enrolment,
    running: Vec<String>,
    peer_addr: String,
    data_dir: PathBuf,
    report: watch::Receiver<crate::placement::EdgeReport>,
    schedule: watch::Sender<Schedule>,
    counters: Arc<ControlCounters>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let interval = Duration::from_secs(enrolment.heartbeat_seconds).max(HEARTBEAT_MIN);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let path = format!("/api/v1/edges/{}/heartbeat", enrolment.edge_id);
        let mut reachable = true;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let figures = report.borrow().clone();
            let body = serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "load": figures.load,
                "sessions": figures.sessions,
                "restart_needed": counters.restart_needed.load(Ordering::Relaxed) == 1,
                "recorder": RECORDER,
                // Where it is now: a restarted edge may have new ports.
                "name": figures.name,
                "public_url": figures.url,
                "peer_addr": peer_addr,
            });
            let answer = request(&settings, "POST", &path, Some(&enrolment.secret), &body).await;
            let received = match answer {
                Ok((200, bytes)) => {
                    serde_json::from_slice::<Schedule>(&bytes).map_err(|e| e.to_string())
                }
                Ok((status, bytes)) => Err(format!("{status}: {}", message_of(&bytes))),
                Err(error) => Err(error.to_string()),
            };
            match received {
                Ok(mut fresh) => {
                    fresh.sessions.truncate(SCHEDULE_SESSIONS_MAX);
                    if !reachable {
                        info!("the control plane answers again");
                        reachable = true;
                    }
                    counters.heartbeats_ok.fetch_add(1, Ordering::Relaxed);
                    let changed = membership_changed(&running, &fresh.peers, &enrolment.edge_id);
                    let was = counters
                        .restart_needed
                        .swap(u64::from(changed), Ordering::Relaxed);
                    if changed && was == 0 {
                        warn!(
                            running = running.len(),
                            listed = fresh.peers.len(),
                            "the control plane lists other edges than this one runs with; restart this edge (when no class is on) to link with them"
                        );
                    }
                    counters
                        .last_ok_secs
                        .store(crate::token::unix_now_secs(), Ordering::Relaxed);
                    fresh.plugins.truncate(ROLLED_OUT_MAX);
                    install_plugins(&settings, &enrolment, &data_dir, &fresh.plugins, &counters)
                        .await;
                    // Kept on disk (and told to the edge) only when it changed: most check-ins
                    // bring the same schedule.
                    schedule.send_if_modified(|kept| {
                        if *kept == fresh {
                            return false;
                        }
                        keep(&data_dir, &fresh);
                        *kept = fresh;
                        true
                    });
                }
                Err(error) => {
                    counters.heartbeats_failed.fetch_add(1, Ordering::Relaxed);
                    if reachable {
                        warn!(%error, "the control plane does not answer; classes go on with the schedule kept here");
                        reachable = false;
                    }
                }
            }
        }
    });
}

/// Fetches the rolled-out packages this edge does not have yet, checks each against the signer
/// the control plane approved and the component hash it announced, and puts it in the plugin
/// directory (with the approved signers in [`TRUSTED_KEYS_FILE`]), where the plugin thread
/// loads it within seconds.
async fn install_plugins(
    settings: &ControlSettings,
    enrolment: &Enrolment,
    data_dir: &Path,
    plugins: &[RolledOut],
    counters: &ControlCounters,
) {
    let dir = data_dir.join("plugins");
    let mut signers: Vec<String> = plugins
        .iter()
        .map(|p| p.signer.to_ascii_lowercase())
        .filter(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    signers.sort();
    signers.dedup();
    let keys = signers.join("\n");
    let keys_path = dir.join(TRUSTED_KEYS_FILE);
    if std::fs::read_to_string(&keys_path).ok().as_deref() != Some(keys.as_str()) {
        if let Err(error) = write_atomically(&keys_path, keys.as_bytes()) {
            warn!(%error, "cannot keep the approved plugin signers");
            return;
        }
    }
    for plugin in plugins {
        let safe = |t: &str| {
            !t.is_empty()
                && t.len() <= 64
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        };
        if !safe(&plugin.name) || !safe(&plugin.version) {
            continue;
        }
        let path = dir.join(format!(
            "{}-{}.{}",
            plugin.name,
            plugin.version,
            crate::plugins::PACKAGE_EXTENSION
        ));
        if path.exists() {
            continue;
        }
        let fetched = request(
            settings,
            "GET",
            &format!("/api/v1/plugins/{}/package", plugin.id),
            Some(&enrolment.secret),
            &serde_json::Value::Null,
        )
        .await;
        let bytes = match fetched {
            Ok((200, bytes)) => bytes,
            Ok((status, bytes)) => {
                warn!(plugin = %plugin.name, status, message = %message_of(&bytes), "a rolled-out plugin could not be fetched");
                continue;
            }
            Err(error) => {
                warn!(plugin = %plugin.name, %error, "a rolled-out plugin could not be fetched");
                continue;
            }
        };
        let verified = match multistream_plugin_host::package::open(
            &bytes,
            std::slice::from_ref(&plugin.signer),
        ) {
            Ok(verified) => verified,
            Err(error) => {
                warn!(plugin = %plugin.name, %error, "a rolled-out plugin package was refused");
                continue;
            }
        };
        let sha256 = crate::assets::sha256_hex(&verified.wasm);
        if verified.name != plugin.name
            || verified.version != plugin.version
            || sha256 != plugin.sha256
        {
            warn!(plugin = %plugin.name, "a rolled-out plugin package is not the one announced; refused");
            continue;
        }
        match write_atomically(&path, &bytes) {
            Ok(()) => {
                counters.plugins_installed.fetch_add(1, Ordering::Relaxed);
                info!(plugin = %plugin.name, version = %plugin.version, "rolled-out plugin installed");
            }
            Err(error) => warn!(plugin = %plugin.name, %error, "cannot keep a rolled-out plugin"),
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let fresh = path.with_extension("partial");
    let mut file = std::fs::File::create(&fresh)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&fresh, path)
}

/// Writes the schedule beside the data, atomically (a crash leaves the old one or the new).
fn keep(data_dir: &Path, schedule: &Schedule) {
    let Ok(bytes) = serde_json::to_vec(schedule) else {
        return;
    };
    if let Err(error) = write_atomically(&data_dir.join(SCHEDULE_FILE), &bytes) {
        warn!(%error, "cannot keep the schedule on disk");
    }
}

fn message_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned())
}

/// One JSON request to the control plane over HTTP/1.1 (TLS for https); returns the status and
/// the body.
async fn request(
    settings: &ControlSettings,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, Vec<u8>)> {
    tokio::time::timeout(
        REQUEST_DEADLINE,
        request_inner(settings, method, path, bearer, body),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the control plane did not answer in {REQUEST_DEADLINE:?}"))?
}

async fn request_inner(
    settings: &ControlSettings,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let (tls, rest) = match settings.url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => anyhow::bail!("the control URL {} is not http(s)", settings.url),
    };
    let host = rest.trim_end_matches('/');
    let authority = if host.contains(':') && !host.ends_with(']') {
        host.to_owned()
    } else if tls {
        format!("{host}:443")
    } else {
        format!("{host}:80")
    };
    let body = serde_json::to_vec(body)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(bearer) = bearer {
        head.push_str(&format!("Authorization: Bearer {bearer}\r\n"));
    }
    head.push_str("\r\n");
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|error| {
            anyhow::anyhow!("cannot reach the control plane at {authority}: {error}")
        })?;
    let mut raw = Vec::new();
    if tls {
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(tls_config(settings.ca.as_deref())?));
        let name = host
            .rsplit_once(':')
            .map_or(host, |(h, _)| h)
            .trim_matches(['[', ']']);
        let server = rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(|_| anyhow::anyhow!("{name} is not a server name"))?;
        let mut stream = connector.connect(server, stream).await?;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        read_bounded(&mut stream, &mut raw).await?;
    } else {
        let mut stream = stream;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        read_bounded(&mut stream, &mut raw).await?;
    }
    parse_response(&raw)
}

async fn read_bounded(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    into: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            // A TLS peer that closes without close_notify after the whole answer.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !into.is_empty() => {
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        if into.len() + read > ANSWER_BYTES_MAX {
            anyhow::bail!("the control plane's answer is over {ANSWER_BYTES_MAX} bytes");
        }
        into.extend_from_slice(&buffer[..read]);
    }
}

/// Status and body of an HTTP/1.1 response (with a length, or chunked, or to the end).
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("the control plane's answer has no header end"))?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the control plane's answer has no status"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let mut body = &raw[split + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    loop {
        let end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow::anyhow!("a chunk has no size line"))?;
        let size_text = std::str::from_utf8(&body[..end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        body = &body[end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if body.len() < size {
            anyhow::bail!("a chunk is cut short");
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// TLS for the control plane: the given certificates, or the system's.
fn tls_config(ca: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let path = ca.map_or_else(
        || PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        Path::to_path_buf,
    );
    let mut text = Vec::new();
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut text))
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot read the certificates in {}: {error}",
                path.display()
            )
        })?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&text) {
        let certificate = certificate.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        roots
            .add(certificate)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_with_a_length_or_in_chunks() {
        let plain = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(
            parse_response(plain).expect("parses"),
            (201, b"{}".to_vec())
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).expect("parses"),
            (200, b"{\"a\":1}".to_vec())
        );
        assert!(parse_response(b"garbage").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[test]
    fn a_changed_membership_is_noticed_whatever_the_order() {
        let listed = |ids: &[&str]| -> Vec<ListedPeer> {
            ids.iter()
                .map(|id| ListedPeer {
                    id: (*id).into(),
                    name: String::new(),
                    peer_addr: String::new(),
                    public_url: String::new(),
                })
                .collect()
        };
        let running = vec!["b".to_owned(), "c".to_owned()];
        assert!(!membership_changed(&running, &listed(&["c", "b"]), "a"));
        // The edge itself in the list changes nothing.
        assert!(!membership_changed(
            &running,
            &listed(&["a", "c", "b"]),
            "a"
        ));
        // A new edge enrolled, or one disabled.
        assert!(membership_changed(&running, &listed(&["b", "c", "d"]), "a"));
        assert!(membership_changed(&running, &listed(&["b"]), "a"));
        assert!(!membership_changed(&[], &listed(&[]), "a"));
    }
}
