//! The store as a named backend of the listener (cargo feature `listener`): a binary of its
//! own registers it and its configuration says `coordination.backend = "redis"` with the
//! settings in `[coordination.redis]` (`url`, `key_prefix`, `op_timeout`,
//! `connect_timeout`). Nothing in the listener names Redis.
//!
//! ```no_run
//! let registry = listener::Registry::builtin().with_store("redis", coord_redis::RedisBackend);
//! let configs = listener::Config::load_all(Some("listener.toml".as_ref()), &registry);
//! ```

use coord_core::{SharedStore, StoreError};
use listener::{Settings, SettingsError, StoreBackend};

use crate::{RedisSettings, RedisStore};

/// `coordination.backend = "redis"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisBackend;

#[async_trait::async_trait]
impl StoreBackend for RedisBackend {
    fn check(&self, settings: &Settings) -> Result<(), SettingsError> {
        let redis: RedisSettings = settings.extract()?;
        redis.validate().map_err(|e| settings.invalid(e))
    }

    async fn connect(
        &self,
        settings: &Settings,
        _migrate: bool,
    ) -> Result<SharedStore, StoreError> {
        // Redis has no schema: the scripts are loaded on first use.
        let redis: RedisSettings = settings.extract().map_err(|e| StoreError::Connect {
            target: "redis".to_owned(),
            cause: e.to_string(),
            transient: false,
        })?;
        Ok(SharedStore::new("redis", RedisStore::connect(redis).await?))
    }
}
