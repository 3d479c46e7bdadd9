//! Reservations: reserve, commit and release, each one idempotent writer job like a track,
//! and the job that marks expired holds (they stop counting at `expires_at` on their own; the
//! mark keeps the open-holds index small and the state true).

use super::AppError;
use super::idempotency::{self, IdempotentWrite, Once, Render};
use crate::domain::Rules;
use crate::domain::ports::{Store, WriteTx};
use crate::domain::reservation::{self, CloseOutcome, Commit, Reserve, ReserveOutcome};
use crate::domain::usage::UsageQuery;
use std::sync::Arc;

/// The longest hold a reservation may ask for, and the default.
pub const MAX_TTL_SECS: u32 = 86_400;
pub const DEFAULT_TTL_SECS: u32 = 300;

/// Expired reservations marked per writer job.
const EXPIRE_CHUNK: u32 = 1_000;

/// A new reservation id: `res_` and a uuid.
fn new_reservation_id() -> String {
    format!("res_{}", uuid::Uuid::new_v4().simple())
}

/// Holds `query.amount` for `ttl_secs`, at most once per `once` key.
pub fn reserve(
    store: &Store,
    rules: &Arc<Rules>,
    query: UsageQuery,
    ttl_secs: u32,
    once: Option<Once>,
    now_ms: i64,
    render: Render<ReserveOutcome>,
) -> IdempotentWrite<ReserveOutcome> {
    let once = once.filter(|_| rules.tracking_enabled);
    let request =
        Reserve { reservation_id: new_reservation_id(), expires_at_ms: now_ms + i64::from(ttl_secs) * 1000, query };
    let (keep_hours, user_id, rules) = (rules.idempotency_hours, request.query.user_id.to_string(), Arc::clone(rules));
    idempotency::submit(
        store,
        keep_hours,
        once,
        user_id,
        now_ms,
        move |tx| reservation::reserve(tx, &rules, &request, now_ms),
        render,
    )
}

/// The user a reservation belongs to (its idempotent answers are kept under that user, so an
/// erasure finds them), or `ReservationNotFound`.
fn owner_of(store: &Store, reservation_id: &str) -> Result<String, AppError> {
    // Reads no counter: live, so a commit never waits for a fold first.
    store
        .read_live(|reader| reader.find_reservation(reservation_id))?
        .map(|reservation| reservation.user_id)
        .ok_or_else(|| AppError::ReservationNotFound(reservation_id.to_owned()))
}

/// What is done to an open reservation: commit it, or release it.
#[derive(Clone, Copy, Debug)]
pub enum Close {
    Commit(Commit),
    Release,
}

/// Commits or releases the reservation, at most once per `once` key.
pub fn close(
    store: &Store,
    rules: &Arc<Rules>,
    reservation_id: String,
    close: Close,
    once: Option<Once>,
    now_ms: i64,
    render: Render<CloseOutcome>,
) -> Result<IdempotentWrite<CloseOutcome>, AppError> {
    let user_id = owner_of(store, &reservation_id)?;
    let (keep_hours, rules) = (rules.idempotency_hours, Arc::clone(rules));
    let job = move |tx: &dyn WriteTx| match close {
        Close::Commit(request) => reservation::commit(tx, &rules, &reservation_id, request, now_ms),
        Close::Release => reservation::release(tx, &rules, &reservation_id, now_ms),
    };
    Ok(idempotency::submit(store, keep_hours, once, user_id, now_ms, job, render))
}

/// Marks every reservation past its `expires_at` as expired, in chunks; returns how many.
pub fn expire_due(store: &Store, now_ms: i64) -> Result<u64, AppError> {
    // Reads no counter: live, so this check every 10 s never has the writer fold first.
    if !store.read_live(|reader| reader.has_expired_holds(now_ms))? {
        return Ok(0);
    }
    let mut total = 0;
    loop {
        let marked = store.write(move |tx| tx.expire_reservations(now_ms, EXPIRE_CHUNK))?;
        total += marked;
        if marked < u64::from(EXPIRE_CHUNK) {
            return Ok(total);
        }
    }
}
