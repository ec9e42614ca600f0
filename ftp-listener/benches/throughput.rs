//! Throughput against a baseline measured in the same run (issue 11): one `ftp-listener`
//! member on PostgreSQL drains a folder of small files, and downloads one large file to disk,
//! from vsftpd (LIST), proftpd (MLSD) and OpenSSH's sftp, on loopback and with the database
//! and the file server behind `testkit::TcpProxy` 10 ms away each way. The baseline fetches
//! the same files at the same parallelism: for SFTP curl (`PARALLEL` processes, each over one
//! reused connection by URL globbing; one curl to disk for the large file), for FTP a plain
//! client in this binary (`PARALLEL` sessions; see `PlainFtp` for why not curl); the listener
//! runs `max_in_flight = PARALLEL` over as many sessions.
//!
//! ```text
//! cargo bench -p ftp-listener --features postgres,ftp,sftp --bench throughput
//! ```
//!
//! Needs the servers of `scripts/test.sh` (PostgreSQL 127.0.0.1:5432 db `test`, vsftpd 2121,
//! proftpd 2122, sshd 2222) and curl. Environment (defaults in brackets):
//! `BENCH_FILES` [2000] small files (0 skips them) of `BENCH_FILE_KIB` [4] KiB; `BENCH_LARGE_MIB` [1024]
//! (0 skips the large file); `BENCH_PARALLEL` [4]; `BENCH_DELAY_MS` [10] (0 skips the
//! delayed runs); `BENCH_RUNS` [3]; `BENCH_SOURCES` [vsftpd,proftpd,sftp];
//! `BENCH_LINKS` [loopback,delayed]; `BENCH_SESSIONS` [`BENCH_PARALLEL` + 4, the README's
//! `max_in_flight + max_file_ops`]: the member's `max_sessions` (downloads, moves and the
//! listing share them; `BENCH_PARALLEL` alone gives the member the baseline's connections); `BENCH_SFTP_CHUNK_KIB` [the default]: the
//! SFTP reader's `chunk_size`; `BENCH_POST` [move]: the member's `post_processing` (`delete`
//! or `leave` tell what the moves cost); `BENCH_PG_DB` [test]: the PostgreSQL database (created if
//! missing); `BENCH_PIPELINING` [false]: the FTP source's `pipelining`; `BENCH_MOVE_CHECK` [size]: its `move_check`; `BENCH_LOCAL_DIR` [/dev/shm]: where the small files fetched are written (both
//! sides; see `local_dir`). The database transactions per file are read from `pg_stat_database` (with
//! `psql`): they count everything on that database, so give the bench one of its own.
//!
//! The last column is the handlers' own time (`ftpl_handler_duration_seconds_sum`: the
//! download, dispatch to return) over the slots' time (`max_in_flight` × ours): near 100 %
//! the downloads themselves bound the rate, well below it the slots wait for the machine
//! (claims, dispatch) or for a session.
//!
//! Ours is timed from the first dispatch to the last file done (handler `download` to local
//! disk, then the move to `.done` on the server and both ledger records): the listing, the
//! stability wait and the logins are not in it, so the plain FTP client is timed from its
//! logins too (curl's times include its start and login). Peak RSS is the member's `VmHWM`
//! (and curl's), sampled from /proc while it runs. FTP data connections go through proxies
//! too: the client talks to 127.0.0.2, and every passive port of the server is proxied from
//! 127.0.0.2 (EPSV names only the port).

mod support;
use support::scrape;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use testkit::TcpProxy;

