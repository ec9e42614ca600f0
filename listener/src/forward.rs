//! The `forward` handler (issue 9, item 6): uploads each file to an ordered list of
//! destinations, streamed from the source (memory: one 64 KiB buffer per transfer), under a
//! temporary name next to the target; checks the uploaded size; renames it into place
//! (never over an existing file unless `overwrite`); and says in the ledger's `detail` which
//! destination got it.
//!
//! Destinations are opened through the built-in source backends (`local`, `ftp`, `sftp`),
//! once, at their first use, and kept: their session pools serve every later file. A
//! destination that cannot be opened (a secret file missing) fails like one that is down.
//!
//! Idempotence: a target that already exists with the listed size counts as delivered, so a
//! redelivery (a crash between the rename and the ledger write) or a retry of a partial
//! fan-out does not upload it again.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coord_core::{FileWriter as _, FsError, RemoteFs, RenameMode, SharedSource, escape_for_log};
use tokio::sync::OnceCell;

use crate::api::{FileHandler, HandlerError, IncomingFile};
use crate::forward_config::{ForwardConfig, ForwardMode};
use crate::registry::{Registry, Settings, SourceBackend};

/// Longest part of one destination's error kept in a message or a detail.
const ERROR_CHARS: usize = 300;

/// One destination, opened at its first use.
struct Destination {
    name: String,
    path: String,
    shown: String,
    backend: Option<Arc<dyn SourceBackend>>,
    kind: String,
    settings: Settings,
    fs: OnceCell<SharedSource>,
    /// Folders made (or found) on it, not made again (forgotten after an error).
    made: Mutex<std::collections::HashSet<String>>,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.name)
            .field("at", &self.shown)
            .finish_non_exhaustive()
    }
}

/// What one destination did with a file.
enum Delivered {
    /// Uploaded and renamed into place.
    Uploaded,
    /// The target was there with the listed size already.
    AlreadyThere,
}

/// The `forward` handler. Cheap to share: one per listener, its destinations' sessions
/// reused across files.
#[derive(Debug)]
pub struct Forward {
    mode: ForwardMode,
    destinations: Vec<Destination>,
    temp_prefix: String,
    temp_suffix: String,
    overwrite: bool,
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= ERROR_CHARS {
        return text.to_string();
    }
    let cut: String = text.chars().take(ERROR_CHARS).collect();
    format!("{cut}...")
}

impl Forward {
    /// The handler a `[handler]` table with `kind = "forward"` describes, its destinations
    /// opened through `registry`'s sources (checked at load: see
    /// [`crate::forward_config`]).
    pub fn new(config: &ForwardConfig, registry: &Registry) -> Forward {
        let destinations = config
            .destinations
            .iter()
            .enumerate()
            .map(|(i, d)| Destination {
                name: d.name_or_default(i),
                path: d.path.trim_end_matches('/').to_string(),
                shown: d.describe(&d.path),
                backend: registry.source(d.kind.name()).cloned(),
                kind: d.kind.name().to_string(),
                settings: d.settings(i, "in the forward handler's configuration"),
                fs: OnceCell::new(),
                made: Mutex::default(),
            })
            .collect();
        Forward {
            mode: config.mode,
            destinations,
            temp_prefix: config.temp_prefix.clone(),
            temp_suffix: config.temp_suffix.clone(),
            overwrite: config.overwrite,
        }
    }

    async fn open(&self, d: &Destination) -> Result<SharedSource, String> {
        d.fs.get_or_try_init(|| async {
            let backend = d
                .backend
                .as_ref()
                .ok_or_else(|| format!("no `{}` destination in this build", d.kind))?;
            let path = if d.path.is_empty() { "/" } else { &d.path };
            backend
                .open(&d.settings, path)
                .await
                .map(|(fs, _)| fs)
                .map_err(|e| e.to_string())
        })
        .await
        .cloned()
    }

