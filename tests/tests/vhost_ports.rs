//! vhost-user ports (`net_vhost`) with DPDK pods on the other side
//! (`dpdk-testpmd` on `virtio_user`), issue #27:
//!
//! - a port with `queues = 2` on a switch with two workers has its two rx
//!   queues polled by different workers: a pod sending on both of its queues
//!   moves both workers' rx counters, and the stream crosses to the other pod
//!   (each worker sends on its own tx queue of the receiving port);
//! - the link follows the guest: down before a pod connects, up while it is
//!   connected, down again when it leaves (`port list`, JSON and table, and
//!   `show`), each change logged once;
//! - a pod with one queue pair (the CNI's default) on a two-worker switch is
//!   reached from both workers: they share its one tx queue, nothing is
//!   dropped as `no_tx_queue`, and the switch's and the pods' counters agree.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::*;

const MAC_A: &str = "02:00:00:27:0a:01";
const MAC_B: &str = "02:00:00:27:0b:01";

fn port_list(socket: &Path) -> Value {
    serde_json::from_str(&vswitchctl_ok(socket, &["port", "list", "--json"])).expect("JSON")
}

fn link_up(socket: &Path, name: &str) -> bool {
    port_list(socket)
        .as_array()
        .expect("a list")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name}"))["link_up"]
        == true
}

