//! `FtpFs`: [`coord_core::RemoteFs`] over the session pool.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use coord_core::{FsError, ListOptions, Listing, RemoteFs, RenameMode};
use suppaftp::{FtpError, Status};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::mtimes::{Known, MtimeCache, is_fresh};
use crate::parse::{DirParser, ListFormat, ListStamp, parse_mdtm_reply};
use crate::pool::{Lease, Pool};
use crate::session::{Probe, Refusal, Session, Shared, classify, map_ftp_error, reply_text};
use crate::settings::{FtpSettings, MoveCheck, SettingsError, TlsMode};
use crate::transfer::{FtpReader, FtpWriter};

/// An FTP or explicit-FTPS server as a [`RemoteFs`]. Cheap to clone (the pool is shared).
///
/// Modification times: with MLSD (FEAT lists `MLST`) each entry's mtime is the `modify`
/// fact. On a LIST-only server a listing line's date is never used (its recent form has no
/// year, and it changes form about six months after the mtime, so it cannot be part of a
/// stable identity); instead each regular file's exact time is asked with `MDTM` when FEAT
/// lists it, once per `(path, size, LIST date text)`: the answers are remembered by this
/// value (shared by its clones and sessions, bounded by the latest listing of each directory),
/// so a poll of unchanged files sends no `MDTM` ([`FtpFs::mdtm_requests`] counts them). A
/// server with neither reports `mtime: None` for POSIX LIST lines (identity is then path and
/// size; said at WARN once per session); DOS lines keep their own date and time. Directories,
/// symlinks and other entries of POSIX LIST lines have no mtime.
///
/// Moves cost no probe a server could penalise (issue 11): a directory made or entered once by
/// [`RemoteFs::create_dir_all`] is remembered (by this value and its clones) and not checked
/// again, until a rename fails (it may have been removed behind our back); a no-overwrite
/// rename asks `SIZE` of the target alone (a `550` there is the expected answer, never a
/// `CWD` into a file name), and probes further only when `RNTO` is refused.
#[derive(Debug, Clone)]
pub struct FtpFs {
    pool: Arc<Pool>,
    mtimes: Arc<MtimeCache>,
    /// Absolute paths of directories known to exist (see above).
    known_dirs: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// `MDTM`s are pipelined (the `pipelining` setting, until the server leaves one
    /// unanswered).
    pipelining: Arc<AtomicBool>,
    /// `move_check = "listing"`: the names in each target folder, by absolute path.
    target_names: Arc<std::sync::Mutex<HashMap<String, FolderNames>>>,
}

/// What a no-overwrite move knows of its target folder (`move_check = "listing"`).
enum FolderNames {
    /// The names listed at `at`, and those moved there since.
    Listed {
        names: HashSet<String>,
        at: std::time::Instant,
    },
    /// Its listing failed at `at`: moves ask `SIZE` until it is a minute old.
    Unlistable { at: std::time::Instant },
}

impl std::fmt::Debug for FolderNames {
    /// The number of names, not the names (a done folder can hold millions).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FolderNames::Listed { names, at } => f
                .debug_struct("Listed")
                .field("names", &names.len())
                .field("at", at)
                .finish(),
            FolderNames::Unlistable { at } => f.debug_struct("Unlistable").field("at", at).finish(),
        }
    }
}

/// The folder and the name of the absolute path `abs` (`/a` is in `/`).
fn folder_and_name(abs: &str) -> Option<(&str, &str)> {
    let (folder, name) = abs.rsplit_once('/')?;
    Some((if folder.is_empty() { "/" } else { folder }, name))
}

/// How a session lists: `MLSD` when the server offers it, else `LIST`.
fn list_format(session: &Session) -> ListFormat {
    if session.mlsd {
        ListFormat::Mlsd
    } else {
        ListFormat::List
    }
}

/// How long a target folder's names are trusted before they are listed again.
const TARGET_NAMES_FOR: Duration = Duration::from_secs(60);

/// Files per extra session when a listing's `MDTM`s are spread over the pool (without
/// pipelining).
const MDTM_PER_SESSION: usize = 32;

