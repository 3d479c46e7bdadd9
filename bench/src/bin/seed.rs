//! Builds a large Tally database for the scale benchmark: `seed --db PATH --users N --months M`
//! writes N users on the default plans, each with a counter per metric for each of the last M
//! months (the current one included), then the rollups the admin views read. It migrates the
//! file with Tally's own migrations first, so the schema is the server's.

use anyhow::{Context, Result};
use clap::Parser;
use rusqlite::{Connection, params};
use std::path::PathBuf;
use tally::config::{Config, process_env};
use tally::domain::period::Period;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    db: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    #[arg(long, default_value_t = 12)]
    months: u32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let toml = format!("[database]\npath = {:?}\n", args.db.display().to_string());
    let config = Config::from_toml("seed", &toml, &process_env).map_err(|error| anyhow::anyhow!("{error}"))?;
    tally::store::migrate(&config.database)?;
    let mut db = Connection::open(&args.db)?;
    db.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let current = Period::of_unix_ms(now_ms);
    let periods: Vec<String> = (0..args.months).map(|back| current.months_before(back).to_string()).collect();
    let plans = ["trial", "solo", "teams"];
    let started = std::time::Instant::now();
    let batch = 20_000;
    let mut first = 0u64;
    while first < args.users {
        let last = (first + batch).min(args.users);
        let tx = db.transaction()?;
        {
            let mut user = tx.prepare_cached(
                "INSERT INTO users (id, uuid, user_id, plan, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )?;
            for n in first..last {
                let uuid = format!("00000000-0000-4000-8000-{n:012x}");
                let plan = match n % 10 {
                    0..=6 => plans[0],
                    7 | 8 => plans[1],
                    _ => plans[2],
                };
                user.execute(params![n as i64 + 1, uuid, format!("u{n}"), plan, now_ms])?;
            }
            // Counters in primary-key order (user, period, metric): appends, not random inserts.
            let mut counter = tx.prepare_cached(
                "INSERT INTO usage_counters (user_pk, period, metric, value, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )?;
            for n in first..last {
                for period in periods.iter().rev() {
                    for (index, metric) in ["bytes_out", "e2e_runs", "prompts"].iter().enumerate() {
                        // A skewed, deterministic spread: a few heavy users, many light ones.
                        // Never 0: the store writes no zero counters, and the active-user
                        // rollup counts a counter row as activity.
                        let value =
                            (1 + (n * 7919 + index as u64 * 104_729) % 1000) * (1 + n.is_multiple_of(97) as u64 * 50);
                        counter.execute(params![n as i64 + 1, period, metric, value as i64, now_ms])?;
                    }
                }
            }
        }
        tx.commit()?;
        first = last;
        eprintln!("{first} users ({:.0} s)", started.elapsed().as_secs_f64());
    }
    drop(db);
    tally::store::rebuild_rollups(&config.database).context("rollups")?;
    eprintln!("seeded {} users x {} months in {:.0} s", args.users, args.months, started.elapsed().as_secs_f64());
    Ok(())
}
