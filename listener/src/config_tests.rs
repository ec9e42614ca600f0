// figment's Jail closures return figment's own (large) error type.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::time::Duration;

use figment::Jail;

use super::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn defaults_without_a_file() {
    Jail::expect_with(|_jail| {
        let c = Config::load(None).unwrap();
        assert!(
            !c.member_id.is_empty(),
            "member ID defaults to the host name"
        );
        assert_eq!(c.group, "default");
        assert_eq!(c.coordination.backend, Backend::Sqlite);
        assert_eq!(c.coordination.sqlite.path, Path::new("./ftp-listener.db"));
        assert_eq!(c.coordination.heartbeat_interval, Some(ms(1000)));
        assert_eq!(c.coordination.liveness_timeout, Some(ms(5000)));
        assert_eq!(c.coordination.renew_deadline, Some(ms(3333)));
        assert!(c.migrate_on_start());
        assert_eq!(c.source.kind, SourceKind::Local);
        assert_eq!(c.source.path, "./inbox");
        assert_eq!(c.poll_interval, ms(5000));
        assert_eq!(c.filter, "*");
        assert_eq!(c.post_processing, PostProcessing::Move);
        assert_eq!(c.done_dir.as_deref(), Some("./inbox/.done"));
        assert_eq!(c.error_dir.as_deref(), Some("./inbox/.error"));
        assert_eq!(c.ledger_retention, Duration::from_secs(7 * 86_400));
        assert_eq!(c.handler, HandlerConfig::Log);
        assert_eq!(c.http.bind.to_string(), "127.0.0.1:9464");
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(c.retry.max_backoff, Duration::from_secs(300));
        assert_eq!(c.claim_ahead, 16);
        assert_eq!(c.commit_delay, ms(20));
        Ok(())
    });
}

#[test]
fn file_and_environment() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "l.toml",
            r#"
            member_id = "node-1"
            group = "incoming"
            poll_interval = "250ms"
            commit_delay = "0s"
            filter = "*.csv"
            post_processing = "delete"
            [coordination]
            heartbeat_interval = "100ms"
            liveness_timeout = "500ms"
            [coordination.postgres]
            url = "postgres://app:hunter2@db:5432/ftp"
            [handler]
            kind = "command"
            command = ["/bin/true"]
            "#,
        )?;
        jail.set_env("FTPL_GROUP", "from-env");
        jail.set_env("FTPL_RETRY__MAX_ATTEMPTS", "2");
        jail.set_env("FTPL_PATH", "/ignored/child/variable");
        let c = Config::load(Some(Path::new("l.toml"))).unwrap();
        assert_eq!(c.member_id, "node-1");
        assert_eq!(c.group, "from-env", "environment wins over the file");
        assert_eq!(c.retry.max_attempts, 2);
        assert_eq!(c.poll_interval, ms(250));
        assert_eq!(c.commit_delay, Duration::ZERO);
        assert_eq!(c.coordination.renew_deadline, Some(ms(333)));
        assert!(c.migrate_on_start(), "sqlite migrates by default");
        let e = c.election().unwrap();
        assert_eq!(e.timing.heartbeat_interval, ms(100));
        assert_eq!(c.post_processing, PostProcessing::Delete);
        // The password never reaches Debug or check-config.
        let debug = format!("{c:?}");
        let printed = c.to_redacted_toml();
        for text in [&debug, &printed] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("app:***@db:5432"), "{text}");
        }
        Ok(())
    });
}

#[test]
fn seed_aliases_in_integer_seconds() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "seed.toml",
            "[coordination]\nheartbeatFrequency = 1\nlivenessCheckInterval = 30\n",
        )?;
        let c = Config::load(Some(Path::new("seed.toml"))).unwrap();
        let t = c.election().unwrap().timing;
        assert_eq!(t.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(t.liveness_timeout, Duration::from_secs(30));
        assert_eq!(t.renew_deadline, Duration::from_secs(20));
        Ok(())
    });
}

