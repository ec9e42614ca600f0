//! Election settings and their validation (DESIGN §4).

use std::time::Duration;

use crate::ids::{GroupId, IdError, MemberId};

/// The timing of the election protocol. Defaults: heartbeat 1 s, renew deadline 2/3 of the
/// liveness timeout, liveness timeout 5 s.
///
/// Safety rests on `heartbeat_interval < renew_deadline < liveness_timeout`: a leader stops
/// dispatching `renew_deadline` after the start of its last acknowledged heartbeat, and a
/// standby may take over only when that heartbeat is older than `liveness_timeout` by the
/// store's clock; the gap between the two absorbs clock-rate drift between the node and the
/// store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// How often every member writes its heartbeat (`heartbeatFrequency` in the seeds).
    pub heartbeat_interval: Duration,
    /// How long a leader keeps dispatching without an acknowledged heartbeat, measured on its
    /// own monotonic clock from the *start* of the last acknowledged write.
    pub renew_deadline: Duration,
    /// How old the holder's heartbeat must be, by the store's clock, before a standby may take
    /// over (`livenessCheckInterval` in the seeds).
    pub liveness_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing::from_liveness(Duration::from_secs(1), Duration::from_secs(5))
    }
}

impl Timing {
    /// Timing with the renew deadline at its default, two thirds of the liveness timeout.
    pub fn from_liveness(heartbeat_interval: Duration, liveness_timeout: Duration) -> Timing {
        Timing {
            heartbeat_interval,
            renew_deadline: liveness_timeout * 2 / 3,
            liveness_timeout,
        }
    }

    /// Checks the ordering rule; the error names the field and the rule it breaks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("renew_deadline", self.renew_deadline),
            ("liveness_timeout", self.liveness_timeout),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(ConfigError::new(field, "must be greater than zero"));
            }
        }
        if self.heartbeat_interval >= self.renew_deadline {
            return Err(ConfigError::new(
                "heartbeat_interval",
                format!(
                    "must be shorter than renew_deadline ({:?} >= {:?})",
                    self.heartbeat_interval, self.renew_deadline
                ),
            ));
        }
        if self.renew_deadline >= self.liveness_timeout {
            return Err(ConfigError::new(
                "renew_deadline",
                format!(
                    "must be shorter than liveness_timeout ({:?} >= {:?})",
                    self.renew_deadline, self.liveness_timeout
                ),
            ));
        }
        Ok(())
    }
}

/// Everything one member needs to take part in an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// This member's identity, unique in the group (`memberId`).
    pub member: MemberId,
    /// The group it coordinates with (`coordinationGroup`).
    pub group: GroupId,
    /// The protocol's timing.
    pub timing: Timing,
}

impl ElectionConfig {
    /// Builds and validates a configuration from raw values; the error names the field.
    pub fn new(member: &str, group: &str, timing: Timing) -> Result<Self, ConfigError> {
        let member = MemberId::new(member).map_err(|e| ConfigError::id("member_id", e))?;
        let group = GroupId::new(group).map_err(|e| ConfigError::id("group", e))?;
        timing.validate()?;
        Ok(ElectionConfig {
            member,
            group,
            timing,
        })
    }
}

/// A setting that breaks a rule. `field` is the configuration key, `rule` says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {rule}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The configuration key at fault.
    pub field: &'static str,
    /// The rule it breaks, in words.
    pub rule: String,
}

impl ConfigError {
    /// A new error for `field`.
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        ConfigError {
            field,
            rule: rule.into(),
        }
    }

    fn id(field: &'static str, err: IdError) -> Self {
        ConfigError::new(field, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn defaults_are_valid_and_seed_defaults_are_reachable() {
        Timing::default().validate().unwrap();
        // The seeds' defaults: heartbeat 1 s, liveness 30 s.
        Timing::from_liveness(ms(1000), ms(30_000))
            .validate()
            .unwrap();
    }

    #[test]
    fn ordering_rule_names_the_field() {
        let t = Timing {
            heartbeat_interval: ms(3000),
            renew_deadline: ms(2000),
            liveness_timeout: ms(5000),
        };
        assert_eq!(t.validate().unwrap_err().field, "heartbeat_interval");
        let t = Timing {
            heartbeat_interval: ms(1000),
            renew_deadline: ms(5000),
            liveness_timeout: ms(5000),
        };
        assert_eq!(t.validate().unwrap_err().field, "renew_deadline");
        let t = Timing {
            heartbeat_interval: ms(0),
            ..Timing::default()
        };
        let err = t.validate().unwrap_err();
        assert_eq!(err.field, "heartbeat_interval");
        assert!(err.to_string().contains("greater than zero"), "{err}");
    }

    #[test]
    fn ids_are_checked_with_the_field_name() {
        let err = ElectionConfig::new("", "g", Timing::default()).unwrap_err();
        assert_eq!(err.field, "member_id");
        let err = ElectionConfig::new("m", &"g".repeat(200), Timing::default()).unwrap_err();
        assert_eq!(err.field, "group");
        assert!(err.to_string().contains("200 bytes"), "{err}");
    }
}
