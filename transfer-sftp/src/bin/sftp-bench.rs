//! sftp-bench: reads a 1 GiB file over SFTP with our reader and with `curl sftp://` in the same
//! run, lists 100,000 entries, and prints a table (MB/s, peak RSS).
//!
//! Needs the test server of `scripts/setup/40-sftp.sh`:
//! `cargo run --release -p transfer-sftp --bin sftp-bench`
//! Environment: `TEST_ROOT` (default /tmp/ha-listener-test), `SFTP_BENCH_MB` (default 1024).

use std::error::Error;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use coord_core::{FileReader, ListOptions, RemoteFs};
use transfer_sftp::{AuthSettings, SecretSource, SftpFs, SftpSettings};

const HOST: &str = "127.0.0.1";
const PORT: u16 = 2222;
const USER: &str = "sftptest";
const BENCH_FILE: &str = "bench-1g.bin";
const LIST_DIR: &str = "t-100k";
const LIST_ENTRIES: usize = 100_000;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// A field of /proc/self/status in KiB (VmHWM: peak resident set; VmRSS: current).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

/// Creates the benchmark file (pseudo-random bytes, so compression would not help) once.
fn ensure_file(home: &Path, size: u64) -> Result<PathBuf> {
    let path = home.join(BENCH_FILE);
    if std::fs::metadata(&path).map(|m| m.len()).ok() == Some(size) {
        return Ok(path);
    }
    eprintln!("creating {} ({} MiB)...", path.display(), size >> 20);
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        for word in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        let n = (size - written).min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        written += n as u64;
    }
    file.flush()?;
    let meta = std::fs::metadata(home)?;
    std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid()))?;
    Ok(path)
}

fn ensure_listing_dir(home: &Path) -> Result<()> {
    let dir = home.join(LIST_DIR);
    if dir.join(format!("file-{:06}", LIST_ENTRIES - 1)).exists() {
        return Ok(());
    }
    eprintln!("creating {LIST_ENTRIES} files in {}...", dir.display());
    std::fs::create_dir_all(&dir)?;
    for i in 0..LIST_ENTRIES {
        std::fs::File::create(dir.join(format!("file-{i:06}")))?;
    }
    Ok(())
}

async fn read_with_ours(fs: &SftpFs, expected: u64) -> Result<Duration> {
    let started = Instant::now();
    let mut reader = fs.open_read(BENCH_FILE).await?;
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
    let elapsed = started.elapsed();
    if total != expected {
        return Err(format!("our reader got {total} bytes, expected {expected}").into());
    }
    Ok(elapsed)
}

fn read_with_curl(root: &Path, expected: u64) -> Result<Duration> {
    let key = root.join("client/id_ed25519");
    let started = Instant::now();
    let out = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--insecure",
            "--output",
            "/dev/null",
        ])
        .args(["--write-out", "%{size_download}"])
        .arg("--user")
        .arg(format!("{USER}:"))
        .arg("--key")
        .arg(&key)
        .arg("--pubkey")
        .arg(key.with_extension("pub"))
        .arg(format!("sftp://{HOST}:{PORT}/~/{BENCH_FILE}"))
        .output()?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        return Err(format!("curl failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let got: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if got != expected {
        return Err(format!("curl got {got} bytes, expected {expected}").into());
    }
    Ok(elapsed)
}

#[tokio::main]
async fn main() -> Result<()> {
    let test_root = std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into());
    let root = PathBuf::from(test_root).join("sftp");
    let home = root.join("home");
    if !root.join("sshd_config").exists() {
        return Err("no test server: run `bash scripts/setup/40-sftp.sh` first".into());
    }
    let mb: u64 = std::env::var("SFTP_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = mb << 20;
    let path = ensure_file(&home, size)?;
    ensure_listing_dir(&home)?;
    // Warm the page cache so that neither contender pays for the disk.
    std::io::copy(&mut std::fs::File::open(&path)?, &mut std::io::sink())?;

    let settings = |chunk: usize| {
        let mut s = SftpSettings::new(
            HOST,
            PORT,
            USER,
            AuthSettings::Password {
                password: SecretSource::File {
                    file: root.join("password"),
                },
            },
            root.join("known_hosts"),
        );
        s.chunk_size = chunk;
        s
    };

    let rss_start = status_kib("VmRSS:");
    let mut rows = Vec::new();
    for chunk in [256 * 1024, 1024 * 1024] {
        let fs = SftpFs::new(settings(chunk))?;
        fs.check().await?;
        let ours = read_with_ours(&fs, size).await?;
        let curl = read_with_curl(&root, size)?;
        rows.push((
            chunk,
            mb_per_s(size, ours),
            mb_per_s(size, curl),
            status_kib("VmHWM:"),
        ));
    }

    println!("\nsftp read of {mb} MiB over 127.0.0.1:{PORT} (OpenSSH internal-sftp)");
    println!("| reader chunk | ours MB/s | curl sftp:// MB/s | ours/curl | our peak RSS (VmHWM) |");
    println!("|---|---|---|---|---|");
    for (chunk, ours, curl, hwm) in &rows {
        println!(
            "| {} KiB | {ours:.1} | {curl:.1} | {:.2} | {:.1} MiB |",
            chunk / 1024,
            ours / curl,
            *hwm as f64 / 1024.0
        );
    }

    let fs = SftpFs::new(settings(256 * 1024))?;
    fs.check().await?;
    let hwm_before = status_kib("VmHWM:");
    let rss_before = status_kib("VmRSS:");
    let started = Instant::now();
    let listing = fs.list(LIST_DIR, &ListOptions::default()).await?;
    let elapsed = started.elapsed();
    let rss_after = status_kib("VmRSS:");
    println!("\nlisting of {LIST_DIR}");
    println!(
        "| entries | skipped | time | RSS before | RSS with listing held | VmHWM before → after |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.2} s | {:.1} MiB | {:.1} MiB | {:.1} → {:.1} MiB |",
        listing.entries.len(),
        listing.skipped,
        elapsed.as_secs_f64(),
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm_before as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0,
    );
    println!(
        "(process RSS at start: {:.1} MiB)",
        rss_start as f64 / 1024.0
    );
    if listing.entries.len() != LIST_ENTRIES {
        return Err(format!(
            "listed {} entries, expected {LIST_ENTRIES}",
            listing.entries.len()
        )
        .into());
    }
    Ok(())
}