#[test]
fn a_bad_value_names_the_field_and_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "[retry]\nmax_attempts = \"many\"\n")?;
        let err = Config::load(Some(Path::new("bad.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_attempts"), "{err}");
        assert!(err.contains("bad.toml"), "{err}");

        jail.create_file("typo.toml", "pol_interval = \"1s\"\n")?;
        let err = Config::load(Some(Path::new("typo.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pol_interval"), "{err}");
        assert!(err.contains("typo.toml"), "{err}");

        jail.create_file("dur.toml", "poll_interval = \"soon\"\n")?;
        let err = Config::load(Some(Path::new("dur.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("poll_interval") && err.contains("soon"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn the_timing_rule_names_the_field_and_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "t.toml",
            "[coordination]\nheartbeat_interval = \"5s\"\nliveness_timeout = \"6s\"\n",
        )?;
        let err = Config::load(Some(Path::new("t.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("coordination.heartbeat_interval"), "{err}");
        assert!(err.contains("t.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn other_rules() {
    Jail::expect_with(|jail| {
        for (body, field) in [
            ("filter = \"[\"\n", "filter"),
            ("[retry]\nmax_attempts = 0\n", "retry.max_attempts"),
            (
                "[handler]\nkind = \"command\"\ncommand = []\n",
                "handler.command",
            ),
            (
                "[coordination]\nbackend = \"mysql\"\n",
                // Without its settings table, or without the feature in this build.
                if cfg!(feature = "mysql") {
                    "coordination.mysql"
                } else {
                    "coordination.backend"
                },
            ),
            ("member_id = \"a\\nb\"\n", "member_id"),
            ("done_dir = \"./inbox/\"\n", "done_dir"),
            ("commit_delay = \"2s\"\n", "commit_delay"),
        ] {
            jail.create_file("r.toml", body)?;
            let err = Config::load(Some(Path::new("r.toml"))).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(field), "{body}: {text}");
        }
        let err = Config::load(Some(Path::new("missing.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn url_redaction() {
    assert_eq!(
        redact_url("mysql://root:pw@127.0.0.1:3306/test"),
        "mysql://root:***@127.0.0.1:3306/test"
    );
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(
        redact_url("postgres://h/db?user=u&password=pw&sslmode=require"),
        "postgres://h/db?user=u&password=***&sslmode=require"
    );
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_settings_come_from_the_backend_crate() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "pg.toml",
            "[coordination]\nbackend = \"postgres\"\n[coordination.postgres]\n\
             url = \"postgres://app:hunter2@db:5432/ftp\"\n",
        )?;
        let c = Config::load(Some(Path::new("pg.toml"))).unwrap();
        assert!(
            !c.migrate_on_start(),
            "postgres does not migrate by default"
        );
        assert!(c.backends.postgres.is_some());
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");

        jail.create_file(
            "pg.toml",
            "[coordination]\nbackend = \"postgres\"\n[coordination.postgres]\nport = \"x\"\n",
        )?;
        let err = Config::load(Some(Path::new("pg.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("port") && err.contains("pg.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn the_example_configuration_loads() {
    Jail::expect_with(|_jail| {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/listener.toml");
        let c = Config::load(Some(&example)).unwrap();
        assert_eq!(c.member_id, "node-1");
        assert_eq!(c.handler, HandlerConfig::Log);
        Ok(())
    });
}

fn load_err(file: &str) -> String {
    Config::load(Some(Path::new(file))).unwrap_err().to_string()
}

#[test]
fn integer_durations_are_refused_except_under_the_seed_names() {
    Jail::expect_with(|jail| {
        // Today's trap: 500 was 500 seconds.
        jail.create_file("int.toml", "poll_interval = 500\n")?;
        let err = load_err("int.toml");
        assert!(err.contains("`poll_interval`"), "{err}");
        assert!(err.contains("\"500ms\""), "{err}");
        assert!(err.contains("int.toml"), "{err}");
        jail.create_file("bare.toml", "poll_interval = \"5\"\n")?;
        let err = load_err("bare.toml");
        assert!(
            err.contains("`poll_interval`") && err.contains("\"5ms\""),
            "{err}"
        );
        jail.create_file("ours.toml", "[coordination]\nheartbeat_interval = 1\n")?;
        let err = load_err("ours.toml");
        assert!(err.contains("coordination.heartbeat_interval"), "{err}");
        // A seed name and ours at once is ambiguous.
        jail.create_file(
            "both.toml",
            "[coordination]\nheartbeat_interval = \"1s\"\nheartbeatFrequency = 1\n",
        )?;
        let err = load_err("both.toml");
        assert!(err.contains("coordination.heartbeatFrequency"), "{err}");
        // From the environment: a number there is refused too, naming the variable.
        jail.set_env("FTPL_POLL_INTERVAL", "5");
        let err = Config::load(None).unwrap_err().to_string();
        assert!(err.contains("FTPL_POLL_INTERVAL"), "{err}");
        assert!(
            err.contains("`poll_interval`") && err.contains("ms\""),
            "{err}"
        );
        jail.set_env("FTPL_POLL_INTERVAL", "5s");
        jail.set_env("FTPL_COORDINATION__LIVENESSCHECKINTERVAL", "30");
        let c = Config::load(None).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(5));
        assert_eq!(
            c.coordination.liveness_timeout,
            Some(Duration::from_secs(30))
        );
        Ok(())
    });
}

#[test]
fn unknown_environment_variables_are_refused_by_name() {
    Jail::expect_with(|jail| {
        // What the command handler sets for its children is not refused.
        for name in HANDLER_VARIABLES {
            jail.set_env(name, "1");
        }
        jail.set_env("FTPL_GROUP", "g");
        Config::load(None).unwrap();
        jail.set_env("FTPL_POLL_INTERVALL", "5s");
        let err = Config::load(None).unwrap_err();
        assert!(
            matches!(err, ConfigError::UnknownVariable { .. }),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("`FTPL_POLL_INTERVALL`"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("FTPL_RETRY__MAX_ATTEMPS", "3");
        let err = Config::load(None).unwrap_err().to_string();
        assert!(err.contains("`retry.max_attemps`"), "{err}");
        assert!(err.contains("FTPL_RETRY__MAX_ATTEMPS"), "{err}");
        Ok(())
    });
}

#[test]
fn keys_in_errors_read_as_written_without_the_profile() {
    Jail::expect_with(|jail| {
        jail.create_file("k.toml", "[retry]\nmax_attempts = \"many\"\n")?;
        let err = load_err("k.toml");
        assert!(err.contains("`retry.max_attempts`"), "{err}");
        assert!(!err.contains("default."), "{err}");
        jail.create_file("e.toml", "")?;
        jail.set_env("FTPL_RETRY__MAX_ATTEMPTS", "many");
        let err = load_err("e.toml");
        assert!(err.contains("`retry.max_attempts`"), "{err}");
        assert!(
            err.contains("environment variable FTPL_RETRY__MAX_ATTEMPTS"),
            "{err}"
        );
        Ok(())
    });
}

#[cfg(feature = "ftp")]
#[test]
fn backend_keys_in_errors_read_as_written_and_backend_rules_apply_at_load() {
    Jail::expect_with(|jail| {
        let ftp = "[source]\nkind = \"ftp\"\n[source.ftp]\nhost = \"h\"\nuser = \"u\"\n";
        jail.create_file("p.toml", &format!("{ftp}password = \"p\"\nport = \"x\"\n"))?;
        let err = load_err("p.toml");
        assert!(err.contains("`source.ftp.port`"), "{err}");
        assert!(
            !err.contains("default.") && !err.contains("port.source"),
            "{err}"
        );
        assert!(err.contains("p.toml"), "{err}");
        // What `run` refuses when it builds the source, `load` (so `check-config`) refuses.
        jail.create_file(
            "two.toml",
            &format!("{ftp}password = \"p\"\npassword_env = \"X\"\n"),
        )?;
        let err = load_err("two.toml");
        assert!(
            err.contains("source.ftp") && err.contains("exactly one"),
            "{err}"
        );
        jail.create_file(
            "d.toml",
            &format!("{ftp}password = \"p\"\nop_timeout = 30\n"),
        )?;
        let err = load_err("d.toml");
        assert!(err.contains("`source.ftp.op_timeout`"), "{err}");
        assert!(err.contains("\"500ms\""), "{err}");
        Ok(())
    });
}

#[test]
fn a_timing_error_names_the_setting_the_user_set() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "t.toml",
            "[coordination]\nheartbeat_interval = \"5s\"\nliveness_timeout = \"1s\"\n",
        )?;
        let err = load_err("t.toml");
        assert!(
            err.contains("invalid `coordination.liveness_timeout`"),
            "{err}"
        );
        assert!(err.contains("coordination.heartbeat_interval"), "{err}");
        assert!(!err.contains("renew_deadline"), "derived, not set: {err}");
        // A renew deadline the user set is named.
        jail.create_file(
            "r.toml",
            "[coordination]\nliveness_timeout = \"5s\"\nrenew_deadline = \"6s\"\n",
        )?;
        let err = load_err("r.toml");
        assert!(
            err.contains("invalid `coordination.renew_deadline`"),
            "{err}"
        );
        Ok(())
    });
}

#[cfg(feature = "mysql")]
#[test]
fn the_mysql_crates_own_migrate_switch_is_refused() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "m.toml",
            "[coordination]\nbackend = \"mysql\"\n[coordination.mysql]\n\
             url = \"mysql://root@127.0.0.1/test\"\nmigrate_on_connect = true\n",
        )?;
        let err = load_err("m.toml");
        assert!(err.contains("coordination.migrate_on_start"), "{err}");
        Ok(())
    });
}

#[test]
fn a_value_that_makes_figment_panic_is_an_error_not_a_crash() {
    // Found by the `config` fuzz target (fuzz/known-crashes/config-figment-escape).
    Jail::expect_with(|jail| {
        jail.set_env("FTPL_SOURCE", "\"é\\2\"");
        let err = Config::load(None).unwrap_err().to_string();
        assert!(err.contains("FTPL_") || err.contains("source"), "{err}");
        Ok(())
    });
}

fn load_all(file: &str, registry: &Registry) -> Result<Vec<Config>, String> {
    Config::load_all(Some(Path::new(file)), registry).map_err(|e| e.to_string())
}

#[test]
fn several_listeners_share_the_top_level_and_get_their_own_groups() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "multi.toml",
            r#"
            member_id = "node-1"
            poll_interval = "2s"
            [coordination]
            backend = "sqlite"
            [coordination.sqlite]
            path = "./shared.db"

            [[listeners]]
            name = "invoices"
            source.path = "./in/invoices"
            filter = "*.csv"

            [[listeners]]
            name = "orders"
            group = "orders-group"
            poll_interval = "500ms"
            source.path = "./in/orders"
            post_processing = "delete"
            "#,
        )?;
        let all = load_all("multi.toml", &Registry::builtin()).unwrap();
        assert_eq!(all.len(), 2);
        let (a, b) = (&all[0], &all[1]);
        assert_eq!(
            (a.name.as_str(), a.group.as_str()),
            ("invoices", "invoices")
        );
        assert_eq!(
            (b.name.as_str(), b.group.as_str()),
            ("orders", "orders-group")
        );
        assert_eq!(
            (a.member_id.as_str(), b.member_id.as_str()),
            ("node-1", "node-1")
        );
        assert_eq!(
            a.poll_interval,
            ms(2000),
            "the top level is every listener's default"
        );
        assert_eq!(b.poll_interval, ms(500), "an entry's own key wins");
        assert_eq!(a.filter, "*.csv");
        assert_eq!(b.filter, "*");
        assert_eq!(a.done_dir.as_deref(), Some("./in/invoices/.done"));
        assert_eq!(b.post_processing, PostProcessing::Delete);
        assert_eq!(
            a.store_identity(),
            b.store_identity(),
            "one database file: one store for both"
        );
        assert!(a.listeners.is_empty());
        // The single-listener call refuses a file of several.
        let one = Config::load(Some(Path::new("multi.toml"))).unwrap_err();
        assert!(one.to_string().contains("2 [[listeners]]"), "{one}");

        // The environment applies to every listener, over the entries.
        jail.set_env("FTPL_FILTER", "*.xml");
        let all = load_all("multi.toml", &Registry::builtin()).unwrap();
        assert!(all.iter().all(|c| c.filter == "*.xml"));
        Ok(())
    });
}

#[test]
fn listener_entries_are_checked_and_errors_name_the_listener() {
    let cases: &[(&str, &str)] = &[
        (
            "[[listeners]]\nsource.path = \"a\"\n",
            "`listeners[0].name`: missing",
        ),
        (
            "[[listeners]]\nname = \"a\"\n[[listeners]]\nname = \"a\"\nsource.path = \"b\"\n",
            "listener `a`: the name is used twice",
        ),
        (
            "group = \"same\"\n[[listeners]]\nname = \"a\"\n[[listeners]]\nname = \"b\"\n",
            "listeners `a` and `b` are both member",
        ),
        (
            "[[listeners]]\nname = \"a\"\nhttp.bind = \"127.0.0.1:0\"\n",
            "listener `a`: `http` is per process",
        ),
        (
            "[[listeners]]\nname = \"a\"\npoll_interval = 5\n",
            "listener `a`: `poll_interval`",
        ),
        ("[[listeners]]\nname = \"a b\"\n", "`name`"),
        ("listeners = []\n", "`listeners`: empty"),
    ];
    for (text, expected) in cases {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", text)?;
            let err = load_all("bad.toml", &Registry::builtin()).unwrap_err();
            assert!(err.contains(expected), "{text}\n=> {err}");
            Ok(())
        });
    }
    // The entry's own key is named with where it came from.
    Jail::expect_with(|jail| {
        jail.create_file(
            "bad.toml",
            "[[listeners]]\nname = \"a\"\nmax_in_flight = \"x\"\n",
        )?;
        let err = load_all("bad.toml", &Registry::builtin()).unwrap_err();
        assert!(err.contains("listener `a`: `max_in_flight`"), "{err}");
        assert!(err.contains("bad.toml"), "{err}");
        Ok(())
    });
}

/// A store registered by a binary of its own: its table is accepted, checked at load, and
/// reaches it at connect.
#[derive(Debug, Default)]
struct Probe {
    checked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeSettings {
    #[allow(dead_code)]
    url: String,
}

#[async_trait::async_trait]
impl StoreBackend for Probe {
    fn check(&self, settings: &Settings) -> Result<(), crate::registry::SettingsError> {
        self.checked
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let s: ProbeSettings = settings.extract()?;
        if !s.url.starts_with("probe://") {
            return Err(settings.invalid_key("url", "must start with probe://"));
        }
        Ok(())
    }

    async fn connect(
        &self,
        _settings: &Settings,
        _migrate: bool,
    ) -> Result<coord_core::SharedStore, coord_core::StoreError> {
        Ok(coord_core::SharedStore::new(
            "probe",
            testkit::MemStore::new(testkit::Clock::tokio()),
        ))
    }
}

use crate::registry::StoreBackend;

#[test]
fn a_registered_backend_is_named_in_the_configuration() {
    let checked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let registry = Registry::builtin().with_store(
        "probe",
        Probe {
            checked: checked.clone(),
        },
    );
    Jail::expect_with(|jail| {
        jail.create_file(
            "probe.toml",
            "[coordination]\nbackend = \"probe\"\n[coordination.probe]\nurl = \"probe://x\"\n",
        )?;
        let c = Config::load_with(Some(Path::new("probe.toml")), &registry).unwrap();
        assert_eq!(c.coordination.backend, Backend::Named("probe".into()));
        assert!(
            !c.migrate_on_start(),
            "only an embedded store migrates by default"
        );
        assert_eq!(checked.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The builtin registry does not know it, and says what it knows.
        let err = Config::load(Some(Path::new("probe.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no coordination store named `probe`"), "{err}");
        assert!(err.contains("sqlite"), "{err}");

        jail.create_file(
            "bad.toml",
            "[coordination]\nbackend = \"probe\"\n[coordination.probe]\nurl = \"http://x\"\n",
        )?;
        let err = Config::load_with(Some(Path::new("bad.toml")), &registry)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`coordination.probe.url`: must start"),
            "{err}"
        );
        jail.create_file(
            "typo.toml",
            "[coordination]\nbackend = \"probe\"\n[coordination.probe]\nurll = \"probe://x\"\n",
        )?;
        let err = Config::load_with(Some(Path::new("typo.toml")), &registry)
            .unwrap_err()
            .to_string();
        assert!(err.contains("coordination.probe.urll"), "{err}");
        assert!(err.contains("typo.toml"), "{err}");
        // A table under [coordination] that no backend registered is an unknown key.
        jail.create_file("unknown.toml", "[coordination.nosuch]\nx = 1\n")?;
        let err = Config::load_with(Some(Path::new("unknown.toml")), &registry)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`coordination.nosuch`: unknown key"), "{err}");
        jail.create_file("scalar.toml", "[source]\npaht = \"x\"\n")?;
        let err = Config::load_with(Some(Path::new("scalar.toml")), &registry)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`source.paht`: unknown key"), "{err}");
        Ok(())
    });
}
