//! Node configuration: defaults, an optional TOML file, then command-line flags, in that order.
//!
//! Unknown keys in the file are an error (a typo must not silently fall back to a default), and
//! limits may be lowered but never raised past the node's named maximums.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sfu::SESSION_PEERS_MAX;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_MEDIA_ADDR: &str = "127.0.0.1:8090";
pub const DEFAULT_DATA_DIR: &str = "multistream-data";
pub const DEFAULT_DEMO_SESSION: &str = "demo";
pub const DEFAULT_PEER_ADDR: &str = "127.0.0.1:8091";

/// Other edges one node may know, at most.
pub const CLUSTER_PEERS_MAX: usize = 64;

/// The keys a config file may hold. Every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address of the HTTP(S) server: pages, WHIP, WHEP, WebSocket, metrics.
    pub http_addr: Option<SocketAddr>,
    /// Address of the UDP socket all media flows through.
    pub media_addr: Option<SocketAddr>,
    /// Address browsers reach this node at, when it differs from the bind addresses (NAT, or
    /// binding 0.0.0.0). An IP, or IP:port for the media port.
    pub public_addr: Option<String>,
    /// Where the node keeps its identity key and TLS certificate.
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain and key; without them a self-signed certificate is made.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Connections allowed per session (at most the built-in maximum).
    pub session_peers_max: Option<usize>,
    /// The session the startup links point at.
    pub demo_session: Option<String>,
    /// Where this node listens for other edges of its cluster (QUIC over UDP).
    pub peer_addr: Option<SocketAddr>,
    /// The other edges of the cluster, each `"<node id>@<ip:port>"` (the id is what
    /// `multistream-node id` prints on that edge). Only these may connect.
    pub peers: Option<Vec<String>>,
    /// The cluster configuration's epoch: raise it on every edge when the list of edges changes,
    /// so an edge still on the old list cannot fork a session's log.
    pub cluster_epoch: Option<u64>,
    /// Class commands one participant may send per second (twice that in a burst).
    pub commands_per_second: Option<f64>,
    /// Whiteboard commands one participant may send per second (twice that in a burst).
    pub strokes_per_second: Option<f64>,
    /// Ed25519 public keys (hex, as `multistream-node plugin-key` prints them) whose signed
    /// plugin packages this node loads from `<data_dir>/plugins/`.
    pub plugin_keys: Option<Vec<String>>,
    /// Whether the plugins built into the node (polls, Q&A) are offered. Default true.
    pub builtin_plugins: Option<bool>,
    /// Where compiled plugin code is cached (default `<data_dir>/plugin-cache`); edges on one
    /// machine may share one.
    pub plugin_cache_dir: Option<PathBuf>,
    /// The cluster issuer key file (`multistream-node issuer-key`), the same on every edge: this
    /// edge signs with it, and every edge accepts what it signs.
    pub issuer_key: Option<PathBuf>,
    /// Public keys (hex) of other issuers whose tokens this edge accepts (a control plane's).
    pub trusted_issuers: Option<Vec<String>>,
    /// This edge's name for people ("North campus"), shown beside the participants it serves.
    pub edge_name: Option<String>,
    /// The base URL browsers reach this edge at (`https://north.example.org:8443`): where other
    /// edges send the participants they place here. Default: the HTTP address and scheme.
    pub public_url: Option<String>,
    /// The campus networks this edge serves (`10.20.0.0/16`): a browser joining from one of
    /// them, through any edge of the cluster, is placed here.
    pub campus_networks: Option<Vec<String>>,
    /// The control plane this edge is enrolled with (`https://control.school.example`).
    pub control_url: Option<String>,
    /// A one-time code from the control plane's admin, used at the first start to enrol.
    pub enrolment_code: Option<String>,
    /// PEM certificates to trust for the control plane's HTTPS [default: the system's].
    pub control_ca: Option<PathBuf>,
}

/// Another edge of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Its identity: 64 lowercase hex digits (an Ed25519 public key).
    pub id: String,
    pub addr: SocketAddr,
}

