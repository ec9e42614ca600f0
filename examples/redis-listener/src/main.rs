//! The listener with one more coordination store, from a binary of its own: the registry
//! gets coord-redis' `RedisBackend` under the name `redis`, and the configuration (the same
//! TOML and `FTPL_` variables as `ftp-listener run`, `[[listeners]]` included) may say
//! `coordination.backend = "redis"` with `[coordination.redis]`. Nothing in `listener` was
//! edited for it.
//!
//! `redis-listener [CONFIG]`; SIGTERM or SIGINT stops it gracefully.

use listener::{Config, Registry, Service};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let registry = Registry::builtin().with_store("redis", coord_redis::RedisBackend);
    let file = std::env::args().nth(1).map(std::path::PathBuf::from);
    let configs = Config::load_all(file.as_deref(), &registry)?;
    Service::from_configs(configs, registry)
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
