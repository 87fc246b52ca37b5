//! Connection tracking on a real switch: two kernel pods on a tracked network
//! (af_packet ports on veth pairs). A TCP connection shows in `ct list --json`
//! as ESTABLISHED and, once both sides closed, as TIME_WAIT; a segment far
//! outside its window, sent from the client's namespace on a packet socket,
//! is dropped as `ct_out_of_window` and the connection goes on; `ct flush`
//! empties the table; bad filters are refused naming the field.

use std::path::Path;
use std::time::{Duration, Instant};

use system_tests::*;

const MAC1: &str = "02:00:00:00:01:01";
const MAC2: &str = "02:00:00:00:02:01";

/// The server in pod2: echoes each connection's bytes until it closes.
const SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001))
s.listen(1)
s.settimeout(60)
c, _ = s.accept()
c.settimeout(60)
while True:
    b = c.recv(4096)
    if not b:
        break
    c.sendall(b)
c.close()
"#;

/// The client in pod1, in steps the test releases by creating files in DIR:
/// connect from port 40001 and exchange a line (then `connected`); on `oow`,
/// send a copy of its last segment with the sequence number moved 2^30
/// ahead, on a packet socket, then exchange another line (then `again`); on
/// `close`, close.
const CLIENT: &str = r#"
import os, socket, struct, sys, time
d = sys.argv[1]
def wait(name):
    t = time.time() + 60
    while not os.path.exists(os.path.join(d, name)):
        if time.time() > t:
            sys.exit("no " + name)
        time.sleep(0.05)
def done(name):
    open(os.path.join(d, name), "w").close()
# ETH_P_ALL: a packet socket of one protocol does not see what the host sends.
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
raw.bind(("eth0", 0))
s = socket.socket()
s.bind(("10.1.0.2", 40001))
s.settimeout(20)
s.connect(("10.1.0.3", 5001))
s.sendall(b"hello\n")
assert s.recv(100) == b"hello\n"
done("connected")
wait("oow")
# The client's last segment as it left: its frame from the packet socket.
raw.settimeout(0.2)
last = None
try:
    while True:
        f = raw.recv(2048)
        if f[12:14] == b"\x08\x00" and f[23] == 6 and f[34:36] == struct.pack("!H", 40001):
            last = f
except socket.timeout:
    pass
assert last is not None, "no segment of ours seen"
ihl = (last[14] & 15) * 4
tcp = 14 + ihl
seq = (struct.unpack("!I", last[tcp + 4:tcp + 8])[0] + (1 << 30)) & 0xffffffff
payload = b"out of window"
doff = 20
ip_len = ihl + doff + len(payload)
f = bytearray(last[:14 + ihl + doff]) + payload
f[16:18] = struct.pack("!H", ip_len)
f[24:26] = b"\0\0"
f[tcp + 4:tcp + 8] = struct.pack("!I", seq)
f[tcp + 12] = doff // 4 << 4
f[tcp + 13] = 0x18
def csum(b):
    if len(b) % 2:
        b += b"\0"
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while n >> 16:
        n = (n & 0xffff) + (n >> 16)
    return ~n & 0xffff
f[24:26] = struct.pack("!H", csum(bytes(f[14:14 + ihl])))
f[tcp + 16:tcp + 18] = b"\0\0"
pseudo = bytes(f[26:34]) + struct.pack("!BBH", 0, 6, doff + len(payload))
f[tcp + 16:tcp + 18] = struct.pack("!H", csum(pseudo + bytes(f[tcp:])))
raw.send(bytes(f[:14 + ip_len]))
s.sendall(b"again\n")
assert s.recv(100) == b"again\n"
done("again")
wait("close")
s.close()
time.sleep(0.5)
"#;

fn config(dir: &TempDir, pod1: &str, pod2: &str) -> String {
    let body = format!(
        r#"
[[port]]
name = "pod1"
profile = "af_packet"
iface = "{pod1}"
[[port]]
name = "pod2"
profile = "af_packet"
iface = "{pod2}"
[[network]]
name = "blue"
vni = 100
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "02:00:00:00:aa:01"
conntrack = true
[[endpoint]]
network = "blue"
mac = "{MAC1}"
ips = ["10.1.0.2"]
port = "pod1"
[[endpoint]]
network = "blue"
mac = "{MAC2}"
ips = ["10.1.0.3"]
port = "pod2"
[conntrack]
capacity = 4096
tcp_time_wait = 30
"#
    );
    control_config(dir, &[worker_core()], &body)
}

