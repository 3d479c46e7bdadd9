//! Hostile transport: oversized heads, invalid UTF-8, endless chunked bodies, a thousand idle
//! plus a thousand dripping connections closed by the head deadline while a normal client
//! keeps being answered, refusals sent before a body is read, pipelining, HEAD and odd
//! methods, a client that never reads, and stderr that stays JSON through all of it. Also
//! each transport limit in the config at its edge.

use crate::support::{
    ADMIN_KEY, Client, SERVICE_KEY, Setup, Tally, raw_post, read_reply, start_with_keys, unique_user, usage,
};
use serde_json::json;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tally::http::ROUTES;

/// Sends raw bytes on a new connection and reads the answer (or None if the server closed).
fn raw(tally: &Tally, bytes: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before reading everything; a failed write is fine.
    let _ = stream.write_all(bytes);
    let mut reader = BufReader::new(stream);
    crate::support::try_read_reply(&mut reader).ok().map(|reply| reply.status)
}

fn healthy(tally: &Tally) {
    let reply = tally.client().get("/healthz");
    assert_eq!(reply.status, 200);
}

#[test]
fn oversized_heads_and_invalid_utf8_get_4xx_and_the_server_stays_up() {
    let tally = Tally::start_default();
    let long_header = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n", "a".repeat(9 * 1024));
    let status = raw(&tally, long_header.as_bytes());
    assert!(status.is_none_or(|status| (400..500).contains(&status)), "{status:?}");
    healthy(&tally);

    let long_line = format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "a".repeat(100 * 1024));
    let status = raw(&tally, long_line.as_bytes());
    assert!(status.is_none_or(|status| (400..500).contains(&status)), "{status:?}");
    healthy(&tally);

    let mut bad_path = b"GET /v1/users/\xff\xfe HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    let status = raw(&tally, &bad_path).expect("an answer");
    assert!((400..500).contains(&status), "{status}");
    bad_path = b"GET /v1/users/%FF%FE HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    assert_eq!(raw(&tally, &bad_path), Some(400));

    let body = b"{\"user_id\": \"\xff\xfe\", \"metric\": \"prompts\"}";
    assert_eq!(raw(&tally, &raw_post("/v1/track", body)), Some(400));
    healthy(&tally);
}

#[test]
fn a_chunked_body_that_never_ends_times_out_and_frees_the_connection() {
    let tally = Setup::new().server("request_timeout_ms = 500").start();
    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(b"POST /v1/track HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // Keep sending small chunks, each well within the per-read timeout, for longer than the
    // request's deadline.
    let started = Instant::now();
    let mut answered = None;
    while started.elapsed() < Duration::from_secs(5) {
        if stream.write_all(b"1\r\n \r\n").is_err() {
            // The server answered and closed while we were writing: the answer may still be
            // in our receive buffer.
            answered = crate::support::try_read_reply(&mut BufReader::new(stream.try_clone().unwrap()))
                .ok()
                .map(|reply| reply.status);
            break;
        }
        stream.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        let ready = matches!(stream.peek(&mut probe), Ok(n) if n > 0);
        stream.set_nonblocking(false).unwrap();
        if ready {
            answered = Some(read_reply(&mut BufReader::new(stream.try_clone().unwrap())).status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(answered, Some(408), "the body deadline ends an endless body");
    healthy(&tally);
}

/// Waits until the server closes `stream` (EOF or reset), at most until `deadline`; panics
/// if it is still open then. Bytes the server sends first (an answer) are skipped.
fn assert_closed_by(stream: &mut TcpStream, deadline: Instant, what: &str) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut [0u8; 4096]) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return,
            Err(error) => panic!("{what}: still open at its deadline ({error})"),
        }
    }
}

#[test]
fn a_thousand_idle_and_a_thousand_dripping_connections_do_not_starve_a_normal_client() {
    let tally = Setup::new().server("header_timeout_ms = 2000").start();
    let mut idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(tally.addr).unwrap()).collect();
    let mut dripping: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(tally.addr).unwrap()).collect();
    // Every connection is open by now; each must be closed by header_timeout_ms + 1 s.
    let deadline = Instant::now() + Duration::from_millis(2000 + 1000);
    let head = b"POST /v1/check HTTP/1.1\r\nHost: localhost\r\n";
    let mut normal = Client::new(tally.addr);
    for second in 0..3 {
        for stream in &mut dripping {
            let _ = stream.write_all(&head[second..second + 1]);
        }
        // A normal client is answered at once meanwhile.
        let started = Instant::now();
        let reply = normal.post("/v1/check", &usage("normal", "prompts", json!({})));
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() < Duration::from_secs(1), "answered in {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(1000).saturating_sub(started.elapsed()));
    }
    for stream in &mut idle {
        assert_closed_by(stream, deadline, "an idle connection");
    }
    for stream in &mut dripping {
        assert_closed_by(stream, deadline, "a connection dripping its head");
    }
    healthy(&tally);
}

