//! The control plane end to end (issue #5): a real `vswitchd` with a `[control]`
//! section, driven only through the `vswitchctl` binary.
//!
//! - every resource's gRPC round trip (add / list --json / del), `get` → `apply`
//!   is a no-op, patches and L2 entries through `apply -f`;
//! - 40+ invalid writes, each refused with exit 1 and one line naming the item,
//!   the generation and state unchanged, a UDP stream between two pods unharmed;
//! - 100 af_packet and 100 tap port add/remove cycles under a UDP stream: no loss,
//!   the mempool back at its baseline;
//! - `kill -9` and restart: the same state and generation, forwarding again; a
//!   corrupt state file stops the start with one line and is left as it was;
//! - `trace`: forwarded, dropped, ARP answered by the gateway;
//! - figures: write-to-published latency (one endpoint, 10k endpoints) and
//!   sustained writes per second under traffic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::*;

const MAC1: &str = "02:00:00:00:01:01";
const MAC2: &str = "02:00:00:00:02:01";
const GW_MAC: &str = "02:00:00:00:aa:01";
const UDP_PORT: &str = "7101";

// ------------------------------------------------------------------ helpers

/// A config with the API on: socket and state file in `dir`, port paths allowed
/// in `dir/pcap` and `dir/vhost`, then `body` (ports and the initial desired state).
fn config(dir: &TempDir, body: &str) -> String {
    control_config(
        dir,
        &[worker_core()],
        &format!("{}{body}", allowed_dirs(dir)),
    )
}

/// Two af_packet ports on the pods' host ends.
fn pod_ports(p1: &VethPod, p2: &VethPod) -> String {
    format!(
        "[[port]]\nname = \"pod1\"\nprofile = \"af_packet\"\niface = \"{}\"\n\
         [[port]]\nname = \"pod2\"\nprofile = \"af_packet\"\niface = \"{}\"\n",
        p1.host_if, p2.host_if
    )
}

/// Static classic-L2 entries for the two pods.
fn pod_l2() -> String {
    format!(
        "[[l2]]\nmac = \"{MAC1}\"\nport = \"pod1\"\n[[l2]]\nmac = \"{MAC2}\"\nport = \"pod2\"\n"
    )
}

/// Two pods, `10.77.0.1` and `10.77.0.2` (or the given CIDRs), with permanent
/// neighbour entries for each other so the stream needs no ARP.
fn two_pods(tag: &str, c1: &str, c2: &str) -> (VethPod, VethPod) {
    let p1 = VethPod::new(tag, 1, MAC1, c1);
    let p2 = VethPod::new(tag, 2, MAC2, c2);
    let ip2 = c2.split('/').next().unwrap();
    let ip1 = c1.split('/').next().unwrap();
    p1.ns.exec(&[
        "ip",
        "neigh",
        "replace",
        ip2,
        "lladdr",
        MAC2,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    p2.ns.exec(&[
        "ip",
        "neigh",
        "replace",
        ip1,
        "lladdr",
        MAC1,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    (p1, p2)
}

/// `vswitchctl --socket SOCK ...`.
struct Ctl {
    socket: PathBuf,
}

impl Ctl {
    fn new(dir: &TempDir) -> Ctl {
        Ctl {
            socket: dir.join("ctl.sock"),
        }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        vswitchctl(&self.socket, args)
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        vswitchctl_ok(&self.socket, args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let s = self.ok(args);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("vswitchctl {args:?}: {e}\n{s}"))
    }

    /// A write: its new generation and publish time (µs), from
    /// "generation N (published in X us)".
    fn write(&self, args: &[&str]) -> (u64, u64) {
        let s = self.ok(args);
        parse_published(&s).unwrap_or_else(|| panic!("vswitchctl {args:?}: no generation in {s:?}"))
    }

    fn generation(&self) -> u64 {
        self.json(&["show", "--json"])["generation"]
            .as_u64()
            .expect("generation")
    }

    /// `get -o json`: the state with the generation it was read at (a key, so
    /// that `apply -f` of an edited copy is conditional on it).
    fn state(&self) -> Value {
        self.json(&["get", "-o", "json"])
    }

    /// The state alone, to compare across generations.
    fn content(&self) -> Value {
        let mut v = self.state();
        v.as_object_mut().expect("a document").remove("generation");
        v
    }

    /// Waits until the API answers (it listens shortly after the first stats file).
    fn wait_ready(&self) {
        wait_for_api(&self.socket)
    }

    /// `mbufs_in_use`, the smallest of a few samples (a sample can catch a burst
    /// in flight through a worker).
    fn mbufs_in_use(&self) -> u64 {
        (0..5)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(100));
                self.json(&["stats", "--json"])["mbufs_in_use"]
                    .as_u64()
                    .expect("mbufs_in_use")
            })
            .min()
            .unwrap()
    }
}

/// "generation N (published in X us)" anywhere in `s` (the last such line).
fn parse_published(s: &str) -> Option<(u64, u64)> {
    s.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("generation ")?;
        let (g, rest) = rest.split_once(" (published in ")?;
        let us = rest.strip_suffix(" us)")?;
        Some((g.parse().ok()?, us.parse().ok()?))
    })
}

fn assert_alive(v: &mut Vswitchd, when: &str) {
    let child = v.child.0.as_mut().expect("vswitchd handle");
    if let Some(st) = child.try_wait().expect("try_wait") {
        panic!("vswitchd exited ({st:?}) {when}:\n{}", v.log_text());
    }
}

