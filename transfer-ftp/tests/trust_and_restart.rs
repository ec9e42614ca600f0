//! Login and certificate refusals, and a server that dies and comes back mid-session.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use common::{Server, Target, ftp_root, wait_port, write};
use coord_core::{FsError, ListOptions, RemoteFs};
use transfer_ftp::{FtpFs, Secret};

const SERVERS: [Server; 2] = [Server::Vsftpd, Server::Proftpd];

#[tokio::test]
async fn wrong_password_is_an_auth_error_and_backs_off() {
    for server in SERVERS {
        for tls in [false, true] {
            let mut settings = Target { server, tls }.settings();
            settings.password_file = None;
            settings.password = Some(Secret::new("definitely-wrong"));
            let fs = FtpFs::new(settings).unwrap();
            let err = fs.list("/", &ListOptions::default()).await.unwrap_err();
            assert!(matches!(err, FsError::Auth { .. }), "{server:?} {err:?}");
            assert!(!err.to_string().contains("definitely-wrong"), "{err}");
            // The next call inside the backoff window fails fast with the same kind.
            let again = fs.list("/", &ListOptions::default()).await.unwrap_err();
            assert!(matches!(again, FsError::Auth { .. }), "{again:?}");
            assert!(again.to_string().contains("not retried"), "{again}");
        }
    }
}

#[tokio::test]
async fn untrusted_certificate_is_refused_unless_opted_out() {
    for server in SERVERS {
        // The test CA is not among the system roots.
        let mut settings = Target { server, tls: true }.settings();
        settings.ca_file = None;
        let fs = FtpFs::new(settings.clone()).unwrap();
        let err = fs.list("/", &ListOptions::default()).await.unwrap_err();
        assert!(matches!(err, FsError::Trust { .. }), "{server:?} {err:?}");

        // A CA file that did not sign the certificate: refused as well.
        let other_ca = ftp_root().join("tls/server.pem");
        settings.ca_file = Some(other_ca);
        let fs = FtpFs::new(settings.clone()).unwrap();
        let err = fs.list("/", &ListOptions::default()).await.unwrap_err();
        assert!(matches!(err, FsError::Trust { .. }), "{server:?} {err:?}");

        settings.ca_file = None;
        settings.insecure_skip_verify = true;
        let fs = FtpFs::new(settings).unwrap();
        fs.list("/", &ListOptions::default()).await.unwrap();
    }
}

#[test]
fn missing_ca_file_is_a_settings_error() {
    let mut settings = Target {
        server: Server::Proftpd,
        tls: true,
    }
    .settings();
    settings.ca_file = Some("/nonexistent/ca.pem".into());
    let err = FtpFs::new(settings).unwrap_err();
    assert_eq!(err.field, "ca_file");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

/// A daemon of our own (port 2123 vsftpd, 2124 proftpd, configs written by the setup
/// script), in its own process group so that killing the group kills its sessions too.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(server: Server) -> Daemon {
        let run = ftp_root().join("run");
        let mut cmd = match server {
            Server::Vsftpd => {
                let mut c = Command::new(ftp_root().join("vsftpd-bin"));
                c.arg(run.join("vsftpd-restart.conf"));
                c
            }
            Server::Proftpd => {
                let mut c = Command::new("proftpd");
                c.arg("-n")
                    .arg("-q")
                    .arg("-c")
                    .arg(run.join("proftpd-restart.conf"));
                c
            }
        };
        let child = cmd
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start daemon");
        wait_port(Self::port(server), true);
        Daemon { child }
    }

    fn port(server: Server) -> u16 {
        match server {
            Server::Vsftpd => 2123,
            Server::Proftpd => 2124,
        }
    }

    fn kill(mut self) {
        self.kill_group();
    }

    /// Kills the daemon with its session processes: its process group, and its descendants
    /// (vsftpd's sessions make themselves session leaders, out of the group).
    fn kill_group(&mut self) {
        let pgid = self.child.id();
        let mut targets = vec![format!("-{pgid}")];
        targets.extend(descendants(pgid).iter().map(u32::to_string));
        let group_killed = Command::new("kill")
            .args(["-s", "KILL", "--"])
            .args(&targets)
            .status()
            .is_ok_and(|s| s.success());
        if !group_killed {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Every process below `root`, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces, so parse after the last `)`.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
        }
    }
}

#[tokio::test]
async fn server_restart_mid_session_then_reconnect() {
    for server in SERVERS {
        let port = Daemon::port(server);
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} is busy: a daemon left over from an earlier run?"
        );
        let (local, remote) = Target { server, tls: false }.fresh_dir("restart");
        write(&local.join("f"), b"still here");
        let mut settings = Target { server, tls: false }.settings();
        settings.port = port;
        let fs = FtpFs::new(settings.clone()).unwrap();
        // The same, but probing idle sessions with NOOP before every reuse.
        settings.idle_probe_after = std::time::Duration::ZERO;
        let probing = FtpFs::new(settings).unwrap();

        let daemon = Daemon::start(server);
        let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
        assert_eq!(listing.entries.len(), 1);
        probing
            .list(&remote, &ListOptions::default())
            .await
            .unwrap();
        daemon.kill();
        wait_port(port, false);
        let daemon = Daemon::start(server);

        // The pooled session is dead: this call reports it, as a transient error...
        let err = fs.list(&remote, &ListOptions::default()).await.unwrap_err();
        assert!(err.is_transient(), "{server:?} {err:?}");
        // ... and the next one reconnects.
        let listing = fs.list(&remote, &ListOptions::default()).await.unwrap();
        assert_eq!(listing.entries[0].name, "f");
        assert_eq!(
            common::read_all(&fs, &format!("{remote}/f")).await.unwrap(),
            b"still here"
        );
        assert_eq!(fs.sessions_opened(), 2);
        // The probe finds the dead session and replaces it: no error at all.
        probing
            .list(&remote, &ListOptions::default())
            .await
            .unwrap();
        assert_eq!(probing.sessions_opened(), 2);
        daemon.kill();
    }
}
