//! Events and the webhook outbox as operators see them: paging the event log, listing
//! deliveries, putting a failed delivery back in the queue.

use super::AppError;
use crate::domain::ports::{AttemptError, DeliveryRecord, EventQuery, EventRecord, Requeue, Store};

/// A page of events, oldest first; `after` names the event the page starts after.
pub fn events(store: &Store, mut query: EventQuery, after: Option<&str>) -> Result<Vec<EventRecord>, AppError> {
    let events = store.read(|reader| {
        query.after_seq = match after {
            Some(event_id) => match reader.event_seq(event_id)? {
                Some(seq) => Some(seq),
                None => return Ok(None),
            },
            None => None,
        };
        reader.events(&query).map(Some)
    })?;
    events.ok_or(AppError::EventNotFound)
}

/// Deliveries newest first, of one status or all; only ids below `before` when given.
pub fn deliveries(
    store: &Store,
    status: Option<&str>,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<DeliveryRecord>, AppError> {
    Ok(store.read(|reader| reader.deliveries(status, limit, before))?)
}

/// One delivery with its failed attempts, oldest first.
pub fn delivery(store: &Store, id: i64) -> Result<(DeliveryRecord, Vec<AttemptError>), AppError> {
    let found = store.read(|reader| match reader.find_delivery(id)? {
        Some(delivery) => Ok(Some((delivery, reader.attempt_errors(id)?))),
        None => Ok(None),
    })?;
    found.ok_or(AppError::DeliveryNotFound(id))
}

/// Puts a failed delivery back in the queue with a fresh retry window.
pub fn retry_delivery(store: &Store, id: i64, now_ms: i64) -> Result<(), AppError> {
    match store.write(move |tx| tx.requeue_delivery(id, now_ms))? {
        Requeue::Requeued => Ok(()),
        Requeue::NotFound => Err(AppError::DeliveryNotFound(id)),
        Requeue::NotFailed => Err(AppError::DeliveryNotFailed(id)),
    }
}
