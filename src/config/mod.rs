//! Configuration: the only reader of TOML files and environment variables. A user's file is
//! laid over the built-in defaults (config.example.toml, embedded), checked, and turned into
//! `Config`. Every refusal names the file, the key and the fix.

mod plans;
mod raw;
mod webhooks;

use crate::domain::Rules;
use crate::domain::events::EventFilter;
use raw::{RawConfig, RawKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built-in config, also the documented example.
pub const DEFAULT_CONFIG: &str = include_str!("../../config.example.toml");

/// Plain keys shorter than this are refused: a short key falls to guessing.
pub const MIN_KEY_CHARS: usize = 16;

/// Where `serve` looks for a config when `--config` is not given.
pub const LOCAL_CONFIG: &str = "tally.toml";

#[derive(Clone, Debug)]
pub struct Config {
    /// Where it came from, for messages: a path or "built-in default".
    pub source: String,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub rules: Rules,
    pub webhooks: Vec<WebhookConfig>,
    pub delivery: DeliveryConfig,
}

/// A webhook receiver; each of its secrets signs every body sent to it (more than one while
/// the receiver rotates from one secret to the next).
#[derive(Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secrets: Vec<WebhookSecret>,
    pub filter: EventFilter,
}

/// A webhook secret as written (the key of `Tally-Signature`, Stripe's scheme) and the key
/// Standard Webhooks signs with: the bytes after `whsec_` base64-decoded, else the text's bytes.
#[derive(Clone)]
pub struct WebhookSecret {
    pub text: String,
    pub standard_key: Vec<u8>,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookConfig({}, {:?})", self.url, self.filter)
    }
}

#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub give_up_after: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Deadline for a request's whole head, and for an idle connection's next head.
    pub header_timeout: Duration,
    /// Deadline for a request's whole body, counted from the end of its head.
    pub request_timeout: Duration,
    pub max_body_bytes: u64,
    /// The body cap of `POST /v1/track/batch` (up to 1,000 events).
    pub max_batch_body_bytes: u64,
    /// GET /metrics without a key.
    pub metrics_public: bool,
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    Full,
    Normal,
}

/// Which database holds Tally's state.
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    pub backend: DatabaseBackend,
}

#[derive(Clone, Debug)]
pub enum DatabaseBackend {
    /// One SQLite file (`database.path`), the default.
    Sqlite(SqliteConfig),
    /// A PostgreSQL database (`database.url`), shared by any number of Tally nodes.
    Postgres(PostgresConfig),
}

impl DatabaseConfig {
    /// Where the data lives, for messages: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match &self.backend {
            DatabaseBackend::Sqlite(sqlite) => sqlite.path.display().to_string(),
            DatabaseBackend::Postgres(postgres) => postgres.url.redacted(),
        }
    }
}

/// A PostgreSQL connection URL. Its Debug and `redacted` never show the password; only the
/// backend reads the whole URL, to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// A PostgreSQL URL given outside the config (`copy-db --to`); the error never shows the
    /// password.
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl(url.to_owned()))
        } else {
            Err(format!(
                "{} is not a PostgreSQL URL; write postgres://USER:PASSWORD@HOST:5432/DATABASE",
                redact_url(url)
            ))
        }
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    /// The URL as configured, password included: for the driver, never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_owned();
    };
    // The query may carry a password too (`?password=`): it is dropped whole.
    let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
    // Everything before the last `@` is user info, whatever it holds (a password may contain
    // `/`, `:` or `@`): only the user name before its first `:` is kept.
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

#[derive(Clone, Debug)]
pub struct PostgresConfig {
    pub url: DatabaseUrl,
    /// Connections per node (the writer's one, plus a pool for reads and background work).
    pub pool_size: u32,
    /// Test builds only, as for SQLite.
    pub writer_panic_after: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
    pub read_connections: u32,
    /// Cap on the database file's size; `None` for no cap.
    pub max_size_mb: Option<u64>,
    /// Test builds only: the writer thread panics after this many write groups
    /// (`TALLY_TEST_WRITER_PANIC_AFTER`), to prove a dead writer is noticed.
    pub writer_panic_after: Option<u64>,
}

