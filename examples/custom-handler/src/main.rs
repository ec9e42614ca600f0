//! A listener composed in Rust, outside the workspace's facade: it watches a local directory,
//! coordinates through a SQLite file, and hands each finished file to `LineCounter`, a
//! handler of its own that writes `<name>.lines` (the file's line count) into an output
//! directory. Each change event (files added, files deleted since the last poll) is appended
//! to `changes.log` there.
//!
//! `custom-handler <inbox> <outbox> <database>`; SIGTERM or SIGINT stops it gracefully.

use std::path::PathBuf;
use std::time::Duration;

use listener::{
    ChangeEvent, Config, FileHandler, HandlerError, IncomingFile, Listener, Registry, async_trait,
    connect_store,
};

/// Counts lines; fails (and is retried) on a file that is not UTF-8 text.
#[derive(Debug)]
struct LineCounter {
    out: PathBuf,
}

#[async_trait]
impl FileHandler for LineCounter {
    async fn on_file(&self, file: &IncomingFile<'_>) -> Result<(), HandlerError> {
        let text = file.read_text(1 << 20).await?;
        let name = file.relative.replace('/', "_");
        let report = format!(
            "{} lines, attempt {}, term {}\n",
            text.lines().count(),
            file.context.attempt,
            file.context.fence.term
        );
        tokio::fs::write(self.out.join(format!("{name}.lines")), report).await?;
        Ok(())
    }

    async fn on_change(&self, event: &ChangeEvent) -> Result<(), HandlerError> {
        use tokio::io::AsyncWriteExt;
        let mut log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.out.join("changes.log"))
            .await?;
        let line = format!(
            "added {} deleted {}\n",
            event.added.len(),
            event.deleted.len()
        );
        log.write_all(line.as_bytes()).await?;
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [inbox, outbox, database] = args.as_slice() else {
        return Err("usage: custom-handler <inbox> <outbox> <database>".into());
    };
    std::fs::create_dir_all(outbox)?;

    // The store from a configuration made in code; the registry's built-in SQLite.
    let mut config = Config::default();
    config.coordination.sqlite.path = PathBuf::from(database);
    let store = connect_store(&config, &Registry::builtin(), true).await?;

    let listener = Listener::builder("lines")
        .member_id("example")
        .shared_store(store)
        .local_dir(inbox.clone())
        .http(([127, 0, 0, 1], 0).into())
        .poll_interval(Duration::from_millis(100))
        .timing(Duration::from_millis(100), Duration::from_millis(600))
        .handler(LineCounter {
            out: PathBuf::from(outbox),
        })
        .build()?;
    listener
        .run(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("signal handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}
