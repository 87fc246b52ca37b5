//! vswitchd as a systemd service (issue #28, item 1): the unit passes
//! `systemd-analyze verify`; the daemon forwards holding only the unit's
//! capability bounding set; and under a notify socket bound here (what systemd
//! does for `Type=notify`) it says `READY=1`, pings the watchdog at half of
//! `WATCHDOG_USEC`, stops pinging while a worker is stalled by the test-only
//! hook (`VSWITCH_TEST_STALL_WORKER_FILE`) and pings again once it resumes.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use system_tests::*;

fn unit_path() -> PathBuf {
    repo_root().join("deploy/systemd/vswitchd.service")
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).expect("read deploy/systemd/vswitchd.service")
}

/// The value of `key=` in the unit (the last one wins, as in systemd).
fn unit_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let text = unit_text();
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "on-failure"),
        ("LimitMEMLOCK", "infinity"),
        ("RuntimeDirectory", "vswitch"),
        ("StateDirectory", "vswitch"),
    ] {
        assert_eq!(unit_value(&text, key).as_deref(), Some(want), "{key}");
    }
    assert!(unit_value(&text, "WatchdogSec").is_some());
    assert!(text.contains("After=dev-hugepages.mount"));
    // The binary where this build put it: verify checks that it exists.
    let dir = TempDir::new(&unique_tag());
    let unit = dir.join("vswitchd.service");
    let bin = workspace_bin("vswitchd");
    std::fs::write(
        &unit,
        text.replace("/usr/bin/vswitchd", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd; scripts/install-deps.sh installs it)");
    // verify exits 0 on unknown keys and bad values, and says so on stderr: clean
    // means silent.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify: {:?}\n{}{}",
        out.status,
        text_of(&out.stdout),
        text_of(&out.stderr)
    );
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Datagrams received on a notify socket, each with when it came.
struct NotifyListener {
    rx: mpsc::Receiver<(Instant, String)>,
}

impl NotifyListener {
    fn bind(sock: UnixDatagram) -> NotifyListener {
        let (tx, rx) = mpsc::channel();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if tx.send((Instant::now(), msg)).is_err() {
                            return;
                        }
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        // The receiver gone means the test is over.
                        if tx.send((Instant::now(), String::new())).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        NotifyListener { rx }
    }

    /// Waits up to `limit` for a datagram with a line `want` holds of; all
    /// datagrams seen meanwhile (the last one the match).
    fn wait_for(&self, what: &str, limit: Duration, want: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok((_, msg)) = self.rx.recv_timeout(Duration::from_millis(50)) {
                if msg.is_empty() {
                    continue;
                }
                let hit = msg.lines().any(&want);
                seen.push(msg);
                if hit {
                    return seen;
                }
            }
        }
        panic!("{what}: not within {limit:?}; saw {seen:?}");
    }

    /// Every datagram during `d`.
    fn collect(&self, d: Duration) -> Vec<String> {
        let deadline = Instant::now() + d;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok((_, msg)) = self.rx.recv_timeout(Duration::from_millis(20)) {
                if !msg.is_empty() {
                    seen.push(msg);
                }
            }
        }
        seen
    }
}

