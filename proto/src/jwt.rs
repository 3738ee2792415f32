//! The compact JWT form of [`Claims`], shared by every issuer (an edge, a cluster key, the
//! control plane): `header.payload.signature`, base64url without padding, header
//! `{"alg":"EdDSA","typ":"JWT"}`. Signing and verifying (Ed25519) belong to the issuers; this
//! module only lays the bytes out, so every issuer writes tokens every edge reads.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Claims;

/// The one header multistream writes.
pub const HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;

/// What is signed: the encoded header and payload, joined by a dot.
pub fn signing_input(claims: &Claims) -> String {
    // Plain data always serialises.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

/// The token: the signed input and its Ed25519 signature.
pub fn assemble(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The name an issuer with this public key signs as (`iss`): `prefix:` and the key's first
/// eight bytes in hex, which is how a verifier finds the key among those it trusts.
pub fn issuer_name(prefix: &str, public_key: &[u8]) -> String {
    let hex: String = public_key
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}:{hex}")
}

/// The key part of an issuer's name (what follows the last `:`), by which issuers are matched
/// whatever prefix they sign under; `None` for a name without one.
pub fn issuer_key_part(iss: &str) -> Option<&str> {
    iss.rsplit_once(':').map(|(_, key)| key)
}
