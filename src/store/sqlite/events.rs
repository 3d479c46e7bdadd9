//! SQLite SQL for events, alert marks and the webhook outbox: recording and queueing inside
//! a change's transaction, paging for the admin API, and the sender's claims and outcomes.

use super::{SqliteReader, SqliteTx};
use crate::domain::ports::{
    AttemptError, AttemptOutcome, DeliveryRecord, EventQuery, EventRead, EventRecord, EventWrite, Requeue, StoreError,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        seq: row.get(0)?,
        id: row.get(1)?,
        kind: row.get(2)?,
        at_ms: row.get(3)?,
        user_id: row.get(4)?,
        data: row.get(5)?,
    })
}

const DELIVERY_COLUMNS: &str = "d.id, d.event_id, e.type, d.url, d.status, d.attempts, d.next_attempt_at, \
                                d.window_start, d.last_error, d.created_at, d.updated_at";

fn delivery_row(row: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: row.get(0)?,
        event_id: row.get(1)?,
        event_type: row.get(2)?,
        url: row.get(3)?,
        status: row.get(4)?,
        attempts: row.get(5)?,
        next_attempt_at_ms: row.get(6)?,
        window_start_ms: row.get(7)?,
        last_error: row.get(8)?,
        created_at_ms: row.get(9)?,
        updated_at_ms: row.get(10)?,
    })
}

