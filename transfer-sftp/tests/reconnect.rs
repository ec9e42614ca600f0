//! The server restarted mid-session: calls fail with a connection error while it is down,
//! then the next call reconnects. Uses a private sshd (same config, port 2223) so that the
//! shared one on 2222 stays up for the other tests.

mod common;

use common::*;
use coord_core::{FileReader, FsError, ListOptions, RemoteFs};
use transfer_sftp::SftpFs;

const PRIVATE_PORT: u16 = 2223;

#[tokio::test]
async fn server_restart_mid_session_then_reconnect() {
    let root = root();
    let sshd = PrivateSshd::start(&root, PRIVATE_PORT);
    let mut s = settings(password_auth(PASSWORD));
    s.port = PRIVATE_PORT;
    s.known_hosts = private_known_hosts(&root, PRIVATE_PORT);
    s.max_sessions = 2;
    let fs = SftpFs::new(s).unwrap();

    let dir = fresh_dir("reconnect");
    upload(&fs, &format!("{dir}/big"), &vec![7u8; 4 * 1024 * 1024]).await;
    upload(&fs, &format!("{dir}/small"), b"small").await;
    assert_eq!(
        fs.list(&dir, &ListOptions::default())
            .await
            .unwrap()
            .entries
            .len(),
        2
    );

    // A read in progress when the server dies.
    let mut reader = fs.open_read(&format!("{dir}/big")).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    // The reader's first window is small (see src/io.rs): any bytes mean it is under way.
    assert!(reader.read(&mut buf).await.unwrap() > 0);

    sshd.kill();

    let err = loop {
        match reader.read(&mut buf).await {
            Ok(0) => panic!("read reached the end although the server died"),
            Ok(_) => continue, // bytes already buffered before the kill
            Err(e) => break e,
        }
    };
    assert!(err.is_transient(), "{err:?}");
    drop(reader);

    // The idle session is broken too; while the server is down, connects are refused.
    let err = fs.list(&dir, &ListOptions::default()).await.unwrap_err();
    assert!(matches!(err, FsError::Connection { .. }), "{err:?}");
    let err = fs.list(&dir, &ListOptions::default()).await.unwrap_err();
    assert!(matches!(err, FsError::Connection { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:2223"), "{err}");

    let _sshd = PrivateSshd::start(&root, PRIVATE_PORT);
    let listing = fs.list(&dir, &ListOptions::default()).await.unwrap();
    assert_eq!(listing.entries.len(), 2);
    assert_eq!(
        read_all(&fs, &format!("{dir}/small")).await.unwrap(),
        b"small"
    );
}

/// Port of the stale-session test's private sshd.
const STALE_PORT: u16 = 2225;

#[tokio::test]
async fn dead_idle_session_is_replaced_for_idempotent_calls_only() {
    let root = root();
    let sshd = PrivateSshd::start(&root, STALE_PORT);
    let mut s = settings(password_auth(PASSWORD));
    s.port = STALE_PORT;
    s.known_hosts = private_known_hosts(&root, STALE_PORT);
    let fs = SftpFs::new(s).unwrap();
    let dir = fresh_dir("stale");
    upload(&fs, &format!("{dir}/a"), b"a").await;

    // The server drops our idle session (its session processes die; the listener lives).
    let kill_sessions = || {
        let sessions: Vec<u32> = sshd.processes().into_iter().skip(1).collect();
        assert!(
            !sessions.is_empty(),
            "no session process under the private sshd"
        );
        signal(&sessions, "-9");
    };
    kill_sessions();
    // Listing is idempotent: retried once on a new session, the caller sees no error.
    assert_eq!(
        fs.list(&dir, &ListOptions::default())
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
    assert_eq!(read_all(&fs, &format!("{dir}/a")).await.unwrap(), b"a");

    kill_sessions();
    // A rename may have happened before the connection broke: reported, not replayed.
    let err = fs
        .rename(
            &format!("{dir}/a"),
            &format!("{dir}/b"),
            coord_core::RenameMode::NoOverwrite,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::Connection { .. }), "{err:?}");
    // ... and the next call reconnects.
    fs.rename(
        &format!("{dir}/a"),
        &format!("{dir}/b"),
        coord_core::RenameMode::NoOverwrite,
    )
    .await
    .unwrap();
}
