//! `cargo run --release -p transfer-ftp --bin ftp-bench`: throughput of our streaming reader
//! against curl, per server and mode, and a 100,000-entry listing, against the servers of
//! `scripts/setup/30-ftp.sh` (run it first). Prints markdown tables.
//!
//! Options: `--size-mib N` (default 1024), `--entries N` (default 100000), `--runs N`
//! (default 3; medians are reported).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coord_core::{FileReader, ListOptions, RemoteFs};
use transfer_ftp::{FtpFs, FtpSettings, TlsMode};

type Error = Box<dyn std::error::Error>;

struct Server {
    name: &'static str,
    port: u16,
    root: &'static str,
}

const SERVERS: [Server; 2] = [
    Server {
        name: "vsftpd",
        port: 2121,
        root: "vsftpd",
    },
    Server {
        name: "proftpd",
        port: 2122,
        root: "proftpd",
    },
];

fn ftp_root() -> PathBuf {
    let root = std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into());
    PathBuf::from(root).join("ftp")
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn settings(server: &Server, tls: bool) -> FtpSettings {
    let mut s = FtpSettings::new("127.0.0.1", server.port, "hatest");
    s.password_file = Some(ftp_root().join("password"));
    s.op_timeout = Duration::from_secs(120);
    if tls {
        s.tls = TlsMode::Explicit;
        s.ca_file = Some(ftp_root().join("tls/ca.pem"));
    }
    s
}

/// A sparse file of `size` bytes on the server's disk (reads cost no disk I/O).
fn big_file(server: &Server, size: u64) -> Result<String, Error> {
    let dir = ftp_root().join(server.root).join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("big-{size}.bin"));
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(size) {
        std::fs::File::create(&path)?.set_len(size)?;
    }
    Ok(format!("/bench/big-{size}.bin"))
}

async fn ours(fs: &FtpFs, path: &str) -> Result<(u64, Duration), Error> {
    let start = Instant::now();
    let mut reader = fs.open_read(path).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    reader.finish().await?;
    Ok((total, start.elapsed()))
}

fn curl(server: &Server, tls: bool, path: &str) -> Result<(u64, Duration), Error> {
    curl_with(server, tls, path, None)
}

/// curl fetching `path`; `list_command` replaces its listing command (`-X MLSD`).
fn curl_with(
    server: &Server,
    tls: bool,
    path: &str,
    list_command: Option<&str>,
) -> Result<(u64, Duration), Error> {
    let password = std::fs::read_to_string(ftp_root().join("password"))?;
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        "--config",
        "-",
    ]);
    if tls {
        cmd.args(["--ssl-reqd", "-k"]);
    }
    if let Some(command) = list_command {
        cmd.args(["-X", command]);
    }
    cmd.arg(format!("ftp://127.0.0.1:{}{path}", server.port));
    // The credentials go through stdin, not the command line (visible in ps).
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let start = Instant::now();
    child
        .stdin
        .take()
        .ok_or("curl stdin")?
        .write_all(format!("user = \"hatest:{}\"\n", password.trim()).as_bytes())?;
    let out = child.wait_with_output()?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        return Err(format!("curl failed: {}", out.status).into());
    }
    let size = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    Ok((size, elapsed))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// `count` empty files in `bench/many-<count>` on the server's disk (made once).
fn many_files(server: &Server, count: u64) -> Result<String, Error> {
    let dir = ftp_root()
        .join(server.root)
        .join(format!("bench/many-{count}"));
    // The files are an hour old: a leader lists such a folder all day. (Files written in the
    // last two minutes cost a LIST-only server one `MDTM` each at every listing, see
    // `mtimes.rs`; the small-files bench of `ftp-listener` measures that case.)
    let marker = dir.with_extension("aged");
    if !marker.exists() {
        std::fs::create_dir_all(&dir)?;
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for i in 0..count {
            std::fs::File::create(dir.join(format!("file-{i:07}.dat")))?.set_modified(old)?;
        }
        std::fs::File::create(&marker)?;
    }
    Ok(format!("/bench/many-{count}"))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let size = arg("--size-mib", 1024) * 1024 * 1024;
    let entries = arg("--entries", 100_000);
    let runs = arg("--runs", 3).max(1);
    println!(
        "## streaming read of a {} MiB file (median of {runs} runs)\n",
        size / 1024 / 1024
    );
    println!("| server | mode | our MB/s | curl MB/s | our peak RSS (VmHWM) |");
    println!("|---|---|---|---|---|");
    for server in SERVERS.iter().filter(|_| size > 0) {
        let path = big_file(server, size)?;
        for tls in [false, true] {
            let fs = FtpFs::new(settings(server, tls))?;
            // Alternate ours and curl, `runs` times each, and report the medians: the machine
            // is shared, single runs are noisy.
            let (mut our_rates, mut curl_rates) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let (got, ours_time) = ours(&fs, &path).await?;
                assert_eq!(got, size, "short read");
                our_rates.push(mbps(got, ours_time));
                let (curl_got, curl_time) = curl(server, tls, &path)?;
                assert_eq!(curl_got, size, "curl short read");
                curl_rates.push(mbps(curl_got, curl_time));
            }
            println!(
                "| {} | {} | {:.0} | {:.0} | {} MiB |",
                server.name,
                if tls { "ftps (explicit)" } else { "plain" },
                median(&mut our_rates),
                median(&mut curl_rates),
                vm_hwm_kib() / 1024
            );
        }
    }

    println!("\n## listing a directory of {entries} entries (median of {runs} runs)\n");
    println!(
        "| server | command | entries | skipped | first listing | unchanged listing | curl's raw listing, same command | ratio | curl's raw LIST | VmHWM before | VmHWM after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for server in &SERVERS {
        let dir = many_files(server, entries)?;
        let fs = FtpFs::new(settings(server, false))?;
        let before = vm_hwm_kib();
        // The first listing of a LIST-only server asks each file's time once (MDTM); the
        // polls after it list unchanged entries, which is what a leader does all day.
        let start = Instant::now();
        let listing = fs.list(&dir, &ListOptions::default()).await?;
        let first = start.elapsed();
        // The baseline lists with the command we list with (MLSD where the server offers
        // it: proftpd's MLSD alone takes about twice its LIST), and LIST for reference.
        let mlsd = server.name == "proftpd";
        let (mut ours, mut raw, mut raw_list) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let start = Instant::now();
            let again = fs.list(&dir, &ListOptions::default()).await?;
            ours.push(start.elapsed().as_secs_f64());
            assert_eq!(again.entries.len(), listing.entries.len());
            let (_, took) = curl_with(server, false, &format!("{dir}/"), mlsd.then_some("MLSD"))?;
            raw.push(took.as_secs_f64());
            if mlsd {
                let (_, took) = curl(server, false, &format!("{dir}/"))?;
                raw_list.push(took.as_secs_f64());
            }
        }
        let (ours, raw) = (median(&mut ours), median(&mut raw));
        let raw_list = if mlsd {
            format!("{:.2} s", median(&mut raw_list))
        } else {
            "(the same)".to_string()
        };
        println!(
            "| {} | {} | {} | {} | {:.2} s | {ours:.2} s | {raw:.2} s | {:.2} | {raw_list} | {} MiB | {} MiB |",
            server.name,
            if mlsd { "MLSD" } else { "LIST" },
            listing.entries.len(),
            listing.skipped,
            first.as_secs_f64(),
            ours / raw,
            before / 1024,
            vm_hwm_kib() / 1024
        );
    }
    Ok(())
}
