//! The in-memory store passes the conformance suite every database store must pass.

use testkit::MemStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mem_store_conforms() {
    let shared = MemStore::default();
    testkit::conformance::run_all(|| {
        let store = shared.clone();
        async move { store }
    })
    .await;
}

#[tokio::test]
async fn an_unavailable_store_fails_every_call_clearly() {
    use coord_core::{CoordinationStore, GroupId, HeartbeatRequest, Incarnation, MemberId};
    let store = MemStore::default();
    store.set_unavailable(true);
    let err = store
        .heartbeat(&HeartbeatRequest {
            group: GroupId::new("g").unwrap(),
            member: MemberId::new("m").unwrap(),
            incarnation: Incarnation(1),
            liveness_timeout: std::time::Duration::from_secs(5),
        })
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        "heartbeat on group `g`: store unavailable: in-memory store set unavailable"
    );
    store.set_unavailable(false);
    assert!(store.members(&GroupId::new("g").unwrap()).await.is_ok());
}

#[tokio::test]
async fn mem_config_store_conforms() {
    testkit::config_conformance::run(&testkit::MemConfigStore::default()).await;
}
