//! `FtpSettings`: where the server is, how to log in, how to trust it, how long to wait.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Whether the control and data connections are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain FTP.
    #[default]
    None,
    /// Explicit FTPS: `AUTH TLS` on the control connection, then `PBSZ 0` / `PROT P`, so data
    /// connections are encrypted too.
    Explicit,
    /// Implicit FTPS: TLS from the first byte of the control connection (no `AUTH TLS`;
    /// usually port 990, the default then), then `PBSZ 0` / `PROT P`. Deprecated by RFC 4217
    /// but still offered by many servers.
    Implicit,
}

impl TlsMode {
    /// Whether the connection is encrypted (explicit or implicit).
    pub fn is_tls(self) -> bool {
        self != TlsMode::None
    }
}

/// How data connections are opened (both are passive: the client connects to the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassiveMode {
    /// `PASV` (RFC 959). The IP address in the `227` reply is ignored and the control
    /// connection's peer address used instead (it guards against a server that points the
    /// client at a third host, and works behind NAT).
    Pasv,
    /// `EPSV` (RFC 2428): port only, works over IPv6 and NAT.
    #[default]
    Epsv,
}

/// How a no-overwrite move (into the done or error folder) learns that its target name is
/// free. FTP has no atomic no-overwrite rename, so either way another client that creates
/// the same name in that folder at the same moment can be overwritten; the listener's
/// leader is the only writer there in normal operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveCheck {
    /// Ask `SIZE` of the target before each move (default): a free name answers `550`, one
    /// refused command per move; the window is one round trip.
    #[default]
    Size,
    /// List the target folder's names once (then again when that list is a minute old, or
    /// after a rename was refused) and check the name against them and against the names
    /// moved there since: no command is refused on a free name, for servers that penalise
    /// refused commands. Names that start with `.` are still asked with `SIZE` (a server
    /// may hide them from listings). The window is the list's age, up to a minute.
    Listing,
}

/// A secret (password). Its `Debug` and `Display` print `***`; the value is reachable only
/// through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Connection settings of one FTP or FTPS server.
///
/// The password comes from exactly one of `password` (inline), `password_env` (the name of
/// an environment variable) or `password_file` (a file whose content, trailing newline
/// trimmed, is the password); see [`FtpSettings::resolve_password`]. Durations are human
/// strings in configuration files (humantime's syntax): `"500ms"`, `"10s"`, `"2m"`,
/// `"1s 500ms"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpSettings {
    /// Host name or IP address; also the name the TLS certificate must carry.
    pub host: String,
    /// Control port; 0 (the default) means 21, or 990 with `tls = "implicit"` (see
    /// [`FtpSettings::port`]).
    #[serde(default)]
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password, inline.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Name of an environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File that holds the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `none` (default), `explicit` (AUTH TLS) or `implicit` (TLS at connect).
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the CA certificates to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (self-signed test servers only). Logged as a warning on every
    /// connect.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// `epsv` (default) or `pasv`.
    #[serde(default)]
    pub passive_mode: PassiveMode,
    /// Limit for TCP connect, greeting, TLS handshake and login together (default 10 s).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Limit for every command, every listing and every single read or write of a transfer
    /// (default 30 s).
    #[serde(default = "default_op_timeout", with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Most sessions (control connections) open at once; parallel reads each hold one until
    /// they finish, moves and deletes one each (default 4, the listener's default
    /// `max_in_flight`).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// First delay before reconnecting after a failed connect; doubles up to
    /// `reconnect_backoff_max` (defaults 200 ms and 30 s).
    #[serde(default = "default_backoff_min", with = "humantime_serde")]
    pub reconnect_backoff_min: Duration,
    /// Longest delay between reconnect attempts.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub reconnect_backoff_max: Duration,
    /// A pooled session idle for longer than this is probed with `NOOP` before reuse and
    /// replaced if the probe fails (default 15 s).
    #[serde(default = "default_idle_probe", with = "humantime_serde")]
    pub idle_probe_after: Duration,
    /// On a LIST-only server, send a listing's `MDTM` commands in batches without waiting
    /// for each reply (pipelining, plain FTP only; FTPS asks one at a time). Only for
    /// servers that answer commands strictly in order, as vsftpd and proftpd do: libunftp
    /// (unFTP) answers `MDTM` from a task of its own, so its replies can come out of order
    /// and a file would get another's time. A server that leaves a pipelined command
    /// unanswered within `op_timeout` fails that listing once and is asked one at a time
    /// from then on (default false).
    #[serde(default = "default_pipelining")]
    pub pipelining: bool,
    /// How a no-overwrite move learns its target name is free: `size` (default) or
    /// `listing` (see [`MoveCheck`]).
    #[serde(default)]
    pub move_check: MoveCheck,
}

