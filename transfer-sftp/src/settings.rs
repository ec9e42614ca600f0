//! Connection settings: what an operator writes in the config, and the secrets it points at.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A password or passphrase. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one call that needs it (never for a log line).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret comes from: the value itself, an environment variable, or a file (its first
/// line; trailing newline removed).
///
/// In TOML: `password = "..."`, `password = { env = "SFTP_PASSWORD" }` or
/// `password = { file = "/run/secrets/sftp" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    /// The value, written in the config.
    Value(Secret),
    /// The name of an environment variable that holds the value.
    Env {
        /// Variable name.
        env: String,
    },
    /// A file whose first line is the value.
    File {
        /// Path of the file.
        file: PathBuf,
    },
}

impl SecretSource {
    /// Reads the secret. `field` names the config key for the error message.
    pub(crate) fn resolve(&self, field: &'static str) -> Result<Secret, SettingsError> {
        match self {
            SecretSource::Value(secret) => Ok(secret.clone()),
            SecretSource::Env { env } => {
                std::env::var(env)
                    .map(Secret)
                    .map_err(|e| SettingsError::Secret {
                        field,
                        cause: format!("environment variable `{env}`: {e}"),
                    })
            }
            SecretSource::File { file } => {
                let text = std::fs::read_to_string(file).map_err(|e| SettingsError::Secret {
                    field,
                    cause: format!("file `{}`: {e}", file.display()),
                })?;
                Ok(Secret(text.lines().next().unwrap_or("").to_string()))
            }
        }
    }
}

/// How to log in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSettings {
    /// Password authentication.
    Password {
        /// The password.
        password: SecretSource,
    },
    /// Public key authentication with a private key file (OpenSSH or PEM format; ed25519,
    /// ECDSA, RSA).
    Key {
        /// Path of the private key.
        key_file: PathBuf,
        /// The key's passphrase, if it has one.
        #[serde(default)]
        passphrase: Option<SecretSource>,
    },
}

/// What to do with a host key that is not in the known_hosts file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostKeyPolicy {
    /// Refuse unknown and mismatching keys (the default).
    #[default]
    Strict,
    /// Append an unknown key to the known_hosts file and go on (trust on first use). A
    /// mismatching key is still refused.
    AcceptNew,
}

/// Settings of one SFTP source.
///
/// Durations are human strings (humantime's syntax): `"500ms"`, `"10s"`, `"2m"`, `"1s 500ms"`;
/// a number without a unit is refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpSettings {
    /// Server host name or address.
    pub host: String,
    /// Server port (default 22).
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name.
    pub user: String,
    /// How to log in.
    pub auth: AuthSettings,
    /// The OpenSSH known_hosts file the server's key is checked against.
    pub known_hosts: PathBuf,
    /// Unknown host keys: `strict` (default) or `accept_new`.
    #[serde(default)]
    pub host_key_policy: HostKeyPolicy,
    /// TCP connect timeout (default 10s).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Timeout of every SSH/SFTP call, including the handshake (default 30s).
    #[serde(default = "default_operation_timeout", with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// At most this many SSH sessions at once; one is reused across operations, more are
    /// opened only for parallel reads or writes (default 4, the listener's default
    /// `max_in_flight`).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// First delay before reconnecting after a failed connect (default 1s); doubles per
    /// failure.
    #[serde(default = "default_reconnect_initial", with = "humantime_serde")]
    pub reconnect_initial: Duration,
    /// Longest delay between reconnect attempts (default 30s).
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Size of the buffer each reader and writer moves per blocking call (default 1 MiB). A
    /// reader's window grows to it, and libssh2 keeps four times the window requested ahead:
    /// 4 MiB in flight, about 110 MB/s at 20 ms round trip where 256 KiB gave 38 MB/s
    /// (`throughput` bench), for up to about 5 MiB of memory per open reader.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
}

fn default_port() -> u16 {
    22
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_operation_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_sessions() -> usize {
    4
}
fn default_reconnect_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}
fn default_chunk_size() -> usize {
    1024 * 1024
}

