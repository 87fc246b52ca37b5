//! Traffic between pods: real kernel TCP through `scripts/tcp_peer.py`, and
//! DPDK pods (`dpdk-testpmd` on a `virtio_user` port).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
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

/// True when `dpdk-testpmd` can be run.
pub fn have_testpmd() -> bool {
    Command::new("dpdk-testpmd")
        .arg("--version")
        .output()
        .is_ok()
}

/// `dpdk-testpmd` as a DPDK pod: a `virtio_user` port on the vhost-user socket
/// `sock` with `mac`, forwarding in `mode`. Its memory is `--no-huge` (memfd
/// backed, which the switch maps as it would hugepages), so the tests need no
/// hugepages reserved. It is driven on its interactive prompt (`start`, `stop`,
/// `quit`), so it can stop forwarding and stay connected while the switch drains
/// its ring; on drop its stdin closes, which ends it (by PID if it does not end
/// by itself), and its EAL runtime directory is removed.
pub struct TestPmd {
    child: Option<std::process::Child>,
    prefix: String,
}

impl TestPmd {
    /// One queue pair.
    pub fn start(
        sock: &Path,
        mac: &str,
        prefix: &str,
        server: bool,
        mode: &str,
        extra: &[&str],
    ) -> TestPmd {
        Self::start_queues(sock, mac, prefix, server, mode, 1, extra)
    }

    /// `queues` queue pairs, every one used (`--rxq`/`--txq`).
    pub fn start_queues(
        sock: &Path,
        mac: &str,
        prefix: &str,
        server: bool,
        mode: &str,
        queues: u16,
        extra: &[&str],
    ) -> TestPmd {
        let server = if server { ",server=1" } else { "" };
        let vdev = format!(
            "net_virtio_user0,path={}{server},mac={mac},queues={queues}",
            sock.display()
        );
        let child = Command::new("dpdk-testpmd")
            .args([
                "-l",
                "0,1",
                "--no-huge",
                "--no-shconf",
                "--no-telemetry",
                "-m",
                "256",
                "--no-pci",
            ])
            .args(["--file-prefix", prefix, "--vdev", &vdev, "--", "-i"])
            .arg(format!("--forward-mode={mode}"))
            .args(["--total-num-mbufs", "4096"])
            .arg(format!("--rxq={queues}"))
            .arg(format!("--txq={queues}"))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dpdk-testpmd");
        let mut t = TestPmd {
            child: Some(child),
            prefix: prefix.to_owned(),
        };
        t.command("start");
        t
    }

    /// Types `line` at its prompt.
    pub fn command(&mut self, line: &str) {
        let stdin = self
            .child
            .as_mut()
            .and_then(|c| c.stdin.as_mut())
            .expect("testpmd's stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("testpmd quit early");
        stdin.flush().unwrap();
    }

    /// Stops forwarding and quits, reading `RX-packets` and `TX-packets` of its
    /// port from what `stop` prints: the last figures, the accumulated ones (with
    /// several queues, the per-queue streams' figures come first).
    pub fn totals(mut self) -> (u64, u64) {
        self.command("stop");
        self.command("quit");
        let mut child = self.child.take().unwrap();
        drop(child.stdin.take());
        // A pod that does not quit fails the test in bounded time instead of
        // hanging it: the output is read on a thread, the pod killed by PID.
        let pid = child.id();
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait_with_output());
        });
        let out = match wait.recv_timeout(Duration::from_secs(30)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
                let out = wait.recv().unwrap().unwrap();
                panic!(
                    "testpmd (pid {pid}) did not quit within 30 s of stop/quit:\n{}",
                    crate::text(&out.stdout)
                );
            }
        };
        let text = crate::text(&out.stdout);
        let field = |name: &str| -> u64 {
            text.rsplit(name)
                .next()
                .filter(|_| text.contains(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in testpmd's output:\n{text}"))
        };
        (field("RX-packets:"), field("TX-packets:"))
    }
}

impl Drop for TestPmd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}
