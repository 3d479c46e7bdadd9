//! Logs on stderr through the `log` facade, filtered by `RUST_LOG` (default `info`): plain
//! text, or one JSON object per line for log shippers. Structured fields (the access log's
//! method, route, status, duration_ms and request_id) become JSON keys or `key=value` text.
//! Nothing here sees request headers, so keys and secrets cannot reach a log line.
//! Nothing else writes to stderr while serving: `init` also routes panic messages (the
//! default hook prints raw lines, even for a panic a handler's guard then catches) through
//! the logger, so in JSON mode every stderr line is a JSON object.

use crate::config::LogFormat;
use chrono::{SecondsFormat, Utc};
use log::kv::{self, VisitSource};
use serde_json::{Map, Value};
use std::io::Write;

/// Collects a record's key-value pairs.
struct Fields(Map<String, Value>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let json = if let Some(number) = value.to_u64() {
            Value::from(number)
        } else if let Some(number) = value.to_i64() {
            Value::from(number)
        } else if let Some(number) = value.to_f64() {
            Value::from(number)
        } else if let Some(flag) = value.to_bool() {
            Value::from(flag)
        } else {
            Value::from(value.to_string())
        };
        self.0.insert(key.to_string(), json);
        Ok(())
    }
}

fn fields(record: &log::Record<'_>) -> Map<String, Value> {
    let mut fields = Fields(Map::new());
    // A field that fails to visit is left out rather than losing the line.
    let _ = record.key_values().visit(&mut fields);
    fields.0
}

/// Installs the logger; call once, before serving.
pub fn init(format: LogFormat) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.format(move |out, record| {
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        match format {
            LogFormat::Json => {
                let mut line = Map::new();
                line.insert("ts".into(), Value::from(ts));
                line.insert("level".into(), Value::from(record.level().as_str()));
                line.insert("target".into(), Value::from(record.target()));
                line.insert("message".into(), Value::from(record.args().to_string()));
                for (key, value) in fields(record) {
                    line.entry(key).or_insert(value);
                }
                writeln!(out, "{}", Value::Object(line))
            }
            LogFormat::Text => {
                write!(out, "{ts} {:<5} {}: {}", record.level(), record.target(), record.args())?;
                for (key, value) in fields(record) {
                    match value {
                        Value::String(text) => write!(out, " {key}={text:?}")?,
                        other => write!(out, " {key}={other}")?,
                    }
                }
                writeln!(out)
            }
        }
    });
    builder.init();
    std::panic::set_hook(Box::new(log_panic));
}

/// The panic hook: one `error` log line with the thread, the place and the message, and the
/// backtrace when `RUST_BACKTRACE` asks for one.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a non-text panic payload)");
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("unnamed");
    let location = info.location().map(|location| location.to_string()).unwrap_or_default();
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        log::error!(target: "tally::panic", thread, location = location.as_str(); "thread {thread} panicked at {location}: {message}\n{backtrace}");
    } else {
        log::error!(target: "tally::panic", thread, location = location.as_str(); "thread {thread} panicked at {location}: {message}");
    }
}

/// An error with its causes, `outer: inner: ...`, for a log line: each error's Display names
/// its own layer only (`StoreError::Backend` says "database error"; the driver's error is its
/// source). A cause whose text its outer error already ends with is not repeated.
pub(crate) struct Chain<'e>(pub(crate) &'e (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !shown.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;
    use crate::domain::ports::StoreError;

    #[test]
    fn a_chain_shows_every_cause_once() {
        let error = StoreError::backend("the backup failed its integrity check");
        assert_eq!(error.to_string(), "database error");
        assert_eq!(Chain(&error).to_string(), "database error: the backup failed its integrity check");
        let io = std::io::Error::other("disk on fire");
        assert_eq!(Chain(&StoreError::backend(io)).to_string(), "database error: disk on fire");
    }
}
