// figment's Jail closures return figment's own (large) error type.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::time::Duration;

use figment::Jail;

use crate::config::{Backend, Config, SourceKind};

/// The seeds' listener record (seed 002's usage example, with seed 001's fields), in TOML.
const SEED: &str = r#"
protocol = "ftp"
host = "ftp.example.com"
port = 21
path = "/incoming"
pollingInterval = 30
fileNamePattern = '.*\.csv'

[auth.credentials]
username = "user"
password = "pass"

[coordination]
memberId = "member-1"
coordinationGroup = "incoming-files-group"
heartbeatFrequency = 1
livenessCheckInterval = 30

[coordination.databaseConfig]
host = "db.example.com"
port = 5432
user = "coordinator"
password = "secret"
database = "ftp_coordination"
"#;

fn load_err(file: &str) -> String {
    Config::load(Some(Path::new(file))).unwrap_err().to_string()
}

/// `SEED` with each `(from, to)` replacement applied and `extra` added: at the top when it
/// is a top-level key, at the end when it opens a table.
fn seed_with(edits: &[(&str, &str)], extra: &str) -> String {
    let mut text = SEED.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replacen(from, to, 1);
    }
    if extra.starts_with('[') {
        format!("{text}\n{extra}\n")
    } else {
        format!("{extra}\n{text}")
    }
}

#[cfg(all(feature = "ftp", feature = "postgres"))]
#[test]
fn the_seed_record_maps_onto_our_keys() {
    Jail::expect_with(|jail| {
        jail.create_file("seed.toml", SEED)?;
        let c = Config::load(Some(Path::new("seed.toml"))).unwrap();
        assert_eq!(c.member_id, "member-1");
        assert_eq!(c.group, "incoming-files-group");
        assert_eq!(c.source.kind, SourceKind::Ftp);
        assert_eq!(c.source.path, "/incoming");
        assert_eq!(c.done_dir.as_deref(), Some("/incoming/.done"));
        assert_eq!(c.poll_interval, Duration::from_secs(30));
        assert_eq!(c.file_name_pattern.as_deref(), Some(r".*\.csv"));
        assert_eq!(c.filter, "*");
        let co = &c.coordination;
        assert_eq!(co.backend, Backend::Postgres);
        assert_eq!(co.heartbeat_interval, Some(Duration::from_secs(1)));
        assert_eq!(co.liveness_timeout, Some(Duration::from_secs(30)));
        assert_eq!(co.renew_deadline, Some(Duration::from_secs(20)));
        assert!(
            !c.migrate_on_start(),
            "the seeds create their tables by hand"
        );
        let ftp = c.backends.ftp.as_ref().unwrap();
        assert_eq!(
            (ftp.host.as_str(), ftp.port, ftp.user.as_str()),
            ("ftp.example.com", 21, "user")
        );
        assert_eq!(ftp.tls, transfer_ftp::TlsMode::None);
        assert!(ftp.password.is_some());
        let pg = c.backends.postgres.as_ref().unwrap();
        assert_eq!(
            (
                pg.host.as_str(),
                pg.port,
                pg.user.as_str(),
                pg.password.as_ref().map(coord_core::Secret::expose),
                pg.database.as_str()
            ),
            (
                "db.example.com",
                5432,
                "coordinator",
                Some("secret"),
                "ftp_coordination"
            )
        );
        // Every seed field is folded away; what `check-config` prints is our keys.
        assert!(c.protocol.is_none() && c.host.is_none() && c.auth.is_none());
        assert!(co.member_id.is_none() && co.database_config.is_none());
        let printed = c.to_redacted_toml();
        for secret in ["\"pass\"", "secret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("fileNamePattern"), "{printed}");
        assert!(printed.contains("ftp.example.com"), "{printed}");
        assert!(printed.contains("db.example.com"), "{printed}");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("\"pass\"") && !debug.contains("secret"),
            "{debug}"
        );
        Ok(())
    });
}

#[cfg(all(feature = "ftp", feature = "mysql"))]
#[test]
fn port_3306_is_mysql_and_ftps_is_explicit_tls() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "seed.toml",
            &seed_with(
                &[("port = 5432", "port = 3306"), ("\"ftp\"", "\"ftps\"")],
                "",
            ),
        )?;
        let c = Config::load(Some(Path::new("seed.toml"))).unwrap();
        assert_eq!(c.coordination.backend, Backend::Mysql);
        let my = c.backends.mysql.as_ref().unwrap();
        assert_eq!((my.host.as_str(), my.port), ("db.example.com", 3306));
        let ftp = c.backends.ftp.as_ref().unwrap();
        assert_eq!(ftp.tls, transfer_ftp::TlsMode::Explicit);
        Ok(())
    });
}

