//! One scenario of `bench/run.sh webhooks` against a Tally already running with webhooks
//! configured: emits `--events` plan changes as fast as `--connections` keep-alive connections
//! can (each one a `plan_changed` event, so one delivery per receiver), waits until the
//! healthy receiver (bin/webhook_receiver.rs) has seen every event and the deliveries API
//! shows them delivered, then prints one JSON line: deliveries per second from the first
//! arrival to the last, the backlog drain (last event emitted to last delivered), and each
//! event's latency from its `at` in the database (unix ms, so up to 1 ms over) to its first
//! arrival. Starting and stopping the processes is run.sh's part.

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug)]
struct Args {
    /// Tally's host:port.
    #[arg(long)]
    tally: String,
    /// The healthy receiver's host:port.
    #[arg(long)]
    receiver: String,
    /// The healthy receiver's URL as configured in [[webhooks]] (deliveries are matched on it).
    #[arg(long)]
    url: String,
    /// Tally's SQLite file (read-only here): the events' ids and times.
    #[arg(long)]
    db: String,
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Events per second over all connections, on a fixed schedule; as fast as the
    /// connections go when absent. Below the sender's capacity, the latency is the sender's
    /// own, not the time spent queued behind a backlog.
    #[arg(long)]
    rate: Option<f64>,
    /// How long to wait for every delivery before giving up.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    #[arg(long, default_value = "")]
    label: String,
}

/// Users per emitting connection; a connection changes each of its users' plans in turn, so
/// no two connections race on one user and every request is a change (one event).
const USERS_PER_CONNECTION: usize = 64;
const PLANS: [&str; 2] = ["solo", "teams"];

/// One keep-alive HTTP/1.1 connection.
struct Http {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
    line: String,
}

impl Http {
    fn new(addr: &str) -> Http {
        Http { addr: addr.to_owned(), stream: None, line: String::new() }
    }

    /// Sends one request (a JSON body when given) and reads the whole answer.
    fn call(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, Vec<u8>)> {
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(&self.addr).with_context(|| format!("connect to {}", self.addr))?;
                stream.set_nodelay(true)?;
                BufReader::with_capacity(64 * 1024, stream)
            }
        };
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        if let Some(body) = body {
            request
                .push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            request.push_str("\r\n");
        }
        stream.get_mut().write_all(request.as_bytes())?;
        self.line.clear();
        if stream.read_line(&mut self.line)? == 0 {
            bail!("{} closed the connection", self.addr);
        }
        let status: u16 =
            self.line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).context("status line")?;
        let mut length = 0usize;
        let mut keep_alive = true;
        loop {
            self.line.clear();
            stream.read_line(&mut self.line)?;
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                } else if name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close") {
                    keep_alive = false;
                }
            }
        }
        let mut answer = vec![0; length];
        stream.read_exact(&mut answer)?;
        if keep_alive {
            self.stream = Some(stream);
        }
        Ok((status, answer))
    }

    fn get_json(&mut self, path: &str) -> Result<Value> {
        let (status, body) = self.call("GET", path, None)?;
        ensure!(status == 200, "GET {path}: HTTP {status}: {}", String::from_utf8_lossy(&body));
        Ok(serde_json::from_slice(&body)?)
    }
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_micros() as u64)
}

/// Emits `events` plan changes over `connections` connections, at `rate` a second in all
/// when given; the number refused.
fn emit(tally: &str, events: usize, connections: usize, rate: Option<f64>) -> Result<usize> {
    let start = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|connection| {
            let tally = tally.to_owned();
            // The first `events % connections` connections send one more.
            let count = events / connections + usize::from(connection < events % connections);
            std::thread::spawn(move || -> Result<usize> {
                let mut http = Http::new(&tally);
                let mut refused = 0;
                for n in 0..count {
                    if let Some(rate) = rate {
                        let due = start + Duration::from_secs_f64((n * connections + connection) as f64 / rate);
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    let user = format!("wh{connection}-{}", n % USERS_PER_CONNECTION);
                    let plan = PLANS[(n / USERS_PER_CONNECTION) % 2];
                    let body = format!("{{\"plan\":\"{plan}\"}}");
                    let (status, _) = http.call("POST", &format!("/v1/admin/users/{user}/plan"), Some(&body))?;
                    refused += usize::from(status != 200);
                }
                Ok(refused)
            })
        })
        .collect();
    let mut refused = 0;
    for thread in threads {
        refused += thread.join().map_err(|_| anyhow::anyhow!("an emitting thread panicked"))??;
    }
    Ok(refused)
}

