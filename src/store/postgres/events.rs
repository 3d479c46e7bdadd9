//! PostgreSQL SQL for events, alert marks and the webhook outbox. Delivery attempts are
//! claimed with `FOR UPDATE SKIP LOCKED`, so with several nodes sending, each attempt is
//! made by one of them.

use super::PgDb;
use crate::domain::ports::{
    AttemptError, AttemptOutcome, DeliveryRecord, EventQuery, EventRead, EventRecord, EventWrite, Requeue, StoreError,
};
use postgres::Row;

type Result<T> = std::result::Result<T, StoreError>;

fn event_at(row: &Row, first: usize) -> EventRecord {
    EventRecord {
        seq: row.get(first),
        id: row.get(first + 1),
        kind: row.get(first + 2),
        at_ms: row.get(first + 3),
        user_id: row.get(first + 4),
        data: row.get(first + 5),
    }
}

fn delivery_row(row: &Row) -> DeliveryRecord {
    DeliveryRecord {
        id: row.get(0),
        event_id: row.get(1),
        event_type: row.get(2),
        url: row.get(3),
        status: row.get(4),
        attempts: u32::try_from(row.get::<_, i64>(5)).unwrap_or(u32::MAX),
        next_attempt_at_ms: row.get(6),
        window_start_ms: row.get(7),
        last_error: row.get(8),
        created_at_ms: row.get(9),
        updated_at_ms: row.get(10),
    }
}

impl EventRead for PgDb<'_> {
    fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>> {
        let rows = self.conn().query(
            "SELECT seq, id, type, at, user_id, data FROM events
             WHERE seq > $1 AND ($2::text IS NULL OR type = $2) AND ($3::text IS NULL OR user_id = $3) AND at >= $4
             ORDER BY seq LIMIT $5",
            &[
                &query.after_seq.unwrap_or(0),
                &query.kind,
                &query.user_id,
                &query.since_ms.unwrap_or(i64::MIN),
                &i64::from(query.limit),
            ],
        )?;
        Ok(rows.iter().map(|row| event_at(row, 0)).collect())
    }

    fn event_seq(&self, event_id: &str) -> Result<Option<i64>> {
        let row = self.conn().query_opt("SELECT seq FROM events WHERE id = $1", &[&event_id])?;
        Ok(row.map(|row| row.get(0)))
    }

    fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<(DeliveryRecord, EventRecord)>> {
        let rows = self.conn().query(
            "SELECT d.id, d.event_id, e.type, d.url, d.status, d.attempts, d.next_attempt_at, d.window_start,
                    d.last_error, d.created_at, d.updated_at, e.seq, e.id, e.type, e.at, e.user_id, e.data
             FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1
             ORDER BY d.next_attempt_at, d.id LIMIT $2",
            &[&now_ms, &i64::from(limit)],
        )?;
        Ok(rows.iter().map(|row| (delivery_row(row), event_at(row, 11))).collect())
    }

    fn deliveries(&self, status: Option<&str>, limit: u32, before: Option<i64>) -> Result<Vec<DeliveryRecord>> {
        let rows = self.conn().query(
            "SELECT d.id, d.event_id, e.type, d.url, d.status, d.attempts, d.next_attempt_at, d.window_start,
                    d.last_error, d.created_at, d.updated_at
             FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
             WHERE ($1::text IS NULL OR d.status = $1) AND d.id < $2 ORDER BY d.id DESC LIMIT $3",
            &[&status, &before.unwrap_or(i64::MAX), &i64::from(limit)],
        )?;
        Ok(rows.iter().map(delivery_row).collect())
    }

    fn find_delivery(&self, delivery_id: i64) -> Result<Option<DeliveryRecord>> {
        let row = self.conn().query_opt(
            "SELECT d.id, d.event_id, e.type, d.url, d.status, d.attempts, d.next_attempt_at, d.window_start,
                    d.last_error, d.created_at, d.updated_at
             FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = $1",
            &[&delivery_id],
        )?;
        Ok(row.as_ref().map(delivery_row))
    }

    fn attempt_errors(&self, delivery_id: i64) -> Result<Vec<AttemptError>> {
        let rows = self.conn().query(
            "SELECT attempt, at, error FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
            &[&delivery_id],
        )?;
        Ok(rows
            .iter()
            .map(|row| AttemptError {
                attempt: u32::try_from(row.get::<_, i64>(0)).unwrap_or(u32::MAX),
                at_ms: row.get(1),
                error: row.get(2),
            })
            .collect())
    }
}

