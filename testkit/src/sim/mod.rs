//! The seeded multi-member simulator (issue 2, DESIGN §3 "testkit").
//!
//! N members of one group run the production [`coord_core::Elector`] and [`coord_core::Worker`]
//! (the same machines the listener drives; `member.rs` is glue only) against the
//! in-memory [`crate::StoreState`] on simulated time, through a random schedule of faults drawn from one seed:
//! crashes and restarts, graceful stops, pauses longer than the liveness timeout, partitions
//! between a member and the store, store outages and slow stores, clock-rate drift between
//! members. Files arrive on an in-memory directory, are written in several steps (so a
//! stability check matters), and are handled by a handler that fails at random. Time jumps from
//! event to event; nothing sleeps. After the fault phase everything heals and a quiet phase
//! lets the cluster finish its work.
//!
//! Invariants, checked while the schedule runs and at its end:
//! - (a) never two members dispatching for the group at the same instant;
//! - (b) terms only grow, and each term has one holder;
//! - (c) once faults stop, a leader is dispatching within `liveness_timeout` +
//!   2 × `heartbeat_interval`;
//! - (d) no file version recorded as done is dispatched again;
//! - (e) every file that arrived ends up done or in the error state;
//! - never two handlers running on one file version at the same instant, across members
//!   (handlers run up to `max_in_flight` at once, and some outlive the liveness timeout: the
//!   leader that loses its lease cancels them);
//! - no file moved or deleted unless that exact version was handled, and only versions in
//!   error go to the error folder;
//! - nothing delivered more than `max_attempts` times (redeliveries after a crash count);
//! - and: only finished versions are dispatched, no false duplicate-member refusal; in `move`
//!   mode every done file is in the done folder.
//!
//! A violation names the seed; `SIM_SEED=<seed> cargo test -p testkit --test simulation
//! replay -- --nocapture` replays it with a trace.

mod member;
mod world;

pub use world::{SimConfig, SimReport, Violation, run_seed, run_with};