/// Waits up to 10 s for `name`'s link to be `up`.
fn wait_link(socket: &Path, name: &str, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while link_up(socket, name) != up {
        assert!(
            Instant::now() < deadline,
            "port {name}: link still {} after 10 s: {}",
            if up { "down" } else { "up" },
            port_list(socket)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn vhost_user_queues_spread_over_workers_and_the_link_follows_the_guest() {
    require_root!();
    if !have_testpmd() {
        eprintln!("SKIP: virtio_user pods need dpdk-testpmd");
        return;
    }
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    std::fs::create_dir_all(dir.join("vhost")).unwrap();
    let (sa, sb) = (dir.join("vhost/a.sock"), dir.join("vhost/b.sock"));
    let body = format!(
        "{}[[port]]\nname = \"va\"\nprofile = \"vhost_user\"\npath = \"{}\"\nqueues = 2\n\
         [[port]]\nname = \"vb\"\nprofile = \"vhost_user\"\npath = \"{}\"\nqueues = 2\n\
         [[patch]]\nfrom = \"va\"\nto = \"vb\"\n",
        allowed_dirs(&dir),
        sa.display(),
        sb.display()
    );
    let v = Vswitchd::start(&dir, &control_config(&dir, &[0, 1], &body));
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);

    // No guest yet: both links down, in the JSON and the table.
    assert!(!link_up(&sock, "va") && !link_up(&sock, "vb"));
    let table = vswitchctl_ok(&sock, &["port", "list"]);
    let row = table.lines().find(|l| l.starts_with("va")).unwrap();
    assert!(row.contains("down"), "{table}");

    let rx = TestPmd::start_queues(&sb, MAC_B, &format!("{tag}b"), false, "rxonly", 2, &[]);
    wait_link(&sock, "vb", true);
    assert!(!link_up(&sock, "va"));
    let peer = format!("--eth-peer=0,{MAC_B}");
    let tx = TestPmd::start_queues(&sa, MAC_A, &format!("{tag}a"), false, "txonly", 2, &[&peer]);
    wait_link(&sock, "va", true);
    // `show` has the same port table.
    let table = vswitchctl_ok(&sock, &["show"]);
    let row = table.lines().find(|l| l.starts_with("va")).unwrap();
    assert!(row.contains("up"), "{table}");
    std::thread::sleep(Duration::from_secs(3));

    let stats = read_json(&v.stats_file);
    let workers = stats["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{stats}");
    for w in workers {
        assert!(
            counter(w, "rx_packets") > 0,
            "worker {} received nothing: both of va's queues must be polled, by different workers: {stats}",
            w["index"]
        );
    }
    assert!(
        counter(port_stats(&stats, "va"), "rx_packets") > 1000,
        "{stats}"
    );
    assert!(
        counter(port_stats(&stats, "vb"), "tx_packets") > 1000,
        "{stats}"
    );

    // The sending pod leaves: its port's link goes down, the other stays up.
    let (_, sent) = tx.totals();
    assert!(sent > 1000, "pod a sent {sent}");
    wait_link(&sock, "va", false);
    assert!(link_up(&sock, "vb"));
    let (received, _) = rx.totals();
    assert!(received > 1000, "pod b received {received}");
    wait_link(&sock, "vb", false);
    // Each change logged once (the log compares every 200 ms).
    std::thread::sleep(Duration::from_millis(500));
    let log = v.log_text();
    for (port, up) in [
        ("va", "true"),
        ("va", "false"),
        ("vb", "true"),
        ("vb", "false"),
    ] {
        let n = log
            .lines()
            .filter(|l| l.contains(&format!("port={port} up={up}")))
            .count();
        assert_eq!(n, 1, "port {port} up={up} logged {n} times:\n{log}");
    }
    v.stop();
}

/// A refused write: its params, the key named, words of the message.
type BadAccess = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

/// `(uid, gid, permission bits)` of the file at `path`, not following a link.
fn owner_group_mode(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    assert!(
        std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()),
        "{} is not a socket",
        path.display()
    );
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// The socket's owner, group and mode come from the profile, from the file and
/// from the API; a bad one through the API is INVALID_ARGUMENT naming the key,
/// and neither the state nor the file system changes.
#[test]
fn vhost_user_socket_owner_group_and_mode_come_from_the_profile() {
    use control::api::{self, op::Op as K, Op, WriteRequest};
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    std::fs::create_dir_all(dir.join("vhost")).unwrap();
    let (sf, sa) = (dir.join("vhost/f.sock"), dir.join("vhost/a.sock"));
    // nobody/nogroup: an account every Debian system has, not root.
    let body = format!(
        "{}[[port]]\nname = \"vf\"\nprofile = \"vhost_user\"\npath = \"{}\"\n\
         socket_group = \"nogroup\"\nsocket_mode = \"0660\"\n",
        allowed_dirs(&dir),
        sf.display(),
    );
    let _v = Vswitchd::start(&dir, &control_config(&dir, &[0], &body));
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);
    assert_eq!(owner_group_mode(&sf), (0, 65534, 0o660));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = rt.block_on(connect(&sock));
    let add = |name: &str, params: &[(&str, &str)]| -> Vec<Op> {
        let mut p: std::collections::BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.entry("path".into())
            .or_insert_with(|| sa.display().to_string());
        vec![Op {
            op: Some(K::AddPort(api::Port {
                name: name.into(),
                profile: "vhost_user".into(),
                params: p.into_iter().collect(),
                group: String::new(),
                mtu: 0,
            })),
        }]
    };
    let before = rt
        .block_on(c.get_state(api::GetStateRequest {}))
        .unwrap()
        .into_inner();
    // (params, the key named, words of the message)
    let bad: [BadAccess; 5] = [
        (
            &[("socket_mode", "0666")],
            "socket_mode",
            "every local user",
        ),
        (&[("socket_mode", "4660")], "socket_mode", "setuid"),
        (
            &[("socket_owner", "no-such-user-x")],
            "socket_owner",
            "/etc/passwd",
        ),
        (
            &[("socket_group", "123456789")],
            "socket_group",
            "/etc/group",
        ),
        (
            &[("client", "true"), ("socket_group", "nogroup")],
            "socket_group",
            "client mode",
        ),
    ];
    for (params, key, words) in bad {
        let e = rt
            .block_on(c.write(WriteRequest {
                ops: add("va", params),
                expected_generation: 0,
            }))
            .expect_err("a bad socket access was accepted");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
        let msg = e.message();
        assert!(
            msg.contains("add_port \"va\"")
                && msg.contains(&format!("{key}: "))
                && msg.contains(words),
            "{params:?}: {msg}"
        );
        assert!(
            std::fs::symlink_metadata(&sa).is_err(),
            "{params:?}: a socket was created"
        );
    }
    let after = rt
        .block_on(c.get_state(api::GetStateRequest {}))
        .unwrap()
        .into_inner();
    assert_eq!(before, after);

    rt.block_on(c.write(WriteRequest {
        ops: add(
            "va",
            &[
                ("socket_owner", "nobody"),
                ("socket_group", "65534"),
                ("socket_mode", "0640"),
            ],
        ),
        expected_generation: 0,
    }))
    .expect("a good socket access");
    assert_eq!(owner_group_mode(&sa), (65534, 65534, 0o640));
    // The profile reads back as written.
    let state = rt
        .block_on(c.get_state(api::GetStateRequest {}))
        .unwrap()
        .into_inner();
    let text = format!("{state:?}");
    assert!(
        text.contains("\"socket_mode\": \"0640\"") && text.contains("\"socket_owner\": \"nobody\""),
        "{text}"
    );
}

/// Pod a sends on two queues, so both workers receive its stream; pod b has one
/// queue pair, so its port has one tx queue for two workers, which they share.
#[test]
fn a_one_queue_pod_is_reached_from_both_workers_through_a_shared_tx_queue() {
    require_root!();
    if !have_testpmd() {
        eprintln!("SKIP: virtio_user pods need dpdk-testpmd");
        return;
    }
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    std::fs::create_dir_all(dir.join("vhost")).unwrap();
    let (sa, sb) = (dir.join("vhost/a.sock"), dir.join("vhost/b.sock"));
    let body = format!(
        "{}[[port]]\nname = \"va\"\nprofile = \"vhost_user\"\npath = \"{}\"\nqueues = 2\n\
         [[port]]\nname = \"vb\"\nprofile = \"vhost_user\"\npath = \"{}\"\nqueues = 1\n\
         [[patch]]\nfrom = \"va\"\nto = \"vb\"\n",
        allowed_dirs(&dir),
        sa.display(),
        sb.display()
    );
    let v = Vswitchd::start(&dir, &control_config(&dir, &[0, 1], &body));
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);
    let log = v.log_text();
    assert!(
        log.lines().any(
            |l| l.contains("fewer tx queues than workers: workers share them")
                && l.contains("port=vb")
        ),
        "no warning that vb's tx queue is shared:\n{log}"
    );

    let rx = TestPmd::start(&sb, MAC_B, &format!("{tag}b"), false, "rxonly", &[]);
    wait_link(&sock, "vb", true);
    let peer = format!("--eth-peer=0,{MAC_B}");
    let tx = TestPmd::start_queues(&sa, MAC_A, &format!("{tag}a"), false, "txonly", 2, &[&peer]);
    wait_link(&sock, "va", true);
    std::thread::sleep(Duration::from_secs(3));

    // Pod a stops sending but stays connected (leaving would take what is still
    // in its ring with it), so what it sent drains through the switch into pod b.
    let mut tx = tx;
    tx.command("stop");
    std::thread::sleep(Duration::from_secs(1));
    let stats = read_json(&v.stats_file);
    let (_, sent) = tx.totals();
    assert!(sent > 1000, "pod a sent {sent}");
    let (received, _) = rx.totals();

    let workers = stats["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{stats}");
    for w in workers {
        assert!(
            counter(w, "tx_packets") > 0,
            "worker {} sent nothing to vb: both must send on its shared queue: {stats}",
            w["index"]
        );
    }
    let drops = &stats["drops"];
    assert_eq!(counter(drops, "no_tx_queue"), 0, "{stats}");
    let (va, vb) = (port_stats(&stats, "va"), port_stats(&stats, "vb"));
    assert_eq!(
        counter(va, "rx_packets"),
        sent,
        "switch's va rx vs pod a's tx: {stats}"
    );
    assert_eq!(
        counter(vb, "tx_packets"),
        received,
        "switch's vb tx vs pod b's rx: {stats}"
    );
    // All pod a sent reached pod b or was counted as a drop under its reason.
    let dropped: u64 = drops
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(sent, received + dropped, "{stats}");
    assert!(received > 1000, "pod b received {received}: {stats}");

    // The contention counter is in the API's stats, table and JSON.
    let json: Value =
        serde_json::from_str(&vswitchctl_ok(&sock, &["stats", "--json"])).expect("JSON");
    let contended: u64 = json["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| counter(w, "tx_lock_contended"))
        .sum();
    let file_contended: u64 = workers
        .iter()
        .map(|w| counter(w, "tx_lock_contended"))
        .sum();
    assert!(contended >= file_contended, "{json}");
    let table = vswitchctl_ok(&sock, &["stats"]);
    assert!(table.contains("TX_LOCK_CONTENDED"), "{table}");
    eprintln!("tx_lock_contended over both workers: {contended} ({sent} frames)");
    v.stop();
}
