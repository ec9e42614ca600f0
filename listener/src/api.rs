//! The handler trait a user implements in their own crate (issue 8): one call per file
//! version, with its metadata, a streaming reader (constant memory) or its content as text,
//! and a context that carries the fencing token, the attempt, the redelivery flag and the
//! cancellation signal of the work machine; plus, for users who want the batch, one call per
//! poll with the files added and deleted since the last poll (the seeds' `onFileChange`).
//!
//! The trait is object-safe (`async-trait`): the poll loop holds an `Arc<dyn FileHandler>`.
//! Returned errors feed the retry policy (backoff, then the error folder); a panic is a
//! failed attempt, never a dead process.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use coord_core::{Fence, FileReader, FileVersion, FsError, RemoteFs};
use tokio::sync::watch;

/// What a handler returns when it fails: the text the ledger records as the attempt's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError(pub String);

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandlerError {}

impl From<String> for HandlerError {
    fn from(value: String) -> Self {
        HandlerError(value)
    }
}

impl From<&str> for HandlerError {
    fn from(value: &str) -> Self {
        HandlerError(value.to_string())
    }
}

impl From<FsError> for HandlerError {
    fn from(value: FsError) -> Self {
        HandlerError(value.to_string())
    }
}

impl From<std::io::Error> for HandlerError {
    fn from(value: std::io::Error) -> Self {
        HandlerError(value.to_string())
    }
}

/// A streaming read of one file, object-safe (the source's own reader behind a box).
#[async_trait]
pub trait FileStream: Send {
    /// Reads up to `buf.len()` bytes; `Ok(0)` at the end of the file.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FsError>;

    /// Finishes the transfer (for FTP, reads the server's final reply).
    async fn finish(self: Box<Self>) -> Result<(), FsError>;
}

/// Opens files of the watched source for a handler, object-safe.
#[async_trait]
pub trait FileSource: Send + Sync {
    /// Opens `path` (as listed) for a streaming read.
    async fn open(&self, path: &str) -> Result<Box<dyn FileStream>, FsError>;
}

struct Stream<R>(R);

#[async_trait]
impl<R: FileReader> FileStream for Stream<R> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FsError> {
        self.0.read(buf).await
    }

    async fn finish(self: Box<Self>) -> Result<(), FsError> {
        self.0.finish().await
    }
}

/// Any [`RemoteFs`] as a [`FileSource`].
pub struct SourceOf<'a, F>(pub &'a F);

impl<F> fmt::Debug for SourceOf<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SourceOf(..)")
    }
}

#[async_trait]
impl<F: RemoteFs> FileSource for SourceOf<'_, F>
where
    F::Reader: 'static,
{
    async fn open(&self, path: &str) -> Result<Box<dyn FileStream>, FsError> {
        let reader = self.0.open_read(path).await?;
        Ok(Box::new(Stream(reader)))
    }
}

/// Tells a handler that its member no longer leads: it must stop (a handler that outlives
/// its leadership is told so; the poll loop also aborts it at its next `.await`).
#[derive(Debug, Clone)]
pub struct Cancellation(watch::Receiver<bool>);

impl Cancellation {
    /// A signal and its trigger.
    pub(crate) fn new() -> (watch::Sender<bool>, Cancellation) {
        let (tx, rx) = watch::channel(false);
        (tx, Cancellation(rx))
    }

    /// A signal that never fires (tests, and handlers called outside the poll loop).
    pub fn never() -> Cancellation {
        Cancellation(watch::channel(false).1)
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Who calls the handler, under which fence, for which attempt.
#[derive(Clone)]
pub struct HandlerContext {
    /// The fencing token: member, group, incarnation and term. Pass `fence.term` downstream
    /// so a receiver can refuse work from an older term.
    pub fence: Fence,
    /// Which attempt, from 1 (redeliveries count).
    pub attempt: u32,
    /// An earlier attempt was dispatched (it never finished, or it failed): the handler may
    /// have seen the file before. True for every attempt after the first.
    pub redelivery: bool,
    /// Fires when this member loses leadership while the handler runs.
    pub cancellation: Cancellation,
    leading: Arc<dyn Fn(&Fence) -> bool + Send + Sync>,
    detail: Arc<std::sync::Mutex<Option<String>>>,
}

impl fmt::Debug for HandlerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerContext")
            .field("fence", &self.fence)
            .field("attempt", &self.attempt)
            .field("redelivery", &self.redelivery)
            .field("cancelled", &self.cancellation.is_cancelled())
            .field("detail", &self.detail())
            .finish()
    }
}

impl HandlerContext {
    /// A context; `leading` answers whether the fence still holds right now.
    pub fn new(
        fence: Fence,
        attempt: u32,
        redelivery: bool,
        cancellation: Cancellation,
        leading: Arc<dyn Fn(&Fence) -> bool + Send + Sync>,
    ) -> HandlerContext {
        HandlerContext {
            fence,
            attempt,
            redelivery,
            cancellation,
            leading,
            detail: Arc::default(),
        }
    }

