//! Issue 7, the cases the real servers cannot show: a LIST-only server without `MDTM` (no
//! time is invented: mtime `None`, one warning per session) and `MDTM` refused for one file
//! (that file is skipped for the listing, the others are listed). Against a scripted FTP
//! server on loopback.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use coord_core::{ListOptions, Listing, RemoteFs};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use transfer_ftp::{FtpFs, FtpSettings, PassiveMode, Secret};

/// What the scripted server says.
#[derive(Clone)]
struct Script {
    feat_mdtm: bool,
    list: Vec<&'static str>,
    /// Absolute path → the whole MDTM reply line.
    mdtm: HashMap<&'static str, &'static str>,
    /// Every command received, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// Loses the commands that came with an `MDTM` (read from the connection together with
    /// it), as a server that does not read the control connection as a stream would.
    loses_pipelined: bool,
}

async fn start(script: Script) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::spawn(session(conn, script.clone()));
        }
    });
    port
}

async fn session(conn: tokio::net::TcpStream, s: Script) {
    let (read, mut write) = conn.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 fake\r\n").await.unwrap();
    let mut data: Option<TcpListener> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if s.loses_pipelined && line.starts_with("MDTM") {
            let reader = lines.get_mut();
            let buffered = reader.buffer().len();
            std::pin::Pin::new(reader).consume(buffered);
        }
        s.seen.lock().unwrap().push(line.clone());
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let reply = match verb.to_ascii_uppercase().as_str() {
            "USER" => "331 password please\r\n".to_string(),
            "PASS" => "230 in\r\n".to_string(),
            "TYPE" | "NOOP" => "200 ok\r\n".to_string(),
            "FEAT" if s.feat_mdtm => "211-Features:\r\n MDTM\r\n SIZE\r\n211 End\r\n".to_string(),
            "FEAT" => "211-Features:\r\n SIZE\r\n211 End\r\n".to_string(),
            "PWD" => "257 \"/\" is the current directory\r\n".to_string(),
            "CWD" => "250 ok\r\n".to_string(),
            "EPSV" => {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let port = l.local_addr().unwrap().port();
                data = Some(l);
                format!("229 Entering Extended Passive Mode (|||{port}|)\r\n")
            }
            "LIST" => {
                write.write_all(b"150 here it comes\r\n").await.unwrap();
                let (mut d, _) = data.take().unwrap().accept().await.unwrap();
                for l in &s.list {
                    d.write_all(format!("{l}\r\n").as_bytes()).await.unwrap();
                }
                d.shutdown().await.unwrap();
                drop(d);
                "226 done\r\n".to_string()
            }
            "MDTM" => match s.mdtm.get(arg) {
                Some(r) => format!("{r}\r\n"),
                None => "550 Could not get file modification time.\r\n".to_string(),
            },
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => "502 not here\r\n".to_string(),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn fs(port: u16) -> FtpFs {
    fs_with(port, Duration::from_secs(10), false)
}

fn fs_with(port: u16, op_timeout: Duration, pipelining: bool) -> FtpFs {
    let mut settings = FtpSettings::new("127.0.0.1", port, "u");
    settings.password = Some(Secret::new("p"));
    settings.passive_mode = PassiveMode::Epsv;
    settings.op_timeout = op_timeout;
    settings.pipelining = pipelining;
    FtpFs::new(settings).unwrap()
}

fn mtime_of(listing: &Listing, name: &str) -> Option<u64> {
    let e = listing.entries.iter().find(|e| e.name == name).unwrap();
    e.mtime
        .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const LINES: [&str; 4] = [
    "-rw-r--r--    1 0        0               5 Nov 27 11:22 recent",
    "-rw-r--r--    1 0        0               7 Mar 03  2025 old",
    "drwxr-xr-x    2 0        0            4096 Mar 03  2025 dir",
    "-rw-r--r--    1 0        0               9 Mar 03  2025 gone",
];

/// Neither MLSD nor MDTM: no time is made up from the LIST line or the node's clock.
#[tokio::test]
async fn without_mdtm_files_have_no_mtime_and_one_warning_per_session() {
    let captured = Captured::default();
    let writer = captured.clone();
    // This thread's subscriber (`#[tokio::test]` runs the test and the fake server on it), so
    // the other tests of this binary may share the process.
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = start(Script {
        feat_mdtm: false,
        list: LINES.to_vec(),
        mdtm: HashMap::new(),
        seen: seen.clone(),
        loses_pipelined: false,
    })
    .await;
    let fs = fs(port);
    for _ in 0..2 {
        let listing = fs.list("/in", &ListOptions::default()).await.unwrap();
        assert_eq!(listing.entries.len(), 4);
        assert_eq!(listing.skipped, 0);
        for name in ["recent", "old", "dir", "gone"] {
            assert_eq!(mtime_of(&listing, name), None, "{name}");
        }
    }
    assert_eq!(fs.sessions_opened(), 1);
    assert_eq!(fs.mdtm_requests(), 0);
    assert!(!seen.lock().unwrap().iter().any(|c| c.starts_with("MDTM")));
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert_eq!(
        logs.matches("file identity falls back to (path, size)")
            .count(),
        1,
        "{logs}"
    );
}

/// MDTM refused (550) or unreadable for one file: that file is skipped for this listing
/// (counted in `skipped`), the others are listed with their exact times; it is asked again
/// next time, the remembered ones are not.
#[tokio::test]
async fn mdtm_refused_for_one_file_skips_it_for_the_listing() {
    mdtm_refused(false).await;
}

/// The same, pipelined: every reply is judged as alone.
#[tokio::test]
async fn mdtm_refused_for_one_file_skips_it_for_the_listing_pipelined() {
    mdtm_refused(true).await;
}

async fn mdtm_refused(pipelining: bool) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = start(Script {
        feat_mdtm: true,
        list: LINES
            .iter()
            .copied()
            .chain(["-rw-r--r-- 1 0 0 3 Mar 03  2025 weird"])
            .collect(),
        mdtm: HashMap::from([
            ("/in/recent", "213 20251127112233"),
            ("/in/old", "213 20250303101112.5"),
            ("/in/weird", "213 yesterday"),
        ]),
        seen: seen.clone(),
        loses_pipelined: false,
    })
    .await;
    let fs = fs_with(port, Duration::from_secs(10), pipelining);
    let first = fs.list("/in", &ListOptions::default()).await.unwrap();
    let mut names: Vec<_> = first.entries.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["dir", "old", "recent"]);
    assert_eq!(first.skipped, 2, "gone (550) and weird (unreadable reply)");
    assert_eq!(mtime_of(&first, "recent"), Some(1_764_242_553));
    let old = first.entries.iter().find(|e| e.name == "old").unwrap();
    assert_eq!(
        old.mtime.unwrap().duration_since(UNIX_EPOCH).unwrap(),
        Duration::from_millis(1_740_996_672_500)
    );
    assert_eq!(mtime_of(&first, "dir"), None);
    assert_eq!(fs.mdtm_requests(), 4);
    // Absolute paths only (vsftpd would read `MDTM 20250101000000 name` as a time change).
    let mdtms: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with("MDTM"))
        .cloned()
        .collect();
    assert_eq!(
        mdtms,
        [
            "MDTM /in/recent",
            "MDTM /in/old",
            "MDTM /in/gone",
            "MDTM /in/weird"
        ]
    );

    let second = fs.list("/in", &ListOptions::default()).await.unwrap();
    assert_eq!(second.entries.len(), 3);
    assert_eq!(fs.mdtm_requests(), 6, "only gone and weird again");
    assert_eq!(fs.sessions_opened(), 1, "a refused MDTM keeps the session");
}

