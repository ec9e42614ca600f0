//! The cluster's configuration in the coordination database (SQLite, PostgreSQL, MariaDB,
//! shared by three member processes on one host): push, live apply on every member, an
//! unchanged listener left alone, an invalid push refused, `every` placement with `{member}`
//! paths, a member restarted while its database is unreachable starting from its last known
//! good copy; a version one member cannot apply (a listener that fails after start, one that
//! does not load there) left on that listener's previous definition, and `status` showing
//! every member's apply state.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Proc, mariadb_database, unique, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

fn local(dir: &Path, member: &str, database: &str, cluster: &str) -> PathBuf {
    let path = dir.join(format!("{member}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
member_id = "{member}"
http.bind = "127.0.0.1:0"
[coordination]
heartbeat_interval = "100ms"
liveness_timeout = "500ms"
{database}
[cluster]
name = "{cluster}"
state_dir = "state-{member}"
poll_interval = "200ms"
"#
        ),
    )
    .unwrap();
    path
}

const SQLITE: &str = "[coordination.sqlite]\npath = \"shared.db\"\n";

/// PostgreSQL in a schema of the test's own (the migrations create it).
fn postgres() -> String {
    format!(
        "backend = \"postgres\"\n[coordination.postgres]\nurl = \"postgres://postgres@127.0.0.1:5432/test\"\nschema = \"{}\"\n",
        unique("ftpl_cluster")
    )
}

/// MariaDB in a database of the test's own.
fn mariadb() -> String {
    let db = mariadb_database("ftpl_cluster");
    format!(
        "backend = \"mysql\"\n[coordination.mysql]\nurl = \"mysql://root@127.0.0.1:3306/{db}\"\n"
    )
}

/// Every member's output, for an assertion's message.
fn all_logs(procs: &[Proc]) -> String {
    procs
        .iter()
        .map(Proc::output)
        .collect::<Vec<_>>()
        .join("\n----\n")
}

