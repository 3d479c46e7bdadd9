//! Tally: a usage metering and plan-gating server on one SQLite file. `serve` starts it;
//! `Running` stops it. See ARCHITECTURE.md for the map of the modules below.

// Public: what main.rs, the benchmark tools (bench/) and the fuzz targets (fuzz/) use, and
// the route table the integration tests read. Everything else is the crate's own, so the
// dead-code lint sees it.
mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod store;

use config::Config;
use domain::ports::StoreError;
use http::App;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start a background thread: {0}")]
    Thread(std::io::Error),
}

/// A serving Tally.
pub struct Running {
    app: Arc<App>,
    server: http::server::Server,
}

/// Opens the database, applies migrations and starts answering HTTP.
pub fn serve(config: Config) -> Result<Running, ServeError> {
    // Every open connection holds a descriptor: allow as many as the hard limit lets us.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if (limit as usize) < config.server.max_connections + 64 => log::warn!(
            "only {limit} file descriptors are allowed; server.max_connections = {} cannot all be served",
            config.server.max_connections
        ),
        Ok(_) => {}
        Err(error) => log::warn!("cannot raise the file descriptor limit: {error}"),
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let store = store::open(&config.database, Arc::clone(&metrics))?;
    let listen = config.server.listen;
    let app = Arc::new(App::new(config, store, metrics));
    app::jobs::run_startup_maintenance(&app.store, &app.rules);
    let server =
        http::server::Server::start(Arc::clone(&app)).map_err(|source| ServeError::Listen { addr: listen, source })?;
    app::jobs::spawn_cleanup(app.store.clone(), Arc::clone(&app.rules)).map_err(ServeError::Thread)?;
    app::jobs::spawn_forecasts(app.store.clone(), Arc::clone(&app.rules)).map_err(ServeError::Thread)?;
    http::webhooks::spawn(Arc::clone(&app)).map_err(ServeError::Thread)?;
    Ok(Running { app, server })
}

impl Running {
    /// The address actually bound (the real port when the config said 0).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// False once the writer thread has stopped: the process should exit and be restarted.
    /// (Readiness also needs a free read connection; a busy read pool is load, not death.)
    pub fn is_healthy(&self) -> bool {
        self.app.store.is_writer_running()
    }

    /// Stops accepting connections and taking requests (a request on an open connection gets
    /// 503 and a close), lets those in flight finish (up to `grace`), and commits what the
    /// writer holds. Returns false if requests were still running at the deadline.
    pub fn shutdown(&self, grace: Duration) -> bool {
        self.app.start_draining();
        self.server.stop_accepting();
        let deadline = Instant::now() + grace;
        let mut quiet_since = Instant::now();
        let drained = loop {
            let now = Instant::now();
            if self.app.in_flight() > 0 {
                quiet_since = now;
            } else if now.duration_since(quiet_since) >= http::DRAIN_QUIET {
                break true;
            }
            if now >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.app.store.shutdown();
        drained
    }
}
