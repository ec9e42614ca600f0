//! The settings vocabulary the database stores share (STYLE: "backends of one kind look
//! alike"): one [`TlsMode`], one [`Secret`], one way to say where a password comes from
//! ([`PasswordSource`]). Each store crate keeps its own settings struct, with the same key
//! names: `tls`, `tls_ca_file`, `statement_timeout`, `connect_timeout`, `pool_size`, and
//! exactly one of `password`, `password_env`, `password_file`.
//!
//! Nothing here reads a file or the environment: [`PasswordSource::resolve`] is handed the
//! two readers by the store crate, which does the I/O when it connects.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How the connection to a database server is encrypted. The words are libpq's `sslmode`
/// words; MySQL's spellings (`disabled`, `required`, `verify_identity`) are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TlsMode {
    /// Plain TCP (the default; for loopback or a trusted network).
    #[default]
    Disable,
    /// TLS or no connection. With `tls_ca_file` the server's certificate must chain to it and
    /// name the host (as `verify-full`); without one the link is encrypted but the server is
    /// not authenticated (libpq's `sslmode=require`, MySQL's `--ssl-mode=REQUIRED`).
    Require,
    /// TLS; the certificate must chain to `tls_ca_file` (required) and name the host.
    VerifyFull,
}

impl TlsMode {
    /// The words [`TlsMode::parse`] accepts, for error messages.
    pub const WORDS: &'static str = "disable, require, verify-full";

    /// Parses a mode word, ignoring ASCII case: `disable`/`disabled`, `require`/`required`,
    /// `verify-full`/`verify_full`/`verify_identity`.
    pub fn parse(value: &str) -> Option<TlsMode> {
        Some(match value.to_ascii_lowercase().as_str() {
            "disable" | "disabled" => TlsMode::Disable,
            "require" | "required" => TlsMode::Require,
            "verify-full" | "verify_full" | "verify_identity" | "verify-identity" => {
                TlsMode::VerifyFull
            }
            _ => return None,
        })
    }

    /// The canonical word (`disable`, `require`, `verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// Checks the mode against the CA file setting: `verify-full` needs one.
    pub fn check(self, tls_ca_file: Option<&Path>) -> Result<(), String> {
        if self == TlsMode::VerifyFull && tls_ca_file.is_none() {
            return Err("tls `verify-full` needs tls_ca_file".to_owned());
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for TlsMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        TlsMode::parse(&word).ok_or_else(|| {
            serde::de::Error::custom(format!("tls `{word}` is not one of {}", TlsMode::WORDS))
        })
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A password. `Debug`, `Display` and `Serialize` show `<redacted>`, never the value; the
/// value is reachable only through [`Secret::expose`], for the one call that sends it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the driver call that needs it (never for a log line or an error).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// Where a password comes from: written inline (`password`), the name of an environment
/// variable (`password_env`), or a file whose content, trailing newline removed, is the
/// password (`password_file`). At most one of the three keys may be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password = "..."`.
    Inline(Secret),
    /// `password_env = "PGPASSWORD"`.
    Env(String),
    /// `password_file = "/run/secrets/db"`.
    File(PathBuf),
}

impl PasswordSource {
    /// The source the three keys name, `None` when none is set; more than one is refused
    /// with a message naming them.
    pub fn from_keys(
        password: Option<&Secret>,
        password_env: Option<&str>,
        password_file: Option<&Path>,
    ) -> Result<Option<PasswordSource>, String> {
        match (password, password_env, password_file) {
            (None, None, None) => Ok(None),
            (Some(p), None, None) => Ok(Some(PasswordSource::Inline(p.clone()))),
            (None, Some(var), None) => Ok(Some(PasswordSource::Env(var.to_owned()))),
            (None, None, Some(file)) => Ok(Some(PasswordSource::File(file.to_owned()))),
            _ => Err("set at most one of password, password_env, password_file".to_owned()),
        }
    }

    /// Reads the password with the caller's readers (the store crates pass
    /// `std::env::var(..).ok()` and `std::fs::read_to_string`). Errors name the key and the
    /// variable or file, never the value. A file's trailing `\n` or `\r\n` is removed; a
    /// password that still spans lines, or an empty one from a variable or file, is refused.
    pub fn resolve(
        &self,
        env: impl FnOnce(&str) -> Option<String>,
        file: impl FnOnce(&Path) -> std::io::Result<String>,
    ) -> Result<Secret, String> {
        let value = match self {
            PasswordSource::Inline(secret) => return Ok(secret.clone()),
            PasswordSource::Env(var) => {
                let value = env(var).ok_or_else(|| {
                    format!("password_env: environment variable `{var}` is not set")
                })?;
                if value.is_empty() {
                    return Err(format!(
                        "password_env: environment variable `{var}` is empty"
                    ));
                }
                value
            }
            PasswordSource::File(path) => {
                let text =
                    file(path).map_err(|e| format!("password_file `{}`: {e}", path.display()))?;
                let value = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text)
                    .to_owned();
                if value.is_empty() {
                    return Err(format!("password_file `{}` is empty", path.display()));
                }
                if value.contains('\n') {
                    return Err(format!(
                        "password_file `{}`: the password must be on one line",
                        path.display()
                    ));
                }
                value
            }
        };
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_words_of_both_dialects() {
        for (word, mode) in [
            ("disable", TlsMode::Disable),
            ("DISABLED", TlsMode::Disable),
            ("require", TlsMode::Require),
            ("required", TlsMode::Require),
            ("verify-full", TlsMode::VerifyFull),
            ("verify_identity", TlsMode::VerifyFull),
        ] {
            assert_eq!(TlsMode::parse(word), Some(mode), "{word}");
        }
        assert_eq!(TlsMode::parse("allow"), None);
        assert!(TlsMode::VerifyFull.check(None).is_err());
        assert!(TlsMode::Require.check(None).is_ok());
        assert_eq!(TlsMode::VerifyFull.to_string(), "verify-full");
    }

    #[test]
    fn secrets_never_show() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
        let source = PasswordSource::Inline(s);
        assert!(!format!("{source:?}").contains("hunter2"));
    }

    #[test]
    fn at_most_one_password_key() {
        let p = Secret::new("p");
        assert_eq!(PasswordSource::from_keys(None, None, None), Ok(None));
        let err = PasswordSource::from_keys(Some(&p), Some("X"), None).unwrap_err();
        assert!(err.contains("password_env"), "{err}");
        assert_eq!(
            PasswordSource::from_keys(None, Some("X"), None),
            Ok(Some(PasswordSource::Env("X".into())))
        );
    }

    #[test]
    fn resolve_reads_through_the_given_readers() {
        let env = PasswordSource::Env("DB_PW".into());
        let got = env.resolve(
            |v| (v == "DB_PW").then(|| "s3cret".into()),
            |_| unreachable!(),
        );
        assert_eq!(got.unwrap().expose(), "s3cret");
        let err = env.resolve(|_| None, |_| unreachable!()).unwrap_err();
        assert!(err.contains("`DB_PW` is not set"), "{err}");
        let file = PasswordSource::File("/run/pw".into());
        let got = file.resolve(|_| unreachable!(), |_| Ok("s3cret\r\n".into()));
        assert_eq!(got.unwrap().expose(), "s3cret");
        let err = file
            .resolve(|_| unreachable!(), |_| Ok("a\nb\n".into()))
            .unwrap_err();
        assert!(err.contains("one line") && !err.contains("a\nb"), "{err}");
        let err = file
            .resolve(
                |_| unreachable!(),
                |_| Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
            )
            .unwrap_err();
        assert!(err.contains("password_file `/run/pw`"), "{err}");
    }
}
