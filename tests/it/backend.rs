//! Which database the suite runs on. `./scripts/test.sh` runs it twice: on SQLite (the
//! default), then under `scripts/with-postgres.sh`, which sets `TALLY_TEST_DATABASE_URL`
//! (and `TALLY_TEST_PG_ADMIN_URL`, a superuser URL on the same server). On PostgreSQL every
//! test server gets a database of its own, created here, so tests stay independent.

use std::path::Path;

/// The test database URL when the suite runs on PostgreSQL.
pub fn postgres_url() -> Option<String> {
    std::env::var("TALLY_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty())
}

pub fn is_postgres() -> bool {
    postgres_url().is_some()
}

/// For a test of what only SQLite has (a file to corrupt, `VACUUM INTO` backups, ...): true
/// when the suite runs on SQLite; on PostgreSQL it says the test does not apply and the
/// caller returns.
pub fn sqlite_only(what: &str) -> bool {
    if is_postgres() {
        eprintln!("SQLite-only test ({what}): not run on PostgreSQL");
        return false;
    }
    true
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let base = base.rsplit_once('/').map_or(base, |(base, _)| base);
    format!("{base}/{name}{query}")
}

/// A new, empty database owned by the test role, for one test server.
pub fn create_database() -> String {
    let url = postgres_url().expect("TALLY_TEST_DATABASE_URL");
    let admin = std::env::var("TALLY_TEST_PG_ADMIN_URL").unwrap_or_else(|_| url.clone());
    let owner = url.parse::<postgres::Config>().expect("a PostgreSQL URL").get_user().unwrap_or("tally").to_owned();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("connect as the admin");
    client.batch_execute(&format!("CREATE DATABASE {name} OWNER \"{owner}\"")).expect("create a test database");
    with_database(&url, &name)
}

/// The `[database]` lines that put a test server's data in `dir` (SQLite) or in the
/// database made for `dir` (PostgreSQL, remembered in `dir/database_url` for restarts).
pub fn database_lines(dir: &Path) -> String {
    if !is_postgres() {
        return format!("path = {:?}\n", dir.join("tally.db").display().to_string());
    }
    let remembered = dir.join("database_url");
    let url = match std::fs::read_to_string(&remembered) {
        Ok(url) => url,
        Err(_) => {
            let url = create_database();
            std::fs::write(&remembered, &url).expect("remember the database");
            url
        }
    };
    format!("url = {url:?}\n")
}

/// Every value of every row of every table of the server's database, as text, one per line
/// (`table: value`): for tests that must prove something is stored nowhere.
pub fn stored_text(dir: &Path) -> String {
    let mut dump = String::new();
    if is_postgres() {
        let url = std::fs::read_to_string(dir.join("database_url")).expect("the test database");
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        let tables: Vec<String> = client
            .query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()", &[])
            .expect("list tables")
            .iter()
            .map(|row| row.get(0))
            .collect();
        for table in tables {
            // Each row as its text form holds every column's value.
            for row in client.query(&format!("SELECT t::text FROM \"{table}\" t"), &[]).expect("read a table") {
                let text: String = row.get(0);
                dump.push_str(&format!("{table}: {text}\n"));
            }
        }
        return dump;
    }
    let db = rusqlite::Connection::open_with_flags(dir.join("tally.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database");
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for table in &tables {
        let mut statement = db.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = statement.column_count();
        let mut rows = statement.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for column in 0..columns {
                let value = match row.get_ref(column).unwrap() {
                    rusqlite::types::ValueRef::Text(bytes) | rusqlite::types::ValueRef::Blob(bytes) => {
                        String::from_utf8_lossy(bytes).into_owned()
                    }
                    other => format!("{other:?}"),
                };
                dump.push_str(&format!("{table}: {value}\n"));
            }
        }
    }
    dump
}

/// Runs `sql` (statements both SQLite and PostgreSQL accept) on the server's database in
/// `dir`, beside the running server: for seeding more rows than the API could send quickly.
pub fn run_sql(dir: &Path, sql: &str) {
    if is_postgres() {
        let url = std::fs::read_to_string(dir.join("database_url")).expect("the test database");
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client.batch_execute(sql).expect("run SQL");
    } else {
        let db = rusqlite::Connection::open(dir.join("tally.db")).expect("open the database");
        db.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
        db.execute_batch(sql).expect("run SQL");
    }
}

/// The value of `SELECT count(*) ...` on the server's database in `dir`.
pub fn count(dir: &Path, sql: &str) -> i64 {
    if is_postgres() {
        let url = std::fs::read_to_string(dir.join("database_url")).expect("the test database");
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client.query_one(sql, &[]).expect("count").get(0)
    } else {
        let db = rusqlite::Connection::open(dir.join("tally.db")).expect("open the database");
        db.query_row(sql, [], |row| row.get(0)).expect("count")
    }
}
