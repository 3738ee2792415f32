//! Signed plugin packages. A node loads only components signed by a key it trusts, so a plugin
//! cannot be swapped or altered on its way to an edge.
//!
//! A package is one file: the line `multistream-plugin 1`, a JSON header line, then the component
//! bytes. The header names the plugin and its version, the component's SHA-256, the signer's
//! Ed25519 public key and the signature over
//! `"multistream-plugin 1\n" + name + "\n" + version + "\n" + sha256`, which binds the name and
//! version to exactly these bytes.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"multistream-plugin 1\n";

/// Largest package, in bytes.
pub const PACKAGE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Why a package was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("not a multistream plugin package (it does not start with \"multistream-plugin 1\")")]
    NotAPackage,
    #[error("the package is {0} bytes; the limit is {PACKAGE_BYTES_MAX}")]
    TooLarge(usize),
    #[error("the package header is not readable: {0}")]
    BadHeader(String),
    #[error("the package is signed by key {0}, which this node does not trust")]
    UntrustedKey(String),
    #[error("the package's signature does not match its contents (altered or damaged)")]
    BadSignature,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    version: String,
    sha256: String,
    key: String,
    signature: String,
}

/// A package whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub name: String,
    pub version: String,
    /// The signer's public key, hex.
    pub key: String,
    pub wasm: Vec<u8>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn signed_text(name: &str, version: &str, sha256: &str) -> Vec<u8> {
    let mut text = MAGIC.to_vec();
    text.extend_from_slice(format!("{name}\n{version}\n{sha256}").as_bytes());
    text
}

/// The public key of a signing key, hex: what a node lists as trusted.
pub fn public_key_hex(key: &Ed25519KeyPair) -> String {
    hex(key.public_key().as_ref())
}

/// Packs and signs a component.
pub fn sign(wasm: &[u8], name: &str, version: &str, key: &Ed25519KeyPair) -> Vec<u8> {
    let sha256 = hex(digest(&SHA256, wasm).as_ref());
    let signature = key.sign(&signed_text(name, version, &sha256));
    let header = Header {
        name: name.to_owned(),
        version: version.to_owned(),
        sha256,
        key: public_key_hex(key),
        signature: hex(signature.as_ref()),
    };
    let mut package = MAGIC.to_vec();
    package.extend_from_slice(
        serde_json::to_string(&header)
            .unwrap_or_default()
            .as_bytes(),
    );
    package.push(b'\n');
    package.extend_from_slice(wasm);
    package
}

/// Checks a package against the trusted keys (hex Ed25519 public keys) and returns its contents.
pub fn open(package: &[u8], trusted: &[String]) -> Result<Verified, PackageError> {
    if package.len() > PACKAGE_BYTES_MAX {
        return Err(PackageError::TooLarge(package.len()));
    }
    let rest = package
        .strip_prefix(MAGIC)
        .ok_or(PackageError::NotAPackage)?;
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| PackageError::BadHeader("no end of header".into()))?;
    let header: Header =
        serde_json::from_slice(&rest[..end]).map_err(|e| PackageError::BadHeader(e.to_string()))?;
    let wasm = &rest[end + 1..];
    let key = header.key.to_ascii_lowercase();
    if !trusted.iter().any(|t| t.eq_ignore_ascii_case(&key)) {
        return Err(PackageError::UntrustedKey(key));
    }
    let sha256 = hex(digest(&SHA256, wasm).as_ref());
    let public = unhex(&key).ok_or(PackageError::BadSignature)?;
    let signature = unhex(&header.signature).ok_or(PackageError::BadSignature)?;
    // The signature covers the hash of the bytes actually here, not the header's claim.
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(
            &signed_text(&header.name, &header.version, &sha256),
            &signature,
        )
        .map_err(|_| PackageError::BadSignature)?;
    if sha256 != header.sha256 {
        return Err(PackageError::BadSignature);
    }
    Ok(Verified {
        name: header.name,
        version: header.version,
        key,
        wasm: wasm.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;

    use super::*;

    fn key() -> Ed25519KeyPair {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("a key");
        Ed25519KeyPair::from_pkcs8(document.as_ref()).expect("parses")
    }

    #[test]
    fn a_signed_package_opens_and_any_change_is_refused() {
        let signer = key();
        let trusted = vec![public_key_hex(&signer)];
        let wasm = b"\0asm\x0d\0\x01\0component bytes".to_vec();
        let package = sign(&wasm, "polls", "0.1.0", &signer);
        let opened = open(&package, &trusted).expect("opens");
        assert_eq!(opened.wasm, wasm);
        assert_eq!(
            (opened.name.as_str(), opened.version.as_str()),
            ("polls", "0.1.0")
        );

        // One byte of the component changed.
        let mut tampered = package.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(open(&tampered, &trusted), Err(PackageError::BadSignature));
        // The header's name changed (the signature binds it).
        let renamed = String::from_utf8_lossy(&package)
            .replacen("\"polls\"", "\"pollz\"", 1)
            .into_bytes();
        assert_eq!(open(&renamed, &trusted), Err(PackageError::BadSignature));
        // Signed by someone else.
        let stranger = sign(&wasm, "polls", "0.1.0", &key());
        assert!(matches!(
            open(&stranger, &trusted),
            Err(PackageError::UntrustedKey(_))
        ));
        // Not a package at all (an unsigned component).
        assert_eq!(open(&wasm, &trusted), Err(PackageError::NotAPackage));
        assert!(matches!(
            open(b"multistream-plugin 1\n{not json}\n", &trusted),
            Err(PackageError::BadHeader(_))
        ));
    }
}
