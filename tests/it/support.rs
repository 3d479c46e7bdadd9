//! Test support: start the real `tally` binary on a temp dir, a temp database and port 0, and
//! talk to it with a small keep-alive HTTP/1.1 client that can also send malformed requests.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_tally");

/// The variables the config reads: cleared for every child, so a developer's shell (or the
/// suite's own PostgreSQL run) cannot change what a test starts. Tests set them explicitly.
const SETTINGS_FROM_ENV: &[&str] = &[
    "ADMIN_USER_IDS",
    "USAGE_TRACKING_ENABLED",
    "TELEMETRY_ENABLED",
    "TALLY_LISTEN",
    "TALLY_DATABASE",
    "TALLY_DATABASE_URL",
];

/// `command` without any of `SETTINGS_FROM_ENV`.
pub fn without_settings_env(command: &mut Command) -> &mut Command {
    for name in SETTINGS_FROM_ENV {
        command.env_remove(name);
    }
    command
}

/// The keys of `start_with_keys`: a service key, and an admin key named "ops".
pub const SERVICE_KEY: &str = "service-key-for-tests";
pub const ADMIN_KEY: &str = "admin-key-for-tests";

/// A server with a service key and an admin key named "ops".
pub fn start_with_keys() -> Tally {
    Setup::new()
        .config(&format!(
            "[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\nadmin_keys = [{{ name = \"ops\", key = \"{ADMIN_KEY}\" }}]\n"
        ))
        .start()
}

/// Six users on three plans with usage this month, for tests that compare admin numbers:
/// totals prompts 12,725, e2e_runs 3, bytes_out 1,500,000,000; "idle" has no usage.
pub fn seed_six_users(client: &mut Client) {
    for (user, plan) in [("sol", "solo"), ("tim", "teams"), ("idle", "teams")] {
        assert_eq!(client.put(&format!("/v1/users/{user}"), &serde_json::json!({ "plan": plan })).status, 200);
    }
    track(client, "ann", "prompts", 20);
    track(client, "bob", "prompts", 5);
    track(client, "sol", "prompts", 12_000);
    track(client, "tim", "prompts", 700);
    track(client, "tim", "bytes_out", 1_500_000_000);
    track(client, "ann", "e2e_runs", 3);
}

/// Tracks `amount` and insists on a 200.
pub fn track(client: &mut Client, user: &str, metric: &str, amount: u64) {
    let reply = client.post("/v1/track", &usage(user, metric, serde_json::json!({ "amount": amount })));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
}

/// How to start a server: extra config lines per section, and environment variables.
#[derive(Clone, Default)]
pub struct Setup {
    /// SQLite even when the suite runs on PostgreSQL (a copy-db source).
    sqlite: bool,
    server: String,
    database: String,
    rest: String,
    env: Vec<(String, String)>,
}

impl Setup {
    pub fn new() -> Setup {
        Setup::default()
    }

    /// Keeps the data in a SQLite file whatever backend the suite runs on.
    pub fn sqlite(mut self) -> Setup {
        self.sqlite = true;
        self
    }

    /// Lines for the [server] section.
    pub fn server(mut self, lines: &str) -> Setup {
        self.server.push_str(lines);
        self.server.push('\n');
        self
    }

    /// Lines for the [database] section (besides `path`).
    pub fn database(mut self, lines: &str) -> Setup {
        self.database.push_str(lines);
        self.database.push('\n');
        self
    }

    /// Whole sections other than [server] and [database].
    pub fn config(mut self, text: &str) -> Setup {
        self.rest.push_str(text);
        self.rest.push('\n');
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Setup {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn start(self) -> Tally {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Tally::start_in(dir, self)
    }

    /// Starts another node on `other`'s database (PostgreSQL: several Tally processes on one
    /// database), in a directory of its own.
    pub fn start_sharing(self, other: &Tally) -> Tally {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let url = std::fs::read_to_string(other.dir.path().join("database_url")).expect("a PostgreSQL test server");
        std::fs::write(dir.path().join("database_url"), url).expect("share the database");
        Tally::start_in(dir, self)
    }

    /// Runs `tally serve` in `dir` expecting it to refuse to start; returns its exit status
    /// and stderr.
    pub fn start_refused_in(self, dir: &Path) -> (ExitStatus, String) {
        let config_path = write_config(dir, &self);
        let output = without_settings_env(&mut Command::new(BIN))
            .args(["serve", "--config"])
            .arg(&config_path)
            .envs(self.env.iter().map(|(name, value)| (name.as_str(), value.as_str())))
            .stdin(Stdio::null())
            .current_dir(dir)
            .output()
            .expect("run tally");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.is_empty(), "it printed a listening line: {stdout}");
        (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A running `tally serve`, killed when dropped.
pub struct Tally {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub addr: SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    setup: Setup,
}

impl Tally {
    pub fn start_default() -> Tally {
        Setup::new().start()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tally.toml")
    }

    fn start_in(dir: Arc<tempfile::TempDir>, setup: Setup) -> Tally {
        Tally::start_with_command(setup, dir, Command::new(BIN))
    }

    /// Starts `tally serve` through `command` (e.g. a wrapper that runs it as another user).
    pub fn start_with_command(setup: Setup, dir: Arc<tempfile::TempDir>, mut command: Command) -> Tally {
        let config_path = write_config(dir.path(), &setup);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("stderr.log"))
            .expect("stderr log");
        without_settings_env(&mut command)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .current_dir(dir.path());
        for (name, value) in &setup.env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn tally");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the first line");
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            panic!("tally did not start: first line {line:?}\nstderr:\n{log}");
        };
        let addr = addr.parse().expect("address on the first line");
        Tally { child, _stdout: stdout, addr, dir, setup }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.child.wait().expect("wait for tally")
    }

    /// Kills the process (SIGKILL) and starts it again on the same directory and database.
    pub fn restart(mut self) -> Tally {
        self.kill();
        let dir = Arc::clone(&self.dir);
        let setup = self.setup.clone();
        drop(self);
        Tally::start_in(dir, setup)
    }

    /// Like `restart`, with a different setup (config and environment).
    pub fn restart_with(mut self, setup: Setup) -> Tally {
        self.kill();
        let dir = Arc::clone(&self.dir);
        drop(self);
        Tally::start_in(dir, setup)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. "TERM") and waits for the exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        assert!(status.expect("run kill").success());
        self.child.wait().expect("wait for tally")
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.kill();
    }
}

