//! The HTTP endpoints on hyper (HTTP/1.1, one request per connection, GET only):
//! `/` the status page, `/healthz`, `/readyz` (one line per listener), `/metrics` (Prometheus
//! text, or OpenMetrics when the scraper asks for it).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::driver::ElectionStatus;
use crate::metrics::{Format, Metrics, MetricsRegistry};

/// What the endpoints read of one listener.
#[derive(Debug, Clone)]
pub struct ListenerEndpoint {
    /// The listener's name (the `listener` label of its metrics).
    pub name: String,
    /// The election's status.
    pub status: watch::Receiver<ElectionStatus>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Ready means an acknowledged heartbeat within this.
    pub renew_deadline: Duration,
    /// Why the listener is not running (its store or source could not be set up), if so.
    pub problem: watch::Receiver<Option<String>>,
    /// The listener's store and group once it runs (the status page observes the group).
    pub group: Arc<std::sync::OnceLock<(coord_core::SharedStore, coord_core::GroupId)>>,
    /// The group's liveness timeout (a member whose heartbeat is older is shown stale).
    pub liveness_timeout: Duration,
    /// This member's ID.
    pub member: String,
}

/// What the endpoints read: every listener of the process (the set changes when a new
/// cluster configuration is applied), the cluster configuration's state, and the process's
/// one metrics registry, which reads both at each scrape.
#[derive(Debug, Clone)]
pub struct Endpoints {
    listeners: Arc<std::sync::RwLock<Vec<ListenerEndpoint>>>,
    /// The cluster configuration's state on this member.
    pub cluster: Arc<ClusterGauges>,
    metrics: Arc<MetricsRegistry>,
}

impl Default for Endpoints {
    fn default() -> Self {
        let listeners: Arc<std::sync::RwLock<Vec<ListenerEndpoint>>> = Arc::default();
        let cluster = Arc::new(ClusterGauges::default());
        let read = listeners.clone();
        let mut metrics = MetricsRegistry::new(move || {
            read.read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|l| (l.name.clone(), l.metrics.clone()))
                .collect()
        });
        metrics.register_collector(Box::new(cluster.clone()));
        Endpoints {
            listeners,
            cluster,
            metrics: Arc::new(metrics),
        }
    }
}

/// The cluster configuration on this member, for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterGauges {
    /// Whether this member takes its listeners from the cluster configuration.
    pub enabled: std::sync::atomic::AtomicBool,
    /// The version applied (0: none).
    pub applied: std::sync::atomic::AtomicU64,
    /// The newest version seen in the database.
    pub newest: std::sync::atomic::AtomicU64,
    /// 1 while a listener here is not on the definition of the version it should run.
    pub failed: std::sync::atomic::AtomicU64,
}

impl Endpoints {
    /// Adds (or replaces, by name) a listener.
    pub fn add(&self, listener: ListenerEndpoint) {
        let mut all = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|l| l.name != listener.name);
        all.push(listener);
    }

    /// Removes the listener `name`.
    pub fn remove(&self, name: &str) {
        let mut all = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|l| l.name != name);
    }

    /// The listeners now.
    pub fn listeners(&self) -> Vec<ListenerEndpoint> {
        self.listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The exposition of every listener's metrics and the cluster gauges.
    pub fn metrics_text(&self, format: Format) -> String {
        self.metrics.encode(format)
    }

    fn answer(&self, path: &str) -> (u16, &'static str, String) {
        let listeners = self.listeners();
        match path {
            "/healthz" => (200, "text/plain", "ok\n".to_string()),
            "/readyz" => {
                // Ready when every listener has a recent acknowledged heartbeat.
                let now = Instant::now();
                let mut ready = true;
                let mut body = String::new();
                for l in &listeners {
                    let status = l.status.borrow();
                    if status.is_ready(now, l.renew_deadline) {
                        body.push_str(&format!("{}: ready ({:?})\n", l.name, status.role));
                    } else {
                        ready = false;
                        let why = l
                            .problem
                            .borrow()
                            .clone()
                            .unwrap_or_else(|| "no recent acknowledged heartbeat".to_string());
                        body.push_str(&format!("{}: not ready: {why}\n", l.name));
                    }
                }
                (if ready { 200 } else { 503 }, "text/plain", body)
            }
            _ => (404, "text/plain", "not found\n".to_string()),
        }
    }
}

