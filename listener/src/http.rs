//! `/healthz`, `/readyz` and `/metrics` on a tiny HTTP/1.1 server (GET only, one request per
//! connection, bounded reads): an exporter crate would bring a whole HTTP stack for three
//! fixed answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::driver::ElectionStatus;
use crate::metrics::Metrics;

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
}

/// What the endpoints read: every listener of the process (the set changes when a new
/// cluster configuration is applied), and the cluster configuration's state.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    listeners: Arc<std::sync::RwLock<Vec<ListenerEndpoint>>>,
    /// The cluster configuration's state on this member.
    pub cluster: Arc<ClusterGauges>,
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
    /// 1 while the newest version could not be applied here.
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
            "/metrics" => {
                let entries: Vec<(&str, &Metrics)> = listeners
                    .iter()
                    .map(|l| (l.name.as_str(), &*l.metrics))
                    .collect();
                let mut text = Metrics::render_all(&entries);
                self.cluster.render(&mut text);
                (200, "text/plain; version=0.0.4", text)
            }
            _ => (404, "text/plain", "not found\n".to_string()),
        }
    }
}

impl ClusterGauges {
    fn render(&self, out: &mut String) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.enabled.load(Relaxed) {
            return;
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
                "1 while the newest cluster configuration cannot be applied on this member.",
                self.failed.load(Relaxed),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            ));
        }
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
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), serve_one(stream, &endpoints))
                    .await;
            });
        }
    };
    Ok((local, serve))
}

async fn serve_one(mut stream: TcpStream, endpoints: &Endpoints) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (code, kind, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) => endpoints.answer(path.split('?').next().unwrap_or(path)),
        _ => (405, "text/plain", "only GET\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
