//! The sockets: a tokio runtime that owns only them. hyper serves HTTP/1.1 on each accepted
//! connection; what happens below (`admit`, `respond`, `finish`, the handlers, the store)
//! is synchronous. The async side reads a head, runs `admit` on it (cheap: no I/O), reads the
//! body only if admitted, then runs the handler inside `block_in_place`, because a handler
//! may wait for the writer's commit or a read connection: the worker thread becomes a
//! blocking thread for the call and hands its other connections to a fresh worker, so a slow
//! handler never delays another connection's head or body. Measured against the other way,
//! `spawn_blocking` (a hop to the blocking pool and back), it serves about 1.2x the tracks
//! and checks per second (docs/PERFORMANCE.md).
//!
//! Facts about hyper 1.12 and hyper-util 0.1.21 this relies on (read in their source, and
//! each held to a test in tests/it/transport.rs):
//! - `http1::Builder::header_read_timeout` (it needs `.timer(TokioTimer)`) starts whenever the
//!   connection starts waiting for a head: on a new connection and again after each answer
//!   on a kept-alive one. When the whole head has not arrived in time the connection is
//!   closed without an answer. So it is both the whole-head deadline and the idle deadline;
//!   no deadline of Tally's own is needed for either.
//! - `max_header_size` answers a longer head 431 (and a longer request target 414), then
//!   closes. Malformed heads, conflicting or repeated `Content-Length`, `Content-Length` with
//!   `Transfer-Encoding` and bad chunk sizes are refused by hyper itself (400, then close).
//! - A body is read only when polled (hyper's body channel is demand-driven), and
//!   `Expect: 100-continue` is answered at the first poll: so only after `admit` passed. A
//!   body dropped unread makes hyper read what has already arrived, once, without waiting, and
//!   close the connection if that was not all of it; `finish` also says `Connection: close`.
//! - `Incoming::size_hint().exact()` is the `Content-Length` hyper accepted; `None` for chunked.
//! - Requests on one connection are served one at a time, in order; bytes of pipelined
//!   requests stay in the connection's read buffer (nothing is lost between requests).
//! - For HEAD, hyper sends the headers (a `Content-Length` set by us included) and no body.
//! - For CONNECT, hyper switches protocols only on a 2xx answer; Tally answers 501.
//! - hyper writes nothing to stdout or stderr (its own logs go to `tracing`, not enabled);
//!   a connection's error comes back from `serve_connection` and is logged at debug.
//! - hyper has no write deadline: `Stalled` below fails a write (and so the connection) that
//!   makes no progress for `request_timeout`, so a client that never reads its answers cannot
//!   hold a connection slot.

use super::error::ApiError;
use super::{App, Body, Dispatched, Handler, Head, Trace, admit, answer_later, finish, request, respond};
use bytes::Bytes;
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

/// The longest head (request line and headers) served; longer gets 431 and a close.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The most a connection buffers while reading (a head, pipelined requests, body pieces).
const MAX_READ_BUFFER: usize = 64 * 1024;

/// Threads that may block at once, in handlers (a worker inside `block_in_place` is one). A
/// handler that writes waits for the writer's commit, and the writer commits up to 512 jobs
/// in one group: this many waiting handlers can fill one group.
const HANDLER_THREADS: usize = 512;

/// Connections waiting to be accepted (the kernel caps it at net.core.somaxconn).
const BACKLOG: u32 = 1024;