fn default_pipelining() -> bool {
    false
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_op_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_sessions() -> usize {
    4
}
fn default_backoff_min() -> Duration {
    Duration::from_millis(200)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_probe() -> Duration {
    Duration::from_secs(15)
}

impl FtpSettings {
    /// Settings with every default, for `host:port` and `user`, without a password source.
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> FtpSettings {
        FtpSettings {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            password_env: None,
            password_file: None,
            tls: TlsMode::None,
            ca_file: None,
            insecure_skip_verify: false,
            passive_mode: PassiveMode::default(),
            connect_timeout: default_connect_timeout(),
            op_timeout: default_op_timeout(),
            max_sessions: default_max_sessions(),
            reconnect_backoff_min: default_backoff_min(),
            reconnect_backoff_max: default_backoff_max(),
            idle_probe_after: default_idle_probe(),
            pipelining: default_pipelining(),
            move_check: MoveCheck::default(),
        }
    }

    /// The control port to connect to: `port`, or when it is 0 the protocol's default (21,
    /// or 990 for implicit FTPS).
    pub fn port(&self) -> u16 {
        match (self.port, self.tls) {
            (0, TlsMode::Implicit) => 990,
            (0, _) => 21,
            (port, _) => port,
        }
    }

    /// `host:port`, as error messages name the server.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port())
        } else {
            format!("{}:{}", self.host, self.port())
        }
    }

    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.host.trim().is_empty() {
            return Err(SettingsError::new("host", "must not be empty"));
        }
        if self.user.is_empty() || self.user.contains(['\r', '\n']) {
            return Err(SettingsError::new(
                "user",
                "must be non-empty and on one line",
            ));
        }
        if self.max_sessions == 0 {
            return Err(SettingsError::new("max_sessions", "must be at least 1"));
        }
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("op_timeout", self.op_timeout),
            ("reconnect_backoff_min", self.reconnect_backoff_min),
        ] {
            if value.is_zero() {
                return Err(SettingsError::new(field, "must be greater than zero"));
            }
        }
        if self.reconnect_backoff_max < self.reconnect_backoff_min {
            return Err(SettingsError::new(
                "reconnect_backoff_max",
                "must not be shorter than reconnect_backoff_min",
            ));
        }
        if self.tls == TlsMode::None && (self.ca_file.is_some() || self.insecure_skip_verify) {
            return Err(SettingsError::new(
                "tls",
                "ca_file and insecure_skip_verify need tls = \"explicit\" or \"implicit\"",
            ));
        }
        if self.ca_file.is_some() && self.insecure_skip_verify {
            return Err(SettingsError::new(
                "insecure_skip_verify",
                "contradicts ca_file; set only one",
            ));
        }
        Ok(())
    }

    /// The password, from exactly one of `password`, `password_env`, `password_file`.
    pub fn resolve_password(&self) -> Result<Secret, SettingsError> {
        let sources = usize::from(self.password.is_some())
            + usize::from(self.password_env.is_some())
            + usize::from(self.password_file.is_some());
        if sources != 1 {
            return Err(SettingsError::new(
                "password",
                "set exactly one of password, password_env, password_file",
            ));
        }
        let secret = if let Some(p) = &self.password {
            p.clone()
        } else if let Some(var) = &self.password_env {
            Secret(std::env::var(var).map_err(|_| {
                SettingsError::new(
                    "password_env",
                    format!("environment variable `{var}` is not set or not UTF-8"),
                )
            })?)
        } else {
            let path = self.password_file.as_deref().unwrap_or(Path::new(""));
            let text = std::fs::read_to_string(path).map_err(|e| {
                SettingsError::new(
                    "password_file",
                    format!("cannot read `{}`: {e}", path.display()),
                )
            })?;
            Secret(text.trim_end_matches(['\r', '\n']).to_string())
        };
        if secret.0.contains(['\r', '\n']) {
            return Err(SettingsError::new("password", "must be on one line"));
        }
        Ok(secret)
    }
}