/// Pipelined commands unanswered at most: small enough that neither side's socket buffer can
/// fill while the other waits (about 6 KiB of commands, 4 KiB of replies), large enough that a
/// listing of a fresh folder 10 ms away costs a round trip per hundred files, not per file.
const PIPELINE_WINDOW: usize = 100;

/// Runs `fut` under `after`, reporting an expiry as [`FsError::Timeout`].
pub(crate) async fn timed<T>(
    operation: &'static str,
    path: &str,
    after: Duration,
    fut: impl Future<Output = Result<T, FsError>>,
) -> Result<T, FsError> {
    tokio::time::timeout(after, fut).await.unwrap_or_else(|_| {
        Err(FsError::Timeout {
            operation,
            path: path.to_string(),
            after,
        })
    })
}

impl FtpFs {
    /// Checks the settings, reads the password from its source, and prepares TLS. Connects
    /// lazily, on the first operation.
    pub fn new(settings: FtpSettings) -> Result<FtpFs, SettingsError> {
        settings.validate()?;
        let password = settings.resolve_password()?;
        let tls = match settings.tls {
            TlsMode::None => None,
            TlsMode::Explicit | TlsMode::Implicit => Some(
                crate::tls::client_config(&settings).map_err(|rule| SettingsError {
                    field: "ca_file",
                    rule,
                })?,
            ),
        };
        let server = settings.server();
        Ok(FtpFs {
            pipelining: Arc::new(AtomicBool::new(settings.pipelining)),
            pool: Arc::new(Pool::new(Shared {
                settings,
                password,
                tls,
                server,
            })),
            mtimes: Arc::new(MtimeCache::default()),
            known_dirs: Arc::default(),
            target_names: Arc::default(),
        })
    }

