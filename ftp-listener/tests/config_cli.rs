//! The binary's configuration rules end to end (issue 12): `check-config` refuses what `run`
//! refuses; fields override URLs on PostgreSQL; a refused login is never retried, whatever
//! `coordination.migrate_on_start` says; the schema hints name keys that exist. Against the
//! servers of `scripts/setup/` (PostgreSQL's role `ha_listener_cfg` needs a password:
//! `scripts/setup/10-postgres.sh`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_ftp-listener");

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// Runs the binary in `dir` with a clean `FTPL_` environment, killing it after `limit`.
/// Returns the output and whether it exited on its own.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Output, bool) {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("FTPL_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let mut exited = true;
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            exited = false;
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), exited)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn write_config(dir: &Path, body: &str) {
    let base = format!(
        "member_id = \"m\"\ngroup = \"{}\"\n[http]\nbind = \"127.0.0.1:0\"\n",
        unique("g")
    );
    std::fs::write(dir.join("l.toml"), format!("{base}{body}")).unwrap();
}

const LIMIT: Duration = Duration::from_secs(20);

/// A configuration file, the environment it runs with, and a word its refusal must name.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

#[test]
fn check_config_refuses_what_run_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<Case<'_>> = vec![
        ("poll_interval = 500\n", vec![], "poll_interval"),
        (
            "",
            vec![("FTPL_POLL_INTERVALL", "5s")],
            "FTPL_POLL_INTERVALL",
        ),
        (
            "[coordination]\nheartbeat_interval = \"5s\"\nliveness_timeout = \"1s\"\n",
            vec![],
            "coordination.liveness_timeout",
        ),
        #[cfg(feature = "ftp")]
        (
            "[source]\nkind = \"ftp\"\npath = \"/\"\n[source.ftp]\nhost = \"127.0.0.1\"\n\
             user = \"u\"\npassword = \"p\"\npassword_env = \"HOME\"\n",
            vec![],
            "exactly one",
        ),
    ];
    for (body, env, needle) in cases {
        write_config(dir.path(), body);
        for command in ["check-config", "run"] {
            let (out, exited) = run(dir.path(), &["--config", "l.toml", command], &env, LIMIT);
            assert!(exited, "{command} {body}: {}", text(&out));
            assert!(!out.status.success(), "{command} {body}: {}", text(&out));
            assert!(
                text(&out).contains(needle),
                "{command} {body}: {}",
                text(&out)
            );
        }
    }
    // The variables the command handler sets do not stop a listener started by a handler.
    write_config(dir.path(), "");
    let (out, _) = run(
        dir.path(),
        &["--config", "l.toml", "check-config"],
        &[
            ("FTPL_PATH", "/x"),
            ("FTPL_TERM", "3"),
            ("FTPL_MEMBER", "a"),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// Role `ha_listener_cfg` with `password` (the pg_hba rule asks it for one), owning `schema`.
#[cfg(feature = "postgres")]
fn pg_role(password: &str, schema: &str) {
    // Serialised: two tests altering the shared role at once fail with "tuple concurrently
    // updated".
    let sql = format!(
        "BEGIN; SELECT pg_advisory_xact_lock(hashtext('ha_listener_cfg'));
         DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ha_listener_cfg') THEN
             CREATE ROLE ha_listener_cfg LOGIN;
           END IF;
         END $$;
         ALTER ROLE ha_listener_cfg PASSWORD '{password}';
         CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION ha_listener_cfg;
         COMMIT;"
    );
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-d", "test", "-c", &sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rule = Command::new("psql")
        .args(["-X", "-Atc"])
        .arg(
            "SELECT count(*) FROM pg_hba_file_rules WHERE 'ha_listener_cfg' = ANY(user_name) \
             AND auth_method = 'scram-sha-256'",
        )
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&rule.stdout).trim(),
        "1",
        "pg_hba.conf lacks the password rule for ha_listener_cfg: run scripts/setup/10-postgres.sh"
    );
}

