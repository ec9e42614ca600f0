//! The `RemoteFs` conformance suite of `testkit` over the local-directory source
//! ([`listener::LocalFs`]), in a temporary directory.

use std::path::Path;
use std::time::{Duration, SystemTime};

use listener::LocalFs;
use testkit::fs_conformance::{self, Capabilities, FsHarness};

struct LocalHarness {
    fs: LocalFs,
    root: tempfile::TempDir,
}

impl FsHarness for LocalHarness {
    type Fs = LocalFs;

    fn fs(&self) -> &LocalFs {
        &self.fs
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::EXACT
    }

    fn scratch(&self, case: &str) -> String {
        let dir = self.root.path().join(case);
        std::fs::create_dir_all(&dir).unwrap();
        dir.to_str().unwrap().to_string()
    }

    fn put(&self, path: &str, bytes: &[u8], mtime: SystemTime) {
        let path = Path::new(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(mtime).unwrap();
    }

    fn mkdir(&self, path: &str) {
        std::fs::create_dir_all(path).unwrap();
    }

    fn get(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }
}

fn harness() -> LocalHarness {
    LocalHarness {
        fs: LocalFs::new(Duration::from_secs(10)),
        root: tempfile::tempdir().unwrap(),
    }
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
