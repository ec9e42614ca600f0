//! Test tooling for the coordination core and every backend.
//!
//! - [`MemStore`] / [`StoreState`]: the in-memory `CoordinationStore`, the reference semantics
//!   of the trait, with its own clock standing in for the database's, and fault injection;
//! - [`MemConfigStore`] and [`config_conformance`]: the in-memory `ConfigStore` and the case
//!   every `ConfigStore` passes (cluster configurations, each member's apply status);
//! - [`MemFs`]: an in-memory `RemoteFs`;
//! - [`Clock`]: real or simulated time;
//! - [`sim`]: the seeded simulator that runs N members of one group through random schedules
//!   of crashes, pauses, partitions and store outages, checking the invariants of DESIGN §4-5;
//! - [`conformance`]: the cases every `CoordinationStore` must pass, run by each backend's
//!   tests against its real database;
//! - [`fs_conformance`]: the cases every `RemoteFs` must pass (MemFs, the local directory,
//!   FTP/FTPS on vsftpd and proftpd, SFTP), through an [`fs_conformance::FsHarness`];
//! - [`Cluster`]: for handler authors, N members over [`MemStore`] and [`MemFs`] on simulated
//!   time with `crash`, `pause`, `partition`, `heal`, `put_file`, `run_for`/`run_until`, and
//!   what each member dispatched.
//!
//! # Testing a handler's failover
//!
//! ```
//! use std::time::Duration;
//! use testkit::{Cluster, ClusterConfig};
//!
//! let mut cluster = Cluster::new(ClusterConfig::default(), |_dispatch| Ok(()));
//! let path = cluster.put_file("a.csv", b"1,2,3");
//! // Until the first leader dispatches the file, then kill it mid-handler.
//! assert!(cluster.run_until(Duration::from_secs(30), |c| c.running() > 0));
//! let first = cluster.leader().unwrap();
//! cluster.crash(first);
//! assert!(cluster.run_until(Duration::from_secs(60), |c| {
//!     c.ledger_state(&path) == Some(coord_core::LedgerState::Done)
//! }));
//! let deliveries = cluster.deliveries_of(&path);
//! assert_eq!(deliveries.len(), 2);
//! assert!(deliveries[1].dispatch.redelivery);
//! assert_ne!(deliveries[1].member, first);
//! ```
//!
//! Simulated time jumps from event to event: the example above runs seconds of cluster time
//! in about a millisecond, the same way for the same seed.
//!
//! Never used by production code: `listener` depends on it only for tests.

mod clock;
mod cluster;
pub mod config_conformance;
mod config_store;
pub mod conformance;
mod fs;
pub mod fs_conformance;
pub mod history_conformance;
mod proxy;
mod rng;
pub mod sim;
mod store;

pub use clock::Clock;
pub use cluster::{Cluster, ClusterConfig, Delivery};
pub use config_store::MemConfigStore;
pub use fs::{MemFs, MemReader, MemWriter};
pub use proxy::TcpProxy;
pub use rng::SimRng;
pub use store::{MemStore, StoreState};
