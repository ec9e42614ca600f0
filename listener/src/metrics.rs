//! Prometheus metrics through `prometheus-client`: every listener's [`Metrics`] are the
//! crate's counters, gauges and histograms; one [`MetricsRegistry`] per process encodes all
//! of them, one family per metric (one `HELP` and `TYPE` each) with a sample per listener
//! labelled `listener="<name>"`.
//!
//! The set of listeners changes while the process runs (a new cluster configuration starts
//! and stops them), so the registry holds one collector that reads the current set at each
//! scrape instead of registering a family member per listener and removing it again.
//!
//! Histogram buckets (upper bounds, `+Inf` is implicit):
//! - heartbeat latency: 1 ms … 5 s ([`HEARTBEAT_BUCKETS`]; the renew deadline is seconds,
//!   a healthy database answers in milliseconds);
//! - listing duration: 5 ms … 2 min ([`LISTING_BUCKETS`]; a large FTP folder lists in
//!   seconds);
//! - handler duration: 10 ms … 1 h ([`HANDLER_BUCKETS`]; the command handler's default
//!   timeout is one hour);
//! - file size: 1 KiB … 1 GiB, ×4 per bucket ([`FILE_SIZE_BUCKETS`]).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use coord_core::Role;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// A counter of events (`prometheus-client`'s).
pub type Counter = prometheus_client::metrics::counter::Counter;

/// A gauge of whole numbers.
pub type Gauge = PromGauge<u64, AtomicU64>;

/// A gauge of seconds (or any fraction).
pub type SecondsGauge = PromGauge<f64, AtomicU64>;

/// Heartbeat round trips, seconds.
pub const HEARTBEAT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Listings of the source, seconds.
pub const LISTING_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0,
];

/// Handler calls, seconds.
pub const HANDLER_BUCKETS: [f64; 13] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Sizes of dispatched files, bytes: 1 KiB, 4 KiB, … 1 GiB.
pub const FILE_SIZE_BUCKETS: [f64; 11] = [
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
];

/// A histogram of durations, in seconds, and the number of observations (for the loops'
/// tests; the crate's histogram does not expose its count).
#[derive(Debug, Clone)]
pub struct Timer(Histogram, Arc<AtomicU64>);

impl Timer {
    /// A timer with these bucket bounds (seconds).
    pub fn new(buckets: &[f64]) -> Self {
        Timer(Histogram::new(buckets.iter().copied()), Arc::default())
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Every metric of one listener.
#[derive(Debug)]
pub struct Metrics {
    /// 0 standby, 1 leader, 2 stopped.
    pub role: Gauge,
    /// The latest term seen.
    pub term: Gauge,
    /// Heartbeats the store acknowledged.
    pub heartbeats_ok: Counter,
    /// Heartbeats that failed or timed out.
    pub heartbeats_failed: Counter,
    /// Heartbeat round trips.
    pub heartbeat_latency: Timer,
    /// Terms this member won.
    pub takeovers: Counter,
    /// Versions handed to the handler.
    pub files_dispatched: Counter,
    /// Versions handled and post-processed.
    pub files_done: Counter,
    /// Handler failures (each attempt).
    pub files_failed: Counter,
    /// Versions that spent their retry budget.
    pub files_error: Counter,
    /// Dispatches with `redelivery = true`.
    pub redeliveries: Counter,
    /// Listings of the source.
    pub listing_duration: Timer,
    /// Handler calls, from dispatch to the handler's return (failed ones too).
    pub handler_duration: Timer,
    /// Sizes of the dispatched file versions, bytes.
    pub file_size: Histogram,
    /// Listings that failed.
    pub listings_failed: Counter,
    /// Hostile or unparsable names skipped by listings.
    pub skipped_names: Counter,
    /// Post-processing steps (move, delete) that failed.
    pub post_processing_failed: Counter,
    /// Work stopped before a write because this member no longer leads (local check).
    pub leadership_stops: Counter,
    /// Ledger writes the store refused because another member holds a newer term.
    pub fenced_writes: Counter,
    /// Claim calls to the store (one round trip each, many versions per call).
    pub ledger_claims: Counter,
    /// Record calls to the store (one round trip each, many updates per call).
    pub ledger_records: Counter,
    /// Lookup calls to the store (versions listed that the mirror does not hold).
    pub ledger_lookups: Counter,
    /// When the last listing succeeded (seconds since the Unix epoch, 0: never).
    pub last_listing: SecondsGauge,
    /// Files of the last listing not done yet (while leading).
    pub backlog_files: Gauge,
    /// How long ago the oldest of them was first listed, seconds.
    pub backlog_oldest: SecondsGauge,
    /// Handlers running now.
    pub handlers_in_flight: Gauge,
    /// The leader's ledger mirror by state, in the order of [`LEDGER_STATES`].
    pub ledger_rows: [Gauge; 6],
    /// The last outcomes, newest last (for the status page).
    pub recent: std::sync::Mutex<std::collections::VecDeque<RecentFile>>,
}

/// The `state` labels of `ftpl_ledger_rows`.
pub const LEDGER_STATES: [&str; 6] = ["new", "claimed", "handled", "done", "failed", "error"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            role: Gauge::default(),
            term: Gauge::default(),
            heartbeats_ok: Counter::default(),
            heartbeats_failed: Counter::default(),
            heartbeat_latency: Timer::new(&HEARTBEAT_BUCKETS),
            takeovers: Counter::default(),
            files_dispatched: Counter::default(),
            files_done: Counter::default(),
            files_failed: Counter::default(),
            files_error: Counter::default(),
            redeliveries: Counter::default(),
            listing_duration: Timer::new(&LISTING_BUCKETS),
            handler_duration: Timer::new(&HANDLER_BUCKETS),
            file_size: Histogram::new(FILE_SIZE_BUCKETS),
            listings_failed: Counter::default(),
            skipped_names: Counter::default(),
            post_processing_failed: Counter::default(),
            leadership_stops: Counter::default(),
            fenced_writes: Counter::default(),
            ledger_claims: Counter::default(),
            ledger_records: Counter::default(),
            ledger_lookups: Counter::default(),
            last_listing: SecondsGauge::default(),
            backlog_files: Gauge::default(),
            backlog_oldest: SecondsGauge::default(),
            handlers_in_flight: Gauge::default(),
            ledger_rows: Default::default(),
            recent: Default::default(),
        }
    }
}

