//! Helpers of the chaos tests: a group of three `ftp-listener` processes on one database, each
//! with its own config and `/metrics` endpoint, and a table of measured failover times.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::common::{Proc, Site, wait_for};

/// The group's timings (the brief's short ones): a tick of 200 ms, a lease of 1 s, and a
/// renew deadline of 2/3 of it.
pub const HEARTBEAT: Duration = Duration::from_millis(200);
pub const LIVENESS: Duration = Duration::from_millis(1000);
pub const RENEW: Duration = Duration::from_millis(666);

/// Room for scheduling on a loaded machine (two cores shared with other builds and tests):
/// added to every timing bound, and printed with it.
pub const SLACK: Duration = Duration::from_millis(600);

/// How long a wait for something that must happen may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(30);

/// `postgres` or `mysql`, with the URL of the test server.
#[derive(Debug, Clone, Copy)]
pub struct Db {
    pub backend: &'static str,
    pub url: &'static str,
}

pub const POSTGRES: Db = Db {
    backend: "postgres",
    url: "postgres://postgres@127.0.0.1:5432/test",
};

pub const MYSQL: Db = Db {
    backend: "mysql",
    url: "mysql://root@127.0.0.1:3306/test",
};

impl Db {
    /// The server's address (for a proxy in front of it).
    pub fn addr(&self) -> SocketAddr {
        let rest = self.url.split('@').nth(1).unwrap();
        rest.split('/').next().unwrap().parse().unwrap()
    }

    /// The URL with the server's address replaced by `addr`.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        self.url
            .replace(&self.addr().to_string(), &addr.to_string())
    }
}

/// A group name no other test or run uses.
pub fn unique_group(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("chaos-{prefix}-{}-{nanos}", std::process::id())
}

/// One group on one database: a working folder (inbox, handled.log) and its members.
pub struct Group {
    pub site: Site,
    pub db: Db,
    pub name: String,
    /// The URL members use (the server's, or a proxy's).
    pub url: String,
    handler: String,
    /// Extra top-level TOML keys of every member's config (such as `max_in_flight = 4`).
    extra: String,
    /// The `[source]` table (and its sub-tables) of every member's config.
    source: String,
    /// The product's default poll interval and election timing instead of the fast ones.
    default_timing: bool,
}

/// The `[source]` table of a group whose members watch the working folder's `inbox/`.
pub const LOCAL_SOURCE: &str = "[source]\npath = \"inbox\"";

impl Group {
    /// A group named after `test`, whose members reach the database at `url`, with the probe
    /// handler running `then` (shell; `{dir}` stands for the working folder) after its line;
    /// the schema is migrated (directly, not through any proxy) before it returns.
    pub fn new(db: Db, test: &str, url: String, then: &str) -> Group {
        Group::with_extra(db, test, url, then, "")
    }

    /// The same with extra top-level TOML keys in every member's config.
    pub fn with_extra(db: Db, test: &str, url: String, then: &str, extra: &str) -> Group {
        Group::with_source(db, test, url, then, extra, LOCAL_SOURCE)
    }

    /// The same with `source` as the `[source]` table (and its sub-tables, such as
    /// `[source.ftp]`) instead of the local `inbox/`.
    pub fn with_source(
        db: Db,
        test: &str,
        url: String,
        then: &str,
        extra: &str,
        source: &str,
    ) -> Group {
        let site = Site::new();
        let handler =
            site.probe_handler(&then.replace("{dir}", &site.dir.path().display().to_string()));
        let group = Group {
            site,
            db,
            name: unique_group(&format!("{}-{test}", db.backend)),
            url,
            handler,
            extra: extra.to_string(),
            source: source.to_string(),
            default_timing: false,
        };
        let direct = group.write_config("migrate", "migrator", db.url);
        let mut migrate = Proc::spawn(
            group.site.dir.path(),
            &["--config", direct.to_str().unwrap(), "migrate"],
        );
        let status = migrate.wait_exit(LIMIT).expect("migrate exits");
        assert!(status.success(), "{}", migrate.output());
        group
    }

