//! Durations in configuration: human strings with a unit (`"1s"`, `"500ms"`, `"7d"`).
//!
//! One rule everywhere: a bare number is refused (with `poll_interval = 500` one cannot tell
//! milliseconds from seconds), and the message names the key (figment adds it) and says what to
//! write. The only integers accepted are the seeds' integer-second fields, under the seeds'
//! names (`heartbeatFrequency`, `livenessCheckInterval`): [`seed_seconds_opt`].

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Parses `"1s"`, `"500ms"`, `"2m 30s"`, `"7d"` (a bare number is refused, naming the fix).
pub fn parse(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        if value.trim().parse::<f64>().is_ok() {
            format!(
                "`{value}` has no unit: write e.g. \"{}ms\" or \"{}s\"",
                value.trim(),
                value.trim()
            )
        } else {
            format!("`{value}`: {e} (write e.g. \"500ms\", \"5s\", \"2m\")")
        }
    })
}

/// Formats for `check-config` (`1s`, `500ms`).
pub(crate) fn format(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}

/// The message for a bare number where a duration with a unit is needed.
fn no_unit(number: impl fmt::Display) -> String {
    format!(
        "`{number}` is a bare number: durations need a unit, write e.g. \"{number}ms\" or \
         \"{number}s\" (\"500ms\", \"5s\")"
    )
}

/// Strings with a unit only.
struct HumanVisitor;

impl Visitor<'_> for HumanVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, such as \"500ms\" or \"5s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(no_unit(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(no_unit(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(no_unit(v)))
    }
}

/// The seeds' fields: an integer number of seconds, or a string with a unit.
struct SeedSecondsVisitor;

impl Visitor<'_> for SeedSecondsVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer number of seconds, or a duration such as \"5s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("`{v}`: a duration cannot be negative")))
    }
}

/// `#[serde(with = "crate::duration::human")]`.
pub(crate) mod human {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(HumanVisitor)
    }

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*value))
    }
}

/// The same for `Option<Duration>`.
pub(crate) mod human_opt {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(HumanVisitor).map(Some)
    }

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_str(&format(*v)),
            None => s.serialize_none(),
        }
    }
}

/// `Option<Duration>` under a seed name: integer seconds accepted (deserialize only).
pub(crate) mod seed_seconds_opt {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(SeedSecondsVisitor).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_strings() {
        assert_eq!(parse("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse("soon").unwrap_err().contains("soon"));
        assert!(
            parse("5").unwrap_err().contains("\"5ms\""),
            "{:?}",
            parse("5")
        );
        assert_eq!(format(Duration::from_millis(1500)), "1s 500ms");
    }
}
