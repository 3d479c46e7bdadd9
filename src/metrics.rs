//! Prometheus metrics (prometheus-client): one `Metrics` per server, shared by the HTTP
//! layer, the writer and the webhook sender, encoded by `GET /metrics` as the classic
//! Prometheus text format (0.0.4), or as OpenMetrics text when the scraper's `Accept` asks for
//! it (`Format::negotiate`).
//! Labels are route patterns, metric, feature and event names from the config: never raw
//! paths or user ids, so cardinality stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrackLabels {
    pub metric: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    pub feature: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// `{type="..."}`: a keyword as a field name would be encoded as `r#type`, so this label
/// set is a list of pairs.
pub type TypeLabels = Vec<(String, String)>;

pub fn type_labels(kind: String) -> TypeLabels {
    vec![("type".to_owned(), kind)]
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub track: Family<TrackLabels, Counter>,
    pub feature_use: Family<FeatureLabels, Counter>,
    pub writer_batch_size: Histogram,
    pub writer_queue_depth: Gauge,
    pub writer_commit_duration: Histogram,
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    pub auth_failures: Family<OutcomeLabels, Counter>,
    pub events: Family<TypeLabels, Counter>,
    pub database_bytes: Gauge<u64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register("tally_http_requests", "HTTP requests answered", http_requests.clone());
        let http_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("tally_http_request_duration_seconds", "Time to answer a request", http_duration.clone());
        let track = Family::<TrackLabels, Counter>::default();
        registry.register("tally_track", "POST /v1/track answers by outcome", track.clone());
        let feature_use = Family::<FeatureLabels, Counter>::default();
        registry.register("tally_feature_use", "POST /v1/features/use answers by outcome", feature_use.clone());
        let writer_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register("tally_writer_batch_size", "Jobs committed per write transaction", writer_batch_size.clone());
        let writer_queue_depth = Gauge::default();
        registry.register("tally_writer_queue_depth", "Jobs waiting for the writer", writer_queue_depth.clone());
        let writer_commit_duration = latency_histogram();
        registry.register(
            "tally_writer_commit_duration_seconds",
            "Time from BEGIN to COMMIT of a write group",
            writer_commit_duration.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "tally_webhook_deliveries",
            "Webhook delivery attempts by outcome",
            webhook_deliveries.clone(),
        );
        let auth_failures = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "tally_auth_failures",
            "Failed authentications (bearer keys and dashboard sign-ins) by answer: unauthorized (401) or throttled (429)",
            auth_failures.clone(),
        );
        let events = Family::<TypeLabels, Counter>::default();
        registry.register("tally_events", "Events committed, by type", events.clone());
        let database_bytes = Gauge::<u64, AtomicU64>::default();
        registry.register("tally_database_bytes", "Size of the database file and its WAL", database_bytes.clone());
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("tally_build_info", "The running build", build_info);
        Metrics {
            registry,
            http_requests,
            http_duration,
            track,
            feature_use,
            writer_batch_size,
            writer_queue_depth,
            writer_commit_duration,
            webhook_deliveries,
            auth_failures,
            events,
            database_bytes,
        }
    }

    /// Every metric, in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut text = String::with_capacity(8192);
        let encoded = match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &self.registry),
            Format::Classic => prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry),
        };
        if let Err(error) = encoded {
            log::error!("cannot encode metrics: {error}");
        }
        text
    }
}

/// The two text formats a scraper may get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: what `promtool check metrics`, older scrapers and most
    /// tools read; counters are named with their `_total` in `# HELP` and `# TYPE`.
    Classic,
    /// OpenMetrics 1.0.0 text, ending in `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics only when it lists
    /// `application/openmetrics-text` with a quality above zero and at least that of any
    /// range matching `text/plain`; the classic format otherwise, a missing header included.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else { return Format::Classic };
        let mut openmetrics = 0.0_f32;
        let mut classic = 0.0_f32;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media_type = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|parameter| parameter.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, value)| value.trim().parse::<f32>().unwrap_or(0.0));
            match media_type.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
                "text/plain" | "text/*" | "*/*" => classic = classic.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= classic { Format::OpenMetrics } else { Format::Classic }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Classic => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn classic_format_without_an_accept_header_or_for_text_plain() {
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(Format::negotiate(Some("text/plain; version=0.0.4")), Format::Classic);
        assert_eq!(Format::negotiate(Some("application/json")), Format::Classic);
    }

    #[test]
    fn openmetrics_when_the_scraper_prefers_it() {
        assert_eq!(Format::negotiate(Some("application/openmetrics-text")), Format::OpenMetrics);
        // What Prometheus 2.x and 3.x send by default.
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,\
                          application/openmetrics-text;version=0.0.1;q=0.4,\
                          text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    }

    #[test]
    fn classic_format_when_openmetrics_is_refused_or_ranked_lower() {
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0")), Format::Classic);
        let lower = "text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5";
        assert_eq!(Format::negotiate(Some(lower)), Format::Classic);
    }
}
