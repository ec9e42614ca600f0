//! The `RemoteFs` conformance suite of `testkit` over SFTP, against the OpenSSH server of
//! `scripts/setup/40-sftp.sh`. "The server's disk" is the test user's home, written directly
//! (the tests run as root) and handed to the test user.
//!
//! The suite is compiled in from testkit's source: this crate has no dev-dependency on
//! `testkit`, and the suite needs only `coord-core`.

mod common;
#[path = "../../testkit/src/fs_conformance.rs"]
#[allow(dead_code, unreachable_pub)]
mod fs_conformance;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use common::{chown_to_user, fresh_dir, home, password_fs};
use fs_conformance::{Capabilities, FsHarness};
use transfer_sftp::SftpFs;

struct SftpHarness {
    fs: SftpFs,
}

impl SftpHarness {
    /// SFTP paths are relative to the home directory.
    fn local(&self, path: &str) -> PathBuf {
        home().join(path.trim_start_matches('/'))
    }

    fn make_dirs(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let home = home();
        let mut at = dir;
        while at.starts_with(&home) && at != home {
            chown_to_user(at);
            at = at.parent().unwrap();
        }
    }
}

impl FsHarness for SftpHarness {
    type Fs = SftpFs;

    fn fs(&self) -> &SftpFs {
        &self.fs
    }

    /// SFTP v3 attributes carry 32-bit whole seconds.
    fn capabilities(&self) -> Capabilities {
        Capabilities::SECONDS
    }

    fn scratch(&self, case: &str) -> String {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        fresh_dir(&format!("fsc-{case}-{}-{n}", std::process::id()))
    }

    fn put(&self, path: &str, bytes: &[u8], mtime: SystemTime) {
        let local = self.local(path);
        self.make_dirs(local.parent().unwrap());
        std::fs::write(&local, bytes).unwrap();
        chown_to_user(&local);
        let file = std::fs::File::options().write(true).open(&local).unwrap();
        file.set_modified(mtime).unwrap();
    }

    fn mkdir(&self, path: &str) {
        self.make_dirs(&self.local(path));
    }

    fn get(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.local(path)).ok()
    }
}

fn harness() -> SftpHarness {
    SftpHarness { fs: password_fs() }
}

macro_rules! cases {
    ($($(#[$meta:meta])* $case:ident),* $(,)?) => {
        $(
            $(#[$meta])*
            #[tokio::test]
            async fn $case() {
                fs_conformance::$case(&harness()).await;
            }
        )*
    };
}

cases!(
    list_files_and_dirs,
    list_recursion_depth,
    list_sizes_and_mtimes_stable,
    list_skips_hostile_name,
    list_empty_dir,
    list_missing_dir_is_error,
    read_streams_exact_bytes,
    read_missing_is_not_found,
    write_complete_after_finish,
    write_truncates_existing,
    rename_overwrite,
    rename_no_overwrite,
    rename_missing_source_is_not_found,
    delete_file,
    delete_missing_is_not_found,
    create_dir_all_nested_idempotent,
    size_of_file_and_nothing,
);
