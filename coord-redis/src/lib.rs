//! The coordination store on Redis: [`RedisStore`] implements
//! [`coord_core::CoordinationStore`] with one server-side Lua script per operation
//! (`EVALSHA`, falling back to `EVAL` once when the server does not know the script yet), so
//! every method is one round trip and one atomic step: Redis runs a script to its end before
//! any other client's command. It passes `testkit::conformance` against a real server.
//!
//! It must never read the node's clock for anything the protocol decides: every time stamp
//! (heartbeats, lease renewals, and the "now" that ages are measured against) is the server's
//! `TIME`, read inside the script that uses it (DESIGN §4). It must never retry inside a call:
//! a broken connection fails the call with [`StoreError::Unavailable`](coord_core::StoreError)
//! and the connection manager replaces it for the next one.
//!
//! # Key layout
//!
//! With the key prefix `P` (setting `key_prefix`, default `coord:`) and a group `G`:
//!
//! | key | type | content |
//! |---|---|---|
//! | `P{G}:token` | hash | `term` (absent: 0), `member`, `incarnation` and `renewed_at` (µs of the server's clock) of the holder, absent when released or never taken; `renewal`, a counter bumped by the takeover and every renewal (never reset, so [`HolderView::renewal`](coord_core::HolderView) changes with every renewal, even two in one microsecond) |
//! | `P{G}:members` | hash | member ID → `incarnation:heartbeat_at_us` |
//! | `P{G}:ledger` | hash | `size:mtime_ms:path` → `state:term:attempts[:last_error]` (`[:detail]` for handled and done rows), the state one letter (`c`laimed, `h`andled, `d`one, `f`ailed, `e`rror) |
//!
//! Incarnations and terms are written in decimal. The braces make `{G}` a Redis Cluster hash
//! tag (a script's keys are one group's, so they share a slot). Nothing expires: the term
//! must outlive every holder, and the ledger is pruned by `Forget`.
//!
//! # Why each operation is atomic
//!
//! Each is one script (see `lua.rs`), and a Redis script runs alone: the heartbeat reads the
//! member's row, writes it, renews the lease and reads the holder without another command
//! between; a takeover compares the term and the holder's `renewed_at` with `TIME` and bumps
//! the term in the same step, so of any number of candidates at one term exactly one sees it
//! unchanged; every ledger write checks the fence (term, member and incarnation in the token
//! hash) in the script that writes. A script that fails half way keeps its writes (Redis has
//! no rollback), so the writing scripts check everything that can fail before their first
//! write. Claims and records larger than [`CHUNK_VERSIONS`] are cut into calls of that size,
//! each fenced and atomic, so no single script holds the server for long (the SQL stores cut
//! their statements the same way).
//!
//! # Settings
//!
//! [`RedisSettings`]: `url` (`redis://[user:password@]host:port/db`), `key_prefix`,
//! `op_timeout` (every call), `connect_timeout`. Passwords never appear in `Debug` output or
//! in errors.

mod error;
mod keys;
mod lua;
#[cfg(feature = "listener")]
mod registry;
mod settings;
mod store;

#[cfg(feature = "listener")]
pub use registry::RedisBackend;
pub use settings::{MAX_KEY_PREFIX_LEN, RedisSettings};
pub use store::{CHUNK_VERSIONS, RedisStore};
