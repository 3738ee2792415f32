//! Identifiers that cross trust boundaries (URLs, tokens, wire messages), with the rules that make
//! them safe to put in a path, a log line or a metric label.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest session or participant id, in bytes. Ids appear in URLs, logs and metric labels; 64
/// bytes fits a UUID with a prefix and keeps a hostile id from bloating any of them.
pub const ID_LEN_MAX: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is {len} bytes long; the limit is {ID_LEN_MAX}")]
    TooLong { len: usize },
    #[error("id contains {found:?}; only ASCII letters, digits, '-', '_' and '.' are allowed")]
    BadCharacter { found: char },
}

fn validate_id(text: &str) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    if text.len() > ID_LEN_MAX {
        return Err(IdError::TooLong { len: text.len() });
    }
    if let Some(found) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::BadCharacter { found });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                validate_id(text)?;
                Ok(Self(text.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                validate_id(&text)?;
                Ok(Self(text))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A class session, for example `demo` or `physics-101-2026-11-27`.
    SessionId
);
string_id!(
    /// A person (or a device such as an OBS encoder) within the node's issuer. Stable across
    /// reconnects: it is the token's subject.
    ParticipantId
);

/// What a published media stream shows. A participant publishes at most one stream per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Camera and microphone.
    Camera,
    /// A shared screen or window (and its audio, when the browser offers it).
    Screen,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Camera, Source::Screen];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Camera => "camera",
            Source::Screen => "screen",
        }
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "camera" => Ok(Source::Camera),
            "screen" => Ok(Source::Screen),
            other => Err(format!(
                "unknown source {other:?}; expected \"camera\" or \"screen\""
            )),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_safe_text_and_refuse_the_rest() {
        assert!("physics-101_a.b".parse::<SessionId>().is_ok());
        assert_eq!("".parse::<SessionId>(), Err(IdError::Empty));
        assert_eq!(
            "a/b".parse::<SessionId>(),
            Err(IdError::BadCharacter { found: '/' })
        );
        assert_eq!(
            "x".repeat(65).parse::<ParticipantId>(),
            Err(IdError::TooLong { len: 65 })
        );
        let parsed: Result<SessionId, _> = serde_json::from_str("\"bad id\"");
        assert!(parsed.is_err());
    }
}
