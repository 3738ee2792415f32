//! The edge's durable store (redb): session logs and uploaded assets. This module owns the key
//! layout and the schema version; nothing else names a table.
//!
//! Layout (schema 1):
//! - `meta`: `"schema"` → the schema version;
//! - `sessions`: session id → when this edge first stored it (ms since the Unix epoch);
//! - `events`: (session id, sequence number) → the event's encoding ([`Event::encode`]);
//! - `assets`: SHA-256 (lowercase hex) → bytes; `asset_types`: SHA-256 → media type.
//!
//! Every write is one redb transaction, durable when it returns (`Durability::Immediate`, redb's
//! default): a batch of events is group-committed by the caller handing them over together.

use std::path::Path;

use multistream_proto::SessionId;
use multistream_proto::session::{DecodeError, Event, Seq};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// The layout this build writes and reads.
pub const SCHEMA_VERSION: u64 = 1;

/// Largest uploaded asset (a slide deck), in bytes.
pub const ASSET_BYTES_MAX: usize = 25 * 1024 * 1024;

const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
const SESSIONS: TableDefinition<'static, &str, u64> = TableDefinition::new("sessions");
const EVENTS: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("events");
const ASSETS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("assets");
const ASSET_TYPES: TableDefinition<'static, &str, &str> = TableDefinition::new("asset_types");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} cannot be opened: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "the store was written by a newer multistream (schema {found}; this build knows up to \
         {SCHEMA_VERSION}); upgrade this node or point it at another data directory"
    )]
    NewerSchema { found: u64 },
    #[error("the store failed: {0}")]
    Db(String),
    #[error("event {seq} of session {session} cannot be read: {error}")]
    BadEvent {
        session: SessionId,
        seq: u64,
        error: DecodeError,
    },
    #[error("event {seq} of session {session} is out of place (expected {expected})")]
    Gap {
        session: SessionId,
        seq: u64,
        expected: u64,
    },
}

pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store file and checks its schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let write = db.begin_write().map_err(db_error)?;
        {
            let mut meta = write.open_table(META).map_err(db_error)?;
            let found = meta.get("schema").map_err(db_error)?.map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema { found });
                }
                Some(_) => {}
                None => {
                    meta.insert("schema", SCHEMA_VERSION).map_err(db_error)?;
                }
            }
            write.open_table(SESSIONS).map_err(db_error)?;
            write.open_table(EVENTS).map_err(db_error)?;
            write.open_table(ASSETS).map_err(db_error)?;
            write.open_table(ASSET_TYPES).map_err(db_error)?;
        }
        write.commit().map_err(db_error)?;
        Ok(Store { db })
    }

    /// Sessions with a stored log.
    pub fn sessions(&self) -> Result<Vec<SessionId>, StoreError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let table = read.open_table(SESSIONS).map_err(db_error)?;
        let mut sessions = Vec::new();
        for entry in table.iter().map_err(db_error)? {
            let (key, _) = entry.map_err(db_error)?;
            // A key this build cannot parse was not written by it; skip it rather than fail.
            if let Ok(id) = key.value().parse() {
                sessions.push(id);
            }
        }
        Ok(sessions)
    }

    /// A session's whole log, in order.
    pub fn load(&self, session: &SessionId) -> Result<Vec<Event>, StoreError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let table = read.open_table(EVENTS).map_err(db_error)?;
        let mut events = Vec::new();
        let name = session.as_str();
        for entry in table
            .range((name, 1)..=(name, u64::MAX))
            .map_err(db_error)?
        {
            let (key, value) = entry.map_err(db_error)?;
            let seq = key.value().1;
            let expected = events.len() as u64 + 1;
            let event = Event::decode(value.value()).map_err(|error| StoreError::BadEvent {
                session: session.clone(),
                seq,
                error,
            })?;
            if seq != expected || event.seq != Seq(seq) {
                return Err(StoreError::Gap {
                    session: session.clone(),
                    seq,
                    expected,
                });
            }
            events.push(event);
        }
        Ok(events)
    }

    /// Appends events to a session's log in one durable transaction, after dropping the entries
    /// after `truncate_after` when set. `now_ms` records when a new session was first stored.
    pub fn append(
        &self,
        session: &SessionId,
        truncate_after: Option<Seq>,
        events: &[Event],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(db_error)?;
        {
            let name = session.as_str();
            let mut sessions = write.open_table(SESSIONS).map_err(db_error)?;
            if sessions.get(name).map_err(db_error)?.is_none() {
                sessions.insert(name, now_ms).map_err(db_error)?;
            }
            let mut table = write.open_table(EVENTS).map_err(db_error)?;
            if let Some(keep) = truncate_after {
                table
                    .retain_in((name, keep.0 + 1)..=(name, u64::MAX), |_, _| false)
                    .map_err(db_error)?;
            }
            for event in events {
                let bytes = event.encode();
                table
                    .insert((name, event.seq.0), bytes.as_slice())
                    .map_err(db_error)?;
            }
        }
        write.commit().map_err(db_error)?;
        Ok(())
    }

    /// Stores an asset under its SHA-256; storing the same content again changes nothing.
    pub fn put_asset(
        &self,
        sha256: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(db_error)?;
        {
            let mut assets = write.open_table(ASSETS).map_err(db_error)?;
            if assets.get(sha256).map_err(db_error)?.is_none() {
                assets.insert(sha256, bytes).map_err(db_error)?;
                let mut types = write.open_table(ASSET_TYPES).map_err(db_error)?;
                types.insert(sha256, media_type).map_err(db_error)?;
            }
        }
        write.commit().map_err(db_error)?;
        Ok(())
    }

    /// An asset's media type and bytes.
    pub fn asset(&self, sha256: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let assets = read.open_table(ASSETS).map_err(db_error)?;
        let types = read.open_table(ASSET_TYPES).map_err(db_error)?;
        let Some(bytes) = assets.get(sha256).map_err(db_error)? else {
            return Ok(None);
        };
        let media_type = types
            .get(sha256)
            .map_err(db_error)?
            .map(|t| t.value().to_owned())
            .unwrap_or_else(|| "application/octet-stream".into());
        Ok(Some((media_type, bytes.value().to_vec())))
    }
}

