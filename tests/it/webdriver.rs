//! A small synchronous W3C WebDriver client over std `TcpStream` and serde_json, enough to
//! drive Debian's headless Chromium through chromedriver: start chromedriver on a free port,
//! open a session, navigate, find elements, type, click, read, take screenshots. Both
//! processes die with the values that own them.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key that names an element in a response.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long to wait for chromedriver to start, a page to change, an element to appear.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Panics (fails the test, never skips it) when the browser is not installed.
fn require_browser() {
    for binary in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(binary).exists(),
            "{binary} is missing: the dashboard's browser test needs Chromium and chromedriver. \
             Run scripts/install-browser.sh (scripts/test.sh runs it first)."
        );
    }
}

/// Polls `probe` until it returns `Some`, for at most `PATIENCE`; panics with `what` after.
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "gave up after {PATIENCE:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// One HTTP/1.1 exchange with chromedriver on its own connection: (status, JSON body).
/// chromedriver keeps the socket open after answering, so the body is read by its length.
fn exchange(port: u16, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
    }
    let mut payload = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            payload.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = length {
        payload.resize(length, 0);
        reader.read_exact(&mut payload)?;
    } else {
        reader.read_to_end(&mut payload)?;
    }
    Ok((status, serde_json::from_slice(&payload).unwrap_or(Value::Null)))
}

/// A running chromedriver, killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Driver {
    pub fn start() -> Driver {
        require_browser();
        // The port is picked free and then released, so another process may take it first:
        // chromedriver then exits at once, and another port is tried.
        let mut attempt = 1;
        loop {
            let dir = tempfile::tempdir().expect("temp dir for chromedriver");
            let log = dir.path().join("chromedriver.log");
            let port =
                TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("free port").port();
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| {
                    panic!("cannot start {CHROMEDRIVER} ({error}); run scripts/install-browser.sh")
                });
            // Owned from here on, so a failed wait still kills it.
            let mut driver = Driver { child, port, dir };
            let exited = wait_for("chromedriver to report ready on /status", || {
                if let Ok(Some(status)) = driver.child.try_wait() {
                    return Some(Some(status));
                }
                match exchange(port, "GET", "/status", None) {
                    Ok((200, body)) if body["value"]["ready"] == true => Some(None),
                    _ => None,
                }
            });
            let Some(status) = exited else {
                return driver;
            };
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(attempt < 3, "chromedriver exited with {status} before it was ready:\n{log}");
            eprintln!("chromedriver exited with {status} on port {port}; trying another port:\n{log}");
            attempt += 1;
        }
    }

    /// A new headless Chromium session with a fresh profile.
    pub fn browser(&self, width: u32, height: u32) -> Browser<'_> {
        let profile = self.dir.path().join(format!("profile-{}", crate::support::unique_user("p")));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let (status, body) = exchange(self.port, "POST", "/session", Some(&capabilities)).expect("POST /session");
        let session = body["value"]["sessionId"].as_str().map(str::to_owned);
        let Some(session) = session.filter(|_| status == 200) else {
            panic!("chromedriver could not start Chromium ({status}): {body}");
        };
        Browser { driver: self, session }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session; closed (and Chromium ended) on drop.
pub struct Browser<'d> {
    driver: &'d Driver,
    session: String,
}

/// An element found in the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser<'_> {
    /// Sends a command; panics with chromedriver's message when it fails.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body).unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    fn try_command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let full = format!("/session/{}{path}", self.session);
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        match exchange(self.driver.port, method, &full, body.as_ref()) {
            Ok((200, body)) => Ok(body["value"].clone()),
            Ok((status, body)) => Err(format!("status {status}: {}", body["value"])),
            Err(error) => Err(error.to_string()),
        }
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.command("GET", "/url", None).as_str().unwrap_or_default().to_owned()
    }

    /// Waits (bounded) until the current URL satisfies `accept`; returns it.
    pub fn wait_for_url(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        wait_for(what, || Some(self.url()).filter(|url| accept(url)))
    }

    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.command("POST", "/elements", Some(json!({ "using": "css selector", "value": css })));
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|element| element[ELEMENT_KEY].as_str())
                    .map(|id| Element(id.into()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting (bounded) for it to appear.
    pub fn find(&self, css: &str) -> Element {
        wait_for(&format!("an element matching {css:?}"), || self.find_all(css).into_iter().next())
    }

    pub fn text(&self, element: &Element) -> String {
        self.command("GET", &format!("/element/{}/text", element.0), None).as_str().unwrap_or_default().to_owned()
    }

    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.command("GET", &format!("/element/{}/attribute/{name}", element.0), None).as_str().map(str::to_owned)
    }

    pub fn click(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/click", element.0), None);
    }

    pub fn send_keys(&self, element: &Element, text: &str) {
        self.command("POST", &format!("/element/{}/value", element.0), Some(json!({ "text": text })));
    }

    pub fn set_window_size(&self, width: u32, height: u32) {
        self.command("POST", "/window/rect", Some(json!({ "width": width, "height": height })));
    }

    /// Runs `script` in the page (WebDriver's own channel, not subject to the page's CSP).
    pub fn execute(&self, script: &str) -> Value {
        self.command("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let encoded = self.command("GET", "/screenshot", None);
        base64_decode(encoded.as_str().unwrap_or_default()).expect("the screenshot is base64")
    }

    /// A PNG of the whole page at `width`: the window grows to the page's height first.
    pub fn full_page_screenshot(&self, width: u32) -> Vec<u8> {
        self.set_window_size(width, 900);
        let height = self.execute("return document.documentElement.scrollHeight;").as_u64().unwrap_or(900);
        let chrome = self.execute("return window.outerHeight - window.innerHeight;").as_u64().unwrap_or(0);
        self.set_window_size(width, (height + chrome).clamp(300, 8000) as u32);
        self.screenshot()
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = exchange(self.driver.port, "DELETE", &format!("/session/{}", self.session), None);
    }
}

/// Standard base64 (with padding) to bytes.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(byte: u8) -> Option<u32> {
        match byte {
            b'A'..=b'Z' => Some(u32::from(byte - b'A')),
            b'a'..=b'z' => Some(u32::from(byte - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(byte - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes: Vec<u8> = text.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().take_while(|byte| *byte != b'=').collect();
        let mut bits = 0u32;
        for byte in &data {
            bits = bits << 6 | value(*byte)?;
        }
        bits <<= 6 * (4 - data.len() as u32);
        let produced = match data.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&bits.to_be_bytes()[1..=produced]);
    }
    Some(out)
}

#[test]
fn base64_decodes_padded_and_unpadded_tails() {
    assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
    assert_eq!(base64_decode("aGV5").unwrap(), b"hey");
    assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
    assert!(base64_decode("a$==").is_none());
}
