//! The TOML shape of the config, exactly as written: serde types with `deny_unknown_fields`,
//! and the merge of a user's file over the built-in defaults. Validation is in mod.rs.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub server: RawServer,
    pub database: RawDatabase,
    pub auth: RawAuth,
    pub usage: RawUsage,
    pub metrics: IndexMap<String, RawMetric>,
    pub plans: IndexMap<String, RawPlan>,
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
    pub webhook_delivery: RawDelivery,
    pub gateway: RawGateway,
    #[serde(default)]
    pub email: Option<RawEmail>,
    pub billing: RawBilling,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    pub smtp_url: String,
    pub from: String,
    #[serde(default)]
    pub alerts: Vec<RawEmailAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmailAlert {
    pub events: Vec<String>,
    pub to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBilling {
    pub currency: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    pub user_header: String,
    pub default: String,
    #[serde(default)]
    pub rules: Vec<RawGatewayRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGatewayRule {
    #[serde(default)]
    pub method: Option<String>,
    pub path_prefix: String,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub feature: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secrets: Option<Vec<String>>,
    pub events: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    pub timeout_ms: i64,
    pub max_in_flight: i64,
    pub retry_initial_ms: i64,
    pub retry_max_ms: i64,
    pub give_up_after_secs: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: String,
    pub max_connections: i64,
    pub header_timeout_ms: i64,
    pub request_timeout_ms: i64,
    pub max_body_bytes: i64,
    pub max_batch_body_bytes: i64,
    pub metrics_public: bool,
    pub log_format: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub path: String,
    #[serde(default)]
    pub url: Option<String>,
    pub pool_size: i64,
    pub synchronous: String,
    pub busy_timeout_ms: i64,
    pub read_connections: i64,
    pub max_size_mb: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub service_keys: Vec<RawKey>,
    pub admin_keys: Vec<RawKey>,
    pub max_failures_per_minute: i64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawKey {
    Plain(String),
    Named(RawNamedKey),
}

// Untagged variants are structs of their own so that `deny_unknown_fields` applies to them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNamedKey {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUsage {
    pub default_plan: String,
    pub admin_user_ids: Vec<String>,
    pub tracking_enabled: bool,
    pub telemetry_enabled: bool,
    pub retention_months: i64,
    pub idempotency_hours: i64,
    pub alert_thresholds: Vec<f64>,
    pub refusal_event_interval_secs: i64,
    pub forecast_interval_secs: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetric {
    pub unit: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlan {
    pub price_cents: i64,
    #[serde(default)]
    pub max_members: Option<i64>,
    pub limits: IndexMap<String, RawLimit>,
    pub features: IndexMap<String, RawFeature>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawLimit {
    Word(String),
    Capped(RawCapped),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapped {
    pub limit: i64,
    pub enforcement: String,
    #[serde(default)]
    pub rollover_max: Option<i64>,
    #[serde(default)]
    pub overage: Option<RawOverage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverage {
    pub price_cents: i64,
    pub per_units: i64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawFeature {
    Switch(bool),
    PerMinute(RawPerMinute),
    Window(RawWindow),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPerMinute {
    pub per_minute: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub limit: i64,
    pub window_secs: i64,
}

/// Sections whose keys merge one by one over the defaults; any other section a user's file
/// states replaces the default section whole.
const MERGED_SECTIONS: [&str; 7] = ["server", "database", "auth", "usage", "webhook_delivery", "gateway", "billing"];

/// Lays `user` over `defaults`.
pub(super) fn merge(mut defaults: toml::Table, user: toml::Table) -> toml::Table {
    for (section, value) in user {
        match (defaults.get_mut(&section), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(table))
                if MERGED_SECTIONS.contains(&section.as_str()) =>
            {
                base.extend(table);
            }
            (_, value) => {
                defaults.insert(section, value);
            }
        }
    }
    defaults
}
