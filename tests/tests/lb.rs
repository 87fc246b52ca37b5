//! Services forwarding on a real switch (issue #25): a client pod and three
//! backend pods (af_packet ports on veth pairs) in a network that does not
//! ask for conntrack; a service added with `vswitchctl svc add` makes it
//! tracked. Each backend runs a TCP and a UDP server that answer with the
//! pod's name. The client opens 60 TCP connections to ClusterIP:80 and gets
//! answers from all three backends, each connection from one; UDP to :53
//! reaches all three too; `ct list` shows the translation. A long-lived
//! connection to one backend keeps working after `svc backend set` drains
//! it, while new connections avoid it. A backend reaching its own service
//! lands on itself too (hairpin: its source translated to the ClusterIP).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::*;

const GW_MAC: &str = "02:00:00:00:aa:01";
const VIP: &str = "10.96.0.10";
const CLIENT_IP: &str = "10.1.0.10";
const CLIENT_MAC: &str = "02:00:00:00:01:0a";
/// The backends: name, address, MAC.
const BACKENDS: [(&str, &str, &str); 3] = [
    ("b1", "10.1.0.11", "02:00:00:00:01:0b"),
    ("b2", "10.1.0.12", "02:00:00:00:01:0c"),
    ("b3", "10.1.0.13", "02:00:00:00:01:0d"),
];

/// A backend's servers: TCP on 8080 answers every line with the pod's name
/// (a thread per connection), UDP on 5353 every datagram. Up for 120 s.
const SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode()
def conn(c):
    c.settimeout(60)
    try:
        while True:
            b = c.recv(100)
            if not b:
                break
            c.sendall(name + b"\n")
    except OSError:
        pass
    c.close()
def tcp():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080))
    s.listen(128)
    while True:
        c, _ = s.accept()
        threading.Thread(target=conn, args=(c,), daemon=True).start()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5353))
    while True:
        b, a = u.recvfrom(100)
        u.sendto(name, a)