#[cfg(all(feature = "sftp", feature = "postgres"))]
#[test]
fn sftp_takes_the_password_and_our_known_hosts() {
    Jail::expect_with(|jail| {
        jail.create_file("known_hosts", "")?;
        jail.create_file(
            "seed.toml",
            &seed_with(
                &[("\"ftp\"", "\"SFTP\""), ("port = 21", "port = 2222")],
                "[source.sftp]\nknown_hosts = \"known_hosts\"\n",
            ),
        )?;
        let c = Config::load(Some(Path::new("seed.toml"))).unwrap();
        assert_eq!(c.source.kind, SourceKind::Sftp);
        let sftp = c.backends.sftp.as_ref().unwrap();
        assert_eq!((sftp.port, sftp.user.as_str()), (2222, "user"));
        assert!(
            matches!(sftp.auth, transfer_sftp::AuthSettings::Password { .. }),
            "{:?}",
            sftp.auth
        );
        Ok(())
    });
}

#[cfg(all(feature = "ftp", feature = "postgres"))]
#[test]
fn our_keys_without_a_seed_field_complete_the_record() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "seed.toml",
            &seed_with(
                &[("port = 5432", "port = 6432")],
                "[source.ftp]\npassive_mode = \"pasv\"\n",
            ),
        )?;
        // 6432 (a pooler, say) does not name the kind: our `coordination.backend` does.
        let err = load_err("seed.toml");
        assert!(
            err.contains("`coordination.databaseConfig.port`")
                && err.contains("coordination.backend")
                && err.contains("seed.toml"),
            "{err}"
        );
        jail.create_file(
            "seed.toml",
            &seed_with(
                &[
                    ("port = 5432", "port = 6432"),
                    (
                        "[coordination]\n",
                        "[coordination]\nbackend = \"postgres\"\n",
                    ),
                ],
                "[source.ftp]\npassive_mode = \"pasv\"\n",
            ),
        )?;
        let c = Config::load(Some(Path::new("seed.toml"))).unwrap();
        assert_eq!(c.backends.postgres.as_ref().unwrap().port, 6432);
        assert_eq!(
            c.backends.ftp.as_ref().unwrap().passive_mode,
            transfer_ftp::PassiveMode::Pasv
        );
        Ok(())
    });
}

#[test]
fn without_coordination_one_member_runs_on_the_local_sqlite_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "solo.toml",
            "path = \"inbox\"\npollingInterval = 2\nfileNamePattern = 'a.*'\n",
        )?;
        let c = Config::load(Some(Path::new("solo.toml"))).unwrap();
        assert_eq!(c.coordination.backend, Backend::Sqlite);
        assert_eq!(
            c.coordination.sqlite.path,
            Path::new("./ftp-listener.db"),
            "the ledger survives a restart"
        );
        assert!(c.migrate_on_start());
        assert_eq!(c.group, "default");
        assert!(!c.member_id.is_empty());
        assert_eq!(c.source.kind, SourceKind::Local);
        assert_eq!(c.source.path, "inbox");
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        Ok(())
    });
}

/// Edits of `SEED`, extra TOML, the seed key and our key the error must name.
type RefusalCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);