#[test]
fn max_connections_is_enforced_at_its_edge() {
    let tally = Setup::new().server("max_connections = 2").start();
    let mut first = Client::new(tally.addr);
    let mut second = Client::new(tally.addr);
    assert_eq!(first.get("/healthz").status, 200);
    assert_eq!(second.get("/healthz").status, 200);
    // Both slots are held by open keep-alive connections: a third waits, unanswered.
    let mut third = TcpStream::connect(tally.addr).unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    third.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let waiting = third.read(&mut [0u8; 16]);
    assert!(waiting.is_err(), "the third connection was served beyond max_connections = 2");
    drop(first);
    third.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reply = read_reply(&mut BufReader::new(third));
    assert_eq!(reply.status, 200, "served once a slot is free");
    assert_eq!(second.get("/healthz").status, 200);
}

#[test]
fn header_timeout_closes_an_idle_connection_new_or_kept_alive() {
    let tally = Setup::new().server("header_timeout_ms = 300").start();
    let mut fresh = TcpStream::connect(tally.addr).unwrap();
    let started = Instant::now();
    assert_closed_by(&mut fresh, started + Duration::from_millis(1300), "a new idle connection");
    assert!(started.elapsed() >= Duration::from_millis(250), "closed before its timeout");

    // After an answer, the wait for the next head has the same deadline.
    let mut kept = TcpStream::connect(tally.addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reader = BufReader::new(kept.try_clone().unwrap());
    assert_eq!(read_reply(&mut reader).status, 200);
    let answered = Instant::now();
    assert_closed_by(&mut kept, answered + Duration::from_millis(1300), "a kept-alive idle connection");
    assert!(answered.elapsed() >= Duration::from_millis(250), "closed before its timeout");
    healthy(&tally);
}

/// A request head declaring a body of 10^12 bytes, and a thread that trickles body bytes
/// until the connection fails: the server must answer without waiting for any of them.
fn trickle(tally: &Tally, head: &str) -> (TcpStream, std::thread::JoinHandle<()>) {
    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let dripper = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) && writer.write_all(b"x").is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (stream, dripper)
}

const HUGE: &str = "Content-Length: 1000000000000\r\n";

#[test]
fn refusals_decided_from_the_head_are_sent_at_once_and_the_body_is_never_read() {
    let tally = start_with_keys();
    let service = format!("Authorization: Bearer {SERVICE_KEY}\r\n");
    let json = "Content-Type: application/json\r\n";
    let cases = [
        ("no key", format!("POST /v1/track HTTP/1.1\r\nHost: localhost\r\n{json}{HUGE}\r\n"), 401),
        (
            "no key, expecting 100-continue",
            format!("POST /v1/track HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n{json}{HUGE}\r\n"),
            401,
        ),
        (
            "service key on an admin route",
            format!("POST /v1/admin/cleanup HTTP/1.1\r\nHost: x\r\n{service}{json}{HUGE}\r\n"),
            403,
        ),
        ("no such route", format!("POST /v1/nowhere HTTP/1.1\r\nHost: x\r\n{service}{json}{HUGE}\r\n"), 404),
        ("wrong method", format!("PUT /v1/track HTTP/1.1\r\nHost: x\r\n{service}{json}{HUGE}\r\n"), 405),
        ("too large", format!("POST /v1/track HTTP/1.1\r\nHost: x\r\n{service}{json}{HUGE}\r\n"), 413),
        (
            "wrong type",
            format!(
                "POST /v1/track HTTP/1.1\r\nHost: x\r\n{service}Content-Type: text/plain\r\nContent-Length: 60000\r\n\r\n"
            ),
            415,
        ),
        ("a GET with a body", format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{HUGE}\r\n"), 200),
    ];
    for (what, head, status) in cases {
        let (stream, dripper) = trickle(&tally, &head);
        let sent = Instant::now();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reader = BufReader::new(stream);
        let reply = read_reply(&mut reader);
        assert!(sent.elapsed() < Duration::from_secs(1), "{what}: answered after {:?}", sent.elapsed());
        assert_eq!(reply.status, status, "{what}: the first answer (never 100 Continue before the key is checked)");
        assert_eq!(reply.header("connection"), Some("close"), "{what}");
        assert_closed_by(reader.get_mut(), sent + Duration::from_secs(1), what);
        dripper.join().unwrap();
    }
    // With auth off, the Host check is such a refusal too.
    let open = Tally::start_default();
    let head = format!("POST /v1/track HTTP/1.1\r\nHost: tally.example.com\r\n{json}{HUGE}\r\n");
    let (stream, dripper) = trickle(&open, &head);
    let sent = Instant::now();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_reply(&mut reader).status, 403);
    assert_closed_by(reader.get_mut(), sent + Duration::from_secs(1), "the Host check");
    dripper.join().unwrap();
    healthy(&tally);
}

