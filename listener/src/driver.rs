//! The election driver: runs [`coord_core::Elector`] against a store with real time
//! (DESIGN §4). One store call in flight at a time, each bounded by a timeout; the role and
//! fence are published through a `watch` channel; the elector itself is shared behind a
//! [`Gate`] so the poll loop can re-check `may_dispatch(now)` before every fenced write.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use coord_core::{
    Action, CoordinationStore, ElectionConfig, ElectionError, Elector, Event, Fence, Incarnation,
    OwnRow, Role, StoreError, Term,
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::metrics::Metrics;

/// What the driver publishes after every step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionStatus {
    /// The role at the time of publishing.
    pub role: Role,
    /// The fence while leading.
    pub fence: Option<Fence>,
    /// The latest term seen.
    pub term: Term,
    /// Start of the last heartbeat the store acknowledged (local monotonic time).
    pub last_ack: Option<Instant>,
    /// Set when the elector refused to run (duplicate member ID).
    pub refused: Option<ElectionError>,
}

impl ElectionStatus {
    pub(crate) fn initial() -> ElectionStatus {
        ElectionStatus {
            role: Role::Standby,
            fence: None,
            term: Term(0),
            last_ack: None,
            refused: None,
        }
    }

    /// Ready: a heartbeat was acknowledged less than `renew_deadline` before `now`.
    pub fn is_ready(&self, now: Instant, renew_deadline: Duration) -> bool {
        self.role != Role::Stopped
            && self
                .last_ack
                .is_some_and(|at| now.saturating_duration_since(at) < renew_deadline)
    }
}

/// Shared access to the elector's dispatch rule: the poll loop asks it before every claim,
/// record and post-processing step.
#[derive(Debug, Clone)]
pub struct Gate {
    elector: Arc<Mutex<Elector>>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, Elector> {
        // A panic while holding this lock is a bug in the core; keep going with its state.
        self.elector.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fence, if this member may dispatch right now.
    pub fn may_dispatch(&self) -> Option<Fence> {
        self.may_dispatch_at(crate::clock::now())
    }

    /// The fence, if this member may dispatch at `now` (the listener's suspend-counting clock).
    pub fn may_dispatch_at(&self, now: Instant) -> Option<Fence> {
        self.lock().may_dispatch(now)
    }

    /// True while `fence` is still the one in force.
    pub fn holds(&self, fence: &Fence) -> bool {
        self.may_dispatch().as_ref() == Some(fence)
    }
}

/// Asks the driver to stop gracefully (release the token, delete the heartbeat row).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    /// Begins the graceful stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// The election driver of one member.
#[derive(Debug)]
pub struct ElectionDriver<S> {
    store: Arc<S>,
    gate: Gate,
    config: ElectionConfig,
    status: watch::Sender<ElectionStatus>,
    stop_tx: Arc<watch::Sender<bool>>,
    stop_rx: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

impl<S: CoordinationStore + 'static> ElectionDriver<S> {
    /// A driver with a fresh random incarnation.
    pub fn new(config: ElectionConfig, store: Arc<S>, metrics: Arc<Metrics>) -> Self {
        Self::with_incarnation(config, Incarnation(rand::random()), store, metrics)
    }

    /// A driver with a given incarnation (tests).
    pub fn with_incarnation(
        config: ElectionConfig,
        incarnation: Incarnation,
        store: Arc<S>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let elector = Elector::new(config.clone(), incarnation, crate::clock::now());
        let (status, _) = watch::channel(ElectionStatus::initial());
        let (stop_tx, stop_rx) = watch::channel(false);
        ElectionDriver {
            store,
            gate: Gate {
                elector: Arc::new(Mutex::new(elector)),
            },
            config,
            status,
            stop_tx: Arc::new(stop_tx),
            stop_rx,
            metrics,
        }
    }

    /// The dispatch gate for the poll loop.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// The published status.
    pub fn subscribe(&self) -> watch::Receiver<ElectionStatus> {
        self.status.subscribe()
    }

    /// The handle that requests a graceful stop.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop_tx.clone())
    }

    /// Runs until stopped (Ok) or refused (the error says why).
    pub async fn run(self) -> Result<(), ElectionError> {
        let span = tracing::info_span!(
            "election",
            member = %self.config.member,
            group = %self.config.group,
            term = tracing::field::Empty,
        );
        self.run_inner(span.clone()).instrument(span).await
    }