impl std::str::FromStr for PeerConfig {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let Some((id, addr)) = text.split_once('@') else {
            return Err(format!(
                "peer {text:?} should be <node id>@<ip:port>, as `multistream-node id` prints it"
            ));
        };
        let id = id.trim().to_ascii_lowercase();
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "peer {text:?}: the node id is 64 hex digits (run `multistream-node id` on that edge)"
            ));
        }
        let addr = addr
            .trim()
            .parse()
            .map_err(|_| format!("peer {text:?}: {addr:?} is not an ip:port"))?;
        Ok(PeerConfig { id, addr })
    }
}

/// The settled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub http_addr: SocketAddr,
    pub media_addr: SocketAddr,
    /// The media candidate browsers are told about.
    pub media_public_addr: SocketAddr,
    /// Host part of the links printed at start.
    pub public_host: String,
    pub data_dir: PathBuf,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub session_peers_max: usize,
    pub demo_session: multistream_proto::SessionId,
    pub peer_addr: SocketAddr,
    pub peers: Vec<PeerConfig>,
    pub cluster_epoch: u64,
    pub commands_per_second: f64,
    pub strokes_per_second: f64,
    pub plugin_keys: Vec<String>,
    pub builtin_plugins: bool,
    pub plugin_cache_dir: PathBuf,
    pub issuer_key: Option<PathBuf>,
    pub trusted_issuers: Vec<String>,
    /// `None`: named after its node id.
    pub edge_name: Option<String>,
    /// Checked with [`crate::placement::parse_origin`]; `None`: made from the HTTP address.
    pub public_url: Option<String>,
    /// At most [`crate::placement::PREFIXES_PER_EDGE_MAX`].
    pub campus_networks: Vec<crate::placement::Prefix>,
    /// `http(s)://host[:port]`, no trailing slash.
    pub control_url: Option<String>,
    pub enrolment_code: Option<String>,
    pub control_ca: Option<PathBuf>,
}

/// Default class commands per second per participant.
pub const DEFAULT_COMMANDS_PER_SECOND: f64 = 30.0;

