//! A TCP proxy for chaos tests: members talk to the database through it, and a test makes
//! the database "go away" with [`TcpProxy::cut`] (every open connection is closed, new ones
//! are refused) and come back with [`TcpProxy::restore`]; or makes a client look stopped
//! (SIGSTOP, a frozen VM) with [`TcpProxy::freeze`] / [`TcpProxy::freeze_on_reply`]: the
//! connections stay open and nothing more is forwarded until [`TcpProxy::thaw`].
//!
//! It runs on the caller's tokio runtime: start it inside one (a multi-thread runtime keeps
//! forwarding while the test thread does something else).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A loopback TCP proxy to one target, which can be cut and restored.
///
/// While it is up, each accepted connection is forwarded to the target byte for byte, both
/// ways. [`cut`](TcpProxy::cut) closes the listening socket (new connections are refused by
/// the kernel) and every forwarded connection (both sides); [`restore`](TcpProxy::restore)
/// listens again on the same address. Dropping the proxy stops everything.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    connections: Mutex<JoinSet<()>>,
    accepted: AtomicU64,
    /// True while frozen: no connection forwards a byte either way.
    frozen: watch::Sender<bool>,
    /// Freeze as soon as the target next sends bytes (they are held, not delivered).
    freeze_on_reply: AtomicBool,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            connections: Mutex::default(),
            accepted: AtomicU64::new(0),
            frozen: watch::Sender::new(false),
            freeze_on_reply: AtomicBool::new(false),
        }
    }
}

impl TcpProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `target`. Call it inside a
    /// tokio runtime.
    pub async fn start(target: SocketAddr) -> io::Result<TcpProxy> {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let accept = tokio::spawn(accept_loop(listener, target, shared.clone()));
        Ok(TcpProxy {
            addr,
            target,
            shared,
            accept: Mutex::new(Some(accept)),
        })
    }

    /// The address clients connect to (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections accepted since the start (a test can check the clients really came
    /// through the proxy).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// True while the proxy accepts and forwards.
    pub fn is_up(&self) -> bool {
        self.lock_accept().is_some()
    }

    /// Stops forwarding on every connection, both ways, at once: the connections stay open,
    /// bytes in flight wait (in this proxy and the kernel's socket buffers), as if the client
    /// process were stopped. New connections are accepted but forward nothing either.
    pub fn freeze(&self) {
        self.shared.frozen.send_replace(true);
    }

    /// Arms a freeze that happens when the target next sends anything: those bytes are held
    /// back, so the request that caused them reached the server and its client never sees
    /// the answer (a client stopped right after sending). [`is_frozen`](TcpProxy::is_frozen)
    /// turns true when it fired.
    pub fn freeze_on_reply(&self) {
        self.shared.freeze_on_reply.store(true, Ordering::SeqCst);
    }

    /// Forwards again whatever was held, and everything after (also disarms
    /// [`freeze_on_reply`](TcpProxy::freeze_on_reply)).
    pub fn thaw(&self) {
        self.shared.freeze_on_reply.store(false, Ordering::SeqCst);
        self.shared.frozen.send_replace(false);
    }

    /// True while frozen.
    pub fn is_frozen(&self) -> bool {
        *self.shared.frozen.borrow()
    }

    /// Closes every forwarded connection and stops listening: new connections are refused
    /// until [`restore`](TcpProxy::restore). When it returns, every socket is closed.
    pub async fn cut(&self) {
        let accept = self.lock_accept().take();
        if let Some(accept) = accept {
            accept.abort();
            // The task owns the listener: once it is joined, the socket is closed.
            let _ = accept.await;
        }
        let mut connections = std::mem::take(&mut *self.lock_connections());
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }

    /// Listens again on the same address. A no-op while the proxy is up.
    pub async fn restore(&self) -> io::Result<()> {
        let mut accept = self.lock_accept();
        if accept.is_none() {
            let listener = listen(self.addr)?;
            *accept = Some(tokio::spawn(accept_loop(
                listener,
                self.target,
                self.shared.clone(),
            )));
        }
        Ok(())
    }

    fn lock_accept(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.accept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_connections(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(accept) = self.lock_accept().take() {
            accept.abort();
        }
        // Dropping the set aborts every forwarding task.
        drop(std::mem::take(&mut *self.lock_connections()));
    }
}

/// A listening socket with `SO_REUSEADDR`, so [`TcpProxy::restore`] can bind the same port
/// again while old connections linger in `TIME_WAIT`.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of descriptors or similar: do not spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let mut connections = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
        // Reap finished forwards so the set does not grow for ever.
        while connections.try_join_next().is_some() {}
        connections.spawn(forward(inbound, target, shared.clone()));
    }
}

async fn forward(inbound: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        // The target is down: the client sees its connection closed.
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (client_read, client_write) = inbound.into_split();
    let (target_read, target_write) = outbound.into_split();
    tokio::join!(
        pump(client_read, target_write, &shared, false),
        pump(target_read, client_write, &shared, true),
    );
}

/// Copies one direction until EOF or an error, then shuts the other side's write half (as
/// `copy_bidirectional` does). Reads nothing and writes nothing while the proxy is frozen.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: &Shared, reply: bool) {
    let mut frozen = shared.frozen.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if reply && shared.freeze_on_reply.swap(false, Ordering::SeqCst) {
            shared.frozen.send_replace(true);
        }
        // Bytes read just before a freeze are held until the thaw.
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on an ephemeral port.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut buf = vec![0; msg.len()];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwards_cuts_and_restores() {
        let target = echo().await;
        let proxy = TcpProxy::start(target).await.unwrap();
        assert_eq!(proxy.target(), target);
        assert!(proxy.addr().ip().is_loopback());
        assert_ne!(proxy.addr().port(), target.port());

        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"hello").await.unwrap(), b"hello");
        assert_eq!(proxy.accepted(), 1);
        assert!(proxy.is_up());

        proxy.cut().await;
        assert!(!proxy.is_up());
        // The open connection is closed: EOF or a reset, never an echo.
        let mut buf = [0u8; 8];
        let _ = open.write_all(b"again").await;
        let read = open.read(&mut buf).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // New connections are refused.
        let refused = TcpStream::connect(proxy.addr()).await;
        assert_eq!(
            refused.unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );

        proxy.restore().await.unwrap();
        proxy.restore().await.unwrap(); // a no-op while up
        let mut back = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut back, b"back").await.unwrap(), b"back");
        assert_eq!(proxy.accepted(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn freezes_and_thaws_without_losing_bytes() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"one").await.unwrap(), b"one");

        // Armed: the request goes through, the echo is held back.
        proxy.freeze_on_reply();
        assert!(!proxy.is_frozen());
        client.write_all(b"two").await.unwrap();
        let mut buf = [0u8; 3];
        let held = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            client.read_exact(&mut buf),
        )
        .await;
        assert!(held.is_err(), "nothing is delivered while frozen");
        assert!(proxy.is_frozen());
        // Frozen both ways: a later request does not reach the target either.
        client.write_all(b"333").await.unwrap();
        proxy.thaw();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"two");
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"333");

        proxy.freeze();
        client.write_all(b"four").await.unwrap();
        let mut four = [0u8; 4];
        let held = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            client.read_exact(&mut four),
        )
        .await;
        assert!(held.is_err());
        proxy.thaw();
        client.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"four");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_target_closes_the_client() {
        // Bind then drop: nothing listens there any more.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = TcpProxy::start(dead).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = [0u8; 4];
        let read = client.read(&mut buf).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