fn db_error(error: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(error.into().to_string())
}

#[cfg(test)]
mod tests {
    use multistream_proto::session::{EventBody, Term};

    use super::*;

    fn event(seq: u64, text: &str) -> Event {
        Event {
            seq: Seq(seq),
            term: Term(1),
            at_ms: 5,
            actor: "p".parse().expect("valid"),
            key: Some(format!("k{seq}").parse().expect("valid")),
            body: EventBody::Chat { text: text.into() },
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("multistream-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn logs_survive_reopening_and_truncate_on_request() {
        let dir = temp_dir("logs");
        let path = dir.join("store.redb");
        let session: SessionId = "class".parse().expect("valid");
        {
            let store = Store::open(&path).expect("opens");
            store
                .append(&session, None, &[event(1, "a"), event(2, "b")], 1)
                .expect("appends");
            store
                .append(&session, Some(Seq(1)), &[event(2, "b2"), event(3, "c")], 2)
                .expect("truncates and appends");
        }
        let store = Store::open(&path).expect("reopens");
        assert_eq!(store.sessions().expect("lists"), vec![session.clone()]);
        let events = store.load(&session).expect("loads");
        assert_eq!(events, vec![event(1, "a"), event(2, "b2"), event(3, "c")]);
        let other: SessionId = "other".parse().expect("valid");
        assert!(store.load(&other).expect("loads").is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn assets_are_content_addressed_and_a_newer_schema_is_refused() {
        let dir = temp_dir("assets");
        let path = dir.join("store.redb");
        {
            let store = Store::open(&path).expect("opens");
            store
                .put_asset("abc", "application/pdf", b"%PDF-1.7")
                .expect("stores");
            store
                .put_asset("abc", "text/plain", b"ignored")
                .expect("same key again");
            let (media_type, bytes) = store.asset("abc").expect("reads").expect("present");
            assert_eq!(media_type, "application/pdf");
            assert_eq!(bytes, b"%PDF-1.7");
            assert!(store.asset("nope").expect("reads").is_none());
            let write = store.db.begin_write().expect("write");
            write
                .open_table(META)
                .expect("meta")
                .insert("schema", SCHEMA_VERSION + 1)
                .expect("insert");
            write.commit().expect("commit");
        }
        let error = Store::open(&path).err().expect("refused");
        assert!(matches!(error, StoreError::NewerSchema { .. }), "{error}");
        assert!(error.to_string().contains("upgrade this node"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