/// A bearer key as held in memory: its SHA-256 digest and a name for logs and the audit.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    pub digest: [u8; 32],
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.name)
    }
}

#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    pub service_keys: Vec<ApiKey>,
    pub admin_keys: Vec<ApiKey>,
    /// Failed authentications one client IP may make per minute before it gets 429.
    pub max_failures_per_minute: u32,
}

impl AuthConfig {
    /// With no keys at all every route is open (allowed only on loopback).
    pub fn is_open(&self) -> bool {
        self.service_keys.is_empty() && self.admin_keys.is_empty()
    }
}

/// A config that cannot be used, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source: String,
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.source, self.key, self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Environment variables the config reads; a function so tests can pass their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// `--config FILE` if given, else ./tally.toml if present, else the built-in default.
    pub fn load(path: Option<&Path>, env: Env<'_>) -> Result<Config, ConfigError> {
        let local = Path::new(LOCAL_CONFIG);
        match path {
            Some(path) => Config::from_file(path, env),
            None if local.is_file() => Config::from_file(local, env),
            None => Config::from_toml("built-in default", "", env),
        }
    }

    pub fn from_file(path: &Path, env: Env<'_>) -> Result<Config, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            source: source.clone(),
            key: "(file)".into(),
            problem: format!("cannot read the file: {error}"),
            fix: "pass an existing, readable file to --config".into(),
        })?;
        Config::from_toml(&source, &text, env)
    }

    /// Parses `text` laid over the built-in defaults, applies the environment, validates.
    pub fn from_toml(source: &str, text: &str, env: Env<'_>) -> Result<Config, ConfigError> {
        let parse_error = |error: toml::de::Error| ConfigError {
            source: source.to_owned(),
            key: "(syntax)".into(),
            problem: error.to_string().trim_end().to_owned(),
            fix: "correct the TOML; config.example.toml shows every key".into(),
        };
        let defaults: toml::Table = toml::from_str(DEFAULT_CONFIG).expect("the embedded default config is valid TOML");
        let user: toml::Table = toml::from_str(text).map_err(parse_error)?;
        let merged = raw::merge(defaults, user.clone());
        let raw = RawConfig::deserialize(merged).map_err(|error| shape_error(source, error))?;
        // The defaults always name a path; only the user's own `path` conflicts with `url`.
        let user_set_path = user.get("database").and_then(|database| database.get("path")).is_some();
        Validator { source }.validate(raw, user_set_path, env)
    }
}

/// Turns serde's message ("unknown field `x`, expected ... in `server`") into a ConfigError
/// naming the key, with the fix for the shapes serde describes poorly.
fn shape_error(source: &str, error: toml::de::Error) -> ConfigError {
    let message = error.to_string().trim().to_owned();
    let (problem, path) = match message.rsplit_once("\nin `") {
        Some((problem, path)) => (problem.to_owned(), path.trim_end_matches('`').to_owned()),
        None => (message.clone(), String::new()),
    };
    let field = problem.split('`').nth(1).unwrap_or_default();
    let key = match (problem.starts_with("unknown field"), path.is_empty()) {
        (true, true) => field.to_owned(),
        (true, false) => format!("{path}.{field}"),
        (false, _) => path,
    };
    let (problem, fix) = if problem.contains("untagged enum RawLimit") {
        (
            "is not a limit".to_owned(),
            "write \"unlimited\" or { limit = N, enforcement = \"hard\" } (or \"soft\")".to_owned(),
        )
    } else if problem.contains("untagged enum RawFeature") {
        (
            "is not a feature grant".to_owned(),
            "write true, false, { per_minute = N } or { limit = N, window_secs = S }".to_owned(),
        )
    } else if problem.contains("untagged enum RawKey") {
        ("is not a key".to_owned(), "write \"KEY\", \"sha256:HEX\" or { name = \"NAME\", key = \"KEY\" }".to_owned())
    } else if problem.starts_with("unknown field") {
        (problem, "remove or rename the key; config.example.toml lists every key".to_owned())
    } else {
        (problem, "config.example.toml shows the expected type".to_owned())
    };
    ConfigError { source: source.to_owned(), key, problem, fix }
}

