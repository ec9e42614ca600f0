//! File operations against the real OpenSSH server.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use common::*;
use coord_core::{EntryKind, FsError, ListOptions, RemoteFs, RenameMode};

fn names(listing: &coord_core::Listing) -> Vec<String> {
    let mut v: Vec<String> = listing.entries.iter().map(|e| e.path.clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn list_reports_path_size_mtime_kind() {
    let fs = password_fs();
    let dir = fresh_dir("list");
    upload(&fs, &format!("{dir}/a.txt"), b"hello").await;
    fs.create_dir_all(&format!("{dir}/sub")).await.unwrap();
    upload(&fs, &format!("{dir}/sub/inner.txt"), b"x").await;

    let listing = fs.list(&dir, &ListOptions::default()).await.unwrap();
    assert_eq!(
        names(&listing),
        vec![format!("{dir}/a.txt"), format!("{dir}/sub")]
    );
    assert_eq!(listing.skipped, 0);
    let a = listing.entries.iter().find(|e| e.name == "a.txt").unwrap();
    assert_eq!(a.size, 5);
    assert_eq!(a.kind, EntryKind::File);
    let age = SystemTime::now()
        .duration_since(a.mtime.unwrap())
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(600),
        "mtime {:?} is not recent",
        a.mtime
    );
    let sub = listing.entries.iter().find(|e| e.name == "sub").unwrap();
    assert_eq!(sub.kind, EntryKind::Dir);

    // A symlink is reported as such, not followed.
    std::os::unix::fs::symlink("sub", home().join(&dir).join("link")).unwrap();
    let listing = fs.list(&dir, &ListOptions { max_depth: 5 }).await.unwrap();
    let link = listing.entries.iter().find(|e| e.name == "link").unwrap();
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(listing.entries.len(), 4, "{:?}", names(&listing));
}

#[tokio::test]
async fn recursive_list_honours_max_depth() {
    let fs = password_fs();
    let dir = fresh_dir("recursive");
    fs.create_dir_all(&format!("{dir}/l1/l2/l3")).await.unwrap();
    upload(&fs, &format!("{dir}/top"), b"0").await;
    upload(&fs, &format!("{dir}/l1/f1"), b"1").await;
    upload(&fs, &format!("{dir}/l1/l2/f2"), b"22").await;
    upload(&fs, &format!("{dir}/l1/l2/l3/f3"), b"333").await;

    let depth1 = fs.list(&dir, &ListOptions { max_depth: 1 }).await.unwrap();
    assert_eq!(
        names(&depth1),
        vec![
            format!("{dir}/l1"),
            format!("{dir}/l1/f1"),
            format!("{dir}/l1/l2"),
            format!("{dir}/top")
        ]
    );
    let all = fs.list(&dir, &ListOptions { max_depth: 10 }).await.unwrap();
    assert_eq!(all.entries.len(), 7, "{:?}", names(&all));
    let f3 = all.entries.iter().find(|e| e.name == "f3").unwrap();
    assert_eq!(
        (f3.path.as_str(), f3.size),
        (format!("{dir}/l1/l2/l3/f3").as_str(), 3)
    );
}

#[tokio::test]
async fn upload_then_read_round_trips_large_and_empty_files() {
    let fs = password_fs();
    let dir = fresh_dir("readwrite");
    // 3 MiB + a bit: several chunks, a partial last one.
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 12345u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let path = format!("{dir}/big.bin");
    upload(&fs, &path, &data).await;
    assert_eq!(
        std::fs::metadata(home().join(&path)).unwrap().len(),
        data.len() as u64
    );
    assert!(
        read_all(&fs, &path).await.unwrap() == data,
        "content differs"
    );

    let empty = format!("{dir}/empty");
    upload(&fs, &empty, b"").await;
    assert_eq!(read_all(&fs, &empty).await.unwrap(), b"");
    let listing = fs.list(&dir, &ListOptions::default()).await.unwrap();
    let e = listing.entries.iter().find(|e| e.name == "empty").unwrap();
    assert_eq!(e.size, 0);

    // Uploading again truncates.
    upload(&fs, &path, b"short").await;
    assert_eq!(read_all(&fs, &path).await.unwrap(), b"short");
}

#[tokio::test]
async fn rename_overwrite_and_no_overwrite() {
    let fs = password_fs();
    let dir = fresh_dir("rename");
    let (a, b, c) = (format!("{dir}/a"), format!("{dir}/b"), format!("{dir}/c"));
    upload(&fs, &a, b"A").await;
    upload(&fs, &b, b"B").await;

    let err = fs
        .rename(&a, &b, RenameMode::NoOverwrite)
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(read_all(&fs, &a).await.unwrap(), b"A", "source kept");
    assert_eq!(read_all(&fs, &b).await.unwrap(), b"B", "target untouched");

    fs.rename(&a, &c, RenameMode::NoOverwrite).await.unwrap();
    assert_eq!(read_all(&fs, &c).await.unwrap(), b"A");
    assert!(matches!(
        read_all(&fs, &a).await,
        Err(FsError::NotFound { .. })
    ));

    fs.rename(&c, &b, RenameMode::Overwrite).await.unwrap();
    assert_eq!(read_all(&fs, &b).await.unwrap(), b"A");
    assert!(matches!(
        read_all(&fs, &c).await,
        Err(FsError::NotFound { .. })
    ));

    // Overwrite onto a free name works too; a missing source is NotFound.
    fs.rename(&b, &a, RenameMode::Overwrite).await.unwrap();
    let err = fs.rename(&b, &c, RenameMode::Overwrite).await.unwrap_err();
    assert!(matches!(err, FsError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn delete_and_mkdir_p() {
    let fs = password_fs();
    let dir = fresh_dir("delete");
    let deep = format!("{dir}/x/y/z");
    fs.create_dir_all(&deep).await.unwrap();
    fs.create_dir_all(&deep).await.unwrap(); // existing is fine
    assert!(home().join(&deep).is_dir());
    let file = format!("{deep}/f");
    upload(&fs, &file, b"f").await;
    // A file in the way of mkdir -p is an error that names it.
    let err = fs
        .create_dir_all(&format!("{file}/below"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");

    fs.delete(&file).await.unwrap();
    assert!(!home().join(&file).exists());
    let err = fs.delete(&file).await.unwrap_err();
    assert!(matches!(err, FsError::NotFound { .. }), "{err:?}");
    let err = fs
        .create_dir_all(&format!("{dir}/../escape"))
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::UnsafePath { .. }), "{err:?}");
}

#[tokio::test]
async fn file_removed_between_list_and_read_is_not_found() {
    let fs = password_fs();
    let dir = fresh_dir("vanish");
    let path = format!("{dir}/gone");
    upload(&fs, &path, b"soon gone").await;
    let listing = fs.list(&dir, &ListOptions::default()).await.unwrap();
    assert_eq!(listing.entries.len(), 1);
    std::fs::remove_file(home().join(&path)).unwrap();
    let err = fs.open_read(&listing.entries[0].path).await.unwrap_err();
    assert!(matches!(err, FsError::NotFound { .. }), "{err:?}");
    // The session survived: the next call works.
    assert!(
        fs.list(&dir, &ListOptions::default())
            .await
            .unwrap()
            .entries
            .is_empty()
    );
}

#[tokio::test]
async fn permission_denied_file() {
    let fs = password_fs();
    let dir = fresh_dir("denied");
    // Owned by root, mode 0600: the test user may list it but not read or delete it... the
    // directory is the user's, so protect it with a root-owned subdirectory.
    let locked = home().join(&dir).join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join("secret"), b"no").unwrap();
    std::fs::set_permissions(
        locked.join("secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();

    let path = format!("{dir}/locked/secret");
    let err = fs.open_read(&path).await.unwrap_err();
    assert!(matches!(err, FsError::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("permission denied"), "{err}");
    let err = fs.delete(&path).await.unwrap_err();
    assert!(matches!(err, FsError::PermissionDenied { .. }), "{err:?}");
    let err = fs
        .open_write(&format!("{dir}/locked/new"))
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::PermissionDenied { .. }), "{err:?}");
    // The listing still sees it.
    let listing = fs
        .list(&format!("{dir}/locked"), &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(listing.entries[0].name, "secret");
}

#[tokio::test]
async fn hostile_names_are_skipped_not_fatal() {
    let fs = password_fs();
    let dir = fresh_dir("hostile");
    let local = home().join(&dir);
    for raw in [&b"new\nline"[..], b"bad\xffutf8", b"esc\x1b[31m", b"ok.txt"] {
        let p = local.join(std::ffi::OsStr::from_bytes(raw));
        std::fs::write(&p, b"x").unwrap();
        chown_to_user(&p);
    }
    // A hostile directory name is skipped with its whole subtree.
    let bad_dir = local.join(std::ffi::OsStr::from_bytes(b"dir\r"));
    std::fs::create_dir(&bad_dir).unwrap();
    std::fs::write(bad_dir.join("inside"), b"x").unwrap();

    let listing = fs.list(&dir, &ListOptions { max_depth: 3 }).await.unwrap();
    assert_eq!(names(&listing), vec![format!("{dir}/ok.txt")]);
    assert_eq!(listing.skipped, 4);
}

#[tokio::test]
async fn listing_a_missing_directory_is_not_found() {
    let fs = password_fs();
    let err = fs
        .list("t-no-such-dir/at-all", &ListOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn hundred_thousand_entries() {
    const N: usize = 100_000;
    let fs = password_fs();
    // Built once and kept (creating 100k files takes a while on a shared machine).
    let local = home().join("t-100k");
    let marker = local.join("file-099999");
    if !marker.exists() {
        std::fs::create_dir_all(&local).unwrap();
        for i in 0..N {
            std::fs::File::create(local.join(format!("file-{i:06}"))).unwrap();
        }
    }
    let started = std::time::Instant::now();
    let listing = fs.list("t-100k", &ListOptions::default()).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(listing.entries.len(), N);
    assert_eq!(listing.skipped, 0);
    assert!(
        listing
            .entries
            .iter()
            .all(|e| e.kind == EntryKind::File && e.size == 0)
    );
    eprintln!("listed {N} entries in {elapsed:?}");
}

#[tokio::test]
async fn parallel_reads_share_a_bounded_pool() {
    let fs = password_fs(); // max_sessions = 2
    let dir = fresh_dir("parallel");
    for i in 0..6 {
        upload(
            &fs,
            &format!("{dir}/f{i}"),
            format!("content {i}").as_bytes(),
        )
        .await;
    }
    let mut tasks = Vec::new();
    for i in 0..6 {
        let fs = fs.clone();
        let path = format!("{dir}/f{i}");
        tasks.push(tokio::spawn(async move { read_all(&fs, &path).await }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), format!("content {i}").as_bytes());
    }
}

#[tokio::test]
async fn size_of_a_file_an_empty_file_a_folder_and_nothing() {
    let fs = password_fs();
    let dir = fresh_dir("size");
    upload(&fs, &format!("{dir}/five"), b"12345").await;
    upload(&fs, &format!("{dir}/empty"), b"").await;
    fs.create_dir_all(&format!("{dir}/sub")).await.unwrap();
    assert_eq!(fs.size(&format!("{dir}/five")).await, Ok(Some(5)));
    assert_eq!(fs.size(&format!("{dir}/empty")).await, Ok(Some(0)));
    assert_eq!(fs.size(&format!("{dir}/missing")).await, Ok(None));
    assert!(matches!(
        fs.size(&format!("{dir}/sub")).await,
        Err(FsError::Other { .. })
    ));
}
