//! HTTPS for the control plane. Edges send it their secret on every check-in and admins sign in
//! to it, so anything but a loopback address is served over TLS: a configured certificate, or
//! one it makes itself at first start (ECDSA P-256, with rcgen) and keeps in `tls/` in the data
//! directory. An edge trusts a self-signed one with `--control-ca <data dir>/tls/control.crt`.

use std::path::{Path, PathBuf};

/// The certificate chain and private key, PEM.
#[derive(Clone)]
pub struct TlsPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// Where the certificate is, when the control plane made it itself (for the edges'
    /// `--control-ca`).
    pub self_signed: Option<PathBuf>,
}

/// Reads a configured certificate chain and key.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<TlsPem> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))
    };
    Ok(TlsPem {
        cert: read(cert)?,
        key: read(key)?,
        self_signed: None,
    })
}

/// The self-signed certificate kept in `data_dir/tls/`, made on first use for `names` (host
/// names or IP addresses) besides `localhost`, `127.0.0.1` and `::1`. A kept certificate is used
/// as it is: delete the directory to make one for other names.
pub fn self_signed(data_dir: &Path, names: &[String]) -> anyhow::Result<TlsPem> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("control.crt");
    let key_path = dir.join("control.key");
    if cert_path.exists() && key_path.exists() {
        let mut pem = load(&cert_path, &key_path)?;
        pem.self_signed = Some(cert_path);
        return Ok(pem);
    }
    let mut all = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for name in names {
        if !all.contains(name) {
            all.push(name.clone());
        }
    }
    let made = rcgen::generate_simple_self_signed(all)
        .map_err(|error| anyhow::anyhow!("cannot make a self-signed certificate: {error}"))?;
    std::fs::create_dir_all(&dir)
        .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", dir.display()))?;
    let key = made.signing_key.serialize_pem();
    let cert = made.cert.pem();
    // A half-made pair from an earlier failed start is replaced.
    let _ = std::fs::remove_file(&key_path);
    crate::issuer::write_private(&key_path, key.as_bytes())
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", key_path.display()))?;
    std::fs::write(&cert_path, &cert)
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", cert_path.display()))?;
    Ok(TlsPem {
        cert: cert.into_bytes(),
        key: key.into_bytes(),
        self_signed: Some(cert_path),
    })
}
