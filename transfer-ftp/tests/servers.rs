//! Against the real servers of `scripts/setup/30-ftp.sh`: vsftpd (LIST) and proftpd (MLSD),
//! each plain and with explicit FTPS verified against the test CA.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Target, read_all, upload, write};
use coord_core::{EntryKind, FileReader, FsError, ListOptions, RemoteFs, RenameMode};
use transfer_ftp::{FtpFs, MoveCheck};

matrix!(
    list_read_and_recurse,
    empty_file_reads_as_nothing,
    upload_then_read_back,
    rename_both_modes,
    rename_with_the_listing_check,
    delete_and_mkdir_p,
    removed_between_list_and_read_is_not_found,
    permission_denied_file,
    hostile_names_are_skipped_not_fatal,
    one_session_is_reused_and_parallel_reads_work,
);

async fn list_read_and_recurse(t: Target) {
    let (local, remote) = t.fresh_dir("list");
    write(&local.join("a.txt"), b"hello ftp");
    write(&local.join("with space.csv"), b"x,y\n");
    std::fs::create_dir_all(local.join("sub/deeper")).unwrap();
    write(&local.join("sub/b.txt"), b"bb");
    write(&local.join("sub/deeper/c.txt"), b"ccc");
    let fs = t.fs();

    let top = fs.list(&remote, &ListOptions::default()).await.unwrap();
    let mut names: Vec<_> = top.entries.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a.txt", "sub", "with space.csv"]);
    assert_eq!(top.skipped, 0);
    let a = top.entries.iter().find(|e| e.name == "a.txt").unwrap();
    assert_eq!(a.path, format!("{remote}/a.txt"));
    assert_eq!((a.size, a.kind), (9, EntryKind::File));
    let mtime = a.mtime.expect("mtime");
    let age = std::time::SystemTime::now()
        .duration_since(mtime)
        .unwrap_or_default();
    assert!(age.as_secs() < 3600, "mtime {mtime:?} is not recent");
    // proftpd answers MLSD, vsftpd LIST plus MDTM: seconds either way.
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let on_disk = secs(
        std::fs::metadata(local.join("a.txt"))
            .unwrap()
            .modified()
            .unwrap(),
    );
    assert_eq!(secs(mtime), on_disk);
    let sub = top.entries.iter().find(|e| e.name == "sub").unwrap();
    assert_eq!(sub.kind, EntryKind::Dir);

    let deep = fs
        .list(&remote, &ListOptions { max_depth: 1 })
        .await
        .unwrap();
    let mut paths: Vec<_> = deep.entries.iter().map(|e| e.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            format!("{remote}/a.txt"),
            format!("{remote}/sub"),
            format!("{remote}/sub/b.txt"),
            format!("{remote}/sub/deeper"),
            format!("{remote}/with space.csv"),
        ]
    );
    let all = fs
        .list(&remote, &ListOptions { max_depth: 5 })
        .await
        .unwrap();
    assert!(
        all.entries
            .iter()
            .any(|e| e.path == format!("{remote}/sub/deeper/c.txt") && e.size == 3)
    );

    assert_eq!(
        read_all(&fs, &format!("{remote}/a.txt")).await.unwrap(),
        b"hello ftp"
    );
    assert_eq!(
        read_all(&fs, &format!("{remote}/with space.csv"))
            .await
            .unwrap(),
        b"x,y\n"
    );
    // A relative path resolves against the login directory (`/` here).
    let relative = remote.trim_start_matches('/').to_string() + "/sub/b.txt";
    assert_eq!(read_all(&fs, &relative).await.unwrap(), b"bb");

    let missing = fs
        .list(&format!("{remote}/nope"), &ListOptions::default())
        .await;
    assert!(
        matches!(missing, Err(FsError::NotFound { .. })),
        "{missing:?}"
    );
}

async fn empty_file_reads_as_nothing(t: Target) {
    let (local, remote) = t.fresh_dir("empty");
    write(&local.join("empty"), b"");
    let fs = t.fs();
    let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.entries[0].size, 0);
    let mut reader = fs.open_read(&format!("{remote}/empty")).await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(reader.read(&mut buf).await.unwrap(), 0);
    reader.finish().await.unwrap();
}

