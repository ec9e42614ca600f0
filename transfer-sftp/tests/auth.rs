//! Authentication and host key trust against the real OpenSSH server.

mod common;

use common::*;
use coord_core::{FsError, ListOptions, RemoteFs};
use transfer_sftp::{AuthSettings, HostKeyPolicy, Secret, SecretSource, SftpFs, SftpSettings};

async fn check(settings: SftpSettings) -> Result<(), FsError> {
    let fs = SftpFs::new(settings).unwrap();
    fs.check().await?;
    // And the session really works.
    fs.list(".", &ListOptions::default()).await.map(|_| ())
}

#[tokio::test]
async fn password_login() {
    check(settings(password_auth(PASSWORD))).await.unwrap();
}

#[tokio::test]
async fn every_key_type_with_and_without_passphrase() {
    for key_type in ["ed25519", "ecdsa", "rsa"] {
        for with_passphrase in [false, true] {
            let result = check(settings(key_auth(key_type, with_passphrase))).await;
            assert!(
                result.is_ok(),
                "{key_type} passphrase={with_passphrase}: {result:?}"
            );
        }
    }
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_password() {
    let err = check(settings(password_auth("not-the-password-42")))
        .await
        .unwrap_err();
    assert!(matches!(err, FsError::Auth { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains(USER), "{text}");
    assert!(
        !text.contains("not-the-password-42"),
        "secret leaked: {text}"
    );
}

#[tokio::test]
async fn wrong_or_missing_passphrase_is_an_auth_error() {
    let wrong = AuthSettings::Key {
        key_file: root().join("client/id_ed25519_pass"),
        passphrase: Some(SecretSource::Value(Secret::new("wrong-passphrase-17"))),
    };
    let err = check(settings(wrong)).await.unwrap_err();
    assert!(matches!(err, FsError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wrong-passphrase-17"));

    let missing = AuthSettings::Key {
        key_file: root().join("client/id_rsa_pass"),
        passphrase: None,
    };
    let err = check(settings(missing)).await.unwrap_err();
    assert!(matches!(err, FsError::Auth { .. }), "{err:?}");

    let no_file = AuthSettings::Key {
        key_file: root().join("client/no-such-key"),
        passphrase: None,
    };
    let err = check(settings(no_file)).await.unwrap_err();
    assert!(matches!(err, FsError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-key"), "{err}");
}

const PASSPHRASE_VAR: &str = "TRANSFER_SFTP_TEST_PASSPHRASE";

/// Secrets from the environment and from a file. `std::env::set_var` is unsafe (and unsafe
/// code is forbidden here), so the test re-runs itself in a child process with the variable
/// set.
#[tokio::test]
async fn passphrase_from_env_and_password_from_file() {
    if std::env::var_os(PASSPHRASE_VAR).is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "passphrase_from_env_and_password_from_file",
                "--exact",
                "--nocapture",
            ])
            .env(PASSPHRASE_VAR, PASSPHRASE)
            .status()
            .unwrap();
        assert!(status.success(), "child run failed: {status}");
        return;
    }
    let auth = AuthSettings::Key {
        key_file: root().join("client/id_ecdsa_pass"),
        passphrase: Some(SecretSource::Env {
            env: PASSPHRASE_VAR.into(),
        }),
    };
    check(settings(auth)).await.unwrap();
    let auth = AuthSettings::Password {
        password: SecretSource::File {
            file: root().join("password"),
        },
    };
    check(settings(auth)).await.unwrap();
    // A missing variable is a settings error that names it, before any connect.
    let auth = AuthSettings::Password {
        password: SecretSource::Env {
            env: "TRANSFER_SFTP_NO_SUCH_VAR".into(),
        },
    };
    let err = SftpFs::new(settings(auth)).unwrap_err();
    assert!(
        err.to_string().contains("TRANSFER_SFTP_NO_SUCH_VAR"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_host_is_refused_then_accept_new_records_it() {
    let dir = std::env::temp_dir().join(format!("sftp-kh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let known_hosts = dir.join("known_hosts");
    let _ = std::fs::remove_file(&known_hosts);

    let mut s = settings(password_auth(PASSWORD));
    s.known_hosts = known_hosts.clone();
    let err = check(s.clone()).await.unwrap_err();
    let FsError::Trust { server, cause } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(server, "127.0.0.1:2222");
    assert!(cause.contains("unknown host key"), "{cause}");
    assert!(cause.contains("SHA256:"), "fingerprint missing: {cause}");
    assert!(
        cause.contains("ssh-") || cause.contains("ecdsa-"),
        "key type missing: {cause}"
    );
    assert!(
        !known_hosts.exists(),
        "strict mode must not write known_hosts"
    );

    s.host_key_policy = HostKeyPolicy::AcceptNew;
    check(s.clone()).await.unwrap();
    let written = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(written.starts_with("[127.0.0.1]:2222 "), "{written}");
    assert_eq!(written.lines().count(), 1);
    // The recorded key is one of the server's real keys.
    let real = std::fs::read_to_string(root().join("known_hosts")).unwrap();
    assert!(
        real.lines().any(|l| l == written.trim_end()),
        "{written} not in {real}"
    );

    // Now strict mode accepts it, and accept_new does not add it twice.
    s.host_key_policy = HostKeyPolicy::Strict;
    check(s.clone()).await.unwrap();
    s.host_key_policy = HostKeyPolicy::AcceptNew;
    check(s).await.unwrap();
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), written);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn mismatching_host_key_is_refused_even_with_accept_new() {
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let mut s = settings(password_auth(PASSWORD));
        s.known_hosts = root().join("known_hosts_mismatch");
        s.host_key_policy = policy;
        let before = std::fs::read_to_string(&s.known_hosts).unwrap();
        let err = check(s.clone()).await.unwrap_err();
        let FsError::Trust { server, cause } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(server, "127.0.0.1:2222");
        assert!(cause.contains("mismatch"), "{cause}");
        assert!(cause.contains("SHA256:"), "{cause}");
        assert!(cause.contains("known_hosts_mismatch"), "{cause}");
        assert_eq!(std::fs::read_to_string(&s.known_hosts).unwrap(), before);
    }
}

#[tokio::test]
async fn unreachable_port_is_a_connection_error() {
    let mut s = settings(password_auth(PASSWORD));
    s.port = 1; // nothing listens there
    let err = check(s).await.unwrap_err();
    assert!(matches!(err, FsError::Connection { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[test]
fn debug_never_shows_secrets() {
    let mut s = settings(password_auth("hunter2-password"));
    let text = format!("{s:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("redacted"), "{text}");
    s.auth = AuthSettings::Key {
        key_file: "/k".into(),
        passphrase: Some(SecretSource::Value(Secret::new("hunter3-passphrase"))),
    };
    let fs = SftpFs::new(s).unwrap();
    let text = format!("{fs:?}");
    assert!(!text.contains("hunter3"), "{text}");
    assert!(text.contains("/k"), "{text}");
    assert_eq!(Secret::new("x").to_string(), "<redacted>");
}

#[test]
fn settings_from_toml_with_defaults() {
    let text = r#"
        host = "sftp.example.org"
        user = "ingest"
        known_hosts = "/etc/kh"
        host_key_policy = "accept_new"
        operation_timeout = "45s"
        connect_timeout = "500ms"
        auth = { method = "key", key_file = "/keys/id_ed25519", passphrase = { env = "PP" } }
    "#;
    let s: SftpSettings = toml::from_str(text).unwrap();
    assert_eq!(s.port, 22);
    assert_eq!(s.max_sessions, 4);
    assert_eq!(s.host_key_policy, HostKeyPolicy::AcceptNew);
    assert_eq!(s.operation_timeout, std::time::Duration::from_secs(45));
    assert_eq!(s.connect_timeout, std::time::Duration::from_millis(500));
    assert!(matches!(
        s.auth,
        AuthSettings::Key {
            passphrase: Some(SecretSource::Env { .. }),
            ..
        }
    ));

    let s: SftpSettings = toml::from_str(
        r#"host = "h"
           user = "u"
           known_hosts = "/kh"
           auth = { method = "password", password = "plain" }"#,
    )
    .unwrap();
    assert!(!format!("{s:?}").contains("plain"));

    let err = toml::from_str::<SftpSettings>(
        r#"host = "h"
           user = "u"
           known_hosts = "/kh"
           operation_timeout = "soon"
           auth = { method = "password", password = "p" }"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("soon"), "{err}");
    let err = toml::from_str::<SftpSettings>(r#"host = "h""#).unwrap_err();
    assert!(err.to_string().contains("user"), "{err}");
}
