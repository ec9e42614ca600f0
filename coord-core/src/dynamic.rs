//! Trait-object forms of [`CoordinationStore`] and [`RemoteFs`], for code that picks its
//! backends at run time (a registry of named backends, a builder, several listeners in one
//! process).
//!
//! The static traits stay what the backends implement: every `CoordinationStore` is a
//! [`DynStore`] and every `RemoteFs` a [`DynFs`] by the blanket implementations here, so a
//! backend crate writes nothing for this. [`SharedStore`] and [`SharedSource`] wrap an
//! `Arc<dyn …>` and implement the static traits again, so a trait object goes wherever a
//! generic store or source does (the election driver, the poll loop, the simulator). The cost
//! is one boxed future per call, nothing next to a round trip.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::cluster::ConfigStore;
use crate::fs::{FileReader, FileWriter, FsError, ListOptions, Listing, RemoteFs, RenameMode};
use crate::history::LedgerHistory;
use crate::ids::{Fence, GroupId, Incarnation, MemberId};
use crate::ledger::{FileVersion, LedgerRecord, LedgerUpdate};
use crate::requests::RequestStore;
use crate::store::{
    ClaimOutcome, CoordinationStore, GroupView, HeartbeatRequest, MemberStatus, Observation,
    StaleRow, StoreError, TakeoverOutcome, TakeoverRequest,
};

/// [`CoordinationStore`] as an object-safe trait (see the module documentation).
#[async_trait]
#[allow(missing_docs)]
pub trait DynStore: Send + Sync {
    async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<Observation, StoreError>;
    async fn take_over(&self, request: &TakeoverRequest) -> Result<TakeoverOutcome, StoreError>;
    async fn release(&self, fence: &Fence) -> Result<(), StoreError>;
    async fn leave(
        &self,
        group: &GroupId,
        member: &MemberId,
        incarnation: Incarnation,
    ) -> Result<(), StoreError>;
    async fn load_ledger(&self, group: &GroupId) -> Result<Vec<LedgerRecord>, StoreError>;
    async fn lookup_ledger(
        &self,
        group: &GroupId,
        versions: &[FileVersion],
    ) -> Result<Vec<LedgerRecord>, StoreError>;
    async fn stale_settled(
        &self,
        group: &GroupId,
        older_than: Duration,
        after: Option<&StaleRow>,
        limit: usize,
    ) -> Result<Vec<StaleRow>, StoreError>;
    async fn claim(
        &self,
        fence: &Fence,
        versions: &[FileVersion],
    ) -> Result<Vec<ClaimOutcome>, StoreError>;
    async fn record(&self, fence: &Fence, updates: &[LedgerUpdate]) -> Result<(), StoreError>;
    async fn observe(&self, group: &GroupId) -> Result<GroupView, StoreError>;
    async fn members(&self, group: &GroupId) -> Result<Vec<MemberStatus>, StoreError>;
}

#[async_trait]
impl<S: CoordinationStore> DynStore for S {
    async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<Observation, StoreError> {
        CoordinationStore::heartbeat(self, request).await
    }
    async fn take_over(&self, request: &TakeoverRequest) -> Result<TakeoverOutcome, StoreError> {
        CoordinationStore::take_over(self, request).await
    }
    async fn release(&self, fence: &Fence) -> Result<(), StoreError> {
        CoordinationStore::release(self, fence).await
    }
    async fn leave(
        &self,
        group: &GroupId,
        member: &MemberId,
        incarnation: Incarnation,
    ) -> Result<(), StoreError> {
        CoordinationStore::leave(self, group, member, incarnation).await
    }
    async fn load_ledger(&self, group: &GroupId) -> Result<Vec<LedgerRecord>, StoreError> {
        CoordinationStore::load_ledger(self, group).await
    }
    async fn lookup_ledger(
        &self,
        group: &GroupId,
        versions: &[FileVersion],
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        CoordinationStore::lookup_ledger(self, group, versions).await
    }
    async fn stale_settled(
        &self,
        group: &GroupId,
        older_than: Duration,
        after: Option<&StaleRow>,
        limit: usize,
    ) -> Result<Vec<StaleRow>, StoreError> {
        CoordinationStore::stale_settled(self, group, older_than, after, limit).await
    }
    async fn claim(
        &self,
        fence: &Fence,
        versions: &[FileVersion],
    ) -> Result<Vec<ClaimOutcome>, StoreError> {
        CoordinationStore::claim(self, fence, versions).await
    }
    async fn record(&self, fence: &Fence, updates: &[LedgerUpdate]) -> Result<(), StoreError> {
        CoordinationStore::record(self, fence, updates).await
    }
    async fn observe(&self, group: &GroupId) -> Result<GroupView, StoreError> {
        CoordinationStore::observe(self, group).await
    }
    async fn members(&self, group: &GroupId) -> Result<Vec<MemberStatus>, StoreError> {
        CoordinationStore::members(self, group).await
    }
}

