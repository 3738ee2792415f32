//! TLS for the HTTP server: a configured certificate, or a self-signed one made at first start.
//!
//! Browsers grant camera and microphone only to secure contexts. `http://127.0.0.1` is one; any
//! other address needs HTTPS, so a node reachable from other machines always serves TLS. The
//! self-signed certificate (ECDSA P-256, made with rcgen) is kept in `tls/` in the data directory
//! so browsers that accepted it once keep accepting it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where the certificate and key come from.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
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
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
}

/// PEM-encoded certificate chain and private key.
pub struct TlsMaterial {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Set when the node made the certificate itself.
    pub self_signed_path: Option<PathBuf>,
}

/// Reads a configured certificate and key.
pub fn load(cert: &Path, key: &Path) -> Result<TlsMaterial, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    Ok(TlsMaterial {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
        self_signed_path: None,
    })
}

/// Loads the node's self-signed certificate from `data_dir/tls/`, making it on first use with the
/// given names (host names or IP addresses) besides `localhost`, `127.0.0.1` and `::1`.
pub fn self_signed(data_dir: &Path, extra_names: &[String]) -> Result<TlsMaterial, TlsError> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("self-signed.crt");
    let key_path = dir.join("self-signed.key");
    if cert_path.exists() && key_path.exists() {
        let mut material = load(&cert_path, &key_path)?;
        material.self_signed_path = Some(cert_path);
        return Ok(material);
    }
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for name in extra_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|error| TlsError::Generate(error.to_string()))?;
    let write = |path: &Path, contents: &str| {
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(path, contents))
            .map_err(|source| TlsError::Write {
                path: path.display().to_string(),
                source,
            })
    };
    write(&key_path, &certified.signing_key.serialize_pem())?;
    write(&cert_path, &certified.cert.pem())?;
    Ok(TlsMaterial {
        cert_pem: certified.cert.pem().into_bytes(),
        key_pem: certified.signing_key.serialize_pem().into_bytes(),
        self_signed_path: Some(cert_path),
    })
}

/// True for addresses only this machine can reach, where plain HTTP is a secure context.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}
