//! The load generator: one thread per connection, the same for every system measured (Tally
//! over HTTP, the constant-body HTTP server, Redis with a Lua script, PostgreSQL with an
//! upsert), so the figures compare. Closed loop without `--rate` (each connection sends its
//! next request when the last is answered: peak throughput); open loop with `--rate` (each
//! request has an intended send time, and its latency is counted from that time, so a stall
//! shows in the percentiles instead of hiding: no coordinated omission). Prints one JSON line.

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Target {
    /// HTTP/1.1 keep-alive (Tally or the ceiling server).
    Http,
    /// Redis: EVALSHA of a check-and-increment Lua script.
    Redis,
    /// PostgreSQL: a conditional INSERT ... ON CONFLICT DO UPDATE ... RETURNING.
    Postgres,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Op {
    /// POST /v1/track (or the store's increment).
    Track,
    /// POST /v1/check.
    Check,
    /// 80% check, 20% track.
    Mixed,
    /// POST / with a small JSON body to a server that answers a constant body.
    Ceiling,
    /// POST /v1/track/batch with `--batch-size` tracks per request.
    Batch,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum)]
    target: Target,
    #[arg(long, value_enum, default_value = "track")]
    op: Op,
    /// host:port; for HTTP, several separated by commas spread the connections over them
    /// round-robin (several Tally nodes on one database).
    #[arg(long)]
    addr: String,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Requests per second over all connections (open loop); closed loop when absent.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Tracks per request of `--op batch`.
    #[arg(long, default_value_t = 100)]
    batch_size: u64,
    /// A label for the result line.
    #[arg(long, default_value = "")]
    label: String,
}

/// One connection to the system under test.
trait Conn {
    /// Performs request `n`; returns how many operations it did that succeeded (a 2xx, the
    /// store's increment applied, or a batch's results of 200): 0 when none did.
    fn call(&mut self, n: u64, track: bool) -> Result<u64>;
}

struct HttpConn {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
    op: Op,
    users: u64,
    batch_size: u64,
    line: String,
    body: Vec<u8>,
    request: Vec<u8>,
}

impl HttpConn {
    fn take_stream(&mut self) -> Result<BufReader<TcpStream>> {
        if let Some(stream) = self.stream.take() {
            return Ok(stream);
        }
        let stream = TcpStream::connect(&self.addr).with_context(|| format!("connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        Ok(BufReader::with_capacity(16 * 1024, stream))
    }
}

impl Conn for HttpConn {
    fn call(&mut self, n: u64, track: bool) -> Result<u64> {
        let (path, body) = match self.op {
            Op::Ceiling => ("/", "{\"user_id\":\"u0\",\"metric\":\"prompts\"}".to_owned()),
            Op::Batch => {
                // Request n carries tracks n * size .. (n + 1) * size, spread over the users.
                let mut body = String::from("{\"events\":[");
                for index in 0..self.batch_size {
                    let user = (n * self.batch_size + index) % self.users;
                    let comma = if index == 0 { "" } else { "," };
                    std::fmt::Write::write_fmt(
                        &mut body,
                        format_args!("{comma}{{\"user_id\":\"u{user}\",\"metric\":\"prompts\"}}"),
                    )?;
                }
                body.push_str("]}");
                ("/v1/track/batch", body)
            }
            _ => {
                let path = if track { "/v1/track" } else { "/v1/check" };
                (path, format!("{{\"user_id\":\"u{}\",\"metric\":\"prompts\"}}", n % self.users))
            }
        };
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut stream = self.take_stream()?;
        stream.get_mut().write_all(&self.request)?;
        self.line.clear();
        if stream.read_line(&mut self.line)? == 0 {
            bail!("the server closed the connection");
        }
        let status: u16 =
            self.line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).context("status line")?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            stream.read_line(&mut self.line)?;
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        self.body.resize(length, 0);
        stream.read_exact(&mut self.body)?;
        self.stream = Some(stream);
        if !(200..300).contains(&status) {
            return Ok(0);
        }
        Ok(match self.op {
            Op::Batch => count(&self.body, b"\"status\":200,") as u64,
            _ => 1,
        })
    }
}

/// How often `needle` occurs in `haystack`.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|window| *window == needle).count()
}

const LUA: &str = "local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if used + amount > tonumber(ARGV[2]) then return -1 end
return redis.call('INCRBY', KEYS[1], amount)";

struct RedisConn {
    connection: redis::Connection,
    script: redis::Script,
    users: u64,
}

impl Conn for RedisConn {
    fn call(&mut self, n: u64, _track: bool) -> Result<u64> {
        let key = format!("u{}:2026-11:prompts", n % self.users);
        let value: i64 = self.script.key(key).arg(1).arg(1_000_000_000_000i64).invoke(&mut self.connection)?;
        Ok(u64::from(value >= 0))
    }
}

struct PostgresConn {
    client: postgres::Client,
    statement: postgres::Statement,
    users: u64,
}

