//! The coordination core of the HA FTP/SFTP listener: the election state machine, the
//! leader's work machine, the ledger rules, and the traits that backends implement.
//!
//! This crate performs **no I/O, reads no clock and needs no async runtime**. Every decision
//! that depends on time takes `now: Instant` as a parameter; every store or file operation is
//! described here and performed by a driver (the `listener` crate, or `testkit`'s simulator).
//!
//! # Driving the elector
//!
//! [`Elector`] is a sans-I/O state machine in the style of `quinn-proto`:
//!
//! 1. ask [`Elector::poll_action`] for the next store operation and perform it against a
//!    [`CoordinationStore`] (with a timeout); report the result with the matching
//!    `handle_*` method;
//! 2. drain [`Elector::poll_event`]: on [`Event::BecameLeader`] load the group's ledger; on
//!    [`Event::LostLeadership`] stop dispatching;
//! 3. dispatch only while [`Elector::may_dispatch`] returns a [`Fence`], and pass that fence
//!    to every ledger write;
//! 4. sleep until [`Elector::next_deadline`] (or until a store call returns), then repeat.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use coord_core::*;
//!
//! let config = ElectionConfig::new("node-1", "incoming", Timing::default()).unwrap();
//! let mut elector = Elector::new(config, Incarnation(7), Instant::now());
//! let now = Instant::now();
//! // The first action is a heartbeat; a store answers that nobody holds the token.
//! let Some(Action::Heartbeat(_request)) = elector.poll_action(now) else { panic!() };
//! elector.handle_heartbeat(now, Ok(Observation {
//!     own_row: OwnRow::Written,
//!     term: Term(0),
//!     holder: None,
//! }));
//! // So the elector asks to take over, conditional on term 0.
//! let Some(Action::TakeOver(request)) = elector.poll_action(now) else { panic!() };
//! assert_eq!(request.observed_term, Term(0));
//! elector.handle_takeover(now, Ok(TakeoverOutcome::Won(Term(1))));
//! assert!(matches!(elector.poll_event(), Some(Event::BecameLeader(_))));
//! assert_eq!(elector.may_dispatch(now).unwrap().term, Term(1));
//! // Without another acknowledged heartbeat it stops dispatching at the renew deadline.
//! assert!(elector.may_dispatch(now + Duration::from_secs(4)).is_none());
//! ```
//!
//! # Driving the work machine
//!
//! [`Worker`] decides every step of a leader's term (load the ledger, list, claim in bounded
//! batches just before dispatch, run up to `max_in_flight` handlers, record outcomes in
//! batches, post-process the exact version handled, record it done, retry, give up, prune),
//! using the [`Ledger`] rules. Drive it like the elector: before each step hand it the lease
//! ([`Worker::set_lease`] with [`Elector::may_dispatch`]), perform what
//! [`Worker::poll_action`] returns ([`WorkAction::Cancel`] first), report each result with
//! the matching `handle_*`, and wait until [`Worker::next_deadline`] or the next result.
//! The `listener` crate's poll loop and `testkit`'s simulator are two drivers of this one
//! machine.

#![deny(missing_docs)]

mod apply;
mod cluster;
mod config;
mod dynamic;
mod elector;
mod fs;
mod history;
mod ids;
mod ledger;
mod names;
mod requests;
mod settings;
mod store;
mod stored;
mod work;

pub use apply::{AfterEnd, ApplyFailures, TaskEnd, after_task_end};
pub use cluster::{
    ConfigStore, ConfigVersion, MemberApplyStatus, MemberReport, unsupported as config_unsupported,
};
pub use config::{ConfigError, ElectionConfig, Timing};
pub use dynamic::{
    BoxReader, BoxWriter, DynFs, DynReader, DynStore, DynWriter, SharedSource, SharedStore,
};
pub use elector::{Action, ElectionError, Elector, Event, LossReason, Role};
pub use fs::{
    EntryKind, FileReader, FileWriter, FsError, ListOptions, Listing, RemoteEntry, RemoteFs,
    RenameMode,
};
pub use history::{LedgerEvent, LedgerHistory, within_ms};
pub use ids::{Fence, GroupId, IdError, Incarnation, MAX_ID_LEN, MemberId, Term};
pub use ledger::{
    AfterFailure, Dispatch, FileVersion, Ledger, LedgerPolicy, LedgerRecord, LedgerState,
    LedgerUpdate, ListedFile, Outcome, Planned, RetryPolicy, Stability,
};
pub use names::{NameError, check_name, escape_for_log, join_remote, local_target};
pub use requests::{Redrive, RequestStore};
pub use settings::{PasswordSource, Secret, TlsMode};
pub use store::{
    ClaimOutcome, CoordinationStore, GroupView, HeartbeatRequest, HolderView, MemberStatus,
    Observation, OwnRow, StaleRow, StoreError, TakeoverOutcome, TakeoverRequest,
};
pub use stored::{
    LEDGER_CHUNK_VERSIONS, LEDGER_MAX_PATH_BYTES, LEDGER_PAGE_ROWS, SkippedRows, StoredLedgerRow,
    UndecodableRow, claim_answer,
};
pub use work::{
    Backlog, FileOp, FileOpResult, HandlerId, OpId, PostProcessing, WorkAction, WorkConfig,
    WorkEvent, Worker,
};
