//! Secrets never reach a log line: every event of failed and successful logins is captured
//! (at TRACE) and searched for the password and passphrase.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use coord_core::{FsError, ListOptions, RemoteFs};
use transfer_sftp::{AuthSettings, Secret, SecretSource, SftpFs};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_in_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Global (this test binary runs alone in its process under nextest): the blocking threads
    // log too.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let wrong = SftpFs::new(settings(password_auth("leaky-password-1"))).unwrap();
    let err = wrong.list(".", &ListOptions::default()).await.unwrap_err();
    assert!(matches!(err, FsError::Auth { .. }), "{err:?}");

    let bad_passphrase = AuthSettings::Key {
        key_file: root().join("client/id_rsa_pass"),
        passphrase: Some(SecretSource::Value(Secret::new("leaky-passphrase-2"))),
    };
    let err = SftpFs::new(settings(bad_passphrase))
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::Auth { .. }), "{err:?}");

    let good = password_fs();
    good.list(".", &ListOptions::default()).await.unwrap();
    tracing::info!(fs = ?good, "debug output of a configured source");

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("sftp connect failed"),
        "nothing captured: {text}"
    );
    assert!(
        text.contains("debug output of a configured source"),
        "{text}"
    );
    for secret in [
        "leaky-password-1",
        "leaky-passphrase-2",
        PASSWORD,
        PASSPHRASE,
    ] {
        assert!(
            !text.contains(secret),
            "`{secret}` leaked into the logs:\n{text}"
        );
    }
}
