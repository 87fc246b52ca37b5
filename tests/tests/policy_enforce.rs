//! Network policy enforced on a real switch (issue #26): pods a, b, c
//! (kernel namespaces on af_packet ports) in one network, each running TCP
//! and UDP servers on ports 80 and 81 that answer with the pod's name.
//! Policies are written with `vswitchctl policy add`/`del`; every scenario
//! probes the connections it is about with python TCP and UDP clients and
//! checks who gets through: deny-all ingress, allow from one pod, egress
//! deny, an ipBlock with an except, a policy update closing an open
//! connection (the network re-evaluates), and a probe through a Service
//! VIP whose backend's policy decides. The denials show in `stats` (drop
//! reasons), in `policy show` (hits) and in `policy log --json`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::*;

const GW_MAC: &str = "02:00:00:00:aa:01";
const VIP: &str = "10.96.0.10";
/// The pods: name, address, MAC.
const PODS: [(&str, &str, &str); 3] = [
    ("a", "10.1.0.10", "02:00:00:00:01:0a"),
    ("b", "10.1.0.11", "02:00:00:00:01:0b"),
    ("c", "10.1.0.12", "02:00:00:00:01:0c"),
];

/// TCP and UDP on 80 and 81, answering every line or datagram with the
/// pod's name. Up for 300 s.
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
def tcp(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=conn, args=(c,), daemon=True).start()
def udp(port):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    while True:
        b, a = u.recvfrom(100)
        u.sendto(name, a)
for p in (80, 81):
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
    threading.Thread(target=udp, args=(p,), daemon=True).start()
threading.Event().wait(300)
"#;

/// One probe: `proto dst port`; prints the answer's name, or `-` when none
/// came within the timeout.
const PROBE: &str = r#"
import socket, sys
proto, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if proto == "tcp":
        s = socket.create_connection((dst, port), timeout=1.5)
        s.settimeout(1.5)
        s.sendall(b"q\n")
        print(s.makefile("rb").readline().strip().decode() or "-")
    else:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(1.5)
        u.sendto(b"q", (dst, port))
        print(u.recvfrom(100)[0].decode())
except OSError:
    print("-")
"#;

/// One long-lived connection: asks, writes the answer to DIR/first, waits
/// for DIR/go, asks again and writes DIR/second (`-` when no answer came).
const LONG: &str = r#"
import os, socket, sys, time
dst, d = sys.argv[1], sys.argv[2]
def put(n, v):
    open(os.path.join(d, n + ".tmp"), "w").write(v)
    os.rename(os.path.join(d, n + ".tmp"), os.path.join(d, n))
s = socket.create_connection((dst, 80), timeout=10)
f = s.makefile("rb")
s.sendall(b"a\n")
put("first", f.readline().strip().decode())
t = time.time() + 60
while not os.path.exists(os.path.join(d, "go")):
    if time.time() > t:
        sys.exit("no go")
    time.sleep(0.05)
s.settimeout(2)
try:
    s.sendall(b"b\n")
    put("second", f.readline().strip().decode() or "-")
except OSError:
    put("second", "-")
"#;

fn config(dir: &TempDir, pods: &[VethPod], two_workers: bool) -> String {
    // A policy on an address no pod has, in blue's subnet: blue is policed
    // (so tracked) from the start, and its connections carry verdicts
    // before the scenarios' policies come.
    let mut body = format!(
        r#"
[[network]]
name = "blue"
vni = 100
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "{GW_MAC}"
[[policy]]
name = "x/nobody"
subject = ["10.1.0.99"]
policy_types = ["Ingress"]
"#
    );
    for (i, ((name, ip, mac), pod)) in PODS.iter().zip(pods).enumerate() {
        // With two workers, a's port on worker 0, b's and c's on worker 1.
        let worker = if two_workers {
            format!("worker = {}\n", usize::from(i > 0))
        } else {
            String::new()
        };
        body.push_str(&format!(
            r#"
[[port]]
name = "{name}"
profile = "af_packet"
iface = "{}"
{worker}[[endpoint]]
network = "blue"
mac = "{mac}"
ips = ["{ip}"]
port = "{name}"
"#,
            pod.host_if
        ));
    }
    let workers = if two_workers {
        vec![0, 1]
    } else {
        vec![worker_core()]
    };
    control_config(dir, &workers, &body)
}

