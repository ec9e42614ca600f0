//! transfer-sftp: the SFTP file source of the HA listener, `coord_core::RemoteFs` over
//! libssh2 (the `ssh2` crate).
//!
//! What it does:
//! - lists a directory (optionally recursive, depth-limited) by streaming SFTP `readdir`;
//!   every raw name goes through [`coord_core::check_name`]: hostile names (newlines, control
//!   characters, non-UTF-8, separators) are skipped with a warning and counted, never fatal;
//! - streams reads and uploads in fixed-size chunks (constant memory), renames (overwrite or
//!   not), deletes and creates directories (`mkdir -p`);
//! - logs in with a password or a private key (ed25519, ECDSA, RSA; with or without
//!   passphrase) after verifying the server's host key against an OpenSSH known_hosts file;
//! - reuses one session across operations, opens at most `max_sessions` for parallel
//!   transfers, bounds every call by a timeout, and after a broken session reconnects on the
//!   next call, with exponential backoff between failed connects.
//!
//! What it must never do:
//! - block an async worker thread: every libssh2 call runs in `tokio::task::spawn_blocking`;
//! - connect to a server whose host key is unknown or mismatching, unless the operator set
//!   `host_key_policy = "accept_new"` (a mismatch is refused even then);
//! - put a password or passphrase in a log line, an error or a `Debug` string;
//! - follow a name from the server into a path without checking it.
//!
//! ```no_run
//! use coord_core::{ListOptions, RemoteFs};
//! use transfer_sftp::{AuthSettings, SecretSource, SftpFs, SftpSettings};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = SftpSettings::new(
//!     "sftp.example.org",
//!     22,
//!     "ingest",
//!     AuthSettings::Password { password: SecretSource::Env { env: "SFTP_PASSWORD".into() } },
//!     "/etc/ha-listener/known_hosts",
//! );
//! let fs = SftpFs::new(settings)?;
//! let listing = fs.list("incoming", &ListOptions { max_depth: 0 }).await?;
//! println!("{} entries, {} skipped", listing.entries.len(), listing.skipped);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod connect;
mod error;
mod fs;
mod io;
mod pool;
mod settings;

pub use fs::SftpFs;
pub use io::{SftpReader, SftpWriter};
pub use settings::{
    AuthSettings, HostKeyPolicy, Secret, SecretSource, SettingsError, SftpSettings,
};