/// A coordination store chosen at run time: any [`CoordinationStore`] behind an `Arc`.
/// Cloning shares the store (and its connection pool).
#[derive(Clone)]
pub struct SharedStore {
    inner: Arc<dyn DynStore>,
    name: Arc<str>,
    config: Option<Arc<dyn ConfigStore>>,
    requests: Option<Arc<dyn RequestStore>>,
    history: Option<Arc<dyn LedgerHistory>>,
}

impl SharedStore {
    /// Wraps `store`; `name` is what `Debug` prints (the backend's name, never a setting).
    pub fn new(name: &str, store: impl CoordinationStore + 'static) -> Self {
        SharedStore {
            inner: Arc::new(store),
            name: name.into(),
            config: None,
            requests: None,
            history: None,
        }
    }

    /// Wraps a store already shared.
    pub fn from_arc(name: &str, store: Arc<dyn DynStore>) -> Self {
        SharedStore {
            inner: store,
            name: name.into(),
            config: None,
            requests: None,
            history: None,
        }
    }

    /// The store and where it keeps the cluster's configuration (usually the same store).
    pub fn with_config_store(mut self, config: Arc<dyn ConfigStore>) -> Self {
        self.config = Some(config);
        self
    }

    /// The store and where operators' requests to the leader wait (usually the same store).
    pub fn with_request_store(mut self, requests: Arc<dyn RequestStore>) -> Self {
        self.requests = Some(requests);
        self
    }

    /// The store and where it keeps the ledger's history (usually the same store).
    pub fn with_history(mut self, history: Arc<dyn LedgerHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// The ledger's history, if this store keeps it.
    pub fn history(&self) -> Option<&Arc<dyn LedgerHistory>> {
        self.history.as_ref()
    }

    /// Where operators' requests to the leader wait, if this store keeps them.
    pub fn request_store(&self) -> Option<&Arc<dyn RequestStore>> {
        self.requests.as_ref()
    }

    /// Where the cluster's configuration is kept, if this store keeps it.
    pub fn config_store(&self) -> Option<&Arc<dyn ConfigStore>> {
        self.config.as_ref()
    }

    /// The backend's name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `self` and `other` are the same store (one pool).
    pub fn same_as(&self, other: &SharedStore) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedStore").field(&self.name).finish()
    }
}

impl CoordinationStore for SharedStore {
    async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<Observation, StoreError> {
        self.inner.heartbeat(request).await
    }
    async fn take_over(&self, request: &TakeoverRequest) -> Result<TakeoverOutcome, StoreError> {
        self.inner.take_over(request).await
    }
    async fn release(&self, fence: &Fence) -> Result<(), StoreError> {
        self.inner.release(fence).await
    }
    async fn leave(
        &self,
        group: &GroupId,
        member: &MemberId,
        incarnation: Incarnation,
    ) -> Result<(), StoreError> {
        self.inner.leave(group, member, incarnation).await
    }
    async fn load_ledger(&self, group: &GroupId) -> Result<Vec<LedgerRecord>, StoreError> {
        self.inner.load_ledger(group).await
    }
    async fn lookup_ledger(
        &self,
        group: &GroupId,
        versions: &[FileVersion],
    ) -> Result<Vec<LedgerRecord>, StoreError> {
        self.inner.lookup_ledger(group, versions).await
    }
    async fn stale_settled(
        &self,
        group: &GroupId,
        older_than: Duration,
        after: Option<&StaleRow>,
        limit: usize,
    ) -> Result<Vec<StaleRow>, StoreError> {
        self.inner
            .stale_settled(group, older_than, after, limit)
            .await
    }
    async fn claim(
        &self,
        fence: &Fence,
        versions: &[FileVersion],
    ) -> Result<Vec<ClaimOutcome>, StoreError> {
        self.inner.claim(fence, versions).await
    }
    async fn record(&self, fence: &Fence, updates: &[LedgerUpdate]) -> Result<(), StoreError> {
        self.inner.record(fence, updates).await
    }
    async fn observe(&self, group: &GroupId) -> Result<GroupView, StoreError> {
        self.inner.observe(group).await
    }
    async fn members(&self, group: &GroupId) -> Result<Vec<MemberStatus>, StoreError> {
        self.inner.members(group).await
    }
}

/// [`FileReader`] as an object-safe trait.
#[async_trait]
#[allow(missing_docs)]
pub trait DynReader: Send {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FsError>;
    async fn finish(self: Box<Self>) -> Result<(), FsError>;
}

#[async_trait]
impl<R: FileReader> DynReader for R {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FsError> {
        FileReader::read(self, buf).await
    }
    async fn finish(self: Box<Self>) -> Result<(), FsError> {
        FileReader::finish(*self).await
    }
}

/// [`FileWriter`] as an object-safe trait.
#[async_trait]
#[allow(missing_docs)]
pub trait DynWriter: Send {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), FsError>;
    async fn finish(self: Box<Self>) -> Result<(), FsError>;
}