fn document(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn cli(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut p = Proc::spawn(dir, args);
    let ok = p.wait_exit(LIMIT).expect("exits").success();
    (ok, p.output())
}

const V1: &str = r#"
poll_interval = "100ms"

[[listeners]]
name = "keep"
source.path = "keep"

[[listeners]]
name = "change"
source.path = "change"
filter = "*.a"

[[listeners]]
name = "local"
placement = "every"
source.path = "local-{member}"
"#;

#[test]
fn sqlite_pushed_versions_are_applied_live_and_kept_for_a_database_outage() {
    cluster_lifecycle(SQLITE, "SQLite");
}

#[test]
fn postgres_pushed_versions_are_applied_live_and_kept_for_a_database_outage() {
    cluster_lifecycle(&postgres(), "PostgreSQL");
}

#[test]
fn mariadb_pushed_versions_are_applied_live_and_kept_for_a_database_outage() {
    cluster_lifecycle(&mariadb(), "MariaDB");
}

/// A site of three members `a`, `b`, `c` of `cluster` on `database`: its folders, each
/// member's local file, the schema, version 1 pushed (`comment`), and the three processes
/// running it.
fn three_members_on_version_1(dir: &Path, database: &str, cluster: &str) -> Vec<Proc> {
    three_members_on(dir, database, cluster, V1)
}

/// [`three_members_on_version_1`] with `v1` as version 1.
fn three_members_on(dir: &Path, database: &str, cluster: &str, v1: &str) -> Vec<Proc> {
    for d in ["keep", "change", "added", "local-a", "local-b", "local-c"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    for m in MEMBERS {
        local(dir, m, database, cluster);
    }
    let (ok, out) = cli(dir, &["--config", "a.toml", "migrate"]);
    assert!(ok, "{out}");
    document(dir, "v1.toml", v1);
    let (ok, out) = cli(
        dir,
        &[
            "--config",
            "a.toml",
            "cluster",
            "push",
            "v1.toml",
            "--comment",
            "first",
        ],
    );
    assert!(ok && out.contains("stored version 1"), "{out}");
    let procs: Vec<Proc> = MEMBERS
        .iter()
        .map(|m| Proc::spawn(dir, &["--config", &format!("{m}.toml"), "run"]))
        .collect();
    for p in &procs {
        assert!(
            p.wait_line("cluster configuration applied", LIMIT)
                .is_some(),
            "{}",
            p.output()
        );
    }
    procs
}

const MEMBERS: [&str; 3] = ["a", "b", "c"];

fn cluster_lifecycle(database: &str, label: &str) {
    let cluster = unique("t");
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    let members = MEMBERS;
    let mut procs = three_members_on_version_1(dir, database, &cluster);
    // The shared listener works; the `every` one runs on each member, in its own folder.
    std::fs::write(dir.join("keep/k1"), b"1").unwrap();
    std::fs::write(dir.join("change/c1.a"), b"1").unwrap();
    for m in members {
        std::fs::write(dir.join(format!("local-{m}/l1")), b"1").unwrap();
    }
    let handled = wait_for(LIMIT, || {
        let all_local = members
            .iter()
            .all(|m| dir.join(format!("local-{m}/.done/l1")).exists());
        (dir.join("keep/.done/k1").exists() && dir.join("change/.done/c1.a").exists() && all_local)
            .then_some(())
    });
    assert!(handled.is_some(), "{}", all_logs(&procs));
    let keep_terms_before: usize = procs
        .iter()
        .map(|p| {
            p.output()
                .lines()
                .filter(|l| l.contains("listener=keep") && l.contains("became leader"))
                .count()
        })
        .sum();

    // Version 2: a listener added, one changed, one left alone.
    let v2 = V1.replace("filter = \"*.a\"", "filter = \"*.b\"")
        + "\n[[listeners]]\nname = \"added\"\nsource.path = \"added\"\n";
    document(dir, "v2.toml", &v2);
    let pushed = Instant::now();
    let (ok, out) = cli(dir, &["--config", "b.toml", "cluster", "push", "v2.toml"]);
    assert!(ok && out.contains("stored version 2"), "{out}");
    for p in &procs {
        assert!(p.wait_line("version=2", LIMIT).is_some(), "{}", p.output());
    }
    let applied_in = pushed.elapsed();
    eprintln!("cluster push to applied on 3 members ({label}): {applied_in:?}");
    std::fs::write(dir.join("change/c2.a"), b"1").unwrap();
    std::fs::write(dir.join("change/c3.b"), b"1").unwrap();
    std::fs::write(dir.join("added/x"), b"1").unwrap();
    let second = wait_for(LIMIT, || {
        (dir.join("change/.done/c3.b").exists() && dir.join("added/.done/x").exists()).then_some(())
    });
    assert!(second.is_some(), "{}", all_logs(&procs));
    assert!(
        dir.join("change/c2.a").exists(),
        "the changed filter applies"
    );
    let keep_terms_after: usize = procs
        .iter()
        .map(|p| {
            p.output()
                .lines()
                .filter(|l| l.contains("listener=keep") && l.contains("became leader"))
                .count()
        })
        .sum();
    assert_eq!(
        keep_terms_before,
        keep_terms_after,
        "the unchanged listener was not interrupted (no new term)\n{}",
        all_logs(&procs)
    );
    let (ok, status) = cli(dir, &["--config", "a.toml", "status"]);
    assert!(ok, "{status}");
    assert!(
        status.contains(&format!("cluster {cluster}  version 2")),
        "{status}"
    );
    assert!(
        status.contains("listener added  placement leader"),
        "{status}"
    );
    assert!(
        status.contains("listener local  placement every member"),
        "{status}"
    );

    // An invalid push is refused, naming the key, and nothing is stored.
    document(
        dir,
        "bad.toml",
        "[[listeners]]\nname = \"x\"\nsource = { kind = \"ftp\", path = \"/\", ftp = { host = \"h\", user = \"u\", password = \"hunter2\" } }\n",
    );
    let (ok, out) = cli(dir, &["--config", "a.toml", "cluster", "push", "bad.toml"]);
    assert!(!ok, "{out}");
    assert!(out.contains("listeners[0].source.ftp.password"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    let (ok, history) = cli(dir, &["--config", "a.toml", "cluster", "history"]);
    assert!(ok, "{history}");
    let versions = history
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u64>().is_ok())
        })
        .count();
    assert_eq!(
        versions, 2,
        "two versions, the refused push not among them: {history}"
    );
    assert!(history.contains("first"), "{history}");
    let (ok, diff) = cli(dir, &["--config", "a.toml", "cluster", "diff", "1", "2"]);
    assert!(
        ok && diff.contains("- filter = \"*.a\"") && diff.contains("+ filter = \"*.b\""),
        "{diff}"
    );

    // Member c restarts while its database is unreachable: it starts from its copy, and its
    // `every` listener (a ledger of its own) works at once.
    let mut c = procs.pop().unwrap();
    c.signal("TERM");
    assert!(c.wait_exit(LIMIT).is_some());
    local(
        dir,
        "c",
        "backend = \"postgres\"\n[coordination.postgres]\nhost = \"127.0.0.1\"\nport = 1\nuser = \"x\"\ndatabase = \"x\"\n",
        &cluster,
    );
    let c = Proc::spawn(dir, &["--config", "c.toml", "run"]);
    assert!(
        c.wait_line("starting from the last known good", LIMIT)
            .is_some(),
        "{}",
        c.output()
    );
    std::fs::write(dir.join("local-c/l2"), b"1").unwrap();
    assert!(
        wait_for(LIMIT, || dir
            .join("local-c/.done/l2")
            .exists()
            .then_some(()))
        .is_some(),
        "{}",
        c.output()
    );
    c.signal("TERM");
    for p in &procs {
        p.signal("TERM");
    }
}

/// The operators' request queue on each database: queued, seen pending, taken once, in order.
#[test]
fn operator_requests_round_trip_on_every_database() {
    use coord_core::{FileVersion, GroupId, Redrive};
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!(
        "[coordination.sqlite]\npath = \"{}\"\n",
        dir.path().join("rq.db").display()
    );
    for (label, database) in [
        ("SQLite", sqlite),
        ("PostgreSQL", postgres()),
        ("MariaDB", mariadb()),
    ] {
        let path = local(dir.path(), label, &database, "unused");
        let config = listener::Config::load(Some(&path)).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = listener::connect_store(&config, &listener::Registry::builtin(), true)
                .await
                .unwrap();
            let requests = store
                .request_store()
                .expect("kept by every SQL store")
                .clone();
            let group = GroupId::new(unique("rq")).unwrap();
            let v = |p: &str| FileVersion {
                path: p.into(),
                size: 3,
                mtime_ms: 1_000,
            };
            requests
                .request(&group, &v("/in/a"), Redrive::Retry)
                .await
                .unwrap();
            requests
                .request(&group, &v("/in/b"), Redrive::Forget)
                .await
                .unwrap();
            let pending = requests.pending(&group).await.unwrap();
            assert_eq!(pending.len(), 2, "{label}");
            let first = requests.take(&group, 1).await.unwrap();
            assert_eq!(first, vec![(v("/in/a"), Redrive::Retry)], "{label}");
            let rest = requests.take(&group, 10).await.unwrap();
            assert_eq!(rest, vec![(v("/in/b"), Redrive::Forget)], "{label}");
            assert!(
                requests.take(&group, 10).await.unwrap().is_empty(),
                "{label}"
            );
        });
    }
}