async fn upload_then_read_back(t: Target) {
    let (local, remote) = t.fresh_dir("upload");
    let fs = t.fs();
    // Binary content with CR/LF bytes must arrive unchanged (TYPE I).
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    upload(&fs, &format!("{remote}/up.bin"), &content)
        .await
        .unwrap();
    assert_eq!(std::fs::read(local.join("up.bin")).unwrap(), content);
    assert_eq!(
        read_all(&fs, &format!("{remote}/up.bin")).await.unwrap(),
        content
    );
    // Overwrite truncates.
    upload(&fs, &format!("{remote}/up.bin"), b"short")
        .await
        .unwrap();
    assert_eq!(std::fs::read(local.join("up.bin")).unwrap(), b"short");
    // Into a missing directory: an error, not a panic or a hang.
    let err = upload(&fs, &format!("{remote}/no/such/dir/f"), b"x").await;
    assert!(err.is_err(), "{err:?}");
}

async fn rename_both_modes(t: Target) {
    renames(t, t.fs()).await;
}

/// The same with `move_check = "listing"` (the target folder's names listed, no `SIZE`).
async fn rename_with_the_listing_check(t: Target) {
    let mut settings = t.settings();
    settings.move_check = MoveCheck::Listing;
    renames(t, FtpFs::new(settings).unwrap()).await;
}

