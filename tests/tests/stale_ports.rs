//! A port in the state file whose device is gone at start (issue #27's node
//! reboot: a pod's veth deleted while the switch was down).
//!
//! - the switch starts anyway: the other pods' ports forward, the missing one
//!   stays in the desired state and is listed as not plugged, with the reason
//!   (`port list`, table and JSON; a WARN line in the log);
//! - its L2 entry stays in the state; a whole-state write that keeps the port
//!   succeeds (and plugs it once the interface is back); `port del` of it
//!   succeeds, and `port add` of the same name once the interface is back
//!   plugs and forwards;
//! - it is in the stats file (`plugged: false`, the reason) and the metrics
//!   (`vswitch_port_plugged 0`), and when its interface comes back the switch
//!   plugs it by itself, without a write (a retry with backoff), logged once;
//! - a port of the configuration file with a missing interface still stops
//!   the start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::*;

const MACS: [&str; 3] = [
    "02:00:00:00:51:01",
    "02:00:00:00:51:02",
    "02:00:00:00:51:03",
];

fn ip_of(i: usize) -> String {
    format!("10.78.0.{}", i + 1)
}

fn pod(tag: &str, i: usize) -> VethPod {
    VethPod::new(tag, i as u32 + 1, MACS[i], &format!("{}/24", ip_of(i)))
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

fn json_of(socket: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&vswitchctl_ok(socket, args)).expect("JSON from vswitchctl")
}

fn port_add(socket: &Path, name: &str, iface: &str) {
    vswitchctl_ok(
        socket,
        &[
            "port",
            "add",
            name,
            "--profile",
            "af_packet",
            "--param",
            &format!("iface={iface}"),
        ],
    );
}

/// Replaces the L2 table through `apply -f` (the whole-state path).
fn set_l2(dir: &TempDir, socket: &Path, l2: Value) {
    let mut doc = json_of(socket, &["get", "-o", "json"]);
    doc["l2"] = l2;
    let f = dir.join("l2.json");
    std::fs::write(&f, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    vswitchctl_ok(socket, &["apply", "-f", f.to_str().unwrap()]);
}

#[test]
fn a_state_file_port_whose_interface_is_gone_starts_not_plugged() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let sock = dir.join("ctl.sock");
    let cfg = control_config(&dir, &[worker_core()], &allowed_dirs(&dir));
    let pods: Vec<VethPod> = (0..3).map(|i| pod(&tag, i)).collect();

    let v = Vswitchd::start(&dir, &cfg);
    wait_for_api(&sock);
    let names = ["pod1", "pod2", "pod3"];
    for (name, p) in names.iter().zip(&pods) {
        port_add(&sock, name, &p.host_if);
    }
    let l2 = json!([
        {"mac": MACS[0], "port": "pod1"},
        {"mac": MACS[1], "port": "pod2"},
        {"mac": MACS[2], "port": "pod3"},
    ]);
    set_l2(&dir, &sock, l2.clone());
    ping(&pods[0], &ip_of(1));
    ping(&pods[0], &ip_of(2));
    v.stop();

    // pod2's interface goes while the switch is down.
    let mut pods = pods.into_iter();
    let (pod1, pod2, pod3) = (
        pods.next().unwrap(),
        pods.next().unwrap(),
        pods.next().unwrap(),
    );
    let pod2_if = pod2.host_if.clone();
    drop(pod2);

    let v = Vswitchd::start(&dir, &cfg);
    wait_for_api(&sock);
    ping(&pod1, &ip_of(2));
    ping(&pod3, &ip_of(0));

    let ports = json_of(&sock, &["port", "list", "--json"]);
    let find = |ports: &Value, n: &str| -> Value {
        ports
            .as_array()
            .expect("a list")
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no port {n} in {ports}"))
    };
    let missing = find(&ports, "pod2");
    let why = missing["not_plugged"].as_str().unwrap_or_default();
    assert!(
        why.contains(&pod2_if) && why.contains("does not exist"),
        "{missing}"
    );
    assert_eq!(missing["link_up"], false, "{missing}");
    for n in ["pod1", "pod3"] {
        assert_eq!(find(&ports, n)["not_plugged"], "", "{ports}");
    }
    let table = vswitchctl_ok(&sock, &["port", "list"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("pod2"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("not plugged"), "{table}");
    let log = v.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("pod2") && l.contains("not plugged")),
        "{log}"
    );

    // The state is as the writes left it: nothing was rewritten at start.
    let state = json_of(&sock, &["get", "-o", "json"]);
    assert_eq!(state["l2"], l2, "{state}");
    assert_eq!(state["ports"].as_array().map(Vec::len), Some(3), "{state}");

    // A whole-state write that keeps the port (it stays not plugged), then the
    // CNI DEL sequence: its L2 entry, then the port.
    set_l2(&dir, &sock, json!([l2[0].clone(), l2[2].clone()]));
    ping(&pod1, &ip_of(2));
    let ports = json_of(&sock, &["port", "list", "--json"]);
    assert!(
        !find(&ports, "pod2")["not_plugged"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{ports}"
    );
    vswitchctl_ok(&sock, &["port", "del", "pod2"]);
    let ports = json_of(&sock, &["port", "list", "--json"]);
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "pod2"),
        "{ports}"
    );
    ping(&pod1, &ip_of(2));

    // The interface is back (a new pod with the same name): the port plugs.
    let pod2 = pod(&tag, 1);
    port_add(&sock, "pod2", &pod2.host_if);
    ping(&pod1, &ip_of(1));
    ping(&pod2, &ip_of(2));
    let ports = json_of(&sock, &["port", "list", "--json"]);
    assert_eq!(find(&ports, "pod2")["not_plugged"], "", "{ports}");
    v.stop();

    // Gone again at the next start; back before a whole-state write that
    // keeps the port as it is: that write plugs it.
    let pod2_if = pod2.host_if.clone();
    drop(pod2);
    let v = Vswitchd::start(&dir, &cfg);
    wait_for_api(&sock);
    let ports = json_of(&sock, &["port", "list", "--json"]);
    let why = find(&ports, "pod2")["not_plugged"].clone();
    assert!(
        why.as_str().is_some_and(|w| w.contains(&pod2_if)),
        "{ports}"
    );
    let pod2 = pod(&tag, 1);
    set_l2(&dir, &sock, l2.clone());
    let ports = json_of(&sock, &["port", "list", "--json"]);
    assert_eq!(find(&ports, "pod2")["not_plugged"], "", "{ports}");
    ping(&pod1, &ip_of(1));
    ping(&pod2, &ip_of(2));
    v.stop();
}

