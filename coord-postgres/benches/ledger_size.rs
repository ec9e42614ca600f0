//! What a leader pays for the ledger's history: the same folder of 1,000 listed files (done,
//! left in place) with a ledger of 1,000 versions (those files) and of 1,000,000 (the same
//! plus 999,000 done versions of files long gone), on the real server at 127.0.0.1:5432
//! (database `test`, schema `coord_pg_ledger_bench`). The work machine (`coord_core::Worker`)
//! is driven here by hand against the real store: the takeover's load, the first poll (the
//! listing's versions looked up), then steady polls (planning only, no database call).
//! Prints one table; the first row is the baseline measured in the same run.
//!
//! `cargo bench -p coord-postgres --bench ledger_size` (after `scripts/setup/10-postgres.sh`;
//! `BENCH_LEDGER_ROWS` sets the large ledger, default 1,000,000; seeding it takes a while).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coord_core::{
    CoordinationStore, FileOp, FileOpResult, FileVersion, GroupId, HeartbeatRequest, Incarnation,
    ListedFile, MemberId, PostProcessing, TakeoverOutcome, TakeoverRequest, Term, WorkAction,
    WorkConfig, Worker,
};
use coord_postgres::{PgSettings, PgStore};

const LISTED: u64 = 1_000;
const STEADY_POLLS: usize = 200;
const SCHEMA: &str = "coord_pg_ledger_bench";

struct Measured {
    rows: u64,
    seed: Duration,
    load: Duration,
    loaded: usize,
    first_poll: Duration,
    steady: Vec<Duration>,
    mirror: usize,
    rss_growth_kib: i64,
}

fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn listed_version(i: u64) -> FileVersion {
    FileVersion {
        path: format!("/in/listed/{i:06}.csv"),
        size: i,
        mtime_ms: 1,
    }
}

/// `rows` done versions: the listed ones first, then old ones no longer listed.
async fn seed(admin: &tokio_postgres::Client, group: &str, rows: u64) -> Duration {
    let started = Instant::now();
    let insert = format!(
        "INSERT INTO {SCHEMA}.processed_file \
         (group_id, path_hash, path, size, mtime_ms, state, term, attempts, updated_at) \
         SELECT $1, encode(sha256(convert_to(p, 'UTF8')), 'hex'), p, i, 1, 'done', 1, 1, \
                clock_timestamp() AT TIME ZONE 'UTC' \
         FROM (SELECT i, CASE WHEN i < $2 THEN '/in/listed/' || lpad(i::text, 6, '0') || '.csv' \
                              ELSE '/in/gone/' || i || '.csv' END AS p \
               FROM generate_series(0::bigint, $3::bigint - 1) AS i) AS s"
    );
    admin
        .execute(&insert, &[&group, &(LISTED as i64), &(rows as i64)])
        .await
        .expect("seed the ledger");
    admin
        .batch_execute(&format!("ANALYZE {SCHEMA}.processed_file"))
        .await
        .unwrap();
    started.elapsed()
}

