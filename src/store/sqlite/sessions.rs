//! SQLite SQL for dashboard sessions: a login is a row, so it outlives a restart and, on a
//! shared database, is valid on every node.

use super::{SqliteReader, SqliteTx};
use crate::domain::ports::{SessionRead, SessionRecord, SessionWrite, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

fn find_session(connection: &Connection, token_hash: &str, now_ms: i64) -> Result<Option<SessionRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT key_name, key_digest, csrf, expires_at, flash_ok, flash_text FROM dashboard_sessions
         WHERE token_hash = ?1 AND expires_at > ?2",
    )?;
    let session = statement
        .query_row(params![token_hash, now_ms], |row| {
            let flash_ok: Option<bool> = row.get(4)?;
            let flash_text: Option<String> = row.get(5)?;
            Ok(SessionRecord {
                key_name: row.get(0)?,
                key_digest: row.get(1)?,
                csrf: row.get(2)?,
                expires_at_ms: row.get(3)?,
                flash: flash_ok.zip(flash_text),
            })
        })
        .optional()?;
    Ok(session)
}

impl SessionRead for SqliteReader<'_> {
    fn find_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<SessionRecord>, StoreError> {
        find_session(self.0, token_hash, now_ms)
    }
}

impl SessionRead for SqliteTx<'_> {
    fn find_session(&self, token_hash: &str, now_ms: i64) -> Result<Option<SessionRecord>, StoreError> {
        find_session(self.0, token_hash, now_ms)
    }
}

impl SessionWrite for SqliteTx<'_> {
    fn save_session(&self, token_hash: &str, session: &SessionRecord) -> Result<(), StoreError> {
        let (flash_ok, flash_text) = match &session.flash {
            Some((ok, text)) => (Some(*ok), Some(text.as_str())),
            None => (None, None),
        };
        self.0
            .prepare_cached(
                "INSERT INTO dashboard_sessions (token_hash, key_name, key_digest, csrf, expires_at, flash_ok, flash_text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (token_hash) DO UPDATE SET key_name = excluded.key_name, key_digest = excluded.key_digest,
                     csrf = excluded.csrf, expires_at = excluded.expires_at, flash_ok = excluded.flash_ok,
                     flash_text = excluded.flash_text",
            )?
            .execute(params![
                token_hash,
                session.key_name,
                session.key_digest,
                session.csrf,
                session.expires_at_ms,
                flash_ok,
                flash_text
            ])?;
        Ok(())
    }

    fn set_session_flash(&self, token_hash: &str, flash: Option<(bool, &str)>) -> Result<bool, StoreError> {
        let (flash_ok, flash_text) = (flash.map(|(ok, _)| ok), flash.map(|(_, text)| text));
        let changed = self
            .0
            .prepare_cached("UPDATE dashboard_sessions SET flash_ok = ?2, flash_text = ?3 WHERE token_hash = ?1")?
            .execute(params![token_hash, flash_ok, flash_text])?;
        Ok(changed == 1)
    }

    fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.0.prepare_cached("DELETE FROM dashboard_sessions WHERE token_hash = ?1")?.execute([token_hash])?;
        Ok(())
    }

    fn prune_sessions(&self, now_ms: i64) -> Result<u64, StoreError> {
        let deleted =
            self.0.prepare_cached("DELETE FROM dashboard_sessions WHERE expires_at <= ?1")?.execute([now_ms])?;
        Ok(deleted as u64)
    }
}