fn pings(msgs: &[String]) -> usize {
    msgs.iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

fn workers() -> (Vec<usize>, usize) {
    match std::thread::available_parallelism().map_or(1, |n| n.get()) {
        1 => (vec![0], 0),
        _ => (vec![0, 1], 1),
    }
}

#[test]
fn watchdog_pings_stop_while_a_worker_is_stalled_and_resume_after() {
    require_root!();
    let dir = TempDir::new(&unique_tag());
    let notify_path = dir.join("notify.sock");
    let listener = NotifyListener::bind(UnixDatagram::bind(&notify_path).unwrap());
    let stall = dir.join("stall");
    let (cores, frozen) = workers();
    let ports = "[[port]]\nname = \"a\"\nprofile = \"null\"\n";
    let switch = Vswitchd::start_with(
        &dir,
        &control_config(&dir, &cores, &format!("{}{ports}", allowed_dirs(&dir))),
        &[],
        &[
            ("NOTIFY_SOCKET", notify_path.as_path()),
            // 1 s: pings every 500 ms; the liveness bound is 1 s.
            ("WATCHDOG_USEC", Path::new("1000000")),
            ("VSWITCH_TEST_STALL_WORKER_FILE", stall.as_path()),
        ],
        &[],
    );
    let ready = listener.wait_for("READY=1", Duration::from_secs(20), |l| l == "READY=1");
    assert!(
        ready[0].starts_with("STATUS=starting: "),
        "a status line before READY: {ready:?}"
    );
    let last = ready.last().unwrap();
    assert!(
        last.lines()
            .any(|l| l.starts_with("STATUS=forwarding: 1 ports, ")),
        "{last:?}"
    );
    // The API listens by then: READY means what it says.
    assert!(vswitchctl(&dir.join("ctl.sock"), &["health"])
        .status
        .success());
    let log = switch.log_text();
    assert!(log.contains("systemd watchdog on"), "{log}");

    // Alive: pings at half the interval, so 3 to 5 in 2 s.
    let n = pings(&listener.collect(Duration::from_secs(2)));
    assert!((3..=5).contains(&n), "{n} pings in 2 s");

    for round in 0..2 {
        std::fs::write(&stall, format!("{frozen}\n")).unwrap();
        let down = listener.wait_for("not serving status", Duration::from_secs(3), |l| {
            l.starts_with("STATUS=not serving: ")
        });
        let status = down.last().unwrap();
        assert!(
            status.contains(&format!("worker {frozen} (core {}) stuck", cores[frozen])),
            "round {round}: {status}"
        );
        // Stuck: not one ping for 4 ping periods.
        let quiet = listener.collect(Duration::from_secs(2));
        assert_eq!(
            pings(&quiet),
            0,
            "round {round}: pings while stalled: {quiet:?}"
        );

        std::fs::remove_file(&stall).unwrap();
        let back = listener.wait_for("pings again", Duration::from_secs(2), |l| l == "WATCHDOG=1");
        assert!(
            back.iter()
                .any(|m| m.lines().any(|l| l.starts_with("STATUS=forwarding: "))),
            "round {round}: {back:?}"
        );
        let n = pings(&listener.collect(Duration::from_secs(2)));
        assert!(
            (3..=5).contains(&n),
            "round {round}: {n} pings in 2 s after resuming"
        );
    }
    let log = switch.log_text();
    assert!(log.contains("watchdog pings withheld: worker"), "{log}");
    assert!(log.contains("watchdog pings resume"), "{log}");
    switch.stop();
    listener.wait_for("STOPPING=1", Duration::from_secs(2), |l| l == "STOPPING=1");
}

/// The `CAP_*` names of the unit's `CapabilityBoundingSet`, as `setpriv` spells
/// them (`+net_raw,…`).
fn unit_capabilities() -> String {
    let set = unit_value(&unit_text(), "CapabilityBoundingSet").expect("CapabilityBoundingSet");
    set.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn the_switch_forwards_with_only_the_units_capabilities() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let pod = VethPod::new(&tag, 1, "02:00:00:28:00:01", "10.28.0.1/24");
    let tap_if = format!("{tag}t");
    let tap_ns = Netns::new(&format!("{tag}tap"));
    let ports = format!(
        "[[port]]\nname = \"pod\"\nprofile = \"af_packet\"\niface = \"{}\"\n\
         [[port]]\nname = \"tap\"\nprofile = \"tap\"\niface = \"{tap_if}\"\n",
        pod.host_if
    );
    // The API socket gets a group: chown needs CAP_CHOWN.
    let body = format!("socket_group = \"daemon\"\n{}{ports}", allowed_dirs(&dir));
    let name = format!("vsw-notify-{tag}");
    let notify = UnixDatagram::bind_addr(
        &<std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap(),
    )
    .unwrap();
    let listener = NotifyListener::bind(notify);
    let bounding = format!("--bounding-set=-all,{}", unit_capabilities());
    let abstract_name = format!("@{name}");
    let switch = Vswitchd::start_with(
        &dir,
        &control_config(&dir, &[worker_core()], &body),
        &["setpriv", &bounding, "--inh-caps=-all"],
        &[("NOTIFY_SOCKET", Path::new(&abstract_name))],
        &[],
    );
    listener.wait_for(
        "READY=1 on an abstract socket",
        Duration::from_secs(20),
        |l| l == "READY=1",
    );
    // The daemon holds exactly those capabilities.
    let status = std::fs::read_to_string(format!("/proc/{}/status", switch.child.pid())).unwrap();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    let caps = u64::from_str_radix(bnd, 16).unwrap();
    // CAP_CHOWN 0, CAP_NET_ADMIN 12, CAP_NET_RAW 13, CAP_IPC_LOCK 14.
    assert_eq!(caps, 1 | 1 << 12 | 1 << 13 | 1 << 14, "CapBnd {bnd}");
    let sock = std::fs::metadata(dir.join("ctl.sock")).unwrap();
    use std::os::unix::fs::MetadataExt;
    let daemon_gid = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("daemon:x:"))
        .and_then(|r| r.split(':').next().map(|g| g.parse::<u32>().unwrap()))
        .unwrap();
    assert_eq!(sock.gid(), daemon_gid);

    // The tap interface the PMD made goes into a namespace of its own; the pod
    // pings it through the switch.
    ip(&["link", "set", &tap_if, "netns", &tap_ns.name]);
    tap_ns.exec(&["ip", "addr", "add", "10.28.0.2/24", "dev", &tap_if]);
    tap_ns.exec(&["ip", "link", "set", &tap_if, "up"]);
    let out = pod
        .ns
        .try_exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.28.0.2"]);
    assert!(
        out.status.success(),
        "ping through the switch: {}\n{}",
        text(&out.stdout),
        switch.log_text()
    );
    let stats = switch.stop();
    assert!(
        counter(port_stats(&stats, "pod"), "rx_packets") >= 3,
        "{stats}"
    );
    assert!(
        counter(port_stats(&stats, "tap"), "tx_packets") >= 3,
        "{stats}"
    );
}

#[test]
fn a_malformed_notify_socket_or_watchdog_fails_the_start_before_anything_runs() {
    let dir = TempDir::new(&unique_tag());
    let cfg = dir.join("vswitchd.toml");
    std::fs::write(
        &cfg,
        "[eal]\nin_memory = true\n[dataplane]\nworkers = [0]\n[[port]]\nname = \"a\"\nprofile = \"null\"\n",
    )
    .unwrap();
    for (var, value, want) in [
        (
            "NOTIFY_SOCKET",
            "relative/sock",
            "neither an absolute path nor @abstract-name",
        ),
        (
            "WATCHDOG_USEC",
            "soon",
            "WATCHDOG_USEC=\"soon\" is not a positive number",
        ),
    ] {
        let out = Command::new(workspace_bin("vswitchd"))
            .env(var, value)
            .arg("--config")
            .arg(&cfg)
            .arg("--check")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("vswitchd: ") && err.contains(want),
            "{var}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