#[async_trait]
impl<W: FileWriter> DynWriter for W {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), FsError> {
        FileWriter::write_all(self, buf).await
    }
    async fn finish(self: Box<Self>) -> Result<(), FsError> {
        FileWriter::finish(*self).await
    }
}

/// A boxed streaming reader (what [`SharedSource`] opens).
pub struct BoxReader(Box<dyn DynReader>);

impl fmt::Debug for BoxReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxReader")
    }
}

impl FileReader for BoxReader {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FsError> {
        self.0.read(buf).await
    }
    async fn finish(self) -> Result<(), FsError> {
        self.0.finish().await
    }
}

/// A boxed streaming writer (what [`SharedSource`] opens).
pub struct BoxWriter(Box<dyn DynWriter>);

impl fmt::Debug for BoxWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxWriter")
    }
}

impl FileWriter for BoxWriter {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), FsError> {
        self.0.write_all(buf).await
    }
    async fn finish(self) -> Result<(), FsError> {
        self.0.finish().await
    }
}

/// [`RemoteFs`] as an object-safe trait (readers and writers boxed).
#[async_trait]
#[allow(missing_docs)]
pub trait DynFs: Send + Sync {
    async fn list(&self, dir: &str, options: &ListOptions) -> Result<Listing, FsError>;
    async fn open_read(&self, path: &str) -> Result<BoxReader, FsError>;
    async fn open_write(&self, path: &str) -> Result<BoxWriter, FsError>;
    async fn rename(&self, from: &str, to: &str, mode: RenameMode) -> Result<(), FsError>;
    async fn delete(&self, path: &str) -> Result<(), FsError>;
    async fn create_dir_all(&self, path: &str) -> Result<(), FsError>;
    async fn size(&self, path: &str) -> Result<Option<u64>, FsError>;
}

#[async_trait]
impl<F: RemoteFs> DynFs for F
where
    F::Reader: 'static,
    F::Writer: 'static,
{
    async fn list(&self, dir: &str, options: &ListOptions) -> Result<Listing, FsError> {
        RemoteFs::list(self, dir, options).await
    }
    async fn open_read(&self, path: &str) -> Result<BoxReader, FsError> {
        let reader = RemoteFs::open_read(self, path).await?;
        Ok(BoxReader(Box::new(reader)))
    }
    async fn open_write(&self, path: &str) -> Result<BoxWriter, FsError> {
        let writer = RemoteFs::open_write(self, path).await?;
        Ok(BoxWriter(Box::new(writer)))
    }
    async fn rename(&self, from: &str, to: &str, mode: RenameMode) -> Result<(), FsError> {
        RemoteFs::rename(self, from, to, mode).await
    }
    async fn delete(&self, path: &str) -> Result<(), FsError> {
        RemoteFs::delete(self, path).await
    }
    async fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        RemoteFs::create_dir_all(self, path).await
    }
    async fn size(&self, path: &str) -> Result<Option<u64>, FsError> {
        RemoteFs::size(self, path).await
    }
}

/// A file source chosen at run time: any [`RemoteFs`] behind an `Arc`. Cloning shares it
/// (and its session pool).
#[derive(Clone)]
pub struct SharedSource {
    inner: Arc<dyn DynFs>,
    name: Arc<str>,
}

impl SharedSource {
    /// Wraps `source`; `name` is what `Debug` prints (the backend's name, never a setting).
    pub fn new<F>(name: &str, source: F) -> Self
    where
        F: RemoteFs + 'static,
        F::Reader: 'static,
        F::Writer: 'static,
    {
        SharedSource {
            inner: Arc::new(source),
            name: name.into(),
        }
    }

    /// Wraps a source already shared.
    pub fn from_arc(name: &str, source: Arc<dyn DynFs>) -> Self {
        SharedSource {
            inner: source,
            name: name.into(),
        }
    }

    /// The backend's name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for SharedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedSource").field(&self.name).finish()
    }
}

impl RemoteFs for SharedSource {
    type Reader = BoxReader;
    type Writer = BoxWriter;

    async fn list(&self, dir: &str, options: &ListOptions) -> Result<Listing, FsError> {
        self.inner.list(dir, options).await
    }
    async fn open_read(&self, path: &str) -> Result<BoxReader, FsError> {
        self.inner.open_read(path).await
    }
    async fn open_write(&self, path: &str) -> Result<BoxWriter, FsError> {
        self.inner.open_write(path).await
    }
    async fn rename(&self, from: &str, to: &str, mode: RenameMode) -> Result<(), FsError> {
        self.inner.rename(from, to, mode).await
    }
    async fn delete(&self, path: &str) -> Result<(), FsError> {
        self.inner.delete(path).await
    }
    async fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        self.inner.create_dir_all(path).await
    }
    async fn size(&self, path: &str) -> Result<Option<u64>, FsError> {
        self.inner.size(path).await
    }
}