fn wait_file(path: &Path, client: &mut ChildGuard) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        if Instant::now() > deadline {
            let out = client.wait_timeout(Duration::from_secs(1));
            panic!("{} never came: {out:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ct_list(sock: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["ct", "list", "--json"];
    all.extend_from_slice(args);
    let out = vswitchctl_ok(sock, &all);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The client's connection, as `ct list` shows it.
fn the_connection(sock: &Path) -> Option<serde_json::Value> {
    ct_list(sock, &["--port", "40001"]).into_iter().find(|e| {
        e["protocol"] == "tcp"
            && e["src"] == "10.1.0.2"
            && e["sport"] == 40001
            && e["dst"] == "10.1.0.3"
            && e["dport"] == 5001
    })
}

fn drops(sock: &Path, reason: &str) -> u64 {
    let s: serde_json::Value =
        serde_json::from_str(&vswitchctl_ok(sock, &["stats", "--json", "--all"])).unwrap();
    s["drops"][reason].as_u64().unwrap_or(0)
}

#[test]
fn a_tcp_connection_is_tracked_out_of_window_dropped_and_flushed() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let pod1 = VethPod::new(&tag, 1, MAC1, "10.1.0.2/24");
    let pod2 = VethPod::new(&tag, 2, MAC2, "10.1.0.3/24");
    let v = Vswitchd::start(&dir, &config(&dir, &pod1.host_if, &pod2.host_if));
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);
    let steps = dir.join("steps");
    std::fs::create_dir_all(&steps).unwrap();
    let mut server = pod2.ns.spawn(&["python3", "-c", SERVER]);
    // The server listens before the client connects.
    std::thread::sleep(Duration::from_millis(500));
    let mut client = pod1
        .ns
        .spawn(&["python3", "-c", CLIENT, steps.to_str().unwrap()]);
    wait_file(&steps.join("connected"), &mut client);

    let e = the_connection(&sock).expect("the connection is listed");
    assert_eq!(e["state"], "ESTABLISHED", "{e}");
    assert_eq!(e["network"], "blue", "{e}");
    assert_eq!(e["assured"], true, "{e}");
    assert_eq!(
        (&e["reply_src"], &e["reply_sport"]),
        (&serde_json::json!("10.1.0.3"), &serde_json::json!(5001))
    );
    // Filters: by network, address and state; none that excludes it.
    for f in [
        &["--network", "blue"][..],
        &["--address", "10.1.0.3"],
        &["--state", "established"],
    ] {
        assert_eq!(ct_list(&sock, f).len(), 1, "{f:?}");
    }
    assert!(ct_list(&sock, &["--state", "TIME_WAIT"]).is_empty());
    assert!(ct_list(&sock, &["--port", "22"]).is_empty());

    let before = drops(&sock, "ct_out_of_window");
    std::fs::write(steps.join("oow"), "").unwrap();
    wait_file(&steps.join("again"), &mut client);
    // The worker publishes its counters after every round.
    let deadline = Instant::now() + Duration::from_secs(5);
    while drops(&sock, "ct_out_of_window") == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(drops(&sock, "ct_out_of_window"), before + 1);
    assert_eq!(
        the_connection(&sock).unwrap()["state"],
        "ESTABLISHED",
        "the connection went on"
    );

    std::fs::write(steps.join("close"), "").unwrap();
    let out = client.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(out.status.success(), "client: {}", text(&out.stderr));
    let out = server.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(out.status.success(), "server: {}", text(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let s = the_connection(&sock).map(|e| e["state"].clone());
        if s.as_ref().is_some_and(|s| s == "TIME_WAIT" || s == "CLOSE") || Instant::now() > deadline
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        state
            .as_ref()
            .is_some_and(|s| s == "TIME_WAIT" || s == "CLOSE"),
        "after both closed: {state:?}"
    );

    let stats: serde_json::Value =
        serde_json::from_str(&vswitchctl_ok(&sock, &["ct", "stats", "--json"])).unwrap();
    let w = &stats[0];
    assert!(w["entries"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(w["capacity"], 4096, "{stats}");
    assert!(w["created"].as_u64().unwrap() >= 1, "{stats}");
    assert!(w["invalid"].as_u64().unwrap() >= 1, "{stats}");
    let s: serde_json::Value =
        serde_json::from_str(&vswitchctl_ok(&sock, &["stats", "--json"])).unwrap();
    assert!(s["workers"][0]["conntrack"]["created"].as_u64().unwrap() >= 1);

    let out = vswitchctl_ok(&sock, &["ct", "flush", "--network", "blue"]);
    assert!(out.starts_with("flushed "), "{out}");
    assert!(ct_list(&sock, &[]).is_empty(), "flushed");

    // Bad filters change nothing and name the field.
    for (args, field) in [
        (&["ct", "list", "--state", "BOGUS"][..], "filter.state"),
        (&["ct", "list", "--address", "10.1.0"], "filter.address"),
        (&["ct", "flush", "--network", "nope"], "filter.network"),
    ] {
        let out = vswitchctl(&sock, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains(field),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    v.stop();
}

/// With two workers, a tracked network and a service (which tracks its
/// network) are taken through the API: the workers hand each other their
/// connections' packets (dataplane `pipeline/conntrack/mod.rs`).
#[test]
fn a_tracked_network_is_taken_with_two_workers() {
    require_root!();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("SKIP: two workers need two CPUs");
        return;
    }
    let dir = TempDir::new(&unique_tag());
    let v = Vswitchd::start(&dir, &control_config(&dir, &[0, 1], ""));
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);
    vswitchctl_ok(
        &sock,
        &[
            "net",
            "add",
            "blue",
            "--vni",
            "100",
            "--gateway-mac",
            "02:00:00:00:aa:01",
            "--conntrack",
        ],
    );
    assert!(vswitchctl_ok(&sock, &["net", "list"]).contains("blue"));
    vswitchctl_ok(
        &sock,
        &[
            "svc",
            "add",
            "web",
            "--network",
            "blue",
            "--cluster-ip",
            "10.96.0.10",
            "--port",
            "80",
            "--backend",
            "10.1.0.20",
        ],
    );
    assert!(vswitchctl_ok(&sock, &["svc", "list"]).contains("web"));
    v.stop();
}
