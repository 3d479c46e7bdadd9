//! Idempotent writes: a write sent again with the same key gets the first answer back and
//! changes nothing. The lookup, the write and the saved answer share one writer job that is
//! serialized on the key, so two concurrent requests with one key cannot both write, on one
//! node or several. What an answer looks like is the caller's (`render`): its status, the
//! headers that belong to it and its body, all three stored and all three replayed.

use super::AppError;
use crate::domain::ports::{Pending, Store, StoreError, StoredAnswer, WriteTx};
use sha2::{Digest, Sha256};
use std::fmt::{Display, Write};
use std::sync::Arc;

/// The `serialize_on` scope of an idempotency key.
const IDEMPOTENCY_SCOPE: &str = "idempotency";

/// A key and the fingerprint of the request it came with.
pub struct Once {
    key: String,
    fingerprint: Vec<u8>,
}

impl Once {
    /// `parts` describe the request (route and fields) so that the same key with a different
    /// request can be told apart.
    pub fn new(key: &str, parts: &[&dyn Display]) -> Result<Once, AppError> {
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|byte| (0x20..=0x7e).contains(&byte)) {
            return Err(AppError::Invalid("Idempotency-Key must be 1 to 255 printable ASCII characters".into()));
        }
        let mut hasher = Sha256::new();
        let mut text = String::new();
        for part in parts {
            text.clear();
            write!(text, "{part}").expect("formatting into a String cannot fail");
            hasher.update(text.as_bytes());
            hasher.update([0]);
        }
        Ok(Once { key: key.to_owned(), fingerprint: hasher.finalize().to_vec() })
    }
}

/// An answer as the caller renders it: status, body, and the headers that belong to it and
/// must come back on a replay (`Retry-After`, `RateLimit`, `RateLimit-Policy`), all kept with
/// the key so a replay is the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Rendered {
    fn stored(self, fingerprint: Vec<u8>) -> StoredAnswer {
        StoredAnswer { fingerprint, status: self.status, headers: self.headers, body: self.body }
    }
}

/// How a use case's result becomes its answer (captures what it needs, such as the time).
pub type Render<T> = Arc<dyn Fn(&T) -> Rendered + Send + Sync>;

/// How a write under a key went.
pub enum Answered<T> {
    /// Done now; `value` is what the job returned.
    Fresh { answer: StoredAnswer, value: T },
    /// Done before: the first answer, unchanged.
    Replayed(StoredAnswer),
}

/// What a write under a key found, before `finish` makes it an answer.
pub enum Lookup<T> {
    /// Done now; the stored answer when a key asked for one.
    Fresh(T, Option<StoredAnswer>),
    Replayed(StoredAnswer),
    Reused,
}

/// An idempotent write queued on the writer: `wait` for its answer on a thread, or `answer`
/// it from an async task (which then holds no thread while the group commits).
pub struct IdempotentWrite<T> {
    pending: Pending<Lookup<T>>,
    render: Render<T>,
}

impl<T: Send + 'static> IdempotentWrite<T> {
    /// The answer, waited for on this thread (the use-case tests; HTTP awaits `answer`).
    #[cfg(test)]
    pub fn wait(self) -> Result<Answered<T>, AppError> {
        finish(self.pending.wait()?, &*self.render)
    }

    pub async fn answer(self) -> Result<Answered<T>, AppError> {
        let render = self.render;
        finish(self.pending.await?, &*render)
    }
}

/// Queues `job` to run at most once per key (answers kept `keep_hours`), answering with
/// `render` of its result: a status, a body and headers. `job` records usage (a track, a
/// feature use, a reservation): it is queued as `Store::submit_usage`, so it must read and
/// change counters only through the usage ports.
pub fn submit<T, F>(
    store: &Store,
    keep_hours: u32,
    once: Option<Once>,
    user_id: String,
    now_ms: i64,
    mut job: F,
    render: Render<T>,
) -> IdempotentWrite<T>
where
    T: Send + 'static,
    F: FnMut(&dyn WriteTx) -> Result<T, StoreError> + Send + 'static,
{
    let job_render = Arc::clone(&render);
    let pending = store.submit_usage(move |tx| {
        let Some(once) = &once else {
            // No key: nothing to store, so the answer is rendered after the commit, off the
            // writer thread.
            return Ok(Lookup::Fresh(job(tx)?, None));
        };
        run_once(tx, keep_hours, once, &user_id, now_ms, &mut job, &*job_render)
    });
    IdempotentWrite { pending, render }
}

/// The job's part under a key, inside a write job the caller already holds: serialize on
/// the key, replay the stored answer, or run `job` and store its answer. For a job that runs
/// several keyed writes in order (a batch).
pub fn run_once<T>(
    tx: &dyn WriteTx,
    keep_hours: u32,
    once: &Once,
    user_id: &str,
    now_ms: i64,
    job: &mut dyn FnMut(&dyn WriteTx) -> Result<T, StoreError>,
    render: &dyn Fn(&T) -> Rendered,
) -> Result<Lookup<T>, StoreError> {
    let not_before_ms = now_ms - i64::from(keep_hours) * 3_600_000;
    tx.serialize_on(IDEMPOTENCY_SCOPE, &once.key)?;
    if let Some(prior) = tx.find_answer(&once.key, not_before_ms)? {
        return Ok(if prior.fingerprint == once.fingerprint { Lookup::Replayed(prior) } else { Lookup::Reused });
    }
    let value = job(tx)?;
    let answer = render(&value).stored(once.fingerprint.clone());
    tx.save_answer(&once.key, user_id, &answer, now_ms)?;
    Ok(Lookup::Fresh(value, Some(answer)))
}

/// The answer of a job's result: the stored one, or `render` of a fresh result run without a
/// key.
pub fn finish<T>(lookup: Lookup<T>, render: &dyn Fn(&T) -> Rendered) -> Result<Answered<T>, AppError> {
    match lookup {
        Lookup::Fresh(value, answer) => {
            let answer = answer.unwrap_or_else(|| render(&value).stored(Vec::new()));
            Ok(Answered::Fresh { answer, value })
        }
        Lookup::Replayed(answer) => Ok(Answered::Replayed(answer)),
        Lookup::Reused => Err(AppError::IdempotencyKeyReused),
    }
}