async fn renames(t: Target, fs: FtpFs) {
    let (local, remote) = t.fresh_dir("rename");
    write(&local.join("src1"), b"one");
    write(&local.join("src2"), b"two");
    write(&local.join("taken"), b"old");
    let p = |n: &str| format!("{remote}/{n}");

    fs.rename(&p("src1"), &p("dst1"), RenameMode::NoOverwrite)
        .await
        .unwrap();
    assert_eq!(std::fs::read(local.join("dst1")).unwrap(), b"one");
    assert!(!local.join("src1").exists());

    let err = fs
        .rename(&p("src2"), &p("taken"), RenameMode::NoOverwrite)
        .await;
    assert!(
        matches!(err, Err(FsError::AlreadyExists { ref path, .. }) if *path == p("taken")),
        "{err:?}"
    );
    assert_eq!(std::fs::read(local.join("taken")).unwrap(), b"old");
    assert!(local.join("src2").exists());

    fs.rename(&p("src2"), &p("taken"), RenameMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(std::fs::read(local.join("taken")).unwrap(), b"two");

    let err = fs.rename(&p("ghost"), &p("x"), RenameMode::Overwrite).await;
    assert!(matches!(err, Err(FsError::NotFound { .. })), "{err:?}");
    let err = fs
        .rename(&p("ghost"), &p("x"), RenameMode::NoOverwrite)
        .await;
    assert!(matches!(err, Err(FsError::NotFound { .. })), "{err:?}");
    // The refused RNFR left nothing pending on the session: the next rename moves exactly
    // its own file (proftpd would rename a pending RNFR's file at the next RNTO).
    write(&local.join("src3"), b"three");
    fs.rename(&p("src3"), &p("dst3"), RenameMode::NoOverwrite)
        .await
        .unwrap();
    assert_eq!(std::fs::read(local.join("dst3")).unwrap(), b"three");
    assert!(!local.join("x").exists());
    assert!(local.join("taken").exists() && !local.join("src3").exists());
}

async fn delete_and_mkdir_p(t: Target) {
    let (local, remote) = t.fresh_dir("delete");
    write(&local.join("doomed"), b"x");
    let fs = t.fs();
    fs.delete(&format!("{remote}/doomed")).await.unwrap();
    assert!(!local.join("doomed").exists());
    let err = fs.delete(&format!("{remote}/doomed")).await;
    assert!(matches!(err, Err(FsError::NotFound { .. })), "{err:?}");

    let nested = format!("{remote}/a/b c/d");
    fs.create_dir_all(&nested).await.unwrap();
    assert!(local.join("a/b c/d").is_dir());
    // Existing directories are fine.
    fs.create_dir_all(&nested).await.unwrap();
    fs.create_dir_all(&format!("{remote}/a")).await.unwrap();
    let err = fs.create_dir_all(&format!("{remote}/a/../../etc")).await;
    assert!(matches!(err, Err(FsError::UnsafePath { .. })), "{err:?}");
}

async fn removed_between_list_and_read_is_not_found(t: Target) {
    let (local, remote) = t.fresh_dir("vanish");
    write(&local.join("fleeting"), b"now you see me");
    let fs = t.fs();
    let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
    let entry = &listing.entries[0];
    std::fs::remove_file(local.join("fleeting")).unwrap();
    let err = fs.open_read(&entry.path).await.map(|_| ());
    assert!(
        matches!(err, Err(FsError::NotFound { ref path, .. }) if *path == entry.path),
        "{err:?}"
    );
    // The session survives the refusal.
    fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(fs.sessions_opened(), 1);
}

async fn permission_denied_file(t: Target) {
    let (local, remote) = t.fresh_dir("denied");
    let secret = local.join("root-only");
    write(&secret, b"top secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fs = t.fs();
    let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(listing.entries.len(), 1, "listed even if unreadable");
    let err = fs
        .open_read(&format!("{remote}/root-only"))
        .await
        .map(|_| ());
    assert!(
        matches!(err, Err(FsError::PermissionDenied { .. })),
        "{err:?}"
    );
}

async fn hostile_names_are_skipped_not_fatal(t: Target) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let (local, remote) = t.fresh_dir("hostile");
    write(&local.join("before.txt"), b"1");
    write(&local.join("new\nline"), b"2");
    write(&local.join(OsStr::from_bytes(b"bad\xff\xfe.txt")), b"3");
    write(&local.join("esc\x1b[31m"), b"4");
    write(&local.join("-dash"), b"dash!");
    write(&local.join("after.txt"), b"5");
    let fs = t.fs();
    let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
    let mut names: Vec<_> = listing.entries.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["-dash", "after.txt", "before.txt"]);
    // new + line (2), non-UTF-8 (1), escape (1).
    assert!(listing.skipped >= 4, "skipped {}", listing.skipped);
    assert_eq!(
        read_all(&fs, &format!("{remote}/-dash")).await.unwrap(),
        b"dash!"
    );
    // A path with a line break never reaches the control connection.
    let err = fs
        .open_read(&format!("{remote}/x\r\nDELE after.txt"))
        .await
        .map(|_| ());
    assert!(matches!(err, Err(FsError::UnsafePath { .. })), "{err:?}");
    assert!(local.join("after.txt").exists());
}

async fn one_session_is_reused_and_parallel_reads_work(t: Target) {
    let (local, remote) = t.fresh_dir("pool");
    write(&local.join("a"), &vec![b'a'; 100_000]);
    write(&local.join("b"), &vec![b'b'; 100_000]);
    let fs = t.fs();
    for _ in 0..3 {
        fs.list(&remote, &ListOptions::default()).await.unwrap();
    }
    assert_eq!(
        read_all(&fs, &format!("{remote}/a")).await.unwrap().len(),
        100_000
    );
    assert_eq!(
        fs.sessions_opened(),
        1,
        "one session for sequential operations"
    );

    // Two reads at once take two sessions (max_sessions = 2).
    let mut ra = fs.open_read(&format!("{remote}/a")).await.unwrap();
    let mut rb = fs.open_read(&format!("{remote}/b")).await.unwrap();
    let mut buf = [0u8; 10];
    ra.read(&mut buf).await.unwrap();
    assert_eq!(buf[0], b'a');
    rb.read(&mut buf).await.unwrap();
    assert_eq!(buf[0], b'b');
    // Dropping a reader without finish aborts its transfer and closes its session.
    drop(ra);
    drop(rb);
    assert_eq!(fs.sessions_opened(), 2);
    let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(listing.entries.len(), 2);
}
