//! Failures as the protocol sees them: a server that is down or refuses the credentials at
//! connect, a call that outlives the operation timeout, a connection that breaks and comes
//! back, all with no secret in any message.

mod common;

use std::time::{Duration, Instant};

use coord_core::{CoordinationStore, GroupId, HeartbeatRequest, Incarnation, MemberId, StoreError};
use coord_redis::{RedisSettings, RedisStore};
use testkit::TcpProxy;

fn heartbeat_request() -> HeartbeatRequest {
    HeartbeatRequest {
        group: GroupId::new("errors").unwrap(),
        member: MemberId::new("a").unwrap(),
        incarnation: Incarnation(7),
        liveness_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn a_server_that_is_down_is_a_transient_connect_error() {
    let settings = RedisSettings {
        url: "redis://:s3cr3t-pw@127.0.0.1:1".into(),
        connect_timeout: Duration::from_secs(2),
        ..RedisSettings::default()
    };
    let err = RedisStore::connect(settings).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Connect { target, transient: true, .. } if target == "redis://127.0.0.1:1/0"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("s3cr3t"), "{err:?}");
}

#[tokio::test]
async fn refused_credentials_are_a_lasting_connect_error() {
    let settings = RedisSettings {
        url: "redis://nobody:s3cr3t-pw@127.0.0.1:6379".into(),
        ..common::settings("unused:")
    };
    let err = RedisStore::connect(settings).await.unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Connect {
                transient: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("s3cr3t"), "{err:?}");
}

#[tokio::test]
async fn a_silent_server_times_out_and_a_broken_connection_is_replaced() {
    let prefix = common::unique_prefix("errors");
    let proxy = TcpProxy::start("127.0.0.1:6379".parse().unwrap())
        .await
        .unwrap();
    let op_timeout = Duration::from_millis(300);
    let store = RedisStore::connect(RedisSettings {
        url: format!("redis://{}", proxy.addr()),
        key_prefix: prefix.clone(),
        op_timeout,
        connect_timeout: Duration::from_secs(2),
    })
    .await
    .unwrap();
    let request = heartbeat_request();
    store.heartbeat(&request).await.unwrap();

    proxy.freeze();
    let started = Instant::now();
    let err = store.heartbeat(&request).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Timeout { after, .. } if after == op_timeout),
        "{err:?}"
    );
    assert!(
        started.elapsed() < op_timeout * 4,
        "{:?}",
        started.elapsed()
    );
    proxy.thaw();

    proxy.cut().await;
    let err = store.heartbeat(&request).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(
            err,
            StoreError::Unavailable { .. } | StoreError::Timeout { .. }
        ),
        "{err:?}"
    );
    proxy.restore().await.unwrap();
    // The connection manager reconnects in the background; a later call goes through.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.heartbeat(&request).await {
            Ok(obs) => {
                assert_eq!(obs.own_row, coord_core::OwnRow::Written);
                break;
            }
            Err(e) if Instant::now() < deadline && e.is_transient() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery: {e:?}"),
        }
    }
    assert!(proxy.accepted() >= 2, "reconnected through the proxy");
    common::clean_up(&prefix).await;
}
