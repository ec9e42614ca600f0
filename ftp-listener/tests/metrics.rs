//! `/metrics` of a running process with two listeners, parsed: one `HELP` and one `TYPE` per
//! family, every sample labelled with its listener, and the histograms (handler duration,
//! file size, heartbeat latency, listing duration) with cumulative buckets whose `+Inf`
//! bucket equals `_count`, which equals the number of files handled.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Proc, Site, http_get, wait_for};

const LIMIT: Duration = Duration::from_secs(20);

/// One sample: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The exposition, parsed: `# TYPE` lines (name, type), `# HELP` names, samples.
struct Exposition {
    types: Vec<(String, String)>,
    helps: Vec<String>,
    samples: Vec<Sample>,
}

fn parse(text: &str) -> Exposition {
    let mut types = Vec::new();
    let mut helps = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            types.push((name.to_string(), kind.to_string()));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helps.push(rest.split(' ').next().unwrap().to_string());
        } else if line.starts_with('#') {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').expect("label=value");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("a number: {line}")),
            };
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    Exposition {
        types,
        helps,
        samples,
    }
}

impl Exposition {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                    && s.labels.len() == labels.len()
            })
            .map(|s| s.value)
    }

    /// A histogram's buckets (bound, cumulative count) in order, its count and its sum.
    fn histogram(&self, name: &str, listener: &str) -> (Vec<(f64, f64)>, f64, f64) {
        let buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == format!("{name}_bucket")
                    && s.labels.get("listener").map(String::as_str) == Some(listener)
            })
            .map(|s| {
                let le = &s.labels["le"];
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (bound, s.value)
            })
            .collect();
        let count = self
            .get(&format!("{name}_count"), &[("listener", listener)])
            .unwrap_or_else(|| panic!("{name}_count of {listener}"));
        let sum = self
            .get(&format!("{name}_sum"), &[("listener", listener)])
            .unwrap_or_else(|| panic!("{name}_sum of {listener}"));
        (buckets, count, sum)
    }
}

fn check_histogram(e: &Exposition, name: &str, listener: &str) -> f64 {
    let (buckets, count, sum) = e.histogram(name, listener);
    assert!(buckets.len() >= 5, "{name}: buckets {buckets:?}");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{name}: bounds grow and counts are cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last().map(|b| b.0), Some(f64::INFINITY), "{name}");
    assert_eq!(
        buckets.last().map(|b| b.1),
        Some(count),
        "{name}: +Inf is the count"
    );
    assert!(sum >= 0.0, "{name}");
    count
}