/// The role's password: one for every test and every process (nextest runs each test in a
/// process of its own, and two tests set the shared role's password at once: a password per
/// process made one of them fail now and then).
#[cfg(feature = "postgres")]
fn pg_password() -> String {
    "right-cfg-password-7e1d".to_string()
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_fields_override_the_url() {
    let schema = unique("cfg_fields");
    let password = pg_password();
    pg_role(&password, &schema);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "[coordination]\nbackend = \"postgres\"\n[coordination.postgres]\n\
             url = \"postgres://ha_listener_cfg:wrong@127.0.0.1:5432/test?schema={schema}\"\n"
        ),
    );
    let env = [("FTPL_COORDINATION__POSTGRES__PASSWORD", password.as_str())];
    let (out, exited) = run(dir.path(), &["--config", "l.toml", "migrate"], &env, LIMIT);
    assert!(exited && out.status.success(), "{}", text(&out));
    // Without the field, the URL's password is used, and refused.
    let (out, exited) = run(dir.path(), &["--config", "l.toml", "migrate"], &[], LIMIT);
    assert!(exited && !out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("password authentication failed"),
        "{}",
        text(&out)
    );
}

/// `run` with a wrong password exits at once with migrations on and off: never retried.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn wrong_password_is_not_retried(backend: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    for migrate in [false, true] {
        write_config(
            dir.path(),
            &format!(
                "[coordination]\nbackend = \"{backend}\"\nmigrate_on_start = {migrate}\n\
                 [coordination.{backend}]\nurl = \"{url}\"\n"
            ),
        );
        let start = Instant::now();
        let (out, exited) = run(dir.path(), &["--config", "l.toml", "run"], &[], LIMIT);
        let all = text(&out);
        assert!(
            exited,
            "migrate_on_start = {migrate}: still retrying: {all}"
        );
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(!all.contains("coordination store unavailable"), "{all}");
        assert!(start.elapsed() < Duration::from_secs(15), "{all}");
    }
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_wrong_password_is_never_retried() {
    let schema = unique("cfg_auth");
    pg_role(&pg_password(), &schema);
    // Without `schema`, the migrations are the first to connect (with one, creating it is).
    wrong_password_is_not_retried(
        "postgres",
        "postgres://ha_listener_cfg:wrong@127.0.0.1:5432/test",
    );
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_wrong_password_is_never_retried() {
    // root has no password on the test server: any password given is refused.
    wrong_password_is_not_retried("mysql", "mysql://root:wrong@127.0.0.1:3306/test");
}

/// The keys of the README's configuration reference, in full (`coordination.postgres.url`).
fn reference_keys() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut prefix = None;
    let mut keys = Vec::new();
    for line in readme.lines() {
        if let Some(title) = line.strip_prefix("#") {
            let title = title.trim_start_matches('#').trim();
            prefix = match title {
                "Configuration" => Some(""),
                "PostgreSQL" => Some("coordination.postgres."),
                t if t.starts_with("MySQL") => Some("coordination.mysql."),
                t if t.starts_with("FTP") => Some("source.ftp."),
                t if t.starts_with("SFTP") => Some("source.sftp."),
                "Forward handler" => Some("handler."),
                _ => None,
            };
            continue;
        }
        let (Some(prefix), Some(row)) = (prefix, line.strip_prefix("| `")) else {
            continue;
        };
        if prefix.is_empty() {
            // Keys documented inside a row (`handler.command`, `handler.timeout`).
            for (i, quoted) in row.split('`').enumerate() {
                let word = quoted.split(' ').next().unwrap_or_default();
                if i % 2 == 0 && word.contains('.') && !word.contains('"') {
                    keys.push(word.to_string());
                }
            }
        }
        let cell = row.split(" |").next().unwrap_or_default();
        let mut last = String::new();
        for part in cell.split(" / ").flat_map(|p| p.split(", ")) {
            let part = part.trim().trim_matches('`');
            let key = match part.strip_prefix('_') {
                // `reconnect_backoff_min` / `_max`
                Some(tail) => match last.rsplit_once('_') {
                    Some((stem, _)) => format!("{stem}_{tail}"),
                    None => part.to_string(),
                },
                None => format!("{prefix}{part}"),
            };
            last = key.clone();
            keys.push(key);
        }
    }
    keys.push("coordination.heartbeatFrequency".into());
    keys.push("coordination.livenessCheckInterval".into());
    keys
}