/// One outcome, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentFile {
    /// The path as listed.
    pub path: String,
    /// `done`, `failed: <error>` or `error: <error>`.
    pub outcome: String,
    /// When (milliseconds since the Unix epoch).
    pub at_unix_ms: u64,
}

/// How many outcomes the status page shows.
const RECENT: usize = 20;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn saturating(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Metrics {
    /// Notes an outcome for the status page (the last 20 are kept).
    pub fn note(&self, path: &str, outcome: impl Into<String>) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(RecentFile {
            path: path.to_string(),
            outcome: outcome.into(),
            at_unix_ms: unix_ms(),
        });
    }

    /// Publishes how far behind the leader is (`None`: not leading, all zero).
    pub fn set_backlog(&self, backlog: Option<&coord_core::Backlog>) {
        let (files, oldest) = backlog.map_or((0, 0.0), |b| {
            (saturating(b.files), b.oldest_age.as_secs_f64())
        });
        self.backlog_files.set(files);
        self.backlog_oldest.set(oldest);
        for (i, gauge) in self.ledger_rows.iter().enumerate() {
            gauge.set(saturating(backlog.map_or(0, |b| b.rows[i].1)));
        }
    }

    /// Notes a successful listing.
    pub fn listed_now(&self) {
        self.last_listing.set(unix_ms() as f64 / 1000.0);
    }

    /// The last outcomes, newest first.
    pub fn recent_files(&self) -> Vec<RecentFile> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().cloned().collect()
    }

    /// Sets the role gauge.
    pub fn set_role(&self, role: Role) {
        self.role.set(match role {
            Role::Standby => 0,
            Role::Leader => 1,
            Role::Stopped => 2,
        });
    }
}

/// One family of per-listener metrics: its name (counters without `_total`, the encoder
/// adds it; with a unit, without the unit's suffix), help, unit, and where a listener keeps
/// its value.
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    metric: fn(&Metrics) -> &dyn EncodeMetric,
}

