//! A TCP proxy for chaos tests: members talk to the database through it, and a test makes
//! the database "go away" with [`TcpProxy::cut`] (every open connection is closed, new ones
//! are refused) and come back with [`TcpProxy::restore`]; or makes a client look stopped
//! (SIGSTOP, a frozen VM) with [`TcpProxy::freeze`] / [`TcpProxy::freeze_on_reply`]: the
//! connections stay open and nothing more is forwarded until [`TcpProxy::thaw`].
//!
//! It also puts a link's latency between client and target: [`TcpProxy::set_delay`] holds
//! every byte for a one-way delay in each direction before delivering it. Delivery is
//! pipelined, not a sleep per read: each chunk read is stamped with the time it is due and
//! queued, and a second task delivers the queue in order as chunks fall due, so a stream keeps
//! its throughput (up to 16 MiB in flight per direction and connection, like a link's
//! bandwidth-delay product) and a request/response pair costs twice the delay, as on a real
//! link. Benchmarks run the database and the file server 10 ms away with it.
//!
//! It runs on the caller's tokio runtime: start it inside one (a multi-thread runtime keeps
//! forwarding while the test thread does something else).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// The most bytes one direction of one connection holds while delaying them (read from one
/// side, not yet written to the other). With a delay `d` this caps a stream at
/// `MAX_IN_FLIGHT / d` (1.6 GB/s at 10 ms), as a link's window would.
pub(crate) const MAX_IN_FLIGHT: usize = 16 * 1024 * 1024;

/// The largest chunk read at once.
const CHUNK: usize = 64 * 1024;

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
    /// Bytes delivered to the target, and to the client, since the start.
    bytes_to_target: AtomicU64,
    bytes_to_client: AtomicU64,
    /// One-way delay towards the target, in nanoseconds.
    delay_to_target: AtomicU64,
    /// One-way delay towards the client, in nanoseconds.
    delay_to_client: AtomicU64,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            connections: Mutex::default(),
            accepted: AtomicU64::new(0),
            frozen: watch::Sender::new(false),
            freeze_on_reply: AtomicBool::new(false),
            bytes_to_target: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            delay_to_target: AtomicU64::new(0),
            delay_to_client: AtomicU64::new(0),
        }
    }

    fn delay(&self, direction: Direction) -> Duration {
        let nanos = match direction {
            Direction::ToTarget => &self.delay_to_target,
            Direction::ToClient => &self.delay_to_client,
        };
        Duration::from_nanos(nanos.load(Ordering::Relaxed))
    }
}

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to target (requests).
    ToTarget,
    /// Target to client (replies).
    ToClient,
}

impl TcpProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `target`. Call it inside a
    /// tokio runtime.
    pub async fn start(target: SocketAddr) -> io::Result<TcpProxy> {
        TcpProxy::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), target).await
    }

    /// Listens on `listen` (port 0 picks a free port) and forwards to `target`. A fixed
    /// address is for a protocol that hands out ports: an FTP server's passive ports on
    /// 127.0.0.1 can each be proxied from the same port on 127.0.0.2, so that a client of
    /// `127.0.0.2` (with `EPSV`, which names only the port) opens its data connections
    /// through proxies too.
    pub async fn start_on(listen_addr: SocketAddr, target: SocketAddr) -> io::Result<TcpProxy> {
        let listener = listen(listen_addr)?;
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

    /// Holds every byte for `to_target` on its way from a client to the target, and for
    /// `to_client` on its way back (a round trip costs their sum). Applies to bytes read
    /// after the call, on open connections too; bytes already queued keep their due time.
    /// Zero (the default) forwards at once.
    pub fn set_delay(&self, to_target: Duration, to_client: Duration) {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.shared
            .delay_to_target
            .store(nanos(to_target), Ordering::Relaxed);
        self.shared
            .delay_to_client
            .store(nanos(to_client), Ordering::Relaxed);
    }

    /// The one-way delays `(to_target, to_client)`.
    pub fn delay(&self) -> (Duration, Duration) {
        (
            self.shared.delay(Direction::ToTarget),
            self.shared.delay(Direction::ToClient),
        )
    }

    /// Bytes delivered to the target since the start, over every connection (a test can
    /// count what a client sends for one operation: read it before and after).
    pub fn bytes_to_target(&self) -> u64 {
        self.shared.bytes_to_target.load(Ordering::Relaxed)
    }

    /// Bytes delivered to the clients since the start, over every connection.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.bytes_to_client.load(Ordering::Relaxed)
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
        pump(client_read, target_write, &shared, Direction::ToTarget),
        pump(target_read, client_write, &shared, Direction::ToClient),
    );
}

