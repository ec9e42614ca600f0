//! The `RemoteFs` conformance suite of `testkit` over FTP: vsftpd (LIST only, mtimes from MDTM)
//! and proftpd (MLSD), each plain and with explicit FTPS, as `scripts/setup/30-ftp.sh` starts
//! them. "The server's disk" is the served root, written directly (the tests run as root).
//!
//! The suite is compiled in from testkit's source: this crate has no dev-dependency on
//! `testkit`, and the suite needs only `coord-core`.

mod common;
#[path = "../../testkit/src/fs_conformance.rs"]
#[allow(dead_code, unreachable_pub)]
mod fs_conformance;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::{Server, Target, open_up};
use fs_conformance::{Capabilities, FsHarness};
use transfer_ftp::FtpFs;

struct FtpHarness {
    target: Target,
    fs: FtpFs,
}

impl FtpHarness {
    fn new(server: Server, tls: bool) -> FtpHarness {
        let target = Target { server, tls };
        FtpHarness {
            target,
            fs: target.fs(),
        }
    }

    fn local(&self, path: &str) -> PathBuf {
        self.target
            .server
            .local_root()
            .join(path.trim_start_matches('/'))
    }

    /// Creates `dir` and its parents, each writable by the FTP user.
    fn make_dirs(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let root = self.target.server.local_root();
        let mut at = dir;
        while at.starts_with(&root) && at != root {
            open_up(at);
            at = at.parent().unwrap();
        }
    }
}

impl FsHarness for FtpHarness {
    type Fs = FtpFs;

    fn fs(&self) -> &FtpFs {
        &self.fs
    }

    /// MLSD facts and MDTM replies carry whole seconds.
    fn capabilities(&self) -> Capabilities {
        Capabilities::SECONDS
    }

    fn scratch(&self, case: &str) -> String {
        self.target.fresh_dir(case).1
    }

    fn put(&self, path: &str, bytes: &[u8], mtime: SystemTime) {
        use std::os::unix::fs::PermissionsExt;
        let local = self.local(path);
        self.make_dirs(local.parent().unwrap());
        std::fs::write(&local, bytes).unwrap();
        std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o666)).unwrap();
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

macro_rules! cases {
    ($server:expr, $tls:expr; $($(#[$meta:meta])* $case:ident),* $(,)?) => {
        $(
            $(#[$meta])*
            #[tokio::test]
            async fn $case() {
                let h = super::FtpHarness::new($server, $tls);
                super::fs_conformance::$case(&h).await;
            }
        )*
    };
}

macro_rules! all_cases {
    ($server:expr, $tls:expr) => {
        cases!(
            $server, $tls;
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
    };
}

mod vsftpd_plain {
    all_cases!(crate::Server::Vsftpd, false);
}
mod vsftpd_tls {
    all_cases!(crate::Server::Vsftpd, true);
}
mod proftpd_plain {
    all_cases!(crate::Server::Proftpd, false);
}
mod proftpd_tls {
    all_cases!(crate::Server::Proftpd, true);
}