fn get_with(addr: &str, path: &str, accept: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn histograms_and_listener_labels_of_two_listeners_in_one_process() {
    let site = Site::new();
    std::fs::create_dir_all(site.path("orders")).unwrap();
    std::fs::write(
        site.path("two.toml"),
        r#"
member_id = "solo"
poll_interval = "100ms"
http.bind = "127.0.0.1:0"
[coordination]
heartbeat_interval = "100ms"
liveness_timeout = "500ms"
[coordination.sqlite]
path = "ftp-listener.db"

[[listeners]]
name = "invoices"
source.path = "inbox"

[[listeners]]
name = "orders"
source.path = "orders"
"#,
    )
    .unwrap();
    let proc = Proc::spawn(site.dir.path(), &["--config", "two.toml", "run"]);
    assert!(
        wait_for(LIMIT, || (proc.count_lines("became leader") >= 2)
            .then_some(()))
        .is_some(),
        "{}",
        proc.output()
    );
    let addr = proc.http_addr();
    const N: usize = 4;
    for i in 0..N {
        site.drop_file(&format!("f{i}.csv"), &vec![b'x'; 2000 * (i + 1)]);
    }
    std::fs::write(site.path("orders/o1"), b"1").unwrap();
    let done = wait_for(LIMIT, || {
        (site.names_in("inbox/.done").len() == N && site.path("orders/.done/o1").exists())
            .then_some(())
    });
    assert!(done.is_some(), "{}", proc.output());
    let text = wait_for(LIMIT, || {
        let (code, text) = http_get(&addr, "/metrics");
        (code == 200 && text.contains("ftpl_files_done_total{listener=\"invoices\"} 4"))
            .then_some(text)
    })
    .unwrap_or_else(|| panic!("{}", http_get(&addr, "/metrics").1));
    let e = parse(&text);

    // One HELP and one TYPE per family, and every sample belongs to a declared family.
    let type_names: Vec<&str> = e.types.iter().map(|(n, _)| n.as_str()).collect();
    let unique: BTreeSet<&str> = type_names.iter().copied().collect();
    assert_eq!(unique.len(), type_names.len(), "a TYPE line twice: {text}");
    let helps: BTreeSet<&str> = e.helps.iter().map(String::as_str).collect();
    assert_eq!(helps.len(), e.helps.len(), "a HELP line twice: {text}");
    assert_eq!(helps, unique, "HELP and TYPE name the same families");
    for s in &e.samples {
        let family = e
            .types
            .iter()
            .find(|(n, kind)| {
                s.name == *n
                    || (kind == "histogram"
                        && ["_bucket", "_count", "_sum"]
                            .iter()
                            .any(|suffix| s.name == format!("{n}{suffix}")))
            })
            .unwrap_or_else(|| panic!("{} has no TYPE", s.name));
        assert!(
            s.labels.contains_key("listener"),
            "{} ({}) has no listener label",
            s.name,
            family.0
        );
    }
    for (name, kind) in [
        ("ftpl_handler_duration_seconds", "histogram"),
        ("ftpl_file_size_bytes", "histogram"),
        ("ftpl_heartbeat_latency_seconds", "histogram"),
        ("ftpl_listing_duration_seconds", "histogram"),
        ("ftpl_files_done_total", "counter"),
        ("ftpl_backlog_files", "gauge"),
        ("ftpl_backlog_oldest_seconds", "gauge"),
        ("ftpl_last_listing_timestamp_seconds", "gauge"),
        ("ftpl_handlers_in_flight", "gauge"),
        ("ftpl_ledger_rows", "gauge"),
    ] {
        assert!(
            e.types.iter().any(|(n, k)| n == name && k == kind),
            "{name} {kind}: {text}"
        );
    }

    // The histograms, per listener: handler calls and sizes count the files handled.
    for (listener, files) in [("invoices", N), ("orders", 1)] {
        let handled = check_histogram(&e, "ftpl_handler_duration_seconds", listener);
        assert_eq!(handled, files as f64, "{listener}: {text}");
        let sized = check_histogram(&e, "ftpl_file_size_bytes", listener);
        assert_eq!(sized, files as f64, "{listener}");
        assert!(check_histogram(&e, "ftpl_heartbeat_latency_seconds", listener) > 0.0);
        assert!(check_histogram(&e, "ftpl_listing_duration_seconds", listener) > 0.0);
        assert_eq!(
            e.get("ftpl_role", &[("listener", listener)]),
            Some(1.0),
            "{listener} leads"
        );
    }
    let (_, _, bytes) = e.histogram("ftpl_file_size_bytes", "invoices");
    assert_eq!(bytes, (2000 * (1 + 2 + 3 + 4)) as f64, "the sizes' sum");
    let (buckets, _, _) = e.histogram("ftpl_file_size_bytes", "invoices");
    assert_eq!(
        buckets.iter().find(|b| b.0 == 4096.0).map(|b| b.1),
        Some(2.0),
        "2000 and 4000 bytes are at most 4 KiB: {buckets:?}"
    );
    // The leader's ledger mirror, one series per state; it holds at most the four versions
    // (those done and moved away leave it at the next listing).
    let tracked: f64 = ["new", "claimed", "handled", "done", "failed", "error"]
        .iter()
        .map(|state| {
            e.get(
                "ftpl_ledger_rows",
                &[("listener", "invoices"), ("state", state)],
            )
            .unwrap_or_else(|| panic!("ftpl_ledger_rows {state}: {text}"))
        })
        .sum();
    assert!(tracked <= N as f64, "{text}");

    // OpenMetrics for a scraper that asks for it.
    let open = get_with(
        &addr,
        "/metrics",
        "application/openmetrics-text;version=1.0.0",
    );
    assert!(
        open.contains("application/openmetrics-text") && open.ends_with("# EOF\n"),
        "{open}"
    );
    assert!(open.contains("# TYPE ftpl_files_done counter"), "{open}");
}
