//! Two members of the binary, coordinating through Redis (127.0.0.1:6379) by the name the
//! registry gave it: every file is handled once while both run, and after the leader is
//! killed (SIGKILL, no release) the other takes over and handles the rest. A bad setting of
//! the registered backend is refused at start, naming its key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ready()
}

fn config(dir: &Path, member: &str, prefix: &str) -> PathBuf {
    let path = dir.join(format!("{member}.toml"));
    let inbox = dir.join("inbox");
    let text = format!(
        r#"
member_id = "{member}"
poll_interval = "100ms"
http.bind = "127.0.0.1:0"

[coordination]
backend = "redis"
heartbeat_interval = "100ms"
liveness_timeout = "800ms"

[coordination.redis]
url = "redis://127.0.0.1:6379"
key_prefix = "{prefix}"

[[listeners]]
name = "inbox"
source.path = "{inbox}"
handler = {{ kind = "download", dir = "{out}" }}
"#,
        inbox = inbox.display(),
        out = dir.join("out").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_redis-listener"))
        .arg(config)
        .stderr(std::fs::File::create(log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn done(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("inbox/.done")).map_or(0, |d| d.count())
}

#[test]
fn the_registered_redis_store_elects_one_leader_and_fails_over() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let prefix = format!("ex-{}-{}:", std::process::id(), rand_suffix());
    let (ca, cb) = (
        config(dir.path(), "a", &prefix),
        config(dir.path(), "b", &prefix),
    );
    let mut a = spawn(&ca, &dir.path().join("a.log"));
    let mut b = spawn(&cb, &dir.path().join("b.log"));
    for i in 0..20 {
        std::fs::write(dir.path().join(format!("inbox/f{i}.txt")), format!("{i}")).unwrap();
    }
    let first = wait_for(Duration::from_secs(30), || done(dir.path()) == 20);
    // Who leads: the member whose log says it took over.
    let leads = |log: &str| {
        std::fs::read_to_string(dir.path().join(log))
            .unwrap_or_default()
            .contains("became leader")
    };
    let (leader, standby) = if leads("a.log") {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let _ = leader.kill();
    let _ = leader.wait();
    for i in 20..25 {
        std::fs::write(dir.path().join(format!("inbox/f{i}.txt")), format!("{i}")).unwrap();
    }
    let second = wait_for(Duration::from_secs(30), || done(dir.path()) == 25);
    let _ = Command::new("kill").arg(standby.id().to_string()).status();
    let stopped = standby.wait().unwrap();
    let logs = format!(
        "a:\n{}\nb:\n{}",
        std::fs::read_to_string(dir.path().join("a.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.path().join("b.log")).unwrap_or_default()
    );
    assert!(first, "20 files handled while both run\n{logs}");
    assert!(second, "the standby took over and handled the rest\n{logs}");
    assert!(stopped.success(), "{logs}");
    let downloaded = std::fs::read_dir(dir.path().join("out")).unwrap().count();
    assert_eq!(downloaded, 25, "{logs}");
}

#[test]
fn a_bad_setting_of_the_registered_store_is_refused_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[coordination]\nbackend = \"redis\"\n[coordination.redis]\nurl = \"http://x\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_redis-listener"))
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("coordination.redis"), "{err}");
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
