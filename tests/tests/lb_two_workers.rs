//! A ClusterIP service on a switch with two workers (issue #25, the two-worker
//! test): a client pod and three backend pods on af_packet ports (no RSS: one
//! worker polls each port), spread over both workers — the client's port and
//! one backend's on worker 0, the two other backends' on worker 1. So most
//! connections have their two directions received by two workers, and each
//! is owned by the worker its tuple hashes to: the other hands it over, and
//! a DNAT'd reply meets the stub its owner left. The client opens 100 TCP
//! connections: every one completes, every backend answers, `ct list` shows
//! each connection once (and the stubs apart, with `--state redirect`), and
//! both workers handed packets over (`ct stats`, `stats`).

use serde_json::Value;
use system_tests::*;

const GW_MAC: &str = "02:00:00:00:aa:01";
const VIP: &str = "10.96.0.10";
const CLIENT_IP: &str = "10.1.0.10";
const CLIENT_MAC: &str = "02:00:00:00:01:0a";
/// The pods: name, address, MAC, worker polling its port.
const PODS: [(&str, &str, &str, usize); 4] = [
    ("client", CLIENT_IP, CLIENT_MAC, 0),
    ("b1", "10.1.0.11", "02:00:00:00:01:0b", 1),
    ("b2", "10.1.0.12", "02:00:00:00:01:0c", 1),
    ("b3", "10.1.0.13", "02:00:00:00:01:0d", 0),
];

/// A backend's server: TCP on 8080 answers every line with the pod's name.
/// Up for 120 s.
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
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(128)
threading.Timer(120, lambda: s.close()).start()
while True:
    try:
        c, _ = s.accept()
    except OSError:
        break
    threading.Thread(target=conn, args=(c,), daemon=True).start()
"#;

/// `n` TCP connections to VIP:80, all open at once, each asking twice, then
/// left open until the file argv[4] exists (so `ct list` finds them all
/// ESTABLISHED; argv[3] says when they are); prints one line per connection with its source port and
/// both answers, or the error.
const CLIENT: &str = r#"
import socket, sys
vip, n = sys.argv[1], int(sys.argv[2])
socks = []
for i in range(n):
    try:
        s = socket.create_connection((vip, 80), timeout=10)
        f = s.makefile("rb")
        s.sendall(b"a\n")
        a = f.readline().strip().decode()
        s.sendall(b"b\n")
        b = f.readline().strip().decode()
        print("tcp", s.getsockname()[1], a, b, flush=True)
        socks.append(s)
    except OSError as e:
        print("error", i, e, flush=True)
import os, time
open(sys.argv[3] + ".tmp", "w").write("open")
os.rename(sys.argv[3] + ".tmp", sys.argv[3])
t = time.time() + 60
while not os.path.exists(sys.argv[4]) and time.time() < t:
    time.sleep(0.05)
for s in socks:
    s.close()
"#;

fn config(dir: &TempDir, pods: &[VethPod]) -> String {
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
    for ((name, ip, mac, worker), pod) in PODS.iter().zip(pods) {
        body.push_str(&format!(
            r#"
[[port]]
name = "{name}"
profile = "af_packet"
iface = "{}"
worker = {worker}
[[endpoint]]
network = "blue"
mac = "{mac}"
ips = ["{ip}"]
port = "{name}"
"#,
            pod.host_if
        ));
    }
    control_config(dir, &[0, 1], &body)
}

