//! Configuration: the only reader of TOML files and environment variables. A user's file is
//! laid over the built-in defaults (config.example.toml, embedded), checked, and turned into
//! `Config`; the listen address and the database may be overridden from the command line
//! (`Overrides`) or the environment: a flag wins over a variable, a variable over the file.
//! Every refusal names the file, the key and the fix, and one run reports all of them.

mod billing;
mod email;
mod gateway;
mod plans;
mod raw;
mod webhooks;

pub use email::{EmailAlert, EmailConfig, Recipient};

use crate::domain::Rules;
use crate::domain::events::EventFilter;
use raw::{RawConfig, RawKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built-in config, also the documented example.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../../config.example.toml");

/// Plain keys shorter than this are refused: a short key falls to guessing.
pub(crate) const MIN_KEY_CHARS: usize = 16;

/// Where `serve` looks for a config when `--config` is not given.
pub(crate) const LOCAL_CONFIG: &str = "tally.toml";

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
    pub gateway: crate::domain::gateway::Gateway,
    /// `[email]`: the relay and the alert rules, if mail is configured.
    pub email: Option<EmailConfig>,
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
    /// Test-hook builds only, as for SQLite.
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
    /// Builds with the `test-hooks` feature only (the integration tests'): the writer thread
    /// panics after this many write groups (`TALLY_TEST_WRITER_PANIC_AFTER`), to prove a dead
    /// writer is noticed.
    pub writer_panic_after: Option<u64>,
    /// Whether a timer (every 200 ms) has the delta log's open chunk sealed for folding
    /// (always, but in test-hook builds with `TALLY_TEST_NO_FOLD_TIMER` set, so a test can
    /// leave increments in the log).
    pub fold_on_timer: bool,
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

/// Every refusal found in one config (at least one), in the order of the checks. A file that
/// is not valid TOML, or has a key of the wrong shape, stops at that first error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.errors.as_slice() {
            return write!(f, "{only}");
        }
        write!(f, "{} problems", self.errors.len())?;
        for error in &self.errors {
            write!(f, "\n{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors { errors: vec![error] }
    }
}

/// What the command line sets over the file and the environment (`--listen`, `--database`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    /// A SQLite path, or a `postgres://` URL.
    pub database: Option<String>,
}

/// A value that replaces a file's key, and where it came from, for messages.
struct Override {
    value: String,
    /// "--listen", "TALLY_LISTEN", ...
    name: &'static str,
}

impl Override {
    /// The flag if given, else the environment variable if set and not empty.
    fn resolve(flag: Option<&str>, flag_name: &'static str, env: Env<'_>, env_name: &'static str) -> Option<Override> {
        match flag {
            Some(value) => Some(Override { value: value.to_owned(), name: flag_name }),
            None => {
                env(env_name).filter(|value| !value.trim().is_empty()).map(|value| Override { value, name: env_name })
            }
        }
    }

    fn source(&self) -> String {
        if self.name.starts_with("--") {
            "command line".to_owned()
        } else {
            format!("environment variable {}", self.name)
        }
    }
}

fn is_postgres_url(value: &str) -> bool {
    value.starts_with("postgres://") || value.starts_with("postgresql://")
}

/// Environment variables the config reads; a function so tests can pass their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// `--config FILE` if given, else ./tally.toml if present, else the built-in default.
    pub fn load(path: Option<&Path>, overrides: &Overrides, env: Env<'_>) -> Result<Config, ConfigErrors> {
        let local = Path::new(LOCAL_CONFIG);
        let (source, text) = match path {
            Some(path) => (path.display().to_string(), read_file(path)?),
            None if local.is_file() => (LOCAL_CONFIG.to_owned(), read_file(local)?),
            None => ("built-in default".to_owned(), String::new()),
        };
        Config::from_toml_with(&source, &text, overrides, env)
    }

    /// Parses `text` laid over the built-in defaults, applies the environment, validates.
    pub fn from_toml(source: &str, text: &str, env: Env<'_>) -> Result<Config, ConfigErrors> {
        Config::from_toml_with(source, text, &Overrides::default(), env)
    }

    /// As `from_toml`, with the command line's overrides on top.
    pub(crate) fn from_toml_with(
        source: &str,
        text: &str,
        overrides: &Overrides,
        env: Env<'_>,
    ) -> Result<Config, ConfigErrors> {
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
        let validator = Validator { source, refused: RefCell::new(Vec::new()) };
        let config = validator.validate(raw, user_set_path, overrides, env);
        let errors = validator.refused.into_inner();
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors { errors }),
        }
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError {
        source: path.display().to_string(),
        key: "(file)".into(),
        problem: format!("cannot read the file: {error}"),
        fix: "pass an existing, readable file to --config".into(),
    })
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
            "write \"unlimited\" or { limit = N, enforcement = \"hard\" } (or \"soft\"), optionally with \
             rollover_max = N and overage = { price_cents = N, per_units = N }"
                .to_owned(),
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
    } else if let Some(in_words) = wrong_type_in_words(&problem, &key) {
        in_words
    } else {
        (problem, "config.example.toml shows the expected type".to_owned())
    };
    ConfigError { source: source.to_owned(), key, problem, fix }
}