const BIN: &str = env!("CARGO_BIN_EXE_ftp-listener");
const POSTGRES: &str = "127.0.0.1:5432";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn test_root() -> PathBuf {
    PathBuf::from(std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into()))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Vsftpd,
    Proftpd,
    Sftp,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Vsftpd => "vsftpd",
            Server::Proftpd => "proftpd",
            Server::Sftp => "sftp",
        }
    }
    fn port(self) -> u16 {
        match self {
            Server::Vsftpd => 2121,
            Server::Proftpd => 2122,
            Server::Sftp => 2222,
        }
    }
    /// The passive port range of `scripts/setup/30-ftp.sh`.
    fn passive(self) -> Vec<u16> {
        match self {
            Server::Vsftpd => (30000..=30099).collect(),
            Server::Proftpd => (30100..=30199).collect(),
            Server::Sftp => Vec::new(),
        }
    }
    /// Where the served files are on disk, and the owner of new ones.
    fn disk_root(self) -> (PathBuf, &'static str) {
        match self {
            Server::Vsftpd => (test_root().join("ftp/vsftpd"), "hatest"),
            Server::Proftpd => (test_root().join("ftp/proftpd"), "hatest"),
            Server::Sftp => (test_root().join("sftp/home"), "sftptest"),
        }
    }
    /// The path of `rel` (under the disk root) as the protocol names it.
    fn remote_path(self, rel: &str) -> String {
        match self {
            // The chrooted FTP user sees the served root as `/`.
            Server::Vsftpd | Server::Proftpd => format!("/{rel}"),
            Server::Sftp => self.disk_root().0.join(rel).display().to_string(),
        }
    }
}

/// How the member and curl reach the database and the server.
struct Link {
    name: String,
    /// Host and port of the file server.
    server: (String, u16),
    /// `host:port` of PostgreSQL.
    database: String,
    _proxies: Vec<TcpProxy>,
}

async fn link(server: Server, delay: Option<Duration>) -> Link {
    let Some(delay) = delay else {
        return Link {
            name: "loopback".into(),
            server: ("127.0.0.1".into(), server.port()),
            database: POSTGRES.into(),
            _proxies: Vec::new(),
        };
    };
    let mut proxies = Vec::new();
    let start = |listen: SocketAddr, target: SocketAddr| async move {
        let p = TcpProxy::start_on(listen, target)
            .await
            .unwrap_or_else(|e| panic!("proxy on {listen}: {e}"));
        p.set_delay(delay, delay);
        p
    };
    let db = start("127.0.0.1:0".parse().unwrap(), POSTGRES.parse().unwrap()).await;
    let database = db.addr().to_string();
    proxies.push(db);
    let server_addr = match server {
        Server::Sftp => {
            let p = start(
                "127.0.0.1:0".parse().unwrap(),
                SocketAddr::from(([127, 0, 0, 1], server.port())),
            )
            .await;
            let addr = ("127.0.0.1".to_string(), p.addr().port());
            proxies.push(p);
            addr
        }
        Server::Vsftpd | Server::Proftpd => {
            for port in std::iter::once(server.port()).chain(server.passive()) {
                proxies.push(
                    start(
                        SocketAddr::from(([127, 0, 0, 2], port)),
                        SocketAddr::from(([127, 0, 0, 1], port)),
                    )
                    .await,
                );
            }
            ("127.0.0.2".to_string(), server.port())
        }
    };
    Link {
        name: format!("{} ms each way", delay.as_millis()),
        server: server_addr,
        database,
        _proxies: proxies,
    }
}