    /// Says something about this attempt's success that the ledger keeps on the version's
    /// row (`detail`, shown by `ftp-listener ledger list|show`): for example where the file
    /// went. Recorded only if the handler then returns `Ok`; the last call wins. Keep it
    /// short, one line, and free of secrets.
    pub fn set_detail(&self, detail: impl Into<String>) {
        *self.detail.lock().unwrap_or_else(|e| e.into_inner()) = Some(detail.into());
    }

    /// What [`HandlerContext::set_detail`] was given last, if anything.
    pub fn detail(&self) -> Option<String> {
        self.detail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True while this member still leads under the handler's fence (ask before a side
    /// effect that must not happen twice).
    pub fn still_leading(&self) -> bool {
        !self.cancellation.is_cancelled() && (self.leading)(&self.fence)
    }
}

/// One file version handed to [`FileHandler::on_file`].
pub struct IncomingFile<'a> {
    /// The version: its `path` is the source path, with size and mtime as listed.
    pub version: FileVersion,
    /// The path relative to the watched directory (`sub/a.csv`).
    pub relative: String,
    /// Fence, attempt, redelivery, cancellation.
    pub context: HandlerContext,
    source: &'a dyn FileSource,
}

impl fmt::Debug for IncomingFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingFile")
            .field("version", &self.version)
            .field("relative", &self.relative)
            .field("context", &self.context)
            .finish()
    }
}

impl<'a> IncomingFile<'a> {
    /// A file to hand to a handler.
    pub fn new(
        version: FileVersion,
        relative: String,
        context: HandlerContext,
        source: &'a dyn FileSource,
    ) -> IncomingFile<'a> {
        IncomingFile {
            version,
            relative,
            context,
            source,
        }
    }

    /// Opens the file for a streaming read (constant memory, whatever its size).
    pub async fn open(&self) -> Result<Box<dyn FileStream>, FsError> {
        self.source.open(&self.version.path).await
    }

    /// The whole content as UTF-8 text (the seeds' `onFileText`), refused with a clear error
    /// when the file is larger than `limit` bytes or is not valid UTF-8. The byte count is
    /// checked against the listed size.
    pub async fn read_text(&self, limit: u64) -> Result<String, HandlerError> {
        if self.version.size > limit {
            return Err(HandlerError(format!(
                "`{}` is {} bytes, more than the text limit of {limit} bytes",
                self.relative, self.version.size
            )));
        }
        let mut stream = self.open().await?;
        let mut content = Vec::with_capacity(self.version.size as usize);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if content.len() as u64 + n as u64 > limit {
                return Err(HandlerError(format!(
                    "`{}` grew past the text limit of {limit} bytes while read",
                    self.relative
                )));
            }
            content.extend_from_slice(&buf[..n]);
        }
        stream.finish().await?;
        if content.len() as u64 != self.version.size {
            return Err(HandlerError(format!(
                "`{}`: read {} bytes, the listing said {}",
                self.relative,
                content.len(),
                self.version.size
            )));
        }
        String::from_utf8(content)
            .map_err(|e| HandlerError(format!("`{}` is not UTF-8 text: {e}", self.relative)))
    }

    /// Streams the file into `dir/<relative>` (through a `.part` file, checked against the
    /// listed size) and returns the local path.
    pub async fn download_to(&self, dir: &Path) -> Result<PathBuf, HandlerError> {
        crate::handler::download_incoming(self, dir).await
    }
}

/// What changed in the watched folder between two polls of one term.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeEvent {
    /// Versions listed now and not at the previous poll (at a term's first poll: the
    /// versions the ledger does not know yet).
    pub added: Vec<FileVersion>,
    /// Versions listed at the previous poll that are gone now, and that this listener did
    /// not move or delete itself.
    pub deleted: Vec<FileVersion>,
    /// The fencing token of the leader that saw the change.
    pub fence: Option<Fence>,
}

/// What a listener does with files. Implement [`FileHandler::on_file`] (per file, with the
/// retry policy and the ledger's guarantees) and, if you want the batch, override
/// [`FileHandler::on_change`] (once per poll; a notification, not retried).
///
/// ```
/// use listener::{FileHandler, HandlerError, IncomingFile};
///
/// #[derive(Debug)]
/// struct CountLines;
///
/// #[listener::async_trait]
/// impl FileHandler for CountLines {
///     async fn on_file(&self, file: &IncomingFile<'_>) -> Result<(), HandlerError> {
///         let text = file.read_text(10 * 1024 * 1024).await?;
///         if !file.context.still_leading() {
///             return Err("lost leadership before the side effect".into());
///         }
///         println!("{}: {} lines (term {})", file.relative, text.lines().count(),
///             file.context.fence.term);
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait FileHandler: Send + Sync + fmt::Debug {
    /// Handles one file version. `Ok` marks it handled (then it is moved, deleted or left,
    /// and never dispatched again); an error is a failed attempt.
    async fn on_file(&self, file: &IncomingFile<'_>) -> Result<(), HandlerError>;

    /// The files added and deleted since the last poll, once per poll with changes. The
    /// default does nothing. Errors are logged; the event is not redelivered.
    async fn on_change(&self, change: &ChangeEvent) -> Result<(), HandlerError> {
        let _ = change;
        Ok(())
    }
}
