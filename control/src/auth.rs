//! Who is asking: admins sign in with a password (argon2id) and get a session cookie; API
//! clients send an API key. Both resolve to a [`Principal`] with the person's roles, which every
//! endpoint checks. Secrets (passwords, keys, cookies) are never stored or logged as given: keys
//! and cookies are kept as SHA-256 hashes, passwords as argon2id hashes.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sqlx::Row;

use crate::db::{Db, now_ms, sha256_hex};

/// The admin session cookie's name.
pub const COOKIE: &str = "ms_admin";

/// How long an admin stays signed in.
pub const ADMIN_SESSION_MS: i64 = 12 * 3600 * 1000;

/// How finely a key's last use is kept: a key used again within this is not written again.
pub const API_KEY_USE_RESOLUTION_MS: i64 = 60_000;

/// API keys start with this, so a leaked one is recognisable in a scan.
pub const API_KEY_PREFIX: &str = "mskey_";

/// Shortest password accepted for an admin.
pub const PASSWORD_CHARS_MIN: usize = 12;

/// Longest password accepted (argon2 takes any length; this keeps a request from costing more).
pub const PASSWORD_BYTES_MAX: usize = 256;

/// Failed sign-ins tolerated per email in [`SIGN_IN_WINDOW`].
pub const SIGN_IN_FAILURES_MAX: usize = 5;

/// Failed sign-ins tolerated per address in [`SIGN_IN_WINDOW`]: more than per email, since a
/// school's staff may share one address behind its NAT.
pub const SIGN_IN_FAILURES_PER_ADDRESS_MAX: usize = 30;

/// The window failed sign-ins are counted over.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(300);

/// Addresses and emails the sign-in limiter remembers at most; the oldest go first.
pub const LIMITER_ENTRIES_MAX: usize = 10_000;

/// A role in an organisation or a course.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Teacher,
    TeachingAssistant,
    Student,
    Guest,
    Captioner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Teacher => "teacher",
            Role::TeachingAssistant => "teaching_assistant",
            Role::Student => "student",
            Role::Guest => "guest",
            Role::Captioner => "captioner",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "admin" => Role::Admin,
            "teacher" => Role::Teacher,
            "teaching_assistant" => Role::TeachingAssistant,
            "student" => Role::Student,
            "guest" => Role::Guest,
            "captioner" => Role::Captioner,
            _ => return None,
        })
    }
}

/// The person behind a request, with their roles.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub organisation_id: String,
    pub name: String,
    pub email: String,
    pub admin: bool,
    /// Roles per course.
    pub courses: HashMap<String, Vec<Role>>,
}

impl Principal {
    /// Whether they hold `role` in `course`.
    pub fn has(&self, course: &str, role: Role) -> bool {
        self.courses.get(course).is_some_and(|r| r.contains(&role))
    }

    /// Whether they may see a course's sessions: admins, and anyone with a role in it.
    pub fn sees(&self, course: &str) -> bool {
        self.admin || self.courses.contains_key(course)
    }

    /// Whether they may schedule in a course: admins and its teachers.
    pub fn schedules(&self, course: &str) -> bool {
        self.admin || self.has(course, Role::Teacher)
    }
}

/// Hashes a password with argon2id and a fresh salt (slow on purpose: call off the runtime).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "the system random source failed".to_owned())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches a stored argon2 hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Whether a new password is acceptable; the reason if not.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(format!("a password is at most {PASSWORD_BYTES_MAX} bytes"));
    }
    if password.chars().count() < PASSWORD_CHARS_MIN {
        return Err(format!(
            "a password has at least {PASSWORD_CHARS_MIN} characters"
        ));
    }
    Ok(())
}

