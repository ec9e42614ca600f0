//! How many read requests a read costs, counted on the wire: the client's bytes through a
//! `testkit::TcpProxy`, measured against one single-request operation on the same session.
//! libssh2 asks for four times the buffer it is handed ahead (see `src/io.rs`): a small file
//! must not cost dozens of `FXP_READ`s, and a large one must stream whole.

mod common;

use common::*;
use coord_core::{FileReader, RemoteFs};
use testkit::TcpProxy;
use transfer_sftp::SftpFs;

/// An `SftpFs` whose session goes through `proxy`.
fn through(proxy: &TcpProxy) -> SftpFs {
    let mut s = settings(password_auth(PASSWORD));
    s.port = proxy.addr().port();
    // The proxy's port is not in known_hosts: the test server's key is the same, pinned.
    let known = std::env::temp_dir().join(format!(
        "read-requests-known-hosts-{}-{}",
        std::process::id(),
        proxy.addr().port()
    ));
    let pinned = std::fs::read_to_string(root().join("known_hosts"))
        .unwrap()
        .replace(&format!("[{HOST}]:{PORT}"), &format!("[{HOST}]:{}", s.port));
    std::fs::write(&known, pinned).unwrap();
    s.known_hosts = known;
    SftpFs::new(s).unwrap()
}

async fn read_whole(fs: &SftpFs, path: &str) -> Vec<u8> {
    let mut r = fs.open_read(path).await.unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    r.finish().await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_costs_a_few_requests_and_a_large_one_streams_whole() {
    let dir = fresh_dir("read-requests");
    let small: Vec<u8> = (0..4096u32).map(|i| (i % 253) as u8).collect();
    let large: Vec<u8> = (0..5 * 1024 * 1024 + 777u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    for (name, data) in [("small.bin", &small), ("large.bin", &large)] {
        let local = home().join(&dir).join(name);
        std::fs::write(&local, data).unwrap();
        chown_to_user(&local);
    }
    let proxy = TcpProxy::start(format!("{HOST}:{PORT}").parse().unwrap())
        .await
        .unwrap();
    let fs = through(&proxy);
    fs.check().await.unwrap();
    assert_eq!(proxy.accepted(), 1);

    // One request and its answer: a stat of one existing directory.
    let before = proxy.bytes_to_target();
    fs.create_dir_all(&dir).await.unwrap();
    let one_request = proxy.bytes_to_target() - before;
    assert!(one_request > 0);

    let before = proxy.bytes_to_target();
    assert!(read_whole(&fs, &format!("{dir}/small.bin")).await == small);
    let small_read = proxy.bytes_to_target() - before;
    // open + two reads (the data, then the end of the file) + close: about four requests.
    // A fixed 256 KiB buffer sent 35 reads (about 37 requests' worth).
    let requests = small_read as f64 / one_request as f64;
    assert!(
        requests <= 6.0,
        "a 4 KiB read sent {small_read} bytes, {requests:.1} requests of {one_request} bytes"
    );

    assert!(
        read_whole(&fs, &format!("{dir}/large.bin")).await == large,
        "the large file differs"
    );
    // Still one session: the reads never needed another.
    assert_eq!(proxy.accepted(), 1);
}