async fn case(store: &PgStore, admin: &tokio_postgres::Client, rows: u64) -> Measured {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let group = GroupId::new(format!("ledger-{rows}-{nanos}")).unwrap();
    let seeded = seed(admin, group.as_str(), rows).await;
    let (member, incarnation) = (MemberId::new("leader").unwrap(), Incarnation(1));
    store
        .heartbeat(&HeartbeatRequest {
            group: group.clone(),
            member: member.clone(),
            incarnation,
            liveness_timeout: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let won = store
        .take_over(&TakeoverRequest {
            group: group.clone(),
            member: member.clone(),
            incarnation,
            observed_term: Term(0),
            liveness_timeout: Duration::from_secs(60),
            observed_renewal: None,
        })
        .await
        .unwrap();
    let TakeoverOutcome::Won(term) = won else {
        panic!("takeover lost")
    };
    let fence = coord_core::Fence {
        group: group.clone(),
        member,
        incarnation,
        term,
    };
    let listing: Vec<ListedFile> = (0..LISTED)
        .map(|i| {
            let version = listed_version(i);
            ListedFile {
                name: version.path.rsplit('/').next().unwrap().to_string(),
                version,
            }
        })
        .collect();
    let rss_before = rss_kib();
    let mut config = WorkConfig::new("/in/.done", "/in/.error");
    config.post_processing = PostProcessing::Leave;
    let mut worker = Worker::new(config);
    let t0 = Instant::now();
    worker.set_lease(t0, Some(&fence));
    let mut load = Duration::ZERO;
    let mut loaded = 0;
    // Performs every action until the machine waits; returns whether a listing happened.
    async fn drive(
        worker: &mut Worker,
        store: &PgStore,
        fence: &coord_core::Fence,
        listing: &[ListedFile],
        now: Instant,
        load: &mut Duration,
        loaded: &mut usize,
    ) {
        while let Some(action) = worker.poll_action(now) {
            match action {
                WorkAction::LoadLedger { op } => {
                    let started = Instant::now();
                    let records = store.load_ledger(&fence.group).await.unwrap();
                    *load = started.elapsed();
                    *loaded = records.len();
                    worker.handle_loaded(now, op, Ok(records));
                }
                WorkAction::File {
                    op,
                    file_op: FileOp::PrepareDirs(_),
                } => worker.handle_file_op(now, op, FileOpResult::Done(None)),
                WorkAction::List { op } => worker.handle_listed(now, op, Ok(listing.to_vec())),
                WorkAction::Lookup { op, versions } => {
                    let found = store.lookup_ledger(&fence.group, &versions).await;
                    worker.handle_looked_up(now, op, found);
                }
                WorkAction::FindStale {
                    op,
                    older_than,
                    after,
                    limit,
                } => {
                    let rows = store
                        .stale_settled(&fence.group, older_than, after.as_ref(), limit)
                        .await;
                    worker.handle_stale(now, op, rows);
                }
                WorkAction::Record { op, fence, updates } => {
                    let result = store.record(&fence, &updates).await;
                    worker.handle_recorded(now, op, result);
                }
                other => panic!("the listed files are done: unexpected {other:?}"),
            }
        }
        while worker.poll_event().is_some() {}
    }
    let started = Instant::now();
    drive(
        &mut worker,
        store,
        &fence,
        &listing,
        t0,
        &mut load,
        &mut loaded,
    )
    .await;
    let first_poll = started.elapsed() - load;
    let mut now = t0;
    let mut steady = Vec::with_capacity(STEADY_POLLS);
    for _ in 0..STEADY_POLLS {
        now += Duration::from_secs(5);
        let started = Instant::now();
        drive(
            &mut worker,
            store,
            &fence,
            &listing,
            now,
            &mut load,
            &mut loaded,
        )
        .await;
        steady.push(started.elapsed());
    }
    steady.sort();
    let mirror = worker.ledger().map_or(0, |l| l.len());
    let rss_growth_kib = rss_kib() - rss_before;
    admin
        .execute(
            &format!("DELETE FROM {SCHEMA}.processed_file WHERE group_id = $1"),
            &[&group.as_str()],
        )
        .await
        .unwrap();
    Measured {
        rows,
        seed: seeded,
        load,
        loaded,
        first_poll,
        steady,
        mirror,
        rss_growth_kib,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let large: u64 = std::env::var("BENCH_LEDGER_ROWS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let settings = PgSettings {
        database: "test".into(),
        schema: Some(SCHEMA.into()),
        ..PgSettings::default()
    };
    let store = PgStore::open(settings.clone()).expect("settings");
    store
        .migrate()
        .await
        .expect("postgres at 127.0.0.1:5432 (run scripts/setup/10-postgres.sh)");
    let store = PgStore::connect(settings).await.unwrap();
    let (admin, connection) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut results = Vec::new();
    for rows in [LISTED, large.max(LISTED)] {
        results.push(case(&store, &admin, rows).await);
    }
    let baseline = results[0].steady[STEADY_POLLS / 2];
    println!(
        "\n{LISTED} files listed (done, left in place), PostgreSQL; steady polls: median of {STEADY_POLLS}\n"
    );
    println!(
        "| ledger versions | seeded in | takeover load (rows) | first poll (lookups) | steady poll min / median / max | vs baseline | mirror versions | leader RSS growth |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for m in &results {
        let median = m.steady[STEADY_POLLS / 2];
        println!(
            "| {} | {:.1} s | {:.1} ms ({}) | {:.1} ms | {:.2} / {:.2} / {:.2} ms | {:.2} | {} | {} KiB |",
            m.rows,
            m.seed.as_secs_f64(),
            m.load.as_secs_f64() * 1e3,
            m.loaded,
            m.first_poll.as_secs_f64() * 1e3,
            m.steady[0].as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3,
            m.steady[STEADY_POLLS - 1].as_secs_f64() * 1e3,
            median.as_secs_f64() / baseline.as_secs_f64(),
            m.mirror,
            m.rss_growth_kib
        );
    }
}
