//! Hostile transport: oversized heads, invalid UTF-8, endless chunked bodies, and a thousand
//! idle plus a thousand dripping connections, while a normal client keeps being answered.
//! Also each transport limit in the config at its edge.

use crate::support::{Client, Setup, Tally, raw_post, read_reply, usage};
use serde_json::json;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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

#[test]
fn a_thousand_idle_and_a_thousand_dripping_connections_do_not_starve_a_normal_client() {
    let tally = Setup::new().server("request_timeout_ms = 1500").start();
    let idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(tally.addr).unwrap()).collect();
    let mut dripping: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(tally.addr).unwrap()).collect();
    let head = b"POST /v1/check HTTP/1.1\r\nHost: localhost\r\n";
    let mut normal = Client::new(tally.addr);
    for second in 0..4 {
        for stream in &mut dripping {
            let _ = stream.write_all(&head[second..second + 1]);
        }
        // A normal client is answered at once: its connection gets its own thread.
        let started = Instant::now();
        let reply = normal.post("/v1/check", &usage("normal", "prompts", json!({})));
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() < Duration::from_secs(1), "answered in {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(1000));
    }
    // Idle connections are closed once the timeout passes with nothing read.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut closed = 0;
    for mut stream in idle {
        stream
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut [0u8; 64]) {
            Ok(_) => closed += 1, // EOF (or a 408) then close
            Err(error) if error.kind() == ErrorKind::ConnectionReset => closed += 1,
            Err(error) => panic!("an idle connection was not freed: {error}"),
        }
    }
    assert_eq!(closed, 1000);
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
fn request_timeout_closes_an_idle_connection() {
    let tally = Setup::new().server("request_timeout_ms = 300").start();
    let mut stream = TcpStream::connect(tally.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let read = stream.read(&mut [0u8; 64]);
    assert!(read.is_ok() || read.is_err_and(|error| error.kind() == ErrorKind::ConnectionReset));
    assert!(started.elapsed() >= Duration::from_millis(250), "closed before its timeout");
    healthy(&tally);
}
