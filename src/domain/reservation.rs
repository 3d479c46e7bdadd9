//! Reservations: hold an amount against a metric's limit now, record what was really used
//! later. A hold is on the counter the limit is enforced on (the user's own, or a member's
//! account pool) and counts against that limit for every check, track and reservation until
//! it is committed, released or expires (an expired hold stops counting at `expires_at`, with
//! no job needed). Every step runs in one write transaction serialized on the user (and the
//! account for a member), as a track does.

use super::Rules;
use super::ports::{ReservationRecord, ReservationState, StoreError, UsageWrite};
use super::usage::{self, Hold, Standing, TrackOutcome, USER_SCOPE, UsageQuery, Verdict};
use super::user_id::UserId;

/// A reservation asked for: `reservation_id` is chosen by the caller before the job runs, so
/// a job run twice stores one id.
pub struct Reserve {
    pub query: UsageQuery,
    pub reservation_id: String,
    pub expires_at_ms: i64,
}

pub enum ReserveOutcome {
    /// Held; `verdict.standing.reserved` includes it.
    Held { reservation: ReservationRecord, verdict: Verdict },
    /// Not held: refused by a hard limit (counted as a refusal), past the counter's largest
    /// value, or tracking is off. Nothing was stored but the refusal counter.
    NotHeld(TrackOutcome),
}

/// Why a reservation cannot be committed or released.
#[derive(Debug)]
pub enum NotOpen {
    NotFound,
    /// Committed or released already.
    Closed(ReservationRecord),
    /// Its `expires_at` has passed (whether or not it is marked expired yet).
    Expired(ReservationRecord),
}

/// What a commit asks: the amount used (None: the held amount), and whether the part above
/// the hold is checked against the limit.
#[derive(Clone, Copy, Debug)]
pub struct Commit {
    pub amount: Option<u64>,
    pub enforce: bool,
}

pub enum CloseOutcome {
    /// Committed (the amount recorded) or released; `verdict` shows the counter after it.
    Closed {
        reservation: ReservationRecord,
        verdict: Verdict,
    },
    /// The commit's amount above the hold was refused (or would overflow, or tracking is
    /// off): nothing changed, the reservation stays open.
    NotCommitted {
        reservation: ReservationRecord,
        outcome: TrackOutcome,
    },
    Refused(NotOpen),
}

/// Holds `request.query.amount` if the limit admits it on top of what is used and held.
pub fn reserve(
    store: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    request: &Reserve,
    now_ms: i64,
) -> Result<ReserveOutcome, StoreError> {
    let query = &request.query;
    if !rules.tracking_enabled {
        return Ok(ReserveOutcome::NotHeld(TrackOutcome::NotTracked {
            verdict: usage::check(store, rules, query, now_ms)?,
        }));
    }
    store.serialize_on(USER_SCOPE, &query.user_id)?;
    let user = store.find_user(&query.user_id)?;
    let at = usage::write_standpoint(store, rules, user.as_ref(), query, now_ms)?;
    let verdict = usage::verdict(rules, query, &at);
    if !verdict.allowed {
        return Ok(ReserveOutcome::NotHeld(usage::not_recorded(store, rules, query, true, &at, now_ms)?));
    }
    if at.taken().checked_add(query.amount).is_none_or(|total| total > usage::COUNTER_MAX) {
        return Ok(ReserveOutcome::NotHeld(TrackOutcome::Overflow { verdict }));
    }
    let user_pk = match &user {
        Some(user) => user.pk,
        None => store.create_user(&query.user_id, &at.plan.name, now_ms)?.pk,
    };
    let reservation = ReservationRecord {
        reservation_id: request.reservation_id.clone(),
        user_pk,
        user_id: query.user_id.to_string(),
        owner: at.owner(user_pk),
        period: query.period,
        metric: query.metric.clone(),
        amount: query.amount,
        created_at_ms: now_ms,
        expires_at_ms: request.expires_at_ms,
        state: ReservationState::Open,
        committed: None,
        closed_at_ms: None,
    };
    store.insert_reservation(&reservation)?;
    let mut verdict = verdict;
    verdict.standing = Standing::held(at.limit, at.used, at.reserved + query.amount);
    Ok(ReserveOutcome::Held { reservation, verdict })
}

