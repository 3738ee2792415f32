//! The control plane's signing key: it signs the join tokens it issues (the same EdDSA JWTs the
//! edges verify), and edges that trust its public key (`multistream-node run --trust-issuer
//! <hex>`) accept them offline, with no call back here. The key lives in the data directory
//! (`issuer.key`, PKCS#8, mode 0600), made at first start.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use multistream_proto::Claims;

/// The key file in the data directory.
pub const KEY_FILE: &str = "issuer.key";

/// The prefix of the control plane's issuer name (`iss`).
pub const ISSUER_PREFIX: &str = "multistream-control";

pub struct ControlIssuer {
    key: Ed25519KeyPair,
    name: String,
}

impl ControlIssuer {
    /// Loads `issuer.key` from `data_dir`, or makes and saves a new one.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<ControlIssuer> {
        let path = data_dir.join(KEY_FILE);
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
                write_private(&path, document.as_ref()).map_err(|error| {
                    anyhow::anyhow!("cannot write the issuer key {}: {error}", path.display())
                })?;
                document.as_ref().to_vec()
            }
            Err(error) => anyhow::bail!("cannot read the issuer key {}: {error}", path.display()),
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| {
            anyhow::anyhow!("{} does not hold an Ed25519 PKCS#8 key", path.display())
        })?;
        let name = multistream_proto::jwt::issuer_name(ISSUER_PREFIX, key.public_key().as_ref());
        Ok(ControlIssuer { key, name })
    }

    /// The `iss` of the tokens it signs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key, hex: what edges are given with `--trust-issuer`.
    pub fn public_hex(&self) -> String {
        self.key
            .public_key()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let input = multistream_proto::jwt::signing_input(claims);
        let signature = self.key.sign(input.as_bytes());
        multistream_proto::jwt::assemble(&input, signature.as_ref())
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
