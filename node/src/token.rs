//! Identity: the node's Ed25519 key and the EdDSA JWTs it signs and verifies.
//!
//! A standalone node is its own issuer. The key lives in the data directory as PKCS#8
//! (`identity.key`, mode 0600) and is made at first start. The edges of a cluster share one
//! **cluster issuer** key instead (`issuer_key`, made with `multistream-node issuer-key`): what
//! one edge signs, every edge accepts, so a participant sent to another edge needs no new
//! token. An edge also accepts tokens of the public keys it is told to trust
//! (`trusted_issuers`: a control plane's, or an old edge key's). An issuer's name (`iss`) ends
//! with the first eight bytes of its public key in hex, which is how a verifier finds the key. Tokens are compact JWTs
//! (`header.payload.signature`, base64url without padding) with header `{"alg":"EdDSA"}` and
//! [`Claims`] as payload. Token text is never logged: errors name what is wrong, not the token.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use multistream_proto::{Claims, TokenKind};

/// Longest token accepted, in bytes. A token is about 500 bytes; the limit keeps a hostile header
/// from costing more than a quick length check.
pub const TOKEN_BYTES_MAX: usize = 4_096;

/// Longest lifetime the node signs, in seconds: 30 days covers a term's invitation link.
pub const TOKEN_LIFETIME_SECS_MAX: u64 = 30 * 24 * 3600;

/// Clock difference tolerated between the issuer and this node, in seconds.
pub const CLOCK_SKEW_SECS_MAX: u64 = 60;

const KEY_FILE: &str = "identity.key";

/// Why a token was refused. Each maps to a 401 (or 403 for the last two) at the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token was given")]
    Missing,
    #[error("the token is longer than {TOKEN_BYTES_MAX} bytes")]
    TooLong,
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    #[error("the token uses algorithm {0:?}; only EdDSA is accepted")]
    WrongAlgorithm(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token was issued by {0:?}, which this node does not trust")]
    WrongIssuer(String),
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("this is an invitation link, not a personal token")]
    NotAccess,
    #[error("this is a personal token, not an invitation")]
    NotInvite,
}

/// Why the node's identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} does not hold an Ed25519 PKCS#8 key")]
    BadKey { path: String },
}

/// The node's signing identity, and the issuers whose tokens it accepts.
pub struct Issuer {
    key: Ed25519KeyPair,
    name: String,
    /// Other issuers' names and public keys.
    trusted: Vec<(String, Vec<u8>)>,
}

/// Why a trusted issuer key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an issuer public key (64 hex digits, as `multistream-node issuer-key` prints it)"
)]
pub struct BadIssuerKey(pub String);

use multistream_proto::jwt::{issuer_key_part, issuer_name};

/// Prefix of a cluster issuer's name.
pub const CLUSTER_ISSUER_PREFIX: &str = "multistream-cluster";

