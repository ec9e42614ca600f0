//! Names from the domain: member, group, term, incarnation.
//!
//! The seed schema calls a member `task_id` and a group `group_id`; those words appear only in
//! SQL. Both are `VARCHAR(128)` there, so both are limited to [`MAX_ID_LEN`] bytes here, and
//! checked up front rather than truncated by a database.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest member ID or group name, in bytes (the seed DDL's `VARCHAR(128)`).
pub const MAX_ID_LEN: usize = 128;

/// Why a member ID or group name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The value is empty or only whitespace.
    #[error("must not be empty")]
    Empty,
    /// The value is longer than the column that stores it.
    #[error("is {len} bytes long, the limit is {max}")]
    TooLong {
        /// Length of the refused value, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The value contains a control character (newline, NUL, ...).
    #[error("contains a control character")]
    ControlCharacter,
}

fn check_id(value: &str) -> Result<(), IdError> {
    if value.trim().is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            len: value.len(),
            max: MAX_ID_LEN,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks the value (non-empty, at most [`MAX_ID_LEN`] bytes, no control characters).
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_id(&value)?;
                Ok(Self(value))
            }

            /// The value as stored in the database.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    };
}

id_type!(
    /// The identity of one member (one process) of a coordination group; `task_id` in SQL.
    MemberId
);
id_type!(
    /// The name of a coordination group; `group_id` in SQL.
    GroupId
);

/// The leadership epoch of a group. Every successful takeover yields a strictly greater term;
/// it is the fencing token that every ledger write carries (DESIGN §4, §5).
///
/// `Term(0)` means "no takeover has ever happened" (no `token_holder` row).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Term(pub u64);

impl Term {
    /// The term a successful takeover from this one produces.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A random value written by each process start, so that two live processes with the same
/// [`MemberId`] are told apart (and the second is refused). The driver draws it from a random
/// source; the core never generates randomness.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Incarnation(pub u64);

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The fencing token: who acts, in which group, under which term. Every ledger write and every
/// post-processing step is conditional on the store still showing this member as the holder
/// of this term (DESIGN §2, first row).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Fence {
    /// The group the leader leads.
    pub group: GroupId,
    /// The leader.
    pub member: MemberId,
    /// The leader's process start.
    pub incarnation: Incarnation,
    /// The term under which it leads.
    pub term: Term,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(MemberId::new("node-1").is_ok());
        assert_eq!(MemberId::new("  "), Err(IdError::Empty));
        assert_eq!(
            GroupId::new("x".repeat(129)),
            Err(IdError::TooLong { len: 129, max: 128 })
        );
        assert!(GroupId::new("x".repeat(128)).is_ok());
        assert_eq!(MemberId::new("a\nb"), Err(IdError::ControlCharacter));
    }
}