    /// Delivers `file` to `d`: checks the target, uploads to the temporary name, checks the
    /// size, renames into place.
    async fn deliver(&self, d: &Destination, file: &IncomingFile<'_>) -> Result<Delivered, String> {
        let fs = self.open(d).await?;
        let result = self.deliver_on(&fs, d, file).await;
        if result.is_err() {
            d.made.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        result
    }

    async fn deliver_on(
        &self,
        fs: &SharedSource,
        d: &Destination,
        file: &IncomingFile<'_>,
    ) -> Result<Delivered, String> {
        let size = file.version.size;
        let target = coord_core::join_remote(&d.path, &file.relative);
        let (dir, name) = target.rsplit_once('/').unwrap_or(("", &target));
        let dir = if dir.is_empty() { "/" } else { dir };
        let temp = coord_core::join_remote(
            dir,
            &format!("{}{name}{}", self.temp_prefix, self.temp_suffix),
        );
        let shown = escape_for_log(target.as_bytes());
        let fail = |what: &str, e: FsError| format!("{what} `{shown}`: {e}");
        match fs.size(&target).await.map_err(|e| fail("check", e))? {
            Some(n) if n == size => return Ok(Delivered::AlreadyThere),
            Some(n) if !self.overwrite => {
                return Err(format!(
                    "`{shown}` exists with {n} bytes (this file has {size}); not replaced \
                     (set handler.overwrite = true to replace it)"
                ));
            }
            _ => {}
        }
        let known = d
            .made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(dir);
        if !known {
            fs.create_dir_all(dir).await.map_err(|e| fail("mkdir", e))?;
            d.made
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(dir.to_string());
        }
        if let Err(e) = self.upload(fs, file, &temp).await {
            let _ = fs.delete(&temp).await;
            return Err(e);
        }
        match fs.size(&temp).await {
            Ok(Some(n)) if n == size => {}
            other => {
                let _ = fs.delete(&temp).await;
                let found = match other {
                    Ok(Some(n)) => format!("{n} bytes"),
                    Ok(None) => "nothing".to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(format!(
                    "`{}`: uploaded {size} bytes, the server reports {found}",
                    escape_for_log(temp.as_bytes())
                ));
            }
        }
        // The rename is what a receiver sees: not once this member no longer leads (the
        // next leader redelivers, and finds the target there).
        if !file.context.still_leading() {
            let _ = fs.delete(&temp).await;
            return Err("no longer leading: not renamed into place".into());
        }
        let mode = if self.overwrite {
            RenameMode::Overwrite
        } else {
            RenameMode::NoOverwrite
        };
        match fs.rename(&temp, &target, mode).await {
            Ok(()) => Ok(Delivered::Uploaded),
            Err(FsError::AlreadyExists { .. }) => {
                // Someone put it there since the check: fine if it is this file's size.
                let _ = fs.delete(&temp).await;
                match fs.size(&target).await {
                    Ok(Some(n)) if n == size => Ok(Delivered::AlreadyThere),
                    _ => Err(format!(
                        "`{shown}` appeared during the upload with another size; not replaced \
                         (set handler.overwrite = true to replace it)"
                    )),
                }
            }
            Err(e) => {
                let _ = fs.delete(&temp).await;
                Err(fail("rename into place", e))
            }
        }
    }

    /// Streams the source into `temp` and checks the byte count against the listing.
    async fn upload(
        &self,
        fs: &SharedSource,
        file: &IncomingFile<'_>,
        temp: &str,
    ) -> Result<(), String> {
        let shown = escape_for_log(temp.as_bytes());
        let mut reader = file
            .open()
            .await
            .map_err(|e| format!("read the source: {e}"))?;
        let mut writer = fs
            .open_write(temp)
            .await
            .map_err(|e| format!("upload `{shown}`: {e}"))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent: u64 = 0;
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| format!("read the source: {e}"))?;
            if n == 0 {
                break;
            }
            writer
                .write_all(&buf[..n])
                .await
                .map_err(|e| format!("upload `{shown}`: {e}"))?;
            sent += n as u64;
        }
        reader
            .finish()
            .await
            .map_err(|e| format!("read the source: {e}"))?;
        writer
            .finish()
            .await
            .map_err(|e| format!("upload `{shown}`: {e}"))?;
        if sent != file.version.size {
            return Err(format!(
                "read {sent} bytes from the source, the listing said {} (changed since it \
                 was listed?)",
                file.version.size
            ));
        }
        Ok(())
    }

    async fn failover(&self, file: &IncomingFile<'_>) -> Result<String, HandlerError> {
        let mut failed: Vec<String> = Vec::new();
        for d in &self.destinations {
            match self.deliver(d, file).await {
                Ok(delivered) => {
                    let mut detail = describe(d, &file.relative, &delivered);
                    if !failed.is_empty() {
                        detail.push_str(&format!(" (after {})", failed.join("; ")));
                    }
                    tracing::info!(
                        path = %file.version.path,
                        destination = %d.name,
                        at = %d.shown,
                        failed_over = failed.len(),
                        "file forwarded"
                    );
                    return Ok(detail);
                }
                Err(e) => failed.push(failure(d, file, &e)),
            }
        }
        Err(HandlerError(format!(
            "every destination failed: {}",
            failed.join("; ")
        )))
    }

    async fn fanout(&self, file: &IncomingFile<'_>) -> Result<String, HandlerError> {
        let mut delivered: Vec<String> = Vec::new();
        let mut failed: Vec<String> = Vec::new();
        for d in &self.destinations {
            match self.deliver(d, file).await {
                Ok(how) => delivered.push(describe(d, &file.relative, &how)),
                Err(e) => failed.push(failure(d, file, &e)),
            }
        }
        if failed.is_empty() {
            tracing::info!(
                path = %file.version.path,
                destinations = delivered.len(),
                "file forwarded to every destination"
            );
            return Ok(delivered.join("; "));
        }
        let done = if delivered.is_empty() {
            "none delivered".to_string()
        } else {
            format!("delivered {}", delivered.join("; "))
        };
        Err(HandlerError(format!(
            "fan-out incomplete: {}; {done} (a retry skips destinations that have it)",
            failed.join("; ")
        )))
    }
}

/// Logs one destination's failure (once, here) and says it for the error or the detail.
fn failure(d: &Destination, file: &IncomingFile<'_>, error: &str) -> String {
    tracing::warn!(
        path = %file.version.path,
        destination = %d.name,
        error = %error,
        "destination failed"
    );
    format!("`{}` failed: {}", d.name, shorten(error))
}

/// `` `name` at ftp://host:21/in/a.csv `` (plus "(already there)").
fn describe(d: &Destination, relative: &str, how: &Delivered) -> String {
    let at = format!(
        "{}/{}",
        d.shown.trim_end_matches('/'),
        escape_for_log(relative.as_bytes())
    );
    match how {
        Delivered::Uploaded => format!("`{}` at {at}", d.name),
        Delivered::AlreadyThere => format!("`{}` at {at} (already there)", d.name),
    }
}

#[async_trait]
impl FileHandler for Forward {
    async fn on_file(&self, file: &IncomingFile<'_>) -> Result<(), HandlerError> {
        let detail = match self.mode {
            ForwardMode::Failover => self.failover(file).await?,
            ForwardMode::Fanout => self.fanout(file).await?,
        };
        file.context.set_detail(detail);
        Ok(())
    }
}