/// The metrics page at `addr`.
fn metrics_page(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// The stats file's line of port `name`, once the file has one.
fn stats_port(dir: &TempDir, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let doc: Value = std::fs::read_to_string(dir.join("stats.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let found = doc["ports"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name).cloned());
        match found {
            Some(p) => return p,
            None if Instant::now() > deadline => panic!("no port {name} in the stats file: {doc}"),
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn a_port_not_plugged_is_shown_and_plugs_when_its_interface_is_back() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let sock = dir.join("ctl.sock");
    let body = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n",
        allowed_dirs(&dir)
    );
    let cfg = control_config(&dir, &[worker_core()], &body);
    let pod1 = pod(&tag, 0);
    let pod2 = pod(&tag, 1);
    let v = Vswitchd::start(&dir, &cfg);
    wait_for_api(&sock);
    port_add(&sock, "pod1", &pod1.host_if);
    port_add(&sock, "pod2", &pod2.host_if);
    set_l2(
        &dir,
        &sock,
        json!([{"mac": MACS[0], "port": "pod1"}, {"mac": MACS[1], "port": "pod2"}]),
    );
    ping(&pod1, &ip_of(1));
    v.stop();
    let pod2_if = pod2.host_if.clone();
    drop(pod2);

    let v = Vswitchd::start(&dir, &cfg);
    wait_for_api(&sock);
    // The endpoint's port is the kernel's choice, logged once it listens.
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr: SocketAddr = loop {
        let log = v.log_text();
        let found = log
            .lines()
            .find(|l| l.contains("metrics endpoint listening"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|a| a.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        match found {
            Some(a) => break a,
            None if Instant::now() > deadline => panic!("no metrics address in the log:\n{log}"),
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let gone = stats_port(&dir, "pod2");
    assert_eq!(gone["plugged"], false, "{gone}");
    assert!(
        gone["not_plugged"]
            .as_str()
            .is_some_and(|w| w.contains(&pod2_if)),
        "{gone}"
    );
    assert_eq!(gone["rx_packets"], 0, "{gone}");
    let up = stats_port(&dir, "pod1");
    assert_eq!(up["plugged"], true, "{up}");
    assert!(up.get("not_plugged").is_none(), "{up}");
    let page = metrics_page(addr);
    assert!(
        page.contains("vswitch_port_plugged{port=\"pod2\"} 0\n"),
        "{page}"
    );
    assert!(
        page.contains("vswitch_port_plugged{port=\"pod1\"} 1\n"),
        "{page}"
    );
    assert!(
        page.contains("vswitch_port_link_up{port=\"pod2\"} 0\n"),
        "{page}"
    );
    // Tried again while the interface stays gone: still not plugged, and
    // nothing more in the log than the start's one line.
    std::thread::sleep(Duration::from_secs(2));
    let ports = json_of(&sock, &["port", "list", "--json"]);
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "pod2" && p["not_plugged"] != ""),
        "{ports}"
    );

    // The interface comes back: no write, the switch plugs the port itself.
    let pod2 = pod(&tag, 1);
    let t0 = Instant::now();
    loop {
        let ports = json_of(&sock, &["port", "list", "--json"]);
        let p2 = ports
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "pod2")
            .cloned()
            .unwrap_or_default();
        if p2["not_plugged"] == "" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "pod2 not plugged 15 s after its interface is back: {p2}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ping(&pod1, &ip_of(1));
    ping(&pod2, &ip_of(0));
    let page = metrics_page(addr);
    assert!(
        page.contains("vswitch_port_plugged{port=\"pod2\"} 1\n"),
        "{page}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats_port(&dir, "pod2")["plugged"] != true {
        assert!(
            Instant::now() < deadline,
            "the stats file still says not plugged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = v.log_text();
    let lines = |what: &str| {
        log.lines()
            .filter(|l| l.contains("pod2") && l.contains(what))
            .count()
    };
    assert_eq!(lines("port plugged: its device is back"), 1, "{log}");
    assert_eq!(lines("still not plugged"), 0, "{log}");
    v.stop();
}

#[test]
fn a_config_file_port_whose_interface_is_missing_still_stops_the_start() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let missing = format!("{tag}gone");
    let cfg = control_config(
        &dir,
        &[worker_core()],
        &format!(
            "{}[[port]]\nname = \"up\"\nprofile = \"af_packet\"\niface = \"{missing}\"\n",
            allowed_dirs(&dir)
        ),
    );
    let file = dir.join("vswitchd.toml");
    std::fs::write(&file, cfg).unwrap();
    let child = Command::new(workspace_bin("vswitchd"))
        .arg("--config")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vswitchd");
    let mut child = ChildGuard(Some(child));
    let out = child
        .wait_timeout(Duration::from_secs(20))
        .expect("vswitchd did not exit");
    let err = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("port \"up\"") && err.contains(&missing) && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        !dir.join("stats.json").exists(),
        "it must not have forwarded"
    );
}