fn events(connection: &Connection, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT seq, id, type, at, user_id, data FROM events
         WHERE seq > ?1 AND (?2 IS NULL OR type = ?2) AND (?3 IS NULL OR user_id = ?3) AND at >= ?4
         ORDER BY seq LIMIT ?5",
    )?;
    let rows = statement.query_map(
        params![
            query.after_seq.unwrap_or(0),
            query.kind,
            query.user_id,
            query.since_ms.unwrap_or(i64::MIN),
            query.limit
        ],
        event_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn event_seq(connection: &Connection, event_id: &str) -> Result<Option<i64>, StoreError> {
    let mut statement = connection.prepare_cached("SELECT seq FROM events WHERE id = ?1")?;
    Ok(statement.query_row([event_id], |row| row.get(0)).optional()?)
}

/// The query behind `due_deliveries`: to one receiver (`?3`) when `by_url`, else to any.
///
/// Two statements rather than one with `(?3 IS NULL OR d.url = ?3)`: SQLite plans a statement
/// before it sees its parameters, so with the OR a lane's claim cannot use
/// `webhook_deliveries_due_by_url` and walks, on the writer, past every other receiver's due
/// rows first; behind a hanging receiver's backlog of 20,000 that was 10 to 16 ms a claim.
fn due_deliveries_sql(by_url: bool) -> String {
    let url_filter = if by_url { "d.url = ?3" } else { "?3 IS NULL" };
    format!(
        "SELECT {DELIVERY_COLUMNS}, e.seq, e.id, e.type, e.at, e.user_id, e.data
         FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND {url_filter}
         ORDER BY d.next_attempt_at, d.id LIMIT ?2"
    )
}

/// Due pending deliveries, oldest first, to `url` or to any receiver.
fn due_deliveries(
    connection: &Connection,
    url: Option<&str>,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<(DeliveryRecord, EventRecord)>, StoreError> {
    let mut statement = connection.prepare_cached(&due_deliveries_sql(url.is_some()))?;
    let rows = statement.query_map(params![now_ms, limit, url], |row| {
        let delivery = delivery_row(row)?;
        let event = EventRecord {
            seq: row.get(11)?,
            id: row.get(12)?,
            kind: row.get(13)?,
            at_ms: row.get(14)?,
            user_id: row.get(15)?,
            data: row.get(16)?,
        };
        Ok((delivery, event))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn deliveries(
    connection: &Connection,
    status: Option<&str>,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
         WHERE (?1 IS NULL OR d.status = ?1) AND d.id < ?2 ORDER BY d.id DESC LIMIT ?3"
    ))?;
    let rows = statement.query_map(params![status, before.unwrap_or(i64::MAX), limit], delivery_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn find_delivery(connection: &Connection, delivery_id: i64) -> Result<Option<DeliveryRecord>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = ?1"
    ))?;
    Ok(statement.query_row([delivery_id], delivery_row).optional()?)
}

fn attempt_errors(connection: &Connection, delivery_id: i64) -> Result<Vec<AttemptError>, StoreError> {
    let mut statement = connection
        .prepare_cached("SELECT attempt, at, error FROM webhook_attempts WHERE delivery_id = ?1 ORDER BY attempt")?;
    let rows = statement.query_map([delivery_id], |row| {
        Ok(AttemptError { attempt: row.get(0)?, at_ms: row.get(1)?, error: row.get(2)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

macro_rules! impl_event_read {
    ($type:ty) => {
        impl EventRead for $type {
            fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
                events(self.0, query)
            }
            fn event_seq(&self, event_id: &str) -> Result<Option<i64>, StoreError> {
                event_seq(self.0, event_id)
            }
            fn due_deliveries(
                &self,
                now_ms: i64,
                limit: u32,
            ) -> Result<Vec<(DeliveryRecord, EventRecord)>, StoreError> {
                due_deliveries(self.0, None, now_ms, limit)
            }
            fn deliveries(
                &self,
                status: Option<&str>,
                limit: u32,
                before: Option<i64>,
            ) -> Result<Vec<DeliveryRecord>, StoreError> {
                deliveries(self.0, status, limit, before)
            }
            fn find_delivery(&self, delivery_id: i64) -> Result<Option<DeliveryRecord>, StoreError> {
                find_delivery(self.0, delivery_id)
            }
            fn attempt_errors(&self, delivery_id: i64) -> Result<Vec<AttemptError>, StoreError> {
                attempt_errors(self.0, delivery_id)
            }
        }
    };
}

impl_event_read!(SqliteReader<'_>);
impl_event_read!(SqliteTx<'_>);

impl EventWrite for SqliteTx<'_> {
    fn record_event(&self, kind: &str, user_id: Option<&str>, data: &str, now_ms: i64) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.0
            .prepare_cached("INSERT INTO events (id, type, at, user_id, data) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![id, kind, now_ms, user_id, data])?;
        self.note_event(kind);
        Ok(id)
    }

    fn queue_delivery(&self, event_id: &str, url: &str, now_ms: i64) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO webhook_deliveries
                     (event_id, url, status, attempts, next_attempt_at, window_start, created_at, updated_at)
                 VALUES (?1, ?2, 'pending', 0, ?3, ?3, ?3, ?3)",
            )?
            .execute(params![event_id, url, now_ms])?;
        Ok(())
    }

    fn claim_deliveries(
        &self,
        url: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<(DeliveryRecord, EventRecord)>, StoreError> {
        // One writer: nothing else can claim between the read and the update.
        let due = due_deliveries(self.0, Some(url), now_ms, limit)?;
        let mut lease = self.0.prepare_cached("UPDATE webhook_deliveries SET next_attempt_at = ?2 WHERE id = ?1")?;
        for (delivery, _) in &due {
            lease.execute(params![delivery.id, lease_until_ms])?;
        }
        Ok(due)
    }

    fn mark_alert(&self, user_pk: i64, period: &str, metric: &str, alert: &str) -> Result<bool, StoreError> {
        let inserted = self
            .0
            .prepare_cached(
                "INSERT OR IGNORE INTO usage_alerts (user_pk, period, metric, alert) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![user_pk, period, metric, alert])?;
        Ok(inserted == 1)
    }

    fn mark_account_alert(&self, account_pk: i64, period: &str, metric: &str, alert: &str) -> Result<bool, StoreError> {
        super::accounts::mark_alert(self.0, account_pk, period, metric, alert)
    }

    fn finish_attempt(&self, delivery_id: i64, outcome: &AttemptOutcome, now_ms: i64) -> Result<(), StoreError> {
        let (status, next_attempt_at, error, attempted) = outcome.stored();
        let attempt: Option<i64> = self
            .0
            .prepare_cached(
                "UPDATE webhook_deliveries SET status = ?2, attempts = attempts + ?6,
                     next_attempt_at = coalesce(?3, next_attempt_at), last_error = ?4, updated_at = ?5
                 WHERE id = ?1 AND status = 'pending' RETURNING attempts",
            )?
            .query_row(params![delivery_id, status, next_attempt_at, error, now_ms, i64::from(attempted)], |row| {
                row.get(0)
            })
            .optional()?;
        if let (Some(attempt), Some(error), true) = (attempt, error, attempted) {
            self.0
                .prepare_cached(
                    "INSERT INTO webhook_attempts (delivery_id, attempt, at, error) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![delivery_id, attempt, now_ms, error])?;
        }
        Ok(())
    }

    fn expire_deliveries(
        &self,
        now_ms: i64,
        window_started_by_ms: i64,
        error: &str,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let expired = self
            .0
            .prepare_cached(
                "UPDATE webhook_deliveries
                 SET status = 'failed', last_error = ?3 || coalesce('; last error: ' || last_error, ''), updated_at = ?1
                 WHERE id IN (SELECT id FROM webhook_deliveries INDEXED BY webhook_deliveries_pending_by_window
                              WHERE status = 'pending' AND next_attempt_at <= ?1 AND window_start <= ?2 LIMIT ?4)",
            )?
            .execute(params![now_ms, window_started_by_ms, error, limit])?;
        Ok(expired as u64)
    }

    fn requeue_delivery(&self, delivery_id: i64, now_ms: i64) -> Result<Requeue, StoreError> {
        let status: Option<String> = self
            .0
            .prepare_cached("SELECT status FROM webhook_deliveries WHERE id = ?1")?
            .query_row([delivery_id], |row| row.get(0))
            .optional()?;
        match status.as_deref() {
            None => Ok(Requeue::NotFound),
            Some("failed") => {
                self.0
                    .prepare_cached(
                        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?2, window_start = ?2,
                             updated_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![delivery_id, now_ms])?;
                Ok(Requeue::Requeued)
            }
            Some(_) => Ok(Requeue::NotFailed),
        }
    }

    fn prune_events(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        // Deliveries go with their events (ON DELETE CASCADE); an event still waiting to be
        // delivered stays until its delivery succeeds or gives up.
        let deleted = self
            .0
            .prepare_cached(
                "DELETE FROM events WHERE seq IN (
                     SELECT seq FROM events WHERE at < ?1 AND NOT EXISTS (
                         SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id AND d.status = 'pending')
                     LIMIT ?2)",
            )?
            .execute(params![before_ms, limit])?;
        Ok(deleted as u64)
    }

    fn prune_alerts(&self, oldest_kept: &str, limit: u32) -> Result<u64, StoreError> {
        let deleted = self
            .0
            .prepare_cached(
                "DELETE FROM usage_alerts WHERE (user_pk, period, metric, alert) IN (
                     SELECT user_pk, period, metric, alert FROM usage_alerts WHERE period < ?1 LIMIT ?2)",
            )?
            .execute(params![oldest_kept, limit])?;
        Ok(deleted as u64)
    }

    fn redact_event_user(&self, user_id: &str, replacement: &str, limit: u32) -> Result<u64, StoreError> {
        let changed = self
            .0
            .prepare_cached(
                "UPDATE events SET user_id = ?2 WHERE seq IN (SELECT seq FROM events WHERE user_id = ?1 LIMIT ?3)",
            )?
            .execute(params![user_id, replacement, limit])?;
        Ok(changed as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn pruning_keeps_events_still_waiting_for_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("[database]\npath = {:?}\n", dir.path().join("t.db").display().to_string());
        let config = Config::from_toml("test", &text, &|_| None).unwrap();
        let store = crate::store::open(&config.database, Default::default()).unwrap();
        let pruned = store
            .write(|tx| {
                let delivered = tx.record_event("cleanup", None, "{}", 1_000)?;
                tx.queue_delivery(&delivered, "http://a.example/", 1_000)?;
                let pending = tx.record_event("cleanup", None, "{}", 1_000)?;
                tx.queue_delivery(&pending, "http://a.example/", 1_000)?;
                tx.record_event("cleanup", None, "{}", 1_000)?;
                let first = tx.due_deliveries(2_000, 10)?[0].0.id;
                tx.finish_attempt(first, &AttemptOutcome::Delivered, 2_000)?;
                tx.prune_events(5_000, 100)
            })
            .unwrap();
        assert_eq!(pruned, 2, "the delivered event and the one no webhook wanted");
        let left = store.read(|reader| reader.events(&EventQuery { limit: 10, ..EventQuery::default() })).unwrap();
        assert_eq!(left.len(), 1, "the event still waiting for its webhook stays");
        store.shutdown();
    }

    #[test]
    fn a_receivers_claim_reads_only_its_own_deliveries_through_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db").display().to_string();
        let config = Config::from_toml("test", &format!("[database]\npath = {path:?}\n"), &|_| None).unwrap();
        crate::store::open(&config.database, Default::default()).unwrap().shutdown();
        let connection = Connection::open(&path).unwrap();
        let plan: Vec<String> = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {}", due_deliveries_sql(true)))
            .unwrap()
            .query_map(params![0, 1, "http://a.example/"], |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let on_deliveries = plan.iter().find(|step| step.contains(" d ")).unwrap();
        assert!(
            on_deliveries.contains("webhook_deliveries_due_by_url (url=?"),
            "a claim must not walk other receivers' due rows: {plan:?}"
        );
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "no sort either: {plan:?}");
    }
}
