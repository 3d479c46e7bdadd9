//! `AppError`: why a use case refused or failed, as values the HTTP layer maps to answers
//! (a status, a stable code). Refusals change nothing; `Store` is storage's own failure.

use crate::domain::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input a caller can correct (the message says how).
    #[error("{0}")]
    Invalid(String),
    #[error("metric {metric:?} is not configured; known: {known}")]
    UnknownMetric { metric: String, known: String },
    #[error("plan {plan:?} is not configured; known: {known}")]
    UnknownPlan { plan: String, known: String },
    #[error("no user {0:?} has been seen")]
    UserNotFound(String),
    #[error("no account {0:?} exists; create it with PUT /v1/accounts/{0}")]
    AccountNotFound(String),
    #[error("account {account_id:?} is full: its plan allows {max_members} members")]
    AccountFull { account_id: String, max_members: u32 },
    #[error("this Idempotency-Key was used with a different request; use a new key for a new request")]
    IdempotencyKeyReused,
    #[error("a cleanup is already running (on this node or another); retry once it has finished")]
    CleanupInProgress,
    #[error("after names no event (it may have been pruned); page again from the start or from a later event")]
    EventNotFound,
    #[error("no grant {0}")]
    GrantNotFound(i64),
    #[error("{0}")]
    GrantHasNoEffect(String),
    #[error("{0} has no override")]
    OverrideNotFound(String),
    #[error("no delivery {0}")]
    DeliveryNotFound(i64),
    #[error("delivery {0} has not failed; only failed deliveries are retried by hand")]
    DeliveryNotFailed(i64),
    #[error("no reservation {0:?}")]
    ReservationNotFound(String),
    #[error(
        "period {period} has not ended: meter events are sent once a period has ended ({current} is still running)"
    )]
    PeriodNotEnded { period: String, current: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