/// serde's "invalid type: integer `5`, expected struct RawServer" as the user would say it:
/// ("must be a table of settings, not the number 5", how to write it). None for a message of
/// another shape.
fn wrong_type_in_words(problem: &str, key: &str) -> Option<(String, String)> {
    let (found, expected) = problem.strip_prefix("invalid type: ")?.rsplit_once(", expected ")?;
    let found = if let Some(number) = found.strip_prefix("integer ").or_else(|| found.strip_prefix("floating point ")) {
        format!("the number {}", number.trim_matches('`'))
    } else if let Some(text) = found.strip_prefix("string ") {
        format!("the string {text}")
    } else if let Some(flag) = found.strip_prefix("boolean ") {
        flag.trim_matches('`').to_owned()
    } else {
        match found {
            "map" => "a table".to_owned(),
            "sequence" => "a list".to_owned(),
            other => other.to_owned(),
        }
    };
    let table = |what: &str| {
        let fix = format!(
            "write [{key}] on a line of its own and its `name = value` lines below it, as config.example.toml does"
        );
        Some((format!("must be {what}, not {found}"), fix))
    };
    let value = |what: &str| {
        Some((format!("must be {what}, not {found}"), format!("write {what}; config.example.toml shows one")))
    };
    match expected {
        "struct RawPlan" => table("a table of price_cents, limits and features"),
        "struct RawMetric" => table("a table such as { unit = \"prompts\" }"),
        "struct RawWebhook" => {
            Some((format!("must be a table of url, events and secret, not {found}"), "write [[webhooks]] on a line of its own and its `name = value` lines below it, as config.example.toml does".to_owned()))
        }
        raw if raw.starts_with("struct Raw") => table("a table of settings"),
        "a map" => table("a table"),
        "i64" | "u64" | "i32" | "u32" | "u16" | "usize" => value("a whole number"),
        "f64" => value("a number"),
        "a string" => value("a string in double quotes"),
        "a boolean" => value("true or false"),
        "a sequence" => value("a list in square brackets"),
        _ => None,
    }
}

/// Checks a merged config. Each section stops at its first structural error, but refusals are
/// collected across sections (and every out-of-range number and bad list entry is recorded
/// where it is found), so one run of `check-config` names every key to fix.
struct Validator<'a> {
    source: &'a str,
    refused: RefCell<Vec<ConfigError>>,
}