    /// Members started from now on run with the product's default poll interval and election
    /// timing (poll 5 s, heartbeat 1 s, liveness 5 s) instead of the fast test timing.
    pub fn at_default_timing(mut self) -> Group {
        self.default_timing = true;
        self
    }

    /// Writes `<file>.toml` for `member`.
    pub fn write_config(&self, file: &str, member: &str, url: &str) -> PathBuf {
        let (poll, timing) = if self.default_timing {
            (String::new(), String::new())
        } else {
            (
                "poll_interval = \"100ms\"".to_string(),
                format!(
                    "heartbeat_interval = \"{}ms\"\nliveness_timeout = \"{}ms\"\nrenew_deadline = \"{}ms\"",
                    HEARTBEAT.as_millis(),
                    LIVENESS.as_millis(),
                    RENEW.as_millis()
                ),
            )
        };
        let body = format!(
            r#"
member_id = "{member}"
group = "{group}"
{poll}
{extra}
[coordination]
backend = "{backend}"
{timing}
[coordination.{backend}]
url = "{url}"
{source}
[http]
bind = "127.0.0.1:0"
{handler}
"#,
            group = self.name,
            backend = self.db.backend,
            handler = self.handler,
            extra = self.extra,
            source = self.source,
        );
        let path = self.site.path(&format!("{file}.toml"));
        std::fs::write(&path, body).unwrap();
        path
    }

    /// Starts `member` and waits until it serves its endpoints.
    pub fn start(&self, member: &str) -> Member {
        self.start_at(member, &self.url)
    }

    /// Starts `member` reaching the database at `url` (its own proxy, say).
    pub fn start_at(&self, member: &str, url: &str) -> Member {
        let config = self.write_config(member, member, url);
        let proc = self.site.spawn(&config);
        let http = wait_for(LIMIT, || http_addr(&proc))
            .unwrap_or_else(|| panic!("{member} does not start:\n{}", proc.output()));
        Member {
            id: member.to_string(),
            config,
            proc,
            http,
        }
    }

    /// Starts `leader`, waits until it leads, then starts the others and waits until each has
    /// had a heartbeat acknowledged (so all three are live members of the group).
    pub fn start_three(&self, leader: &str, standbys: [&str; 2]) -> Vec<Member> {
        let first = self.start(leader);
        assert!(
            first.proc.wait_line("became leader", LIMIT).is_some(),
            "{}",
            first.proc.output()
        );
        let mut members = vec![first];
        for id in standbys {
            members.push(self.start(id));
        }
        for m in &members[1..] {
            let live = wait_for(LIMIT, || {
                m.metrics()
                    .filter(|s| s.heartbeats_ok > 0 && s.role == 0)
                    .map(|_| ())
            });
            assert!(live.is_some(), "{}: {}", m.id, m.proc.output());
        }
        members
    }

    /// Drops a file and waits until a handled line for it appears; returns that line.
    pub fn handle_one(&self, name: &str) -> String {
        self.site.drop_file(name, b"payload");
        self.wait_handled(name)
    }

    /// Waits until a handled line for `name` appears; returns the last one.
    pub fn wait_handled(&self, name: &str) -> String {
        let prefix = format!("{name} ");
        wait_for(LIMIT, || {
            self.site
                .handled()
                .into_iter()
                .rev()
                .find(|l| l.starts_with(&prefix))
        })
        .unwrap_or_else(|| panic!("{name} never handled: {:?}", self.site.handled()))
    }

    /// Waits until `name` was moved to `inbox/.done`.
    pub fn wait_done(&self, name: &str) -> bool {
        let path = self.site.path(&format!("inbox/.done/{name}"));
        wait_for(LIMIT, || path.exists().then_some(())).is_some()
    }

    /// The handled lines of member `id`.
    pub fn handled_by(&self, id: &str) -> Vec<String> {
        let needle = format!("member={id} ");
        self.site
            .handled()
            .into_iter()
            .filter(|l| l.contains(&needle))
            .collect()
    }
}

