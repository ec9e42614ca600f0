//! Issue 7: file identity on LIST-only servers. vsftpd (no MLSD) lists `Mon DD HH:MM` for
//! recent files and `Mon DD  YYYY` for files older than about six months; the listed mtime
//! must nevertheless be the file's exact time (from `MDTM`), whatever the listing's form and
//! the node's clock, and a poll of unchanged files must send no `MDTM`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Server, Target, write};
use coord_core::{FileVersion, ListOptions, Listing, RemoteFs};

const DAY: u64 = 86_400;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sets `path`'s mtime to `secs` since the epoch, with `touch -d`.
fn touch(path: &Path, secs: u64) {
    let status = Command::new("touch")
        .arg("-d")
        .arg(format!("@{secs}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn disk_mtime(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mtime_of(listing: &Listing, name: &str) -> Option<u64> {
    let e = listing
        .entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} not listed: {listing:?}"));
    e.mtime
        .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
}

fn versions(listing: &Listing) -> Vec<FileVersion> {
    let mut v: Vec<_> = listing.entries.iter().map(|e| e.version()).collect();
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}

async fn exact_times_on_a_list_only_server(tls: bool) {
    let t = Target {
        server: Server::Vsftpd,
        tls,
    };
    let (local, remote) = t.fresh_dir("times");
    // Eight months old (vsftpd lists `Mon DD  YYYY`: the old parser took midnight) and an
    // hour old (`Mon DD HH:MM`: the old parser took the year from the node's clock and lost
    // the seconds). Both at an odd second, not at midnight.
    let old_secs = (now_secs() - 240 * DAY) / DAY * DAY + 13 * 3600 + 17 * 60 + 29;
    let recent_secs = now_secs() - 3600 - 7;
    write(&local.join("old.csv"), b"old,file\n");
    write(&local.join("recent.csv"), b"recent\n");
    touch(&local.join("old.csv"), old_secs);
    touch(&local.join("recent.csv"), recent_secs);
    std::fs::create_dir(local.join("sub")).unwrap();

    let fs = t.fs();
    let first = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(first.skipped, 0);
    assert_eq!(mtime_of(&first, "old.csv"), Some(old_secs), "8 months old");
    assert_eq!(
        mtime_of(&first, "recent.csv"),
        Some(recent_secs),
        "1 hour old"
    );
    assert_eq!(disk_mtime(&local.join("old.csv")), old_secs);
    // Directories carry no time from a LIST line.
    assert_eq!(mtime_of(&first, "sub"), None);
    let after_first = fs.mdtm_requests();
    assert_eq!(after_first, 2, "one MDTM per regular file");

    // Unchanged files: the same versions, and no MDTM at all.
    let second = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(versions(&second), versions(&first));
    assert_eq!(fs.mdtm_requests() - after_first, 0, "second listing");

    // Another member (a new FtpFs, nothing remembered) computes the same identities.
    let other = t.fs();
    let theirs = other.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(versions(&theirs), versions(&first));
    assert_eq!(other.mdtm_requests(), 2);

    // A changed file is asked again; the unchanged one is not.
    write(&local.join("recent.csv"), b"recent, and longer\n");
    let changed_secs = recent_secs + 60;
    touch(&local.join("recent.csv"), changed_secs);
    let third = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(mtime_of(&third, "recent.csv"), Some(changed_secs));
    assert_eq!(mtime_of(&third, "old.csv"), Some(old_secs));
    assert_eq!(fs.mdtm_requests() - after_first, 1, "only the changed file");
    println!(
        "vsftpd tls={tls}: MDTM on first listing {after_first}, on second 0, after one change 1"
    );
}

#[tokio::test]
async fn vsftpd_plain_exact_times() {
    exact_times_on_a_list_only_server(false).await;
}

#[tokio::test]
async fn vsftpd_tls_exact_times() {
    exact_times_on_a_list_only_server(true).await;
}

/// A file rewritten with the same size within the same minute keeps its LIST line; its time
/// is not remembered while it is fresh, so the rewrite is still seen.
#[tokio::test]
async fn vsftpd_fresh_file_rewritten_in_the_same_minute_is_seen() {
    let t = Target {
        server: Server::Vsftpd,
        tls: false,
    };
    let (local, remote) = t.fresh_dir("fresh");
    let path = local.join("fresh.bin");
    // Early in a minute, so that +20 s stays in it (the LIST line stays the same).
    let base = now_secs() / 60 * 60 - 60 + 5;
    write(&path, b"0123456789");
    touch(&path, base);
    let fs = t.fs();
    let first = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(mtime_of(&first, "fresh.bin"), Some(base));
    write(&path, b"9876543210");
    touch(&path, base + 20);
    let second = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(mtime_of(&second, "fresh.bin"), Some(base + 20));
    assert_eq!(fs.mdtm_requests(), 2);
}

/// MLSD servers are unchanged: the `modify` fact, no MDTM.
#[tokio::test]
async fn proftpd_uses_mlsd_and_no_mdtm() {
    let t = Target {
        server: Server::Proftpd,
        tls: false,
    };
    let (local, remote) = t.fresh_dir("times");
    let old_secs = now_secs() - 240 * DAY + 11;
    write(&local.join("old.csv"), b"x");
    touch(&local.join("old.csv"), old_secs);
    let fs = t.fs();
    for _ in 0..2 {
        let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
        assert_eq!(mtime_of(&listing, "old.csv"), Some(old_secs));
    }
    assert_eq!(fs.mdtm_requests(), 0);
}

/// A fresh folder of a LIST-only server without pipelining (the default): every file is asked with `MDTM`,
/// over the listing's session and the pool's free ones at once, and each gets its exact time.
#[tokio::test]
async fn mdtm_of_a_fresh_folder_is_spread_over_free_sessions() {
    let t = Target {
        server: Server::Vsftpd,
        tls: false,
    };
    let (local, remote) = t.fresh_dir("spread");
    let base = now_secs() - 3600;
    for i in 0..100u64 {
        let path = local.join(format!("f{i:03}.csv"));
        write(&path, b"x\n");
        touch(&path, base + i);
    }
    let mut settings = t.settings();
    settings.max_sessions = 4;
    let fs = transfer_ftp::FtpFs::new(settings).unwrap();
    let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(listing.entries.len(), 100);
    assert_eq!(listing.skipped, 0);
    for i in 0..100u64 {
        assert_eq!(mtime_of(&listing, &format!("f{i:03}.csv")), Some(base + i));
    }
    assert_eq!(fs.mdtm_requests(), 100, "one MDTM per file");
    assert_eq!(
        fs.sessions_opened(),
        4,
        "the listing's session and three free ones"
    );
    // The extra sessions went back to the pool: a second listing asks nothing.
    let again = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(versions(&again), versions(&listing));
    assert_eq!(fs.mdtm_requests(), 100);
}

/// With pipelining (`pipelining = true`), a fresh folder's `MDTM`s go over the listing's session
/// alone, in batches: several batches here (more files than the window), every file gets its
/// own exact time (a reply given to the wrong file would show), and no other session is
/// taken from the pool, so handlers never wait for a listing's `MDTM`s.
#[tokio::test]
async fn pipelined_mdtm_gives_each_file_its_own_time_over_one_session() {
    let t = Target {
        server: Server::Vsftpd,
        tls: false,
    };
    let (local, remote) = t.fresh_dir("pipelined");
    let base = now_secs() - 7200;
    const FILES: u64 = 333;
    for i in 0..FILES {
        let path = local.join(format!("p{i:03} with space.csv"));
        write(&path, b"x\n");
        touch(&path, base + 7 * i);
    }
    let mut settings = t.settings();
    settings.max_sessions = 4;
    assert!(!settings.pipelining, "off by default");
    settings.pipelining = true;
    let fs = transfer_ftp::FtpFs::new(settings).unwrap();
    let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(listing.entries.len() as u64, FILES);
    assert_eq!(listing.skipped, 0);
    for i in 0..FILES {
        let name = format!("p{i:03} with space.csv");
        assert_eq!(mtime_of(&listing, &name), Some(base + 7 * i), "{name}");
    }
    assert_eq!(fs.mdtm_requests(), FILES);
    assert_eq!(fs.sessions_opened(), 1, "the listing's session alone");
    // The session is in step afterwards: it serves the next commands.
    let again = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(versions(&again), versions(&listing));
    assert_eq!(fs.mdtm_requests(), FILES, "remembered");
    let first = format!("{remote}/p000 with space.csv");
    assert_eq!(fs.size(&first).await.unwrap(), Some(2));
}