/// The open reservation `reservation_id`, read once serialized on its user; an expired one
/// is marked so (as the expiry job would) and refused.
fn open_reservation(
    store: &(impl UsageWrite + ?Sized),
    reservation_id: &str,
    now_ms: i64,
) -> Result<Result<ReservationRecord, NotOpen>, StoreError> {
    let Some(found) = store.find_reservation(reservation_id)? else {
        return Ok(Err(NotOpen::NotFound));
    };
    store.serialize_on(USER_SCOPE, &found.user_id)?;
    // Read again under the user's serialization: another node may have closed it meanwhile.
    let Some(mut reservation) = store.find_reservation(reservation_id)? else {
        return Ok(Err(NotOpen::NotFound));
    };
    match reservation.state {
        ReservationState::Open => {}
        // Marked by the expiry job or by an earlier attempt: told as an expiry every time.
        ReservationState::Expired => return Ok(Err(NotOpen::Expired(reservation))),
        ReservationState::Committed | ReservationState::Released => return Ok(Err(NotOpen::Closed(reservation))),
    }
    if reservation.expires_at_ms <= now_ms {
        let expires_at_ms = reservation.expires_at_ms;
        store.close_reservation(reservation_id, ReservationState::Expired, None, expires_at_ms)?;
        reservation.state = ReservationState::Expired;
        reservation.closed_at_ms = Some(expires_at_ms);
        return Ok(Err(NotOpen::Expired(reservation)));
    }
    Ok(Ok(reservation))
}

/// The query a reservation's commit records: in the reservation's period (the hold's), so a
/// commit after the month turns is not refused by the new month's counter.
fn query_of(reservation: &ReservationRecord, amount: u64) -> Result<UsageQuery, StoreError> {
    let user_id = UserId::parse(reservation.user_id.as_str()).map_err(StoreError::backend)?;
    Ok(UsageQuery { user_id, metric: reservation.metric.clone(), amount, period: reservation.period })
}

/// Records `amount` (the held amount when None) and frees the hold. Up to the held amount it
/// is recorded whatever the limit says now; the part above is checked like a track (other
/// holds count) unless `enforce` is false.
pub fn commit(
    store: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    reservation_id: &str,
    request: Commit,
    now_ms: i64,
) -> Result<CloseOutcome, StoreError> {
    let Commit { amount, enforce } = request;
    let mut reservation = match open_reservation(store, reservation_id, now_ms)? {
        Ok(reservation) => reservation,
        Err(closed) => return Ok(CloseOutcome::Refused(closed)),
    };
    let amount = amount.unwrap_or(reservation.amount);
    let verdict = if amount == 0 {
        None
    } else {
        let hold = Hold { owner: reservation.owner, amount: reservation.amount };
        match usage::track_from(store, rules, &query_of(&reservation, amount)?, enforce, Some(hold), now_ms)? {
            TrackOutcome::Recorded { verdict, .. } => Some(verdict),
            outcome => return Ok(CloseOutcome::NotCommitted { reservation, outcome }),
        }
    };
    store.close_reservation(reservation_id, ReservationState::Committed, Some(amount), now_ms)?;
    reservation.state = ReservationState::Committed;
    reservation.committed = Some(amount);
    reservation.closed_at_ms = Some(now_ms);
    let verdict = match verdict {
        Some(verdict) => verdict,
        None => usage::check(store, rules, &query_of(&reservation, 0)?, now_ms)?,
    };
    Ok(CloseOutcome::Closed { reservation, verdict })
}

/// Frees the hold without recording anything.
pub fn release(
    store: &(impl UsageWrite + ?Sized),
    rules: &Rules,
    reservation_id: &str,
    now_ms: i64,
) -> Result<CloseOutcome, StoreError> {
    let mut reservation = match open_reservation(store, reservation_id, now_ms)? {
        Ok(reservation) => reservation,
        Err(closed) => return Ok(CloseOutcome::Refused(closed)),
    };
    store.close_reservation(reservation_id, ReservationState::Released, None, now_ms)?;
    reservation.state = ReservationState::Released;
    reservation.closed_at_ms = Some(now_ms);
    let verdict = usage::check(store, rules, &query_of(&reservation, 0)?, now_ms)?;
    Ok(CloseOutcome::Closed { reservation, verdict })
}
