//! Implicit FTPS (`tls = "implicit"`) against the vsftpd instance on 127.0.0.1:2125 (TLS from
//! the first byte, the same served root as 2121), and `size` on every server.

mod common;

use std::time::Duration;

use common::{Server, Target, ftp_root, read_all, upload, write};
use coord_core::{FsError, ListOptions, RemoteFs, RenameMode};
use transfer_ftp::{FtpFs, FtpSettings, TlsMode};

const IMPLICIT_PORT: u16 = 2125;

fn implicit_settings() -> FtpSettings {
    let mut s = FtpSettings::new("127.0.0.1", IMPLICIT_PORT, "hatest");
    s.password_file = Some(ftp_root().join("password"));
    s.tls = TlsMode::Implicit;
    s.ca_file = Some(ftp_root().join("tls/ca.pem"));
    s.connect_timeout = Duration::from_secs(10);
    s.op_timeout = Duration::from_secs(20);
    s
}

#[tokio::test]
async fn implicit_ftps_lists_uploads_sizes_renames_and_reads() {
    // The implicit instance serves vsftpd's root: a directory made for 2121 is there too.
    let (local, remote) = Target {
        server: Server::Vsftpd,
        tls: false,
    }
    .fresh_dir("implicit");
    write(&local.join("seen.txt"), b"listed over TLS");
    let fs = FtpFs::new(implicit_settings()).unwrap();
    let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
    assert_eq!(
        listing
            .entries
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["seen.txt"]
    );
    let part = format!("{remote}/.up.csv.part");
    let target = format!("{remote}/up.csv");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    upload(&fs, &part, &content).await.unwrap();
    assert_eq!(fs.size(&part).await.unwrap(), Some(content.len() as u64));
    assert_eq!(fs.size(&target).await.unwrap(), None);
    fs.rename(&part, &target, RenameMode::NoOverwrite)
        .await
        .unwrap();
    assert_eq!(read_all(&fs, &target).await.unwrap(), content);
    assert_eq!(std::fs::read(local.join("up.csv")).unwrap(), content);
    assert!(!local.join(".up.csv.part").exists());
    assert_eq!(fs.sessions_opened(), 1, "one session, reused");
}

#[tokio::test]
async fn size_answers_on_both_servers_plain_and_explicit() {
    for server in [Server::Vsftpd, Server::Proftpd] {
        for tls in [false, true] {
            let t = Target { server, tls };
            let (local, remote) = t.fresh_dir("size");
            write(&local.join("five"), b"12345");
            write(&local.join("empty"), b"");
            std::fs::create_dir(local.join("sub")).unwrap();
            let fs = t.fs();
            assert_eq!(
                fs.size(&format!("{remote}/five")).await,
                Ok(Some(5)),
                "{t:?}"
            );
            assert_eq!(
                fs.size(&format!("{remote}/empty")).await,
                Ok(Some(0)),
                "{t:?}"
            );
            assert_eq!(
                fs.size(&format!("{remote}/missing")).await,
                Ok(None),
                "{t:?}"
            );
            // A directory is no file; servers answer SIZE on it like on a missing one, or
            // refuse it.
            assert!(
                !matches!(fs.size(&format!("{remote}/sub")).await, Ok(Some(_))),
                "{t:?}"
            );
        }
    }
}

#[tokio::test]
async fn implicit_against_a_plain_greeting_names_the_tls_key() {
    let mut s = implicit_settings();
    s.port = Server::Vsftpd.port();
    let fs = FtpFs::new(s).unwrap();
    let err = fs.list("/", &ListOptions::default()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, FsError::Connection { .. }) && text.contains("`tls = \"implicit\"`"),
        "{text}"
    );
}

#[tokio::test]
async fn explicit_against_an_implicit_server_names_the_tls_key() {
    let mut s = implicit_settings();
    s.tls = TlsMode::Explicit;
    s.connect_timeout = Duration::from_secs(2);
    let fs = FtpFs::new(s).unwrap();
    let err = fs.list("/", &ListOptions::default()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, FsError::Timeout { .. })
            && text.contains("no greeting")
            && text.contains("`tls = \"implicit\"`"),
        "{text}"
    );
}

#[test]
fn implicit_defaults_to_port_990() {
    let parse = |toml: &str| -> FtpSettings {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(toml))
            .extract()
            .unwrap()
    };
    let s = parse("host = \"h\"\nuser = \"u\"\ntls = \"implicit\"");
    assert_eq!((s.port(), s.server()), (990, "h:990".to_string()));
    let s = parse("host = \"h\"\nuser = \"u\"");
    assert_eq!(s.port(), 21);
    let s = parse("host = \"h\"\nuser = \"u\"\ntls = \"implicit\"\nport = 2990");
    assert_eq!(s.port(), 2990);
    let err = figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(
            "host = \"h\"\nuser = \"u\"\ntls = \"implict\"",
        ),
    )
    .extract::<FtpSettings>()
    .unwrap_err()
    .to_string();
    assert!(err.contains("implicit") && err.contains("implict"), "{err}");
}
