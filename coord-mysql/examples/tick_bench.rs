//! Latency of the store's operations against a real server; prints a table.
//!
//! `cargo run -p coord-mysql --release --example tick_bench [-- URL [ROUNDS]]`
//! (default `mysql://root@127.0.0.1:3306/test`, 300 rounds). Applies the migrations first.
//! Bounded: ROUNDS of each operation, on loopback, then it stops.

use std::time::{Duration, Instant};

use coord_core::{
    CoordinationStore, Fence, FileVersion, GroupId, HeartbeatRequest, Incarnation, LedgerState,
    LedgerUpdate, MemberId, TakeoverOutcome, TakeoverRequest, Term,
};
use coord_mysql::{MySqlSettings, MySqlStore};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn row(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "| {name:<28} | {:>6} | {:>9.2?} | {:>9.2?} | {:>9.2?} |",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or_default()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".to_string());
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(300);
    let mut settings = MySqlSettings::from_url(&url).expect("a mysql:// url");
    settings.migrate_on_connect = true;
    let store = MySqlStore::connect(settings).await.expect("connect");

    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let group = GroupId::new(format!("bench-{stamp:x}")).unwrap();
    let leader = MemberId::new("bench-leader").unwrap();
    let standby = MemberId::new("bench-standby").unwrap();
    let (li, si) = (Incarnation(1), Incarnation(2));
    let hb = |member: &MemberId, incarnation| HeartbeatRequest {
        group: group.clone(),
        member: member.clone(),
        incarnation,
        liveness_timeout: Duration::from_secs(5),
    };
    store.heartbeat(&hb(&leader, li)).await.unwrap();
    let won = store
        .take_over(&TakeoverRequest {
            group: group.clone(),
            member: leader.clone(),
            incarnation: li,
            observed_term: Term(0),
            liveness_timeout: Duration::from_secs(5),
            observed_renewal: None,
        })
        .await
        .unwrap();
    assert_eq!(won, TakeoverOutcome::Won(Term(1)));
    let fence = Fence {
        group: group.clone(),
        member: leader.clone(),
        incarnation: li,
        term: Term(1),
    };

    let mut leader_ticks = Vec::with_capacity(rounds);
    let mut standby_ticks = Vec::with_capacity(rounds);
    let mut refused_takeovers = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        store.heartbeat(&hb(&leader, li)).await.unwrap();
        leader_ticks.push(t.elapsed());
        let t = Instant::now();
        store.heartbeat(&hb(&standby, si)).await.unwrap();
        standby_ticks.push(t.elapsed());
        let t = Instant::now();
        let lost = store
            .take_over(&TakeoverRequest {
                group: group.clone(),
                member: standby.clone(),
                incarnation: si,
                observed_term: Term(1),
                liveness_timeout: Duration::from_secs(5),
                observed_renewal: None,
            })
            .await
            .unwrap();
        assert_eq!(lost, TakeoverOutcome::Lost);
        refused_takeovers.push(t.elapsed());
    }

    let batches = (rounds / 10).max(1);
    let mut claims = Vec::with_capacity(batches);
    let mut records = Vec::with_capacity(batches);
    for b in 0..batches {
        let versions: Vec<FileVersion> = (0..100)
            .map(|i| FileVersion {
                path: format!("/in/batch-{b}/file-{i}.csv"),
                size: 1000 + i,
                mtime_ms: 1_700_000_000_000,
            })
            .collect();
        let t = Instant::now();
        store.claim(&fence, &versions).await.unwrap();
        claims.push(t.elapsed());
        let updates: Vec<LedgerUpdate> = versions
            .into_iter()
            .map(|version| LedgerUpdate::Set {
                version,
                state: LedgerState::Done,
                error: None,
                detail: None,
            })
            .collect();
        let t = Instant::now();
        store.record(&fence, &updates).await.unwrap();
        records.push(t.elapsed());
    }
    let t = Instant::now();
    let loaded = store.load_ledger(&group).await.unwrap();
    let load = t.elapsed();

    println!("target: {}", store.settings().target());
    println!("| operation                    |      n |       p50 |       p99 |       max |");
    println!("|------------------------------|--------|-----------|-----------|-----------|");
    row("heartbeat (leader, renews)", leader_ticks);
    row("heartbeat (standby)", standby_ticks);
    row("takeover (refused, live)", refused_takeovers);
    row("claim 100 versions", claims);
    row("record 100 outcomes", records);
    row(&format!("load ledger ({} rows)", loaded.len()), vec![load]);

    // Leave no bench rows behind.
    let forget: Vec<LedgerUpdate> = loaded
        .into_iter()
        .map(|r| LedgerUpdate::Forget(r.version))
        .collect();
    store.record(&fence, &forget).await.unwrap();
    store.release(&fence).await.unwrap();
    store.leave(&group, &standby, si).await.unwrap();
}