#[test]
fn a_seed_field_and_ours_together_are_refused_naming_both() {
    let cases: &[RefusalCase<'_>] = &[
        (
            &[],
            "member_id = \"x\"",
            "coordination.memberId",
            "member_id",
        ),
        (
            &[],
            "group = \"g\"",
            "coordination.coordinationGroup",
            "group",
        ),
        (
            &[],
            "poll_interval = \"1s\"",
            "pollingInterval",
            "poll_interval",
        ),
        (&[], "filter = \"*.csv\"", "fileNamePattern", "filter"),
        (&[], "[source]\npath = \"/x\"", "path", "source.path"),
        (&[], "[source]\nkind = \"ftp\"", "protocol", "source.kind"),
        (&[], "[source.ftp]\nhost = \"h\"", "host", "source.ftp.host"),
        (&[], "[source.ftp]\nport = 2121", "port", "source.ftp.port"),
        (
            &[],
            "[source.ftp]\ntls = \"explicit\"",
            "protocol",
            "source.ftp.tls",
        ),
        (
            &[],
            "[source.ftp]\nuser = \"u\"",
            "auth.credentials.username",
            "source.ftp.user",
        ),
        (
            &[],
            "[source.ftp]\npassword_file = \"/p\"",
            "auth.credentials.password",
            "source.ftp.password_file",
        ),
        (
            &[],
            "[coordination.postgres]\nhost = \"h\"",
            "coordination.databaseConfig.host",
            "coordination.postgres.host",
        ),
        (
            &[("port = 5432", "port = 3306")],
            "[coordination.mysql]\ndatabase = \"d\"",
            "coordination.databaseConfig.database",
            "coordination.mysql.database",
        ),
        (
            &[],
            "[coordination.postgres]\nurl = \"postgres://h/d\"",
            "coordination.databaseConfig",
            "coordination.postgres.url",
        ),
        (
            &[(
                "heartbeatFrequency = 1",
                "heartbeatFrequency = 1\nheartbeat_interval = \"1s\"",
            )],
            "",
            "coordination.heartbeatFrequency",
            "coordination.heartbeat_interval",
        ),
    ];
    for (edits, extra, seed, ours) in cases {
        Jail::expect_with(|jail| {
            jail.create_file("both.toml", &seed_with(edits, extra))?;
            let err = load_err("both.toml");
            assert!(
                err.contains(&format!("`{seed}`")) && err.contains(ours),
                "{seed} + {ours}: {err}"
            );
            assert!(err.contains("both.toml"), "{err}");
            Ok(())
        });
    }
}

#[test]
fn seed_errors_name_the_seed_key_as_written() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("port = 5432", "port = \"x\"")],
            "coordination.databaseConfig.port",
        ),
        (&[("port = 5432\n", "")], "coordination.databaseConfig"),
        (
            &[("database = ", "schema = ")],
            "coordination.databaseConfig.schema",
        ),
        (&[("'.*\\.csv'", "'(unclosed'")], "fileNamePattern"),
        (
            &[("pollingInterval = 30", "pollingInterval = 0")],
            "pollingInterval",
        ),
        (
            &[("pollingInterval = 30", "pollingInterval = -1")],
            "pollingInterval",
        ),
        (&[("\"ftp\"", "\"gopher\"")], "protocol"),
        (&[("host = \"ftp.example.com\"\n", "")], "host"),
        (&[("username = \"user\"\n", "")], "auth.credentials"),
        (
            &[("[coordination.databaseConfig]", "[coordination.other]")],
            "coordination.other",
        ),
    ];
    for (edits, key) in cases {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", &seed_with(edits, ""))?;
            let err = load_err("bad.toml");
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
            assert!(err.contains("bad.toml"), "{err}");
            Ok(())
        });
    }
}

#[test]
fn a_member_id_without_a_database_is_refused() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "nodb.toml",
            "[coordination]\nmemberId = \"m\"\ncoordinationGroup = \"g\"\n",
        )?;
        let err = load_err("nodb.toml");
        assert!(err.contains("`coordination.databaseConfig`"), "{err}");
        Ok(())
    });
}

#[cfg(all(feature = "ftp", feature = "postgres"))]
#[test]
fn the_member_id_can_come_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "seed.toml",
            &seed_with(&[("memberId = \"member-1\"\n", "")], ""),
        )?;
        jail.set_env("FTPL_COORDINATION__MEMBERID", "pod-7");
        let c = Config::load(Some(Path::new("seed.toml"))).unwrap();
        assert_eq!(c.member_id, "pod-7");
        Ok(())
    });
}

#[test]
fn the_pattern_matches_the_whole_name() {
    let p = super::compile_pattern(r".*\.csv").unwrap();
    assert!(p.is_match("a.csv"));
    assert!(!p.is_match("a.csv.tmp"));
    let p = super::compile_pattern("a|b").unwrap();
    assert!(p.is_match("a") && p.is_match("b") && !p.is_match("ab"));
}

#[cfg(all(feature = "ftp", feature = "mysql"))]
#[test]
fn the_seed_example_file_loads() {
    Jail::expect_with(|_jail| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = manifest
            .ancestors()
            .map(|d| d.join("examples/seed-listener.toml"))
            .find(|p| p.exists())
            .expect("examples/seed-listener.toml");
        let c = Config::load(Some(&example)).unwrap();
        assert_eq!(c.group, "incoming-files-group");
        assert_eq!(c.coordination.backend, Backend::Mysql);
        Ok(())
    });
}
