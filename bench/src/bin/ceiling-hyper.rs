//! The HTTP ceiling on Tally's HTTP layer: hyper 1.x (HTTP/1.1) on a tokio runtime,
//! configured like Tally's (`src/http/server.rs`: same head deadline and limits, a permit per
//! connection), answering every request with a constant small JSON body on the async side.
//! What it serves per second bounds what Tally can serve on this machine.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, body::Incoming, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

const BODY: &[u8] = br#"{"allowed":true,"user_id":"u1","plan":"trial","metric":"prompts","period":"2026-11","used":1}"#;

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body as Tally does (whole, bounded), then answer.
    let _ = Limited::new(request.into_body(), 1 << 16).collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let requested: SocketAddr =
        std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into()).parse().expect("host:port");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(requested).await?;
        println!("listening on http://{}", listener.local_addr()?);
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_header_size(8 * 1024)
            .max_buf_size(64 * 1024)
            .keep_alive(true);
        let permits = Arc::new(Semaphore::new(1024));
        loop {
            let permit = Arc::clone(&permits).acquire_owned().await.expect("never closed");
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let http = http.clone();
            tokio::spawn(async move {
                let _ = http.serve_connection(TokioIo::new(stream), service_fn(answer)).await;
                drop(permit);
            });
        }
    })
}