    async fn run_inner(mut self, span: tracing::Span) -> Result<(), ElectionError> {
        let call_timeout = self.gate.lock().store_call_timeout();
        let mut stopping = false;
        let mut failing = false;
        let mut status = ElectionStatus::initial();
        loop {
            if *self.stop_rx.borrow_and_update() && !stopping {
                stopping = true;
                tracing::info!("stopping: releasing the token");
                self.gate.lock().stop(crate::clock::now());
            }
            let sent_at = crate::clock::now();
            let action = self.gate.lock().poll_action(sent_at);
            let acted = action.is_some();
            if let Some(action) = action {
                self.perform(action, sent_at, call_timeout, &mut status, &mut failing)
                    .await;
            }
            let outcome = self.drain_events(&span, &mut status);
            let now = crate::clock::now();
            {
                let elector = self.gate.lock();
                status.role = elector.role(now);
                status.fence = elector.may_dispatch(now);
                status.term = elector.term();
            }
            self.metrics.set_role(status.role);
            self.metrics.term.set(status.term.0);
            self.status.send_if_modified(|old| {
                let changed = *old != status;
                if changed {
                    *old = status.clone();
                }
                changed
            });
            if let Some(outcome) = outcome {
                return outcome;
            }
            if acted {
                continue;
            }
            let deadline = self.gate.lock().next_deadline();
            let Some(deadline) = deadline else {
                return Ok(());
            };
            tokio::select! {
                _ = tokio::time::sleep(deadline.saturating_duration_since(crate::clock::now())) => {}
                _ = self.stop_rx.changed(), if !stopping => {}
            }
        }
    }

    async fn perform(
        &self,
        action: Action,
        sent_at: Instant,
        call_timeout: Duration,
        status: &mut ElectionStatus,
        failing: &mut bool,
    ) {
        let group = self.config.group.as_str();
        match action {
            Action::Heartbeat(request) => {
                let result = bounded("heartbeat", group, call_timeout, async {
                    self.store.heartbeat(&request).await
                })
                .await;
                match &result {
                    Ok(observation) => {
                        self.metrics.heartbeats_ok.inc();
                        self.metrics.heartbeat_latency.observe(sent_at.elapsed());
                        if observation.own_row == OwnRow::Written {
                            status.last_ack = Some(sent_at);
                        }
                        if *failing {
                            *failing = false;
                            tracing::info!("heartbeats acknowledged again");
                        }
                    }
                    Err(error) => {
                        self.metrics.heartbeats_failed.inc();
                        if !*failing {
                            *failing = true;
                            tracing::warn!(%error, "heartbeat failed");
                        }
                    }
                }
                self.gate
                    .lock()
                    .handle_heartbeat(crate::clock::now(), result);
            }
            Action::TakeOver(request) => {
                let result = bounded("takeover", group, call_timeout, async {
                    self.store.take_over(&request).await
                })
                .await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "takeover failed");
                }
                self.gate
                    .lock()
                    .handle_takeover(crate::clock::now(), result);
            }
            Action::Release(fence) => {
                let result = bounded("release", group, call_timeout, async {
                    self.store.release(&fence).await
                })
                .await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "release failed; the lease expires after the liveness timeout");
                }
                self.gate.lock().handle_stopped(crate::clock::now(), result);
            }
            Action::Leave {
                group: g,
                member,
                incarnation,
            } => {
                let result = bounded("leave", group, call_timeout, async {
                    self.store.leave(&g, &member, incarnation).await
                })
                .await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "leave failed");
                }
                self.gate.lock().handle_stopped(crate::clock::now(), result);
            }
        }
    }

    /// Logs the events; returns the run's end when the elector stopped.
    fn drain_events(
        &self,
        span: &tracing::Span,
        status: &mut ElectionStatus,
    ) -> Option<Result<(), ElectionError>> {
        let mut end = None;
        loop {
            let event = self.gate.lock().poll_event();
            let Some(event) = event else { break };
            match event {
                Event::BecameLeader(fence) => {
                    span.record("term", fence.term.0);
                    self.metrics.takeovers.inc();
                    tracing::info!(term = fence.term.0, "became leader");
                }
                Event::LostLeadership { term, reason } => {
                    tracing::info!(term = term.0, ?reason, "lost leadership, now standby");
                }
                Event::Refused(error) => {
                    tracing::error!(%error, "refused to run");
                    status.refused = Some(error.clone());
                    end = Some(Err(error));
                }
                Event::Stopped => {
                    tracing::info!("stopped");
                    end.get_or_insert(Ok(()));
                }
            }
        }
        end
    }
}

async fn bounded<T>(
    operation: &'static str,
    group: &str,
    after: Duration,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(after, fut).await.unwrap_or_else(|_| {
        Err(StoreError::Timeout {
            operation,
            group: group.to_string(),
            after,
        })
    })
}
