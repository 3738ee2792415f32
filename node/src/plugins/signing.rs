//! Plugin packages from the node's command line: a signing key for a school's plugin authors or
//! admins, and signed packages made from built components.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use multistream_plugin_host::package;
use multistream_plugin_host::{Limits, Runtime};

/// Makes a signing key at `path` (never over an existing file); returns its public key, hex.
pub fn make_signing_key(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        bail!(
            "{} already exists; a signing key is never overwritten (choose another --out)",
            path.display()
        );
    }
    let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    crate::token::write_private(path, document.as_ref())
        .with_context(|| format!("cannot write the key {}", path.display()))?;
    let key = Ed25519KeyPair::from_pkcs8(document.as_ref())
        .map_err(|_| anyhow::anyhow!("a fresh key did not parse"))?;
    Ok(package::public_key_hex(&key))
}

fn load_signing_key(path: &Path) -> anyhow::Result<Ed25519KeyPair> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the key {}", path.display()))?;
    Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a plugin signing key (make one with `multistream-node plugin-key`)",
            path.display()
        )
    })
}

/// Signs a built component: reads its manifest under the host's limits (so what is signed is a
/// working plugin), and writes `<name>-<version>.msplugin` into `out_dir`. Returns its path and
/// the signer's public key.
pub fn sign_component(
    key_path: &Path,
    wasm_path: &Path,
    out_dir: &Path,
) -> anyhow::Result<(PathBuf, String)> {
    let key = load_signing_key(key_path)?;
    let wasm = std::fs::read(wasm_path)
        .with_context(|| format!("cannot read the component {}", wasm_path.display()))?;
    let runtime = Runtime::new(Limits::default(), None)?;
    let code = runtime.load(&wasm).map_err(|error| {
        anyhow::anyhow!(
            "{} is not a multistream plugin component: {error:#}",
            wasm_path.display()
        )
    })?;
    let manifest = &code.manifest;
    let signed = package::sign(&wasm, &manifest.name, &manifest.version, &key);
    let out = out_dir.join(format!("{}-{}.msplugin", manifest.name, manifest.version));
    std::fs::write(&out, signed).with_context(|| format!("cannot write {}", out.display()))?;
    Ok((out, package::public_key_hex(&key)))
}