struct Validator<'a> {
    source: &'a str,
}

impl Validator<'_> {
    fn error(&self, key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError { source: self.source.to_owned(), key: key.into(), problem: problem.into(), fix: fix.into() }
    }

    fn in_range(&self, key: &str, value: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(self.error(key, format!("{value} is out of range"), format!("use a whole number from {min} to {max}")))
        }
    }

    fn validate(&self, raw: RawConfig, user_set_path: bool, env: Env<'_>) -> Result<Config, ConfigError> {
        let server = self.server(&raw)?;
        let database = self.database(&raw, user_set_path, env)?;
        let auth = self.auth(&raw)?;
        if auth.is_open() && !server.listen.ip().is_loopback() {
            return Err(self.error(
                "server.listen",
                format!(
                    "{} is not a loopback address and auth.service_keys and auth.admin_keys are both empty",
                    server.listen
                ),
                "add keys under [auth], or listen on 127.0.0.1 / [::1]",
            ));
        }
        let mut database = database;
        if cfg!(debug_assertions) {
            let panic_after = env("TALLY_TEST_WRITER_PANIC_AFTER").and_then(|groups| groups.parse().ok());
            match &mut database.backend {
                DatabaseBackend::Sqlite(sqlite) => sqlite.writer_panic_after = panic_after,
                DatabaseBackend::Postgres(postgres) => postgres.writer_panic_after = panic_after,
            }
        }
        let (webhooks, routes) = self.webhooks(&raw)?;
        let mut rules = self.rules(&raw, env)?;
        rules.webhooks = routes;
        let delivery = self.delivery(&raw)?;
        Ok(Config { source: self.source.to_owned(), server, database, auth, rules, webhooks, delivery })
    }

    fn server(&self, raw: &RawConfig) -> Result<ServerConfig, ConfigError> {
        let listen = raw.server.listen.parse::<SocketAddr>().map_err(|_| {
            self.error(
                "server.listen",
                format!("{:?} is not an IP address and port", raw.server.listen),
                "write it as \"127.0.0.1:8080\", \"[::1]:8080\" or \"0.0.0.0:8080\"",
            )
        })?;
        Ok(ServerConfig {
            listen,
            max_connections: self.in_range("server.max_connections", raw.server.max_connections, 1, 65_536)? as usize,
            header_timeout: Duration::from_millis(self.in_range(
                "server.header_timeout_ms",
                raw.server.header_timeout_ms,
                100,
                3_600_000,
            )? as u64),
            request_timeout: Duration::from_millis(self.in_range(
                "server.request_timeout_ms",
                raw.server.request_timeout_ms,
                100,
                3_600_000,
            )? as u64),
            max_body_bytes: self.in_range("server.max_body_bytes", raw.server.max_body_bytes, 256, 64 << 20)? as u64,
            max_batch_body_bytes: self.in_range(
                "server.max_batch_body_bytes",
                raw.server.max_batch_body_bytes,
                256,
                64 << 20,
            )? as u64,
            metrics_public: raw.server.metrics_public,
            log_format: match raw.server.log_format.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(self.error(
                        "server.log_format",
                        format!("{other:?} is not a log format"),
                        "use \"text\" or \"json\" (one JSON object per line)",
                    ));
                }
            },
        })
    }

    fn database(&self, raw: &RawConfig, user_set_path: bool, env: Env<'_>) -> Result<DatabaseConfig, ConfigError> {
        let url = match env("TALLY_DATABASE_URL").filter(|url| !url.trim().is_empty()) {
            Some(url) => Some(url),
            None => raw.database.url.clone(),
        };
        if let Some(url) = url {
            if user_set_path {
                return Err(self.error(
                    "database.url",
                    "is set together with database.path",
                    "keep one: url selects PostgreSQL, path a SQLite file",
                ));
            }
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(self.error(
                    "database.url",
                    format!("{} is not a PostgreSQL URL", redact_url(&url)),
                    "write it as \"postgres://USER:PASSWORD@HOST:5432/DATABASE\" (or set TALLY_DATABASE_URL)",
                ));
            }
            let pool_size = self.in_range("database.pool_size", raw.database.pool_size, 2, 512)? as u32;
            return Ok(DatabaseConfig {
                backend: DatabaseBackend::Postgres(PostgresConfig {
                    url: DatabaseUrl(url),
                    pool_size,
                    writer_panic_after: None,
                }),
            });
        }
        if raw.database.path.trim().is_empty() {
            return Err(self.error("database.path", "is empty", "name the SQLite file, e.g. \"tally.db\""));
        }
        let synchronous = match raw.database.synchronous.as_str() {
            "full" => Synchronous::Full,
            "normal" => Synchronous::Normal,
            other => {
                return Err(self.error(
                    "database.synchronous",
                    format!("{other:?} is not a synchronous mode"),
                    "use \"full\" (every answered write survives power loss) or \"normal\"",
                ));
            }
        };
        Ok(DatabaseConfig {
            backend: DatabaseBackend::Sqlite(SqliteConfig {
                path: PathBuf::from(&raw.database.path),
                synchronous,
                busy_timeout: Duration::from_millis(self.in_range(
                    "database.busy_timeout_ms",
                    raw.database.busy_timeout_ms,
                    0,
                    600_000,
                )? as u64),
                read_connections: self.in_range("database.read_connections", raw.database.read_connections, 1, 64)?
                    as u32,
                max_size_mb: match self.in_range("database.max_size_mb", raw.database.max_size_mb, 0, 1 << 30)? {
                    0 => None,
                    megabytes => Some(megabytes as u64),
                },
                writer_panic_after: None,
            }),
        })
    }

    fn keys(&self, list: &str, entries: &[RawKey]) -> Result<Vec<ApiKey>, ConfigError> {
        let mut keys = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let key_path = format!("auth.{list}[{index}]");
            let (name, secret) = match entry {
                RawKey::Plain(secret) => (None, secret),
                RawKey::Named(named) => (Some(&named.name), &named.key),
            };
            if secret.trim().is_empty() {
                return Err(self.error(
                    key_path,
                    "is an empty key",
                    "use a long random string, e.g. from `openssl rand -hex 32`",
                ));
            }
            // Counted in characters; the value itself is never repeated in the message.
            if !secret.starts_with("sha256:") && secret.chars().count() < MIN_KEY_CHARS {
                return Err(self.error(
                    key_path,
                    format!("is shorter than {MIN_KEY_CHARS} characters, so it can be guessed"),
                    "use a long random string, e.g. from `openssl rand -hex 32`",
                ));
            }
            let digest = match secret.strip_prefix("sha256:") {
                Some(hex) => parse_digest(hex).ok_or_else(|| {
                    self.error(
                        &key_path,
                        "is not a SHA-256 digest",
                        "write sha256: followed by 64 hex digits (`tally hash-key` prints them)",
                    )
                })?,
                None => Sha256::digest(secret.as_bytes()).into(),
            };
            let name = match name {
                Some(name) if !name.trim().is_empty() => name.clone(),
                Some(_) => return Err(self.error(key_path, "has an empty name", "name the key, e.g. name = \"ops\"")),
                None => key_fingerprint(&digest),
            };
            keys.push(ApiKey { name, digest });
        }
        Ok(keys)
    }

    fn auth(&self, raw: &RawConfig) -> Result<AuthConfig, ConfigError> {
        let auth = AuthConfig {
            service_keys: self.keys("service_keys", &raw.auth.service_keys)?,
            admin_keys: self.keys("admin_keys", &raw.auth.admin_keys)?,
            max_failures_per_minute: self.in_range(
                "auth.max_failures_per_minute",
                raw.auth.max_failures_per_minute,
                1,
                1_000_000,
            )? as u32,
        };
        let mut seen = HashSet::new();
        for (index, key) in auth.service_keys.iter().chain(&auth.admin_keys).enumerate() {
            if !seen.insert(key.digest) {
                let list = if index < auth.service_keys.len() { "auth.service_keys" } else { "auth.admin_keys" };
                return Err(self.error(
                    list,
                    format!(
                        "the key named {} appears twice (in one list, or in both service_keys and admin_keys)",
                        key.name
                    ),
                    "give each key one role: an admin key already allows every service call",
                ));
            }
        }
        Ok(auth)
    }

    fn env_bool(&self, env: Env<'_>, name: &str, configured: bool) -> Result<bool, ConfigError> {
        match env(name).as_deref().map(str::trim) {
            None | Some("") => Ok(configured),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(ConfigError {
                source: format!("environment variable {name}"),
                key: name.to_owned(),
                problem: format!("{other:?} is not true or false"),
                fix: format!("set {name}=true or {name}=false, or unset it"),
            }),
        }
    }

    fn rules(&self, raw: &RawConfig, env: Env<'_>) -> Result<Rules, ConfigError> {
        let catalog = self.catalog(raw)?;
        let mut admin_user_ids = HashSet::new();
        for (index, user_id) in raw.usage.admin_user_ids.iter().enumerate() {
            crate::domain::user_id::validate_user_id(user_id).map_err(|problem| {
                self.error(format!("usage.admin_user_ids[{index}]"), problem, "list valid user ids")
            })?;
            admin_user_ids.insert(user_id.clone());
        }
        if let Some(list) = env("ADMIN_USER_IDS") {
            for user_id in list.split(',').map(str::trim).filter(|id| !id.is_empty()) {
                crate::domain::user_id::validate_user_id(user_id).map_err(|problem| ConfigError {
                    source: "environment variable ADMIN_USER_IDS".into(),
                    key: "ADMIN_USER_IDS".into(),
                    problem,
                    fix: "set it to user ids separated by commas, e.g. ADMIN_USER_IDS=alice,bob".into(),
                })?;
                admin_user_ids.insert(user_id.to_owned());
            }
        }
        Ok(Rules {
            catalog,
            admin_user_ids,
            tracking_enabled: self.env_bool(env, "USAGE_TRACKING_ENABLED", raw.usage.tracking_enabled)?,
            telemetry_enabled: self.env_bool(env, "TELEMETRY_ENABLED", raw.usage.telemetry_enabled)?,
            retention_months: self.in_range("usage.retention_months", raw.usage.retention_months, 1, 1200)? as u32,
            idempotency_hours: self.in_range("usage.idempotency_hours", raw.usage.idempotency_hours, 1, 24 * 365)?
                as u32,
            alert_thresholds: self.thresholds(&raw.usage.alert_thresholds)?,
            refusal_event_interval_ms: self.in_range(
                "usage.refusal_event_interval_secs",
                raw.usage.refusal_event_interval_secs,
                0,
                31 * 86_400,
            )? * 1000,
            webhooks: Vec::new(),
        })
    }
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// The hex SHA-256 of a key, as `sha256:HEX` entries in the config hold it.
pub fn key_digest_hex(key: &str) -> String {
    crate::domain::hex(&Sha256::digest(key.as_bytes()))
}

/// A short, stable name for an unnamed key: the first 8 hex digits of its digest.
pub fn key_fingerprint(digest: &[u8; 32]) -> String {
    crate::domain::hex(&digest[..4])
}

#[cfg(test)]
mod tests;