impl SftpSettings {
    /// Settings with every optional field at its default.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        auth: AuthSettings,
        known_hosts: impl Into<PathBuf>,
    ) -> SftpSettings {
        SftpSettings {
            host: host.into(),
            port,
            user: user.into(),
            auth,
            known_hosts: known_hosts.into(),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: default_connect_timeout(),
            operation_timeout: default_operation_timeout(),
            max_sessions: default_max_sessions(),
            reconnect_initial: default_reconnect_initial(),
            reconnect_max: default_reconnect_max(),
            chunk_size: default_chunk_size(),
        }
    }

    /// `host:port`, for messages.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Checks the settings and reads the secrets they point at.
    pub(crate) fn resolve(&self) -> Result<Credentials, SettingsError> {
        let invalid = |field: &'static str, cause: &str| SettingsError::Invalid {
            field,
            cause: cause.to_string(),
        };
        if self.host.trim().is_empty() {
            return Err(invalid("host", "empty"));
        }
        if self.user.is_empty() {
            return Err(invalid("user", "empty"));
        }
        if self.port == 0 {
            return Err(invalid("port", "must not be 0"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout", "must be above zero"));
        }
        if self.operation_timeout.is_zero() || self.operation_timeout.as_millis() > u32::MAX as u128
        {
            return Err(invalid(
                "operation_timeout",
                "must be between 1ms and 49 days",
            ));
        }
        if self.max_sessions == 0 {
            return Err(invalid("max_sessions", "must be at least 1"));
        }
        if self.chunk_size == 0 || self.chunk_size > 64 * 1024 * 1024 {
            return Err(invalid("chunk_size", "must be between 1 byte and 64 MiB"));
        }
        if self.reconnect_max < self.reconnect_initial {
            return Err(invalid(
                "reconnect_max",
                "must not be below reconnect_initial",
            ));
        }
        match &self.auth {
            AuthSettings::Password { password } => {
                Ok(Credentials::Password(password.resolve("auth.password")?))
            }
            AuthSettings::Key {
                key_file,
                passphrase,
            } => Ok(Credentials::Key {
                key_file: key_file.clone(),
                passphrase: passphrase
                    .as_ref()
                    .map(|p| p.resolve("auth.passphrase"))
                    .transpose()?,
            }),
        }
    }
}

/// The resolved login secrets (Debug redacts through [`Secret`]).
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    Password(Secret),
    Key {
        key_file: PathBuf,
        passphrase: Option<Secret>,
    },
}

/// Why settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A field has a value that cannot work.
    #[error("sftp setting `{field}`: {cause}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        cause: String,
    },
    /// A secret could not be read from its source.
    #[error("sftp setting `{field}`: cannot read secret from {cause}")]
    Secret {
        /// The field.
        field: &'static str,
        /// The source and the cause (never the value).
        cause: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "host = \"h\"\nuser = \"u\"\nknown_hosts = \"/k\"\n\
                        auth = { method = \"password\", password = \"x\" }\n";

    #[test]
    fn durations_parse() {
        let s: SftpSettings = toml::from_str(&format!(
            "{BASE}connect_timeout = \"500ms\"\noperation_timeout = \"3s 333ms\"\n\
             reconnect_initial = \"2m\"\nreconnect_max = \"7d\""
        ))
        .unwrap();
        assert_eq!(s.connect_timeout, Duration::from_millis(500));
        assert_eq!(s.operation_timeout, Duration::from_millis(3333));
        assert_eq!(s.reconnect_initial, Duration::from_secs(120));
        assert_eq!(s.reconnect_max, Duration::from_secs(7 * 86_400));
        assert_eq!(s.max_sessions, 4);
        // A number without a unit, as text or as an integer, is refused with the key.
        for bad in ["\"10\"", "\"ten s\"", "10"] {
            let err = toml::from_str::<SftpSettings>(&format!("{BASE}connect_timeout = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("connect_timeout") && err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn secret_from_env_and_file() {
        let path = std::env::temp_dir().join(format!("sftp-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file\nsecond line\n").unwrap();
        let s = SecretSource::File { file: path.clone() }
            .resolve("auth.password")
            .unwrap();
        assert_eq!(s.expose(), "from-file");
        std::fs::remove_file(&path).unwrap();
        let err = SecretSource::File { file: path }
            .resolve("auth.password")
            .unwrap_err();
        assert!(err.to_string().contains("auth.password"), "{err}");

        let err = SecretSource::Env {
            env: "TRANSFER_SFTP_SURELY_UNSET_VAR".into(),
        }
        .resolve("auth.passphrase")
        .unwrap_err();
        assert!(err.to_string().contains("TRANSFER_SFTP_SURELY_UNSET_VAR"));
    }

    #[test]
    fn invalid_settings_name_the_field() {
        let mut s = SftpSettings::new(
            "h",
            22,
            "u",
            AuthSettings::Password {
                password: SecretSource::Value(Secret::new("x")),
            },
            "/k",
        );
        s.max_sessions = 0;
        let err = s.resolve().unwrap_err();
        assert!(err.to_string().contains("max_sessions"), "{err}");
    }
}
