//! A handler author tests failover with `testkit::Cluster`: deterministic, simulated time.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use coord_core::LedgerState;
use testkit::{Cluster, ClusterConfig};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_leader_is_elected_and_handles_a_file_once() {
    let mut cluster = Cluster::new(ClusterConfig::default(), |_| Ok(()));
    assert!(cluster.run_until(LIMIT, |c| c.leader().is_some()));
    let path = cluster.put_file("a.csv", b"1,2");
    assert!(cluster.run_until(LIMIT, |c| c.ledger_state(&path) == Some(LedgerState::Done)));
    let deliveries = cluster.deliveries_of(&path);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].dispatch.attempt, 1);
    assert!(!deliveries[0].dispatch.redelivery);
    assert_eq!(deliveries[0].reported, Some(Ok(())));
    // Moved into the done folder.
    assert_eq!(cluster.fs().paths(), ["/in/done/a.csv"]);
}

#[test]
fn leader_crash_mid_handler_redelivers_once_then_done_once() {
    let started = Instant::now();
    let cfg = ClusterConfig {
        handler_time: Duration::from_secs(2),
        ..ClusterConfig::default()
    };
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    let mut cluster = Cluster::new(cfg, move |d| {
        log.borrow_mut()
            .push((d.version.path.clone(), d.redelivery));
        Ok(())
    });
    let path = cluster.put_file("orders.csv", b"id,qty\n1,2\n");
    assert!(cluster.run_until(LIMIT, |c| c.running() == 1));
    let first = cluster.leader().expect("the dispatching member leads");
    cluster.crash(first);

    assert!(cluster.run_until(LIMIT, |c| c.ledger_state(&path) == Some(LedgerState::Done)));
    cluster.run_for(Duration::from_secs(20));
    let deliveries = cluster.deliveries_of(&path);
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    assert_eq!(deliveries[0].member, first);
    assert_eq!(
        deliveries[0].reported, None,
        "the crash lost the first result"
    );
    assert_ne!(deliveries[1].member, first);
    assert!(deliveries[1].dispatch.redelivery);
    assert_eq!(deliveries[1].dispatch.attempt, 2);
    assert_eq!(deliveries[1].reported, Some(Ok(())));
    assert_eq!(
        *seen.borrow(),
        [(path.clone(), false), (path.clone(), true)],
        "the handler saw the file twice, the second time flagged"
    );
    // Over a minute of cluster time in well under a second of real time.
    assert!(cluster.now() > Duration::from_secs(20));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_failing_handler_is_retried_until_it_succeeds() {
    let mut failures = 2;
    let mut cluster = Cluster::new(ClusterConfig::default(), move |_| {
        if failures > 0 {
            failures -= 1;
            Err("downstream refused".into())
        } else {
            Ok(())
        }
    });
    let path = cluster.put_file("b.csv", b"x");
    assert!(cluster.run_until(LIMIT, |c| c.ledger_state(&path) == Some(LedgerState::Done)));
    let attempts: Vec<_> = cluster
        .deliveries_of(&path)
        .iter()
        .map(|d| {
            (
                d.dispatch.attempt,
                d.dispatch.redelivery,
                d.reported.is_some(),
            )
        })
        .collect();
    // Retries after a failure are flagged too: the handler may have seen the file before.
    assert_eq!(
        attempts,
        [(1, false, true), (2, true, true), (3, true, true)]
    );
}

#[test]
fn partitioned_leader_steps_down_and_another_takes_over() {
    let mut cluster = Cluster::new(ClusterConfig::default(), |_| Ok(()));
    assert!(cluster.run_until(LIMIT, |c| c.leader().is_some()));
    let first = cluster.leader().unwrap();
    cluster.partition(first, Duration::from_secs(30));
    assert!(cluster.run_until(LIMIT, |c| c.leader().is_some_and(|l| l != first)));
    let path = cluster.put_file("c.csv", b"c");
    assert!(cluster.run_until(LIMIT, |c| c.ledger_state(&path) == Some(LedgerState::Done)));
    assert!(
        cluster
            .deliveries_of(&path)
            .iter()
            .all(|d| d.member != first)
    );
    cluster.heal();
    cluster.run_for(Duration::from_secs(10));
    assert_eq!(cluster.deliveries_of(&path).len(), 1);
}

#[test]
fn paused_leader_past_its_lease_loses_its_handler_result() {
    let cfg = ClusterConfig {
        handler_time: Duration::from_secs(1),
        ..ClusterConfig::default()
    };
    let mut cluster = Cluster::new(cfg, |_| Ok(()));
    let path = cluster.put_file("d.csv", b"d");
    assert!(cluster.run_until(LIMIT, |c| c.running() == 1));
    let first = cluster.leader().unwrap();
    cluster.pause(first, Duration::from_secs(10));
    assert!(cluster.run_until(LIMIT, |c| c.ledger_state(&path) == Some(LedgerState::Done)));
    cluster.run_for(Duration::from_secs(20));
    let deliveries = cluster.deliveries_of(&path);
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    assert!(deliveries[1].dispatch.redelivery);
    assert_ne!(deliveries[1].member, first);
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let cfg = ClusterConfig {
            seed,
            ..ClusterConfig::default()
        };
        let mut cluster = Cluster::new(cfg, |_| Ok(()));
        for i in 0..5 {
            cluster.put_file(&format!("f{i}"), b"x");
        }
        cluster.run_for(Duration::from_secs(3));
        if let Some(l) = cluster.leader() {
            cluster.crash(l);
        }
        cluster.run_for(Duration::from_secs(30));
        cluster
            .deliveries()
            .iter()
            .map(|d| (d.member, d.dispatch.clone(), d.at))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
}