/// Peak RSS (`VmHWM`, KiB) of a process, sampled until it is stopped.
struct RssWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn new(pid: u32) -> RssWatch {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some(kib) = vm_hwm(pid) else { break };
                p.fetch_max(kib, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssWatch {
            peak,
            stop,
            thread: Some(thread),
        }
    }
    /// Peak RSS in MiB.
    fn finish(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A fresh folder `<rel>/inbox` under the server's root, owned by the server's user.
fn fresh_folder(server: Server, tag: &str) -> (String, PathBuf) {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // Not `t-`: scripts/setup/30-ftp.sh sweeps those (another test run's setup would delete
    // the files mid-run). Removed at the end of each run.
    let rel = format!("bench-{tag}-{}-{nanos}", std::process::id());
    let (root, _) = server.disk_root();
    let dir = root.join(&rel);
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    (rel, dir)
}

fn chown_tree(dir: &Path, user: &str) {
    let ok = Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown {}", dir.display());
}

fn write_small_files(inbox: &Path, files: usize, size: usize) {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    for i in 0..files {
        std::fs::write(inbox.join(format!("f{i:05}.bin")), &data).unwrap();
    }
}

fn write_large_file(path: &Path, bytes: u64) {
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < bytes {
        for word in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        let n = (bytes - written).min(block.len() as u64) as usize;
        file.write_all(&block[..n]).unwrap();
        written += n as u64;
    }
    // On disk before anything is timed: its write-back would slow whichever copy runs first.
    file.into_inner().unwrap().sync_all().unwrap();
}

fn ftp_password() -> String {
    std::fs::read_to_string(test_root().join("ftp/password"))
        .expect("no FTP test server: run scripts/test.sh (or scripts/setup/30-ftp.sh)")
        .trim()
        .to_string()
}

/// A known_hosts that pins the test server's keys for `host:port` (the proxy's port).
fn known_hosts_for(port: u16, dir: &Path) -> PathBuf {
    let pinned = std::fs::read_to_string(test_root().join("sftp/known_hosts"))
        .expect("no sftp test server: run scripts/setup/40-sftp.sh")
        .replace("[127.0.0.1]:2222", &format!("[127.0.0.1]:{port}"));
    let path = dir.join("known_hosts");
    std::fs::write(&path, pinned).unwrap();
    path
}

/// The curl URL (and its auth arguments) of `remote` (a path on the server).
fn curl_base(server: Server, link: &Link) -> (String, Vec<String>) {
    let (host, port) = &link.server;
    match server {
        Server::Vsftpd | Server::Proftpd => (
            format!("ftp://{host}:{port}"),
            vec!["--user".into(), format!("hatest:{}", ftp_password())],
        ),
        Server::Sftp => {
            let key = test_root().join("sftp/client/id_ed25519");
            (
                format!("sftp://{host}:{port}"),
                vec![
                    "--insecure".into(),
                    "--user".into(),
                    "sftptest:".into(),
                    "--key".into(),
                    key.display().to_string(),
                    "--pubkey".into(),
                    key.with_extension("pub").display().to_string(),
                ],
            )
        }
    }
}

/// `parallel` curl processes fetch files `f00000..` of `remote_inbox` into `out`, each a
/// contiguous range over one connection. Returns the wall time and curl's peak RSS.
fn curl_small(
    server: Server,
    link: &Link,
    remote_inbox: &str,
    files: usize,
    parallel: usize,
    out: &Path,
) -> (Duration, f64) {
    let (base, auth) = curl_base(server, link);
    let per = files.div_ceil(parallel);
    let started = Instant::now();
    let mut children: Vec<(Child, RssWatch)> = Vec::new();
    for p in 0..parallel {
        let (from, to) = (p * per, ((p + 1) * per).min(files));
        if from >= to {
            break;
        }
        let child = Command::new("curl")
            .args(["--silent", "--show-error", "--fail"])
            .args(&auth)
            .arg(format!(
                "{base}{remote_inbox}/f[{from:05}-{:05}].bin",
                to - 1
            ))
            .arg("--output")
            .arg(out.join("#1.bin"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let watch = RssWatch::new(child.id());
        children.push((child, watch));
    }
    let mut rss: f64 = 0.0;
    for (mut child, watch) in children {
        let status = child.wait().unwrap();
        rss = rss.max(watch.finish());
        assert!(status.success(), "curl failed");
    }
    let elapsed = started.elapsed();
    let got = std::fs::read_dir(out).unwrap().count();
    assert_eq!(got, files, "curl fetched {got} of {files} files");
    (elapsed, rss)
}

/// A plain FTP client (blocking, no library): the FTP baseline. curl 7.88 (Debian 12) waits
/// one second before most data connections it opens on a reused control connection (seen with
/// `--trace-time` between the `229` reply and `Trying`, on vsftpd and proftpd alike), which
/// would make any baseline look slow. Per file: `EPSV`, connect, `RETR`, the data to EOF into
/// a local file, `226`: what curl sends, less its `SIZE`.
struct PlainFtp {
    host: String,
    control: std::io::BufReader<TcpStream>,
}

impl PlainFtp {
    fn login(host: &str, port: u16, user: &str, password: &str) -> PlainFtp {
        let stream = TcpStream::connect((host, port)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = PlainFtp {
            host: host.to_string(),
            control: std::io::BufReader::new(stream),
        };
        c.expect(220);
        c.command(&format!("USER {user}"), 331);
        c.command(&format!("PASS {password}"), 230);
        c.command("TYPE I", 200);
        c
    }

    /// Reads one reply (multi-line ones too); returns its code and last line.
    fn reply(&mut self) -> (u32, String) {
        use std::io::BufRead;
        let mut line = String::new();
        self.control.read_line(&mut line).unwrap();
        let code: u32 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if line.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                line.clear();
                self.control.read_line(&mut line).unwrap();
                if line.starts_with(&end) || line.is_empty() {
                    break;
                }
            }
        }
        (code, line)
    }

    fn expect(&mut self, code: u32) -> String {
        let (got, line) = self.reply();
        assert_eq!(got, code, "FTP reply: {line}");
        line
    }

    fn command(&mut self, command: &str, code: u32) -> String {
        self.control
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        self.expect(code)
    }

    /// Downloads `remote` into `local`; returns the bytes.
    fn retr(&mut self, remote: &str, local: &Path) -> u64 {
        // proftpd answers 425 while every passive port of its range is in TIME_WAIT (100
        // ports, thousands of transfers a minute): ask again, as a real client would.
        let mut line = String::new();
        for _ in 0..200 {
            self.control.get_mut().write_all(b"EPSV\r\n").unwrap();
            let (code, reply) = self.reply();
            line = reply;
            match code {
                229 => break,
                425 => std::thread::sleep(Duration::from_millis(10)),
                _ => panic!("EPSV: {line}"),
            }
        }
        let port: u16 = line
            .split('|')
            .nth(3)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("EPSV reply: {line}"));
        let mut data = TcpStream::connect((self.host.as_str(), port)).unwrap();
        self.command(&format!("RETR {remote}"), 150);
        let mut out = std::fs::File::create(local).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let got = data.read(&mut buf).unwrap();
            if got == 0 {
                break;
            }
            out.write_all(&buf[..got]).unwrap();
            n += got as u64;
        }
        drop(data);
        self.expect(226);
        n
    }
}

/// `parallel` plain FTP sessions fetch files `f00000..` of `remote_inbox` into `out`, each a
/// contiguous range. Returns the wall time from the moment all are logged in (RSS: this
/// process, not measured).
fn plain_ftp_small(
    link: &Link,
    remote_inbox: &str,
    files: usize,
    parallel: usize,
    out: &Path,
) -> Duration {
    let per = files.div_ceil(parallel);
    let password = ftp_password();
    // Timed once every session is logged in, as ours is timed from its first dispatch.
    let logged_in = std::sync::Barrier::new(parallel + 1);
    let started = std::thread::scope(|scope| {
        for p in 0..parallel {
            let (from, to) = (p * per, ((p + 1) * per).min(files));
            let (host, port) = (&link.server.0, link.server.1);
            let (password, logged_in) = (&password, &logged_in);
            scope.spawn(move || {
                let mut c = PlainFtp::login(host, port, "hatest", password);
                logged_in.wait();
                for i in from..to {
                    let name = format!("f{i:05}.bin");
                    c.retr(&format!("{remote_inbox}/{name}"), &out.join(&name));
                }
            });
        }
        logged_in.wait();
        Instant::now()
    });
    let elapsed = started.elapsed();
    let got = std::fs::read_dir(out).unwrap().count();
    assert_eq!(
        got, files,
        "the plain client fetched {got} of {files} files"
    );
    elapsed
}

fn curl_large(
    server: Server,
    link: &Link,
    remote: &str,
    out: &Path,
    bytes: u64,
) -> (Duration, f64) {
    let (base, auth) = curl_base(server, link);
    let started = Instant::now();
    let mut child = Command::new("curl")
        .args(["--silent", "--show-error", "--fail"])
        .args(&auth)
        .arg(format!("{base}{remote}"))
        .arg("--output")
        .arg(out)
        .spawn()
        .unwrap();
    let watch = RssWatch::new(child.id());
    let status = child.wait().unwrap();
    let rss = watch.finish();
    let elapsed = started.elapsed();
    assert!(status.success(), "curl failed");
    assert_eq!(std::fs::metadata(out).unwrap().len(), bytes);
    (elapsed, rss)
}

fn wait_until(limit: Duration, every: Duration, mut f: impl FnMut() -> bool) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(Instant::now());
        }
        std::thread::sleep(every);
    }
    None
}

