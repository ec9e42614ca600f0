//! What reaches the logs: never the password at DEBUG and below; a warning when suppaftp's
//! TRACE output (which includes `PASS`) is on. Each test installs its own subscriber for its
//! thread (`#[tokio::test]` runs everything on it), so the tests can share a process
//! (`cargo test`) as well as run one per process (nextest).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Server, Target, ftp_root, read_all, write};
use coord_core::{ListOptions, RemoteFs};
use tracing::Level;
use transfer_ftp::{FtpFs, Secret};

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

impl Captured {
    /// The subscriber of this thread until the guard drops.
    fn install(level: Level) -> (Captured, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::util::SubscriberInitExt;
        let captured = Captured::default();
        let writer = captured.clone();
        // `set_default` also routes the `log` facade (suppaftp's logs) into tracing (once per
        // process; the records go to the calling thread's subscriber).
        let guard = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .finish()
            .set_default();
        (captured, guard)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn no_password_in_debug_logs() {
    let (logs, _guard) = Captured::install(Level::DEBUG);
    let password = std::fs::read_to_string(ftp_root().join("password")).unwrap();
    let password = password.trim();
    for server in [Server::Vsftpd, Server::Proftpd] {
        for tls in [false, true] {
            let t = Target { server, tls };
            let (local, remote) = t.fresh_dir("logs");
            write(&local.join("f"), b"x");
            let fs = t.fs();
            fs.list(&remote, &ListOptions::default()).await.unwrap();
            read_all(&fs, &format!("{remote}/f")).await.unwrap();
            let mut wrong = t.settings();
            wrong.password_file = None;
            wrong.password = Some(Secret::new("wrong-pass-4f1c"));
            let err = FtpFs::new(wrong)
                .unwrap()
                .list("/", &ListOptions::default())
                .await
                .unwrap_err();
            tracing::error!(error = %err, "as a caller would log it");
        }
    }
    let text = logs.text();
    assert!(
        text.contains("ftp session opened"),
        "nothing captured: {text}"
    );
    assert!(text.contains("authentication to"), "{text}");
    assert!(!text.contains(password), "password in the logs");
    assert!(!text.contains("wrong-pass-4f1c"), "password in the logs");
}

#[tokio::test]
async fn trace_for_suppaftp_is_flagged() {
    let (logs, _guard) = Captured::install(Level::TRACE);
    let t = Target {
        server: Server::Vsftpd,
        tls: false,
    };
    t.fs().list("/", &ListOptions::default()).await.unwrap();
    let text = logs.text();
    assert!(
        text.contains("TRACE logging is on for suppaftp"),
        "no warning: {text}"
    );
}