impl EventWrite for PgDb<'_> {
    fn record_event(&self, kind: &str, user_id: Option<&str>, data: &str, now_ms: i64) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        self.conn().execute(
            "INSERT INTO events (id, type, at, user_id, data) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &kind, &now_ms, &user_id, &data],
        )?;
        self.note_event(kind);
        Ok(id)
    }

    fn queue_delivery(&self, event_id: &str, url: &str, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO webhook_deliveries
                 (event_id, url, status, attempts, next_attempt_at, window_start, created_at, updated_at)
             VALUES ($1, $2, 'pending', 0, $3, $3, $3, $3)",
            &[&event_id, &url, &now_ms],
        )?;
        Ok(())
    }

    fn mark_alert(&self, user_pk: i64, period: &str, metric: &str, alert: &str) -> Result<bool> {
        let inserted = self.conn().execute(
            "INSERT INTO usage_alerts (user_pk, period, metric, alert) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&user_pk, &period, &metric, &alert],
        )?;
        Ok(inserted == 1)
    }

    fn claim_deliveries(
        &self,
        url: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<(DeliveryRecord, EventRecord)>> {
        let rows = self.conn().query(
            "WITH due AS (
                 SELECT id FROM webhook_deliveries WHERE url = $4 AND status = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
             UPDATE webhook_deliveries d SET next_attempt_at = $2
             FROM due, events e WHERE d.id = due.id AND e.id = d.event_id
             RETURNING d.id, d.event_id, e.type, d.url, d.status, d.attempts, d.next_attempt_at, d.window_start,
                       d.last_error, d.created_at, d.updated_at, e.seq, e.id, e.type, e.at, e.user_id, e.data",
            &[&now_ms, &lease_until_ms, &i64::from(limit), &url],
        )?;
        let mut claimed: Vec<(DeliveryRecord, EventRecord)> =
            rows.iter().map(|row| (delivery_row(row), event_at(row, 11))).collect();
        claimed.sort_by_key(|(delivery, _)| (delivery.next_attempt_at_ms, delivery.id));
        Ok(claimed)
    }

    fn mark_account_alert(&self, account_pk: i64, period: &str, metric: &str, alert: &str) -> Result<bool> {
        super::accounts::mark_alert(self, account_pk, period, metric, alert)
    }

    fn finish_attempt(&self, delivery_id: i64, outcome: &AttemptOutcome, now_ms: i64) -> Result<()> {
        let (status, next_attempt_at, error, attempted) = outcome.stored();
        // One statement: the update and, for a failed attempt, its line in the history.
        self.conn().execute(
            "WITH finished AS (
                 UPDATE webhook_deliveries SET status = $2, attempts = attempts + $6,
                     next_attempt_at = coalesce($3, next_attempt_at), last_error = $4, updated_at = $5
                 WHERE id = $1 AND status = 'pending' RETURNING id, attempts)
             INSERT INTO webhook_attempts (delivery_id, attempt, at, error)
             SELECT id, attempts, $5, $4 FROM finished WHERE $4::text IS NOT NULL AND $6 = 1",
            &[&delivery_id, &status, &next_attempt_at, &error, &now_ms, &i64::from(attempted)],
        )?;
        Ok(())
    }

    fn expire_deliveries(&self, now_ms: i64, window_started_by_ms: i64, error: &str, limit: u32) -> Result<u64> {
        self.conn().execute(
            "UPDATE webhook_deliveries
             SET status = 'failed', last_error = $3::text || coalesce('; last error: ' || last_error, ''), updated_at = $1
             WHERE id IN (SELECT id FROM webhook_deliveries
                          WHERE status = 'pending' AND next_attempt_at <= $1 AND window_start <= $2
                          LIMIT $4 FOR UPDATE SKIP LOCKED)",
            &[&now_ms, &window_started_by_ms, &error, &i64::from(limit)],
        )
    }

    fn requeue_delivery(&self, delivery_id: i64, now_ms: i64) -> Result<Requeue> {
        let requeued = self.conn().execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2, window_start = $2, updated_at = $2
             WHERE id = $1 AND status = 'failed'",
            &[&delivery_id, &now_ms],
        )?;
        if requeued == 1 {
            return Ok(Requeue::Requeued);
        }
        let exists = self.conn().query_opt("SELECT 1 FROM webhook_deliveries WHERE id = $1", &[&delivery_id])?;
        Ok(if exists.is_some() { Requeue::NotFailed } else { Requeue::NotFound })
    }

    fn prune_events(&self, before_ms: i64, limit: u32) -> Result<u64> {
        // Deliveries go with their events (ON DELETE CASCADE); an event still waiting to be
        // delivered stays until its delivery succeeds or gives up.
        self.conn().execute(
            "DELETE FROM events WHERE seq IN (
                 SELECT seq FROM events WHERE at < $1 AND NOT EXISTS (
                     SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id AND d.status = 'pending')
                 LIMIT $2)",
            &[&before_ms, &i64::from(limit)],
        )
    }

    fn prune_alerts(&self, oldest_kept: &str, limit: u32) -> Result<u64> {
        self.conn().execute(
            "DELETE FROM usage_alerts WHERE ctid IN (SELECT ctid FROM usage_alerts WHERE period < $1 LIMIT $2)",
            &[&oldest_kept, &i64::from(limit)],
        )
    }

    fn redact_event_user(&self, user_id: &str, replacement: &str, limit: u32) -> Result<u64> {
        self.conn().execute(
            "UPDATE events SET user_id = $2 WHERE seq IN (SELECT seq FROM events WHERE user_id = $1 LIMIT $3)",
            &[&user_id, &replacement, &i64::from(limit)],
        )
    }
}