fn http_addr(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    let at = text.find("http=")?;
    text[at + 5..].split_whitespace().next()?.parse().ok()
}

/// The `[source]` tables of the member's config.
fn source_toml(
    server: Server,
    link: &Link,
    remote_inbox: &str,
    parallel: usize,
    work: &Path,
) -> String {
    let (host, port) = &link.server;
    // `max_file_ops` is 4 (its default).
    let sessions: usize = env_or("BENCH_SESSIONS", parallel + 4);
    match server {
        Server::Vsftpd | Server::Proftpd => format!(
            r#"[source]
kind = "ftp"
path = "{remote_inbox}"
[source.ftp]
host = "{host}"
port = {port}
user = "hatest"
password_file = "{password}"
max_sessions = {sessions}
pipelining = {pipelining}
move_check = "{move_check}"
"#,
            password = test_root().join("ftp/password").display(),
            pipelining = env_or("BENCH_PIPELINING", false),
            move_check = env_or("BENCH_MOVE_CHECK", "size".to_string()),
        ),
        Server::Sftp => format!(
            r#"[source]
kind = "sftp"
path = "{remote_inbox}"
[source.sftp]
host = "{host}"
port = {port}
user = "sftptest"
known_hosts = "{known_hosts}"
max_sessions = {sessions}
{chunk}
[source.sftp.auth]
method = "key"
key_file = "{key}"
"#,
            chunk = std::env::var("BENCH_SFTP_CHUNK_KIB")
                .ok()
                .and_then(|k| k.parse::<usize>().ok())
                .map_or(String::new(), |k| format!("chunk_size = {}", k * 1024)),
            known_hosts = known_hosts_for(*port, work).display(),
            key = test_root().join("sftp/client/id_ed25519").display(),
        ),
    }
}

