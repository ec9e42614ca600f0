//! Every call is bounded: a server that accepts TCP but never speaks SSH, and a session whose
//! server process is frozen, both end in `FsError::Timeout`, never a hang.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;
use coord_core::{FsError, ListOptions, RemoteFs};
use transfer_sftp::SftpFs;

#[tokio::test]
async fn silent_server_times_out_the_handshake() {
    // Accepts connections (the kernel completes the TCP handshake) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut s = settings(password_auth(PASSWORD));
    s.port = port;
    s.operation_timeout = Duration::from_millis(300);
    let fs = SftpFs::new(s).unwrap();

    let err = fs.list(".", &ListOptions::default()).await.unwrap_err();
    let FsError::Timeout { after, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*after, Duration::from_millis(300));
    assert!(err.is_transient());
    drop(silent);
}

/// Port of this test's private sshd (the reconnect test uses 2223).
const FROZEN_PORT: u16 = 2224;

#[tokio::test]
async fn frozen_session_times_out_then_reconnects() {
    let root = root();
    let sshd = PrivateSshd::start(&root, FROZEN_PORT);
    let mut s = settings(password_auth(PASSWORD));
    s.port = FROZEN_PORT;
    s.known_hosts = private_known_hosts(&root, FROZEN_PORT);
    s.operation_timeout = Duration::from_millis(500);
    let fs = SftpFs::new(s).unwrap();
    let dir = fresh_dir("frozen");
    upload(&fs, &format!("{dir}/f"), b"f").await;

    // Freeze the session's server processes (not the listener: new connections still work).
    let sessions: Vec<u32> = sshd.processes().into_iter().skip(1).collect();
    assert!(
        !sessions.is_empty(),
        "no session process under the private sshd"
    );
    signal(&sessions, "-STOP");
    let result = fs.list(&dir, &ListOptions::default()).await;
    signal(&sessions, "-CONT");
    let err = result.unwrap_err();
    let FsError::Timeout { after, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*after, Duration::from_millis(500));

    // The timed-out session was dropped; the next call opens a new one.
    assert_eq!(
        fs.list(&dir, &ListOptions::default())
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
}
