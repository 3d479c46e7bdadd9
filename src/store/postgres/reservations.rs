//! PostgreSQL SQL for reservations: the `ReservationRead` and `ReservationWrite` ports.

use super::PgDb;
use crate::domain::period::Period;
use crate::domain::ports::{
    CounterOwner, ReservationRead, ReservationRecord, ReservationState, ReservationWrite, StoreError,
    as_stored_integer, from_stored_integer,
};

type Result<T> = std::result::Result<T, StoreError>;

impl ReservationRead for PgDb<'_> {
    fn reserved(&self, owner: CounterOwner, period: Period, metric: &str, now_ms: i64) -> Result<u64> {
        // One statement per owner kind, each matching its partial index.
        let (sql, pk) = match owner {
            CounterOwner::User(pk) => (
                "SELECT coalesce(sum(amount), 0)::bigint FROM reservations
                 WHERE user_pk = $1 AND account_pk IS NULL AND period = $2 AND metric = $3
                   AND state = 'open' AND expires_at > $4",
                pk,
            ),
            CounterOwner::Account(pk) => (
                "SELECT coalesce(sum(amount), 0)::bigint FROM reservations
                 WHERE account_pk = $1 AND account_pk IS NOT NULL AND period = $2 AND metric = $3
                   AND state = 'open' AND expires_at > $4",
                pk,
            ),
        };
        let row = self.conn().query_opt(sql, &[&pk, &period.to_string(), &metric, &now_ms])?;
        Ok(row.map_or(0, |row| from_stored_integer(row.get(0))))
    }

    fn reserved_by_metric(&self, owner: CounterOwner, period: Period, now_ms: i64) -> Result<Vec<(String, u64)>> {
        let (sql, pk) = match owner {
            CounterOwner::User(pk) => (
                "SELECT metric, sum(amount)::bigint FROM reservations
                 WHERE user_pk = $1 AND account_pk IS NULL AND period = $2 AND state = 'open' AND expires_at > $3
                 GROUP BY metric",
                pk,
            ),
            CounterOwner::Account(pk) => (
                "SELECT metric, sum(amount)::bigint FROM reservations
                 WHERE account_pk = $1 AND account_pk IS NOT NULL AND period = $2 AND state = 'open'
                   AND expires_at > $3
                 GROUP BY metric",
                pk,
            ),
        };
        let rows = self.conn().query(sql, &[&pk, &period.to_string(), &now_ms])?;
        Ok(rows.iter().map(|row| (row.get(0), from_stored_integer(row.get(1)))).collect())
    }

    fn member_reserved(&self, account_pk: i64, user_pk: i64, period: Period, metric: &str, now_ms: i64) -> Result<u64> {
        let row = self.conn().query_opt(
            "SELECT coalesce(sum(amount), 0)::bigint FROM reservations
             WHERE account_pk = $1 AND account_pk IS NOT NULL AND period = $2 AND metric = $3 AND state = 'open'
               AND expires_at > $4 AND user_pk = $5",
            &[&account_pk, &period.to_string(), &metric, &now_ms, &user_pk],
        )?;
        Ok(row.map_or(0, |row| from_stored_integer(row.get(0))))
    }

    fn find_reservation(&self, reservation_id: &str) -> Result<Option<ReservationRecord>> {
        let row = self.conn().query_opt(
            "SELECT r.reservation_id, r.user_pk, u.user_id, r.account_pk, r.period, r.metric, r.amount, r.created_at,
                    r.expires_at, r.state, r.committed, r.closed_at
             FROM reservations r JOIN users u ON u.id = r.user_pk WHERE r.reservation_id = $1",
            &[&reservation_id],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user_pk: i64 = row.get(1);
        let (period, state): (String, String) = (row.get(4), row.get(9));
        Ok(Some(ReservationRecord {
            reservation_id: row.get(0),
            user_pk,
            user_id: row.get(2),
            owner: row.get::<_, Option<i64>>(3).map_or(CounterOwner::User(user_pk), CounterOwner::Account),
            period: period.parse().map_err(|_| StoreError::backend(format!("a reservation has period {period:?}")))?,
            metric: row.get(5),
            amount: from_stored_integer(row.get(6)),
            created_at_ms: row.get(7),
            expires_at_ms: row.get(8),
            state: ReservationState::parse(&state)
                .ok_or_else(|| StoreError::backend(format!("a reservation has state {state:?}")))?,
            committed: row.get::<_, Option<i64>>(10).map(from_stored_integer),
            closed_at_ms: row.get(11),
        }))
    }

    fn has_expired_holds(&self, now_ms: i64) -> Result<bool> {
        let row = self.conn().query_opt(
            "SELECT EXISTS (SELECT 1 FROM reservations WHERE state = 'open' AND expires_at <= $1)",
            &[&now_ms],
        )?;
        Ok(row.is_some_and(|row| row.get(0)))
    }
}

impl ReservationWrite for PgDb<'_> {
    fn insert_reservation(&self, reservation: &ReservationRecord) -> Result<()> {
        let account_pk = match reservation.owner {
            CounterOwner::User(_) => None,
            CounterOwner::Account(pk) => Some(pk),
        };
        self.conn().execute(
            "INSERT INTO reservations (reservation_id, user_pk, account_pk, period, metric, amount, created_at,
                                       expires_at, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open')",
            &[
                &reservation.reservation_id,
                &reservation.user_pk,
                &account_pk,
                &reservation.period.to_string(),
                &reservation.metric,
                &as_stored_integer(reservation.amount),
                &reservation.created_at_ms,
                &reservation.expires_at_ms,
            ],
        )?;
        Ok(())
    }

    fn close_reservation(
        &self,
        reservation_id: &str,
        state: ReservationState,
        committed: Option<u64>,
        now_ms: i64,
    ) -> Result<bool> {
        let committed = committed.map(as_stored_integer);
        let changed = self.conn().execute(
            "UPDATE reservations SET state = $2, committed = $3, closed_at = $4
             WHERE reservation_id = $1 AND state = 'open'",
            &[&reservation_id, &state.as_str(), &committed, &now_ms],
        )?;
        Ok(changed == 1)
    }

    fn expire_reservations(&self, now_ms: i64, limit: u32) -> Result<u64> {
        // SKIP LOCKED: a node that holds one (committing it now) is not waited for.
        self.conn().execute(
            "UPDATE reservations SET state = 'expired', closed_at = expires_at
             WHERE id IN (SELECT id FROM reservations WHERE state = 'open' AND expires_at <= $1
                          ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&now_ms, &i64::from(limit)],
        )
    }

    fn prune_reservations(&self, oldest_kept: Period, limit: u32) -> Result<u64> {
        self.conn().execute(
            "DELETE FROM reservations WHERE id IN (SELECT id FROM reservations
             WHERE period < $1 AND state <> 'open' LIMIT $2)",
            &[&oldest_kept.to_string(), &i64::from(limit)],
        )
    }
}
