//! The PostgreSQL backend (being written).

use crate::config::PostgresConfig;
use crate::domain::ports::StoreError;
use crate::metrics::Metrics;
use crate::store::SchemaReport;
use std::sync::Arc;

pub struct PostgresBackend;

impl PostgresBackend {
    pub fn open(
        _config: &PostgresConfig,
        _metrics: Arc<Metrics>,
    ) -> Result<Arc<crate::store::sqlite::SqliteBackend>, StoreError> {
        Err(StoreError::Open("not yet".into()))
    }
}

pub fn migrate(_config: &PostgresConfig) -> Result<SchemaReport, StoreError> {
    Err(StoreError::Open("not yet".into()))
}
