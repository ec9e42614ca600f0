//! Hostile remote names (issue 4, DESIGN §6): `..`, absolute paths, embedded newlines,
//! control characters, non-UTF-8 bytes. Every backend passes each listed name through
//! [`check_name`]; every later local download goes through [`local_target`]. Neither does I/O.

use std::path::{Component, Path, PathBuf};

/// Why a remote name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty name.
    #[error("empty name")]
    Empty,
    /// `.` or `..`.
    #[error("`.` or `..` is not a file name")]
    DotSegment,
    /// A `/` or `\` inside a single name (a listing must not smuggle a path).
    #[error("name contains a path separator")]
    Separator,
    /// A control character (newline, carriage return, NUL, escape, ...).
    #[error("name contains a control character")]
    ControlCharacter,
    /// Bytes that are not UTF-8.
    #[error("name is not valid UTF-8")]
    NotUtf8,
    /// A relative path that climbs out of its base, or an absolute one where a relative one
    /// was required.
    #[error("path escapes its base directory")]
    Escapes,
}

/// Checks one listed name (a single path segment, raw bytes as the server sent them).
pub fn check_name(raw: &[u8]) -> Result<&str, NameError> {
    let name = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8)?;
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::DotSegment);
    }
    if name.contains('/') || name.contains('\\') {
        return Err(NameError::Separator);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(name)
}

/// Joins a remote directory and a checked name with `/`.
pub fn join_remote(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Escapes a name for a log line: control characters and invalid bytes become `\x..`.
pub fn escape_for_log(raw: &[u8]) -> String {
    raw.escape_ascii().to_string()
}

/// The local path under `base` where a remote file `relative` (relative to the listed root,
/// `/`-separated) may be written. Refuses anything that could land outside `base`: absolute
/// paths, `..`, empty or dot segments, separators or control characters inside a segment.
pub fn local_target(base: &Path, relative: &str) -> Result<PathBuf, NameError> {
    if relative.starts_with('/') || relative.starts_with('\\') {
        return Err(NameError::Escapes);
    }
    let mut out = base.to_path_buf();
    for segment in relative.split('/') {
        let segment = check_name(segment.as_bytes()).map_err(|e| match e {
            NameError::DotSegment => NameError::Escapes,
            other => other,
        })?;
        // Windows-style prefixes (`C:`) would reset the path on Windows.
        let mut components = Path::new(segment).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(_)), None) => out.push(segment),
            _ => return Err(NameError::Escapes),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        assert_eq!(check_name(b"report.csv"), Ok("report.csv"));
        assert_eq!(check_name(b""), Err(NameError::Empty));
        assert_eq!(check_name(b".."), Err(NameError::DotSegment));
        assert_eq!(check_name(b"a/b"), Err(NameError::Separator));
        assert_eq!(check_name(b"..\\x"), Err(NameError::Separator));
        assert_eq!(check_name(b"a\nb"), Err(NameError::ControlCharacter));
        assert_eq!(check_name(b"a\x1b[31m"), Err(NameError::ControlCharacter));
        assert_eq!(check_name(b"\xff\xfe"), Err(NameError::NotUtf8));
        assert_eq!(check_name("übung ü.txt".as_bytes()), Ok("übung ü.txt"));
    }

    #[test]
    fn local_target_never_escapes() {
        let base = Path::new("/data/in");
        assert_eq!(
            local_target(base, "sub/a.txt"),
            Ok(PathBuf::from("/data/in/sub/a.txt"))
        );
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "a//b",
            "a/./b",
            "a\nb",
            "",
        ] {
            assert!(local_target(base, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn join_and_escape() {
        assert_eq!(join_remote("/in", "a"), "/in/a");
        assert_eq!(join_remote("/in/", "a"), "/in/a");
        assert_eq!(join_remote("", "a"), "a");
        assert_eq!(escape_for_log(b"a\nb\xff"), "a\\nb\\xff");
    }
}