/// Transactions committed or rolled back in the bench's database so far (every store call
/// of ours is one statement in autocommit: one round trip), or `None` without `psql`.
fn db_transactions() -> Option<u64> {
    let db = env_or("BENCH_PG_DB", "test".to_string());
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", &db, "-Atc"])
        .arg(format!(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{db}'"
        ))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// One member drains `remote_inbox` (`files` files) into `out`: the time from its first
/// dispatch to the last file done, its peak RSS, and the database transactions of the whole
/// run (start, heartbeats and the ledger's statements).
fn ours(
    server: Server,
    link: &Link,
    remote_inbox: &str,
    files: usize,
    parallel: usize,
    out: &Path,
) -> (Duration, f64, Option<u64>, f64) {
    let before = db_transactions();
    let work = tempfile::tempdir().unwrap();
    let group = format!(
        "throughput-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let config = format!(
        r#"member_id = "bench"
group = "{group}"
poll_interval = "1s"
max_in_flight = {parallel}
post_processing = "{post}"
[stability]
unchanged_across_listings = false
[coordination]
backend = "postgres"
migrate_on_start = true
[coordination.postgres]
url = "postgres://postgres@{database}/{db}"
[handler]
kind = "download"
dir = "{out}"
[http]
bind = "127.0.0.1:0"
{source}"#,
        database = link.database,
        db = env_or("BENCH_PG_DB", "test".to_string()),
        post = env_or("BENCH_POST", "move".to_string()),
        out = out.display(),
        source = source_toml(server, link, remote_inbox, parallel, work.path()),
    );
    std::fs::write(work.path().join("bench.toml"), config).unwrap();
    let log = work.path().join("log");
    let mut child: Child = Command::new(BIN)
        .args(["--config", "bench.toml", "run"])
        .current_dir(work.path())
        .env("RUST_LOG", "warn,listener::service=info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let rss = RssWatch::new(child.id());
    let limit = Duration::from_secs(3600);
    let mut addr = None;
    let fail = |what: &str| -> ! {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("{what}; the member's log:\n{text}");
    };
    wait_until(limit, Duration::from_millis(20), || {
        addr = http_addr(&log);
        addr.is_some() || !matches!(child.try_wait(), Ok(None))
    });
    let Some(addr) = addr else {
        fail("the member did not start")
    };
    let every = Duration::from_millis(10);
    let mut exited = false;
    let mut alive = |child: &mut Child| {
        exited = exited || !matches!(child.try_wait(), Ok(None));
        !exited
    };
    let first = wait_until(limit, every, || {
        !alive(&mut child) || scrape(addr, "ftpl_files_dispatched_total").is_some_and(|n| n >= 1.0)
    });
    let done = wait_until(limit, every, || {
        !alive(&mut child)
            || scrape(addr, "ftpl_files_done_total").is_some_and(|n| n >= files as f64)
    });
    let (Some(first), Some(done), false) = (first, done, exited) else {
        fail("the member exited or did not drain")
    };
    let rss = rss.finish();
    // Where the time goes: the handlers' own time (dispatch to return), against the slots.
    let busy = scrape(addr, "ftpl_handler_duration_seconds_sum").unwrap_or(f64::NAN);
    // Which store calls the database transactions were.
    let calls = ["claims", "records", "lookups"].map(|c| {
        scrape(addr, &format!("ftpl_ledger_{c}_total")).map_or(f64::NAN, |n| n / files as f64)
    });
    eprintln!(
        "  ledger calls per file: claims {:.3}, records {:.3}, lookups {:.3}",
        calls[0], calls[1], calls[2]
    );
    let _ = child.kill();
    let _ = child.wait();
    // A server process publishes its counts at the latest when its connection ends.
    std::thread::sleep(Duration::from_millis(1500));
    let transactions = before
        .zip(db_transactions())
        .map(|(b, a)| a.saturating_sub(b + 1));
    (done - first, rss, transactions, busy)
}

#[derive(Clone, Copy)]
struct Sample {
    ours: Duration,
    base: Duration,
    ours_rss: f64,
    base_rss: f64,
    /// Database transactions per file (NaN when not measured).
    db_per_file: f64,
    /// The share of the handler slots' time spent in handlers (NaN when not measured).
    busy: f64,
}

struct Row {
    scenario: String,
    source: &'static str,
    link: String,
    /// Units per sample (files or MB), for the rates.
    units: f64,
    unit: &'static str,
    samples: Vec<Sample>,
}

fn min_med_max(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

impl Row {
    fn line(&self) -> String {
        let rate = |d: Duration| self.units / d.as_secs_f64().max(1e-9);
        let (o0, o1, o2) = min_med_max(self.samples.iter().map(|s| rate(s.ours)).collect());
        let (b0, b1, b2) = min_med_max(self.samples.iter().map(|s| rate(s.base)).collect());
        let (r0, r1, r2) = min_med_max(
            self.samples
                .iter()
                .map(|s| rate(s.ours) / rate(s.base))
                .collect(),
        );
        let rss = self.samples.iter().map(|s| s.ours_rss).fold(0.0, f64::max);
        let base_rss = self
            .samples
            .iter()
            .map(|s| s.base_rss)
            .fold(f64::NAN, f64::max);
        let base_rss = if base_rss.is_nan() {
            "– (in-process client)".to_string()
        } else {
            format!("{base_rss:.0} MiB")
        };
        let db: Vec<f64> = self
            .samples
            .iter()
            .map(|s| s.db_per_file)
            .filter(|d| !d.is_nan())
            .collect();
        let db = if db.is_empty() {
            "–".to_string()
        } else {
            format!("{:.2}", min_med_max(db).1)
        };
        let busy: Vec<f64> = self
            .samples
            .iter()
            .map(|s| s.busy)
            .filter(|b| !b.is_nan())
            .collect();
        let busy = if busy.is_empty() {
            "–".to_string()
        } else {
            format!("{:.0} %", 100.0 * min_med_max(busy).1)
        };
        format!(
            "| {} | {} | {} | {o0:.0} / {o1:.0} / {o2:.0} {u} | {b0:.0} / {b1:.0} / {b2:.0} {u} | {r0:.2} / {r1:.2} / {r2:.2} | {rss:.0} MiB | {base_rss} | {db} | {busy} |",
            self.scenario,
            self.source,
            self.link,
            u = self.unit,
        )
    }
}

/// Where ours and the baseline write what they fetch: `BENCH_LOCAL_DIR`, else `/dev/shm` when
/// it is a folder, else the system's temporary folder. On this machine's ext4 (no journal)
/// creating a file right after thousands were deleted (the previous run's clean-up) scans
/// past every recently deleted inode (`recently_deleted` in `perf`), which then bounds the
/// small-files rate of whichever side comes first; tmpfs measures the transfers.
fn local_dir() -> tempfile::TempDir {
    let base = std::env::var("BENCH_LOCAL_DIR")
        .map(PathBuf::from)
        .ok()
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(base).unwrap()
}

fn small_files(server: Server, link: &Link, files: usize, kib: usize, parallel: usize) -> Sample {
    let (rel, dir) = fresh_folder(server, "small");
    write_small_files(&dir.join("inbox"), files, kib * 1024);
    chown_tree(&dir, server.disk_root().1);
    let remote_inbox = server.remote_path(&format!("{rel}/inbox"));
    let local = local_dir();
    let curl_out = local.path().join("curl");
    std::fs::create_dir_all(&curl_out).unwrap();
    let (base, base_rss) = match server {
        Server::Sftp => curl_small(server, link, &remote_inbox, files, parallel, &curl_out),
        Server::Vsftpd | Server::Proftpd => (
            plain_ftp_small(link, &remote_inbox, files, parallel, &curl_out),
            f64::NAN,
        ),
    };
    let ours_out = local.path().join("ours");
    let (ours, ours_rss, transactions, busy) =
        ours(server, link, &remote_inbox, files, parallel, &ours_out);
    let busy = busy / (ours.as_secs_f64() * parallel as f64);
    let post = env_or("BENCH_POST", "move".to_string());
    let moved = std::fs::read_dir(dir.join("inbox/.done")).map_or(0, |d| d.count());
    assert_eq!(
        moved,
        if post == "move" { files } else { 0 },
        "files moved to .done"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Sample {
        ours,
        base,
        ours_rss,
        base_rss,
        db_per_file: transactions.map_or(f64::NAN, |t| t as f64 / files as f64),
        busy,
    }
}

fn large_file(server: Server, link: &Link, bytes: u64) -> Sample {
    let (rel, dir) = fresh_folder(server, "large");
    write_large_file(&dir.join("inbox/large.bin"), bytes);
    chown_tree(&dir, server.disk_root().1);
    let remote_inbox = server.remote_path(&format!("{rel}/inbox"));
    let local = tempfile::tempdir().unwrap();
    let remote = format!("{remote_inbox}/large.bin");
    let copy = local.path().join("curl.bin");
    let (base, base_rss) = match server {
        Server::Sftp => curl_large(server, link, &remote, &copy, bytes),
        Server::Vsftpd | Server::Proftpd => {
            let (host, port) = (&link.server.0, link.server.1);
            let mut c = PlainFtp::login(host, port, "hatest", &ftp_password());
            let started = Instant::now();
            assert_eq!(c.retr(&remote, &copy), bytes);
            (started.elapsed(), f64::NAN)
        }
    };
    let _ = std::fs::remove_file(local.path().join("curl.bin"));
    let ours_out = local.path().join("ours");
    let (ours, ours_rss, _, busy) = ours(server, link, &remote_inbox, 1, 1, &ours_out);
    let busy = busy / ours.as_secs_f64();
    let got = std::fs::metadata(ours_out.join("large.bin")).map_or(0, |m| m.len());
    assert_eq!(got, bytes, "our copy");
    assert_eq!(
        std::fs::metadata(dir.join("inbox/.done/large.bin"))
            .map(|m| m.size())
            .ok(),
        Some(bytes)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Sample {
        ours,
        base,
        ours_rss,
        base_rss,
        db_per_file: f64::NAN,
        busy,
    }
}

fn main() {
    // The bench's database, made when missing (an error says it exists).
    let db = env_or("BENCH_PG_DB", "test".to_string());
    let _ = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
        .arg(format!("CREATE DATABASE \"{db}\""))
        .stderr(Stdio::null())
        .status();
    let files: usize = env_or("BENCH_FILES", 2000);
    let kib: usize = env_or("BENCH_FILE_KIB", 4);
    let large_mib: u64 = env_or("BENCH_LARGE_MIB", 1024);
    let parallel: usize = env_or("BENCH_PARALLEL", 4);
    let delay_ms: u64 = env_or("BENCH_DELAY_MS", 10);
    let runs: usize = env_or::<usize>("BENCH_RUNS", 3).max(1);
    let sources: String = env_or("BENCH_SOURCES", "vsftpd,proftpd,sftp".to_string());
    let links: String = env_or("BENCH_LINKS", "loopback,delayed".to_string());
    let servers: Vec<Server> = [Server::Vsftpd, Server::Proftpd, Server::Sftp]
        .into_iter()
        .filter(|s| sources.split(',').any(|n| n.trim() == s.name()))
        .collect();
    let mut delays = Vec::new();
    if links.contains("loopback") {
        delays.push(None);
    }
    if links.contains("delayed") && delay_ms > 0 {
        delays.push(Some(Duration::from_millis(delay_ms)));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for &server in &servers {
        for &delay in &delays {
            let link = runtime.block_on(link(server, delay));
            if files > 0 {
                let mut row = Row {
                    scenario: format!("{files} × {kib} KiB, {parallel} parallel"),
                    source: server.name(),
                    link: link.name.clone(),
                    units: files as f64,
                    unit: "files/s",
                    samples: Vec::new(),
                };
                for run in 0..runs {
                    eprintln!(
                        "{} / {} / small files, run {}",
                        server.name(),
                        link.name,
                        run + 1
                    );
                    row.samples
                        .push(small_files(server, &link, files, kib, parallel));
                }
                eprintln!("{}", row.line());
                rows.push(row);
            }
            if large_mib > 0 {
                let bytes = large_mib << 20;
                let mut row = Row {
                    scenario: format!("{large_mib} MiB file to disk"),
                    source: server.name(),
                    link: link.name.clone(),
                    units: bytes as f64 / 1e6,
                    unit: "MB/s",
                    samples: Vec::new(),
                };
                for run in 0..runs {
                    eprintln!(
                        "{} / {} / large file, run {}",
                        server.name(),
                        link.name,
                        run + 1
                    );
                    row.samples.push(large_file(server, &link, bytes));
                }
                eprintln!("{}", row.line());
                rows.push(row);
            }
        }
    }
    println!();
    println!(
        "| scenario | source | link | ours (min / median / max) | baseline, same run | ratio | peak RSS ours | peak RSS baseline | db transactions per file (median; whole run) | handler slots busy (median) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!("{}", row.line());
    }
}