/// Every per-listener family but `ftpl_ledger_rows` (two labels), in exposition order.
fn families() -> [Family; 27] {
    let f = |name, help, unit, metric| Family {
        name,
        help,
        unit,
        metric,
    };
    [
        f(
            "ftpl_role",
            "Role of this member: 0 standby, 1 leader, 2 stopped.",
            None,
            |m| &m.role,
        ),
        f("ftpl_term", "Latest election term seen.", None, |m| &m.term),
        f(
            "ftpl_heartbeats_ok",
            "Acknowledged heartbeats.",
            None,
            |m| &m.heartbeats_ok,
        ),
        f(
            "ftpl_heartbeats_failed",
            "Heartbeats that failed or timed out.",
            None,
            |m| &m.heartbeats_failed,
        ),
        f(
            "ftpl_heartbeat_latency",
            "Heartbeat round trip to the store.",
            Some(Unit::Seconds),
            |m| &m.heartbeat_latency.0,
        ),
        f("ftpl_takeovers", "Terms won by this member.", None, |m| {
            &m.takeovers
        }),
        f(
            "ftpl_files_dispatched",
            "File versions handed to the handler.",
            None,
            |m| &m.files_dispatched,
        ),
        f(
            "ftpl_files_done",
            "File versions handled and post-processed.",
            None,
            |m| &m.files_done,
        ),
        f(
            "ftpl_files_failed",
            "Handler attempts that failed.",
            None,
            |m| &m.files_failed,
        ),
        f(
            "ftpl_files_error",
            "File versions moved to the error folder after the retry budget.",
            None,
            |m| &m.files_error,
        ),
        f(
            "ftpl_redeliveries",
            "Dispatches of versions claimed earlier and never finished.",
            None,
            |m| &m.redeliveries,
        ),
        f(
            "ftpl_listing_duration",
            "Listing of the source directory.",
            Some(Unit::Seconds),
            |m| &m.listing_duration.0,
        ),
        f(
            "ftpl_handler_duration",
            "Handler calls, from dispatch to return (failed ones too).",
            Some(Unit::Seconds),
            |m| &m.handler_duration.0,
        ),
        f(
            "ftpl_file_size",
            "Sizes of the dispatched file versions.",
            Some(Unit::Bytes),
            |m| &m.file_size,
        ),
        f("ftpl_listings_failed", "Listings that failed.", None, |m| {
            &m.listings_failed
        }),
        f(
            "ftpl_skipped_names",
            "Hostile or unparsable names skipped by listings.",
            None,
            |m| &m.skipped_names,
        ),
        f(
            "ftpl_post_processing_failed",
            "Moves or deletes of handled files that failed (retried).",
            None,
            |m| &m.post_processing_failed,
        ),
        f(
            "ftpl_leadership_stops",
            "Work stopped before a write because this member no longer leads.",
            None,
            |m| &m.leadership_stops,
        ),
        f(
            "ftpl_backlog_files",
            "Files of the last listing not done yet (0 on a standby).",
            None,
            |m| &m.backlog_files,
        ),
        f(
            "ftpl_backlog_oldest",
            "How long ago the oldest file not done yet was first listed.",
            Some(Unit::Seconds),
            |m| &m.backlog_oldest,
        ),
        f(
            "ftpl_last_listing_timestamp",
            "When the last listing succeeded (Unix time; 0: never).",
            Some(Unit::Seconds),
            |m| &m.last_listing,
        ),
        f(
            "ftpl_handlers_in_flight",
            "Handlers running now.",
            None,
            |m| &m.handlers_in_flight,
        ),
        f(
            "ftpl_fenced_writes",
            "Ledger writes refused by the store because another member holds a newer term.",
            None,
            |m| &m.fenced_writes,
        ),
        f(
            "ftpl_ledger_claims",
            "Claim calls to the store (one round trip each, many versions per call).",
            None,
            |m| &m.ledger_claims,
        ),
        f(
            "ftpl_ledger_records",
            "Record calls to the store (one round trip each, many updates per call).",
            None,
            |m| &m.ledger_records,
        ),
        f(
            "ftpl_ledger_lookups",
            "Lookup calls to the store for listed versions the leader's mirror does not hold.",
            None,
            |m| &m.ledger_lookups,
        ),
        f(
            "ftpl_ledger_rows",
            "The leader's ledger rows by state (0 on a standby).",
            None,
            |m| &m.ledger_rows[0],
        ),
    ]
}

/// What the collector reads at each scrape: the listeners now, by name.
type ListenerSet = dyn Fn() -> Vec<(String, Arc<Metrics>)> + Send + Sync;

/// The per-listener families, read from the current set of listeners at each scrape.
struct ListenerCollector {
    listeners: Box<ListenerSet>,
}