/// The serving sockets; stopping the runtime ends every connection.
pub struct Server {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Binds `app.config.server.listen` (port 0 picks a free port) and starts accepting.
    pub fn start(app: Arc<App>) -> io::Result<Server> {
        let config = &app.config.server;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("tally-http")
            .max_blocking_threads(HANDLER_THREADS)
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            bind(config.listen)?
        };
        let addr = listener.local_addr()?;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .max_buf_size(MAX_READ_BUFFER)
            .keep_alive(true);
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let accept = runtime.spawn(accept_loop(app, listener, http, permits));
        Ok(Server { addr, accept, runtime: Some(runtime) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listening socket: new connections are refused; open ones go on.
    pub fn stop_accepting(&self) {
        self.accept.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Without waiting for handlers still running past the shutdown grace.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts while a connection slot is free: past `max_connections` new connections wait in
/// the kernel's backlog until one closes.
async fn accept_loop(app: Arc<App>, listener: TcpListener, http: http1::Builder, permits: Arc<Semaphore>) {
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) if matches!(error.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) => {
                continue;
            }
            Err(error) => {
                // Out of descriptors, most likely: wait instead of spinning.
                log::warn!("cannot accept a connection: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Answers are written whole; Nagle's delay would only add latency.
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let http = http.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(Stalled::new(stream, app.config.server.request_timeout));
            let service = service_fn(|request| exchange(Arc::clone(&app), peer.ip(), request));
            if let Err(error) = http.serve_connection(io, service).await {
                log::debug!(target: "tally::connection", "connection from {peer} ended: {error}");
            }
            drop(permit);
        });
    }
}

/// One request: its head admitted or refused at once, its body read (bounded in size and
/// time) only when admitted, its handler run where blocking is allowed.
async fn exchange(
    app: Arc<App>,
    peer: IpAddr,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Body>, Infallible> {
    let started = Instant::now();
    let _in_flight = app.enter();
    let (parts, incoming) = request.into_parts();
    let head = Head::from_parts(parts, ());
    let trace = Trace::new(&head, started);
    let declared = incoming.size_hint().exact();
    let has_body = declared != Some(0);
    let admitted = match admit(&app, &head, peer, declared) {
        Ok(admitted) => admitted,
        Err(refused) => {
            // Dropped unread: hyper closes the connection instead of reading on.
            drop(incoming);
            return Ok(finish(&app, trace, refused.route, refused.into_outcome(), has_body));
        }
    };
    let route = admitted.pattern();
    let (body, unread) = if admitted.read_body {
        let config = &app.config.server;
        match read_body(incoming, admitted.max_body_bytes, started + config.request_timeout).await {
            Ok(body) => (body, false),
            Err(error) => return Ok(finish(&app, trace, route, Err(error), true)),
        }
    } else {
        drop(incoming);
        (Bytes::new(), has_body)
    };
    let inline = match admitted.route.handler {
        Handler::Read(_) => app.store.reads_are_local(),
        Handler::Write(_) => true,
        Handler::Blocking(_) => false,
    };
    let dispatched = if inline {
        respond(&app, &head, peer, admitted, &body)
    } else {
        tokio::task::block_in_place(|| respond(&app, &head, peer, admitted, &body))
    };
    let outcome = match dispatched {
        Dispatched::Now(outcome) => outcome,
        Dispatched::Later(later) => answer_later(later).await,
    };
    Ok(finish(&app, trace, route, outcome, unread))
}

/// Reads the whole body: at most `max_bytes` (413 past it), by `deadline` (408 after it).
async fn read_body(incoming: Incoming, max_bytes: u64, deadline: Instant) -> Result<Bytes, ApiError> {
    let limited = Limited::new(incoming, usize::try_from(max_bytes).unwrap_or(usize::MAX));
    match tokio::time::timeout_at(deadline.into(), limited.collect()).await {
        Err(_elapsed) => Err(request::body_timeout()),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(request::payload_too_large(max_bytes))
        }
        Ok(Err(error)) => Err(ApiError::invalid(format!("cannot read the body: {error}")).closing()),
    }
}

/// A TCP stream whose writes fail once one has made no progress for `limit`.
struct Stalled {
    stream: TcpStream,
    limit: Duration,
    /// Armed while a write waits for the client to read.
    stall: Option<Pin<Box<Sleep>>>,
}

impl Stalled {
    fn new(stream: TcpStream, limit: Duration) -> Stalled {
        Stalled { stream, limit, stall: None }
    }

    /// Called when a write could not proceed: an error once the stall has lasted `limit`.
    fn poll_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let stall = self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading its answers")))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, polled: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.poll_stall(cx),
            ready => {
                self.stall = None;
                ready
            }
        }
    }
}

impl AsyncRead for Stalled {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stalled {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.progressed(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.progressed(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        this.progressed(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.progressed(polled, cx)
    }
}