/// A chunk on its way, and when it is due at the other side.
struct Due {
    at: Instant,
    bytes: Vec<u8>,
    /// Its share of the direction's [`MAX_IN_FLIGHT`], given back once written.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Copies one direction until EOF or an error, then shuts the other side's write half (as
/// `copy_bidirectional` does), each chunk delivered when its delay is over. Reading and
/// writing are two halves joined by a queue, so a chunk waits its delay while later ones are
/// already read: the delay adds latency, never serialises bandwidth. Reads nothing and writes
/// nothing while the proxy is frozen.
async fn pump<R, W>(from: R, to: W, shared: &Shared, direction: Direction)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    tokio::join!(
        read_half(from, tx, budget, shared, direction),
        write_half(rx, to, shared, direction)
    );
}

async fn read_half<R: AsyncRead + Unpin>(
    mut from: R,
    tx: mpsc::UnboundedSender<Due>,
    budget: Arc<Semaphore>,
    shared: &Shared,
    direction: Direction,
) {
    let mut frozen = shared.frozen.subscribe();
    let mut buf = vec![0u8; CHUNK];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        // Room for a whole chunk first, so the bytes in flight stay bounded.
        let Ok(mut permit) = Arc::clone(&budget).acquire_many_owned(CHUNK as u32).await else {
            return;
        };
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Queued at its size (a small read does not pin a whole chunk's allocation), and
        // only that much of the budget is kept.
        let bytes = buf[..n].to_vec();
        drop(permit.split(CHUNK - n));
        if direction == Direction::ToClient && shared.freeze_on_reply.swap(false, Ordering::SeqCst)
        {
            shared.frozen.send_replace(true);
        }
        let due = Due {
            at: Instant::now() + shared.delay(direction),
            bytes,
            _permit: permit,
        };
        if tx.send(due).is_err() {
            return;
        }
    }
}