fn write_config(dir: &Path, setup: &Setup) -> PathBuf {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[database]\n{}{}\n{}",
        setup.server,
        if setup.sqlite {
            format!("path = {:?}\n", dir.join("tally.db").display().to_string())
        } else {
            crate::backend::database_lines(dir)
        },
        setup.database,
        setup.rest
    );
    let config_path = dir.join("tally.toml");
    std::fs::write(&config_path, config).expect("write config");
    config_path
}

/// Runs `tally ARGS` to completion.
pub fn run_tally(args: &[&str], cwd: &Path) -> (ExitStatus, String, String) {
    let output = without_settings_env(&mut Command::new(BIN)).args(args).current_dir(cwd).output().expect("run tally");
    (output.status, String::from_utf8_lossy(&output.stdout).into(), String::from_utf8_lossy(&output.stderr).into())
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The `error.code` of an error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// A keep-alive HTTP/1.1 client over one TCP connection (reopened when the server closes).
pub struct Client {
    addr: SocketAddr,
    key: Option<String>,
    stream: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client { addr, key: None, stream: None }
    }

    pub fn with_key(mut self, key: &str) -> Client {
        self.key = Some(key.to_owned());
        self
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, &[], None)
    }

    pub fn post(&mut self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, &[("Content-Type", "application/json")], Some(body.to_string().as_bytes()))
    }

    pub fn put(&mut self, path: &str, body: &Value) -> Reply {
        self.request("PUT", path, &[("Content-Type", "application/json")], Some(body.to_string().as_bytes()))
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {}\r\n", self.addr));
        }
        if let Some(key) = &self.key {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        self.send_raw(&bytes)
    }

    /// Writes `bytes` as they are and reads one response.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Reply {
        self.try_send_raw(bytes).expect("request and response")
    }

    /// `send_raw` that reports I/O failures (a refused or reset connection) instead of panicking.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<Reply> {
        if self.stream.as_ref().is_some_and(|stream| peer_closed(stream.get_ref())) {
            self.stream = None;
        }
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(self.addr)?;
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                self.stream.insert(BufReader::new(stream))
            }
        };
        let result = stream.get_mut().write_all(bytes).and_then(|()| try_read_reply(stream));
        // After `Connection: close` the server closes (e.g. a body it did not read): the
        // next request needs a new connection.
        if result.as_ref().is_ok_and(|reply| reply.header("connection").is_some_and(|value| value == "close"))
            || result.is_err()
        {
            self.stream = None;
        }
        result
    }
}

/// Whether the server has closed an idle keep-alive connection (after its head deadline),
/// so the next request must open a new one.
pub fn peer_closed(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let closed = match stream.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).expect("blocking");
    closed
}

pub fn read_reply(stream: &mut BufReader<TcpStream>) -> Reply {
    try_read_reply(stream).expect("read a response")
}

pub fn try_read_reply(stream: &mut BufReader<TcpStream>) -> std::io::Result<Reply> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad(format!("no status line, got {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').ok_or_else(|| bad(format!("bad header {trimmed:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let chunked = headers
        .iter()
        .any(|(name, value)| name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked"));
    if chunked {
        let body = read_chunked(stream)?;
        return Ok(Reply { status, headers, body });
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.parse().map_err(|_| bad(format!("bad content-length {value:?}"))))
        .transpose()?
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(Reply { status, headers, body })
}

/// A `Transfer-Encoding: chunked` body (a streamed answer), to its last chunk.
fn read_chunked(stream: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        let size_text = line.trim_end().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, then the blank line that ends the body.
            loop {
                line.clear();
                stream.read_line(&mut line)?;
                if line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream.read_exact(&mut body[start..])?;
        line.clear();
        stream.read_line(&mut line)?;
    }
}

/// The bytes of a keep-alive `POST path` with a JSON `body`, for `Client::try_send_raw`
/// and raw sockets.
pub fn raw_post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// `{"user_id": user, "metric": metric}` plus `extra` fields.
pub fn usage(user: &str, metric: &str, extra: Value) -> Value {
    let mut body = serde_json::json!({ "user_id": user, "metric": metric });
    if let Value::Object(fields) = extra {
        body.as_object_mut().unwrap().extend(fields);
    }
    body
}

/// A user id no other test uses.
pub fn unique_user(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The Python the tests run, with the packages scripts/install-python.sh installs (the
/// webhook verifiers, http-sf).
pub fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/python-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/install-python.sh (./scripts/test.sh does)",
        python.display()
    );
    python
}