/// Pods a, b, c with their servers on a switch; dropped in this order:
/// the servers, the switch, the pods, the directory.
struct Lab {
    _servers: Vec<ChildGuard>,
    _v: Vswitchd,
    sock: std::path::PathBuf,
    pods: Vec<VethPod>,
    dir: TempDir,
}

impl Lab {
    fn start(two_workers: bool) -> Lab {
        let tag = unique_tag();
        let dir = TempDir::new(&tag);
        let pods: Vec<VethPod> = PODS
            .iter()
            .enumerate()
            .map(|(i, (_, ip, mac))| VethPod::new(&tag, i as u32, mac, &format!("{ip}/24")))
            .collect();
        for pod in &pods {
            pod.ns
                .exec(&["ip", "route", "add", "10.96.0.0/12", "via", "10.1.0.1"]);
        }
        let v = Vswitchd::start(&dir, &config(&dir, &pods, two_workers));
        let sock = dir.join("ctl.sock");
        wait_for_api(&sock);
        let servers: Vec<ChildGuard> = pods
            .iter()
            .zip(PODS)
            .map(|(pod, (name, _, _))| pod.ns.spawn(&["python3", "-c", SERVER, name]))
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        Lab {
            _servers: servers,
            _v: v,
            sock,
            pods,
            dir,
        }
    }

    fn ip(&self, pod: usize) -> &'static str {
        PODS[pod].1
    }

    /// Pod `from` probes `dst:port` over `proto`: the name that answered,
    /// or `-`.
    fn probe(&self, from: usize, proto: &str, dst: &str, port: u16) -> String {
        let out = self.pods[from]
            .ns
            .exec(&["python3", "-c", PROBE, proto, dst, &port.to_string()]);
        text(&out.stdout).trim().to_owned()
    }

    /// Checks `from → to` on TCP and UDP port `port` against `want` (the
    /// target's name or `-`) for both protocols.
    fn expect(&self, what: &str, from: usize, to: usize, port: u16, reach: bool) {
        let want = if reach { PODS[to].0 } else { "-" };
        for proto in ["tcp", "udp"] {
            let got = self.probe(from, proto, self.ip(to), port);
            assert_eq!(
                got, want,
                "{what}: {} -> {} {proto}/{port}",
                PODS[from].0, PODS[to].0
            );
        }
    }

    /// Writes `fragment` with `policy add --replace`.
    fn add(&self, fragment: &str) {
        let f = self.dir.join("frag.toml");
        std::fs::write(&f, fragment).unwrap();
        vswitchctl_ok(
            &self.sock,
            &["policy", "add", "--replace", f.to_str().unwrap()],
        );
    }

    fn del(&self, name: &str) {
        vswitchctl_ok(&self.sock, &["policy", "del", name]);
    }
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

fn drops(sock: &Path, reason: &str) -> u64 {
    let s: Value =
        serde_json::from_str(&vswitchctl_ok(sock, &["stats", "--json", "--all"])).unwrap();
    s["drops"][reason].as_u64().unwrap_or(0)
}