/// A server that loses pipelined commands: the listing that finds out fails (a reply never
/// came, so no time is given to the wrong file), that session is dropped, a warning says
/// why, and from then on `MDTM` is asked one command at a time: the next listing has every
/// exact time.
#[tokio::test]
async fn a_server_that_loses_pipelined_commands_is_asked_one_at_a_time() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = start(Script {
        feat_mdtm: true,
        list: vec![
            "-rw-r--r--    1 0        0               5 Nov 27 11:22 a",
            "-rw-r--r--    1 0        0               5 Nov 27 11:22 b",
            "-rw-r--r--    1 0        0               5 Nov 27 11:22 c",
        ],
        mdtm: HashMap::from([
            ("/in/a", "213 20251127112201"),
            ("/in/b", "213 20251127112202"),
            ("/in/c", "213 20251127112203"),
        ]),
        seen: seen.clone(),
        loses_pipelined: true,
    })
    .await;
    let fs = fs_with(port, Duration::from_millis(300), true);
    let err = fs.list("/in", &ListOptions::default()).await.unwrap_err();
    assert!(matches!(err, coord_core::FsError::Timeout { .. }), "{err}");
    let listing = fs.list("/in", &ListOptions::default()).await.unwrap();
    assert_eq!(listing.skipped, 0);
    for (name, secs) in [
        ("a", 1_764_242_521),
        ("b", 1_764_242_522),
        ("c", 1_764_242_523),
    ] {
        assert_eq!(mtime_of(&listing, name), Some(secs), "{name}");
    }
    assert_eq!(
        fs.sessions_opened(),
        2,
        "the out-of-step session was dropped"
    );
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert_eq!(
        logs.matches("MDTM is asked one command at a time from now on")
            .count(),
        1,
        "{logs}"
    );
}
