//! Requests an operator hands to the leader (`ftp-listener ledger retry|forget`): the CLI is
//! not the leader and may not write the ledger, so it queues a request per version; the
//! leader takes them at its next poll and acts through its work machine, fenced like every
//! ledger write ([`crate::Worker::redrive`]).

use async_trait::async_trait;

use crate::ids::GroupId;
use crate::ledger::FileVersion;
use crate::store::StoreError;

/// What the operator asks for one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redrive {
    /// Forget the version's row so that it is dispatched again once listed (the CLI moves the
    /// file back from the error folder after the leader has taken the request).
    Retry,
    /// Forget the version's row (nothing is moved).
    Forget,
}

impl Redrive {
    /// The word stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Redrive::Retry => "retry",
            Redrive::Forget => "forget",
        }
    }

    /// The request a stored word names.
    pub fn parse(word: &str) -> Option<Redrive> {
        match word {
            "retry" => Some(Redrive::Retry),
            "forget" => Some(Redrive::Forget),
            _ => None,
        }
    }
}

/// Where the requests wait: implemented by the SQL stores.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Queues a request (a second one for the same version is harmless: forgetting twice).
    async fn request(
        &self,
        group: &GroupId,
        version: &FileVersion,
        action: Redrive,
    ) -> Result<(), StoreError>;

    /// The requests still waiting.
    async fn pending(&self, group: &GroupId) -> Result<Vec<(FileVersion, Redrive)>, StoreError>;

    /// Takes (deletes and returns) the waiting requests, oldest first, at most `limit`.
    async fn take(
        &self,
        group: &GroupId,
        limit: usize,
    ) -> Result<Vec<(FileVersion, Redrive)>, StoreError>;
}
