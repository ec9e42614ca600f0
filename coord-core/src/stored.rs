//! What the SQL stores read back from `processed_file`, decoded once for all of them.
//!
//! A row that cannot be decoded (a state word this build does not know, a negative size,
//! term or attempt count, a path that is not UTF-8, a column of the wrong type) is **skipped,
//! counted and logged**, never a panic and never an error that stops the load. Why skip and
//! not fail: the ledger load is what a new leader does first, so an error would stop the
//! whole group on one bad row, and a newer build's state word (the stores accept a newer
//! schema) would stop every older member of a rolling upgrade. Skipping loses nothing: the
//! row stays in the table, and the claim statement (the arbiter of every dispatch) leaves a
//! row that is not `claimed` or `failed` alone and answers `Settled`, so a skipped version is
//! never dispatched twice because the leader did not see it. The store logs one warning per
//! load with the count and the first rows' keys.

use std::fmt;

use crate::ids::Term;
use crate::ledger::{FileVersion, LedgerRecord, LedgerState};
use crate::store::ClaimOutcome;

/// Versions per claim or record statement of the SQL stores: a claim or record of any size is
/// cut into chunks of this many, each fenced on its own and under its own statement timeout.
pub const LEDGER_CHUNK_VERSIONS: usize = 500;

/// Rows per page when the SQL stores load a ledger (keyset on the primary key).
pub const LEDGER_PAGE_ROWS: usize = 5000;

/// Longest path the ledger keeps, in bytes (the shared schema's limit).
pub const LEDGER_MAX_PATH_BYTES: usize = 4096;

/// The answer to a claim for a version whose row was, before the claim, in `state` with
/// `attempts` (`None`: no row). The claim statements apply the same rule to the row: a new
/// version is attempt 1; a claimed one is claimed again as a redelivery, a failed one as a
/// retry, attempts + 1; anything else (handled, done, error, or a state this build does not
/// know) is settled and never dispatched.
pub fn claim_answer(prior: Option<(&str, i64)>) -> ClaimOutcome {
    let Some((state, attempts)) = prior else {
        return ClaimOutcome::Claimed {
            attempt: 1,
            redelivery: false,
        };
    };
    let attempt = u32::try_from(attempts).unwrap_or(0).saturating_add(1);
    match LedgerState::parse(state) {
        Some(LedgerState::Claimed) => ClaimOutcome::Claimed {
            attempt,
            redelivery: true,
        },
        Some(LedgerState::Failed) => ClaimOutcome::Claimed {
            attempt,
            redelivery: false,
        },
        _ => ClaimOutcome::Settled,
    }
}

/// The columns of one `processed_file` row as the driver returned them, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLedgerRow {
    /// `path`, as bytes.
    pub path: Vec<u8>,
    /// `size`.
    pub size: i64,
    /// `mtime_ms`.
    pub mtime_ms: i64,
    /// `state`, as bytes.
    pub state: Vec<u8>,
    /// `term`.
    pub term: i64,
    /// `attempts`.
    pub attempts: i64,
    /// `last_error`, as bytes (decoded lossily: it is a message for people).
    pub last_error: Option<Vec<u8>>,
    /// `detail`, as bytes (decoded lossily, like `last_error`).
    pub detail: Option<Vec<u8>>,
}

impl StoredLedgerRow {
    /// The record, or why the row cannot be one.
    pub fn decode(self) -> Result<LedgerRecord, String> {
        let state_text = String::from_utf8_lossy(&self.state);
        let state = LedgerState::parse(&state_text)
            .ok_or_else(|| format!("unknown state {:?}", state_text.as_ref()))?;
        let size = u64::try_from(self.size).map_err(|_| format!("negative size {}", self.size))?;
        let term = u64::try_from(self.term).map_err(|_| format!("negative term {}", self.term))?;
        let attempts = u32::try_from(self.attempts)
            .map_err(|_| format!("attempts {} out of range", self.attempts))?;
        let path = String::from_utf8(self.path).map_err(|e| {
            format!(
                "path is not UTF-8 ({:?})",
                String::from_utf8_lossy(e.as_bytes())
            )
        })?;
        Ok(LedgerRecord {
            version: FileVersion {
                path,
                size,
                mtime_ms: self.mtime_ms,
            },
            state,
            term: Term(term),
            attempts,
            last_error: self
                .last_error
                .map(|e| String::from_utf8_lossy(&e).into_owned()),
            detail: self
                .detail
                .map(|d| String::from_utf8_lossy(&d).into_owned()),
        })
    }
}

/// One skipped row: its primary key within the group, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndecodableRow {
    /// `path_hash` (the key column; the path itself may be what is wrong).
    pub path_hash: String,
    /// `size`, as stored.
    pub size: i64,
    /// `mtime_ms`, as stored.
    pub mtime_ms: i64,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for UndecodableRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "processed_file row (path_hash {}, size {}, mtime_ms {}): {}",
            self.path_hash, self.size, self.mtime_ms, self.reason
        )
    }
}

