//! Test tooling for the coordination core and every backend.
//!
//! - [`MemStore`] / [`StoreState`]: the in-memory `CoordinationStore`, the reference semantics
//!   of the trait, with its own clock standing in for the database's, and fault injection;
//! - [`MemFs`]: an in-memory `RemoteFs`;
//! - [`Clock`]: real or simulated time;
//! - [`sim`]: the seeded simulator that runs N members of one group through random schedules
//!   of crashes, pauses, partitions and store outages, checking the invariants of DESIGN §4-5;
//! - [`conformance`]: the cases every `CoordinationStore` must pass, run by each backend's
//!   tests against its real database.
//!
//! Never used by production code: `listener` depends on it only for tests.

mod clock;
pub mod conformance;
mod fs;
pub mod fs_conformance;
mod proxy;
mod rng;
pub mod sim;
mod store;

pub use clock::Clock;
pub use fs::{MemFs, MemReader, MemWriter};
pub use proxy::TcpProxy;
pub use rng::SimRng;
pub use store::{MemStore, StoreState};
