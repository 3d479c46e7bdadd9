//! The oxhttp ceiling: an oxhttp server, configured like Tally's was before it moved to hyper
//! (thread per connection, same cap and timeout), that answers every request with a constant
//! small JSON body. Kept for one comparison with the new ceiling (`ceiling-hyper.rs`).

use oxhttp::Server;
use oxhttp::model::{Body, HeaderValue, Response, header};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

const BODY: &[u8] = br#"{"allowed":true,"user_id":"u1","plan":"trial","metric":"prompts","period":"2026-11","used":1}"#;

fn main() -> std::io::Result<()> {
    let requested: SocketAddr =
        std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into()).parse().expect("host:port");
    // oxhttp cannot report its port: pick it first, as Tally does.
    let addr = TcpListener::bind(requested)?.local_addr()?;
    let server = Server::new(|request| {
        let mut sink = Vec::new();
        let _ = request.body_mut().take(1 << 16).read_to_end(&mut sink);
        let mut response = Response::new(Body::from(BODY));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    })
    .bind(addr)
    .with_global_timeout(Duration::from_secs(10))
    .with_max_concurrent_connections(512)
    .spawn()?;
    println!("listening on http://{addr}");
    server.join()
}
