//! The key layout and the packed values (the crate doc describes them).

use coord_core::{FileVersion, LedgerRecord, LedgerState, Term};

/// The three keys of one group.
#[derive(Debug, Clone)]
pub(crate) struct GroupKeys {
    pub(crate) token: String,
    pub(crate) members: String,
    pub(crate) ledger: String,
}

impl GroupKeys {
    /// `<prefix>{<group>}:token` and so on. The braces make the group a Redis Cluster hash
    /// tag, so a script's keys share a slot; the suffixes differ at the end, so no two groups
    /// and kinds give one key.
    pub(crate) fn new(prefix: &str, group: &str) -> GroupKeys {
        GroupKeys {
            token: format!("{prefix}{{{group}}}:token"),
            members: format!("{prefix}{{{group}}}:members"),
            ledger: format!("{prefix}{{{group}}}:ledger"),
        }
    }
}

/// The ledger field of a version: `size:mtime_ms:path` (the path last: it may hold `:`).
pub(crate) fn version_field(version: &FileVersion) -> String {
    format!("{}:{}:{}", version.size, version.mtime_ms, version.path)
}

/// Reads a field back.
pub(crate) fn parse_field(field: &str) -> Option<FileVersion> {
    let mut parts = field.splitn(3, ':');
    let size = parts.next()?.parse().ok()?;
    let mtime_ms = parts.next()?.parse().ok()?;
    let path = parts.next()?.to_owned();
    Some(FileVersion {
        path,
        size,
        mtime_ms,
    })
}

/// The letter a state is stored as.
pub(crate) fn state_letter(state: LedgerState) -> &'static str {
    match state {
        LedgerState::Claimed => "c",
        LedgerState::Handled => "h",
        LedgerState::Done => "d",
        LedgerState::Failed => "f",
        LedgerState::Error => "e",
    }
}

fn parse_letter(letter: &str) -> Option<LedgerState> {
    Some(match letter {
        "c" => LedgerState::Claimed,
        "h" => LedgerState::Handled,
        "d" => LedgerState::Done,
        "f" => LedgerState::Failed,
        "e" => LedgerState::Error,
        _ => return None,
    })
}

/// The suffix a kept error adds to a ledger value.
pub(crate) fn error_suffix(error: Option<&str>) -> String {
    error.map_or_else(String::new, |e| format!(":{e}"))
}

/// What follows the attempts in a ledger value: the error of a failed or error row, the
/// detail of a handled or done row (the two never meet: a success has no error).
pub(crate) fn suffix_of<'a>(
    state: LedgerState,
    error: Option<&'a str>,
    detail: Option<&'a str>,
) -> Option<&'a str> {
    match state {
        LedgerState::Handled | LedgerState::Done => detail,
        _ => error,
    }
}

/// A ledger value `state:term:attempts[:error]` (`[:detail]` for handled and done rows)
/// with its field as a record.
pub(crate) fn parse_record(field: &str, value: &str) -> Option<LedgerRecord> {
    let version = parse_field(field)?;
    let mut parts = value.splitn(4, ':');
    let state = parse_letter(parts.next()?)?;
    let term = Term(parts.next()?.parse().ok()?);
    let attempts = parts.next()?.parse().ok()?;
    let tail = parts.next().map(str::to_owned);
    let (last_error, detail) = match state {
        LedgerState::Handled | LedgerState::Done => (None, tail),
        _ => (tail, None),
    };
    Some(LedgerRecord {
        version,
        state,
        term,
        attempts,
        last_error,
        detail,
    })
}

/// A heartbeat row `incarnation:at_us`.
pub(crate) fn parse_row(row: &str) -> Option<(u64, i64)> {
    let (incarnation, at) = row.split_once(':')?;
    Some((incarnation.parse().ok()?, at.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_values_round_trip() {
        let v = FileVersion {
            path: "/in/a:b/ünï 名.csv".into(),
            size: 12,
            mtime_ms: -5,
        };
        assert_eq!(parse_field(&version_field(&v)), Some(v.clone()));
        let field = version_field(&v);
        let r = parse_record(&field, "e:7:3:disk: full").unwrap();
        assert_eq!(r.version, v);
        assert_eq!(
            (r.state, r.term, r.attempts),
            (LedgerState::Error, Term(7), 3)
        );
        assert_eq!(r.last_error.as_deref(), Some("disk: full"));
        let r = parse_record(&field, "d:7:3").unwrap();
        assert_eq!(r.last_error, None);
        let r = parse_record(&field, "d:7:3:to b: /in").unwrap();
        assert_eq!(
            (r.last_error, r.detail.as_deref()),
            (None, Some("to b: /in"))
        );
        let r = parse_record(&field, "f:7:3:").unwrap();
        assert_eq!(r.last_error.as_deref(), Some(""));
        assert!(parse_record(&field, "z:1:1").is_none());
        assert_eq!(
            parse_row("18446744073709551615:1700000000000000"),
            Some((u64::MAX, 1_700_000_000_000_000))
        );
        let keys = GroupKeys::new("p:", "g");
        assert_eq!(
            (
                keys.token.as_str(),
                keys.members.as_str(),
                keys.ledger.as_str()
            ),
            ("p:{g}:token", "p:{g}:members", "p:{g}:ledger")
        );
    }
}
