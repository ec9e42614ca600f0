//! Issue 12: names with line breaks must not forge listing entries. The hostile names are
//! made directly on the servers' disks (as an FTP client may not be able to), next to a real
//! 20-byte `victim.txt`; vsftpd (LIST) and proftpd (MLSD), plain and FTPS.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{Target, write};
use coord_core::{EntryKind, ListOptions, RemoteFs};

matrix!(names_with_line_breaks_forge_nothing);

async fn names_with_line_breaks_forge_nothing(t: Target) {
    let (local, remote) = t.fresh_dir("forged");
    write(&local.join("victim.txt"), &[b'v'; 20]);
    write(&local.join("other.txt"), b"other");
    // An MLSD line after the break (forges a 5-byte, 2020 `victim.txt` on proftpd).
    write(
        &local.join("evil\ntype=file;size=5;modify=20200101000000; victim.txt"),
        b"abcde",
    );
    // An `ls -l` line after the break (forges the same on vsftpd).
    write(
        &local.join("name\n-rw-r--r--    1 0 0 5 Jan 01  2020 victim.txt"),
        b"abcde",
    );
    // Breaks at the start of a name: the first half of the line does not parse.
    write(
        &local.join("\ntype=file;size=5;modify=20200101000000; ghost.txt"),
        b"abcde",
    );
    write(
        &local.join("\n-rw-r--r--    1 0 0 5 Jan 01  2020 ghost2.txt"),
        b"abcde",
    );
    // Two breaks, and a break at the end.
    write(&local.join("a\nb\ntype=file;size=5; c.txt"), b"abcde");
    write(&local.join("trail\n"), b"abcde");
    // A forged subdirectory.
    write(&local.join("d\ntype=dir; sub"), b"abcde");
    std::fs::create_dir(local.join("sub")).unwrap();
    write(&local.join("sub/inner.txt"), b"inner");

    let fs = t.fs();
    let options = ListOptions { max_depth: 1 };
    let listing = fs.list(&remote, &options).await.unwrap();
    let mut seen: Vec<(String, u64, EntryKind)> = listing
        .entries
        .iter()
        .map(|e| (e.path.clone(), e.size, e.kind))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let p = |n: &str| format!("{remote}/{n}");
    assert_eq!(
        seen,
        [
            (p("other.txt"), 5, EntryKind::File),
            (p("sub"), seen[1].1, EntryKind::Dir),
            (p("sub/inner.txt"), 5, EntryKind::File),
            (p("victim.txt"), 20, EntryKind::File),
        ],
        "{:#?}",
        listing.entries
    );
    let victim = listing
        .entries
        .iter()
        .find(|e| e.name == "victim.txt")
        .unwrap();
    let mtime = victim.mtime.expect("both servers give exact times");
    assert!(
        mtime > UNIX_EPOCH + Duration::from_secs(1_600_000_000),
        "the real victim.txt's time, not the forged 2020 one: {mtime:?}"
    );
    // The seven hostile names, at least one skipped line each.
    assert!(listing.skipped >= 7, "skipped {}", listing.skipped);
}