#[test]
fn a_cluster_ip_with_two_workers_completes_every_connection_once() {
    require_root!();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("SKIP: two workers need two CPUs");
        return;
    }
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let pods: Vec<VethPod> = PODS
        .iter()
        .enumerate()
        .map(|(i, (_, ip, mac, _))| VethPod::new(&tag, i as u32, mac, &format!("{ip}/24")))
        .collect();
    // The ClusterIP range is off the pod subnet: through the gateway.
    for pod in &pods {
        pod.ns
            .exec(&["ip", "route", "add", "10.96.0.0/12", "via", "10.1.0.1"]);
    }
    let v = Vswitchd::start(&dir, &config(&dir, &pods));
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);
    let _servers: Vec<ChildGuard> = pods[1..]
        .iter()
        .zip(&PODS[1..])
        .map(|(pod, (name, ..))| pod.ns.spawn(&["python3", "-c", SERVER, name]))
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
        "--table-size",
        "1009",
    ];
    let specs: Vec<String> = PODS[1..]
        .iter()
        .map(|(_, ip, ..)| format!("{ip}=1"))
        .collect();
    for s in &specs {
        add.extend(["--backend", s.as_str()]);
    }
    vswitchctl_ok(&sock, &add);
    // The servers listen before the first connection.
    std::thread::sleep(std::time::Duration::from_millis(700));

    let n = 100;
    let (opened, close) = (dir.join("opened"), dir.join("close"));
    let mut client = pods[0].ns.spawn(&[
        "python3",
        "-c",
        CLIENT,
        VIP,
        &n.to_string(),
        opened.to_str().unwrap(),
        close.to_str().unwrap(),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !opened.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the client never finished opening"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Every connection open: each is listed once, ESTABLISHED, translated.
    let listed: Value = serde_json::from_str(&vswitchctl_ok(
        &sock,
        &["ct", "list", "--json", "--address", VIP, "--port", "80"],
    ))
    .unwrap();
    std::fs::write(&close, "").unwrap();
    let out = client
        .wait_timeout(std::time::Duration::from_secs(30))
        .expect("the client never ended");
    let mut ports = std::collections::BTreeSet::new();
    let mut answered = std::collections::BTreeMap::<String, usize>::new();
    for line in text(&out.stdout).lines() {
        let w: Vec<&str> = line.split(' ').collect();
        match w[..] {
            ["tcp", port, a, b] => {
                assert_eq!(a, b, "one connection, one backend: {line}");
                assert!(ports.insert(port.parse::<u64>().unwrap()), "{line}");
                *answered.entry(a.to_owned()).or_default() += 1;
            }
            _ => panic!("client said {line:?}; stderr {}", text(&out.stderr)),
        }
    }
    assert_eq!(ports.len(), n, "{}", text(&out.stderr));
    for (name, ..) in &PODS[1..] {
        assert!(
            answered.get(*name).is_some_and(|&c| c > 0),
            "{name}: {answered:?}"
        );
    }
    let listed = listed.as_array().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for e in listed {
        assert_eq!(e["dst"], VIP, "{e}");
        assert_eq!(e["state"], "ESTABLISHED", "{e}");
        let reply = e["reply_src"].as_str().unwrap();
        assert!(PODS[1..].iter().any(|p| p.1 == reply), "{e}");
        let sport = e["sport"].as_u64().unwrap();
        assert!(seen.insert(sport), "listed twice: {e}");
    }
    assert_eq!(seen, ports, "each connection listed once");

    // A service with ClientIP affinity: the client's connections, received
    // by worker 0 and owned by the worker its address hashes to, all reach
    // one backend.
    let sticky = "10.96.0.11";
    let mut add = vec![
        "svc",
        "add",
        "sticky",
        "--network",
        "blue",
        "--cluster-ip",
        sticky,
        "--port",
        "http=80:8080",
        "--client-ip-affinity",
    ];
    for s in &specs {
        add.extend(["--backend", s.as_str()]);
    }
    vswitchctl_ok(&sock, &add);
    let (opened, close) = (dir.join("opened2"), dir.join("close2"));
    std::fs::write(&close, "").unwrap();
    let mut client = pods[0].ns.spawn(&[
        "python3",
        "-c",
        CLIENT,
        sticky,
        "40",
        opened.to_str().unwrap(),
        close.to_str().unwrap(),
    ]);
    let out = client
        .wait_timeout(std::time::Duration::from_secs(60))
        .expect("the affinity client never ended");
    let stdout = text(&out.stdout);
    let mut names = std::collections::BTreeSet::new();
    for l in stdout.lines() {
        let w: Vec<&str> = l.split(' ').collect();
        assert!(w.len() == 4 && w[0] == "tcp" && w[2] == w[3], "{l}");
        names.insert(w[2]);
    }
    assert_eq!(stdout.lines().count(), 40, "{}", text(&out.stderr));
    assert_eq!(names.len(), 1, "affinity: one backend, got {names:?}");

    // The stubs the owners left where replies hash: listed only when asked
    // for by their state.
    let stubs: Value = serde_json::from_str(&vswitchctl_ok(
        &sock,
        &["ct", "list", "--json", "--state", "redirect"],
    ))
    .unwrap();
    let stubs = stubs.as_array().unwrap();
    assert!(
        !stubs.is_empty(),
        "no redirect stub for 100 DNAT'd connections"
    );
    for e in stubs {
        assert_eq!(e["state"], "REDIRECT", "{e}");
        assert!(PODS[1..].iter().any(|p| p.1 == e["src"]), "{e}");
    }
    // `ct stats`: both workers handed packets over.
    let ct: Value =
        serde_json::from_str(&vswitchctl_ok(&sock, &["ct", "stats", "--json"])).unwrap();
    let ct = ct.as_array().unwrap();
    assert_eq!(ct.len(), 2);
    assert!(
        ct.iter().all(|w| w["handed_off"].as_u64().unwrap() > 0),
        "{ct:?}"
    );
    let stats: Value =
        serde_json::from_str(&vswitchctl_ok(&sock, &["stats", "--json", "--all"])).unwrap();
    let workers = stats["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for w in workers {
        assert!(
            w["conntrack"]["handed_off"].as_u64().unwrap() > 0,
            "a worker handed nothing over: {w}"
        );
    }
    for r in [
        "ct_invalid",
        "ct_handoff_full",
        "lb_nat_clash",
        "ct_out_of_window",
    ] {
        assert_eq!(stats["drops"][r], 0, "{r}");
    }
    drop(v);
}