impl Validator<'_> {
    fn error(&self, key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError { source: self.source.to_owned(), key: key.into(), problem: problem.into(), fix: fix.into() }
    }

    /// Records a refusal; validation goes on, and the config is refused at the end.
    fn refuse(&self, error: ConfigError) {
        self.refused.borrow_mut().push(error);
    }

    /// The value, or None with its refusal recorded.
    fn keep<T>(&self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|error| self.refuse(error)).ok()
    }

    /// `value` if within `min..=max`; else the refusal is recorded and validation goes on with
    /// `min` in its place (the config is refused anyway), so later keys are still checked.
    fn in_range(&self, key: &str, value: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
        if !(min..=max).contains(&value) {
            self.refuse(self.error(
                key,
                format!("{value} is out of range"),
                format!("use a whole number from {min} to {max}"),
            ));
            return Ok(min);
        }
        Ok(value)
    }

    fn validate(&self, raw: RawConfig, user_set_path: bool, overrides: &Overrides, env: Env<'_>) -> Option<Config> {
        let listen = Override::resolve(overrides.listen.as_deref(), "--listen", env, "TALLY_LISTEN");
        let server = self.keep(self.server(&raw, listen.as_ref()));
        let database = self.keep(self.database(&raw, user_set_path, overrides, env));
        let auth = self.keep(self.auth(&raw));
        let webhooks = self.keep(self.webhooks(&raw));
        let rules = self.keep(self.rules(&raw, env));
        let delivery = self.keep(self.delivery(&raw));
        let gateway = self.keep(self.gateway(&raw));
        let email = self.keep(self.email(&raw));
        let (server, mut database, auth, (webhooks, mut routes), mut rules, delivery, gateway, (email, mail_routes)) =
            (server?, database?, auth?, webhooks?, rules?, delivery?, gateway?, email?);
        routes.extend(mail_routes);
        // Only once every key is accepted: a refused key would make auth look open.
        if self.refused.borrow().is_empty() && auth.is_open() && !server.listen.ip().is_loopback() {
            let (source, key) = match &listen {
                Some(listen) => (listen.source(), listen.name.to_owned()),
                None => (self.source.to_owned(), "server.listen".to_owned()),
            };
            self.refuse(ConfigError {
                source,
                key,
                problem: format!(
                    "{} is not a loopback address and auth.service_keys and auth.admin_keys are both empty",
                    server.listen
                ),
                fix: "add keys under [auth], or listen on 127.0.0.1 / [::1]".into(),
            });
            return None;
        }
        // Compiled only into the builds the integration tests run (Cargo.toml's `test-hooks`),
        // never into a build of the server, debug or release: no variable can make it panic.
        if cfg!(feature = "test-hooks") {
            let panic_after = env("TALLY_TEST_WRITER_PANIC_AFTER").and_then(|groups| groups.parse().ok());
            match &mut database.backend {
                DatabaseBackend::Sqlite(sqlite) => {
                    sqlite.writer_panic_after = panic_after;
                    sqlite.fold_on_timer = env("TALLY_TEST_NO_FOLD_TIMER").is_none();
                }
                DatabaseBackend::Postgres(postgres) => postgres.writer_panic_after = panic_after,
            }
        }
        rules.webhooks = routes;
        Some(Config {
            source: self.source.to_owned(),
            server,
            database,
            auth,
            rules,
            webhooks,
            delivery,
            gateway,
            email,
        })
    }

    fn server(&self, raw: &RawConfig, listen: Option<&Override>) -> Result<ServerConfig, ConfigError> {
        let fix = "write it as \"127.0.0.1:8080\", \"[::1]:8080\" or \"0.0.0.0:8080\"";
        let listen = match listen {
            Some(listen) => listen.value.trim().parse::<SocketAddr>().map_err(|_| ConfigError {
                source: listen.source(),
                key: listen.name.to_owned(),
                problem: format!("{:?} is not an IP address and port", listen.value),
                fix: fix.to_owned(),
            })?,
            None => raw.server.listen.parse::<SocketAddr>().map_err(|_| {
                self.error("server.listen", format!("{:?} is not an IP address and port", raw.server.listen), fix)
            })?,
        };
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

    /// The database the command line or the environment names, if any: `--database`, else
    /// `TALLY_DATABASE`, else `TALLY_DATABASE_URL` (the older, PostgreSQL-only spelling; both
    /// variables at once are refused).
    fn database_override(&self, overrides: &Overrides, env: Env<'_>) -> Result<Option<Override>, ConfigError> {
        if let Some(database) = &overrides.database {
            return Ok(Some(Override { value: database.clone(), name: "--database" }));
        }
        let general = Override::resolve(None, "", env, "TALLY_DATABASE");
        let url = Override::resolve(None, "", env, "TALLY_DATABASE_URL");
        match (general, url) {
            (Some(_), Some(_)) => Err(ConfigError {
                source: "environment variables TALLY_DATABASE and TALLY_DATABASE_URL".into(),
                key: "TALLY_DATABASE_URL".into(),
                problem: "both are set".into(),
                fix: "unset one: TALLY_DATABASE takes a SQLite path or a postgres:// URL".into(),
            }),
            (Some(general), None) => Ok(Some(general)),
            (None, Some(url)) if !is_postgres_url(&url.value) => Err(ConfigError {
                source: url.source(),
                key: url.name.into(),
                problem: format!("{} is not a PostgreSQL URL", redact_url(&url.value)),
                fix: "write it as postgres://USER:PASSWORD@HOST:5432/DATABASE, or set TALLY_DATABASE to a SQLite path"
                    .into(),
            }),
            (None, url) => Ok(url),
        }
    }

    fn database(
        &self,
        raw: &RawConfig,
        user_set_path: bool,
        overrides: &Overrides,
        env: Env<'_>,
    ) -> Result<DatabaseConfig, ConfigError> {
        // An override replaces the file's choice whole: a URL selects PostgreSQL, anything
        // else is a SQLite path; the file's other database keys still apply.
        let (url, path) = match self.database_override(overrides, env)? {
            Some(database) if database.value.trim().is_empty() => {
                return Err(ConfigError {
                    source: database.source(),
                    key: database.name.into(),
                    problem: "is empty".into(),
                    fix: "give a SQLite file, e.g. tally.db, or a postgres:// URL".into(),
                });
            }
            Some(database) if is_postgres_url(&database.value) => (Some(database.value), String::new()),
            Some(database) => (None, database.value),
            None => {
                if raw.database.url.is_some() && user_set_path {
                    return Err(self.error(
                        "database.url",
                        "is set together with database.path",
                        "keep one: url selects PostgreSQL, path a SQLite file",
                    ));
                }
                (raw.database.url.clone(), raw.database.path.clone())
            }
        };
        if let Some(url) = url {
            if !is_postgres_url(&url) {
                return Err(self.error(
                    "database.url",
                    format!("{} is not a PostgreSQL URL", redact_url(&url)),
                    "write it as \"postgres://USER:PASSWORD@HOST:5432/DATABASE\" (or set TALLY_DATABASE)",
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
        if path.trim().is_empty() {
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
                path: PathBuf::from(path),
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
                fold_on_timer: true,
            }),
        })
    }

    /// Every entry is checked: a refused one is recorded and left out (the config is refused).
    fn keys(&self, list: &str, entries: &[RawKey]) -> Result<Vec<ApiKey>, ConfigError> {
        let mut keys = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            if let Some(key) = self.keep(self.key(list, index, entry)) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    fn key(&self, list: &str, index: usize, entry: &RawKey) -> Result<ApiKey, ConfigError> {
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
        Ok(ApiKey { name, digest })
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
        // A refused catalog is returned last, after the other keys here have been checked.
        let catalog = self.catalog(raw);
        let currency = self.keep(self.currency(raw));
        let mut admin_user_ids = HashSet::new();
        for (index, user_id) in raw.usage.admin_user_ids.iter().enumerate() {
            match crate::domain::user_id::validate_user_id(user_id) {
                Ok(()) => _ = admin_user_ids.insert(user_id.clone()),
                Err(problem) => {
                    self.refuse(self.error(format!("usage.admin_user_ids[{index}]"), problem, "list valid user ids"))
                }
            }
        }
        if let Some(list) = env("ADMIN_USER_IDS") {
            for user_id in list.split(',').map(str::trim).filter(|id| !id.is_empty()) {
                match crate::domain::user_id::validate_user_id(user_id) {
                    Ok(()) => _ = admin_user_ids.insert(user_id.to_owned()),
                    Err(problem) => self.refuse(ConfigError {
                        source: "environment variable ADMIN_USER_IDS".into(),
                        key: "ADMIN_USER_IDS".into(),
                        problem,
                        fix: "set it to user ids separated by commas, e.g. ADMIN_USER_IDS=alice,bob".into(),
                    }),
                }
            }
        }
        let tracking_enabled = self.keep(self.env_bool(env, "USAGE_TRACKING_ENABLED", raw.usage.tracking_enabled));
        let telemetry_enabled = self.keep(self.env_bool(env, "TELEMETRY_ENABLED", raw.usage.telemetry_enabled));
        let retention_months = self.in_range("usage.retention_months", raw.usage.retention_months, 1, 1200)? as u32;
        let idempotency_hours =
            self.in_range("usage.idempotency_hours", raw.usage.idempotency_hours, 1, 24 * 365)? as u32;
        let alert_thresholds = self.thresholds(&raw.usage.alert_thresholds)?;
        let refusal_event_interval_ms =
            self.in_range("usage.refusal_event_interval_secs", raw.usage.refusal_event_interval_secs, 0, 31 * 86_400)?
                * 1000;
        let forecast_interval_secs =
            self.in_range("usage.forecast_interval_secs", raw.usage.forecast_interval_secs, 1, 86_400)? as u32;
        let catalog = catalog?;
        // Rollover reads the previous period's counter: cleanup must keep it.
        if retention_months < 2 && catalog.plans().iter().any(|plan| !plan.rollover_max.is_empty()) {
            return Err(self.error(
                "usage.retention_months",
                "is 1, but a plan rolls unused allowance over (rollover_max), which needs the previous month kept",
                "keep at least 2 months, or remove rollover_max",
            ));
        }
        Ok(Rules {
            catalog,
            admin_user_ids,
            // A refused switch is already recorded; the config is refused whatever stands here.
            tracking_enabled: tracking_enabled.unwrap_or(true),
            telemetry_enabled: telemetry_enabled.unwrap_or(true),
            retention_months,
            idempotency_hours,
            alert_thresholds,
            refusal_event_interval_ms,
            forecast_interval_secs,
            webhooks: Vec::new(),
            // A refused code is already recorded.
            currency: currency.unwrap_or_default(),
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
pub(crate) fn key_digest_hex(key: &str) -> String {
    crate::domain::hex(&Sha256::digest(key.as_bytes()))
}

/// A short, stable name for an unnamed key: the first 8 hex digits of its digest.
pub(crate) fn key_fingerprint(digest: &[u8; 32]) -> String {
    crate::domain::hex(&digest[..4])
}

#[cfg(test)]
mod tests;