async fn write_half<W: AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<Due>,
    mut to: W,
    shared: &Shared,
    direction: Direction,
) {
    let delivered = match direction {
        Direction::ToTarget => &shared.bytes_to_target,
        Direction::ToClient => &shared.bytes_to_client,
    };
    let mut frozen = shared.frozen.subscribe();
    while let Some(due) = rx.recv().await {
        tokio::time::sleep_until(due.at).await;
        // Bytes read just before a freeze are held until the thaw.
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&due.bytes).await.is_err() {
            return;
        }
        delivered.fetch_add(due.bytes.len() as u64, Ordering::Relaxed);
    }
    // The read side ended (EOF or error) and everything before it was delivered.
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
        assert_eq!((proxy.bytes_to_target(), proxy.bytes_to_client()), (5, 5));
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

    /// A proxy's two pumps between in-memory pipes (a simulated socket each side) and an
    /// echo at the target side: returns the client's end.
    fn simulated_link(to_target: Duration, to_client: Duration) -> tokio::io::DuplexStream {
        let shared = Arc::new(Shared::new());
        shared
            .delay_to_target
            .store(to_target.as_nanos() as u64, Ordering::Relaxed);
        shared
            .delay_to_client
            .store(to_client.as_nanos() as u64, Ordering::Relaxed);
        let (client, proxy_client_side) = tokio::io::duplex(CHUNK);
        let (proxy_target_side, target) = tokio::io::duplex(CHUNK);
        tokio::spawn(async move {
            let (cr, cw) = tokio::io::split(proxy_client_side);
            let (tr, tw) = tokio::io::split(proxy_target_side);
            tokio::join!(
                pump(cr, tw, &shared, Direction::ToTarget),
                pump(tr, cw, &shared, Direction::ToClient),
            );
        });
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(target);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        client
    }

    // Paused time: the clock jumps from timer to timer, so the delays are exact and the test
    // takes no real time.
    #[tokio::test(start_paused = true)]
    async fn a_round_trip_costs_both_delays() {
        let mut client = simulated_link(Duration::from_millis(10), Duration::from_millis(25));
        for _ in 0..3 {
            let started = Instant::now();
            client.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            let rtt = started.elapsed();
            // The timer wheel rounds each deadline up to the next millisecond.
            assert!(
                rtt >= Duration::from_millis(35) && rtt <= Duration::from_millis(37),
                "{rtt:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_bytes_stream_in_order_without_serialising() {
        let delay = Duration::from_millis(10);
        let client = simulated_link(delay, delay);
        let (mut r, mut w) = tokio::io::split(client);
        const MESSAGES: u32 = 200;
        let started = Instant::now();
        // One message each millisecond, far more often than a round trip.
        let sender = tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..MESSAGES {
                sent.push(Instant::now());
                w.write_all(&i.to_be_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (w, sent)
        });
        let mut arrived = Vec::new();
        for i in 0..MESSAGES {
            let mut buf = [0u8; 4];
            r.read_exact(&mut buf).await.unwrap();
            assert_eq!(u32::from_be_bytes(buf), i, "in order");
            arrived.push(Instant::now());
        }
        let (_w, sent) = sender.await.unwrap();
        for (i, (s, a)) in sent.iter().zip(&arrived).enumerate() {
            let rtt = *a - *s;
            assert!(
                rtt >= 2 * delay && rtt <= 2 * delay + Duration::from_millis(3),
                "message {i}: {rtt:?}"
            );
        }
        // Serialised (a sleep per read) it would take MESSAGES round trips.
        let total = started.elapsed();
        assert!(
            total < Duration::from_millis(u64::from(MESSAGES)) + 4 * delay,
            "{total:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_delay_holds_the_end_of_stream_too() {
        let delay = Duration::from_millis(20);
        let client = simulated_link(delay, delay);
        let (mut r, mut w) = tokio::io::split(client);
        let started = Instant::now();
        w.write_all(b"last words").await.unwrap();
        w.shutdown().await.unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"last words");
        assert!(started.elapsed() >= 2 * delay, "{:?}", started.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_socket_round_trip_through_a_delaying_proxy() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        assert_eq!(proxy.delay(), (Duration::ZERO, Duration::ZERO));
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"warm").await.unwrap(), b"warm");

        let (to_target, to_client) = (Duration::from_millis(15), Duration::from_millis(30));
        proxy.set_delay(to_target, to_client);
        assert_eq!(proxy.delay(), (to_target, to_client));
        // On the open connection and on a new one alike.
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        for s in [&mut client, &mut fresh] {
            let started = std::time::Instant::now();
            assert_eq!(round_trip(s, b"ping").await.unwrap(), b"ping");
            let rtt = started.elapsed();
            assert!(rtt >= to_target + to_client, "{rtt:?}");
        }
        // A large transfer comes through whole and in order.
        let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = fresh.into_split();
        let sent = payload.clone();
        let writer = tokio::spawn(async move { w.write_all(&sent).await.map(|()| w) });
        let mut back = vec![0u8; payload.len()];
        r.read_exact(&mut back).await.unwrap();
        assert!(back == payload, "the echo differs");
        writer.await.unwrap().unwrap();
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
