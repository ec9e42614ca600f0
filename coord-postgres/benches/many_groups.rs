//! Many groups on one PostgreSQL, as the README recommends deploying them: one process per
//! member, every listener of that member in it, sharing one pool (`pool_size`, default 4).
//! `BENCH_GROUPS` groups (default 1,000) × 3 members = 3 pools, 12 connections; every member
//! of every group heartbeats every second (the leader's heartbeat renews its lease), against
//! the real server at 127.0.0.1:5432 (database `test`, schema `coord_pg_groups_bench`).
//!
//! Prints one table of heartbeat latencies (p50 / p99 / max over `BENCH_SECONDS`, default 20,
//! after a 3 s warm-up): the baseline first (one group alone, in the same run), then the
//! groups with the elector's jitter (the first beat at 10–100 % of the interval, later ones
//! at 90–110 %), then the same without jitter (every member started at one instant, in
//! lockstep), for contrast.
//!
//! `cargo bench -p coord-postgres --bench many_groups` (after `scripts/setup/10-postgres.sh`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coord_core::{
    CoordinationStore, GroupId, HeartbeatRequest, Incarnation, MemberId, TakeoverRequest, Term,
};
use coord_postgres::{PgSettings, PgStore};

const SCHEMA: &str = "coord_pg_groups_bench";
const INTERVAL: Duration = Duration::from_secs(1);
const WARM_UP: Duration = Duration::from_secs(3);

/// SplitMix64, for the jitter (as the elector draws it).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fraction(seed: u64, lo: f64, hi: f64) -> f64 {
    lo + (mix(seed) as f64 / u64::MAX as f64) * (hi - lo)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(stores: &[PgStore], groups: usize, jitter: bool, seconds: u64) -> Vec<Duration> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let end = start + WARM_UP + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for g in 0..groups {
        let group = GroupId::new(format!("g{nanos}-{g}")).unwrap();
        for (m, store) in stores.iter().enumerate() {
            let store = store.clone();
            let group = group.clone();
            let latencies = latencies.clone();
            let seed = (g * 3 + m) as u64 ^ nanos as u64;
            tasks.push(tokio::spawn(async move {
                let member = MemberId::new(format!("m{m}")).unwrap();
                let incarnation = Incarnation(seed | 1);
                let request = HeartbeatRequest {
                    group: group.clone(),
                    member: member.clone(),
                    incarnation,
                    liveness_timeout: Duration::from_secs(5),
                };
                let first = if jitter {
                    INTERVAL.mul_f64(fraction(seed, 0.1, 1.0))
                } else {
                    Duration::ZERO
                };
                let mut next = start + first;
                let mut beat = 0u64;
                while next < end {
                    tokio::time::sleep_until(next.into()).await;
                    let sent = Instant::now();
                    store.heartbeat(&request).await.expect("heartbeat");
                    let took = sent.elapsed();
                    if beat == 0 && m == 0 {
                        store
                            .take_over(&TakeoverRequest {
                                group: group.clone(),
                                member: member.clone(),
                                incarnation,
                                observed_term: Term(0),
                                liveness_timeout: Duration::from_secs(5),
                                observed_renewal: None,
                            })
                            .await
                            .expect("takeover");
                    }
                    if sent >= start + WARM_UP {
                        latencies.lock().unwrap().push(took);
                    }
                    beat += 1;
                    next += if jitter {
                        INTERVAL.mul_f64(fraction(seed.wrapping_add(beat), 0.9, 1.1))
                    } else {
                        INTERVAL
                    };
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut all = std::mem::take(&mut *latencies.lock().unwrap());
    all.sort();
    all
}

#[tokio::main]
async fn main() {
    let groups: usize = std::env::var("BENCH_GROUPS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1000);
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let settings = PgSettings {
        database: "test".into(),
        schema: Some(SCHEMA.into()),
        ..PgSettings::default()
    };
    let pool_size = settings.pool_size;
    PgStore::open(settings.clone())
        .expect("settings")
        .migrate()
        .await
        .expect("postgres at 127.0.0.1:5432 (run scripts/setup/10-postgres.sh)");
    // One store (one pool) per member process.
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(PgStore::connect(settings.clone()).await.unwrap());
    }
    let cases = [
        ("1 group (baseline)", 1, true),
        ("jittered (the elector's)", groups, true),
        ("lockstep (no jitter)", groups, false),
    ];
    let mut rows = Vec::new();
    for (name, n, jitter) in cases {
        let latencies = run(&stores, n, jitter, seconds).await;
        rows.push((name, n, latencies));
    }
    println!(
        "\n{groups} groups × 3 members, one process (one pool of {pool_size}) per member: {} connections; heartbeats every {INTERVAL:?} for {seconds} s\n",
        3 * pool_size
    );
    println!(
        "| case | groups | heartbeats | p50 | p99 | max | heartbeats/s |\n|---|---|---|---|---|---|---|"
    );
    for (name, n, l) in &rows {
        println!(
            "| {name} | {n} | {} | {:.2} ms | {:.2} ms | {:.1} ms | {:.0} |",
            l.len(),
            percentile(l, 0.5).as_secs_f64() * 1e3,
            percentile(l, 0.99).as_secs_f64() * 1e3,
            l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            l.len() as f64 / seconds as f64
        );
    }
}
