//! SQLite SQL for reservations: the `ReservationRead` and `ReservationWrite` ports.

use super::{SqliteReader, SqliteTx, to_u64};
use crate::domain::period::Period;
use crate::domain::ports::{
    CounterOwner, ReservationRead, ReservationRecord, ReservationState, ReservationWrite, StoreError, as_stored_integer,
};
use rusqlite::{Connection, OptionalExtension, params};

/// The `WHERE` of a hold's owner: the partial index of each kind matches it.
fn owner_filter(owner: CounterOwner) -> (&'static str, i64) {
    match owner {
        CounterOwner::User(pk) => ("user_pk = ?1 AND account_pk IS NULL", pk),
        CounterOwner::Account(pk) => ("account_pk = ?1 AND account_pk IS NOT NULL", pk),
    }
}

fn reserved(
    connection: &Connection,
    owner: CounterOwner,
    period: Period,
    metric: &str,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let (filter, pk) = owner_filter(owner);
    let mut statement = connection.prepare_cached(&format!(
        "SELECT coalesce(sum(amount), 0) FROM reservations
         WHERE {filter} AND period = ?2 AND metric = ?3 AND state = 'open' AND expires_at > ?4"
    ))?;
    let sum: i64 = statement.query_row(params![pk, period.to_string(), metric, now_ms], |row| row.get(0))?;
    Ok(to_u64(sum))
}

fn member_reserved(
    connection: &Connection,
    (account_pk, user_pk): (i64, i64),
    period: Period,
    metric: &str,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT coalesce(sum(amount), 0) FROM reservations
         WHERE account_pk = ?1 AND account_pk IS NOT NULL AND period = ?2 AND metric = ?3 AND state = 'open'
           AND expires_at > ?4 AND user_pk = ?5",
    )?;
    let sum: i64 =
        statement.query_row(params![account_pk, period.to_string(), metric, now_ms, user_pk], |row| row.get(0))?;
    Ok(to_u64(sum))
}

