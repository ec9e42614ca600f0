//! A small pool of SSH sessions: one is reused across operations; more (up to
//! `max_sessions`) only while reads or writes run in parallel. A session that failed with a
//! connection error or a timeout is dropped, and so are its idle siblings (they most likely
//! share its fate); the next call reconnects, with exponential backoff after failed connects.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord_core::FsError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::connect::{Conn, connect};
use crate::error::breaks_session;
use crate::settings::{Credentials, SftpSettings};

pub(crate) struct Pool {
    pub(crate) settings: SftpSettings,
    pub(crate) server: String,
    credentials: Credentials,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
    generation: AtomicU64,
    reconnect: tokio::sync::Mutex<Backoff>,
}

#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    last_failure: Option<Instant>,
}

impl Backoff {
    fn delay(&self, initial: Duration, max: Duration) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let exp = self.failures.saturating_sub(1).min(20);
        initial.saturating_mul(1 << exp).min(max)
    }
}

/// A session checked out of the pool, with its permit. Give it back with [`Lease::release`];
/// dropping a lease drops the session.
pub(crate) struct Lease {
    conn: Option<Conn>,
    reused: bool,
    _permit: OwnedSemaphorePermit,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("conn", &self.conn).finish()
    }
}

impl Lease {
    /// True when the session was idle in the pool (it may have died while idle), false when
    /// it was opened for this checkout.
    pub(crate) fn reused(&self) -> bool {
        self.reused
    }

    pub(crate) fn conn(&self) -> &Conn {
        // Present from checkout until release consumes the lease.
        self.conn
            .as_ref()
            .expect("lease holds a session until released")
    }

    /// Returns the session to the pool, unless `outcome` says it broke. Blocking (a dropped
    /// session closes its channel): call from `spawn_blocking`.
    pub(crate) fn release(mut self, error: Option<&FsError>) {
        let Some(conn) = self.conn.take() else { return };
        if let Some(err) = error.filter(|e| breaks_session(e)) {
            self.pool.invalidate(conn.generation, err);
            return;
        }
        if conn.generation == self.pool.generation.load(Ordering::Acquire) {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}

impl Pool {
    pub(crate) fn new(settings: SftpSettings, credentials: Credentials) -> Pool {
        Pool {
            server: settings.server(),
            permits: Arc::new(Semaphore::new(settings.max_sessions)),
            settings,
            credentials,
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            reconnect: tokio::sync::Mutex::new(Backoff::default()),
        }
    }

    /// Drops every session of `generation` (the broken one's siblings) so that the next call
    /// connects afresh.
    fn invalidate(&self, generation: u64, err: &FsError) {
        if self
            .generation
            .compare_exchange(
                generation,
                generation + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            tracing::warn!(server = %self.server, error = %err, "sftp session broken; the next call reconnects");
        }
        let stale: Vec<Conn> =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        drop(stale);
    }

    /// Checks out a session: an idle one, or a new one (after the backoff delay if the last
    /// connect failed).
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Lease, FsError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| FsError::Connection {
                operation: "connect",
                server: self.server.clone(),
                cause: "pool closed".to_string(),
            })?;
        let current = self.generation.load(Ordering::Acquire);
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|c| c.generation == current);
            idle.pop()
        };
        let (conn, reused) = match reused {
            Some(conn) => (conn, true),
            None => (self.connect().await?, false),
        };
        Ok(Lease {
            conn: Some(conn),
            reused,
            _permit: permit,
            pool: Arc::clone(self),
        })
    }

    async fn connect(self: &Arc<Self>) -> Result<Conn, FsError> {
        let mut backoff = self.reconnect.lock().await;
        let delay = backoff.delay(self.settings.reconnect_initial, self.settings.reconnect_max);
        if let Some(last) = backoff.last_failure {
            tokio::time::sleep_until(last + delay).await;
        }
        let pool = Arc::clone(self);
        let generation = self.generation.load(Ordering::Acquire);
        let result = tokio::task::spawn_blocking(move || {
            connect(&pool.settings, &pool.credentials, generation)
        })
        .await
        .unwrap_or_else(|e| {
            Err(FsError::Connection {
                operation: "connect",
                server: self.server.clone(),
                cause: format!("connect task failed: {e}"),
            })
        });
        match &result {
            Ok(_) => {
                if backoff.failures > 0 {
                    tracing::info!(server = %self.server, after_failures = backoff.failures, "sftp reconnected");
                }
                *backoff = Backoff::default();
            }
            Err(e) => {
                backoff.failures = backoff.failures.saturating_add(1);
                backoff.last_failure = Some(Instant::now());
                let next =
                    backoff.delay(self.settings.reconnect_initial, self.settings.reconnect_max);
                tracing::warn!(server = %self.server, error = %e, failures = backoff.failures,
                    next_attempt_in = ?next, "sftp connect failed");
            }
        }
        result
    }
}

/// Whether an operation may be sent again on a fresh session when the idle session it was
/// given turns out to be dead (closed by the server or a firewall while idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Idempotent operations (list, open, mkdir -p): one more try on a new session.
    OnStaleSession,
    /// Operations whose first attempt may have taken effect (rename, delete): report.
    Never,
}

impl Retry {
    /// True when `err` on a lease that was `reused` deserves the one retry.
    pub(crate) fn applies(self, reused: bool, err: &FsError) -> bool {
        self == Retry::OnStaleSession && reused && matches!(err, FsError::Connection { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let mut b = Backoff::default();
        assert_eq!(b.delay(initial, max), Duration::ZERO);
        let delays: Vec<_> = (1..=6)
            .map(|n| {
                b.failures = n;
                b.delay(initial, max).as_millis()
            })
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        b.failures = u32::MAX;
        assert_eq!(b.delay(initial, max), max);
    }
}
