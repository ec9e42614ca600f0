//! Prometheus metrics, hand-written exposition (no exporter crate: a few atomics suffice).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coord_core::Role;

/// A counter of events.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A summary of durations: count and sum (seconds), enough for rates and averages.
#[derive(Debug, Default)]
pub struct Timer {
    count: AtomicU64,
    micros: AtomicU64,
}

impl Timer {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn sum_seconds(&self) -> f64 {
        self.micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// Every metric the listener exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// 0 standby, 1 leader, 2 stopped.
    pub role: AtomicU64,
    /// The latest term seen.
    pub term: AtomicU64,
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
    /// When the last listing succeeded (milliseconds since the Unix epoch, 0: never).
    pub last_listing_unix_ms: AtomicU64,
    /// Files of the last listing not done yet (while leading).
    pub backlog_files: AtomicU64,
    /// How long ago the oldest of them was first listed, in milliseconds.
    pub backlog_oldest_ms: AtomicU64,
    /// Handlers running now.
    pub handlers_in_flight: AtomicU64,
    /// The leader's ledger mirror by state: new, claimed, handled, done, failed, error.
    pub ledger_rows: [AtomicU64; 6],
    /// The last outcomes, newest last (for the status page).
    pub recent: std::sync::Mutex<std::collections::VecDeque<RecentFile>>,
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
        let (files, oldest) = backlog.map_or((0, 0), |b| {
            (
                u64::try_from(b.files).unwrap_or(u64::MAX),
                u64::try_from(b.oldest_age.as_millis()).unwrap_or(u64::MAX),
            )
        });
        self.backlog_files.store(files, Ordering::Relaxed);
        self.backlog_oldest_ms.store(oldest, Ordering::Relaxed);
        for (i, slot) in self.ledger_rows.iter().enumerate() {
            let n = backlog.map_or(0, |b| b.rows[i].1);
            slot.store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// Notes a successful listing.
    pub fn listed_now(&self) {
        self.last_listing_unix_ms
            .store(unix_ms(), Ordering::Relaxed);
    }

    /// The last outcomes, newest first.
    pub fn recent_files(&self) -> Vec<RecentFile> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().cloned().collect()
    }

