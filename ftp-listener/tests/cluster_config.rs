//! The cluster's configuration in the coordination database (SQLite here, shared by three
//! member processes on one host): push, live apply on every member, an unchanged listener
//! left alone, an invalid push refused, `every` placement with `{member}` paths, and a member
//! restarted while its database is unreachable starting from its last known good copy.

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
    for d in ["keep", "change", "added", "local-a", "local-b", "local-c"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    for m in MEMBERS {
        local(dir, m, database, cluster);
    }
    let (ok, out) = cli(dir, &["--config", "a.toml", "migrate"]);
    assert!(ok, "{out}");
    document(dir, "v1.toml", V1);
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
    let logs = || {
        procs
            .iter()
            .map(Proc::output)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    assert!(handled.is_some(), "{}", logs());
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
    assert!(second.is_some(), "{}", logs());
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
        logs()
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

/// Issue 9's database cut, with the members running: three members on PostgreSQL behind a
/// proxy run version 1; the proxy cuts the database off: every member keeps running version
/// 1, and the `every` listener (its ledger in the member's state directory) keeps handling
/// its local files; the database back, version 2 is pushed and applied on all three.
#[test]
fn postgres_members_keep_running_through_a_database_cut_and_converge_after() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt
        .block_on(testkit::TcpProxy::start("127.0.0.1:5432".parse().unwrap()))
        .expect("proxy");
    let database = format!(
        "backend = \"postgres\"\n[coordination.postgres]\nurl = \"postgres://postgres@{}/test\"\nschema = \"{}\"\n",
        proxy.addr(),
        unique("ftpl_cut")
    );
    let cluster = unique("cut");
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    let members = MEMBERS;
    let mut procs = three_members_on_version_1(dir, &database, &cluster);
    let logs = |procs: &[Proc]| {
        procs
            .iter()
            .map(Proc::output)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

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
    assert!(handled.is_some(), "{}", logs(&procs));
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
    assert!(pushed.is_some(), "{}", logs(&procs));
    for p in &procs {
        assert!(p.wait_line("version=2", LIMIT).is_some(), "{}", p.output());
    }
    std::fs::write(dir.join("added/after-cut"), b"1").unwrap();
    let added = wait_for(LIMIT, || {
        dir.join("added/.done/after-cut").exists().then_some(())
    });
    assert!(added.is_some(), "{}", logs(&procs));
    for p in &procs {
        p.signal("TERM");
    }
}