threading.Thread(target=tcp, daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
threading.Event().wait(120)
"#;

/// `n` TCP connections to VIP:80, each asking twice; prints one line per
/// connection with both answers, then `udp` lines for `n` datagrams to
/// VIP:53, each from a socket of its own.
const CLIENT: &str = r#"
import socket, sys
vip, n, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    s = socket.create_connection((vip, 80), timeout=10)
    f = s.makefile("rb")
    s.sendall(b"a\n")
    a = f.readline().strip().decode()
    s.sendall(b"b\n")
    b = f.readline().strip().decode()
    s.close()
    print("tcp", a, b, flush=True)
for i in range(n):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.bind(("0.0.0.0", port + i))
    u.sendto(b"q", (vip, 53))
    print("udp", u.recvfrom(100)[0].decode(), flush=True)
    u.close()
"#;

/// One long-lived connection from source port 45000: asks, writes the
/// answer to DIR/first, waits for DIR/go, asks again and writes DIR/second.
const LONG: &str = r#"
import os, socket, sys, time
vip, d = sys.argv[1], sys.argv[2]
s = socket.socket()
s.bind(("0.0.0.0", 45000))
s.settimeout(30)
s.connect((vip, 80))
f = s.makefile("rb")
s.sendall(b"a\n")
open(os.path.join(d, "first.tmp"), "w").write(f.readline().strip().decode())
os.rename(os.path.join(d, "first.tmp"), os.path.join(d, "first"))
t = time.time() + 60
while not os.path.exists(os.path.join(d, "go")):
    if time.time() > t:
        sys.exit("no go")
    time.sleep(0.05)
s.sendall(b"b\n")
open(os.path.join(d, "second.tmp"), "w").write(f.readline().strip().decode())
os.rename(os.path.join(d, "second.tmp"), os.path.join(d, "second"))
s.close()
"#;

fn config(dir: &TempDir, pods: &[&VethPod]) -> String {
    let mut body = format!(
        r#"
[[network]]
name = "blue"
vni = 100
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "{GW_MAC}"
"#
    );
    let all = std::iter::once(("client", CLIENT_IP, CLIENT_MAC)).chain(BACKENDS);
    for ((name, ip, mac), pod) in all.zip(pods) {
        body.push_str(&format!(
            r#"
[[port]]
name = "{name}"
profile = "af_packet"
iface = "{}"
[[endpoint]]
network = "blue"
mac = "{mac}"
ips = ["{ip}"]
port = "{name}"
"#,
            pod.host_if
        ));
    }
    control_config(dir, &[worker_core()], &body)
}

fn wait_file(path: &Path, child: &mut ChildGuard) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        if Instant::now() > deadline {
            let out = child.wait_timeout(Duration::from_secs(1));
            panic!("{} never came: {out:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(path).unwrap()
}

/// The answers of `n` connections and `n` datagrams from the client pod:
/// (TCP backend per connection, UDP backend per datagram).
/// The first UDP source port of the next `ask`: every datagram of the test
/// from a port of its own, so that each is a new connection (an ephemeral
/// port the kernel picks again would find the earlier datagram's entry, its
/// backend and its count).
static NEXT_UDP_PORT: AtomicUsize = AtomicUsize::new(20_000);

fn ask(client: &VethPod, n: usize) -> (Vec<String>, Vec<String>) {
    let port = NEXT_UDP_PORT.fetch_add(n, Ordering::Relaxed);
    let out = client.ns.exec(&[
        "python3",
        "-c",
        CLIENT,
        VIP,
        &n.to_string(),
        &port.to_string(),
    ]);
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    for line in text(&out.stdout).lines() {
        let w: Vec<&str> = line.split(' ').collect();
        match w[..] {
            ["tcp", a, b] => {
                assert_eq!(a, b, "one connection, one backend: {line}");
                tcp.push(a.to_owned());
            }
            ["udp", a] => udp.push(a.to_owned()),
            _ => panic!("client said {line:?}"),
        }
    }
    assert_eq!((tcp.len(), udp.len()), (n, n), "{}", text(&out.stderr));
    (tcp, udp)
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

#[test]
fn a_cluster_ip_spreads_connections_and_draining_keeps_the_old_ones() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let client = VethPod::new(&tag, 0, CLIENT_MAC, &format!("{CLIENT_IP}/24"));
    let backends: Vec<VethPod> = BACKENDS
        .iter()
        .enumerate()
        .map(|(i, (_, ip, mac))| VethPod::new(&tag, i as u32 + 1, mac, &format!("{ip}/24")))
        .collect();
    // The ClusterIP range is off the pod subnet: through the gateway.
    for pod in std::iter::once(&client).chain(&backends) {
        pod.ns
            .exec(&["ip", "route", "add", "10.96.0.0/12", "via", "10.1.0.1"]);
    }
    let pods: Vec<&VethPod> = std::iter::once(&client).chain(&backends).collect();
    let v = Vswitchd::start(&dir, &config(&dir, &pods));
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);
    let _servers: Vec<ChildGuard> = backends
        .iter()
        .zip(BACKENDS)
        .map(|(pod, (name, _, _))| pod.ns.spawn(&["python3", "-c", SERVER, name]))
        .collect();
    let mut add = vec![
        "svc",
        "add",
        "web",
        "--network",
        "blue",
        "--cluster-ip",
        VIP,
        "--port",
        "http=80:8080",
        "--port",
        "dns=53/UDP:5353",
        "--table-size",
        "1009",
    ];
    let specs: Vec<String> = BACKENDS
        .iter()
        .map(|(_, ip, _)| format!("{ip}=1"))
        .collect();
    for s in &specs {
        add.extend(["--backend", s.as_str()]);
    }
    vswitchctl_ok(&sock, &add);
    // The servers listen before the first connection.
    std::thread::sleep(Duration::from_millis(700));

    let (tcp, udp) = ask(&client, 60);
    for (name, _, _) in BACKENDS {
        assert!(
            count(&tcp, name) > 0,
            "no TCP connection to {name}: {tcp:?}"
        );
        assert!(count(&udp, name) > 0, "no UDP datagram to {name}: {udp:?}");
    }

    // `ct list` shows each connection's translation: original to the VIP,
    // the reply from a backend's 8080.
    let listed: Value = serde_json::from_str(&vswitchctl_ok(
        &sock,
        &["ct", "list", "--json", "--address", VIP],
    ))
    .unwrap();
    let listed = listed.as_array().unwrap();
    assert!(listed.len() >= 60, "{} connections listed", listed.len());
    for e in listed {
        assert_eq!(e["dst"], VIP, "{e}");
        let reply = e["reply_src"].as_str().unwrap();
        assert!(BACKENDS.iter().any(|b| b.1 == reply), "{e}");
        let port = if e["protocol"] == "tcp" { 8080 } else { 5353 };
        assert_eq!(e["reply_sport"], port, "{e}");
    }
    let shown = vswitchctl_ok(&sock, &["ct", "list", "--address", VIP, "--port", "80"]);
    assert!(shown.contains("NAT") && shown.contains(":8080"), "{shown}");

    // Hairpin: b1 reaching the service lands on itself for some of its
    // connections, which it then gets from the ClusterIP.
    let (tcp, udp) = ask(&backends[0], 30);
    assert!(count(&tcp, "b1") > 0, "b1 never reached itself: {tcp:?}");
    assert!(count(&udp, "b1") > 0, "b1 never reached itself: {udp:?}");

    // A long-lived connection, then its backend drained.
    let steps = dir.join("steps");
    std::fs::create_dir_all(&steps).unwrap();
    let mut long = client
        .ns
        .spawn(&["python3", "-c", LONG, VIP, steps.to_str().unwrap()]);
    let first = wait_file(&steps.join("first"), &mut long);
    let (_, drained_ip, _) = BACKENDS
        .iter()
        .find(|b| b.0 == first)
        .unwrap_or_else(|| panic!("answer {first:?}"));
    vswitchctl_ok(
        &sock,
        &[
            "svc", "backend", "set", "web", drained_ip, "--state", "draining",
        ],
    );
    let (tcp, udp) = ask(&client, 60);
    assert_eq!(
        count(&tcp, &first),
        0,
        "a new connection to drained {first}"
    );
    assert_eq!(count(&udp, &first), 0, "a new datagram to drained {first}");
    std::fs::write(steps.join("go"), "").unwrap();
    let second = wait_file(&steps.join("second"), &mut long);
    assert_eq!(second, first, "the long-lived connection kept its backend");
    let out = long.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let stats: Value =
        serde_json::from_str(&vswitchctl_ok(&sock, &["stats", "--json", "--all"])).unwrap();
    let new: u64 = stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["lb"]["new_connections"].as_u64().unwrap())
        .sum();
    assert!(new >= 301, "{new} new connections load-balanced");
    for r in ["lb_no_backend", "lb_backend_gone", "lb_nat_clash"] {
        assert_eq!(stats["drops"][r], 0, "{r}");
    }
    drop(v);
}