/// Issue 9's database cut, with the members running: three members behind a proxy to the
/// database run version 1; the proxy cuts the database off: every member keeps running version
/// 1, and the `every` listener (its ledger in the member's state directory) keeps handling
/// its local files; the database back, version 2 is pushed and applied on all three.
#[test]
fn postgres_members_keep_running_through_a_database_cut_and_converge_after() {
    members_through_a_database_cut(5432, |proxy| {
        format!(
            "backend = \"postgres\"\n[coordination.postgres]\nurl = \"postgres://postgres@{proxy}/test\"\nschema = \"{}\"\n",
            unique("ftpl_cut")
        )
    });
}

#[test]
fn mariadb_members_keep_running_through_a_database_cut_and_converge_after() {
    members_through_a_database_cut(3306, |proxy| {
        let db = mariadb_database("ftpl_cut");
        format!("backend = \"mysql\"\n[coordination.mysql]\nurl = \"mysql://root@{proxy}/{db}\"\n")
    });
}

fn members_through_a_database_cut(port: u16, database: impl Fn(std::net::SocketAddr) -> String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt
        .block_on(testkit::TcpProxy::start(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            port,
        ))))
        .expect("proxy");
    let database = database(proxy.addr());
    let cluster = unique("cut");
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    let members = MEMBERS;
    let mut procs = three_members_on_version_1(dir, &database, &cluster);

    rt.block_on(proxy.cut());
    // Each member's own listener goes on: files dropped during the cut are handled.
    for m in members {
        std::fs::write(dir.join(format!("local-{m}/during-cut")), b"1").unwrap();
    }
    let handled = wait_for(LIMIT, || {
        members
            .iter()
            .all(|m| dir.join(format!("local-{m}/.done/during-cut")).exists())
            .then_some(())
    });
    assert!(handled.is_some(), "{}", all_logs(&procs));
    for p in &mut procs {
        assert!(p.child.try_wait().unwrap().is_none(), "{}", p.output());
        assert!(!p.output().contains("version=2"), "{}", p.output());
    }

    rt.block_on(proxy.restore()).expect("restore");
    let v2 = V1.to_string() + "\n[[listeners]]\nname = \"added\"\nsource.path = \"added\"\n";
    document(dir, "v2.toml", &v2);
    let pushed = wait_for(LIMIT, || {
        let (ok, out) = cli(dir, &["--config", "b.toml", "cluster", "push", "v2.toml"]);
        (ok && out.contains("stored version 2")).then_some(())
    });
    assert!(pushed.is_some(), "{}", all_logs(&procs));
    for p in &procs {
        assert!(p.wait_line("version=2", LIMIT).is_some(), "{}", p.output());
    }
    std::fs::write(dir.join("added/after-cut"), b"1").unwrap();
    let added = wait_for(LIMIT, || {
        dir.join("added/.done/after-cut").exists().then_some(())
    });
    assert!(added.is_some(), "{}", all_logs(&procs));
    for p in &procs {
        p.signal("TERM");
    }
}