/// One running member.
pub struct Member {
    pub id: String,
    pub config: PathBuf,
    pub proc: Proc,
    pub http: SocketAddr,
}

/// The gauges and counters a test reads from `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scrape {
    /// 0 standby, 1 leader, 2 stopped.
    pub role: u64,
    pub term: u64,
    pub heartbeats_ok: u64,
    pub heartbeats_failed: u64,
    pub takeovers: u64,
    pub dispatched: u64,
    /// Work stopped locally, or writes refused by the store, after the term was lost.
    pub stops: u64,
}

impl Member {
    /// One scrape of `/metrics`; `None` if the process does not answer (dead or stopped).
    pub fn metrics(&self) -> Option<Scrape> {
        let text = http_get(self.http, "/metrics")?;
        let value = |name: &str| -> Option<u64> {
            // `name value` or `name{listener="..."} value`.
            text.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?;
                let rest = match rest.strip_prefix('{') {
                    Some(labels) => labels.split_once('}')?.1,
                    None => rest,
                };
                rest.strip_prefix(' ')?.parse().ok()
            })
        };
        Some(Scrape {
            role: value("ftpl_role")?,
            term: value("ftpl_term")?,
            heartbeats_ok: value("ftpl_heartbeats_ok_total")?,
            heartbeats_failed: value("ftpl_heartbeats_failed_total")?,
            takeovers: value("ftpl_takeovers_total")?,
            dispatched: value("ftpl_files_dispatched_total")?,
            stops: value("ftpl_leadership_stops_total")? + value("ftpl_fenced_writes_total")?,
        })
    }

    /// Waits until the metrics satisfy `ok`; returns the scrape and the instant it was taken.
    pub fn wait_metrics(
        &self,
        limit: Duration,
        ok: impl Fn(&Scrape) -> bool,
    ) -> Option<(Scrape, Instant)> {
        wait_for(limit, || {
            self.metrics()
                .filter(|s| ok(s))
                .map(|s| (s, Instant::now()))
        })
    }
}

/// The `http=` address of the "ftp-listener started" line.
fn http_addr(proc: &Proc) -> Option<SocketAddr> {
    let out = proc.output();
    let line = out.lines().find(|l| l.contains("ftp-listener started"))?;
    let at = line.find("http=")? + "http=".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// A bounded GET on the member's endpoint; the body, or `None` on any failure.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let timeout = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The first member among `members` whose log has "became leader", with the instant the line
/// arrived, waiting up to `limit`.
pub fn first_new_leader<'a>(
    members: &[&'a Member],
    limit: Duration,
) -> Option<(&'a Member, Instant)> {
    wait_for(limit, || {
        members
            .iter()
            .filter_map(|m| m.proc.line_at(&["became leader"]).map(|at| (*m, at)))
            .min_by_key(|(_, at)| *at)
    })
}

/// Failover times of one kind of event on one database, over several rounds.
#[derive(Debug)]
pub struct Measured {
    pub event: &'static str,
    pub bound: Duration,
    pub times: Vec<Duration>,
}

/// A markdown table of the measured failover times of `db`: min, median and max per event.
pub fn failover_table(db: Db, rows: &[Measured]) -> String {
    let mut out = format!(
        "failover times on {} (heartbeat {} ms, liveness {} ms):\n\
         | database | event | rounds | min ms | median ms | max ms | bound ms |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
        db.backend,
        HEARTBEAT.as_millis(),
        LIVENESS.as_millis()
    );
    for row in rows {
        let mut ms: Vec<u128> = row.times.iter().map(Duration::as_millis).collect();
        ms.sort_unstable();
        let (min, median, max) = match ms.as_slice() {
            [] => (0, 0, 0),
            all => (all[0], all[all.len() / 2], all[all.len() - 1]),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {min} | {median} | {max} | {} |\n",
            db.backend,
            row.event,
            ms.len(),
            row.bound.as_millis()
        ));
    }
    out
}