/// Default whiteboard commands per second per connection: a fast hand makes a few strokes a
/// second.
pub const DEFAULT_STROKES_PER_SECOND: f64 = 10.0;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.display().to_string(),
            message: error.to_string(),
        })
    }

    /// Overlays `other` (flags) on `self` (file).
    pub fn overlay(self, other: FileConfig) -> FileConfig {
        FileConfig {
            http_addr: other.http_addr.or(self.http_addr),
            media_addr: other.media_addr.or(self.media_addr),
            public_addr: other.public_addr.or(self.public_addr),
            data_dir: other.data_dir.or(self.data_dir),
            tls_cert: other.tls_cert.or(self.tls_cert),
            tls_key: other.tls_key.or(self.tls_key),
            session_peers_max: other.session_peers_max.or(self.session_peers_max),
            demo_session: other.demo_session.or(self.demo_session),
            peer_addr: other.peer_addr.or(self.peer_addr),
            peers: other.peers.or(self.peers),
            cluster_epoch: other.cluster_epoch.or(self.cluster_epoch),
            commands_per_second: other.commands_per_second.or(self.commands_per_second),
            strokes_per_second: other.strokes_per_second.or(self.strokes_per_second),
            plugin_keys: other.plugin_keys.or(self.plugin_keys),
            builtin_plugins: other.builtin_plugins.or(self.builtin_plugins),
            plugin_cache_dir: other.plugin_cache_dir.or(self.plugin_cache_dir),
            issuer_key: other.issuer_key.or(self.issuer_key),
            trusted_issuers: other.trusted_issuers.or(self.trusted_issuers),
            edge_name: other.edge_name.or(self.edge_name),
            public_url: other.public_url.or(self.public_url),
            campus_networks: other.campus_networks.or(self.campus_networks),
            control_url: other.control_url.or(self.control_url),
            enrolment_code: other.enrolment_code.or(self.enrolment_code),
            control_ca: other.control_ca.or(self.control_ca),
        }
    }

    pub fn settle(self) -> Result<Config, ConfigError> {
        let parse = |text: &str| text.parse::<SocketAddr>().expect("built-in address parses");
        let http_addr = self.http_addr.unwrap_or_else(|| parse(DEFAULT_HTTP_ADDR));
        let media_addr = self.media_addr.unwrap_or_else(|| parse(DEFAULT_MEDIA_ADDR));
        let media_public_addr = match &self.public_addr {
            None if media_addr.ip().is_unspecified() => {
                return Err(ConfigError::Invalid(format!(
                    "the media address {media_addr} listens on every interface, so the node cannot \
                     tell browsers where to send media: set public_addr (--public-addr) to this \
                     machine's address as students reach it"
                )));
            }
            None => media_addr,
            Some(text) => match (text.parse::<SocketAddr>(), text.parse::<IpAddr>()) {
                (Ok(addr), _) => addr,
                (_, Ok(ip)) => SocketAddr::new(ip, media_addr.port()),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "public_addr {text:?} is not an IP address or IP:port"
                    )));
                }
            },
        };
        if media_public_addr.ip().is_unspecified() {
            return Err(ConfigError::Invalid(
                "public_addr cannot be 0.0.0.0 or ::".into(),
            ));
        }
        let public_host = if http_addr.ip().is_unspecified() {
            media_public_addr.ip().to_string()
        } else {
            http_addr.ip().to_string()
        };
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key go together: set both or neither".into(),
            ));
        }
        let session_peers_max = self.session_peers_max.unwrap_or(SESSION_PEERS_MAX);
        if session_peers_max == 0 || session_peers_max > SESSION_PEERS_MAX {
            return Err(ConfigError::Invalid(format!(
                "session_peers_max must be between 1 and {SESSION_PEERS_MAX}"
            )));
        }
        let demo_session = self
            .demo_session
            .as_deref()
            .unwrap_or(DEFAULT_DEMO_SESSION)
            .parse()
            .map_err(|error| ConfigError::Invalid(format!("demo_session: {error}")))?;
        let peer_addr = self.peer_addr.unwrap_or_else(|| parse(DEFAULT_PEER_ADDR));
        let peers = self
            .peers
            .unwrap_or_default()
            .iter()
            .map(|text| text.parse::<PeerConfig>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(ConfigError::Invalid)?;
        if peers.len() > CLUSTER_PEERS_MAX {
            return Err(ConfigError::Invalid(format!(
                "at most {CLUSTER_PEERS_MAX} peers can be configured"
            )));
        }
        let cluster_epoch = self.cluster_epoch.unwrap_or(1);
        if cluster_epoch == 0 {
            return Err(ConfigError::Invalid("cluster_epoch starts at 1".into()));
        }
        let rate = |value: Option<f64>, default: f64, key: &str| match value {
            None => Ok(default),
            Some(v) if v.is_finite() && v > 0.0 && v <= 100_000.0 => Ok(v),
            Some(v) => Err(ConfigError::Invalid(format!(
                "{key} must be above 0 and at most 100000, not {v}"
            ))),
        };
        let commands_per_second = rate(
            self.commands_per_second,
            DEFAULT_COMMANDS_PER_SECOND,
            "commands_per_second",
        )?;
        let strokes_per_second = rate(
            self.strokes_per_second,
            DEFAULT_STROKES_PER_SECOND,
            "strokes_per_second",
        )?;
        let edge_name = match self.edge_name {
            Some(name) => Some(
                multistream_proto::claims::validate_display_name(&name)
                    .map_err(|e| ConfigError::Invalid(format!("edge_name: {e}")))?,
            ),
            None => None,
        };
        let public_url = match &self.public_url {
            Some(text) => Some(
                crate::placement::parse_origin(text)
                    .map_err(|e| ConfigError::Invalid(format!("public_url: {e}")))?,
            ),
            None => None,
        };
        let control_url = match &self.control_url {
            Some(text) => Some(
                crate::placement::parse_origin(text)
                    .map_err(|e| ConfigError::Invalid(format!("control_url: {e}")))?,
            ),
            None => None,
        };
        if self.enrolment_code.is_some() && control_url.is_none() {
            return Err(ConfigError::Invalid(
                "enrolment_code needs control_url: the control plane to enrol with".into(),
            ));
        }
        let networks = self.campus_networks.unwrap_or_default();
        if networks.len() > crate::placement::PREFIXES_PER_EDGE_MAX {
            return Err(ConfigError::Invalid(format!(
                "campus_networks: at most {} networks per edge, not {}",
                crate::placement::PREFIXES_PER_EDGE_MAX,
                networks.len()
            )));
        }
        let campus_networks = networks
            .iter()
            .map(|text| text.parse::<crate::placement::Prefix>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Invalid(format!("campus_networks: {e}")))?;
        let mut plugin_keys = Vec::new();
        for key in self.plugin_keys.unwrap_or_default() {
            let key = key.trim().to_ascii_lowercase();
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "plugin_keys: {key:?} is not a public key (64 hex digits, as `multistream-node plugin-key` prints it)"
                )));
            }
            plugin_keys.push(key);
        }
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let plugin_cache_dir = self
            .plugin_cache_dir
            .unwrap_or_else(|| data_dir.join("plugin-cache"));
        Ok(Config {
            http_addr,
            media_addr,
            media_public_addr,
            public_host,
            data_dir,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            session_peers_max,
            demo_session,
            peer_addr,
            peers,
            cluster_epoch,
            commands_per_second,
            strokes_per_second,
            plugin_keys,
            builtin_plugins: self.builtin_plugins.unwrap_or(true),
            plugin_cache_dir,
            issuer_key: self.issuer_key,
            trusted_issuers: self.trusted_issuers.unwrap_or_default(),
            edge_name,
            public_url,
            campus_networks,
            control_url,
            enrolment_code: self.enrolment_code,
            control_ca: self.control_ca,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let error = toml::from_str::<FileConfig>("http_adr = \"127.0.0.1:1\"")
            .expect_err("a typo is an error");
        assert!(
            error.to_string().contains("unknown field `http_adr`"),
            "{error}"
        );
    }

    #[test]
    fn flags_override_the_file_and_limits_hold() {
        let file: FileConfig =
            toml::from_str("http_addr = \"127.0.0.1:1000\"\nsession_peers_max = 10")
                .expect("valid");
        let flags = FileConfig {
            http_addr: Some("127.0.0.1:2000".parse().expect("addr")),
            ..FileConfig::default()
        };
        let config = file.overlay(flags).settle().expect("valid");
        assert_eq!(config.http_addr.port(), 2000);
        assert_eq!(config.session_peers_max, 10);

        let too_many = FileConfig {
            session_peers_max: Some(100_000),
            ..FileConfig::default()
        };
        assert!(too_many.settle().is_err());
        let anywhere = FileConfig {
            media_addr: Some("0.0.0.0:9000".parse().expect("addr")),
            ..FileConfig::default()
        };
        assert!(anywhere.clone().settle().is_err());
        let advertised = FileConfig {
            public_addr: Some("10.0.0.5".into()),
            ..anywhere
        };
        assert_eq!(
            advertised.settle().expect("valid").media_public_addr,
            "10.0.0.5:9000".parse().expect("addr")
        );
    }

    #[test]
    fn placement_settings_are_checked() {
        let file: FileConfig = toml::from_str(
            "public_url = \"https://North.example.org:8443/\"\ncampus_networks = [\"10.20.0.0/16\", \"2001:db8::/32\"]",
        )
        .expect("valid");
        let config = file.settle().expect("valid");
        assert_eq!(
            config.public_url.as_deref(),
            Some("https://north.example.org:8443")
        );
        assert_eq!(config.campus_networks.len(), 2);

        let error = |file: FileConfig| file.settle().expect_err("refused").to_string();
        let bad_url = FileConfig {
            public_url: Some("north.example.org/classes".into()),
            ..FileConfig::default()
        };
        assert!(error(bad_url).contains("public_url"));
        let bad_network = FileConfig {
            campus_networks: Some(vec!["10.20.0.0/33".into()]),
            ..FileConfig::default()
        };
        let message = error(bad_network);
        assert!(
            message.contains("campus_networks") && message.contains("10.20.0.0/33"),
            "{message}"
        );
        let too_many = FileConfig {
            campus_networks: Some(vec![
                "10.0.0.0/8".into();
                crate::placement::PREFIXES_PER_EDGE_MAX + 1
            ]),
            ..FileConfig::default()
        };
        assert!(error(too_many).contains("at most"));
    }
}