/// Delivered deliveries to `url`, paging through the deliveries API.
fn delivered_to(http: &mut Http, url: &str) -> Result<usize> {
    let mut count = 0;
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(id) => format!("/v1/admin/webhooks/deliveries?status=delivered&limit=500&before={id}"),
            None => "/v1/admin/webhooks/deliveries?status=delivered&limit=500".to_owned(),
        };
        let page = http.get_json(&path)?;
        let rows = page["deliveries"].as_array().context("deliveries")?;
        count += rows.iter().filter(|row| row["url"] == url).count();
        match page["next_before"].as_i64() {
            Some(id) => before = Some(id),
            None => return Ok(count),
        }
    }
}

/// The sum and count of a Prometheus histogram in `/metrics`.
fn histogram_sum_count(metrics: &str, name: &str) -> (f64, f64) {
    let value = |suffix: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}_{suffix} ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (value("sum"), value("count"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);

    let emit_start_us = unix_micros();
    let refused = emit(&args.tally, args.events, args.connections, args.rate)?;
    let emit_end_us = unix_micros();
    ensure!(refused == 0, "{refused} plan changes were refused");

    let mut receiver = Http::new(&args.receiver);
    let stats = loop {
        let stats = receiver.get_json("/stats")?;
        if stats["distinct"].as_u64() >= Some(args.events as u64) {
            break stats;
        }
        ensure!(Instant::now() < deadline, "timed out: the receiver has {stats}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let first_us = stats["first_us"].as_u64().context("first_us")?;
    let last_us = stats["last_us"].as_u64().context("last_us")?;

    // The recorder writes outcomes shortly after the answers: wait for it.
    let mut tally = Http::new(&args.tally);
    let delivered = loop {
        let delivered = delivered_to(&mut tally, &args.url)?;
        if delivered >= args.events || Instant::now() >= deadline {
            break delivered;
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    let (_, arrivals) = receiver.call("GET", "/arrivals", None)?;
    let arrivals: HashMap<String, u64> = String::from_utf8(arrivals)?
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(id, micros)| Ok((id.to_owned(), micros.parse()?)))
        .collect::<Result<_>>()?;
    let database = rusqlite::Connection::open_with_flags(&args.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut statement = database.prepare("SELECT id, at FROM events WHERE type = 'plan_changed'")?;
    let events: Vec<(String, i64)> =
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let after_emit = arrivals.values().filter(|arrived| **arrived > emit_end_us).count();
    let mut missing = 0usize;
    for (id, at_ms) in &events {
        match arrivals.get(id) {
            Some(arrived) => latency_us.record(arrived.saturating_sub(*at_ms as u64 * 1000).max(1))?,
            None => missing += 1,
        }
    }

    let (_, metrics) = tally.call("GET", "/metrics", None)?;
    let metrics = String::from_utf8_lossy(&metrics);
    let (jobs, groups) = histogram_sum_count(&metrics, "tally_writer_batch_size");

    let span_s = (last_us - first_us) as f64 / 1e6;
    let ms = |micros: u64| micros as f64 / 1000.0;
    let line = json!({
        "label": args.label,
        "events": args.events,
        "connections": args.connections,
        "rate": args.rate,
        "emitted_per_s": args.events as f64 / ((emit_end_us - emit_start_us) as f64 / 1e6),
        "events_in_database": events.len(),
        "distinct_delivered": arrivals.len(),
        "receiver_requests": stats["requests"],
        "missing": missing,
        "delivered_in_api": delivered,
        "deliveries_per_s": (arrivals.len() - 1) as f64 / span_s,
        "emit_s": (emit_end_us - emit_start_us) as f64 / 1e6,
        "first_to_last_delivery_s": span_s,
        "drain_after_last_emit_s": last_us.saturating_sub(emit_end_us) as f64 / 1e6,
        // The backlog left when emission stopped, over the time it took: the sender's rate with
        // the emitter's load gone.
        "backlog_at_last_emit": after_emit,
        "drain_per_s": if last_us > emit_end_us { after_emit as f64 / ((last_us - emit_end_us) as f64 / 1e6) } else { 0.0 },
        "latency_p50_ms": ms(latency_us.value_at_quantile(0.50)),
        "latency_p99_ms": ms(latency_us.value_at_quantile(0.99)),
        "latency_max_ms": ms(latency_us.max()),
        "writer_jobs_per_group": if groups > 0.0 { jobs / groups } else { 0.0 },
        "writer_groups": groups,
    });
    println!("{line}");
    ensure!(
        events.len() == args.events && missing == 0 && delivered == args.events,
        "not every event was delivered: {line}"
    );
    Ok(())
}