impl Collector for ClusterGauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.enabled.load(Relaxed) {
            return Ok(());
        }
        for (name, help, value) in [
            (
                "ftpl_cluster_config_version",
                "The cluster configuration version applied on this member.",
                self.applied.load(Relaxed),
            ),
            (
                "ftpl_cluster_config_newest_version",
                "The newest cluster configuration version in the database.",
                self.newest.load(Relaxed),
            ),
            (
                "ftpl_cluster_config_apply_failed",
                "1 while a listener of this member is not on the definition of the cluster configuration version it should run (it kept or went back to its previous one).",
                self.failed.load(Relaxed),
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn ago(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "never".to_string();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    format!("{:.1} s ago", now.saturating_sub(unix_ms) as f64 / 1000.0)
}

/// Seconds since the Unix epoch (a gauge) as milliseconds.
fn unix_ms_of(seconds: f64) -> u64 {
    (seconds * 1000.0) as u64
}

impl Endpoints {
    /// The status page: every listener's group (members, heartbeat ages, roles, the leader
    /// and its term, read from the store), this member's counters, the last listing and the
    /// last files with their outcome. Plain HTML that refreshes itself every 2 s: no script,
    /// no external asset.
    async fn page(&self) -> String {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let listeners = self.listeners();
        let member = listeners
            .first()
            .map(|l| l.member.clone())
            .unwrap_or_default();
        let mut html = String::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"2\"><title>ftp-listener</title>\
             <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
             td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}\
             .leader{color:#070;font-weight:bold}.stale{color:#a00}</style></head><body>\n",
        );
        let _ = writeln!(
            html,
            "<h1>ftp-listener</h1>\n<p>member <b id=\"member\">{}</b>, {} listener(s); this page refreshes every 2 s</p>",
            escape(&member),
            listeners.len()
        );
        if self.cluster.enabled.load(Relaxed) {
            let _ = writeln!(
                html,
                "<p>cluster configuration: version {} applied, newest {}{}</p>",
                self.cluster.applied.load(Relaxed),
                self.cluster.newest.load(Relaxed),
                if self.cluster.failed.load(Relaxed) == 1 {
                    " (<span class=\"stale\">not fully applied here: see ftp-listener status</span>)"
                } else {
                    ""
                }
            );
        }
        for l in &listeners {
            let name = escape(&l.name);
            let _ = writeln!(
                html,
                "<section id=\"listener-{name}\">\n<h2>listener {name}</h2>"
            );
            if let Some(problem) = l.problem.borrow().clone() {
                let _ = writeln!(
                    html,
                    "<p class=\"stale\">not running: {}</p>",
                    escape(&problem)
                );
            }
            let view = match l.group.get() {
                Some((store, group)) => {
                    use coord_core::CoordinationStore;
                    tokio::time::timeout(Duration::from_secs(1), store.observe(group))
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                None => None,
            };
            match &view {
                Some(view) => {
                    match &view.holder {
                        Some(h) => {
                            let _ = writeln!(
                                html,
                                "<p>leader <b class=\"leader\" id=\"leader-{name}\">{}</b>, term <b id=\"term-{name}\">{}</b>, lease age {} ms</p>",
                                escape(h.member.as_str()),
                                view.term.0,
                                h.lease_age.as_millis()
                            );
                        }
                        None => {
                            let _ = writeln!(
                                html,
                                "<p>leader <b id=\"leader-{name}\">none</b>, term <b id=\"term-{name}\">{}</b></p>",
                                view.term.0
                            );
                        }
                    }
                    html.push_str("<table><tr><th>member</th><th>incarnation</th><th>heartbeat age</th><th>role</th></tr>\n");
                    for m in &view.members {
                        let leads = view.holder.as_ref().is_some_and(|h| {
                            h.member == m.member && h.incarnation == m.incarnation
                        });
                        let role = if leads {
                            "<span class=\"leader\">leader</span>"
                        } else if m.heartbeat_age > l.liveness_timeout {
                            "<span class=\"stale\">stale</span>"
                        } else {
                            "standby"
                        };
                        let _ = writeln!(
                            html,
                            "<tr><td>{}</td><td>{}</td><td>{} ms</td><td>{role}</td></tr>",
                            escape(m.member.as_str()),
                            m.incarnation,
                            m.heartbeat_age.as_millis()
                        );
                    }
                    html.push_str("</table>\n");
                }
                None => html.push_str(
                    "<p class=\"stale\">the group cannot be read from the database now</p>\n",
                ),
            }
            let m = &l.metrics;
            let status = l.status.borrow().clone();
            let _ = writeln!(
                html,
                "<p>this member: {:?}; backlog <b id=\"backlog-{name}\">{}</b> file(s), the oldest listed {:.1} s ago; files dispatched {}, done {}, failed attempts {}, in error {}, redeliveries {}; last listing {}</p>",
                status.role,
                m.backlog_files.get(),
                m.backlog_oldest.get(),
                m.files_dispatched.get(),
                m.files_done.get(),
                m.files_failed.get(),
                m.files_error.get(),
                m.redeliveries.get(),
                ago(unix_ms_of(m.last_listing.get()))
            );
            let recent = m.recent_files();
            if !recent.is_empty() {
                html.push_str("<table><tr><th>when</th><th>file</th><th>outcome</th></tr>\n");
                for r in recent {
                    let _ = writeln!(
                        html,
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        ago(r.at_unix_ms),
                        escape(&r.path),
                        escape(&r.outcome)
                    );
                }
                html.push_str("</table>\n");
            }
            html.push_str("</section>\n");
        }
        html.push_str("</body></html>\n");
        html
    }
}

/// Binds `addr` (so a bad address fails at start) and returns the bound address and the
/// server future.
pub async fn bind(
    addr: SocketAddr,
    endpoints: Endpoints,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let endpoints = Arc::new(endpoints);
    let serve = async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors, or a connection reset before accept: try again soon.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let endpoints = endpoints.clone();
                    async move { Ok::<_, Infallible>(endpoints.respond(&request).await) }
                });
                // One request per connection (as the probes and scrapers use it); a client
                // that sends nothing, or reads slowly, is cut off after 5 s.
                let connection = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
            });
        }
    };
    Ok((local, serve))
}

impl Endpoints {
    async fn respond<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let (code, kind, body) = if request.method() != Method::GET {
            (405, "text/plain", "only GET\n".to_string())
        } else if path == "/" {
            (200, "text/html; charset=utf-8", self.page().await)
        } else if path == "/metrics" {
            let accept = request
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            (200, format.content_type(), self.metrics_text(format))
        } else {
            self.answer(path)
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() =
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(kind),
        );
        if code == 405 {
            response.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET"),
            );
        }
        response
    }
}