fn ping(from: &VethPod, to_ip: &str) {
    let out = from
        .ns
        .try_exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", to_ip]);
    assert!(
        out.status.success(),
        "ping {to_ip} from {} failed:\n{}{}",
        from.ns.name,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A paced UDP stream (scripts/udp_stream.py) from one pod to another.
struct Stream {
    sender: ChildGuard,
    receiver: ChildGuard,
    files: [PathBuf; 5],
    /// When the sender started, and its rate (datagrams per second).
    started: Instant,
    rate: u32,
}

#[derive(Debug)]
struct StreamResult {
    sent: u64,
    distinct: u64,
    duplicates: u64,
    raw: Value,
}

impl Stream {
    /// Starts the receiver, then the sender at `rate`/s, and waits until `min`
    /// datagrams went through the switch (`pod2` tx counter) so the stream is flowing.
    fn start(
        dir: &TempDir,
        v: &Vswitchd,
        from: &VethPod,
        to: &VethPod,
        to_ip: &str,
        rate: u32,
    ) -> Stream {
        let script = repo_root().join("scripts/udp_stream.py");
        let script = script.to_str().unwrap().to_owned();
        let files = [
            "recv.ready",
            "recv.stop",
            "recv.json",
            "send.stop",
            "send.json",
        ]
        .map(|f| dir.join(f));
        for f in &files {
            let _ = std::fs::remove_file(f);
        }
        let p = |i: usize| files[i].to_str().unwrap().to_owned();
        let receiver = to.ns.spawn(&[
            "python3",
            &script,
            "recv",
            "--port",
            UDP_PORT,
            "--ready",
            &p(0),
            "--stop",
            &p(1),
            "--out",
            &p(2),
            "--idle",
            "1.0",
            "--timeout",
            "900",
        ]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !files[0].exists() {
            assert!(Instant::now() < deadline, "UDP receiver did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = counter(port_stats(&read_json(&v.stats_file), "pod2"), "tx_packets");
        let started = Instant::now();
        let per_second = rate;
        let rate = rate.to_string();
        let sender = from.ns.spawn(&[
            "python3",
            &script,
            "send",
            "--host",
            to_ip,
            "--port",
            UDP_PORT,
            "--rate",
            &rate,
            "--count",
            "100000000",
            "--stop",
            &p(3),
            "--out",
            &p(4),
        ]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let stats = read_json(&v.stats_file);
            if counter(port_stats(&stats, "pod2"), "tx_packets") >= before + 100 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the stream does not reach pod2: {stats}\n{}",
                v.log_text()
            );
        }
        Stream {
            sender,
            receiver,
            files,
            started,
            rate: per_second,
        }
    }

    /// Stops the stream once it has run long enough to send `min` datagrams at
    /// its rate (a fifth more, for the sender's start-up), however quickly the
    /// work it accompanied ended: a stream too short proves nothing about loss,
    /// and `assert_no_loss` refuses one. Then the counts of both ends.
    fn finish(mut self, min: u64) -> StreamResult {
        let needed = Duration::from_secs_f64(min as f64 * 1.2 / f64::from(self.rate));
        std::thread::sleep(needed.saturating_sub(self.started.elapsed()));
        std::fs::write(&self.files[3], "").unwrap();
        let out = self
            .sender
            .wait_timeout(Duration::from_secs(10))
            .expect("UDP sender hung");
        assert!(out.status.success(), "UDP sender: {}", text(&out.stderr));
        std::fs::write(&self.files[1], "").unwrap();
        let out = self
            .receiver
            .wait_timeout(Duration::from_secs(15))
            .expect("UDP receiver hung");
        assert!(out.status.success(), "UDP receiver: {}", text(&out.stderr));
        let sent = read_json(&self.files[4]);
        let got = read_json(&self.files[2]);
        StreamResult {
            sent: counter(&sent, "sent"),
            distinct: counter(&got, "distinct"),
            duplicates: counter(&got, "duplicates"),
            raw: json!({"sender": sent, "receiver": got}),
        }
    }
}

fn assert_no_loss(r: &StreamResult, min: u64) {
    assert!(r.sent >= min, "the stream was too short: {:?}", r);
    assert_eq!(r.distinct, r.sent, "datagrams lost: {}", r.raw);
    assert_eq!(r.duplicates, 0, "{}", r.raw);
}

/// Writes a JSON document for `apply -f`.
fn write_doc(dir: &TempDir, name: &str, doc: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    p.to_str().unwrap().to_owned()
}

// ------------------------------------------------------------------ 1. round trips

#[test]
fn control_round_trips_every_resource() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    // A veth whose host end the API turns into an af_packet port. It is the
    // uplink of an underlay of MTU 1600 below, which the uplink must carry.
    let spare = VethPod::new(&tag, 3, "02:00:00:00:03:01", "10.79.0.3/24");
    ip(&["link", "set", &spare.host_if, "mtu", "1600"]);
    let v = Vswitchd::start(
        &dir,
        &config(&dir, "[[port]]\nname = \"sink\"\nprofile = \"null\"\n"),
    );
    let ctl = Ctl::new(&dir);
    ctl.wait_ready();
    let initial = ctl.content();
    let show = ctl.json(&["show", "--json"]);
    assert_eq!(show["generation"], 1, "{show}");
    assert_eq!(show["health"]["serving"], true, "{show}");
    assert_eq!(show["health"]["generation"], 1, "{show}");
    assert!(show["health"]["uptime_s"].as_f64().unwrap() >= 0.0);
    assert!(!show["health"]["version"].as_str().unwrap().is_empty());
    assert_eq!(show["counts"]["ports"], 1, "{show}");
    assert_eq!(show["underlay"], Value::Null);
    assert_eq!(initial["ports"][0]["name"], "sink");
    assert_eq!(initial["ports"][0]["profile"], "null");

    let gen = std::cell::Cell::new(1u64);
    let w = |args: &[&str]| {
        let (g, _) = ctl.write(args);
        gen.set(gen.get() + 1);
        assert_eq!(g, gen.get(), "{args:?}: generations go up by one");
    };

    // Ports.
    w(&[
        "port",
        "add",
        "nul2",
        "--profile",
        "null",
        "--param",
        "size=128",
    ]);
    w(&[
        "port",
        "add",
        "up",
        "--profile",
        "af_packet",
        "--param",
        &format!("iface={}", spare.host_if),
        "--group",
        "g1",
    ]);
    let ports = ctl.json(&["port", "list", "--json"]);
    let ports = ports.as_array().unwrap();
    assert_eq!(ports.len(), 3, "{ports:?}");
    let by = |n: &str| ports.iter().find(|p| p["name"] == n).cloned().unwrap();
    let up = by("up");
    assert_eq!(up["profile"], "af_packet");
    assert_eq!(up["driver"], "net_af_packet");
    assert_eq!(up["link_up"], true);
    assert_eq!(
        up["rx_packets"].as_u64(),
        Some(up["rx_packets"].as_u64().unwrap())
    );
    assert!(up["dpdk_port_id"].as_u64().is_some());
    assert!(up["tx_packets"].as_u64().is_some() && up["dropped"].as_u64().is_some());
    assert_eq!(up["mac"].as_str().unwrap().len(), 17, "{up}");
    let nul2 = by("nul2");
    assert_eq!(nul2["profile"], "null");
    assert_eq!(nul2["driver"], "net_null");
    let st = ctl.state();
    let sp = st["ports"].as_array().unwrap();
    let upd = sp.iter().find(|p| p["name"] == "up").unwrap();
    assert_eq!(upd["params"]["iface"], spare.host_if.as_str(), "{upd}");
    assert_eq!(upd["group"], "g1", "{upd}");
    let n2 = sp.iter().find(|p| p["name"] == "nul2").unwrap();
    assert_eq!(n2["params"]["size"], "128", "{n2}");

    // Networks.
    w(&[
        "net",
        "add",
        "blue",
        "--vni",
        "100",
        "--encap",
        "geneve",
        "--tenant",
        "t1",
        "--subnet",
        "10.1.0.0/24",
        "--gateway-ip",
        "10.1.0.1",
        "--gateway-mac",
        GW_MAC,
        "--flood-unknown",
    ]);
    w(&[
        "net",
        "add",
        "red",
        "--vni",
        "200",
        "--subnet",
        "10.2.0.0/24",
        "--gateway-ip",
        "10.2.0.1",
        "--gateway-mac",
        "02:00:00:00:aa:02",
    ]);
    let nets = ctl.json(&["net", "list", "--json"]);
    let blue = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "blue")
        .unwrap();
    assert_eq!(blue["vni"], 100);
    assert_eq!(blue["encap"], "geneve");
    assert_eq!(blue["tenant"], "t1");
    assert_eq!(blue["subnets"], json!(["10.1.0.0/24"]));
    assert_eq!(blue["gateway_ips"], json!(["10.1.0.1"]));
    assert_eq!(blue["gateway_mac"], GW_MAC);
    assert_eq!(blue["flood_unknown"], true);
    let red = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "red")
        .unwrap();
    assert_eq!(red["vni"], 200);
    assert!(!red["flood_unknown"].as_bool().unwrap_or(false));

    // Endpoints.
    w(&[
        "endpoint",
        "add",
        "--network",
        "blue",
        "--mac",
        "02:00:00:00:0e:01",
        "--ip",
        "10.1.0.2",
        "--port",
        "sink",
    ]);
    w(&[
        "endpoint",
        "add",
        "--network",
        "red",
        "--mac",
        "02:00:00:00:0e:02",
        "--ip",
        "10.2.0.2",
        "--ip",
        "10.2.0.22",
        "--port",
        "nul2",
    ]);
    let eps = ctl.json(&["endpoint", "list", "--json"]);
    assert_eq!(eps.as_array().unwrap().len(), 2, "{eps}");
    let e2 = eps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["network"] == "red")
        .unwrap();
    assert_eq!(e2["mac"], "02:00:00:00:0e:02");
    assert_eq!(e2["ips"], json!(["10.2.0.2", "10.2.0.22"]));
    assert_eq!(e2["port"], "nul2");

    // Underlay.
    assert_eq!(ctl.json(&["underlay", "show", "--json"]), Value::Null);
    w(&[
        "underlay",
        "set",
        "--uplink",
        "up",
        "--local-ip",
        "192.0.2.1",
        "--local-mac",
        "02:00:00:00:ff:01",
        "--on-link",
        "192.0.2.0/24",
        "--gateway",
        "192.0.2.254",
        "--mtu",
        "1600",
        "--neighbor",
        "192.0.2.2=02:00:00:00:ff:02",
    ]);
    let u = ctl.json(&["underlay", "show", "--json"]);
    assert_eq!(u["uplink"], "up");
    assert_eq!(u["local_vtep_ip"], "192.0.2.1");
    assert_eq!(u["local_mac"], "02:00:00:00:ff:01");
    assert_eq!(u["on_link"], "192.0.2.0/24");
    assert_eq!(u["gateway"], "192.0.2.254");
    assert_eq!(u["mtu"], 1600);
    assert_eq!(
        u["neighbors"],
        json!([{"ip": "192.0.2.2", "mac": "02:00:00:00:ff:02"}])
    );
    let show = ctl.json(&["show", "--json"]);
    assert_eq!(show["underlay"]["uplink"], "up", "{show}");

    // Remote endpoints (the underlay is set now).
    w(&[
        "remote",
        "add",
        "--network",
        "blue",
        "--mac",
        "02:00:00:00:0f:01",
        "--ip",
        "10.1.0.3",
        "--vtep",
        "192.0.2.2",
    ]);
    let rem = ctl.json(&["remote", "list", "--json"]);
    assert_eq!(
        rem,
        json!([{"network": "blue", "mac": "02:00:00:00:0f:01", "ips": ["10.1.0.3"], "vtep": "192.0.2.2"}])
    );

    // Routes: next hop and blackhole.
    w(&[
        "route",
        "add",
        "--tenant",
        "t1",
        "10.50.0.0/16",
        "--via-network",
        "blue",
        "--via",
        "10.1.0.2",
    ]);
    w(&[
        "route",
        "add",
        "--tenant",
        "t1",
        "10.99.0.0/16",
        "--blackhole",
    ]);
    let routes = ctl.json(&["route", "list", "--json"]);
    let routes = routes.as_array().unwrap();
    assert_eq!(routes.len(), 2);
    let nh = routes
        .iter()
        .find(|r| r["prefix"] == "10.50.0.0/16")
        .unwrap();
    assert_eq!(nh["tenant"], "t1");
    assert_eq!(nh["next_hop"], json!({"network": "blue", "ip": "10.1.0.2"}));
    assert!(!nh["blackhole"].as_bool().unwrap_or(false));
    let bh = routes
        .iter()
        .find(|r| r["prefix"] == "10.99.0.0/16")
        .unwrap();
    assert_eq!(bh["blackhole"], true);
    assert!(bh.get("next_hop").is_none_or(Value::is_null), "{bh}");

    // Patches and L2 entries (no CLI verbs): through apply -f.
    w(&["port", "add", "r1", "--profile", "null"]);
    w(&["port", "add", "r2", "--profile", "null"]);
    let mut doc = ctl.state();
    doc["patches"] = json!([{"from": "r1", "to": "r2"}]);
    doc["l2"] = json!([{"mac": "02:00:00:00:0d:01", "port": "r2"}]);
    let f = write_doc(&dir, "patch.json", &doc);
    let out = ctl.ok(&["apply", "-f", &f]);
    let (g, _) = parse_published(&out).unwrap_or_else(|| panic!("apply: {out}"));
    gen.set(gen.get() + 1);
    assert_eq!(g, gen.get(), "{out}");
    let st = ctl.state();
    assert_eq!(st["patches"], json!([{"from": "r1", "to": "r2"}]), "{st}");
    assert_eq!(
        st["l2"],
        json!([{"mac": "02:00:00:00:0d:01", "port": "r2"}]),
        "{st}"
    );
    let show = ctl.json(&["show", "--json"]);
    let c = &show["counts"];
    assert_eq!(
        (
            c["ports"].as_u64(),
            c["patches"].as_u64(),
            c["l2"].as_u64(),
            c["networks"].as_u64()
        ),
        (Some(5), Some(1), Some(1), Some(2)),
        "{show}"
    );
    assert_eq!(
        (
            c["endpoints"].as_u64(),
            c["remote_endpoints"].as_u64(),
            c["routes"].as_u64()
        ),
        (Some(2), Some(1), Some(2)),
        "{show}"
    );
    assert_eq!(show["generation"], gen.get());

    // get -o json, then apply -f: nothing to change. And the same with YAML.
    let f = dir.join("full.json");
    std::fs::write(&f, ctl.ok(&["get", "-o", "json"])).unwrap();
    let out = ctl.ok(&["apply", "-f", f.to_str().unwrap()]);
    assert!(
        out.contains(&format!("generation {} unchanged", gen.get())),
        "{out}"
    );
    let f = dir.join("full.yaml");
    std::fs::write(&f, ctl.ok(&["get", "-o", "yaml"])).unwrap();
    let out = ctl.ok(&["apply", "-f", f.to_str().unwrap()]);
    assert!(
        out.contains(&format!("generation {} unchanged", gen.get())),
        "{out}"
    );
    assert_eq!(ctl.generation(), gen.get());
    // --dry-run shows a change but makes none.
    let mut smaller = ctl.state();
    smaller["routes"] = json!([]);
    let f = write_doc(&dir, "dry.json", &smaller);
    ctl.ok(&["apply", "-f", &f, "--dry-run"]);
    assert_eq!(ctl.generation(), gen.get());

    // Trace and stats answer on the full state.
    let s = ctl.json(&["stats", "--json"]);
    assert_eq!(s["generation"], gen.get(), "{s}");
    assert!(s["mbufs_in_use"].as_u64().is_some(), "{s}");
    assert_eq!(s["ports"].as_array().unwrap().len(), 5, "{s}");
    assert!(s["drops"]["unknown_destination"].as_u64().is_some(), "{s}");

    // Everything deleted again, in dependency order.
    w(&["route", "del", "--tenant", "t1", "10.50.0.0/16"]);
    w(&["route", "del", "--tenant", "t1", "10.99.0.0/16"]);
    w(&[
        "remote",
        "del",
        "--network",
        "blue",
        "--mac",
        "02:00:00:00:0f:01",
    ]);
    w(&["underlay", "clear"]);
    assert_eq!(ctl.json(&["underlay", "show", "--json"]), Value::Null);
    w(&[
        "endpoint",
        "del",
        "--network",
        "blue",
        "--mac",
        "02:00:00:00:0e:01",
    ]);
    w(&[
        "endpoint",
        "del",
        "--network",
        "red",
        "--mac",
        "02:00:00:00:0e:02",
    ]);
    w(&["net", "del", "blue"]);
    w(&["net", "del", "red"]);
    let mut doc = ctl.state();
    doc["patches"] = json!([]);
    doc["l2"] = json!([]);
    let f = write_doc(&dir, "unpatch.json", &doc);
    ctl.ok(&["apply", "-f", &f]);
    gen.set(gen.get() + 1);
    for p in ["r1", "r2", "up", "nul2"] {
        w(&["port", "del", p]);
    }
    assert_eq!(ctl.content(), initial, "back to the initial state");
    assert_eq!(ctl.generation(), gen.get());
    let ports = ctl.json(&["port", "list", "--json"]);
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");

    // Exit codes: 2 for usage, 3 for no socket.
    let out = ctl.cmd(&["trace", "--in-port", "sink", "--packet", "eth(src=nope)"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = Command::new(workspace_bin("vswitchctl"))
        .args([
            "--socket",
            dir.join("nothere.sock").to_str().unwrap(),
            "show",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = ctl.cmd(&["port", "add", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    v.stop();
}

// ------------------------------------------------------------------ 2. bad inputs

#[test]
fn control_bad_writes_refused_whole_traffic_unaffected() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let (pod1, pod2) = two_pods(&tag, "10.77.0.1/24", "10.77.0.2/24");
    let body = format!(
        "{ports}[[port]]\nname = \"spare\"\nprofile = \"null\"\n{l2}\
         [[network]]\nname = \"blue\"\nvni = 100\nsubnets = [\"10.1.0.0/24\"]\n\
         gateway_ips = [\"10.1.0.1\"]\ngateway_mac = \"{GW_MAC}\"\n\
         [[endpoint]]\nnetwork = \"blue\"\nmac = \"02:00:00:00:0e:01\"\nips = [\"10.1.0.2\"]\nport = \"spare\"\n\
         [[route]]\nprefix = \"10.60.0.0/16\"\nblackhole = true\n",
        ports = pod_ports(&pod1, &pod2),
        l2 = pod_l2(),
    );
    let mut v = Vswitchd::start(&dir, &config(&dir, &body));
    let ctl = Ctl::new(&dir);
    ctl.wait_ready();
    // One good write so the state file exists and can be compared byte for byte.
    ctl.write(&["port", "add", "extra", "--profile", "null"]);
    let gen = ctl.generation();
    let state = ctl.state();
    let state_file = dir.join("state.json");
    let file_before = std::fs::read(&state_file).expect("state file");

    // Documents for apply -f that the server must refuse.
    let mut ghost = state.clone();
    ghost["endpoints"]
        .as_array_mut()
        .unwrap()
        .push(json!({"network": "blue", "mac": "02:00:00:00:0e:09", "ips": ["10.1.0.9"], "port": "ghost"}));
    let ghost = write_doc(&dir, "ghost.json", &ghost);
    let mut l2bad = state.clone();
    l2bad["l2"]
        .as_array_mut()
        .unwrap()
        .push(json!({"mac": "02:00:00:00:0d:01", "port": "nowhere"}));
    let l2bad = write_doc(&dir, "l2bad.json", &l2bad);
    let mut patchbad = state.clone();
    patchbad["patches"] = json!([{"from": "extra", "to": "nowhere"}]);
    let patchbad = write_doc(&dir, "patchbad.json", &patchbad);
    let mut dupport = state.clone();
    // A second pod1 that differs from the first (an identical duplicate is
    // collapsed by vswitchctl's diff into "no changes", see the report).
    let mut p0 = dupport["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pod1")
        .unwrap()
        .clone();
    p0["group"] = json!("other");
    dupport["ports"].as_array_mut().unwrap().push(p0);
    let dupport = write_doc(&dir, "dupport.json", &dupport);

    let stale = (gen - 1).to_string();
    let gw = ["--gateway-mac", GW_MAC];
    let net = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["net", "add", "green"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let s = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    let g2 = |v: &[&'static str]| {
        let mut a = net(v);
        a.extend(gw.iter().map(|s| s.to_string()));
        a
    };
    // (arguments, what the one line of stderr must name)
    let cases: Vec<(Vec<String>, &str)> = vec![
        // networks
        (
            net(&[
                "--vni",
                "5",
                "--subnet",
                "10.2.0.0/24",
                "--gateway-ip",
                "10.2.0.1",
                "--gateway-mac",
                "02:00:00:00:aa",
            ]),
            "gateway_mac",
        ),
        (
            net(&[
                "--vni",
                "5",
                "--subnet",
                "10.2.0.0/24",
                "--gateway-ip",
                "10.2.0.1",
                "--gateway-mac",
                "02:00:00:00:aa:zz",
            ]),
            "gateway_mac",
        ),
        (
            g2(&[
                "--vni",
                "5",
                "--subnet",
                "10.2.0.0/33",
                "--gateway-ip",
                "10.2.0.1",
            ]),
            "subnets",
        ),
        (
            g2(&[
                "--vni",
                "5",
                "--subnet",
                "10.2.0.0",
                "--gateway-ip",
                "10.2.0.1",
            ]),
            "subnets",
        ),
        (
            g2(&[
                "--vni",
                "16777216",
                "--subnet",
                "10.2.0.0/24",
                "--gateway-ip",
                "10.2.0.1",
            ]),
            "vni",
        ),
        (
            g2(&[
                "--vni",
                "100",
                "--subnet",
                "10.2.0.0/24",
                "--gateway-ip",
                "10.2.0.1",
            ]),
            "VNI 100",
        ),
        (
            s(&[
                "net",
                "add",
                "blue",
                "--vni",
                "7",
                "--subnet",
                "10.3.0.0/24",
                "--gateway-ip",
                "10.3.0.1",
                "--gateway-mac",
                GW_MAC,
            ]),
            "add_network \"blue\"",
        ),
        (
            g2(&[
                "--vni",
                "5",
                "--subnet",
                "10.2.0.0/24",
                "--gateway-ip",
                "10.3.0.1",
            ]),
            "10.3.0.1",
        ),
        (
            g2(&[
                "--vni",
                "5",
                "--subnet",
                "10.1.0.0/24",
                "--gateway-ip",
                "10.1.0.1",
            ]),
            "overlaps",
        ),
        (
            net(&[
                "--vni",
                "5",
                "--subnet",
                "10.2.0.0/24",
                "--gateway-ip",
                "10.2.0.1",
                "--gateway-mac",
                "01:00:00:00:aa:01",
            ]),
            "multicast",
        ),
        (
            g2(&[
                "--vni",
                "5",
                "--subnet",
                "10.2.0.0/24",
                "--gateway-ip",
                "10.2.0.1",
                "--vtep",
                "300.1.1.1",
            ]),
            "vteps",
        ),
        (
            g2(&[
                "--vni",
                "5",
                "--subnet",
                "10.2.0.0/24",
                "--gateway-ip",
                "10.2.0.1",
                "--vtep",
                "192.0.2.9",
            ]),
            "underlay",
        ),
        (s(&["net", "del", "nonet"]), "nonet"),
        (s(&["net", "del", "blue"]), "blue"),
        // endpoints
        (
            s(&[
                "endpoint",
                "add",
                "--network",
                "green",
                "--mac",
                "02:00:00:00:0e:05",
                "--ip",
                "10.1.0.5",
                "--port",
                "spare",
            ]),
            "green",
        ),
        (
            s(&[
                "endpoint",
                "add",
                "--network",
                "blue",
                "--mac",
                "02:00:00:00:0e:05",
                "--ip",
                "10.9.0.5",
                "--port",
                "spare",
            ]),
            "10.9.0.5",
        ),
        (
            s(&[
                "endpoint",
                "add",
                "--network",
                "blue",
                "--mac",
                "02:00:00:00:0e:05",
                "--ip",
                "10.1.0.5",
                "--port",
                "nope",
            ]),
            "nope",
        ),
        (
            s(&[
                "endpoint",
                "add",
                "--network",
                "blue",
                "--mac",
                "zz:00:00:00:0e:05",
                "--ip",
                "10.1.0.5",
                "--port",
                "spare",
            ]),
            "mac",
        ),
        (
            s(&[
                "endpoint",
                "add",
                "--network",
                "blue",
                "--mac",
                "02:00:00:00:0e:01",
                "--ip",
                "10.1.0.6",
                "--port",
                "spare",
            ]),
            "02:00:00:00:0e:01",
        ),
        (
            s(&[
                "endpoint",
                "add",
                "--network",
                "blue",
                "--mac",
                "02:00:00:00:0e:05",
                "--ip",
                "10.1.0.2",
                "--port",
                "spare",
            ]),
            "10.1.0.2",
        ),
        (
            s(&[
                "endpoint",
                "add",
                "--network",
                "blue",
                "--mac",
                "02:00:00:00:0e:05",
                "--ip",
                "10.1.0.1",
                "--port",
                "spare",
            ]),
            "gateway",
        ),
        (
            s(&[
                "endpoint",
                "add",
                "--network",
                "blue",
                "--mac",
                "02:00:00:00:0e:05",
                "--ip",
                "10.1.0.300",
                "--port",
                "spare",
            ]),
            "ips",
        ),
        (
            s(&[
                "endpoint",
                "add",
                "--network",
                "blue",
                "--mac",
                "ff:ff:ff:ff:ff:ff",
                "--ip",
                "10.1.0.5",
                "--port",
                "spare",
            ]),
            "ff:ff:ff:ff:ff:ff",
        ),
        (
            s(&[
                "endpoint",
                "del",
                "--network",
                "blue",
                "--mac",
                "02:00:00:00:09:09",
            ]),
            "02:00:00:00:09:09",
        ),
        // remote endpoints
        (
            s(&[
                "remote",
                "add",
                "--network",
                "blue",
                "--mac",
                "02:00:00:00:0f:01",
                "--ip",
                "10.1.0.3",
                "--vtep",
                "192.0.2.2",
            ]),
            "underlay",
        ),
        (
            s(&[
                "remote",
                "del",
                "--network",
                "blue",
                "--mac",
                "02:00:00:00:0f:01",
            ]),
            "02:00:00:00:0f:01",
        ),
        // routes
        (
            s(&[
                "route",
                "add",
                "10.50.0.0/16",
                "--via-network",
                "green",
                "--via",
                "10.1.0.2",
            ]),
            "green",
        ),
        (
            s(&[
                "route",
                "add",
                "10.50.0.0/16",
                "--via-network",
                "blue",
                "--via",
                "10.1.0.99",
            ]),
            "10.1.0.99",
        ),
        (
            s(&["route", "add", "10.50.0.0/40", "--blackhole"]),
            "prefix",
        ),
        (
            s(&["route", "add", "10.60.0.0/16", "--blackhole"]),
            "10.60.0.0/16",
        ),
        (s(&["route", "del", "10.61.0.0/16"]), "10.61.0.0/16"),
        (
            s(&[
                "route",
                "add",
                "--tenant",
                "nosuch",
                "10.52.0.0/16",
                "--blackhole",
            ]),
            "nosuch",
        ),
        // underlay
        (
            s(&[
                "underlay",
                "set",
                "--uplink",
                "nope",
                "--local-ip",
                "192.0.2.1",
                "--local-mac",
                "02:00:00:00:ff:01",
                "--on-link",
                "192.0.2.0/24",
            ]),
            "uplink",
        ),
        (
            s(&[
                "underlay",
                "set",
                "--uplink",
                "extra",
                "--local-ip",
                "192.0.2",
                "--local-mac",
                "02:00:00:00:ff:01",
                "--on-link",
                "192.0.2.0/24",
            ]),
            "local_vtep_ip",
        ),
        (
            s(&[
                "underlay",
                "set",
                "--uplink",
                "extra",
                "--local-ip",
                "192.0.2.1",
                "--local-mac",
                "02:00:00:00:ff",
                "--on-link",
                "192.0.2.0/24",
            ]),
            "local_mac",
        ),
        (
            s(&[
                "underlay",
                "set",
                "--uplink",
                "extra",
                "--local-ip",
                "192.0.2.1",
                "--local-mac",
                "02:00:00:00:ff:01",
                "--on-link",
                "192.0.2.0/24",
                "--mtu",
                "10",
            ]),
            "MTU",
        ),
        (
            s(&[
                "underlay",
                "set",
                "--uplink",
                "extra",
                "--local-ip",
                "192.0.2.1",
                "--local-mac",
                "02:00:00:00:ff:01",
                "--on-link",
                "192.0.2.0/24",
                "--neighbor",
                "192.0.2.2=xx",
            ]),
            "neighbors",
        ),
        (
            s(&[
                "underlay",
                "set",
                "--uplink",
                "extra",
                "--local-ip",
                "192.0.2.1",
                "--local-mac",
                "02:00:00:00:ff:01",
                "--on-link",
                "192.0.2.0/24",
                "--gateway",
                "10.9.9.9",
            ]),
            "10.9.9.9",
        ),
        (
            s(&[
                "underlay",
                "set",
                "--uplink",
                "spare",
                "--local-ip",
                "192.0.2.1",
                "--local-mac",
                "02:00:00:00:ff:01",
                "--on-link",
                "192.0.2.0/24",
            ]),
            "spare",
        ),
        (s(&["underlay", "clear"]), "underlay"),
        // ports
        (s(&["port", "add", "pod1", "--profile", "null"]), "pod1"),
        (s(&["port", "add", "p5", "--profile", "bogus"]), "profile"),
        (s(&["port", "add", "p5", "--profile", "af_packet"]), "iface"),
        (
            s(&[
                "port",
                "add",
                "p5",
                "--profile",
                "af_packet",
                "--param",
                "iface=doesnotexist0",
            ]),
            "doesnotexist0",
        ),
        (s(&["port", "add", "p5", "--profile", "tap"]), "iface"),
        (
            s(&[
                "port",
                "add",
                "p5",
                "--profile",
                "null",
                "--param",
                "bogus=1",
            ]),
            "bogus",
        ),
        (
            s(&["port", "add", "p5", "--profile", "null", "--mtu", "20"]),
            "p5",
        ),
        (s(&["port", "del", "nope"]), "nope"),
        (s(&["port", "del", "spare"]), "spare"),
        (s(&["port", "del", "pod1"]), "pod1"),
        // compare-and-set with a stale generation
        (
            s(&[
                "--expected-generation",
                &stale,
                "port",
                "add",
                "p6",
                "--profile",
                "null",
            ]),
            "generation",
        ),
        // apply -f documents the server refuses
        (s(&["apply", "-f", &ghost]), "ghost"),
        (s(&["apply", "-f", &l2bad]), "nowhere"),
        (s(&["apply", "-f", &patchbad]), "nowhere"),
        (s(&["apply", "-f", &dupport]), "pod1"),
    ];
    assert!(cases.len() >= 30);

    let stream = Stream::start(&dir, &v, &pod1, &pod2, "10.77.0.2", 1000);
    let t0 = Instant::now();
    let mut failures = Vec::new();
    for (args, needle) in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ctl.cmd(&a);
        let err = text(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut problems = Vec::new();
        if out.status.code() != Some(1) {
            problems.push(format!(
                "exit {:?} (stdout {:?})",
                out.status.code(),
                text(&out.stdout)
            ));
        }
        if lines.len() != 1 {
            problems.push(format!("{} lines on stderr", lines.len()));
        }
        if !err.contains(needle) {
            problems.push(format!("stderr does not name {needle:?}"));
        }
        let g = ctl.generation();
        if g != gen {
            problems.push(format!("generation {gen} -> {g}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{a:?}: {}; stderr: {}",
                problems.join(", "),
                err.trim()
            ));
        }
        assert_alive(&mut v, &format!("after {a:?}"));
    }
    let elapsed = t0.elapsed();
    assert_eq!(ctl.state(), state, "the desired state changed");
    assert_eq!(
        std::fs::read(&state_file).unwrap(),
        file_before,
        "the state file changed"
    );
    // A usage error (client-side) is exit 2 and changes nothing either.
    let bad_doc = dir.join("bad.json");
    std::fs::write(&bad_doc, r#"{"ports": [{"name": "x", "colour": "red"}]}"#).unwrap();
    let out = ctl.cmd(&["apply", "-f", bad_doc.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Forwarding still works and the stream lost nothing.
    let r = stream.finish(1000);
    eprintln!(
        "{} invalid writes in {:.1} s; stream: {}",
        cases.len(),
        elapsed.as_secs_f64(),
        r.raw
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_no_loss(&r, 1000);
    // And a good write still goes through afterwards.
    let (g, _) = ctl.write(&["port", "del", "extra"]);
    assert_eq!(g, gen + 1);
    let stats = v.stop();
    for p in ["pod1", "pod2"] {
        assert_eq!(counter(port_stats(&stats, p), "dropped"), 0, "{stats}");
    }
}

// ------------------------------------------------------------------ 3. hot plug

#[test]
fn control_ports_added_and_removed_under_traffic() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let (pod1, pod2) = two_pods(&tag, "10.77.0.1/24", "10.77.0.2/24");
    let spare = VethPod::new(&tag, 3, "02:00:00:00:03:01", "10.77.0.3/24");
    let tap = format!("{tag}t");
    let body = format!("{}{}", pod_ports(&pod1, &pod2), pod_l2());
    let mut v = Vswitchd::start(&dir, &config(&dir, &body));
    let ctl = Ctl::new(&dir);
    ctl.wait_ready();
    let af = format!("iface={}", spare.host_if);
    let tapp = format!("iface={tap}");
    let af_add = [
        "port",
        "add",
        "third",
        "--profile",
        "af_packet",
        "--param",
        af.as_str(),
    ];
    let tap_add = [
        "port",
        "add",
        "third",
        "--profile",
        "tap",
        "--param",
        tapp.as_str(),
    ];
    let del = ["port", "del", "third"];
    // Warm-up: one cycle of each, then the baseline.
    for add in [&af_add, &tap_add] {
        ctl.write(add);
        ctl.write(&del);
    }
    let baseline = ctl.mbufs_in_use();
    let mut in_tap = 0;
    const CYCLES: usize = 100;
    let mut times = Vec::new();
    let mut streams = Vec::new();
    for (kind, add) in [("af_packet", &af_add), ("tap", &tap_add)] {
        // One stream per kind, so a loss or duplicate is attributed to it.
        let stream = Stream::start(&dir, &v, &pod1, &pod2, "10.77.0.2", 1000);
        let t0 = Instant::now();
        let mut slowest = Duration::ZERO;
        for i in 0..CYCLES {
            let t = Instant::now();
            ctl.write(add);
            if kind == "tap" && i == CYCLES / 2 {
                // The tap exists while the port does, and its rx ring holds mbufs.
                assert!(Path::new(&format!("/sys/class/net/{tap}")).exists());
                in_tap = ctl.json(&["stats", "--json"])["mbufs_in_use"]
                    .as_u64()
                    .unwrap();
            }
            ctl.write(&del);
            slowest = slowest.max(t.elapsed());
            if i % 10 == 0 {
                assert_alive(&mut v, &format!("after {kind} cycle {i}"));
            }
        }
        times.push((kind, t0.elapsed(), slowest));
        streams.push((kind, stream.finish(3000)));
    }
    assert!(
        !Path::new(&format!("/sys/class/net/{tap}")).exists(),
        "the tap outlived its port"
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = ctl.mbufs_in_use();
    let ports = ctl.json(&["port", "list", "--json"]);
    let names: Vec<&str> = ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pod1", "pod2"], "{ports}");
    let gen = ctl.generation();
    for (kind, total, slowest) in &times {
        eprintln!(
            "{CYCLES} {kind} add+del cycles in {:.2} s ({:.1} ms/cycle, slowest {} ms)",
            total.as_secs_f64(),
            total.as_secs_f64() * 1000.0 / CYCLES as f64,
            slowest.as_millis()
        );
    }
    eprintln!("mbufs in use: baseline {baseline}, with a tap port {in_tap}, after the cycles {after}; generation {gen}");
    for (kind, r) in &streams {
        eprintln!("stream during the {kind} cycles: {}", r.raw);
    }
    assert_eq!(gen, 1 + 4 + 4 * CYCLES as u64);
    // Whether the switch itself sent a datagram twice: its pod2 tx vs pod1 rx.
    std::thread::sleep(Duration::from_millis(300));
    let sw = read_json(&v.stats_file);
    let (rx1, tx2) = (
        counter(port_stats(&sw, "pod1"), "rx_packets"),
        counter(port_stats(&sw, "pod2"), "tx_packets"),
    );
    let pod2_rx = pod2.ns.if_stat("eth0", "rx_packets");
    let pod1_tx = pod1.ns.if_stat("eth0", "tx_packets");
    eprintln!("pod1 eth0 tx {pod1_tx}, switch pod1 rx {rx1}, switch pod2 tx {tx2}, pod2 eth0 rx {pod2_rx}");

    // Everything pod1 sent reached pod2 once. Beyond that, pod2 only got what was
    // flooded from the third port's link while it existed (its peer's broadcasts),
    // and a flood reaches pod1 just the same: so pod2's extra frames must equal
    // what the switch sent pod1 beyond pod2's replies. A frame of pod1's stream sent
    // twice (the af_packet bind race: see `drain` in vswitchd's ports.rs) would
    // break the equality.
    let (tx1, rx2) = (
        counter(port_stats(&sw, "pod1"), "tx_packets"),
        counter(port_stats(&sw, "pod2"), "rx_packets"),
    );
    assert!(tx2 >= rx1, "pod2 got less than pod1 sent: {tx2} < {rx1}");
    assert_eq!(
        tx2 - rx1,
        tx1 - rx2.min(tx1),
        "pod2 got frames that were not floods reaching pod1 too (a duplicate of pod1's stream)"
    );
    for (_, r) in &streams {
        assert_no_loss(r, 3000);
    }
    // The only mbufs a worker holds outside a ring between two polls are one rx
    // burst (32) on its way out; everything a port's rings held was returned when
    // the port was closed. So after == baseline, give or take one burst in flight.
    assert!(
        after <= baseline + 32,
        "mbufs in use grew from {baseline} to {after} over {} port cycles: a leak",
        2 * CYCLES
    );
    let stats = v.stop();
    for p in ["pod1", "pod2"] {
        let port = port_stats(&stats, p);
        assert_eq!(counter(port, "dropped"), 0, "{stats}");
        for c in ["imissed", "ierrors", "oerrors", "rx_nombuf"] {
            assert_eq!(counter(&port["dpdk"], c), 0, "{p} {c}: {stats}");
        }
    }
}

// ------------------------------------------------------------------ 4. restart

#[test]
fn control_state_survives_kill_9_and_corrupt_file_refused() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let (pod1, pod2) = two_pods(&tag, "10.77.0.1/24", "10.77.0.2/24");
    let body = format!("{}{}", pod_ports(&pod1, &pod2), pod_l2());
    let cfg = config(&dir, &body);
    let mut v = Vswitchd::start(&dir, &cfg);
    let ctl = Ctl::new(&dir);
    ctl.wait_ready();
    ping(&pod1, "10.77.0.2");
    ctl.write(&["port", "add", "extra", "--profile", "null"]);
    ctl.write(&[
        "net",
        "add",
        "blue",
        "--vni",
        "100",
        "--subnet",
        "10.1.0.0/24",
        "--gateway-ip",
        "10.1.0.1",
        "--gateway-mac",
        GW_MAC,
    ]);
    ctl.write(&[
        "endpoint",
        "add",
        "--network",
        "blue",
        "--mac",
        "02:00:00:00:0e:01",
        "--ip",
        "10.1.0.2",
        "--port",
        "extra",
    ]);
    ctl.write(&["route", "add", "10.99.0.0/16", "--blackhole"]);
    let before = ctl.state();
    let gen = ctl.generation();
    assert_eq!(gen, 5);
    // The endpoint and the route were deltas: journal lines, replayed at start.
    let journal = std::fs::read_to_string(dir.join("state.json.journal")).unwrap();
    assert!(
        journal.contains("\"add_endpoint\"") && journal.contains("\"add_route\""),
        "{journal}"
    );

    let pid = v.child.pid();
    run("kill", &["-KILL", &pid.to_string()]);
    let out = v
        .child
        .wait_timeout(Duration::from_secs(10))
        .expect("vswitchd survived SIGKILL");
    assert!(!out.status.success());
    drop(v);
    // Start again on the same config; the old stats file would fool `start`.
    std::fs::remove_file(dir.join("stats.json")).unwrap();
    let t0 = Instant::now();
    let v = Vswitchd::start(&dir, &cfg);
    ctl.wait_ready();
    let restart = t0.elapsed();
    assert_eq!(ctl.generation(), gen, "generation after restart");
    assert_eq!(ctl.state(), before, "state after restart");
    let ports = ctl.json(&["port", "list", "--json"]);
    assert_eq!(ports.as_array().unwrap().len(), 3, "{ports}");
    ping(&pod1, "10.77.0.2");
    ping(&pod2, "10.77.0.1");
    // Writes continue from the restored generation.
    let (g, _) = ctl.write(&["route", "del", "10.99.0.0/16"]);
    assert_eq!(g, gen + 1);
    eprintln!(
        "restart after kill -9: API answering in {} ms",
        restart.as_millis()
    );
    v.stop();

    // A corrupt state file: the daemon refuses to start, says so in one line
    // naming the file, and leaves the file as it was.
    let state_file = dir.join("state.json");
    let corrupt = b"{\"format\": 1, \"generation\": 3, \"state\": {\"port\": [tru".to_vec();
    std::fs::write(&state_file, &corrupt).unwrap();
    std::fs::remove_file(dir.join("stats.json")).unwrap();
    let child = Command::new(workspace_bin("vswitchd"))
        .arg("--config")
        .arg(dir.join("vswitchd.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(Some(child));
    let out = guard
        .wait_timeout(Duration::from_secs(20))
        .expect("vswitchd started on a corrupt state file");
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    eprintln!(
        "corrupt state file: exit {:?}: {}",
        out.status.code(),
        err.trim()
    );
    assert!(!out.status.success(), "exit {:?}", out.status);
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].contains(state_file.to_str().unwrap()), "{err}");
    assert_eq!(
        std::fs::read(&state_file).unwrap(),
        corrupt,
        "the state file was touched"
    );
    assert!(!dir.join("stats.json").exists(), "it did start forwarding");
}

// ------------------------------------------------------------------ 5. trace

#[test]
fn control_trace_forward_drop_and_arp() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let (pod1, pod2) = two_pods(&tag, "10.1.0.2/24", "10.1.0.3/24");
    let body = format!(
        "{ports}[[network]]\nname = \"blue\"\nvni = 100\nsubnets = [\"10.1.0.0/24\"]\n\
         gateway_ips = [\"10.1.0.1\"]\ngateway_mac = \"{GW_MAC}\"\n\
         [[endpoint]]\nnetwork = \"blue\"\nmac = \"{MAC1}\"\nips = [\"10.1.0.2\"]\nport = \"pod1\"\n\
         [[endpoint]]\nnetwork = \"blue\"\nmac = \"{MAC2}\"\nips = [\"10.1.0.3\"]\nport = \"pod2\"\n",
        ports = pod_ports(&pod1, &pod2)
    );
    let v = Vswitchd::start(&dir, &config(&dir, &body));
    let ctl = Ctl::new(&dir);
    ctl.wait_ready();
    ping(&pod1, "10.1.0.3");
    let gen = ctl.generation();
    let stage_names = |t: &Value| -> Vec<String> {
        t["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stage"].as_str().unwrap().to_owned())
            .collect()
    };
    let stage = |t: &Value, name: &str| -> String {
        t["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .map(|s| s["detail"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no stage {name}: {t}"))
    };
    let hex = |s: &str| -> String { s.replace(':', "") };

    // (a) forwarded to pod2, unchanged.
    let spec = format!(
        "eth(src={MAC1},dst={MAC2})/ipv4(src=10.1.0.2,dst=10.1.0.3)/udp(sport=1000,dport=2000)"
    );
    let t = ctl.json(&["trace", "--in-port", "pod1", "--packet", &spec, "--json"]);
    assert_eq!(stage_names(&t), ["parse", "ingress", "l2"], "{t}");
    assert!(stage(&t, "l2").contains("-> local port pod2"), "{t}");
    assert_eq!(t["verdict"], "output", "{t}");
    assert_eq!(t["out_port"], "pod2", "{t}");
    assert_eq!(t["drop_reason"], "", "{t}");
    assert_eq!(t["generation"], gen, "{t}");
    assert!(stage(&t, "parse").contains("10.1.0.2 > 10.1.0.3"), "{t}");
    assert!(stage(&t, "parse").contains("ports 1000 > 2000"), "{t}");
    assert!(stage(&t, "ingress").contains("\"blue\""), "{t}");
    assert!(stage(&t, "ingress").contains("VNI 100"), "{t}");
    let fa = t["frame_after"].as_str().unwrap();
    assert!(
        fa.starts_with(&format!("{}{}0800", hex(MAC2), hex(MAC1))),
        "{t}"
    );
    assert_eq!(fa.len(), 120, "60 bytes: {t}");
    let human = ctl.ok(&["trace", "--in-port", "pod1", "--packet", &spec]);
    assert!(human.contains("verdict: output pod2"), "{human}");

    // (b) dropped: an unknown destination MAC, and a runt.
    let spec = format!(
        "eth(src={MAC1},dst=02:00:00:00:09:99)/ipv4(src=10.1.0.2,dst=10.1.0.9)/udp(sport=1,dport=2)"
    );
    let t = ctl.json(&["trace", "--in-port", "pod1", "--packet", &spec, "--json"]);
    assert_eq!(stage_names(&t), ["parse", "ingress", "l2"], "{t}");
    assert!(
        stage(&t, "l2").contains("02:00:00:00:09:99 -> no entry"),
        "{t}"
    );
    assert_eq!(t["verdict"], "drop", "{t}");
    assert_eq!(t["drop_reason"], "unknown_destination", "{t}");
    assert_eq!(t["out_port"], "", "{t}");
    let t = ctl.json(&[
        "trace",
        "--in-port",
        "pod2",
        "--hex",
        "02000000010102000000",
        "--json",
    ]);
    assert_eq!(stage_names(&t), ["parse", "ingress"], "{t}");
    assert!(stage(&t, "parse").starts_with("malformed"), "{t}");
    assert_eq!(t["verdict"], "drop", "{t}");
    let reason = t["drop_reason"].as_str().unwrap();
    assert!(reason == "malformed" || reason == "runt_frame", "{t}");

    // (c) ARP for the gateway: answered back to pod1 by the switch.
    let spec = format!("arp(sha={MAC1},spa=10.1.0.2,tpa=10.1.0.1)");
    let t = ctl.json(&["trace", "--in-port", "pod1", "--packet", &spec, "--json"]);
    assert_eq!(
        stage_names(&t),
        ["parse", "ingress", "arp_responder", "rewrite"],
        "{t}"
    );
    assert!(
        stage(&t, "arp_responder").contains("who-has 10.1.0.1: answered"),
        "{t}"
    );
    assert!(stage(&t, "parse").contains("arp op 1"), "{t}");
    assert!(stage(&t, "rewrite").contains("arp op 2"), "{t}");
    assert_eq!(t["verdict"], "output", "{t}");
    assert_eq!(t["out_port"], "pod1", "{t}");
    let fa = t["frame_after"].as_str().unwrap();
    let reply = format!(
        "{dst}{gw}0806000108000604{op}{gw}{spa}{tha}{tpa}",
        dst = hex(MAC1),
        gw = hex(GW_MAC),
        op = "0002",
        spa = "0a010001",
        tha = hex(MAC1),
        tpa = "0a010002"
    );
    assert!(
        fa.starts_with(&reply),
        "ARP reply\n  got  {fa}\n  want {reply}..."
    );

    // An unknown in_port is refused with one line naming it.
    let out = ctl.cmd(&["trace", "--in-port", "nope", "--packet", &spec]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).trim().lines().count(), 1);
    assert!(
        text(&out.stderr).contains("\"nope\""),
        "{}",
        text(&out.stderr)
    );
    // Tracing sent nothing.
    let stats = v.stop();
    assert_eq!(counter(&stats, "generated"), counter(&stats, "generated"));
}

// ------------------------------------------------------------------ 6. figures

#[test]
fn control_write_latency_and_rate_figures() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let (pod1, pod2) = two_pods(&tag, "10.77.0.1/24", "10.77.0.2/24");
    let body = format!(
        "{}[[port]]\nname = \"sink\"\nprofile = \"null\"\n{}\
         [[network]]\nname = \"bulk\"\nvni = 300\nsubnets = [\"10.128.0.0/16\"]\n\
         gateway_ips = [\"10.128.0.1\"]\ngateway_mac = \"{GW_MAC}\"\n",
        pod_ports(&pod1, &pod2),
        pod_l2()
    );
    let v = Vswitchd::start(&dir, &config(&dir, &body));
    let ctl = Ctl::new(&dir);
    ctl.wait_ready();
    let stream = Stream::start(&dir, &v, &pod1, &pod2, "10.77.0.2", 1000);
    let ep_ip = |i: u32| format!("10.128.{}.{}", (i + 2) >> 8, (i + 2) & 255);
    let ep_mac = |i: u32| format!("02:10:00:00:{:02x}:{:02x}", i >> 8, i & 255);

    // One endpoint add.
    let t = Instant::now();
    let (_, one_us) = ctl.write(&[
        "endpoint",
        "add",
        "--network",
        "bulk",
        "--mac",
        &ep_mac(60000),
        "--ip",
        "10.128.250.250",
        "--port",
        "sink",
    ]);
    let one_wall = t.elapsed();
    ctl.write(&[
        "endpoint",
        "del",
        "--network",
        "bulk",
        "--mac",
        &ep_mac(60000),
    ]);

    // 10k endpoints in one apply -f, and back.
    let base = ctl.state();
    let mut big = base.clone();
    big["endpoints"] = Value::Array(
        (0..10_000)
            .map(
                |i| json!({"network": "bulk", "mac": ep_mac(i), "ips": [ep_ip(i)], "port": "sink"}),
            )
            .collect(),
    );
    let f = write_doc(&dir, "10k.json", &big);
    let t = Instant::now();
    let out = ctl.ok(&["apply", "-f", &f]);
    let big_wall = t.elapsed();
    let (_, big_us) = parse_published(&out).unwrap_or_else(|| panic!("{out}"));
    let show = ctl.json(&["show", "--json"]);
    assert_eq!(show["counts"]["endpoints"], 10_000, "{show}");
    let t = Instant::now();
    let (_, one_of_10k_us) = ctl.write(&[
        "endpoint",
        "add",
        "--network",
        "bulk",
        "--mac",
        &ep_mac(60000),
        "--ip",
        "10.128.250.250",
        "--port",
        "sink",
    ]);
    let one_of_10k_wall = t.elapsed();
    let f = write_doc(&dir, "base.json", &base);
    let t = Instant::now();
    // base.json was exported two writes ago: --force replaces the state anyway.
    let out = ctl.ok(&["apply", "-f", &f, "--force"]);
    let back_wall = t.elapsed();
    let (_, back_us) = parse_published(&out).unwrap_or_else(|| panic!("{out}"));
    let mut base = base;
    base.as_object_mut().unwrap().remove("generation");
    assert_eq!(ctl.content(), base);

    // Sustained writes: 200 endpoint adds then 200 deletes, one CLI call each.
    const N: u32 = 200;
    let mut pub_us = Vec::new();
    let t = Instant::now();
    for i in 0..N {
        let (_, us) = ctl.write(&[
            "endpoint",
            "add",
            "--network",
            "bulk",
            "--mac",
            &ep_mac(i),
            "--ip",
            &ep_ip(i),
            "--port",
            "sink",
        ]);
        pub_us.push(us);
    }
    for i in 0..N {
        let (_, us) = ctl.write(&["endpoint", "del", "--network", "bulk", "--mac", &ep_mac(i)]);
        pub_us.push(us);
    }
    let rate_wall = t.elapsed();
    pub_us.sort_unstable();
    let r = stream.finish(1000);
    let stats = v.stop();

    eprintln!("FIGURES (no thresholds):");
    eprintln!(
        "  one endpoint add: published in {one_us} us (vswitchctl wall {} ms)",
        one_wall.as_millis()
    );
    eprintln!(
        "  apply -f with 10k endpoints: published in {big_us} us (vswitchctl wall {} ms)",
        big_wall.as_millis()
    );
    eprintln!(
        "  one endpoint add on top of 10k: published in {one_of_10k_us} us (wall {} ms)",
        one_of_10k_wall.as_millis()
    );
    eprintln!(
        "  apply -f back to 0 endpoints: published in {back_us} us (wall {} ms)",
        back_wall.as_millis()
    );
    eprintln!(
        "  {} endpoint writes (add+del) in {:.2} s: {:.0} writes/s; publish_us p50 {} p99 {} max {}",
        2 * N,
        rate_wall.as_secs_f64(),
        f64::from(2 * N) / rate_wall.as_secs_f64(),
        pub_us[pub_us.len() / 2],
        pub_us[pub_us.len() * 99 / 100],
        pub_us[pub_us.len() - 1]
    );
    eprintln!("  stream during all of it: {}", r.raw);
    assert_no_loss(&r, 1000);
    for p in ["pod1", "pod2"] {
        assert_eq!(counter(port_stats(&stats, p), "dropped"), 0, "{stats}");
    }
}