/// The dotted configuration keys named in `text` (`coordination.migrate_on_start`, ...).
fn dotted_keys(text: &str) -> Vec<String> {
    const TOPS: [&str; 6] = [
        "coordination.",
        "source.",
        "stability.",
        "retry.",
        "handler.",
        "http.",
    ];
    let mut found = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let is_key = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_key(bytes[i - 1]);
        if starts_word {
            let rest: String = bytes[i..].iter().take_while(|c| is_key(**c)).collect();
            if TOPS.iter().any(|t| rest.starts_with(t)) {
                let key = rest.trim_end_matches('.').to_string();
                if key.contains('.') && !key.ends_with(".rs") && !key.ends_with(".toml") {
                    found.push(key);
                }
            }
            i += rest.len().max(1);
        } else {
            i += 1;
        }
    }
    found
}

fn assert_names_existing_keys(what: &str, text: &str, keys: &[String]) {
    for key in dotted_keys(text) {
        let known = keys.iter().any(|k| {
            k == &key
                || k.strip_suffix(".*")
                    .is_some_and(|table| key.starts_with(table))
        });
        assert!(
            known,
            "{what} names `{key}`, which the configuration reference lacks: {text}"
        );
    }
}

/// Every key the listener's messages name (string literals of its sources and of the backend
/// crates' settings) is in the configuration reference.
#[test]
fn messages_name_keys_that_exist() {
    let keys = reference_keys();
    assert!(
        keys.iter().any(|k| k == "coordination.migrate_on_start"),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k == "source.ftp.reconnect_backoff_max"),
        "{keys:?}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![
        root.join("coord-postgres/src/settings.rs"),
        root.join("coord-mysql/src/settings.rs"),
        root.join("coord-sqlite/src/settings.rs"),
        root.join("transfer-ftp/src/settings.rs"),
        root.join("transfer-sftp/src/settings.rs"),
    ];
    let mut dirs = vec![root.join("listener/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with("_tests.rs")
            {
                files.push(path);
            }
        }
    }
    let mut checked = 0;
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        for (n, line) in source.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") || line.starts_with("use ") {
                continue;
            }
            // Only inside string literals.
            for (i, literal) in line.split('"').enumerate() {
                if i % 2 == 1 {
                    checked += dotted_keys(literal).len();
                    let at = format!("{}:{}", file.display(), n + 1);
                    assert_names_existing_keys(&at, literal, &keys);
                }
            }
        }
    }
    assert!(checked > 10, "the walk found only {checked} keys");
}

/// A missing schema is refused with advice naming `coordination.migrate_on_start`, never a
/// store crate's own switch (`migrate_on_connect`, `migrate = true`), on every database.
#[test]
fn schema_hints_name_the_listener_key() {
    let keys = reference_keys();
    let mut tables = vec![(
        "sqlite",
        "[coordination.sqlite]\npath = \"missing.db\"\n".to_string(),
    )];
    #[cfg(feature = "postgres")]
    tables.push((
        "postgres",
        format!(
            "[coordination.postgres]\nurl = \"postgres://postgres@127.0.0.1:5432/test?schema={}\"\n",
            unique("cfg_noschema")
        ),
    ));
    #[cfg(feature = "mysql")]
    {
        let database = unique("cfg_noschema");
        let out = Command::new("mysql")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!("CREATE DATABASE {database}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        tables.push((
            "mysql",
            format!("[coordination.mysql]\nurl = \"mysql://root@127.0.0.1:3306/{database}\"\n"),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    for (backend, table) in tables {
        write_config(
            dir.path(),
            &format!("[coordination]\nbackend = \"{backend}\"\nmigrate_on_start = false\n{table}"),
        );
        let (out, exited) = run(dir.path(), &["--config", "l.toml", "run"], &[], LIMIT);
        let all = text(&out);
        assert!(exited && !out.status.success(), "{backend}: {all}");
        assert!(all.contains("ftp-listener migrate"), "{backend}: {all}");
        assert!(
            all.contains("coordination.migrate_on_start"),
            "{backend}: {all}"
        );
        assert!(!all.contains("migrate_on_connect"), "{backend}: {all}");
        assert!(!all.contains("migrate = true"), "{backend}: {all}");
        assert_names_existing_keys(backend, &all, &keys);
    }
}