/// One member's line of `status` (`MEMBER APPLIED FAILED REPORTED RUNS`) and the error
/// printed under it, if any.
fn member_row(status: &str, member: &str) -> Option<(String, String, String, Option<String>)> {
    let mut lines = status.lines();
    while let Some(line) = lines.next() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // member, applied, failed, age, unit, "ago", runs
        if words.len() == 7 && words[0] == member && words[5] == "ago" {
            let error = lines
                .clone()
                .next()
                .and_then(|l| l.strip_prefix("  error: "))
                .map(str::to_string);
            return Some((
                words[1].to_string(),
                words[2].to_string(),
                words[6].to_string(),
                error,
            ));
        }
    }
    None
}

/// Polls `status` (the binary, as an operator runs it) until `ready` holds for its output.
fn status_until(dir: &Path, ready: impl Fn(&str) -> bool) -> Result<String, String> {
    let mut last = String::new();
    wait_for(LIMIT, || {
        let (ok, out) = cli(dir, &["--config", "a.toml", "status"]);
        last = out.clone();
        (ok && ready(&out)).then_some(out)
    })
    .ok_or(last)
}

const WORK_V1: &str =
    "\n[[listeners]]\nname = \"work\"\nplacement = \"member:b\"\nsource.path = \"work\"\n";
