//! The `tally` command: parse the arguments, load the config, run one subcommand.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tally::config::{Config, LogFormat, Overrides, process_env};

#[derive(Parser)]
#[command(name = "tally", version, about = "Usage metering and plan-gating server on SQLite")]
struct Cli {
    /// The config file (default: ./tally.toml if present, else the built-in default).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address to listen on, e.g. 127.0.0.1:9090 (default: $TALLY_LISTEN, else server.listen).
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// A SQLite file, or a postgres:// URL (default: $TALLY_DATABASE, else $TALLY_DATABASE_URL,
    /// else [database] path or url).
    #[arg(long, global = true, value_name = "PATH|URL")]
    database: Option<String>,
    /// Log lines as plain text or one JSON object each (default: server.log_format).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (prints `listening on http://ADDR` first).
    Serve,
    /// Apply database migrations, then exit.
    Migrate,
    /// Validate the config, then exit (status 2 if it is refused).
    CheckConfig,
    /// Print `sha256:HEX` of a key read from stdin, for the config's key lists.
    HashKey,
    /// Copy the live database to PATH, consistently, while it serves (SQLite).
    Backup {
        /// Where to write the copy (must not exist yet).
        path: PathBuf,
    },
    /// Copy the configured SQLite database into an empty PostgreSQL database, and verify it.
    CopyDb {
        /// The target, postgres://USER:PASSWORD@HOST:5432/DATABASE (its tables must be empty).
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::HashKey = cli.command {
        return tally::cli::hash_key().unwrap_or_else(|error| {
            eprintln!("tally: {error:#}");
            ExitCode::FAILURE
        });
    }
    let overrides = Overrides { listen: cli.listen, database: cli.database };
    let mut config = match Config::load(cli.config.as_deref(), &overrides, &process_env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tally: config refused: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(format) = cli.log_format {
        config.server.log_format = match format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    tally::logging::init(config.server.log_format);
    let result = match cli.command {
        Command::Serve => tally::cli::serve(config),
        Command::Migrate => tally::cli::migrate(&config),
        Command::CheckConfig => tally::cli::check_config(&config),
        Command::Backup { path } => tally::cli::backup(&config, &path),
        Command::CopyDb { to } => tally::cli::copy_db(&config, &to),
        Command::HashKey => unreachable!("handled before the config is loaded"),
    };
    result.unwrap_or_else(|error| {
        eprintln!("tally: {error:#}");
        ExitCode::FAILURE
    })
}