    /// Sets the role gauge.
    pub fn set_role(&self, role: Role) {
        let v = match role {
            Role::Standby => 0,
            Role::Leader => 1,
            Role::Stopped => 2,
        };
        self.role.store(v, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4) of this one set, without labels.
    pub fn render(&self) -> String {
        render_families(&[(None, self)])
    }

    /// The exposition of several listeners' metrics, each sample labelled
    /// `listener="<name>"`, each family's HELP and TYPE once.
    pub fn render_all(listeners: &[(&str, &Metrics)]) -> String {
        let entries: Vec<(Option<&str>, &Metrics)> = listeners
            .iter()
            .map(|(name, m)| (Some(*name), *m))
            .collect();
        render_families(&entries)
    }
}

fn label(name: Option<&str>) -> String {
    match name {
        // Listener names are validated ([A-Za-z0-9._-]); escape anyway.
        Some(name) => format!(
            "{{listener=\"{}\"}}",
            name.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        None => String::new(),
    }
}

fn render_families(entries: &[(Option<&str>, &Metrics)]) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str, v: &dyn Fn(&Metrics) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (l, m) in entries {
            let _ = writeln!(out, "{name}{} {}", label(*l), v(m));
        }
    };
    let counter = |out: &mut String, name: &str, help: &str, c: &dyn Fn(&Metrics) -> &Counter| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (l, m) in entries {
            let _ = writeln!(out, "{name}{} {}", label(*l), c(m).get());
        }
    };
    let summary = |out: &mut String, name: &str, help: &str, t: &dyn Fn(&Metrics) -> &Timer| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
        for (l, m) in entries {
            let t = t(m);
            let l = label(*l);
            let _ = writeln!(
                out,
                "{name}_sum{l} {}\n{name}_count{l} {}",
                t.sum_seconds(),
                t.count()
            );
        }
    };
    gauge(
        &mut out,
        "ftpl_role",
        "Role of this member: 0 standby, 1 leader, 2 stopped.",
        &|m: &Metrics| m.role.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "ftpl_term",
        "Latest election term seen.",
        &|m: &Metrics| m.term.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "ftpl_heartbeats_ok_total",
        "Acknowledged heartbeats.",
        &|m: &Metrics| &m.heartbeats_ok,
    );
    counter(
        &mut out,
        "ftpl_heartbeats_failed_total",
        "Heartbeats that failed or timed out.",
        &|m: &Metrics| &m.heartbeats_failed,
    );
    summary(
        &mut out,
        "ftpl_heartbeat_latency_seconds",
        "Heartbeat round trip to the store.",
        &|m: &Metrics| &m.heartbeat_latency,
    );
    counter(
        &mut out,
        "ftpl_takeovers_total",
        "Terms won by this member.",
        &|m: &Metrics| &m.takeovers,
    );
    counter(
        &mut out,
        "ftpl_files_dispatched_total",
        "File versions handed to the handler.",
        &|m: &Metrics| &m.files_dispatched,
    );
    counter(
        &mut out,
        "ftpl_files_done_total",
        "File versions handled and post-processed.",
        &|m: &Metrics| &m.files_done,
    );
    counter(
        &mut out,
        "ftpl_files_failed_total",
        "Handler attempts that failed.",
        &|m: &Metrics| &m.files_failed,
    );
    counter(
        &mut out,
        "ftpl_files_error_total",
        "File versions moved to the error folder after the retry budget.",
        &|m: &Metrics| &m.files_error,
    );
    counter(
        &mut out,
        "ftpl_redeliveries_total",
        "Dispatches of versions claimed earlier and never finished.",
        &|m: &Metrics| &m.redeliveries,
    );
    summary(
        &mut out,
        "ftpl_listing_duration_seconds",
        "Listing of the source directory.",
        &|m: &Metrics| &m.listing_duration,
    );
    counter(
        &mut out,
        "ftpl_listings_failed_total",
        "Listings that failed.",
        &|m: &Metrics| &m.listings_failed,
    );
    counter(
        &mut out,
        "ftpl_skipped_names_total",
        "Hostile or unparsable names skipped by listings.",
        &|m: &Metrics| &m.skipped_names,
    );
    counter(
        &mut out,
        "ftpl_post_processing_failed_total",
        "Moves or deletes of handled files that failed (retried).",
        &|m: &Metrics| &m.post_processing_failed,
    );
    counter(
        &mut out,
        "ftpl_leadership_stops_total",
        "Work stopped before a write because this member no longer leads.",
        &|m: &Metrics| &m.leadership_stops,
    );
    gauge(
        &mut out,
        "ftpl_backlog_files",
        "Files of the last listing not done yet (0 on a standby).",
        &|m: &Metrics| m.backlog_files.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP ftpl_backlog_oldest_seconds How long ago the oldest file not done yet was first listed.\n# TYPE ftpl_backlog_oldest_seconds gauge"
    );
    for (l, m) in entries {
        let _ = writeln!(
            out,
            "ftpl_backlog_oldest_seconds{} {}",
            label(*l),
            m.backlog_oldest_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "# HELP ftpl_last_listing_timestamp_seconds When the last listing succeeded (Unix time; 0: never).\n# TYPE ftpl_last_listing_timestamp_seconds gauge"
    );
    for (l, m) in entries {
        let _ = writeln!(
            out,
            "ftpl_last_listing_timestamp_seconds{} {}",
            label(*l),
            m.last_listing_unix_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }
    gauge(
        &mut out,
        "ftpl_handlers_in_flight",
        "Handlers running now.",
        &|m: &Metrics| m.handlers_in_flight.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP ftpl_ledger_rows The leader's ledger rows by state (0 on a standby).\n# TYPE ftpl_ledger_rows gauge"
    );
    for (l, m) in entries {
        for (i, state) in ["new", "claimed", "handled", "done", "failed", "error"]
            .iter()
            .enumerate()
        {
            let labels = match l {
                Some(name) => format!(
                    "{{listener=\"{}\",state=\"{state}\"}}",
                    name.replace('"', "")
                ),
                None => format!("{{state=\"{state}\"}}"),
            };
            let _ = writeln!(
                out,
                "ftpl_ledger_rows{labels} {}",
                m.ledger_rows[i].load(Ordering::Relaxed)
            );
        }
    }
    counter(
        &mut out,
        "ftpl_fenced_writes_total",
        "Ledger writes refused by the store because another member holds a newer term.",
        &|m: &Metrics| &m.fenced_writes,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::default();
        m.set_role(Role::Leader);
        m.term.store(7, Ordering::Relaxed);
        m.files_done.add(3);
        m.fenced_writes.inc();
        m.heartbeat_latency.observe(Duration::from_millis(500));
        let text = m.render();
        assert!(text.contains("\nftpl_role 1\n"), "{text}");
        assert!(text.contains("\nftpl_term 7\n"), "{text}");
        assert!(text.contains("\nftpl_files_done_total 3\n"), "{text}");
        assert!(text.contains("\nftpl_fenced_writes_total 1\n"), "{text}");
        assert!(text.contains("\nftpl_leadership_stops_total 0\n"), "{text}");
        assert!(
            text.contains("ftpl_heartbeat_latency_seconds_sum 0.5\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ftpl_takeovers_total counter"),
            "{text}"
        );
    }
}
