//! The `RemoteFs` conformance suite over testkit's in-memory [`MemFs`].

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use coord_core::RemoteFs;
use testkit::MemFs;
use testkit::fs_conformance::{self, Capabilities, FsHarness};

/// MemFs never waits: its futures are ready on the first poll.
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("MemFs future pending"),
    }
}

struct MemHarness {
    fs: MemFs,
}

impl FsHarness for MemHarness {
    type Fs = MemFs;

    fn fs(&self) -> &MemFs {
        &self.fs
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::EXACT
    }

    fn scratch(&self, case: &str) -> String {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = format!("/scratch/{case}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
        ready(self.fs.create_dir_all(&dir)).unwrap();
        dir
    }

    fn put(&self, path: &str, bytes: &[u8], mtime: SystemTime) {
        self.fs.put(path, bytes, mtime);
    }

    fn mkdir(&self, path: &str) {
        ready(self.fs.create_dir_all(path)).unwrap();
    }

    fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.fs.get(path)
    }
}

fn harness() -> MemHarness {
    MemHarness { fs: MemFs::new() }
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

/// Every case of the suite has a test above.
#[test]
fn every_case_is_listed() {
    assert_eq!(fs_conformance::CASES.len(), 17);
}