pub const POSTGRES_UPSERT: &str =
    "INSERT INTO usage_counters (user_id, period, metric, value) VALUES ($1, '2026-11', 'prompts', 1)
     ON CONFLICT (user_id, period, metric) DO UPDATE SET value = usage_counters.value + 1
     WHERE usage_counters.value + 1 <= 1000000000000 RETURNING value";

impl Conn for PostgresConn {
    fn call(&mut self, n: u64, _track: bool) -> Result<u64> {
        let user = format!("u{}", n % self.users);
        let rows = self.client.query(&self.statement, &[&user])?;
        Ok(u64::from(!rows.is_empty()))
    }
}

fn open(args: &Args, index: usize) -> Result<Box<dyn Conn>> {
    Ok(match args.target {
        Target::Http => Box::new(HttpConn {
            addr: {
                let addrs: Vec<&str> = args.addr.split(',').collect();
                addrs[index % addrs.len()].to_owned()
            },
            stream: None,
            op: args.op,
            users: args.users,
            batch_size: args.batch_size,
            line: String::with_capacity(256),
            body: Vec::with_capacity(512),
            request: Vec::with_capacity(256),
        }),
        Target::Redis => Box::new(RedisConn {
            connection: redis::Client::open(format!("redis://{}/", args.addr))?.get_connection()?,
            script: redis::Script::new(LUA),
            users: args.users,
        }),
        Target::Postgres => {
            let (host, port) = args.addr.split_once(':').context("addr is host:port")?;
            let mut client = postgres::Client::connect(
                &format!("host={host} port={port} user=postgres dbname=postgres"),
                postgres::NoTls,
            )?;
            let statement = client.prepare(POSTGRES_UPSERT)?;
            Box::new(PostgresConn { client, statement, users: args.users })
        }
    })
}

struct Outcome {
    histogram: Histogram<u64>,
    ok: u64,
    failed: u64,
    errors: u64,
    tracked_ok: u64,
}

fn run_connection(args: &Args, index: usize, start: Instant, deadline: Instant) -> Result<Outcome> {
    let mut connection = open(args, index)?;
    let mut outcome = Outcome {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        ok: 0,
        failed: 0,
        errors: 0,
        tracked_ok: 0,
    };
    let interval = args.rate.map(|rate| Duration::from_secs_f64(args.connections as f64 / rate));
    let mut sequence: u64 = 0;
    loop {
        // Spread connections over users: connection i sends users i, i + C, i + 2C, ...
        let n = index as u64 + sequence * args.connections as u64;
        let intended = match interval {
            Some(interval) => {
                // Stagger the connections' schedules across one interval.
                let offset = interval.mul_f64(index as f64 / args.connections as f64);
                let at = start + offset + interval.mul_f64(sequence as f64);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                at
            }
            None => Instant::now(),
        };
        if intended >= deadline {
            break;
        }
        let track = match args.op {
            Op::Track | Op::Batch => true,
            Op::Check | Op::Ceiling => false,
            Op::Mixed => n.is_multiple_of(5),
        };
        match connection.call(n, track) {
            Ok(0) => outcome.failed += 1,
            Ok(done) => {
                outcome.ok += 1;
                if track || args.target != Target::Http {
                    outcome.tracked_ok += done;
                }
            }
            Err(_) => outcome.errors += 1,
        }
        let micros = intended.elapsed().as_micros().max(1) as u64;
        outcome.histogram.record(micros.min(60_000_000))?;
        sequence += 1;
    }
    Ok(outcome)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let start = Instant::now() + Duration::from_millis(100);
    let deadline = start + Duration::from_secs_f64(args.duration);
    let outcomes: Vec<Result<Outcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.connections)
            .map(|index| {
                let args = &args;
                scope.spawn(move || {
                    let now = Instant::now();
                    if start > now {
                        std::thread::sleep(start - now);
                    }
                    run_connection(args, index, start, deadline)
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().expect("connection thread")).collect()
    });
    let elapsed = Instant::now().saturating_duration_since(start).as_secs_f64().min(args.duration).max(0.001);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut ok, mut failed, mut errors, mut tracked_ok) = (0, 0, 0, 0);
    for outcome in outcomes {
        let outcome = outcome?;
        histogram.add(&outcome.histogram)?;
        ok += outcome.ok;
        failed += outcome.failed;
        errors += outcome.errors;
        tracked_ok += outcome.tracked_ok;
    }
    let requests = ok + failed + errors;
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "{}",
        json!({
            "label": args.label,
            "target": format!("{:?}", args.target).to_lowercase(),
            "op": format!("{:?}", args.op).to_lowercase(),
            "connections": args.connections,
            "rate": args.rate,
            "duration_s": elapsed,
            "requests": requests,
            "ok": ok,
            "tracked_ok": tracked_ok,
            "failed": failed,
            "errors": errors,
            "throughput": requests as f64 / elapsed,
            "tracked_per_s": tracked_ok as f64 / elapsed,
            "p50_ms": ms(0.50),
            "p99_ms": ms(0.99),
            "p999_ms": ms(0.999),
            "max_ms": histogram.max() as f64 / 1000.0,
        })
    );
    Ok(())
}
