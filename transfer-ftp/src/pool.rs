//! A small pool of sessions: at most `max_sessions` open at once, idle ones reused, dead ones
//! dropped (the next call reconnects), failed connects backed off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coord_core::FsError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::session::{Session, Shared};
use crate::settings::TlsMode;

/// Reconnect pacing. A failed connect (refused, timed out, login or certificate refused)
/// makes every later connect fail fast, without touching the network, until the delay has
/// passed; the delay doubles per failure up to `reconnect_backoff_max`. A session that dies
/// while in use does not count: the next call reconnects at once.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<FsError>,
}

#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) shared: Shared,
    idle: Mutex<Vec<Session>>,
    permits: Arc<Semaphore>,
    backoff: Mutex<Backoff>,
    opened: AtomicU64,
}

/// A session taken from the pool, with its permit. [`Lease::release`] puts the session back;
/// dropping the lease closes the session (used after errors that may leave it out of step).
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) session: Session,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Returns the session to the pool for reuse.
    pub(crate) fn release(mut self) {
        self.session.last_used = Instant::now();
        let Lease { session, pool, .. } = self;
        pool.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
    }

    /// Settles an operation: keeps the session unless the result says it may be broken.
    pub(crate) fn settle<T>(self, result: Result<T, FsError>) -> Result<T, FsError> {
        match &result {
            Err(e) if e.is_transient() => {
                tracing::warn!(server = %self.pool.shared.server, error = %e, "dropping ftp session");
                drop(self);
            }
            _ => self.release(),
        }
        result
    }

    pub(crate) fn server(&self) -> &str {
        &self.pool.shared.server
    }

    pub(crate) fn op_timeout(&self) -> Duration {
        self.pool.shared.settings.op_timeout
    }
}

impl Pool {
    pub(crate) fn new(shared: Shared) -> Pool {
        let permits = Arc::new(Semaphore::new(shared.settings.max_sessions));
        Pool {
            shared,
            idle: Mutex::new(Vec::new()),
            permits,
            backoff: Mutex::new(Backoff::default()),
            opened: AtomicU64::new(0),
        }
    }

    /// A session for `operation`: an idle one (probed with NOOP when it has been idle long),
    /// or a new one.
    pub(crate) async fn checkout(
        self: &Arc<Self>,
        operation: &'static str,
    ) -> Result<Lease, FsError> {
        let settings = &self.shared.settings;
        let permit =
            tokio::time::timeout(settings.op_timeout, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| FsError::Timeout {
                    operation,
                    path: format!(
                        "(waiting for one of {} ftp sessions)",
                        settings.max_sessions
                    ),
                    after: settings.op_timeout,
                })?
                .map_err(|_| FsError::Connection {
                    operation,
                    server: self.shared.server.clone(),
                    cause: "session pool closed".into(),
                })?;
        self.fill(permit, operation).await
    }

    /// A session for `operation` if one of the pool's permits is free right now (an idle
    /// session, or a new one); `None` when every session is taken (nothing waits).
    pub(crate) async fn try_checkout(
        self: &Arc<Self>,
        operation: &'static str,
    ) -> Option<Result<Lease, FsError>> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.fill(permit, operation).await)
    }

    /// Most sessions open at once.
    pub(crate) fn max_sessions(&self) -> usize {
        self.shared.settings.max_sessions
    }

    async fn fill(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        operation: &'static str,
    ) -> Result<Lease, FsError> {
        let settings = &self.shared.settings;
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut session) = idle else { break };
            if session.last_used.elapsed() < settings.idle_probe_after {
                return Ok(self.lease(session, permit));
            }
            match tokio::time::timeout(settings.op_timeout, session.ftp.noop()).await {
                Ok(Ok(())) => return Ok(self.lease(session, permit)),
                _ => {
                    tracing::info!(server = %self.shared.server, "idle ftp session is dead, dropping it")
                }
            }
        }
        let session = self.connect(operation).await?;
        Ok(self.lease(session, permit))
    }

    /// Sessions opened successfully since the pool was made.
    pub(crate) fn sessions_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn lease(self: &Arc<Self>, session: Session, permit: OwnedSemaphorePermit) -> Lease {
        Lease {
            session,
            pool: self.clone(),
            _permit: permit,
        }
    }

    async fn connect(&self, operation: &'static str) -> Result<Session, FsError> {
        let settings = &self.shared.settings;
        {
            let backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            if let (Some(at), Some(last)) = (backoff.retry_at, &backoff.last_error)
                && let Some(wait) = at.checked_duration_since(Instant::now())
            {
                return Err(with_backoff_note(last, operation, wait));
            }
        }
        let result =
            match tokio::time::timeout(settings.connect_timeout, Session::connect(&self.shared))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(FsError::Timeout {
                    // A server speaking implicit FTPS sends no greeting to a plain client: it
                    // waits for TLS. Say so, naming the key.
                    operation: if settings.tls == TlsMode::Implicit {
                        "connect"
                    } else {
                        "connect (no greeting? a server speaking implicit FTPS, usually on \
                         port 990, needs `tls = \"implicit\"`)"
                    },
                    path: self.shared.server.clone(),
                    after: settings.connect_timeout,
                }),
            };
        let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) => {
                *backoff = Backoff::default();
                self.opened.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                backoff.failures = backoff.failures.saturating_add(1);
                let factor = 2u32.saturating_pow(backoff.failures.saturating_sub(1).min(20));
                let delay = settings
                    .reconnect_backoff_min
                    .saturating_mul(factor)
                    .min(settings.reconnect_backoff_max);
                backoff.retry_at = Some(Instant::now() + delay);
                backoff.last_error = Some(e.clone());
                tracing::warn!(
                    server = %self.shared.server,
                    error = %e,
                    retry_in = ?delay,
                    "ftp connect failed"
                );
            }
        }
        result
    }
}

/// The last connect error again, with a note on when the next attempt is allowed; the kind
/// (auth, trust, connection, timeout) is kept.
fn with_backoff_note(last: &FsError, operation: &'static str, wait: Duration) -> FsError {
    let note = |cause: &str| format!("{cause} (not retried for another {wait:?})");
    match last.clone() {
        FsError::Auth { server, cause } => FsError::Auth {
            server,
            cause: note(&cause),
        },
        FsError::Trust { server, cause } => FsError::Trust {
            server,
            cause: note(&cause),
        },
        FsError::Connection { server, cause, .. } => FsError::Connection {
            operation,
            server,
            cause: note(&cause),
        },
        FsError::Timeout { path, after, .. } => FsError::Connection {
            operation,
            server: path,
            cause: note(&format!("connect timed out after {after:?}")),
        },
        other => other,
    }
}