#[test]
fn policies_decide_who_reaches_whom_over_tcp_and_udp() {
    require_root!();
    let lab = Lab::start(false);
    let (a, b, c) = (0, 1, 2);

    // No policy selects a pod: everyone reaches everyone.
    lab.expect("no policy", a, b, 80, true);
    lab.expect("no policy", c, b, 81, true);

    // 1. Deny all ingress to b: nobody reaches b; b still reaches out.
    lab.add(
        r#"
[[policy]]
name = "x/b"
subject = ["10.1.0.11"]
policy_types = ["Ingress"]
"#,
    );
    lab.expect("deny-all ingress", a, b, 80, false);
    lab.expect("deny-all ingress", c, b, 81, false);
    lab.expect("deny-all ingress: b's own connections", b, c, 80, true);
    assert!(drops(&lab.sock, "policy_denied_ingress") >= 4);

    // 2. Allow from one pod: b admits c on port 80, TCP and UDP.
    lab.add(
        r#"
[[policy]]
name = "x/b"
subject = ["10.1.0.11"]
policy_types = ["Ingress"]
[[policy.ingress]]
peers = [{ addresses = ["10.1.0.12"] }]
ports = [{ protocol = "TCP", port = 80 }, { protocol = "UDP", port = 80 }]
"#,
    );
    lab.expect("allow from c", c, b, 80, true);
    lab.expect("allow from c: another port", c, b, 81, false);
    lab.expect("allow from c: another pod", a, b, 80, false);
    let show = vswitchctl_ok(&lab.sock, &["policy", "show", "x/b", "--json"]);
    let show: Value = serde_json::from_str(&show).unwrap();
    let rule0 = show["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["rule"] == 0 && h["direction"] == "ingress")
        .unwrap_or_else(|| panic!("{show}"));
    assert!(rule0["hits"].as_u64().unwrap() >= 2, "{show}");
    lab.del("x/b");
    lab.expect("policy deleted", a, b, 80, true);

    // 3. Egress deny: a may reach nobody but b on 81.
    lab.add(
        r#"
[[policy]]
name = "x/a-out"
subject = ["10.1.0.10"]
policy_types = ["Egress"]
[[policy.egress]]
peers = [{ addresses = ["10.1.0.11"] }]
ports = [{ protocol = "TCP", port = 81 }, { protocol = "UDP", port = 81 }]
"#,
    );
    let before = drops(&lab.sock, "policy_denied_egress");
    lab.expect("egress deny", a, c, 80, false);
    lab.expect("egress deny", a, b, 80, false);
    lab.expect("egress allow", a, b, 81, true);
    lab.expect("egress: others unaffected", c, a, 80, true);
    assert!(drops(&lab.sock, "policy_denied_egress") >= before + 4);
    lab.del("x/a-out");

    // 4. ipBlock with an except: b admits the pod subnet but a.
    lab.add(
        r#"
[[policy]]
name = "x/b-block"
subject = ["10.1.0.11"]
policy_types = ["Ingress"]
[[policy.ingress]]
peers = [{ ip_block = { cidr = "10.1.0.0/24", except = ["10.1.0.10/32"] } }]
"#,
    );
    lab.expect("ipBlock except", a, b, 80, false);
    lab.expect("ipBlock", c, b, 80, true);
    lab.expect("ipBlock", c, b, 81, true);
    lab.del("x/b-block");

    // 5. A policy update closes an open connection: a's connection to c,
    // allowed when it opened, gets no answer once c's policy stops
    // admitting a (blue re-evaluates on a policy change, the default).
    let long_dir = lab.dir.join("long");
    std::fs::create_dir_all(&long_dir).unwrap();
    let mut long =
        lab.pods[a]
            .ns
            .spawn(&["python3", "-c", LONG, lab.ip(c), long_dir.to_str().unwrap()]);
    assert_eq!(wait_file(&long_dir.join("first"), &mut long), "c");
    lab.add(
        r#"
[[policy]]
name = "x/c"
subject = ["10.1.0.12"]
policy_types = ["Ingress"]
[[policy.ingress]]
peers = [{ addresses = ["10.1.0.11"] }]
"#,
    );
    std::fs::write(long_dir.join("go"), "").unwrap();
    assert_eq!(
        wait_file(&long_dir.join("second"), &mut long),
        "-",
        "the open connection is closed by the new policy"
    );
    lab.expect("update: new connections", a, c, 80, false);
    lab.expect("update: b still admitted", b, c, 80, true);
    lab.del("x/c");

    // 6. Through a Service VIP: the backend b admits c only. a's
    // connections to the VIP are denied against b (after DNAT); c's pass.
    vswitchctl_ok(
        &lab.sock,
        &[
            "svc",
            "add",
            "web",
            "--network",
            "blue",
            "--cluster-ip",
            VIP,
            "--port",
            "http=80:80",
            "--port",
            "dns=53/UDP:80",
            "--backend",
            "10.1.0.11=1",
        ],
    );
    lab.add(
        r#"
[[policy]]
name = "x/b-svc"
subject = ["10.1.0.11"]
policy_types = ["Ingress"]
[[policy.ingress]]
peers = [{ addresses = ["10.1.0.12"] }]
"#,
    );
    assert_eq!(lab.probe(c, "tcp", VIP, 80), "b", "c through the VIP");
    assert_eq!(lab.probe(c, "udp", VIP, 53), "b", "c through the VIP, UDP");
    assert_eq!(lab.probe(a, "tcp", VIP, 80), "-", "a through the VIP");
    assert_eq!(lab.probe(a, "udp", VIP, 53), "-", "a through the VIP, UDP");
    let log = vswitchctl_ok(&lab.sock, &["policy", "log", "--json"]);
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["policy"], "", "{last}");
    assert_eq!(last["direction"], "ingress", "{last}");
    assert_eq!(last["src"], "10.1.0.10", "{last}");
    assert_eq!(last["dst"], "10.1.0.11", "the backend: {last}");
    assert_eq!(last["dport"], 80, "{last}");
    assert_eq!(last["frontend"], format!("{VIP}:53"), "{last}");
    assert_eq!(last["network"], "blue", "{last}");
    let table = vswitchctl_ok(&lab.sock, &["policy", "log"]);
    assert!(table.contains("(isolated, no rule allows)"), "{table}");
    assert!(table.contains("logged since start"), "{table}");
}