#[test]
fn continue_is_sent_only_once_the_key_is_checked() {
    let tally = start_with_keys();
    let body = usage("continued", "prompts", json!({})).to_string();
    let head = |key: &str| {
        format!(
            "POST /v1/track HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
    };
    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(head("not-the-key-at-all").as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(read_reply(&mut reader).status, 401, "no 100 Continue for a wrong key");

    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(head(SERVICE_KEY).as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "a valid key is told to send the body: {line:?}");
    reader.read_line(&mut line).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let reply = read_reply(&mut reader);
    assert_eq!((reply.status, reply.json()["used"].as_u64()), (200, Some(1)));
}

#[test]
fn a_body_not_arrived_by_request_timeout_gets_408_and_a_close() {
    let tally = Setup::new().server("request_timeout_ms = 500").start();
    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream
        .write_all(b"POST /v1/track HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user_id\"")
        .unwrap();
    let sent = Instant::now();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream);
    let reply = read_reply(&mut reader);
    assert_eq!((reply.status, reply.code().as_str()), (408, "request_timeout"));
    assert!(sent.elapsed() < Duration::from_millis(1500), "answered after {:?}", sent.elapsed());
    assert_closed_by(reader.get_mut(), Instant::now() + Duration::from_secs(1), "after a 408");
    healthy(&tally);
}

#[test]
fn fifty_pipelined_requests_get_fifty_answers_in_order_each_track_counted_once() {
    let tally = Tally::start_default();
    let user = unique_user("pipelined");
    let body = usage(&user, "e2e_runs", json!({})).to_string();
    let mut burst = Vec::new();
    for n in 0..50 {
        burst.extend_from_slice(
            format!(
                "POST /v1/track HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: p{n}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(&burst).unwrap();
    let mut reader = BufReader::new(stream);
    for n in 0..50 {
        let reply = read_reply(&mut reader);
        assert_eq!(reply.status, 200, "answer {n}");
        assert_eq!(reply.header("x-request-id"), Some(format!("p{n}").as_str()), "answers come in order");
        assert_eq!(reply.json()["used"], n + 1, "each track counted once, in order");
    }
    let stored = tally.client().get(&format!("/v1/users/{user}")).json();
    assert_eq!(stored["usage"]["e2e_runs"]["used"], 50);
}

/// Reads a status line and headers only (the answer to HEAD has no body).
fn read_head_reply(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        match line.trim_end().split_once(':') {
            Some((name, value)) => headers.push((name.to_ascii_lowercase(), value.trim().to_owned())),
            None => return (status, headers),
        }
    }
}

#[test]
fn head_is_answered_wherever_get_is_with_its_headers_and_no_body() {
    let tally = start_with_keys();
    let mut checked = 0;
    for route in ROUTES.iter().filter(|route| route.method.as_str() == "GET") {
        let path = route.pattern.replace("{user_id}", "someone");
        let mut stream = TcpStream::connect(tally.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let request = |method: &str| {
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\r\n")
        };
        // HEAD then GET on one connection: a stray body after HEAD would corrupt the GET.
        stream.write_all(format!("{}{}", request("HEAD"), request("GET")).as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head_reply(&mut reader);
        let get = read_reply(&mut reader);
        assert_eq!(status, get.status, "HEAD {path}");
        let header = |name: &str| headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        assert_eq!(header("content-type"), get.header("content-type"), "HEAD {path}");
        assert_eq!(header("location"), get.header("location"), "HEAD {path}");
        if ["/healthz", "/openapi.yaml", "/v1/admin/plans"].contains(&route.pattern) {
            assert_eq!(header("content-length"), Some(get.body.len().to_string().as_str()), "HEAD {path}");
        }
        checked += 1;
    }
    assert!(checked > 10);
    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"HEAD /v1/track HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (status, headers) = read_head_reply(&mut BufReader::new(stream));
    assert_eq!(status, 405);
    assert!(headers.contains(&("allow".to_owned(), "POST".to_owned())), "{headers:?}");
}

#[test]
fn connect_trace_and_unknown_methods_get_405_or_501_never_a_panic() {
    let tally = Tally::start_default();
    let answer = |request: &str| {
        let mut stream = TcpStream::connect(tally.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        read_reply(&mut BufReader::new(stream))
    };
    let connect = answer("CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n");
    assert_eq!((connect.status, connect.code().as_str()), (501, "not_implemented"));
    let unknown = answer("BREW /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!((unknown.status, unknown.header("allow")), (405, Some("GET, HEAD")));
    let unknown = answer("BREW /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!((unknown.status, unknown.code().as_str()), (501, "not_implemented"));
    let trace = answer("TRACE /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!((trace.status, trace.header("allow")), (405, Some("GET, HEAD")));
    let options = answer("OPTIONS /v1/track HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!((options.status, options.header("allow")), (405, Some("POST")));
    let patch = answer("PATCH /v1/users/x HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!((patch.status, patch.header("allow")), (405, Some("GET, HEAD, PUT")));
    healthy(&tally);
    let log = std::fs::read_to_string(tally.dir.path().join("stderr.log")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_client_that_never_reads_its_answers_is_disconnected() {
    let tally = Setup::new().server("request_timeout_ms = 500").start();
    let one = tally.client().get("/openapi.yaml").body.len();
    let request = b"GET /openapi.yaml HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let count = 400;
    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream.write_all(&request.repeat(count)).unwrap();
    // Far more than the socket buffers hold is waiting to be written: the server's write
    // stalls, for longer than request_timeout_ms.
    std::thread::sleep(Duration::from_secs(3));
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        stream
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut [0u8; 65536]) {
            Ok(0) => break,
            Ok(read) => received += read,
            Err(error) if error.kind() == ErrorKind::ConnectionReset => break,
            Err(error) => panic!("the connection was not closed: {error} after {received} bytes"),
        }
    }
    assert!(received < one * count, "every answer was written ({received} bytes): the stalled write went on");
    healthy(&tally);
}

#[test]
fn every_stderr_line_is_json_under_load_and_attacks() {
    let tally = Setup::new()
        .server("log_format = \"json\"\nheader_timeout_ms = 500\nrequest_timeout_ms = 500")
        .config(&format!("[auth]\nservice_keys = [\"{SERVICE_KEY}\"]\n"))
        .env("RUST_BACKTRACE", "1")
        .start();
    let load: Vec<_> = (0..4)
        .map(|worker| {
            let mut client = tally.client().with_key(SERVICE_KEY);
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let reply = client.post("/v1/track", &usage(&format!("load{worker}"), "e2e_runs", json!({})));
                    assert_eq!(reply.status, 200);
                }
            })
        })
        .collect();
    let attacks: [&[u8]; 8] = [
        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\nxx",
        b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
        b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nzz\r\n",
        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ",
    ];
    let mut open = Vec::new();
    for attack in attacks {
        let mut stream = TcpStream::connect(tally.addr).unwrap();
        let _ = stream.write_all(attack);
        open.push(stream);
    }
    // A head that never ends, a body that never comes, and a client that hangs up on a
    // stream of pipelined answers (the server's writes then fail).
    let mut padded = TcpStream::connect(tally.addr).unwrap();
    let _ = padded.write_all(format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(9000)).as_bytes());
    open.push(padded);
    let mut hangup = TcpStream::connect(tally.addr).unwrap();
    hangup.write_all(&b"GET /openapi.yaml HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200)).unwrap();
    drop(hangup);
    for worker in load {
        worker.join().unwrap();
    }
    let deadline = Instant::now() + Duration::from_millis(500 + 1000);
    for stream in &mut open {
        assert_closed_by(stream, deadline, "an attacking connection");
    }
    healthy(&tally);
    let log = std::fs::read_to_string(tally.dir.path().join("stderr.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() > 400, "the load was logged: {} lines", lines.len());
    for line in lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}"));
        assert!(parsed["level"].is_string(), "{line}");
    }
}

#[test]
fn a_panic_is_logged_as_one_json_line() {
    let mut tally = Setup::new()
        .server("log_format = \"json\"")
        .env("TALLY_TEST_WRITER_PANIC_AFTER", "1")
        .env("RUST_BACKTRACE", "1")
        .start();
    let mut client = tally.client();
    let request = raw_post("/v1/track", usage("p", "prompts", json!({})).to_string().as_bytes());
    // The writer commits one group, then panics; the process exits.
    while client.try_send_raw(&request).is_ok_and(|reply| reply.status == 200) {}
    assert!(!tally.wait_exit().success());
    let log = std::fs::read_to_string(tally.dir.path().join("stderr.log")).unwrap();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line:?}"))).collect();
    let panic = lines.iter().find(|line| line["target"] == "tally::panic").expect("the panic is logged");
    assert!(panic["message"].as_str().unwrap().contains("panicked at"), "{panic}");
}