impl Issuer {
    /// Loads `identity.key` from `data_dir`, or makes and saves a new one.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = data_dir.join(KEY_FILE);
        let display = path.display().to_string();
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let document =
                    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| {
                        IdentityError::BadKey {
                            path: display.clone(),
                        }
                    })?;
                write_private(&path, document.as_ref()).map_err(|source| IdentityError::Write {
                    path: display.clone(),
                    source,
                })?;
                document.as_ref().to_vec()
            }
            Err(source) => {
                return Err(IdentityError::Read {
                    path: display,
                    source,
                });
            }
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| IdentityError::BadKey { path: display })?;
        Ok(Self::from_key(key))
    }

    /// The cluster issuer key in `path` (which must exist); this edge's own identity stays
    /// trusted, so tokens it signed before keep working.
    pub fn cluster(path: &Path, own: Issuer) -> Result<Self, IdentityError> {
        let display = path.display().to_string();
        let pkcs8 = std::fs::read(path).map_err(|source| IdentityError::Read {
            path: display.clone(),
            source,
        })?;
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| IdentityError::BadKey { path: display })?;
        let mut trusted = own.trusted;
        trusted.push((own.name, own.key.public_key().as_ref().to_vec()));
        Ok(Self {
            name: issuer_name(CLUSTER_ISSUER_PREFIX, key.public_key().as_ref()),
            key,
            trusted,
        })
    }

    /// Makes a cluster issuer key at `path` (never over an existing file); returns its public
    /// key, hex.
    pub fn create_cluster_key(path: &Path) -> Result<String, IdentityError> {
        let display = path.display().to_string();
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| {
            IdentityError::BadKey {
                path: display.clone(),
            }
        })?;
        write_private(path, document.as_ref()).map_err(|source| IdentityError::Write {
            path: display.clone(),
            source,
        })?;
        let key = Ed25519KeyPair::from_pkcs8(document.as_ref())
            .map_err(|_| IdentityError::BadKey { path: display })?;
        Ok(key
            .public_key()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Also accepts tokens of the issuer with this public key (hex).
    pub fn trust(&mut self, public_hex: &str) -> Result<(), BadIssuerKey> {
        let text = public_hex.trim().to_ascii_lowercase();
        let bytes: Option<Vec<u8>> = (text.len() == 64)
            .then(|| {
                (0..32)
                    .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                    .collect()
            })
            .flatten();
        let bytes = bytes.ok_or_else(|| BadIssuerKey(public_hex.chars().take(80).collect()))?;
        // Whatever the prefix it signs under: the name is matched by its key part.
        self.trusted.push((issuer_name("", &bytes), bytes));
        Ok(())
    }

    /// The public key that verifies tokens of issuer `iss`, if this node trusts it.
    fn key_of(&self, iss: &str) -> Option<&[u8]> {
        if iss == self.name {
            return Some(self.public_key());
        }
        let suffix = issuer_key_part(iss)?;
        self.trusted.iter().find_map(|(name, key)| {
            let matches = name == iss || issuer_key_part(name) == Some(suffix);
            matches.then_some(key.as_slice())
        })
    }

    /// The other issuers this node accepts, by the key part of their names (for its peers'
    /// placement: a participant holding such a token may be sent here).
    pub fn trusted_key_parts(&self) -> Vec<String> {
        self.trusted
            .iter()
            .filter_map(|(name, _)| issuer_key_part(name).map(str::to_owned))
            .collect()
    }

    /// A throwaway identity, for tests and benchmarks.
    pub fn ephemeral() -> Self {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("generating an Ed25519 key from the system RNG does not fail");
        Self::from_key(Ed25519KeyPair::from_pkcs8(document.as_ref()).expect("a fresh key parses"))
    }

    fn from_key(key: Ed25519KeyPair) -> Self {
        Self {
            name: issuer_name("multistream-node", key.public_key().as_ref()),
            key,
            trusted: Vec::new(),
        }
    }

    /// The `iss` this node writes and expects.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is a cluster issuer (`issuer_key`): what it signs, every edge of the
    /// cluster accepts.
    pub fn is_cluster(&self) -> bool {
        self.name.starts_with(CLUSTER_ISSUER_PREFIX)
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// Signs claims into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        let signing_input = multistream_proto::jwt::signing_input(claims);
        let signature = self.key.sign(signing_input.as_bytes());
        multistream_proto::jwt::assemble(&signing_input, signature.as_ref())
    }

    /// Verifies a token's signature, issuer and validity window at `now_secs` (Unix seconds).
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed("header is not base64url"))?;
        #[derive(serde::Deserialize)]
        struct Header {
            alg: String,
        }
        let parsed: Header = serde_json::from_slice(&header_json)
            .map_err(|_| TokenError::Malformed("header is not JSON with an alg"))?;
        if parsed.alg != "EdDSA" {
            return Err(TokenError::WrongAlgorithm(
                parsed.alg.chars().take(16).collect(),
            ));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let signed = &token[..header.len() + 1 + payload.len()];
        let verifies = |key: &[u8]| {
            UnparsedPublicKey::new(&ED25519, key)
                .verify(signed.as_bytes(), &signature)
                .is_ok()
        };
        let own = verifies(self.public_key());
        let claims: Option<Claims> = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let claims = match (own, claims) {
            (true, Some(claims)) if claims.iss == self.name => claims,
            (true, Some(claims)) => {
                return Err(TokenError::WrongIssuer(
                    claims.iss.chars().take(80).collect(),
                ));
            }
            (true, None) => {
                return Err(TokenError::Malformed(
                    "payload does not hold multistream claims",
                ));
            }
            // Not this node's signature: the claims name the issuer, whose key then decides;
            // nothing of them is used unless that key's signature verifies.
            (false, None) => return Err(TokenError::BadSignature),
            (false, Some(claims)) => {
                let Some(key) = self.key_of(&claims.iss).filter(|_| claims.iss != self.name) else {
                    if claims.iss == self.name {
                        return Err(TokenError::BadSignature);
                    }
                    return Err(TokenError::WrongIssuer(
                        claims.iss.chars().take(80).collect(),
                    ));
                };
                if !verifies(key) {
                    return Err(TokenError::BadSignature);
                }
                claims
            }
        };
        if claims.exp <= now_secs {
            return Err(TokenError::Expired);
        }
        if claims.iat > now_secs + CLOCK_SKEW_SECS_MAX {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// Verifies a personal (access) token.
    pub fn verify_access(&self, token: &str, now_secs: u64) -> Result<Claims, TokenError> {
        let claims = self.verify(token, now_secs)?;
        if claims.kind != TokenKind::Access {
            return Err(TokenError::NotAccess);
        }
        Ok(claims)
    }

    /// Verifies an invitation token.
    pub fn verify_invite(&self, token: &str, now_secs: u64) -> Result<Claims, TokenError> {
        let claims = self.verify(token, now_secs)?;
        if claims.kind != TokenKind::Invite {
            return Err(TokenError::NotInvite);
        }
        Ok(claims)
    }
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `bytes` bytes from the system RNG as lowercase hex: unguessable names and ids.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).expect("the system RNG is available on every supported OS");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the Unix epoch, from the wall clock (the shell's job, never the cores').
pub fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses a lifetime such as `90m`, `2h`, `7d` or `3600` (seconds).
pub fn parse_lifetime(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((index, _)) => text.split_at(index),
        None => (text, "s"),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a lifetime like 90m, 2h or 7d"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?}; use s, m, h or d")),
    };
    let secs = value.saturating_mul(unit_secs);
    if secs == 0 {
        return Err("a lifetime must be longer than zero".into());
    }
    if secs > TOKEN_LIFETIME_SECS_MAX {
        return Err(format!(
            "a lifetime may be at most {} days",
            TOKEN_LIFETIME_SECS_MAX / 86_400
        ));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use multistream_proto::{Grants, Role};

    use super::*;

    fn claims(issuer: &Issuer, kind: TokenKind, exp: u64) -> Claims {
        Claims {
            iss: issuer.name().to_owned(),
            sub: "ana".parse().expect("valid id"),
            sid: "demo".parse().expect("valid id"),
            name: "Ana".into(),
            role: Role::Student,
            grants: Grants {
                publish: false,
                subscribe: true,
            },
            kind,
            iat: 1_000,
            exp,
        }
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_named() {
        let issuer = Issuer::ephemeral();
        let token = issuer.sign(&claims(&issuer, TokenKind::Access, 2_000));
        assert_eq!(
            issuer.verify_access(&token, 1_500).map(|c| c.name),
            Ok("Ana".into())
        );
        assert_eq!(issuer.verify(&token, 2_000), Err(TokenError::Expired));
        assert_eq!(
            issuer.verify_invite(&token, 1_500),
            Err(TokenError::NotInvite)
        );
        assert_eq!(issuer.verify(&token, 500), Err(TokenError::NotYetValid));

        // Flip one character of the payload: the signature no longer holds.
        let mut tampered: Vec<char> = token.chars().collect();
        let middle = token.find('.').expect("has dots") + 5;
        tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
        let tampered: String = tampered.into_iter().collect();
        assert_eq!(
            issuer.verify(&tampered, 1_500),
            Err(TokenError::BadSignature)
        );

        // Another node's token.
        let other = Issuer::ephemeral();
        let foreign = other.sign(&claims(&other, TokenKind::Access, 2_000));
        assert_eq!(
            issuer.verify(&foreign, 1_500),
            Err(TokenError::WrongIssuer(other.name().into()))
        );

        assert_eq!(issuer.verify("", 0), Err(TokenError::Missing));
        assert!(matches!(
            issuer.verify("a.b", 0),
            Err(TokenError::Malformed(_))
        ));
        assert_eq!(
            issuer.verify(&"x".repeat(5000), 0),
            Err(TokenError::TooLong)
        );
        let none_alg = format!("{}.e30.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(
            issuer.verify(&none_alg, 0),
            Err(TokenError::WrongAlgorithm("none".into()))
        );
    }

    #[test]
    fn lifetimes_parse_with_units_and_limits() {
        assert_eq!(parse_lifetime("90m"), Ok(5_400));
        assert_eq!(parse_lifetime("2h"), Ok(7_200));
        assert_eq!(parse_lifetime("3600"), Ok(3_600));
        assert!(parse_lifetime("0").is_err());
        assert!(parse_lifetime("2w").is_err());
        assert!(parse_lifetime("365d").is_err());
    }

    #[test]
    fn the_key_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("ms-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let first = Issuer::load_or_create(&dir).expect("creates");
        let second = Issuer::load_or_create(&dir).expect("loads");
        assert_eq!(first.public_key(), second.public_key());
        std::fs::remove_dir_all(&dir).expect("cleans up");
    }

    #[test]
    fn edges_sharing_a_cluster_key_accept_each_others_tokens() {
        let dir = std::env::temp_dir().join(format!("ms-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let key = dir.join("cluster.key");
        let public = Issuer::create_cluster_key(&key).expect("made");
        assert!(
            Issuer::create_cluster_key(&key).is_err(),
            "never overwritten"
        );
        let edge_a_own = Issuer::ephemeral();
        let old_token = edge_a_own.sign(&claims(&edge_a_own, TokenKind::Access, 2_000));
        let edge_a = Issuer::cluster(&key, edge_a_own).expect("loads");
        let edge_b = Issuer::cluster(&key, Issuer::ephemeral()).expect("loads");
        assert!(edge_a.name().starts_with("multistream-cluster:"));
        let token = edge_a.sign(&claims(&edge_a, TokenKind::Access, 2_000));
        assert_eq!(
            edge_b.verify_access(&token, 1_500).map(|c| c.name),
            Ok("Ana".into())
        );
        // Edge A still accepts what it signed with its own key before joining the cluster.
        assert!(edge_a.verify(&old_token, 1_500).is_ok());
        assert!(matches!(
            edge_b.verify(&old_token, 1_500),
            Err(TokenError::WrongIssuer(_))
        ));

        // A node that only trusts the cluster's public key (a verifier, no signing key).
        let mut verifier = Issuer::ephemeral();
        assert!(verifier.verify(&token, 1_500).is_err());
        verifier.trust(&public).expect("a valid key");
        assert!(verifier.verify(&token, 1_500).is_ok());
        assert!(verifier.trust("not hex").is_err());

        // A forger who names the cluster as issuer but signs with another key.
        let forger = Issuer::ephemeral();
        let mut forged = claims(&forger, TokenKind::Access, 2_000);
        forged.iss = edge_a.name().to_owned();
        let forged = forger.sign(&forged);
        assert_eq!(
            verifier.verify(&forged, 1_500),
            Err(TokenError::BadSignature)
        );
        assert_eq!(edge_b.verify(&forged, 1_500), Err(TokenError::BadSignature));
        std::fs::remove_dir_all(&dir).expect("cleans up");
    }
}
