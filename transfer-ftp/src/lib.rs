//! `transfer-ftp`: the [`coord_core::RemoteFs`] file source over FTP and explicit FTPS
//! (`AUTH TLS`), on suppaftp + tokio + rustls (DESIGN §3).
//!
//! What it does: lists directories with `MLSD` when the server offers it (`FEAT`) and `LIST`
//! otherwise (POSIX `ls -l` and DOS/IIS lines), parsed line by line from the data connection;
//! on LIST-only servers files get their exact times from `MDTM`, asked once per file version
//! and remembered (a LIST date is never made into a time: see [`FtpFs`]);
//! optionally recursive up to [`coord_core::ListOptions::max_depth`]; streams reads and
//! uploads; renames (overwrite or not), deletes, `mkdir -p`. Every listed name goes through
//! [`coord_core::check_name`]; unparsable lines and hostile names are skipped, counted and
//! logged, never fatal. Sessions are pooled (at most `max_sessions`), every operation has a
//! timeout, a broken session is dropped and the next call reconnects, failed connects back off.
//!
//! What it must never do: log or print a password (the settings' `Debug` redacts it); trust a
//! certificate that does not verify, unless `insecure_skip_verify` says so; let a listed name
//! escape its directory; read a whole file or a whole listing's text into memory; retry in a
//! loop on its own (the caller's next call reconnects).
//!
//! Caution for whoever sets up logging: suppaftp writes every control command, `PASS` with
//! the password included, to the `log` facade at TRACE level (target `suppaftp`). Never enable
//! TRACE for `suppaftp` (with `tracing-log` bridging, cap it: `suppaftp=debug`).
//!
//! ```no_run
//! use coord_core::{FileReader, ListOptions, RemoteFs};
//! use transfer_ftp::{FtpFs, FtpSettings, Secret, TlsMode};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut settings = FtpSettings::new("ftp.example.com", 21, "loader");
//! settings.password_env = Some("FTP_PASSWORD".into());
//! settings.tls = TlsMode::Explicit;
//! let fs = FtpFs::new(settings)?;
//! let listing = fs.list("/incoming", &ListOptions { max_depth: 1 }).await?;
//! for entry in &listing.entries {
//!     let mut reader = fs.open_read(&entry.path).await?;
//!     let mut buf = vec![0u8; 64 * 1024];
//!     while reader.read(&mut buf).await? > 0 {}
//!     reader.finish().await?;
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod fs;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod mtimes;
mod parse;
mod pool;
mod session;
mod settings;
mod tls;
mod transfer;

pub use fs::FtpFs;
pub use settings::{FtpSettings, MoveCheck, PassiveMode, Secret, SettingsError, TlsMode};
pub use transfer::{FtpReader, FtpWriter};