fn reserved_by_metric(
    connection: &Connection,
    owner: CounterOwner,
    period: Period,
    now_ms: i64,
) -> Result<Vec<(String, u64)>, StoreError> {
    let (filter, pk) = owner_filter(owner);
    let mut statement = connection.prepare_cached(&format!(
        "SELECT metric, sum(amount) FROM reservations
         WHERE {filter} AND period = ?2 AND state = 'open' AND expires_at > ?3 GROUP BY metric"
    ))?;
    let rows = statement.query_map(params![pk, period.to_string(), now_ms], |row| {
        Ok((row.get::<_, String>(0)?, to_u64(row.get(1)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn find_reservation(connection: &Connection, reservation_id: &str) -> Result<Option<ReservationRecord>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT r.reservation_id, r.user_pk, u.user_id, r.account_pk, r.period, r.metric, r.amount, r.created_at,
                r.expires_at, r.state, r.committed, r.closed_at
         FROM reservations r JOIN users u ON u.id = r.user_pk WHERE r.reservation_id = ?1",
    )?;
    let row = statement
        .query_row([reservation_id], |row| {
            Ok((
                (
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                ),
                (row.get::<_, String>(4)?, row.get::<_, String>(5)?, row.get::<_, i64>(6)?),
                (row.get::<_, i64>(7)?, row.get::<_, i64>(8)?, row.get::<_, String>(9)?),
                (row.get::<_, Option<i64>>(10)?, row.get::<_, Option<i64>>(11)?),
            ))
        })
        .optional()?;
    let Some(((reservation_id, user_pk, user_id, account_pk), (period, metric, amount), times, closing)) = row else {
        return Ok(None);
    };
    let (created_at_ms, expires_at_ms, state) = times;
    let (committed, closed_at_ms) = closing;
    Ok(Some(ReservationRecord {
        reservation_id,
        user_pk,
        user_id,
        owner: account_pk.map_or(CounterOwner::User(user_pk), CounterOwner::Account),
        period: period.parse().map_err(|_| StoreError::backend(format!("a reservation has period {period:?}")))?,
        metric,
        amount: to_u64(amount),
        created_at_ms,
        expires_at_ms,
        state: ReservationState::parse(&state)
            .ok_or_else(|| StoreError::backend(format!("a reservation has state {state:?}")))?,
        committed: committed.map(to_u64),
        closed_at_ms,
    }))
}

macro_rules! impl_reservation_read {
    ($type:ty) => {
        impl ReservationRead for $type {
            fn reserved(
                &self,
                owner: CounterOwner,
                period: Period,
                metric: &str,
                now_ms: i64,
            ) -> Result<u64, StoreError> {
                reserved(self.0, owner, period, metric, now_ms)
            }
            fn reserved_by_metric(
                &self,
                owner: CounterOwner,
                period: Period,
                now_ms: i64,
            ) -> Result<Vec<(String, u64)>, StoreError> {
                reserved_by_metric(self.0, owner, period, now_ms)
            }
            fn member_reserved(
                &self,
                account_pk: i64,
                user_pk: i64,
                period: Period,
                metric: &str,
                now_ms: i64,
            ) -> Result<u64, StoreError> {
                member_reserved(self.0, (account_pk, user_pk), period, metric, now_ms)
            }
            fn find_reservation(&self, reservation_id: &str) -> Result<Option<ReservationRecord>, StoreError> {
                find_reservation(self.0, reservation_id)
            }
            fn has_expired_holds(&self, now_ms: i64) -> Result<bool, StoreError> {
                let mut statement = self.0.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM reservations WHERE state = 'open' AND expires_at <= ?1)",
                )?;
                Ok(statement.query_row([now_ms], |row| row.get(0))?)
            }
        }
    };
}

impl_reservation_read!(SqliteReader<'_>);
impl_reservation_read!(SqliteTx<'_>);

impl ReservationWrite for SqliteTx<'_> {
    fn insert_reservation(&self, reservation: &ReservationRecord) -> Result<(), StoreError> {
        let account_pk = match reservation.owner {
            CounterOwner::User(_) => None,
            CounterOwner::Account(pk) => Some(pk),
        };
        let mut statement = self.0.prepare_cached(
            "INSERT INTO reservations (reservation_id, user_pk, account_pk, period, metric, amount, created_at,
                                       expires_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open')",
        )?;
        statement.execute(params![
            reservation.reservation_id,
            reservation.user_pk,
            account_pk,
            reservation.period.to_string(),
            reservation.metric,
            as_stored_integer(reservation.amount),
            reservation.created_at_ms,
            reservation.expires_at_ms,
        ])?;
        Ok(())
    }

    fn close_reservation(
        &self,
        reservation_id: &str,
        state: ReservationState,
        committed: Option<u64>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut statement = self.0.prepare_cached(
            "UPDATE reservations SET state = ?2, committed = ?3, closed_at = ?4
             WHERE reservation_id = ?1 AND state = 'open'",
        )?;
        let committed = committed.map(as_stored_integer);
        Ok(statement.execute(params![reservation_id, state.as_str(), committed, now_ms])? == 1)
    }

    fn expire_reservations(&self, now_ms: i64, limit: u32) -> Result<u64, StoreError> {
        let mut statement = self.0.prepare_cached(
            "UPDATE reservations SET state = 'expired', closed_at = expires_at
             WHERE id IN (SELECT id FROM reservations WHERE state = 'open' AND expires_at <= ?1
                          ORDER BY expires_at LIMIT ?2)",
        )?;
        Ok(statement.execute(params![now_ms, limit])? as u64)
    }

    fn prune_reservations(&self, oldest_kept: Period, limit: u32) -> Result<u64, StoreError> {
        let mut statement = self.0.prepare_cached(
            "DELETE FROM reservations WHERE id IN (SELECT id FROM reservations
             WHERE period < ?1 AND state <> 'open' LIMIT ?2)",
        )?;
        Ok(statement.execute(params![oldest_kept.to_string(), limit])? as u64)
    }
}