    fn known_dirs(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.known_dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settings in use.
    pub fn settings(&self) -> &FtpSettings {
        &self.pool.shared.settings
    }

    /// How many sessions (control connections) were opened successfully so far: one per
    /// reconnect, more when reads run in parallel. A metric, and a check that sessions are
    /// reused.
    pub fn sessions_opened(&self) -> u64 {
        self.pool.sessions_opened()
    }

    /// How many `MDTM` commands were sent so far (LIST-only servers that offer `MDTM`): one
    /// per regular file whose LIST line (size or date text) is new or changed, plus one per
    /// poll for files modified in the last two minutes. A poll of unchanged files adds none.
    /// Always 0 with MLSD. A metric, and a check that times are reused.
    pub fn mdtm_requests(&self) -> u64 {
        self.mtimes.mdtm_sent()
    }

    fn server(&self) -> &str {
        &self.pool.shared.server
    }

    /// Maps a refusal of `operation` on `path`; an ambiguous `550` is resolved with a probe
    /// (exists with the expected kind → permission denied, missing → not found, the other
    /// kind → says so).
    async fn refusal(
        &self,
        session: &mut Session,
        operation: &'static str,
        path: &str,
        abs: &str,
        e: FtpError,
        expected: Probe,
    ) -> FsError {
        let FtpError::UnexpectedResponse(r) = &e else {
            return map_ftp_error(operation, path, self.server(), e);
        };
        let Refusal::Ambiguous(cause) = classify(r) else {
            return map_ftp_error(operation, path, self.server(), e);
        };
        match session.probe(abs).await {
            Ok(Probe::Missing) => FsError::NotFound {
                operation,
                path: path.to_string(),
            },
            Ok(found) if found == expected => FsError::PermissionDenied {
                operation,
                path: path.to_string(),
            },
            Ok(found) => FsError::Other {
                operation,
                path: path.to_string(),
                cause: format!(
                    "{} ({cause})",
                    if found == Probe::Dir {
                        "is a directory"
                    } else {
                        "not a directory"
                    }
                ),
            },
            Err(probe_err) => map_ftp_error(operation, path, self.server(), probe_err),
        }
    }

    async fn list_in(
        &self,
        session: &mut Session,
        dir: &str,
        options: &ListOptions,
        timeout: Duration,
    ) -> Result<Listing, FsError> {
        let format = list_format(session);
        let mut out = Listing::default();
        let mut queue = std::collections::VecDeque::from([(dir.to_string(), 0u32)]);
        while let Some((current, depth)) = queue.pop_front() {
            let subdirs = self
                .list_one(session, &current, format, true, timeout, &mut out)
                .await;
            let subdirs = match subdirs {
                Ok(s) => s,
                // A subdirectory that vanished or is closed to us does not fail the listing.
                Err(e @ (FsError::NotFound { .. } | FsError::PermissionDenied { .. }))
                    if depth > 0 =>
                {
                    tracing::warn!(dir = %current, error = %e, "skipping subdirectory");
                    out.skipped += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if depth < options.max_depth {
                queue.extend(subdirs.into_iter().map(|d| (d, depth + 1)));
            }
        }
        Ok(out)
    }

    /// Lists one directory: `CWD` into it (so that no name is ever parsed as an option of
    /// `LIST`), then `MLSD` or `LIST` without argument, parsed line by line from the data
    /// connection; in LIST mode then the files' times (see [`FtpFs::list_times`]). Returns the
    /// subdirectories found.
    async fn list_one(
        &self,
        session: &mut Session,
        dir: &str,
        format: ListFormat,
        times: bool,
        timeout: Duration,
        out: &mut Listing,
    ) -> Result<Vec<String>, FsError> {
        const OP: &str = "list";
        let abs = session.abs(OP, dir)?;
        let server = self.server();
        timed(OP, dir, timeout, async {
            match session.ftp.cwd(&abs).await {
                Ok(()) => Ok(()),
                Err(e) => Err(self.refusal(session, OP, dir, &abs, e, Probe::Dir).await),
            }
        })
        .await?;
        let command = match format {
            ListFormat::Mlsd => "MLSD",
            ListFormat::List => "LIST",
        };
        let (_, stream) = timed(OP, dir, timeout, async {
            session
                .ftp
                .custom_data_command(command, &[Status::AboutToSend, Status::AlreadyOpen])
                .await
                .map_err(|e| map_ftp_error(OP, dir, server, e))
        })
        .await?;
        let mut reader = BufReader::with_capacity(64 * 1024, stream);
        let mut parser = DirParser::new(dir, format);
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            let n = timed(OP, dir, timeout, async {
                reader
                    .read_until(b'\n', &mut line)
                    .await
                    .map_err(|e| FsError::Connection {
                        operation: OP,
                        server: server.to_string(),
                        cause: format!("listing data: {e}"),
                    })
            })
            .await?;
            if n == 0 {
                break;
            }
            parser.push_line(&line, out);
        }
        parser.finish(out);
        let stream = reader.into_inner();
        timed(OP, dir, timeout, async {
            stream
                .finish()
                .await
                .map_err(|e| map_ftp_error(OP, dir, server, e))
        })
        .await?;
        if format == ListFormat::List && times {
            self.list_times(session, &abs, &parser.stamps, timeout, out)
                .await?;
        }
        Ok(std::mem::take(&mut parser.subdirs))
    }

    /// Gives the regular files of one LIST listing (`files`: index in `out.entries`, LIST
    /// date stamp) their exact times: remembered ones while the file's size and LIST date text
    /// are unchanged, else asked with `MDTM`. What is remembered for `abs_dir` is then
    /// replaced by this listing's files (files that left are forgotten).
    ///
    /// A file whose `MDTM` is refused (`550`: it vanished since the listing, or it is not a
    /// plain file to the server) or answered unreadably is **skipped for this listing**:
    /// left out of `out.entries`, counted in `out.skipped` and logged. It is not reported with
    /// `mtime: None`, which would give it a different identity than the exact time will on
    /// the next listing (and so process it twice). If it still exists, the next listing asks
    /// again. A lost connection or a timeout fails the listing, as for the LIST itself.
    async fn list_times(
        &self,
        session: &mut Session,
        abs_dir: &str,
        files: &[(usize, ListStamp)],
        timeout: Duration,
        out: &mut Listing,
    ) -> Result<(), FsError> {
        if !session.mdtm {
            if !session.warned_no_times && !files.is_empty() {
                session.warned_no_times = true;
                tracing::warn!(
                    server = %self.server(),
                    "the server offers neither MLSD nor MDTM: listed files have no mtime, \
                     file identity falls back to (path, size)"
                );
            }
            return Ok(());
        }
        let (known, held) = self.mtimes.lookup(
            abs_dir,
            files.iter().map(|&(i, stamp)| {
                let e = &out.entries[i];
                (e.name.as_str(), e.size, stamp)
            }),
        );
        let now = SystemTime::now();
        // The files to ask, asked over this session and idle ones of the pool at once.
        let asked: Vec<&str> = files
            .iter()
            .zip(&known)
            .filter(|(_, k)| k.is_none())
            .map(|(&(i, _), _)| out.entries[i].path.as_str())
            .collect();
        if asked.is_empty() && held == files.len() {
            // Every file hit, one per remembered time: what would be remembered is what is.
            for (&(i, _), known) in files.iter().zip(known) {
                out.entries[i].mtime = known;
            }
            self.mtimes.keep(abs_dir);
            return Ok(());
        }
        let mut answers = self.mdtm_all(session, &asked, timeout).await?.into_iter();
        let mut remember = std::collections::HashMap::with_capacity(files.len());
        let mut skip = Vec::new();
        for (&(i, stamp), known) in files.iter().zip(known) {
            let mtime = match known {
                Some(t) => t,
                None => match answers.next().flatten() {
                    Some(t) => t,
                    None => {
                        skip.push(i);
                        continue;
                    }
                },
            };
            let e = &mut out.entries[i];
            e.mtime = Some(mtime);
            if !is_fresh(mtime, now) {
                let size = e.size;
                remember.insert(e.name.clone(), Known { size, stamp, mtime });
            }
        }
        self.mtimes.replace(abs_dir, remember);
        if !skip.is_empty() {
            out.skipped += skip.len() as u64;
            let mut index = 0;
            out.entries.retain(|_| {
                let keep = skip.binary_search(&index).is_err();
                index += 1;
                keep
            });
        }
        Ok(())
    }

    /// `MDTM` of each of `paths`, in order. On a plain session with `pipelining`, sent in
    /// batches over `session` alone ([`FtpFs::mdtm_pipelined`]). Otherwise over `session`
    /// alone for a few, else spread round-robin over `session` and the pool's sessions that
    /// are free right now (at most one per [`MDTM_PER_SESSION`] files; nothing waits for a
    /// busy one), each asking its share in turn. On a fresh folder of a LIST-only server
    /// every file is asked at every listing for two minutes (see `mtimes::FRESH`): pipelining
    /// makes that a round trip per [`PIPELINE_WINDOW`] files instead of one per file. A lost
    /// connection fails the listing, as one session would.
    async fn mdtm_all(
        &self,
        session: &mut Session,
        paths: &[&str],
        timeout: Duration,
    ) -> Result<Vec<Option<SystemTime>>, FsError> {
        const OP: &str = "list";
        if session.plain && paths.len() > 1 && self.pipelining.load(Ordering::Relaxed) {
            let result = self.mdtm_pipelined(session, paths, timeout).await;
            if let Err(e @ FsError::Timeout { .. }) = &result
                && self.pipelining.swap(false, Ordering::Relaxed)
            {
                tracing::warn!(
                    server = %self.server(),
                    error = %e,
                    "a pipelined MDTM got no reply in time: this listing fails, and MDTM is \
                     asked one command at a time from now on (set `pipelining = false` to \
                     start that way)"
                );
            }
            return result;
        }
        let wanted =
            (paths.len() / MDTM_PER_SESSION).min(self.pool.max_sessions().saturating_sub(1));
        let mut extra = Vec::new();
        while extra.len() < wanted {
            match self.pool.try_checkout(OP).await {
                Some(Ok(lease)) => extra.push(lease),
                // Busy or failing to connect: the sessions at hand do the rest.
                Some(Err(_)) | None => break,
            }
        }
        let lanes = 1 + extra.len();
        let mut sessions: Vec<&mut Session> = vec![session];
        sessions.extend(extra.iter_mut().map(|lease| &mut lease.session));
        let results = futures_util::future::join_all(sessions.into_iter().enumerate().map(
            |(lane, session)| async move {
                let mut got = Vec::new();
                for index in (lane..paths.len()).step_by(lanes) {
                    got.push((index, self.mdtm(session, paths[index], timeout).await?));
                }
                Ok::<_, FsError>(got)
            },
        ))
        .await;
        let mut answers = vec![None; paths.len()];
        let mut failure = None;
        let mut leases = extra.into_iter();
        for (lane, result) in results.into_iter().enumerate() {
            let result = match result {
                Ok(got) => {
                    for (index, answer) in got {
                        answers[index] = answer;
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            };
            if lane > 0
                && let Some(lease) = leases.next()
            {
                // A broken extra session is dropped, a good one goes back to the pool.
                let _ = lease.settle(result.clone());
            }
            if let Err(e) = result {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(answers),
        }
    }

    /// `MDTM` of each of `paths` over one plain session, pipelined: the commands are written
    /// in batches, at most [`PIPELINE_WINDOW`] unanswered, and the replies read in order,
    /// each judged as [`FtpFs::mdtm`] judges its one. No answer is used before every reply
    /// came: a server that dropped a command (its replies then out of step) leaves the last
    /// one unanswered, and that timeout fails the whole listing (the session is then dropped),
    /// so a time is never given to the wrong file. A lost connection fails it too.
    async fn mdtm_pipelined(
        &self,
        session: &mut Session,
        paths: &[&str],
        timeout: Duration,
    ) -> Result<Vec<Option<SystemTime>>, FsError> {
        const OP: &str = "list";
        let server = self.server();
        let mut lines = Vec::with_capacity(paths.len());
        for path in paths {
            let abs = session.abs(OP, path)?;
            // See `mdtm`: a relative path could read as "set the time".
            lines.push(abs.starts_with('/').then(|| format!("MDTM {abs}\r\n")));
        }
        let asked: Vec<usize> = (0..paths.len()).filter(|&i| lines[i].is_some()).collect();
        let mut answers = vec![None; paths.len()];
        let (mut sent, mut read) = (0, 0);
        while read < asked.len() {
            if sent < asked.len() && sent - read <= PIPELINE_WINDOW / 2 {
                let upto = (read + PIPELINE_WINDOW).min(asked.len());
                let batch: String = asked[sent..upto]
                    .iter()
                    .filter_map(|&i| lines[i].as_deref())
                    .collect();
                for _ in sent..upto {
                    self.mtimes.count_mdtm();
                }
                let path = paths[asked[sent]];
                timed(OP, path, timeout, async {
                    session
                        .send_raw(batch.as_bytes())
                        .await
                        .map_err(|e| map_ftp_error(OP, path, server, FtpError::ConnectionError(e)))
                })
                .await?;
                sent = upto;
            }
            let index = asked[read];
            let path = paths[index];
            let reply = timed(OP, path, timeout, async {
                match session.ftp.read_response_in(&[Status::File]).await {
                    Ok(r) => Ok(Ok(r)),
                    Err(FtpError::UnexpectedResponse(r))
                        if ![421, 530].contains(&r.status.code()) =>
                    {
                        Ok(Err(r))
                    }
                    Err(e) => Err(map_ftp_error(OP, path, server, e)),
                }
            })
            .await?;
            answers[index] = mdtm_answer(path, reply);
            read += 1;
        }
        for (index, line) in lines.iter().enumerate() {
            if line.is_none() {
                answers[index] = self.mdtm(session, paths[index], timeout).await?;
            }
        }
        Ok(answers)
    }

    /// `MDTM` of one file: `Ok(None)` when the server refuses or answers unreadably (logged).
    async fn mdtm(
        &self,
        session: &mut Session,
        path: &str,
        timeout: Duration,
    ) -> Result<Option<SystemTime>, FsError> {
        const OP: &str = "list";
        let abs = session.abs(OP, path)?;
        // vsftpd reads `MDTM YYYYMMDDHHMMSS name` as "set the time of `name`": an absolute
        // path (always, from a PWD home) cannot look like that.
        if !abs.starts_with('/') {
            tracing::warn!(
                path,
                "not asking MDTM for a path that is not absolute; skipping"
            );
            return Ok(None);
        }
        let server = self.server();
        self.mtimes.count_mdtm();
        let reply = timed(OP, path, timeout, async {
            match session
                .ftp
                .custom_command(format!("MDTM {abs}"), &[Status::File])
                .await
            {
                Ok(r) => Ok(Ok(r)),
                Err(FtpError::UnexpectedResponse(r)) if ![421, 530].contains(&r.status.code()) => {
                    Ok(Err(r))
                }
                Err(e) => Err(map_ftp_error(OP, path, server, e)),
            }
        })
        .await?;
        Ok(mdtm_answer(path, reply))
    }
}

/// What an `MDTM` reply says: the time of a readable `213`; `None` (logged) for a refusal or
/// an unreadable answer, the file then being skipped for the listing.
fn mdtm_answer(
    path: &str,
    reply: Result<suppaftp::types::Response, suppaftp::types::Response>,
) -> Option<SystemTime> {
    match reply {
        Ok(r) => {
            let t = parse_mdtm_reply(&r.body);
            if t.is_none() {
                tracing::warn!(
                    path,
                    reply = %coord_core::escape_for_log(r.body.trim_ascii_end()),
                    "unreadable MDTM reply; skipping the file in this listing"
                );
            }
            t
        }
        Err(r) => {
            // INFO: the leader's own moves run beside its listings, so a file it just moved
            // is refused here routinely.
            tracing::info!(
                path,
                reply = %reply_text(&r),
                "MDTM refused (file gone?); skipping the file in this listing"
            );
            None
        }
    }
}

impl RemoteFs for FtpFs {
    type Reader = FtpReader;
    type Writer = FtpWriter;

    async fn list(&self, dir: &str, options: &ListOptions) -> Result<Listing, FsError> {
        let mut lease = self.pool.checkout("list").await?;
        let timeout = lease.op_timeout();
        let result = self
            .list_in(&mut lease.session, dir, options, timeout)
            .await;
        if let Ok(l) = &result {
            tracing::debug!(
                dir,
                entries = l.entries.len(),
                skipped = l.skipped,
                "listed"
            );
        }
        lease.settle(result)
    }

    async fn open_read(&self, path: &str) -> Result<FtpReader, FsError> {
        const OP: &str = "read";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let result = timed(OP, path, timeout, async {
            let abs = lease.session.abs(OP, path)?;
            match lease.session.ftp.retr_as_stream(&abs).await {
                Ok(stream) => Ok(stream),
                Err(e) => {
                    let session = &mut lease.session;
                    Err(self.refusal(session, OP, path, &abs, e, Probe::File).await)
                }
            }
        })
        .await;
        match result {
            Ok(stream) => Ok(FtpReader::new(lease, stream, path)),
            Err(e) => lease.settle(Err(e)),
        }
    }

    async fn open_write(&self, path: &str) -> Result<FtpWriter, FsError> {
        const OP: &str = "write";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let result = timed(OP, path, timeout, async {
            let abs = lease.session.abs(OP, path)?;
            lease
                .session
                .ftp
                .put_with_stream(&abs)
                .await
                .map_err(|e| map_ftp_error(OP, path, self.server(), e))
        })
        .await;
        match result {
            Ok(stream) => Ok(FtpWriter::new(lease, stream, path)),
            Err(e) => lease.settle(Err(e)),
        }
    }

    async fn rename(&self, from: &str, to: &str, mode: RenameMode) -> Result<(), FsError> {
        const OP: &str = "rename";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let taken = match self.taken_by_listing(&mut lease, to, mode).await {
            Ok(taken) => taken,
            Err(e) => return lease.settle(Err(e)),
        };
        let result = timed(
            OP,
            from,
            timeout,
            self.rename_in(&mut lease, from, to, mode, taken),
        )
        .await;
        lease.settle(result)
    }

    async fn delete(&self, path: &str) -> Result<(), FsError> {
        const OP: &str = "delete";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let result = timed(OP, path, timeout, async {
            let abs = lease.session.abs(OP, path)?;
            match lease.session.ftp.rm(&abs).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let session = &mut lease.session;
                    Err(self.refusal(session, OP, path, &abs, e, Probe::File).await)
                }
            }
        })
        .await;
        lease.settle(result)
    }

    /// `SIZE` (the session is in binary mode, so it is the byte count). A refusal that says
    /// "not found", or does not say why (vsftpd answers a directory like a missing file), is
    /// `None`.
    async fn size(&self, path: &str) -> Result<Option<u64>, FsError> {
        const OP: &str = "size";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let result = timed(OP, path, timeout, async {
            let abs = lease.session.abs(OP, path)?;
            match lease.session.ftp.size(&abs).await {
                Ok(n) => Ok(Some(n as u64)),
                Err(FtpError::UnexpectedResponse(r))
                    if matches!(classify(&r), Refusal::NotFound | Refusal::Ambiguous(_)) =>
                {
                    Ok(None)
                }
                Err(e) => Err(map_ftp_error(OP, path, self.server(), e)),
            }
        })
        .await;
        lease.settle(result)
    }

    async fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        const OP: &str = "create_dir_all";
        let mut lease = self.pool.checkout(OP).await?;
        let timeout = lease.op_timeout();
        let result = timed(OP, path, timeout, self.mkdir_in(&mut lease.session, path)).await;
        lease.settle(result)
    }
}

impl FtpFs {
    async fn rename_in(
        &self,
        lease: &mut Lease,
        from: &str,
        to: &str,
        mode: RenameMode,
        taken: Option<bool>,
    ) -> Result<(), FsError> {
        const OP: &str = "rename";
        let session = &mut lease.session;
        let from_abs = session.abs(OP, from)?;
        let to_abs = session.abs(OP, to)?;
        let exists = || FsError::AlreadyExists {
            operation: OP,
            path: to.to_string(),
        };
        if taken == Some(true) {
            return Err(exists());
        }
        if mode == RenameMode::NoOverwrite && taken.is_none() {
            // FTP has no atomic no-overwrite rename: between this check and RNTO another
            // client can create `to`, which RNTO then replaces (on POSIX servers). The window
            // is one round trip; the listener's leader is the only writer in normal operation.
            // `SIZE` alone (the session is in binary mode): a file there answers 213. A
            // directory there answers 550 like nothing does, and RNTO onto it is refused
            // (rename(2) does not replace a directory by a file), which the probe below tells.
            match session.ftp.size(&to_abs).await {
                Ok(_) => return Err(exists()),
                Err(FtpError::UnexpectedResponse(_)) => {}
                Err(e) => return Err(map_ftp_error(OP, to, self.server(), e)),
            }
        }
        // Never pipelined: libunftp takes an `RNFR` in a task of its own, so an `RNTO` sent
        // with it can find no source yet, or the previous one (and rename that file).
        match session.ftp.rename(&from_abs, &to_abs).await {
            Ok(()) => {
                if taken.is_some() {
                    self.note_moved(&to_abs);
                }
                Ok(())
            }
            Err(e) => {
                // The target's folder may be gone: check it again next time.
                self.known_dirs().clear();
                self.target_names().clear();
                if matches!(e, FtpError::UnexpectedResponse(_))
                    && mode == RenameMode::NoOverwrite
                    && matches!(session.probe(&to_abs).await, Ok(Probe::Dir | Probe::File))
                {
                    return Err(exists());
                }
                // RNFR or RNTO refused: an ambiguous 550 is resolved by probing the source.
                Err(self
                    .refusal(session, OP, from, &from_abs, e, Probe::File)
                    .await)
            }
        }
    }

    fn target_names(&self) -> std::sync::MutexGuard<'_, HashMap<String, FolderNames>> {
        self.target_names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// With `move_check = "listing"`, whether the no-overwrite target `to` is taken by the
    /// names of its folder (listed first when they are not known or a minute old); `None`
    /// when `SIZE` must tell instead (another mode, a name that starts with `.`, a folder
    /// that could not be listed in the last minute). A refused listing is `None`; a lost
    /// session or a timeout is the move's error (the folder is asked with `SIZE` for the
    /// next minute, so a folder too large to list in time does not fail every move).
    async fn taken_by_listing(
        &self,
        lease: &mut Lease,
        to: &str,
        mode: RenameMode,
    ) -> Result<Option<bool>, FsError> {
        const OP: &str = "rename";
        if mode != RenameMode::NoOverwrite || self.settings().move_check != MoveCheck::Listing {
            return Ok(None);
        }
        let to_abs = lease.session.abs(OP, to)?;
        let Some((folder, name)) = folder_and_name(&to_abs) else {
            return Ok(None);
        };
        if name.starts_with('.') {
            return Ok(None);
        }
        let now = std::time::Instant::now();
        match self.target_names().get(folder) {
            Some(&FolderNames::Listed { ref names, at })
                if now.duration_since(at) < TARGET_NAMES_FOR =>
            {
                return Ok(Some(names.contains(name)));
            }
            Some(&FolderNames::Unlistable { at }) if now.duration_since(at) < TARGET_NAMES_FOR => {
                return Ok(None);
            }
            _ => {}
        }
        let timeout = lease.op_timeout();
        let format = list_format(&lease.session);
        let mut listing = Listing::default();
        let listed = self
            .list_one(
                &mut lease.session,
                folder,
                format,
                false,
                timeout,
                &mut listing,
            )
            .await;
        let mut names = self.target_names();
        match listed {
            Ok(_) => {
                let listed: HashSet<String> = listing.entries.into_iter().map(|e| e.name).collect();
                let taken = listed.contains(name);
                names.insert(
                    folder.to_string(),
                    FolderNames::Listed {
                        names: listed,
                        at: now,
                    },
                );
                Ok(Some(taken))
            }
            Err(e) => {
                tracing::warn!(
                    server = %self.server(),
                    folder,
                    error = %e,
                    "could not list the move's target folder: asking SIZE for a minute"
                );
                names.insert(folder.to_string(), FolderNames::Unlistable { at: now });
                if e.is_transient() { Err(e) } else { Ok(None) }
            }
        }
    }

    /// A move into `to_abs` succeeded: its name is taken from now on.
    fn note_moved(&self, to_abs: &str) {
        if let Some((folder, name)) = folder_and_name(to_abs)
            && let Some(FolderNames::Listed { names, .. }) = self.target_names().get_mut(folder)
        {
            names.insert(name.to_string());
        }
    }

    async fn mkdir_in(&self, session: &mut Session, path: &str) -> Result<(), FsError> {
        const OP: &str = "create_dir_all";
        let abs = session.abs(OP, path)?;
        let mut prefix = String::new();
        for segment in abs.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." {
                return Err(FsError::UnsafePath {
                    operation: OP,
                    path: path.to_string(),
                    reason: "contains a `.` or `..` segment".into(),
                });
            }
            prefix.push('/');
            prefix.push_str(segment);
        }
        if prefix.is_empty() {
            return Ok(()); // the root
        }
        // The deepest folder known to exist, then only what is below it.
        let segments: Vec<usize> = prefix
            .match_indices('/')
            .map(|(i, _)| i)
            .skip(1)
            .chain([prefix.len()])
            .collect();
        let first_unknown = {
            let known = self.known_dirs();
            segments
                .iter()
                .rposition(|&end| known.contains(&prefix[..end]))
                .map_or(0, |i| i + 1)
        };
        for &end in &segments[first_unknown..] {
            let dir = &prefix[..end];
            match session.ftp.cwd(dir).await {
                Ok(()) => {
                    self.known_dirs().insert(dir.to_string());
                    continue;
                }
                Err(FtpError::UnexpectedResponse(_)) => {}
                Err(e) => return Err(map_ftp_error(OP, path, self.server(), e)),
            }
            if let Err(e) = session.ftp.mkdir(dir).await {
                // Someone else may have created it in between: fine if it is there now.
                if session.ftp.cwd(dir).await.is_err() {
                    return Err(map_ftp_error(OP, dir, self.server(), e));
                }
            }
            self.known_dirs().insert(dir.to_string());
        }
        Ok(())
    }
}
