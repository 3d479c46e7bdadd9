//! What each `tally` subcommand does once the config is loaded: printing, signal handling and
//! exit statuses live here, so main.rs stays a dispatcher.

use crate::config::{Config, DatabaseBackend, DatabaseUrl};
use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Serves until SIGTERM or SIGINT (exit 0 after a clean drain) or until the writer dies
/// (exit 1, so a supervisor restarts the process).
pub fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("cannot install signal handlers")?;
    let source = config.source.clone();
    let running = crate::serve(config)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{}", running.addr())?;
    stdout.flush()?;
    drop(stdout);
    log::info!("serving on {} with config {source}", running.addr());
    loop {
        if let Some(signal) = signals.pending().next() {
            log::info!("signal {signal} received; finishing requests in flight");
            let drained = running.shutdown(SHUTDOWN_GRACE);
            if !drained {
                log::warn!("requests were still running after {SHUTDOWN_GRACE:?}; exiting anyway");
            }
            log::info!("stopped");
            return Ok(if drained { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        if !running.is_healthy() {
            log::error!("the database writer has stopped; exiting so a supervisor can restart Tally");
            // Requests in flight are answered (503) before the process goes.
            running.shutdown(Duration::from_secs(1));
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn migrate(config: &Config) -> anyhow::Result<ExitCode> {
    let report = crate::store::migrate(&config.database)?;
    let path = config.database.describe();
    if report.applied.is_empty() {
        println!("{path}: schema is up to date (version {})", report.version);
    } else {
        println!("{path}: applied {} (schema version {})", report.applied.join(", "), report.version);
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a key from stdin (one line, surrounding whitespace ignored) and prints its digest.
pub fn hash_key() -> anyhow::Result<ExitCode> {
    let mut key = String::new();
    std::io::stdin().read_line(&mut key).context("cannot read the key from stdin")?;
    let key = key.trim();
    anyhow::ensure!(!key.is_empty(), "no key on stdin; pipe one in, e.g. `printf %s \"$KEY\" | tally hash-key`");
    println!("sha256:{}", crate::config::key_digest_hex(key));
    Ok(ExitCode::SUCCESS)
}

/// Writes a consistent copy of the database to `path` while Tally may be serving it.
pub fn backup(config: &Config, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let DatabaseBackend::Sqlite(sqlite) = &config.database.backend else {
        anyhow::bail!(
            "tally backup copies a SQLite file; this config uses PostgreSQL ({}): back it up with pg_dump, \
             e.g. `pg_dump --format=custom --file=tally.dump \"$TALLY_DATABASE_URL\"`",
            config.database.describe()
        );
    };
    // Checked here, where the message can name the destination: the store's own refusals are
    // about the database being copied.
    if path.exists() {
        anyhow::bail!(
            "cannot back up to {}: the file already exists (a backup never overwrites a file; choose a new path)",
            path.display()
        );
    }
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty() && !parent.is_dir()) {
        anyhow::bail!("cannot back up to {}: the directory {} does not exist", path.display(), parent.display());
    }
    let report = crate::store::sqlite::backup(sqlite, path)
        .with_context(|| format!("cannot back up {} to {}", sqlite.path.display(), path.display()))?;
    println!(
        "{}: copied {} to {} ({} bytes, integrity ok)",
        config.source,
        sqlite.path.display(),
        path.display(),
        report.bytes
    );
    Ok(ExitCode::SUCCESS)
}

/// `tally copy-db --to URL`: the SQLite database this config names, into PostgreSQL.
pub fn copy_db(config: &Config, to: &str) -> anyhow::Result<ExitCode> {
    let DatabaseBackend::Sqlite(sqlite) = &config.database.backend else {
        anyhow::bail!(
            "copy-db copies a SQLite database into PostgreSQL; this config already uses PostgreSQL ({})",
            config.database.describe()
        );
    };
    let target = DatabaseUrl::parse(to).map_err(anyhow::Error::msg)?;
    let counts = crate::store::copy::sqlite_to_postgres(sqlite, &target)?;
    let rows: u64 = counts.rows.iter().map(|(_, rows)| rows).sum();
    println!(
        "copied {} to {}: {rows} rows in {} tables, counters summing to {} (row counts and sum verified)",
        sqlite.path.display(),
        target.redacted(),
        counts.rows.len(),
        counts.counter_sum
    );
    for (table, rows) in &counts.rows {
        println!("  {table}: {rows}");
    }
    println!("next: set [database] url (or TALLY_DATABASE_URL) to the target and remove path");
    Ok(ExitCode::SUCCESS)
}

pub fn check_config(config: &Config) -> anyhow::Result<ExitCode> {
    let catalog = &config.rules.catalog;
    let plans: Vec<&str> = catalog.plans().iter().map(|plan| plan.name.as_str()).collect();
    println!(
        "{}: ok (listen {}, database {}, plans {}, {} metrics, {} features, auth {})",
        config.source,
        config.server.listen,
        config.database.describe(),
        plans.join(" < "),
        catalog.metrics().count(),
        catalog.features().len(),
        if config.auth.is_open() { "open (loopback only)" } else { "on" }
    );
    Ok(ExitCode::SUCCESS)
}
