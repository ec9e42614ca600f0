//! `FtpSettings` from TOML through figment, as the listener loads it.

use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use transfer_ftp::{FtpFs, FtpSettings, MoveCheck, PassiveMode, TlsMode};

fn load(toml: &str) -> Result<FtpSettings, Box<figment::Error>> {
    Figment::from(Toml::string(toml))
        .extract()
        .map_err(Box::new)
}

#[test]
fn full_settings_parse_and_defaults_apply() {
    let s = load(
        r#"
        host = "ftp.example.com"
        user = "loader"
        password = "s3cr3t-value"
        tls = "explicit"
        ca_file = "/etc/ssl/ca.pem"
        passive_mode = "pasv"
        op_timeout = "5s"
        connect_timeout = "1500ms"
        max_sessions = 4
        pipelining = true
        move_check = "listing"
        "#,
    )
    .unwrap();
    assert!(s.pipelining);
    assert_eq!(s.move_check, MoveCheck::Listing);
    assert_eq!(s.port(), 21);
    assert_eq!(s.tls, TlsMode::Explicit);
    assert_eq!(s.passive_mode, PassiveMode::Pasv);
    assert_eq!(s.op_timeout, Duration::from_secs(5));
    assert_eq!(s.connect_timeout, Duration::from_millis(1500));
    assert_eq!(s.reconnect_backoff_max, Duration::from_secs(30));
    assert_eq!(s.max_sessions, 4);
    assert_eq!(s.resolve_password().unwrap().expose(), "s3cr3t-value");
    let debug = format!("{s:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");

    let minimal = load("host = \"h\"\nuser = \"u\"\npassword_env = \"FTP_PW\"").unwrap();
    assert_eq!(minimal.tls, TlsMode::None);
    assert_eq!(minimal.passive_mode, PassiveMode::Epsv);
    assert_eq!(minimal.op_timeout, Duration::from_secs(30));
    assert!(!minimal.pipelining, "pipelining is off by default");
    assert_eq!(
        minimal.move_check,
        MoveCheck::Size,
        "SIZE before each move by default"
    );
}

#[test]
fn bad_values_name_the_field() {
    let err = load("host = \"h\"\nuser = \"u\"\nop_timeout = \"soon\"").unwrap_err();
    assert!(err.to_string().contains("op_timeout"), "{err}");
    let err = load("host = \"h\"\nuser = \"u\"\ntls = \"ssl\"").unwrap_err();
    assert!(err.to_string().contains("tls"), "{err}");
    let implicit = load("host = \"h\"\nuser = \"u\"\ntls = \"implicit\"").unwrap();
    assert_eq!((implicit.tls, implicit.port()), (TlsMode::Implicit, 990));
    let err = load("host = \"h\"\nuser = \"u\"\npasword = \"typo\"").unwrap_err();
    assert!(err.to_string().contains("pasword"), "{err}");
    // No password source at all: refused when the file system is built.
    let s = load("host = \"h\"\nuser = \"u\"").unwrap();
    assert_eq!(FtpFs::new(s).unwrap_err().field, "password");
}

#[test]
fn file_system_debug_redacts_the_password() {
    let s = load("host = \"h\"\nuser = \"u\"\npassword = \"hunter2-in-debug\"").unwrap();
    let fs = FtpFs::new(s).unwrap();
    let debug = format!("{fs:?}");
    assert!(debug.contains("FtpFs"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
}
