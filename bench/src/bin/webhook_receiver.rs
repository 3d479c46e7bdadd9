//! A webhook receiver for `bench/run.sh webhooks`: hyper on a loopback port, keep-alive,
//! answering every POST with 200 at once and recording when each distinct `webhook-id` first
//! arrived; or, with `--hang`, accepting every request and never answering. What it recorded
//! is read back over HTTP: `GET /stats` (one JSON object) and `GET /arrivals` (one line per
//! distinct id: `ID UNIX_MICROS`). It measures nothing itself: bin/webhook_bench.rs does.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

#[derive(Default)]
struct Arrivals {
    /// Every POST, duplicates included.
    requests: u64,
    /// The first arrival of each `webhook-id`, in unix microseconds.
    first_seen: HashMap<String, u64>,
    first_us: Option<u64>,
    last_us: Option<u64>,
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_micros() as u64)
}

async fn answer(
    arrivals: Arc<Mutex<Arrivals>>,
    hang: bool,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == Method::GET {
        let arrivals = arrivals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let body = match request.uri().path() {
            "/arrivals" => arrivals.first_seen.iter().fold(String::new(), |mut text, (id, micros)| {
                let _ = writeln!(text, "{id} {micros}");
                text
            }),
            _ => json!({
                "requests": arrivals.requests,
                "distinct": arrivals.first_seen.len(),
                "first_us": arrivals.first_us,
                "last_us": arrivals.last_us,
            })
            .to_string(),
        };
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    if hang {
        // Accepted, read as far as the head, never answered: the sender's deadline must end it.
        std::future::pending::<()>().await;
    }
    let id = request.headers().get("webhook-id").and_then(|value| value.to_str().ok()).map(str::to_owned);
    // The whole body is read before the answer, as a real receiver verifying a signature would.
    let _ = request.into_body().collect().await;
    let now = unix_micros();
    {
        let mut arrivals = arrivals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        arrivals.requests += 1;
        if let Some(id) = id {
            arrivals.first_seen.entry(id).or_insert(now);
        }
        arrivals.first_us.get_or_insert(now);
        arrivals.last_us = Some(now);
    }
    Ok(Response::new(Full::new(Bytes::new())))
}

fn main() -> std::io::Result<()> {
    let mut hang = false;
    let mut requested: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--hang" => hang = true,
            addr => requested = addr.parse().expect("usage: webhook_receiver [--hang] [HOST:PORT]"),
        }
    }
    // One worker thread: the receiver should take as little of the two cores as it can.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(requested).await?;
        println!("listening on http://{}", listener.local_addr()?);
        let arrivals = Arc::new(Mutex::new(Arrivals::default()));
        let mut http = http1::Builder::new();
        http.keep_alive(true);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let http = http.clone();
            let arrivals = Arc::clone(&arrivals);
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(Arc::clone(&arrivals), hang, request));
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    })
}