impl std::fmt::Debug for ListenerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerCollector").finish_non_exhaustive()
    }
}

impl Collector for ListenerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let listeners = (self.listeners)();
        let template = Metrics::default();
        for family in families() {
            let kind = (family.metric)(&template).metric_type();
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, family.unit.as_ref(), kind)?;
            for (name, metrics) in &listeners {
                if family.name == "ftpl_ledger_rows" {
                    for (state, gauge) in LEDGER_STATES.iter().zip(&metrics.ledger_rows) {
                        let labels = [("listener", name.as_str()), ("state", state)];
                        gauge.encode(metric.encode_family(&labels)?)?;
                    }
                } else {
                    let labels = [("listener", name.as_str())];
                    (family.metric)(metrics).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// The exposition format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics text 1.0, for a scraper that asks for it (`Accept:
    /// application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The process's one registry: the listeners' families and whatever else registers a
/// collector (the cluster configuration's gauges).
#[derive(Debug)]
pub struct MetricsRegistry {
    registry: Registry,
}

impl MetricsRegistry {
    /// A registry whose per-listener families come from `listeners`, called at each scrape.
    pub fn new(
        listeners: impl Fn() -> Vec<(String, Arc<Metrics>)> + Send + Sync + 'static,
    ) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ListenerCollector {
            listeners: Box::new(listeners),
        }));
        MetricsRegistry { registry }
    }

    /// Adds a collector of process-wide metrics.
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// The exposition of everything registered.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a collector.
        let result = match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> (Arc<Metrics>, Arc<Metrics>, MetricsRegistry) {
        let a = Arc::new(Metrics::default());
        let b = Arc::new(Metrics::default());
        let (ca, cb) = (a.clone(), b.clone());
        let registry = MetricsRegistry::new(move || {
            vec![("a".to_string(), ca.clone()), ("b".to_string(), cb.clone())]
        });
        (a, b, registry)
    }

    #[test]
    fn exposition_keeps_the_names_and_labels_each_listener() {
        let (a, b, registry) = two();
        a.set_role(Role::Leader);
        a.term.set(7);
        a.files_done.inc_by(3);
        b.fenced_writes.inc();
        b.ledger_records.inc_by(2);
        a.heartbeat_latency.observe(Duration::from_millis(500));
        a.handler_duration.observe(Duration::from_millis(20));
        a.handler_duration.observe(Duration::from_secs(2));
        a.ledger_rows[3].set(2);
        let text = registry.encode(Format::Prometheus);
        for line in [
            "ftpl_role{listener=\"a\"} 1",
            "ftpl_role{listener=\"b\"} 0",
            "ftpl_term{listener=\"a\"} 7",
            "ftpl_files_done_total{listener=\"a\"} 3",
            "ftpl_fenced_writes_total{listener=\"b\"} 1",
            "ftpl_ledger_records_total{listener=\"b\"} 2",
            "ftpl_leadership_stops_total{listener=\"a\"} 0",
            "ftpl_heartbeat_latency_seconds_sum{listener=\"a\"} 0.5",
            "ftpl_heartbeat_latency_seconds_count{listener=\"a\"} 1",
            "ftpl_handler_duration_seconds_bucket{listener=\"a\",le=\"0.01\"} 0",
            "ftpl_handler_duration_seconds_bucket{listener=\"a\",le=\"0.05\"} 1",
            "ftpl_handler_duration_seconds_bucket{listener=\"a\",le=\"+Inf\"} 2",
            "ftpl_handler_duration_seconds_count{listener=\"a\"} 2",
            "ftpl_ledger_rows{listener=\"a\",state=\"done\"} 2",
            "# TYPE ftpl_takeovers_total counter",
            "# TYPE ftpl_handler_duration_seconds histogram",
            "# TYPE ftpl_backlog_oldest_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert_eq!(text.matches("# TYPE ftpl_files_done_total ").count(), 1);
        assert_eq!(text.matches("# HELP ").count(), families().len());
    }

    #[test]
    fn openmetrics_on_request() {
        let (a, _, registry) = two();
        a.files_done.inc();
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        let format = Format::from_accept(Some("application/openmetrics-text;version=1.0.0"));
        let text = registry.encode(format);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE ftpl_files_done counter\n"), "{text}");
        assert!(
            text.contains("\nftpl_files_done_total{listener=\"a\"} 1\n"),
            "{text}"
        );
    }
}
