//! Timeouts, backoff and the session pool.

mod common;

use std::time::Duration;

use common::{Server, Target, write};
use coord_core::{FileReader, FsError, ListOptions, RemoteFs};
use transfer_ftp::{FtpFs, FtpSettings, Secret};

fn local_settings(port: u16) -> FtpSettings {
    let mut s = FtpSettings::new("127.0.0.1", port, "hatest");
    s.password = Some(Secret::new("unused"));
    s.connect_timeout = Duration::from_millis(300);
    s.reconnect_backoff_min = Duration::from_secs(20);
    s
}

#[tokio::test]
async fn silent_server_times_out_then_backs_off() {
    // Accepts TCP connections (the kernel does) but never sends a greeting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fs = FtpFs::new(local_settings(port)).unwrap();
    let err = fs.list("/", &ListOptions::default()).await.unwrap_err();
    assert!(
        matches!(err, FsError::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(err.is_transient());
    // Within the backoff window the next call does not touch the network.
    let again = fs.list("/", &ListOptions::default()).await.unwrap_err();
    assert!(
        matches!(&again, FsError::Connection { cause, .. } if cause.contains("not retried")),
        "{again:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn refused_connection_is_a_connection_error() {
    // Bind then drop: nothing listens on the port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fs = FtpFs::new(local_settings(port)).unwrap();
    let err = fs.list("/", &ListOptions::default()).await.unwrap_err();
    assert!(matches!(err, FsError::Connection { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_busy_single_session_makes_others_wait_then_time_out() {
    for server in [Server::Vsftpd, Server::Proftpd] {
        let t = Target { server, tls: false };
        let (local, remote) = t.fresh_dir("busy");
        write(&local.join("f"), &vec![7u8; 1_000_000]);
        let mut settings = t.settings();
        settings.max_sessions = 1;
        settings.op_timeout = Duration::from_millis(500);
        let fs = FtpFs::new(settings).unwrap();
        let mut reader = fs.open_read(&format!("{remote}/f")).await.unwrap();
        let mut buf = [0u8; 100];
        reader.read(&mut buf).await.unwrap();
        let err = fs.list(&remote, &ListOptions::default()).await.unwrap_err();
        assert!(
            matches!(&err, FsError::Timeout { path, .. } if path.contains("waiting for one of 1")),
            "{err:?}"
        );
        drop(reader);
        // The aborted transfer's session is gone; the next call gets a new one.
        let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
        assert_eq!(listing.entries.len(), 1);
        assert_eq!(fs.sessions_opened(), 2);
    }
}
