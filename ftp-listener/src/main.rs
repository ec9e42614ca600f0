//! `ftp-listener`: thin glue over the `listener` library (config, backends, signals).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use coord_core::{CoordinationStore, GroupId};
use listener::{Config, LogFormat, Registry, RunError, Service, connect_store};

#[cfg(feature = "demo")]
mod demo;
mod inspect;
mod logging;

#[derive(Debug, Parser)]
#[command(
    name = "ftp-listener",
    version,
    about = "Highly available FTP/SFTP file listener"
)]
struct Cli {
    /// TOML configuration file (optional; `FTPL_*` variables override it).
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the listener (the default).
    Run,
    /// Create or upgrade the coordination schema, then exit.
    Migrate,
    /// Print the schema DDL of a dialect, for teams that apply it themselves.
    PrintDdl {
        /// The SQL dialect.
        #[arg(long, value_enum)]
        dialect: Dialect,
    },
    /// Show the group's members, their heartbeat ages, the holder and the term.
    Status {
        /// One JSON object (every listener, its group, term, holder and members).
        #[arg(long)]
        json: bool,
    },
    /// Read the ledger: what happened to each file version.
    Ledger {
        #[command(subcommand)]
        command: inspect::LedgerCommand,
    },
    /// Print the effective configuration (secrets redacted) and exit.
    CheckConfig,
    /// Show failover on this machine, nothing to install: an embedded FTP server, SQLite,
    /// three member processes, a crash and a pause; ends with a verdict line (exit 0 only if
    /// no file was lost or handled twice). Needs the `demo` cargo feature.
    Demo(DemoArgs),
    /// The cluster's configuration in the coordination database (the local file's
    /// `[cluster]` names it; default `default`).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

/// `ftp-listener demo` options.
#[derive(Debug, Clone, clap::Args)]
struct DemoArgs {
    /// Files the feeder drops (1 to 10000).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    files: u32,
    /// Keep the temporary directory (configs, member logs, the ledger) and print its path.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Validate FILE as every member would and store it as the next version.
    Push {
        /// The cluster's configuration (TOML: `[[listeners]]` and shared defaults).
        file: PathBuf,
        /// A comment for the audit trail.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Print a version (default: the newest).
    Show {
        /// The version.
        version: Option<u64>,
    },
    /// Every version: number, when (database clock), who, comment.
    History,
    /// The lines that differ between two versions.
    Diff {
        /// The older version.
        from: u64,
        /// The newer version.
        to: u64,
    },
    /// Store an old version again as the newest.
    Rollback {
        /// The version to return to.
        version: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let command = cli.command.take().unwrap_or(Command::Run);
    if matches!(command, Command::Demo(_)) && cli.config.is_some() {
        eprintln!("ftp-listener: `demo` writes its members' configuration itself; drop --config");
        return ExitCode::from(2);
    }
    // The configuration is read before the subscriber is installed, so that `log.format`
    // applies to every line; loading it logs nothing. (`cluster` reads its file itself and
    // logs in text.)
    let registry = Registry::builtin();
    let configs = match command {
        Command::PrintDdl { .. } | Command::Demo(_) | Command::Cluster { .. } => Vec::new(),
        _ => match Config::load_all(cli.config.as_deref(), &registry)
            .map_err(anyhow::Error::from)
            .and_then(|configs| log_format(&configs).map(|_| configs))
        {
            Ok(configs) => configs,
            Err(e) => {
                eprintln!("ftp-listener: {e:#}");
                return ExitCode::from(1);
            }
        },
    };
    // The demo prints a timeline on stdout; its own log shows only warnings unless asked
    // (and none of libunftp's: it warns of every probe for a missing file).
    let fallback = if matches!(command, Command::Demo(_)) {
        "warn,libunftp=error"
    } else {
        "info"
    };
    let file = match configs.first() {
        Some(first) => match logging::file_writer(&first.log, &first.member_id) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("ftp-listener: configuration: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    logging::init(log_format(&configs).unwrap_or_default(), fallback, file);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ftp-listener: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli.config, command, configs, registry)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let refused = e
                .downcast_ref::<RunError>()
                .is_some_and(|e| matches!(e, RunError::Refused(_)));
            eprintln!("ftp-listener: {e:#}");
            ExitCode::from(if refused { 3 } else { 1 })
        }
    }
}

/// The process's one log format: `log` is shared by every listener (set it at the top level
/// of the file, not in a `[[listeners]]` entry).
fn log_format(configs: &[Config]) -> anyhow::Result<LogFormat> {
    let Some(first) = configs.first() else {
        return Ok(LogFormat::default());
    };
    if let Some(other) = configs.iter().find(|c| c.log.format != first.log.format) {
        bail!(
            "`log.format` is one per process: listener `{}` has {:?}, listener `{}` has {:?}; \
             set it at the top level of the file, not in [[listeners]]",
            first.name,
            first.log.format,
            other.name,
            other.log.format
        );
    }
    Ok(first.log.format)
}

async fn dispatch(
    file: Option<PathBuf>,
    command: Command,
    configs: Vec<Config>,
    registry: Registry,
) -> anyhow::Result<()> {
    let command = match command {
        Command::PrintDdl { dialect } => {
            print!("{}", ddl(dialect)?);
            return Ok(());
        }
        Command::Demo(args) => return run_demo(args).await,
        Command::Cluster { command } => {
            return cluster(file.as_deref(), command, &registry).await;
        }
        other => other,
    };
    match command {
        Command::Run if configs.len() == 1 && configs[0].cluster.is_some() => {
            Service::run_cluster(file.as_deref(), registry, shutdown_signal()).await?;
            Ok(())
        }
        Command::Run => {
            Service::from_configs(configs, registry)
                .run(shutdown_signal())
                .await?;
            Ok(())
        }
        Command::Migrate => {
            // Once per database, however many listeners share it.
            let mut done: Vec<&Config> = Vec::new();
            for config in &configs {
                if done.iter().any(|d| d.same_store(config)) {
                    continue;
                }
                connect_store(config, &registry, true)
                    .await
                    .with_context(|| format!("migrate (listener `{}`)", config.name))?;
                done.push(config);
            }
            println!("schema is up to date");
            Ok(())
        }
        Command::Ledger { command } => {
            let configs = if configs.len() == 1 && configs[0].cluster.is_some() {
                cluster_view(file.as_deref(), &configs[0], &registry)
                    .await?
                    .listeners
            } else {
                configs
            };
            inspect::ledger(configs, command, &registry).await
        }
        Command::Status { json } => {
            let (configs, cluster) = if configs.len() == 1 && configs[0].cluster.is_some() {
                let view = cluster_view(file.as_deref(), &configs[0], &registry).await?;
                (view.listeners.clone(), Some(view))
            } else {
                (configs, None)
            };
            if json {
                return inspect::status_json(configs, cluster.as_ref(), &registry).await;
            }
            if let Some(view) = &cluster {
                print!("{}", view.render());
                println!();
            }
            let many = configs.len() > 1;
            for (i, config) in configs.into_iter().enumerate() {
                if many {
                    if i > 0 {
                        println!();
                    }
                    let placement = match &config.placement {
                        listener::Placement::Leader => "leader (one member of the group)".into(),
                        listener::Placement::Every => {
                            "every member (each with a ledger of its own)".into()
                        }
                        listener::Placement::Member(id) => format!("only member {id}"),
                    };
                    println!("listener {}  placement {placement}", config.name);
                }
                status(config, &registry).await?;
            }
            Ok(())
        }
        Command::CheckConfig => {
            // `Config::load_all` ran the checks of every setting, the backends' included;
            // these are the ones `run` adds before it connects (the source is not opened).
            let many = configs.len() > 1;
            for config in &configs {
                listener::poll_settings(config, config.source.path.clone())
                    .with_context(|| format!("listener `{}`", config.name))?;
            }
            for config in &configs {
                if many {
                    println!("[[listeners]] # {}", config.name);
                }
                print!("{}", config.to_redacted_toml());
                if many {
                    println!();
                }
            }
            Ok(())
        }
        Command::PrintDdl { .. } | Command::Cluster { .. } | Command::Demo(_) => {
            unreachable!("handled above")
        }
    }
}

/// The cluster's newest version and where every member stands with it, for `status`.
struct ClusterView {
    name: String,
    newest: coord_core::ConfigVersion,
    /// Every member's row of `cluster_member_status`, by member ID.
    members: Vec<coord_core::MemberApplyStatus>,
    /// The newest version's listeners, as this host loads them.
    listeners: Vec<Config>,
    /// The listeners that do not load on this host, with the cause.
    unloadable: Vec<(String, String)>,
}

impl ClusterView {
    /// The text `status` prints: the version, then one line per member (its applied
    /// version, the newest it could not apply, when it reported by the database's clock,
    /// what it runs) and its error under it.
    fn render(&self) -> String {
        let v = &self.newest;
        let mut out = format!(
            "cluster {}  version {}  pushed by {} at {}\n\n",
            self.name,
            v.version,
            v.pushed_by,
            utc(v.pushed_at_ms)
        );
        out.push_str(&format!(
            "{:<24} {:>7} {:>7} {:>12}  RUNS\n",
            "MEMBER", "APPLIED", "FAILED", "REPORTED"
        ));
        let version = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        for m in &self.members {
            let r = &m.report;
            out.push_str(&format!(
                "{:<24} {:>7} {:>7} {:>12}  {}\n",
                r.member,
                version(r.applied_version),
                version(r.failed_version),
                format!("{} ago", age(m.age_ms)),
                if r.listeners.is_empty() {
                    "-"
                } else {
                    &r.listeners
                }
            ));
            if let Some(error) = &r.error {
                out.push_str(&format!("  error: {error}\n"));
            }
        }
        if self.members.is_empty() {
            out.push_str("(no member has reported yet)\n");
        }
        for (name, cause) in &self.unloadable {
            out.push_str(&format!(
                "listener {name} does not load on this host (not shown below): {cause}\n"
            ));
        }
        out
    }
}

/// A duration in milliseconds, for people: `850 ms`, `12.3 s`, `4 min`, `2 h`.
fn age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min", ms / 60_000),
        _ => format!("{} h", ms / 3_600_000),
    }
}

async fn cluster_view(
    file: Option<&std::path::Path>,
    local: &Config,
    registry: &Registry,
) -> anyhow::Result<ClusterView> {
    let name = local
        .cluster
        .as_ref()
        .map_or("default", |c| c.name.as_str())
        .to_string();
    let store = connect_store(local, registry, false).await?;
    let Some(configs) = store.config_store() else {
        bail!(
            "the {} store does not keep cluster configurations",
            store.name()
        );
    };
    let newest = listener::cluster_get(&**configs, &name, None).await?;
    let members = configs.member_statuses(&name).await?;
    let mut listeners = Vec::new();
    let mut unloadable = Vec::new();
    for (listener, loaded) in Config::load_cluster_each(file, &newest.body, registry)? {
        match loaded {
            Ok(config) => listeners.push(config),
            Err(e) => unloadable.push((listener, e.to_string())),
        }
    }
    Ok(ClusterView {
        name,
        newest,
        members,
        listeners,
        unloadable,
    })
}

async fn cluster(
    file: Option<&std::path::Path>,
    command: ClusterCommand,
    registry: &Registry,
) -> anyhow::Result<()> {
    let local = Config::load_with(file, registry)?;
    let name = local
        .cluster
        .as_ref()
        .map_or_else(|| "default".to_string(), |c| c.name.clone());
    let store = connect_store(&local, registry, local.migrate_on_start()).await?;
    let Some(configs) = store.config_store() else {
        bail!(
            "the {} store does not keep cluster configurations",
            store.name()
        );
    };
    let configs = &**configs;
    match command {
        ClusterCommand::Push { file: doc, comment } => {
            let text = std::fs::read_to_string(&doc)
                .with_context(|| format!("cannot read {}", doc.display()))?;
            let version = listener::cluster_push(configs, &name, file, &text, &comment, registry)
                .await
                .with_context(|| format!("{} refused, nothing stored", doc.display()))?;
            println!("cluster `{name}`: stored version {version}");
        }
        ClusterCommand::Show { version } => {
            let v = listener::cluster_get(configs, &name, version).await?;
            print!("{}", v.body);
        }
        ClusterCommand::History => {
            let all = configs.config_history(&name).await?;
            println!(
                "{:>7}  {:<24} {:<32} COMMENT",
                "VERSION", "PUSHED AT (UTC)", "BY"
            );
            for v in &all {
                println!(
                    "{:>7}  {:<24} {:<32} {}",
                    v.version,
                    utc(v.pushed_at_ms),
                    v.pushed_by,
                    v.comment
                );
            }
            if all.is_empty() {
                println!("(nothing pushed yet)");
            }
        }
        ClusterCommand::Diff { from, to } => {
            let a = listener::cluster_get(configs, &name, Some(from)).await?;
            let b = listener::cluster_get(configs, &name, Some(to)).await?;
            print!("{}", listener::cluster_diff(&a.body, &b.body));
        }
        ClusterCommand::Rollback { version } => {
            let new = listener::cluster_rollback(configs, &name, file, version, registry).await?;
            println!("cluster `{name}`: version {new} is version {version} again");
        }
    }
    Ok(())
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS.mmm`.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(feature = "demo")]
async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    demo::run(demo::Options {
        files: args.files,
        keep: args.keep,
    })
    .await
}

#[cfg(not(feature = "demo"))]
async fn run_demo(_: DemoArgs) -> anyhow::Result<()> {
    bail!(
        "this build lacks the `demo` cargo feature: \
         cargo run -p ftp-listener --features demo -- demo"
    )
}

fn ddl(dialect: Dialect) -> anyhow::Result<String> {
    match dialect {
        #[cfg(feature = "postgres")]
        Dialect::Postgres => Ok(migrations::postgres_ddl()),
        #[cfg(feature = "mysql")]
        Dialect::Mysql => Ok(migrations::mysql_ddl()),
        #[cfg(feature = "sqlite")]
        Dialect::Sqlite => Ok(migrations::sqlite_ddl()),
        #[allow(unreachable_patterns)]
        other => bail!("print-ddl --dialect {other:?}: this build lacks that cargo feature"),
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process is stopped the hard way; the lease expires.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// One read-only observation (term, holder, members in one step): nothing is written.
async fn status(config: Config, registry: &Registry) -> anyhow::Result<()> {
    let election = config.election()?;
    let store = connect_store(&config, registry, false).await?;
    let group: GroupId = election.group.clone();
    let observation = store.observe(&group).await?;
    let members = &observation.members;

    println!("group {}  term {}", group, observation.term);
    match &observation.holder {
        Some(h) => println!(
            "holder {} (incarnation {}), lease age {}",
            h.member,
            h.incarnation,
            ms(h.lease_age)
        ),
        None => println!("holder none"),
    }
    println!();
    println!(
        "{:<40} {:<18} {:>14}  ROLE",
        "MEMBER", "INCARNATION", "HEARTBEAT AGE"
    );
    for m in members {
        let role = match &observation.holder {
            Some(h) if h.member == m.member && h.incarnation == m.incarnation => "leader",
            _ if m.heartbeat_age > election.timing.liveness_timeout => "stale",
            _ => "standby",
        };
        println!(
            "{:<40} {:<18} {:>14}  {role}",
            m.member.as_str(),
            m.incarnation.to_string(),
            ms(m.heartbeat_age)
        );
    }
    if members.is_empty() {
        println!("(no members)");
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}
