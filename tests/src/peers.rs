//! Traffic between pods: real kernel TCP through `scripts/tcp_peer.py`.

use std::time::Duration;

use crate::{repo_root, Netns, TempDir};

/// Sends `bytes` random bytes over TCP from `from` to `to_ip:5001` in `to`, and
/// checks that both ends saw the same byte count and SHA-256.
pub fn tcp_transfer(dir: &TempDir, from: &Netns, to: &Netns, to_ip: &str, bytes: u64) {
    let peer = repo_root().join("scripts/tcp_peer.py");
    let peer = peer.to_str().unwrap();
    let recv = dir.join("recv.sha");
    let sent = dir.join("sent.sha");
    let mut server = to.spawn(&[
        "python3",
        peer,
        "serve",
        "--port",
        "5001",
        "--timeout",
        "60",
        "--out",
        recv.to_str().unwrap(),
    ]);
    let out = from.try_exec(&[
        "python3",
        peer,
        "send",
        "--host",
        to_ip,
        "--port",
        "5001",
        "--timeout",
        "60",
        "--bytes",
        &bytes.to_string(),
        "--out",
        sent.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "TCP sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let srv = server
        .wait_timeout(Duration::from_secs(30))
        .expect("TCP server did not finish");
    assert!(
        srv.status.success(),
        "TCP server failed: {}",
        String::from_utf8_lossy(&srv.stderr)
    );
    let sent = std::fs::read_to_string(sent).unwrap();
    let recv = std::fs::read_to_string(recv).unwrap();
    assert!(sent.starts_with(&format!("{bytes} ")), "{sent}");
    assert_eq!(sent, recv, "bytes or checksum differ between the TCP ends");
}