/// Policy with two workers: a's port polled by worker 0, b's and c's by
/// worker 1, so the two directions of a connection between a and b are
/// received by two workers and one of them hands its packets to the owner
/// of the connection (the conntrack handoff), where the policy stage keeps
/// the verdict. A deny-all ingress on b stops a and c, b's own connections
/// and their replies still pass; an allow from a on port 80 lets a's twenty
/// connections through, and c stays out.
#[test]
fn policy_holds_with_two_workers() {
    require_root!();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("SKIP: two workers need two CPUs");
        return;
    }
    let lab = Lab::start(true);
    let (a, b, c) = (0, 1, 2);
    lab.expect("no policy", a, b, 80, true);

    lab.add(
        r#"
[[policy]]
name = "x/b"
subject = ["10.1.0.11"]
policy_types = ["Ingress"]
"#,
    );
    lab.expect("deny-all ingress, two workers", a, b, 80, false);
    lab.expect("deny-all ingress, two workers", c, b, 81, false);
    lab.expect("b's own connections, two workers", b, a, 80, true);
    assert!(drops(&lab.sock, "policy_denied_ingress") >= 4);

    lab.add(
        r#"
[[policy]]
name = "x/b"
subject = ["10.1.0.11"]
policy_types = ["Ingress"]
[[policy.ingress]]
peers = [{ addresses = ["10.1.0.10"] }]
ports = [{ protocol = "TCP", port = 80 }]
"#,
    );
    for _ in 0..20 {
        assert_eq!(lab.probe(a, "tcp", lab.ip(b), 80), PODS[b].0);
    }
    lab.expect("allowed from a only, two workers", c, b, 80, false);

    let stats: Value =
        serde_json::from_str(&vswitchctl_ok(&lab.sock, &["stats", "--json", "--all"])).unwrap();
    let handed: u64 = stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["conntrack"]["handed_off"].as_u64().unwrap())
        .sum();
    assert!(handed > 0, "no packet was handed over: {stats}");
    for r in ["ct_invalid", "ct_handoff_full"] {
        assert_eq!(stats["drops"][r], 0, "{r}");
    }
}

/// A network holding a policy subject is tracked, and a tracked network
/// must be its tenant's only one (a routed connection would meet two
/// zones): a subject in blue while green shares its tenant is refused,
/// naming both; a second network added to a policed tenant is refused.
#[test]
fn a_policy_subject_in_a_shared_tenant_is_refused() {
    require_root!();
    let dir = TempDir::new(&unique_tag());
    let _v = Vswitchd::start(&dir, &control_config(&dir, &[worker_core()], ""));
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);
    let net = |name: &str, vni: &str, subnet: &str, mac: &str| {
        vswitchctl(
            &sock,
            &[
                "net",
                "add",
                name,
                "--vni",
                vni,
                "--tenant",
                "t1",
                "--subnet",
                subnet,
                "--gateway-mac",
                mac,
            ],
        )
    };
    assert!(net("blue", "100", "10.1.0.0/24", "02:00:00:00:aa:01")
        .status
        .success());
    assert!(net("green", "200", "10.2.0.0/24", "02:00:00:00:aa:02")
        .status
        .success());
    let frag = dir.join("frag.toml");
    std::fs::write(
        &frag,
        "[[policy]]\nname = \"x/b\"\nsubject = [\"10.1.0.11\"]\npolicy_types = [\"Ingress\"]\n",
    )
    .unwrap();
    let out = vswitchctl(&sock, &["policy", "add", frag.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("subject:") && err.contains("\"blue\"") && err.contains("\"green\""),
        "{err}"
    );
    // Without green, the subject is taken; then green cannot come back.
    vswitchctl_ok(&sock, &["net", "del", "green"]);
    vswitchctl_ok(&sock, &["policy", "add", frag.to_str().unwrap()]);
    let out = net("green", "200", "10.2.0.0/24", "02:00:00:00:aa:02");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("its tenant's only one"),
        "{}",
        text(&out.stderr)
    );
}
