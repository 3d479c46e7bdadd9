//! A real nginx (Debian's package) runs the README's `auth_request` snippet, as written, in
//! front of a small application that counts what reaches it: the client behind nginx sees
//! Tally's 429 with Retry-After and 403, and the application never sees a refused request.

use crate::gateway::start_gateway;
use crate::support::{Client, SERVICE_KEY, unique_user};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
const NGINX: &str = "/usr/sbin/nginx";

/// The ```nginx block of the README's "Enforcement at the proxy" section.
fn readme_snippet() -> &'static str {
    let section = &README[README.find("\n## Enforcement at the proxy").expect("the README's gateway section")..];
    let start = section.find("```nginx\n").expect("an nginx block in the gateway section") + "```nginx\n".len();
    let end = section[start..].find("```").expect("the block's end");
    &section[start..start + end]
}

/// `text` with `placeholder` (which must occur exactly once) replaced.
fn fill(text: &str, placeholder: &str, value: &str) -> String {
    assert_eq!(text.matches(placeholder).count(), 1, "the README's nginx snippet should hold {placeholder:?} once");
    text.replace(placeholder, value)
}

/// The application behind nginx: answers every request 200 "upstream" and keeps its request
/// lines.
fn start_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|read| read > 0) && line != "\r\n" {
                line.clear();
            }
            record.lock().unwrap().push(request_line.trim_end().to_owned());
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nupstream");
        }
    });
    (addr, seen)
}

struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx on a free loopback port, everything it writes in a temp prefix, in the foreground
/// and in one process (no master, no user switch), so it runs unprivileged and dies with `kill`.
fn start_nginx(snippet: &str) -> Nginx {
    assert!(Path::new(NGINX).exists(), "{NGINX} is missing: run ./scripts/install-nginx.sh (./scripts/test.sh does)");
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let snippet = fill(snippet, "listen 80;", &format!("listen {addr};"));
    let prefix = dir.path().display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {prefix}/client_body;\n  proxy_temp_path {prefix}/proxy;\n  \
         fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n\
         {snippet}\n}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let error_log = dir.path().join("error.log");
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(&error_log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let mut nginx = Nginx { child, addr, _dir: dir };
    // nginx prints nothing when it is ready: wait for its port to accept, or for it to exit.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = nginx.child.try_wait().unwrap() {
            panic!("nginx exited ({status}): {}", std::fs::read_to_string(&error_log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "nginx did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(10));
    }
    nginx
}

#[test]
fn gateway_nginx_runs_the_readme_snippet_30_prompts_pass_the_31st_is_429_and_refusals_never_reach_the_app() {
    let tally = start_gateway("allow");
    let (upstream, seen) = start_upstream();
    let snippet = fill(readme_snippet(), "127.0.0.1:8080", &tally.addr.to_string());
    let snippet = fill(&snippet, "127.0.0.1:3000", &upstream.to_string());
    let snippet = fill(&snippet, "YOUR_SERVICE_KEY", SERVICE_KEY);
    let nginx = start_nginx(&snippet);
    let seen_count = |prefix: &str| seen.lock().unwrap().iter().filter(|line| line.starts_with(prefix)).count();

    let user = unique_user("nginx");
    let mut client = Client::new(nginx.addr);
    for n in 1..=30 {
        let reply = client.request("POST", "/api/prompts", &[("X-User-Id", &user)], Some(b""));
        assert_eq!(reply.status, 200, "prompt {n}");
        assert_eq!(reply.body, b"upstream", "prompt {n} reached the application");
        let state = reply.header("ratelimit").expect("RateLimit through nginx");
        assert!(state.starts_with(&format!("\"prompts\";r={};t=", 30 - n)), "{state}");
        assert_eq!(reply.header("ratelimit-policy"), Some("\"prompts\";q=30"));
    }
    let refused = client.request("POST", "/api/prompts", &[("X-User-Id", &user)], Some(b""));
    assert_eq!(refused.status, 429, "{}", String::from_utf8_lossy(&refused.body));
    let retry_after: u64 = refused.header("retry-after").expect("Retry-After through nginx").parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(refused.header("ratelimit"), Some(format!("\"prompts\";r=0;t={retry_after}").as_str()));
    assert_eq!(seen_count("POST /api/prompts "), 30, "the refused prompt reached the application");

    // git_export is not in trial: nginx passes Tally's 403 on; the export never runs.
    let export = client.request("GET", "/api/export/repo.git", &[("X-User-Id", &user)], None);
    assert_eq!(export.status, 403);
    // No user header on a metered path: 401, not forwarded.
    assert_eq!(client.request("POST", "/api/prompts", &[], Some(b"")).status, 401);
    // A path no rule covers passes (default = "allow"), and a user on solo may export.
    assert_eq!(client.request("GET", "/public/page", &[], None).body, b"upstream");
    let solo = unique_user("nginx-solo");
    let mut tally_client = tally.client().with_key(SERVICE_KEY);
    assert_eq!(tally_client.put(&format!("/v1/users/{solo}"), &serde_json::json!({"plan": "solo"})).status, 200);
    assert_eq!(client.request("GET", "/api/export/repo.git", &[("X-User-Id", &solo)], None).status, 200);
    assert_eq!(seen_count("GET /api/export/"), 1, "only solo's export reached the application");
    assert_eq!(seen_count("POST /api/prompts "), 30);
    assert_eq!(tally_client.get(&format!("/v1/users/{user}")).json()["usage"]["prompts"]["used"], 30);
}