const WORK_V2: &str =
    "\n[[listeners]]\nname = \"work\"\nplacement = \"every\"\nsource.path = \"work-{member}\"\n";

#[test]
fn sqlite_a_listener_failing_after_start_goes_back_to_its_previous_definition() {
    failing_after_start(SQLITE);
}

#[test]
fn postgres_a_listener_failing_after_start_goes_back_to_its_previous_definition() {
    failing_after_start(&postgres());
}

#[test]
fn mariadb_a_listener_failing_after_start_goes_back_to_its_previous_definition() {
    failing_after_start(&mariadb());
}

/// Version 2 changes listener `work` from "member b, shared folder" to "every member, its own
/// folder and ledger"; on member b the ledger's file in its state directory cannot be
/// created (a directory is in the way), which only shows when the new definition starts. So
/// b goes back to version 1's `work` and keeps handling its files, a and c run version 2's,
/// `status` and b's `/metrics` say so; the host fixed and version 3 pushed, all three apply
/// it and the failure is cleared.
fn failing_after_start(database: &str) {
    let cluster = unique("fail");
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    for d in ["work", "work-a", "work-b", "work-c"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let v1 = V1.to_string() + WORK_V1;
    let procs = three_members_on(dir, database, &cluster, &v1);
    std::fs::write(dir.join("work/w1"), b"1").unwrap();
    let first = wait_for(LIMIT, || dir.join("work/.done/w1").exists().then_some(()));
    assert!(first.is_some(), "{}", all_logs(&procs));

    // Member b cannot create its `every` ledger for `work`.
    std::fs::create_dir_all(dir.join("state-b/every-work.db")).unwrap();
    document(dir, "v2.toml", &(V1.to_string() + WORK_V2));
    let (ok, out) = cli(dir, &["--config", "c.toml", "cluster", "push", "v2.toml"]);
    assert!(ok && out.contains("stored version 2"), "{out}");
    let b = &procs[1];
    assert!(
        b.wait_line("going back to the previous one", LIMIT)
            .is_some(),
        "{}",
        b.output()
    );
    let line = b
        .output()
        .lines()
        .find(|l| l.contains("going back to the previous one"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("listener=work")
            && line.contains("version=2")
            && line.contains("is a directory"),
        "the log names the listener, the version and the cause: {line}"
    );

    // Every member's state, as `status` prints it.
    let status = status_until(dir, |out| {
        let b = member_row(out, "b");
        let ok = |m| {
            member_row(out, m).is_some_and(|(applied, failed, runs, error)| {
                applied == "2" && failed == "-" && error.is_none() && runs.contains("work@2")
            })
        };
        ok("a")
            && ok("c")
            && b.is_some_and(|(applied, failed, runs, error)| {
                applied == "2"
                    && failed == "2"
                    && runs.contains("work@1")
                    && runs.contains("keep@2")
                    && error.is_some()
            })
    })
    .unwrap_or_else(|last| {
        panic!(
            "status never showed the failure:\n{last}\n{}",
            all_logs(&procs)
        )
    });
    let (_, _, _, error) = member_row(&status, "b").unwrap();
    let error = error.unwrap();
    assert!(
        error.contains("listener `work` (version 2)") && error.contains("every-work.db"),
        "{status}"
    );
    let (ok, json) = cli(dir, &["--config", "a.toml", "status", "--json"]);
    assert!(ok, "{json}");
    let line = json
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON object: {json}"));
    let json: serde_json::Value = serde_json::from_str(line).expect("status --json is JSON");
    let members = json["cluster"]["members"].as_array().expect("members");
    let b_json = members.iter().find(|m| m["member"] == "b").expect("b");
    assert_eq!(b_json["failed_version"], 2, "{json}");
    assert!(b_json["reported_age_ms"].as_u64().is_some(), "{json}");
    let (code, metrics) = common::http_get(&b.http_addr(), "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("ftpl_cluster_config_apply_failed 1"),
        "{metrics}"
    );

    // b keeps handling `work` on version 1's definition; a and c on version 2's.
    std::fs::write(dir.join("work/w2"), b"1").unwrap();
    for m in ["a", "c"] {
        std::fs::write(dir.join(format!("work-{m}/x")), b"1").unwrap();
    }
    let handled = wait_for(LIMIT, || {
        (dir.join("work/.done/w2").exists()
            && dir.join("work-a/.done/x").exists()
            && dir.join("work-c/.done/x").exists())
        .then_some(())
    });
    assert!(handled.is_some(), "{}", all_logs(&procs));

    // The host fixed, version 3 (version 2 again) is applied by all three.
    std::fs::remove_dir(dir.join("state-b/every-work.db")).unwrap();
    document(
        dir,
        "v3.toml",
        &(V1.to_string() + WORK_V2 + "# fixed on b\n"),
    );
    let (ok, out) = cli(dir, &["--config", "a.toml", "cluster", "push", "v3.toml"]);
    assert!(ok && out.contains("stored version 3"), "{out}");
    let status = status_until(dir, |out| {
        MEMBERS.iter().all(|m| {
            member_row(out, m).is_some_and(|(applied, failed, runs, error)| {
                applied == "3" && failed == "-" && error.is_none() && runs.contains("work@3")
            })
        })
    })
    .unwrap_or_else(|last| panic!("the failure was not cleared:\n{last}\n{}", all_logs(&procs)));
    assert!(!status.contains("error:"), "{status}");
    std::fs::write(dir.join("work-b/y"), b"1").unwrap();
    let fixed = wait_for(LIMIT, || dir.join("work-b/.done/y").exists().then_some(()));
    assert!(fixed.is_some(), "{}", all_logs(&procs));
    let (_, metrics) = common::http_get(&b.http_addr(), "/metrics");
    assert!(
        metrics.contains("ftpl_cluster_config_apply_failed 0"),
        "{metrics}"
    );
    for p in &procs {
        p.signal("TERM");
    }
}

#[test]
fn sqlite_a_listener_that_does_not_load_on_one_member_leaves_the_others_applied() {
    not_loading_on_one_member(SQLITE);
}

#[test]
fn postgres_a_listener_that_does_not_load_on_one_member_leaves_the_others_applied() {
    not_loading_on_one_member(&postgres());
}

#[test]
fn mariadb_a_listener_that_does_not_load_on_one_member_leaves_the_others_applied() {
    not_loading_on_one_member(&mariadb());
}

/// Version 2 changes `change` and adds `remote`, an FTP source whose password is a file on
/// each member; member b lacks the file. b applies the rest of version 2 (`change` with its
/// new filter) and leaves `remote` out, saying so, without the secret anywhere.
fn not_loading_on_one_member(database: &str) {
    let cluster = unique("load");
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    for m in ["a", "c"] {
        std::fs::write(dir.join(format!("secret-{m}")), "s3cr3t-value\n").unwrap();
    }
    let procs = three_members_on_version_1(dir, database, &cluster);
    let v2 = V1.replace("filter = \"*.a\"", "filter = \"*.b\"")
        + "\n[[listeners]]\nname = \"remote\"\nsource.kind = \"ftp\"\nsource.path = \"/in\"\n\
           source.ftp = { host = \"127.0.0.1\", port = 1, user = \"u\", password_file = \"secret-{member}\" }\n";
    document(dir, "v2.toml", &v2);
    let (ok, out) = cli(dir, &["--config", "a.toml", "cluster", "push", "v2.toml"]);
    assert!(ok && out.contains("stored version 2"), "{out}");
    let b = &procs[1];
    assert!(
        b.wait_line("does not load on this member", LIMIT).is_some(),
        "{}",
        b.output()
    );
    let status = status_until(dir, |out| {
        let runs = |m| member_row(out, m).map(|(applied, failed, runs, _)| (applied, failed, runs));
        let ac = ["a", "c"].iter().all(|m| {
            runs(m).is_some_and(|(applied, failed, runs)| {
                applied == "2" && failed == "-" && runs.contains("remote@2")
            })
        });
        ac && runs("b").is_some_and(|(applied, failed, runs)| {
            applied == "2"
                && failed == "2"
                && runs.contains("change@2")
                && runs.contains("keep@2")
                && !runs.contains("remote")
        })
    })
    .unwrap_or_else(|last| {
        panic!(
            "status never showed b's state:\n{last}\n{}",
            all_logs(&procs)
        )
    });
    let (_, _, _, error) = member_row(&status, "b").unwrap();
    let error = error.expect("b's error is shown");
    assert!(
        error.contains("listener `remote` (version 2)") && error.contains("password_file"),
        "{status}"
    );
    assert!(!status.contains("s3cr3t"), "{status}");
    assert!(!all_logs(&procs).contains("s3cr3t"), "no secret in any log");
    // b took version 2's `change` (its new filter): the member's listeners are applied.
    assert!(
        b.output().lines().any(|l| l.contains("listener changed")
            && l.contains("listener=change")
            && l.contains("version=2")),
        "{}",
        b.output()
    );
    for p in &procs {
        p.signal("TERM");
    }
}

/// What a member's row says is written even when it changed while the database was cut off:
/// member c restarts during a cut, from its last known good copy, and its `every` listener
/// cannot start (its ledger file is now a directory); once the database is back, `status`
/// shows c's failure, kept and written late.
#[test]
fn postgres_a_member_reports_what_changed_during_a_database_cut_once_it_is_back() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt
        .block_on(testkit::TcpProxy::start("127.0.0.1:5432".parse().unwrap()))
        .expect("proxy");
    let database = format!(
        "backend = \"postgres\"\n[coordination.postgres]\nurl = \"postgres://postgres@{}/test\"\nschema = \"{}\"\n",
        proxy.addr(),
        unique("ftpl_report")
    );
    let cluster = unique("report");
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    let mut procs = three_members_on_version_1(dir, &database, &cluster);
    let all_on_1 = |out: &str| {
        MEMBERS.iter().all(|m| {
            member_row(out, m)
                .is_some_and(|(applied, failed, _, _)| applied == "1" && failed == "-")
        })
    };
    status_until(dir, all_on_1).unwrap_or_else(|last| panic!("{last}"));

    rt.block_on(proxy.cut());
    let mut c = procs.pop().unwrap();
    c.signal("TERM");
    assert!(c.wait_exit(LIMIT).is_some());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("state-c/every-local.db{suffix}")));
    }
    std::fs::create_dir_all(dir.join("state-c/every-local.db")).unwrap();
    let c = Proc::spawn(dir, &["--config", "c.toml", "run"]);
    assert!(
        c.wait_line("has no previous definition", LIMIT).is_some(),
        "{}",
        c.output()
    );
    assert!(
        c.output().contains("starting from the last known good"),
        "{}",
        c.output()
    );

    rt.block_on(proxy.restore()).expect("restore");
    let status = status_until(dir, |out| {
        member_row(out, "c").is_some_and(|(applied, failed, runs, error)| {
            applied == "1"
                && failed == "1"
                && !runs.contains("local")
                && error.is_some_and(|e| e.contains("every-local.db"))
        })
    })
    .unwrap_or_else(|last| {
        panic!(
            "c's row was not written after the cut:\n{last}\n{}",
            c.output()
        )
    });
    for m in ["a", "b"] {
        let (applied, failed, _, error) = member_row(&status, m).unwrap();
        assert_eq!(
            (applied.as_str(), failed.as_str(), error),
            ("1", "-", None),
            "{status}"
        );
    }
    c.signal("TERM");
    for p in &procs {
        p.signal("TERM");
    }
}
