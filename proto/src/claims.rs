//! Join-token claims: what a signed token says about its bearer.
//!
//! Tokens are JWTs signed with Ed25519 (EdDSA). The node verifies the signature and the expiry;
//! this module defines what the payload means and the rules that follow from it (which role may
//! publish, what an invitation may become).

use serde::{Deserialize, Serialize};

use crate::ids::{ParticipantId, SessionId};

/// Longest display name, in characters. Long enough for any real name, short enough for a tile.
pub const DISPLAY_NAME_CHARS_MAX: usize = 64;

/// A participant's role in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the class: publishes by default.
    Teacher,
    /// Attends: watches and listens; publishes only when granted.
    Student,
    /// A visitor with the least rights: watches and listens; publishes only when granted.
    Guest,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Teacher => "teacher",
            Role::Student => "student",
            Role::Guest => "guest",
        }
    }

    /// The grants a token of this role carries when the issuer does not say otherwise.
    pub fn default_grants(self) -> Grants {
        match self {
            Role::Teacher => Grants {
                publish: true,
                subscribe: true,
            },
            Role::Student | Role::Guest => Grants {
                publish: false,
                subscribe: true,
            },
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "teacher" => Ok(Role::Teacher),
            "student" => Ok(Role::Student),
            "guest" => Ok(Role::Guest),
            other => Err(format!(
                "unknown role {other:?}; expected teacher, student or guest"
            )),
        }
    }
}

/// What the bearer may do with media in the token's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// May send audio, video or a screen (WHIP).
    pub publish: bool,
    /// May watch and listen (WHEP).
    pub subscribe: bool,
}

/// Whether a token is a personal pass or an invitation that mints personal passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Names one participant; accepted by media and WebSocket endpoints.
    Access,
    /// A shareable link for a session and role; accepted only by the join endpoint, which trades
    /// it for an access token with a fresh participant id and the name the person typed.
    Invite,
}

/// The payload of a multistream JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the node (or, later, the control plane) whose key signed the token.
    pub iss: String,
    /// Subject: the participant id. For an invitation, the id of whoever created it.
    pub sub: ParticipantId,
    /// The session the token is for.
    pub sid: SessionId,
    /// Display name shown to others.
    pub name: String,
    pub role: Role,
    pub grants: Grants,
    pub kind: TokenKind,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a display name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than {DISPLAY_NAME_CHARS_MAX} characters")]
    TooLong,
    #[error("the name contains a control character")]
    ControlCharacter,
}

/// Trims a display name and checks it can be shown to others safely.
pub fn validate_display_name(name: &str) -> Result<String, NameError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.chars().count() > DISPLAY_NAME_CHARS_MAX {
        return Err(NameError::TooLong);
    }
    if trimmed.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_teachers_publish_by_default() {
        assert!(Role::Teacher.default_grants().publish);
        assert!(!Role::Student.default_grants().publish);
        assert!(!Role::Guest.default_grants().publish);
        assert!(Role::Guest.default_grants().subscribe);
    }

    #[test]
    fn display_names_are_trimmed_and_checked() {
        assert_eq!(validate_display_name("  Ana  "), Ok("Ana".to_owned()));
        assert_eq!(validate_display_name("   "), Err(NameError::Empty));
        assert_eq!(
            validate_display_name("a\u{7}b"),
            Err(NameError::ControlCharacter)
        );
        assert_eq!(
            validate_display_name(&"é".repeat(65)),
            Err(NameError::TooLong)
        );
    }
}
