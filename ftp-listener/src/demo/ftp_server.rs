//! The demo's FTP server: libunftp over a local folder on a free loopback port, one user with
//! a random password (so the demo can check that no member ever logs it).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::task::JoinHandle;
use unftp_core::auth::{AuthenticationError, Authenticator, Credentials, Principal};
use unftp_sbe_fs::Filesystem;

/// The only account: `user` with `password`.
struct OneUser {
    user: String,
    password: String,
}

impl fmt::Debug for OneUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneUser")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[async_trait::async_trait]
impl Authenticator for OneUser {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        if username != self.user {
            return Err(AuthenticationError::BadUser);
        }
        if creds.password.as_deref() != Some(self.password.as_str()) {
            return Err(AuthenticationError::BadPassword);
        }
        Ok(Principal {
            username: username.to_string(),
        })
    }
}

/// A running server; stopped when dropped.
#[derive(Debug)]
pub(crate) struct FtpServer {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FtpServer {
    /// Serves `root` to `user`/`password` on 127.0.0.1, on a port that was free a moment
    /// ago (libunftp binds by address, so a port taken in between is retried with another).
    pub(crate) async fn start(root: &Path, user: &str, password: &str) -> anyhow::Result<Self> {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let root: PathBuf = root.to_path_buf();
            let auth = Arc::new(OneUser {
                user: user.to_string(),
                password: password.to_string(),
            });
            let server = libunftp::ServerBuilder::with_authenticator(
                Box::new(move || {
                    Filesystem::new(root.clone()).expect("the demo's FTP root exists while it runs")
                }),
                auth,
            )
            .greeting("ftp-listener demo")
            .build()
            .context("building the demo's FTP server")?;
            let (tx, mut rx) = tokio::sync::oneshot::channel::<String>();
            let task = tokio::spawn(async move {
                if let Err(e) = server.listen(addr.to_string()).await {
                    let _ = tx.send(e.to_string());
                }
            });
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return Ok(FtpServer { addr, task });
                }
                if let Ok(e) = rx.try_recv() {
                    last_error = e;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            task.abort();
        }
        bail!("the demo's FTP server did not start on loopback: {last_error}")
    }
}

/// A loopback port nobody listened on a moment ago.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("looking for a free loopback port")?;
    Ok(listener.local_addr()?.port())
}
