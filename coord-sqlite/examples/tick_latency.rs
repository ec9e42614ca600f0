//! Heartbeat (tick) and takeover latency on one SQLite file, with several members each on its
//! own pool (as separate processes), ticking back to back: the worst case for the write lock.
//!
//! `cargo run -p coord-sqlite --release --example tick_latency [ticks-per-member]`
//!
//! Prints a markdown table. Figures depend on the disk (every tick is a durable commit,
//! `synchronous = FULL` in WAL mode).

use std::time::{Duration, Instant};

use coord_core::{
    CoordinationStore, GroupId, HeartbeatRequest, Incarnation, MemberId, TakeoverRequest, Term,
};
use coord_sqlite::{SqliteSettings, SqliteStore};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let ticks: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("bench.db");
    let mut settings = SqliteSettings::new(file.to_str().expect("utf-8 path"));
    settings.migrate = true;
    settings.busy_timeout = Duration::from_secs(5);
    settings.statement_timeout = Duration::from_secs(5);
    let group = GroupId::new("bench").expect("group");

    println!(
        "| members | ticks | tick p50 ms | tick p99 ms | tick max ms | ticks/s | takeover ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for members in [1usize, 4, 16] {
        let mut stores = Vec::new();
        for _ in 0..members {
            stores.push(
                SqliteStore::connect(settings.clone())
                    .await
                    .expect("connect"),
            );
        }
        // One takeover, timed (the previous round's leader released).
        let observed = stores[0]
            .heartbeat(&beat(&group, "m0", 0))
            .await
            .expect("heartbeat")
            .term;
        let started = Instant::now();
        let outcome = stores[0]
            .take_over(&TakeoverRequest {
                group: group.clone(),
                member: MemberId::new("m0").expect("member"),
                incarnation: Incarnation(0),
                observed_term: observed,
                liveness_timeout: Duration::from_secs(5),
                observed_renewal: None,
            })
            .await
            .expect("takeover");
        let takeover = started.elapsed();
        assert!(matches!(outcome, coord_core::TakeoverOutcome::Won(_)));

        let wall = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, store) in stores.iter().enumerate() {
            let store = store.clone();
            let request = beat(&group, &format!("m{i}"), i as u64);
            tasks.spawn(async move {
                let mut samples = Vec::with_capacity(ticks);
                for _ in 0..ticks {
                    let started = Instant::now();
                    store.heartbeat(&request).await.expect("heartbeat");
                    samples.push(started.elapsed());
                }
                samples
            });
        }
        let mut samples = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            samples.extend(joined.expect("task"));
        }
        let wall = wall.elapsed();
        samples.sort();
        println!(
            "| {members} | {} | {} | {} | {} | {:.0} | {} |",
            samples.len(),
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.99)),
            ms(*samples.last().expect("samples")),
            samples.len() as f64 / wall.as_secs_f64(),
            ms(takeover),
        );
        let term = stores[0]
            .heartbeat(&beat(&group, "m0", 0))
            .await
            .expect("heartbeat")
            .term;
        release(&stores[0], &group, term).await;
    }
    ledger_batches(&settings).await;
}

/// One claim and one record of a large batch (a first listing of a big directory).
async fn ledger_batches(settings: &SqliteSettings) {
    const N: u64 = 10_000;
    let store = SqliteStore::connect(settings.clone())
        .await
        .expect("connect");
    let group = GroupId::new("bench-ledger").expect("group");
    let member = MemberId::new("leader").expect("member");
    let outcome = store
        .take_over(&TakeoverRequest {
            group: group.clone(),
            member: member.clone(),
            incarnation: Incarnation(1),
            observed_term: Term(0),
            liveness_timeout: Duration::from_secs(5),
            observed_renewal: None,
        })
        .await
        .expect("takeover");
    let coord_core::TakeoverOutcome::Won(term) = outcome else {
        panic!("takeover lost")
    };
    let fence = coord_core::Fence {
        group,
        member,
        incarnation: Incarnation(1),
        term,
    };
    let versions: Vec<_> = (0..N)
        .map(|i| coord_core::FileVersion {
            path: format!("/incoming/batch/file-{i:06}.csv"),
            size: i,
            mtime_ms: 1_700_000_000_000,
        })
        .collect();
    let started = Instant::now();
    store.claim(&fence, &versions).await.expect("claim");
    let claim = started.elapsed();
    let updates: Vec<_> = versions
        .iter()
        .map(|v| coord_core::LedgerUpdate::Set {
            version: v.clone(),
            state: coord_core::LedgerState::Done,
            error: None,
            detail: None,
        })
        .collect();
    let started = Instant::now();
    store.record(&fence, &updates).await.expect("record");
    let record = started.elapsed();
    println!();
    println!("| ledger batch | versions | ms |");
    println!("|---|---|---|");
    println!("| claim | {N} | {} |", ms(claim));
    println!("| record | {N} | {} |", ms(record));
}

fn beat(group: &GroupId, member: &str, incarnation: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        group: group.clone(),
        member: MemberId::new(member).expect("member"),
        incarnation: Incarnation(incarnation),
        liveness_timeout: Duration::from_secs(5),
    }
}

async fn release(store: &SqliteStore, group: &GroupId, term: Term) {
    store
        .release(&coord_core::Fence {
            group: group.clone(),
            member: MemberId::new("m0").expect("member"),
            incarnation: Incarnation(0),
            term,
        })
        .await
        .expect("release");
}