/// Loads a user's principal (`None` if there is no such enabled user).
pub async fn principal(db: &Db, user_id: &str) -> Result<Option<Principal>, sqlx::Error> {
    let Some(user) = sqlx::query(
        "SELECT id, organisation_id, name, email FROM users WHERE id = $1 AND disabled = 0",
    )
    .bind(user_id)
    .fetch_optional(&db.pool)
    .await?
    else {
        return Ok(None);
    };
    let roles = sqlx::query("SELECT role, course_id FROM user_roles WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&db.pool)
        .await?;
    let mut admin = false;
    let mut courses: HashMap<String, Vec<Role>> = HashMap::new();
    for row in roles {
        let role = Role::parse(&row.try_get::<String, _>("role")?);
        let course: Option<String> = row.try_get("course_id")?;
        match (role, course) {
            (Some(Role::Admin), None) => admin = true,
            (Some(role), Some(course)) => courses.entry(course).or_default().push(role),
            _ => {}
        }
    }
    Ok(Some(Principal {
        user_id: user.try_get("id")?,
        organisation_id: user.try_get("organisation_id")?,
        name: user.try_get("name")?,
        email: user.try_get("email")?,
        admin,
        courses,
    }))
}

/// The user an API key belongs to, if it is valid (and notes its use).
pub async fn user_of_api_key(db: &Db, key: &str) -> Result<Option<String>, sqlx::Error> {
    if !key.starts_with(API_KEY_PREFIX) || key.len() > 128 {
        return Ok(None);
    }
    let hash = sha256_hex(key);
    let row =
        sqlx::query("SELECT id, user_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(&hash)
            .fetch_optional(&db.pool)
            .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: String = row.try_get("id")?;
    // Noted at most once a minute per key: a script's every request need not be a write.
    let now = now_ms();
    sqlx::query(
        "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(now)
    .bind(&id)
    .bind(now - API_KEY_USE_RESOLUTION_MS)
    .execute(&db.pool)
    .await?;
    Ok(Some(row.try_get("user_id")?))
}

/// The user an admin session cookie belongs to, if it is valid and not expired.
pub async fn user_of_cookie(db: &Db, value: &str) -> Result<Option<String>, sqlx::Error> {
    if value.len() != 64 {
        return Ok(None);
    }
    let row =
        sqlx::query("SELECT user_id FROM admin_sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(sha256_hex(value))
            .bind(now_ms())
            .fetch_optional(&db.pool)
            .await?;
    row.map(|r| r.try_get("user_id")).transpose()
}

/// Failed sign-ins per address and per email, in a sliding window.
#[derive(Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SignInLimiter {
    /// The counters an attempt touches, with their limits.
    fn keys(ip: IpAddr, email: &str) -> [(String, usize); 2] {
        [
            (format!("ip:{ip}"), SIGN_IN_FAILURES_PER_ADDRESS_MAX),
            (
                format!("email:{}", email.trim().to_lowercase()),
                SIGN_IN_FAILURES_MAX,
            ),
        ]
    }

    /// Whether another attempt may be made now.
    pub fn allows(&self, now: Instant, ip: IpAddr, email: &str) -> bool {
        let Ok(mut failures) = self.failures.lock() else {
            return false;
        };
        Self::keys(ip, email).iter().all(|(key, limit)| {
            failures.get_mut(key).is_none_or(|times| {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= SIGN_IN_WINDOW)
                {
                    times.pop_front();
                }
                times.len() < *limit
            })
        })
    }

    pub fn failed(&self, now: Instant, ip: IpAddr, email: &str) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= LIMITER_ENTRIES_MAX {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < SIGN_IN_WINDOW)
            });
            if failures.len() >= LIMITER_ENTRIES_MAX {
                failures.clear();
            }
        }
        for (key, limit) in Self::keys(ip, email) {
            let times = failures.entry(key).or_default();
            times.push_back(now);
            while times.len() > limit {
                times.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery").expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterz", &hash));
        assert!(!verify_password("anything", "not a hash"));
        assert!(check_new_password("short").is_err());
        assert!(check_new_password(&"x".repeat(PASSWORD_BYTES_MAX + 1)).is_err());
        assert!(check_new_password("twelve chars").is_ok());
    }

    #[test]
    fn sign_in_failures_are_limited_per_address_and_per_email() {
        let limiter = SignInLimiter::default();
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        for _ in 0..SIGN_IN_FAILURES_MAX {
            assert!(limiter.allows(now, ip, "a@school.example"));
            limiter.failed(now, ip, "a@school.example");
        }
        assert!(!limiter.allows(now, ip, "a@school.example"));
        // The same email from elsewhere is held back too; another email from this address not
        // yet (staff behind one NAT), until the address's own limit.
        assert!(!limiter.allows(
            now,
            "198.51.100.1".parse().expect("ip"),
            " A@school.example"
        ));
        assert!(limiter.allows(now, ip, "b@school.example"));
        for n in 0..SIGN_IN_FAILURES_PER_ADDRESS_MAX {
            limiter.failed(now, ip, &format!("guess{n}@school.example"));
        }
        assert!(!limiter.allows(now, ip, "c@school.example"));
        // The window passes.
        assert!(limiter.allows(now + SIGN_IN_WINDOW, ip, "a@school.example"));
    }
}