impl fmt::Debug for FtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpSettings")
            .field("host", &self.host)
            .field("port", &self.port())
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("passive_mode", &self.passive_mode)
            .field("connect_timeout", &self.connect_timeout)
            .field("op_timeout", &self.op_timeout)
            .field("max_sessions", &self.max_sessions)
            .field("pipelining", &self.pipelining)
            .field("move_check", &self.move_check)
            .finish_non_exhaustive()
    }
}

/// A setting that is missing or breaks a rule; `field` is the configuration key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ftp setting `{field}`: {rule}")]
#[non_exhaustive]
pub struct SettingsError {
    /// The key at fault.
    pub field: &'static str,
    /// What is wrong.
    pub rule: String,
}

impl SettingsError {
    fn new(field: &'static str, rule: impl Into<String>) -> SettingsError {
        SettingsError {
            field,
            rule: rule.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(toml: &str) -> Result<FtpSettings, Box<figment::Error>> {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(toml))
            .extract()
            .map_err(Box::new)
    }

    #[test]
    fn durations_parse() {
        let s = from_toml(
            "host = \"h\"\nuser = \"u\"\nconnect_timeout = \"500ms\"\nop_timeout = \"3s 333ms\"\n\
             reconnect_backoff_max = \"2m\"\nidle_probe_after = \"7d\"",
        )
        .unwrap();
        assert_eq!(s.connect_timeout, Duration::from_millis(500));
        assert_eq!(s.op_timeout, Duration::from_millis(3333));
        assert_eq!(s.reconnect_backoff_max, Duration::from_secs(120));
        assert_eq!(s.idle_probe_after, Duration::from_secs(7 * 86_400));
        for bad in ["ten", "10 parsecs"] {
            let toml = format!("host = \"h\"\nuser = \"u\"\nop_timeout = \"{bad}\"");
            let err = from_toml(&toml).unwrap_err().to_string();
            assert!(err.contains("op_timeout") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn debug_redacts_the_password() {
        let mut s = FtpSettings::new("h", 21, "u");
        s.password = Some(Secret::new("hunter2-very-secret"));
        let text = format!(
            "{s:?} {:?} {}",
            s.password,
            Secret::new("hunter2-very-secret")
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
    }

    #[test]
    fn password_sources_are_exclusive_and_named() {
        let mut s = FtpSettings::new("h", 21, "u");
        assert_eq!(s.resolve_password().unwrap_err().field, "password");
        s.password = Some(Secret::new("p"));
        assert_eq!(s.resolve_password().unwrap().expose(), "p");
        s.password_env = Some("X".into());
        assert_eq!(s.resolve_password().unwrap_err().field, "password");
        s.password = None;
        s.password_env = Some("TRANSFER_FTP_TEST_SURELY_UNSET".into());
        let err = s.resolve_password().unwrap_err();
        assert_eq!(err.field, "password_env");
        assert!(err.to_string().contains("TRANSFER_FTP_TEST_SURELY_UNSET"));
        s.password_env = None;
        s.password_file = Some("/nonexistent/pw".into());
        assert_eq!(s.resolve_password().unwrap_err().field, "password_file");
    }

    #[test]
    fn validate_names_the_field() {
        let mut s = FtpSettings::new("h", 21, "u");
        s.validate().unwrap();
        s.insecure_skip_verify = true;
        assert_eq!(s.validate().unwrap_err().field, "tls");
        s.tls = TlsMode::Explicit;
        s.validate().unwrap();
        s.max_sessions = 0;
        assert_eq!(s.validate().unwrap_err().field, "max_sessions");
    }
}
