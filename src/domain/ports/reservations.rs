//! Reservations as storage keeps them: holds on a counter, and the reads and writes the
//! domain needs of them. Every backend fills them the same way.

use super::{CounterOwner, StoreError};
use crate::domain::period::Period;

type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationState {
    Open,
    Committed,
    Released,
    Expired,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Open => "open",
            ReservationState::Committed => "committed",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
        }
    }

    /// The state a stored name means; `None` for a name no migration allows.
    pub fn parse(text: &str) -> Option<ReservationState> {
        [ReservationState::Open, ReservationState::Committed, ReservationState::Released, ReservationState::Expired]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// A stored reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationRecord {
    pub reservation_id: String,
    pub user_pk: i64,
    pub user_id: String,
    pub owner: CounterOwner,
    pub period: Period,
    pub metric: String,
    pub amount: u64,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub state: ReservationState,
    /// The amount its commit recorded.
    pub committed: Option<u64>,
    pub closed_at_ms: Option<i64>,
}

pub trait ReservationRead {
    /// The sum of the open holds on `owner`'s counter of `metric` in `period` that have not
    /// expired at `now_ms` (expires_at after it).
    fn reserved(&self, owner: CounterOwner, period: Period, metric: &str, now_ms: i64) -> Result<u64>;
    /// As `reserved`, for every metric with a hold.
    fn reserved_by_metric(&self, owner: CounterOwner, period: Period, now_ms: i64) -> Result<Vec<(String, u64)>>;
    /// As `reserved` on the account's pool, of the holds `user_pk` made (a member's own cap
    /// counts them).
    fn member_reserved(&self, account_pk: i64, user_pk: i64, period: Period, metric: &str, now_ms: i64) -> Result<u64>;
    fn find_reservation(&self, reservation_id: &str) -> Result<Option<ReservationRecord>>;
    /// Whether an open reservation's expires_at is at or before `now_ms` (so the expiry job
    /// has something to mark; a read, so an idle server's job writes nothing).
    fn has_expired_holds(&self, now_ms: i64) -> Result<bool>;
}

pub trait ReservationWrite: ReservationRead {
    /// Stores a new open reservation. The caller has serialized on its user (and account).
    fn insert_reservation(&self, reservation: &ReservationRecord) -> Result<()>;
    /// Closes an open reservation as `state` (committed with the amount recorded); false,
    /// and nothing changed, when it was not open.
    fn close_reservation(
        &self,
        reservation_id: &str,
        state: ReservationState,
        committed: Option<u64>,
        now_ms: i64,
    ) -> Result<bool>;
    /// Marks expired up to `limit` open reservations whose expires_at is at or before
    /// `now_ms`; returns how many. (They stopped counting at expires_at already.)
    fn expire_reservations(&self, now_ms: i64, limit: u32) -> Result<u64>;
    /// Deletes up to `limit` closed reservations of periods before `oldest_kept`; returns
    /// how many.
    fn prune_reservations(&self, oldest_kept: Period, limit: u32) -> Result<u64>;
}
