//! Round trips and latency of the protocol's operations against the real server at
//! 127.0.0.1:5432 (database `test`, schema `coord_pg_bench`), printed as a table.
//!
//! `cargo bench -p coord-postgres --bench ticks` (after `scripts/setup/10-postgres.sh`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coord_core::{
    CoordinationStore, Fence, FileVersion, GroupId, HeartbeatRequest, Incarnation, LedgerState,
    LedgerUpdate, MemberId, TakeoverOutcome, TakeoverRequest, Term,
};
use coord_postgres::{PgSettings, PgStore};

const ROUNDS: usize = 200;

struct Row {
    name: &'static str,
    round_trips: f64,
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn measure<F, Fut>(store: &PgStore, name: &'static str, rounds: usize, mut op: F) -> Row
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    op(0).await; // warm up: the statement is prepared on this connection
    let before = store.round_trips();
    let mut latencies = Vec::with_capacity(rounds);
    for n in 1..=rounds {
        let start = Instant::now();
        op(n).await;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    Row {
        name,
        round_trips: (store.round_trips() - before) as f64 / rounds as f64,
        latencies,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let settings = PgSettings {
        database: "test".into(),
        schema: Some("coord_pg_bench".into()),
        pool_size: 1,
        ..PgSettings::default()
    };
    let store = PgStore::open(settings.clone()).expect("settings");
    store
        .migrate()
        .await
        .expect("postgres at 127.0.0.1:5432 (run scripts/setup/10-postgres.sh)");
    let leader = PgStore::connect(settings.clone()).await.unwrap();
    let standby = PgStore::connect(settings).await.unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let group = GroupId::new(format!("bench-{nanos}")).unwrap();
    let (l, il) = (MemberId::new("leader").unwrap(), Incarnation(1));
    let (s, is) = (MemberId::new("standby").unwrap(), Incarnation(2));
    let beat = |m: &MemberId, i| HeartbeatRequest {
        group: group.clone(),
        member: m.clone(),
        incarnation: i,
        liveness_timeout: Duration::from_secs(5),
    };
    leader.heartbeat(&beat(&l, il)).await.unwrap();
    let won = leader
        .take_over(&TakeoverRequest {
            group: group.clone(),
            member: l.clone(),
            incarnation: il,
            observed_term: Term(0),
            liveness_timeout: Duration::from_secs(5),
            observed_renewal: None,
        })
        .await
        .unwrap();
    assert_eq!(won, TakeoverOutcome::Won(Term(1)));
    let fence = Fence {
        group: group.clone(),
        member: l.clone(),
        incarnation: il,
        term: Term(1),
    };

    let mut rows = Vec::new();
    let leader_beat = beat(&l, il);
    rows.push(
        measure(
            &leader,
            "leader tick (heartbeat + lease renewal)",
            ROUNDS,
            |_| async {
                let o = leader.heartbeat(&leader_beat).await.unwrap();
                assert!(o.holder_is(&l, il));
            },
        )
        .await,
    );
    let standby_beat = beat(&s, is);
    rows.push(
        measure(
            &standby,
            "standby tick (heartbeat + holder read)",
            ROUNDS,
            |_| async {
                let o = standby.heartbeat(&standby_beat).await.unwrap();
                assert!(!o.holder_is(&s, is));
            },
        )
        .await,
    );
    let batch = |n: usize| -> Vec<FileVersion> {
        (0..100)
            .map(|k| FileVersion {
                path: format!("/in/batch-{n}/file-{k}.csv"),
                size: 1000 + k,
                mtime_ms: 1_700_000_000_000,
            })
            .collect()
    };
    rows.push(
        measure(&leader, "claim 100 new versions", 50, |n| {
            let versions = batch(n);
            let (leader, fence) = (&leader, &fence);
            async move {
                leader.claim(fence, &versions).await.unwrap();
            }
        })
        .await,
    );
    rows.push(
        measure(&leader, "record 100 outcomes", 50, |n| {
            let updates: Vec<LedgerUpdate> = batch(n)
                .into_iter()
                .map(|version| LedgerUpdate::Set {
                    version,
                    state: LedgerState::Done,
                    error: None,
                    detail: None,
                })
                .collect();
            let (leader, fence) = (&leader, &fence);
            async move {
                leader.record(fence, &updates).await.unwrap();
            }
        })
        .await,
    );

    println!(
        "\n{:<42} {:>12} {:>10} {:>10} {:>10}",
        "operation", "round trips", "p50", "p90", "p99"
    );
    for row in &rows {
        println!(
            "{:<42} {:>12.2} {:>10.2?} {:>10.2?} {:>10.2?}",
            row.name,
            row.round_trips,
            percentile(&row.latencies, 0.5),
            percentile(&row.latencies, 0.9),
            percentile(&row.latencies, 0.99),
        );
    }
    leader.release(&fence).await.unwrap();
    standby.leave(&group, &s, is).await.unwrap();
}