/// How many rows of one load were skipped, with the first few for the log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkippedRows {
    /// Rows skipped.
    pub count: usize,
    /// The first [`SkippedRows::SHOWN`] of them.
    pub first: Vec<UndecodableRow>,
}

impl SkippedRows {
    /// How many skipped rows the log line names.
    pub const SHOWN: usize = 3;

    /// Counts one skipped row.
    pub fn push(&mut self, row: UndecodableRow) {
        self.count += 1;
        if self.first.len() < Self::SHOWN {
            self.first.push(row);
        }
    }

    /// Decodes `row`, pushing it to `records` or counting it here.
    pub fn decode_into(
        &mut self,
        records: &mut Vec<LedgerRecord>,
        key: (&str, i64, i64),
        row: Result<StoredLedgerRow, String>,
    ) {
        match row.and_then(StoredLedgerRow::decode) {
            Ok(record) => records.push(record),
            Err(reason) => self.push(UndecodableRow {
                path_hash: key.0.to_owned(),
                size: key.1,
                mtime_ms: key.2,
                reason,
            }),
        }
    }

    /// The warning a store logs after a load that skipped rows (`None` when none was).
    pub fn message(&self, group: &str) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let shown: Vec<String> = self.first.iter().map(ToString::to_string).collect();
        let more = self.count - self.first.len();
        Some(format!(
            "load ledger on group `{group}`: skipped {} undecodable processed_file row{} (left \
             in place; the claim statement settles such a version): {}{}",
            self.count,
            if self.count == 1 { "" } else { "s" },
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> StoredLedgerRow {
        StoredLedgerRow {
            path: b"/in/a".to_vec(),
            size: 3,
            mtime_ms: -5,
            state: b"done".to_vec(),
            term: 2,
            attempts: 1,
            last_error: Some(b"bad \xff byte".to_vec()),
            detail: None,
        }
    }

    #[test]
    fn a_good_row_decodes() {
        let r = row().decode().unwrap();
        assert_eq!(r.version.path, "/in/a");
        assert_eq!((r.version.size, r.version.mtime_ms), (3, -5));
        assert_eq!(
            (r.state, r.term, r.attempts),
            (LedgerState::Done, Term(2), 1)
        );
        assert_eq!(r.last_error.as_deref(), Some("bad \u{fffd} byte"));
    }

    #[test]
    fn bad_rows_say_why() {
        type Spoil = fn(&mut StoredLedgerRow);
        let cases: [(Spoil, &str); 5] = [
            (|r| r.state = b"x".to_vec(), "unknown state \"x\""),
            (|r| r.size = -1, "negative size -1"),
            (|r| r.term = -1, "negative term -1"),
            (|r| r.attempts = -1, "attempts -1"),
            (|r| r.path = b"/in/\xff".to_vec(), "path is not UTF-8"),
        ];
        for (spoil, why) in cases {
            let mut r = row();
            spoil(&mut r);
            let err = r.decode().unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn claim_answers() {
        let fresh = ClaimOutcome::Claimed {
            attempt: 1,
            redelivery: false,
        };
        assert_eq!(claim_answer(None), fresh);
        assert_eq!(
            claim_answer(Some(("claimed", 1))),
            ClaimOutcome::Claimed {
                attempt: 2,
                redelivery: true
            }
        );
        assert_eq!(
            claim_answer(Some(("failed", 2))),
            ClaimOutcome::Claimed {
                attempt: 3,
                redelivery: false
            }
        );
        for settled in ["handled", "done", "error", "archived"] {
            assert_eq!(claim_answer(Some((settled, 1))), ClaimOutcome::Settled);
        }
    }

    #[test]
    fn skipped_rows_are_counted_and_named() {
        let mut skipped = SkippedRows::default();
        let mut records = Vec::new();
        assert_eq!(skipped.message("g"), None);
        for i in 0..5 {
            let mut r = row();
            r.size = -i - 1;
            skipped.decode_into(&mut records, ("ab", -i - 1, 0), Ok(r));
        }
        skipped.decode_into(&mut records, ("cd", 3, 0), Ok(row()));
        skipped.decode_into(
            &mut records,
            ("ef", 3, 0),
            Err("column 1: not an integer".into()),
        );
        assert_eq!(records.len(), 1);
        assert_eq!(skipped.count, 6);
        let message = skipped.message("g").unwrap();
        assert!(
            message.contains("skipped 6 undecodable processed_file rows"),
            "{message}"
        );
        assert!(message.contains("path_hash ab, size -1"), "{message}");
        assert!(message.contains("and 3 more"), "{message}");
    }
}
