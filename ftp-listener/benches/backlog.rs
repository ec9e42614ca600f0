//! A backlog drains: N new files (200,000 by default, as after an outage) in the watched
//! folder of one `ftp-listener` member, on each coordination database this build has, with
//! the databases' default settings. Prints one table: the time from leading to the first
//! dispatch (it must be within one poll: claims are bounded batches taken just before
//! dispatch, so nothing waits for a claim of the whole backlog), the drain rate, and the
//! database's part.
//!
//! `cargo bench -p ftp-listener --features postgres,mysql --bench backlog -- [FILES]`
//! (PostgreSQL and MariaDB as `scripts/test.sh` starts them). The baseline in the same run is
//! the listing alone: the time the leader's first listing of the backlog takes.

mod support;
use support::scrape;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ftp-listener");

struct Backend {
    name: &'static str,
    section: String,
}

fn backends() -> Vec<Backend> {
    let mut out = vec![Backend {
        name: "sqlite",
        section: "path = \"bench.db\"".into(),
    }];
    if cfg!(feature = "postgres") {
        out.push(Backend {
            name: "postgres",
            section: "url = \"postgres://postgres@127.0.0.1:5432/test\"".into(),
        });
    }
    if cfg!(feature = "mysql") {
        out.push(Backend {
            name: "mysql",
            section: "url = \"mysql://root@127.0.0.1:3306/test\"".into(),
        });
    }
    out
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn http_addr(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    let at = text.find("http=")?;
    text[at + 5..].split_whitespace().next()?.parse().ok()
}

struct Row {
    backend: &'static str,
    files: usize,
    first_listing: Duration,
    to_first_dispatch: Duration,
    drain: Duration,
}

fn run(backend: &Backend, files: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for i in 0..files {
        std::fs::write(inbox.join(format!("f{i:07}.csv")), b"0123456789abcdef").unwrap();
    }
    let group = format!("backlog-{}-{}", std::process::id(), backend.name);
    let config = format!(
        r#"
member_id = "bench"
group = "{group}"
poll_interval = "5s"
[stability]
unchanged_across_listings = false
[coordination]
backend = "{name}"
migrate_on_start = true
[coordination.{name}]
{section}
[source]
path = "inbox"
[http]
bind = "127.0.0.1:0"
"#,
        name = backend.name,
        section = backend.section,
    );
    std::fs::write(dir.path().join("bench.toml"), config).unwrap();
    let log = dir.path().join("log");
    let started = Instant::now();
    let mut child: Child = Command::new(BIN)
        .args(["--config", "bench.toml", "run"])
        .current_dir(dir.path())
        .env(
            "RUST_LOG",
            "warn,listener::service=info,listener::poller=info",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let limit = Duration::from_secs(3600);
    let mut addr = None;
    wait_until(limit, || {
        addr = http_addr(&log);
        addr.is_some()
    })
    .expect("the member starts");
    let addr = addr.unwrap();
    let led = wait_until(limit, || scrape(addr, "ftpl_role") == Some(1.0)).expect("it leads");
    let listed = wait_until(limit, || {
        scrape(addr, "ftpl_listing_duration_seconds_count").is_some_and(|n| n >= 1.0)
    })
    .expect("it lists");
    let first = wait_until(limit, || {
        scrape(addr, "ftpl_files_dispatched_total").is_some_and(|n| n >= 1.0)
    })
    .expect("it dispatches");
    let done = wait_until(limit, || {
        scrape(addr, "ftpl_files_done_total").is_some_and(|n| n >= files as f64)
    })
    .expect("it drains");
    let _ = child.kill();
    let _ = child.wait();
    let _ = started;
    Row {
        backend: backend.name,
        files,
        first_listing: listed - led,
        to_first_dispatch: first - led,
        drain: done - first,
    }
}

fn main() {
    let files: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let rows: Vec<Row> = backends().iter().map(|b| run(b, files)).collect();
    println!(
        "| backend | files | first listing (baseline) | leading -> first dispatch | drain | files/s |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.2} s | {:.2} s | {:.1} s | {:.0} |",
            r.backend,
            r.files,
            r.first_listing.as_secs_f64(),
            r.to_first_dispatch.as_secs_f64(),
            r.drain.as_secs_f64(),
            r.files as f64 / r.drain.as_secs_f64().max(1e-9),
        );
    }
}
