//! `vswitch-cni` driven exactly as a container runtime drives it: `CNI_*` in a
//! clean environment, the network configuration on stdin, namespaces made with
//! `ip netns add`, a running `vswitchd`, and Debian's `host-local` IPAM (plus
//! `tuning` and `portmap` chained after the plugin). Every test checks that what
//! an attachment made is gone after DEL, or after an ADD that failed: no port, no
//! endpoint, no host interface, no IPAM lease, no socket directory.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use system_tests::*;

/// Where Debian's `containernetworking-plugins` installs the plugins.
const CNI_BIN: &str = "/usr/lib/cni";

fn have_plugins() -> bool {
    Path::new(CNI_BIN).join("host-local").exists()
}

/// Skips (passing, with the reason) without root or without the IPAM plugin.
macro_rules! require_cni {
    () => {
        require_root!();
        if !have_plugins() {
            eprintln!("SKIP: {CNI_BIN}/host-local missing (scripts/install-deps.sh installs containernetworking-plugins)");
            return;
        }
    };
}

/// What the plugin printed and how it exited.
struct Outcome {
    ok: bool,
    out: Value,
    stderr: String,
}

impl Outcome {
    /// The error code of a failure, after checking the error has the spec's shape.
    fn code(&self) -> u64 {
        assert!(!self.ok, "expected a failure, got {}", self.out);
        for k in ["cniVersion", "msg", "details"] {
            assert!(self.out[k].is_string(), "error without {k}: {}", self.out);
        }
        self.out["code"].as_u64().expect("code")
    }
}

/// Runs plugin `exe` with `env` (and nothing else but PATH) and `stdin`.
fn exec(exe: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Outcome {
    let mut child = Command::new(exe)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the plugin");
    // A plugin that refuses early may close stdin before reading it all.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let out = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
    };
    Outcome {
        ok: o.status.success(),
        out,
        stderr: text_of(&o.stderr),
    }
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Environment variables, owned.
type Env = Vec<(String, String)>;

/// One attachment's parameters.
struct Att<'a> {
    id: &'a str,
    netns: &'a str,
    ifname: &'a str,
}

fn env_of<'a>(cmd: &'a str, a: &'a Att<'a>) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", a.id),
        ("CNI_NETNS", a.netns),
        ("CNI_IFNAME", a.ifname),
        ("CNI_PATH", CNI_BIN),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        ),
    ]
}

fn plugin() -> PathBuf {
    workspace_bin("vswitch-cni")
}

fn cni(cmd: &str, a: &Att<'_>, conf: &Value) -> Outcome {
    exec(&plugin(), &env_of(cmd, a), conf.to_string().as_bytes())
}

/// A switch with network `blue` (10.88.0.0/24, gateway 10.88.0.1) and nothing
/// else, its API on `dir/ctl.sock`, vhost-user sockets allowed in `dir/vhost`.
struct Node {
    // Declared first: the switch stops before its directory is removed.
    vswitchd: Option<Vswitchd>,
    dir: TempDir,
    config: String,
}

impl Node {
    fn start(tag: &str) -> Node {
        Self::start_with(TempDir::new(tag), "")
    }

    /// A switch in `dir` with `control` (more of `[control]`: `[control.tcp]`).
    fn start_with(dir: TempDir, control: &str) -> Node {
        // The API confines sockets to directories only root can write, up to /.
        let _ = Command::new("chmod").arg("755").arg(&dir.0).output();
        let body = format!(
            "{}{control}\n[[network]]\nname = \"blue\"\nvni = 100\nsubnets = [\"10.88.0.0/24\"]\ngateway_ips = [\"10.88.0.1\"]\ngateway_mac = \"02:00:00:00:aa:01\"\n",
            allowed_dirs(&dir)
        );
        let config = control_config(&dir, &[worker_core()], &body);
        let vswitchd = Vswitchd::start(&dir, &config);
        wait_for_api(&dir.join("ctl.sock"));
        Node {
            vswitchd: Some(vswitchd),
            dir,
            config,
        }
    }

    /// Stops the switch cleanly and starts it again on its state file.
    fn restart(&mut self) {
        self.stop_switch();
        self.start_switch();
    }

    /// Stops the switch cleanly (its state file stays).
    fn stop_switch(&mut self) {
        if let Some(v) = self.vswitchd.take() {
            v.stop();
        }
    }

    /// Starts the switch on its state file.
    fn start_switch(&mut self) {
        // A new stats file tells that the new process forwards.
        let _ = std::fs::remove_file(self.dir.join("stats.json"));
        self.vswitchd = Some(Vswitchd::start(&self.dir, &self.config));
        wait_for_api(&self.socket());
    }

    fn log(&self) -> String {
        self.vswitchd
            .as_ref()
            .map(Vswitchd::log_text)
            .unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// The network configuration: `mode`, host-local over 10.88.0.0/24 with its
    /// leases in `dir/ipam`.
    fn conf(&self, version: &str, mode: &str) -> Value {
        let mut c = json!({
            "cniVersion": version,
            "name": "pods",
            "type": "vswitch-cni",
            "network": "blue",
            "socket": self.socket(),
            "mode": mode,
            "ipam": {
                "type": "host-local",
                "subnet": "10.88.0.0/24",
                "gateway": "10.88.0.1",
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.dir.join("ipam"),
            },
        });
        if mode == "vhostuser" {
            c["vhost"] = json!({"socketDir": self.dir.join("vhost"), "group": "root"});
        }
        c
    }

    /// The addresses host-local holds leases for.
    fn leases(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.dir.join("ipam").join("pods"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn state(&self) -> Value {
        let text = vswitchctl_ok(&self.socket(), &["get", "-o", "json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// Ports and local endpoints of the switch.
    fn ports_and_endpoints(&self) -> (Vec<String>, usize) {
        let s = self.state();
        let st = if s["state"].is_object() {
            &s["state"]
        } else {
            &s
        };
        let ports = st["ports"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let eps = st["endpoints"].as_array().map_or(0, |a| a.len());
        (ports, eps)
    }

    /// Asserts that no attachment is left: ports, endpoints, leases, host
    /// interfaces of the plugin, socket directories.
    fn assert_empty(&self, why: &str) {
        let (ports, eps) = self.ports_and_endpoints();
        assert!(
            ports.is_empty() && eps == 0,
            "{why}: ports {ports:?}, {eps} endpoints left"
        );
        assert!(
            self.leases().is_empty(),
            "{why}: leases left {:?}",
            self.leases()
        );
        let vhost: Vec<_> = std::fs::read_dir(self.dir.join("vhost"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(vhost.is_empty(), "{why}: socket directories left {vhost:?}");
    }
}

/// Whether the host end the plugin makes for attachment `(id, ifname)` exists
/// (named by the plugin's own function: tests running beside this one make
/// host interfaces of their own).
fn host_link(id: &str, ifname: &str) -> bool {
    let name = vswitch_cni::names::AttachmentNames::new(id, ifname).port;
    Path::new("/sys/class/net").join(name).exists()
}

fn ping(ns: &Netns, to: &str) -> bool {
    let _ = ns.try_exec(&["ping", "-c", "1", "-W", "1", to]);
    ns.try_exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", to])
        .status
        .success()
}

/// The first address of a result, without its prefix.
fn addr_of(result: &Value) -> String {
    let a = result["ips"][0]["address"].as_str().expect("an address");
    a.split('/').next().unwrap().to_owned()
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// Holds an ADD result to the shape the spec gives it at `version`: field by
/// field, the types, the address forms, the interface indices, and what a
/// version has or has not (`ips[].version` before 1.0.0, `socketPath` from 1.1.0).
fn assert_result_shape(r: &Value, version: &str) {
    let obj = r
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {r}"));
    for k in obj.keys() {
        assert!(
            ["cniVersion", "interfaces", "ips", "routes", "dns"].contains(&k.as_str()),
            "unknown key {k} in {r}"
        );
    }
    assert_eq!(r["cniVersion"], version);
    let old = version.starts_with("0.");
    let ifs = r["interfaces"].as_array().expect("interfaces");
    for i in ifs {
        assert!(
            i["name"]
                .as_str()
                .is_some_and(|n| !n.is_empty() && n.len() <= 15),
            "{i}"
        );
        if let Some(m) = i.get("mac") {
            let m = m.as_str().expect("mac is a string");
            assert_eq!(
                m.split(':')
                    .filter(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok())
                    .count(),
                6,
                "{m}"
            );
        }
        if let Some(s) = i.get("sandbox") {
            assert!(s.as_str().is_some_and(|s| s.starts_with('/')), "{i}");
        }
        if let Some(m) = i.get("mtu") {
            assert!(m.as_u64().is_some(), "{i}");
        }
        if let Some(p) = i.get("socketPath") {
            assert!(version == "1.1.0", "socketPath in a {version} result: {r}");
            assert!(p.as_str().is_some_and(|p| p.starts_with('/')), "{i}");
        }
    }
    for ip in r["ips"].as_array().expect("ips") {
        let a = ip["address"].as_str().expect("address");
        let (addr, len) = a.split_once('/').expect("CIDR");
        let addr: std::net::IpAddr = addr.parse().expect("an address");
        assert!(len.parse::<u8>().is_ok(), "{a}");
        if let Some(g) = ip.get("gateway") {
            g.as_str()
                .unwrap()
                .parse::<std::net::IpAddr>()
                .expect("gateway");
        }
        let idx = ip["interface"].as_u64().expect("interface index") as usize;
        assert!(idx < ifs.len(), "{ip}");
        let want = if addr.is_ipv4() { "4" } else { "6" };
        match ip.get("version") {
            Some(v) => assert!(old && v == want, "version {v} in a {version} result"),
            None => assert!(!old, "no ips[].version in a {version} result"),
        }
    }
    for rt in r["routes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let dst = rt["dst"].as_str().expect("dst");
        assert!(dst.contains('/'), "{dst}");
        if let Some(gw) = rt.get("gw") {
            gw.as_str()
                .unwrap()
                .parse::<std::net::IpAddr>()
                .expect("gw");
        }
    }
    if let Some(d) = r.get("dns") {
        assert!(d.is_object(), "{d}");
    }
}

#[test]
fn kernel_pods_ping_through_the_switch_and_leave_nothing() {
    require_cni!();
    let tag = unique_tag();
    let node = Node::start(&tag);
    let nsa = Netns::new(&format!("{tag}a"));
    let nsb = Netns::new(&format!("{tag}b"));
    let (pa, pb) = (
        format!("/run/netns/{}", nsa.name),
        format!("/run/netns/{}", nsb.name),
    );
    let a = Att {
        id: &format!("{tag}-ctr-a"),
        netns: &pa,
        ifname: "eth0",
    };
    let b = Att {
        id: &format!("{tag}-ctr-b"),
        netns: &pb,
        ifname: "eth0",
    };
    // Pod a speaks 0.4.0, pod b 1.1.0 (host-local stops at 1.0.0: the plugin
    // hands it the newest version it speaks).
    let conf_a = node.conf("0.4.0", "kernel");
    let conf_b = node.conf("1.1.0", "kernel");
    let ra = cni("ADD", &a, &conf_a);
    assert!(ra.ok, "ADD a: {} {}", ra.out, ra.stderr);
    let rb = cni("ADD", &b, &conf_b);
    assert!(rb.ok, "ADD b: {} {}", rb.out, rb.stderr);

    // Results as each version shapes them: the pod interface in the sandbox, the
    // host end, the address pointing at the pod interface.
    for (r, v) in [(&ra.out, "0.4.0"), (&rb.out, "1.1.0")] {
        assert_result_shape(r, v);
        assert_eq!(r["cniVersion"], v);
        let ifs = r["interfaces"].as_array().unwrap();
        assert_eq!(ifs.len(), 2, "{r}");
        assert!(ifs[0]["sandbox"].is_null() && ifs[0]["name"].as_str().unwrap().starts_with("vsw"));
        assert_eq!(ifs[1]["name"], "eth0");
        assert_eq!(r["ips"][0]["interface"], 1);
        assert_eq!(r["ips"][0]["gateway"], "10.88.0.1");
        assert_eq!(
            r["ips"][0]["version"].as_str().is_some(),
            v == "0.4.0",
            "{r}"
        );
    }
    assert_eq!(ra.out["interfaces"][1]["sandbox"], pa.as_str());
    let (ip_a, ip_b) = (addr_of(&ra.out), addr_of(&rb.out));
    assert_ne!(ip_a, ip_b);
    assert_eq!(node.leases(), BTreeSet::from([ip_a.clone(), ip_b.clone()]));

    // The pods' interfaces as the results say, and the switch's side.
    let shown = text(
        &nsa.exec(&["ip", "-br", "addr", "show", "dev", "eth0"])
            .stdout,
    );
    assert!(shown.contains(&format!("{ip_a}/24")), "{shown}");
    let route = text(&nsa.exec(&["ip", "route", "show", "default"]).stdout);
    assert!(route.contains("via 10.88.0.1 dev eth0"), "{route}");
    // The offloads TCP through a packet socket needs (DESIGN.md §6), set by the plugin
    // over netlink: no transmit checksum offload on the pod end, no GRO on the
    // host end; and the pod end has the MAC the result reports.
    let k = text(&nsa.exec(&["ethtool", "-k", "eth0"]).stdout);
    assert!(k.contains("tx-checksumming: off"), "{k}");
    assert!(k.contains("tx-checksum-ip-generic: off"), "{k}");
    let host = vswitch_cni::names::AttachmentNames::new(a.id, "eth0").port;
    let out = Command::new("ethtool")
        .args(["-k", &host])
        .output()
        .unwrap();
    let k = text(&out.stdout);
    assert!(k.contains("generic-receive-offload: off"), "{host}: {k}");
    let link = text(
        &nsa.exec(&["ip", "-br", "link", "show", "dev", "eth0"])
            .stdout,
    );
    let mac = ra.out["interfaces"][1]["mac"].as_str().unwrap();
    assert!(
        link.contains(mac) && link.contains("UP"),
        "{link} (MAC {mac})"
    );
    let (ports, eps) = node.ports_and_endpoints();
    assert_eq!((ports.len(), eps), (2, 2), "{ports:?}");
    // The host ends are the switch's packet sockets, not DPDK ports.
    let listed: Value =
        serde_json::from_str(&vswitchctl_ok(&node.socket(), &["port", "list", "--json"])).unwrap();
    for p in listed.as_array().unwrap() {
        assert_eq!(
            (&p["profile"], &p["driver"], &p["dpdk_port_id"]),
            (&json!("kernel"), &json!("packet_socket"), &Value::Null),
            "{p}"
        );
        assert_eq!(p["link_up"], true, "{p}");
        assert!(
            p["mac"].as_str().is_some_and(|m| m != "00:00:00:00:00:00"),
            "{p}"
        );
    }

    assert!(ping(&nsa, &ip_b), "pod a cannot ping pod b");
    assert!(ping(&nsb, &ip_a), "pod b cannot ping pod a");
    // TCP, whole and in order, both ways.
    system_tests::peers::tcp_transfer(&node.dir, &nsa, &nsb, &ip_b, 8 << 20);
    system_tests::peers::tcp_transfer(&node.dir, &nsb, &nsa, &ip_a, 8 << 20);

    // CHECK with the ADD's result passes; with the interface down it fails.
    let chk = cni("CHECK", &a, &with_prev(&conf_a, &ra.out));
    assert!(chk.ok, "CHECK a: {} {}", chk.out, chk.stderr);
    let chk = cni("CHECK", &b, &with_prev(&conf_b, &rb.out));
    assert!(chk.ok, "CHECK b: {} {}", chk.out, chk.stderr);
    nsa.exec(&["ip", "link", "set", "eth0", "down"]);
    let chk = cni("CHECK", &a, &with_prev(&conf_a, &ra.out));
    assert_eq!(chk.code(), 100, "{}", chk.out);
    // CHECK without prevResult is an invalid configuration; before 0.4.0 there
    // was no CHECK.
    assert_eq!(cni("CHECK", &b, &conf_b).code(), 7);
    let mut old = with_prev(&conf_b, &rb.out);
    old["cniVersion"] = "0.3.1".into();
    assert_eq!(cni("CHECK", &b, &old).code(), 1);

    // DEL removes everything; a second DEL, and a DEL after the namespace is
    // gone, succeed.
    for (att, conf) in [(&a, &conf_a), (&b, &conf_b)] {
        let d = cni("DEL", att, &with_prev(conf, &ra.out));
        assert!(d.ok, "DEL: {} {}", d.out, d.stderr);
        let d = cni("DEL", att, conf);
        assert!(d.ok, "second DEL: {} {}", d.out, d.stderr);
    }
    drop(nsb);
    let d = cni("DEL", &b, &conf_b);
    assert!(d.ok, "DEL without its namespace: {} {}", d.out, d.stderr);
    let d = exec(
        &plugin(),
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", b.id),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_BIN),
        ],
        conf_b.to_string().as_bytes(),
    );
    assert!(d.ok, "DEL without CNI_NETNS: {} {}", d.out, d.stderr);
    node.assert_empty("after DEL");
    assert!(!host_link(a.id, "eth0") && !host_link(b.id, "eth0"));
    let text_a = text(&nsa.exec(&["ip", "-br", "link"]).stdout);
    assert!(!text_a.contains("eth0"), "{text_a}");
}

#[test]
fn failed_adds_leave_nothing_behind() {
    require_cni!();
    let tag = unique_tag();
    let node = Node::start(&tag);
    let ns = Netns::new(&format!("{tag}a"));
    let p = format!("/run/netns/{}", ns.name);
    let a = Att {
        id: &format!("{tag}-ctr"),
        netns: &p,
        ifname: "eth0",
    };

    // The switch refuses the endpoint (no such network) after IPAM leased an
    // address and the veth pair was made: all of it is undone.
    let mut bad = node.conf("1.0.0", "kernel");
    bad["network"] = "nosuch".into();
    let r = cni("ADD", &a, &bad);
    assert_eq!(r.code(), 7, "{}", r.out);
    assert!(
        r.out["details"].as_str().unwrap().contains("nosuch"),
        "{}",
        r.out
    );
    node.assert_empty("after a refused ADD");
    assert!(!host_link(a.id, "eth0"));
    let links = text(&ns.exec(&["ip", "-br", "link"]).stdout);
    assert!(!links.contains("eth0"), "{links}");

    // An interface of that name already in the pod: an error, the pod's own
    // interface untouched, nothing else left.
    ns.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    let r = cni("ADD", &a, &node.conf("1.0.0", "kernel"));
    assert_eq!(r.code(), 101, "{}", r.out);
    assert!(
        r.out["details"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{}",
        r.out
    );
    node.assert_empty("after an ADD onto an existing interface");
    assert!(!host_link(a.id, "eth0"));
    ns.exec(&["ip", "link", "show", "eth0"]);

    // A vhost-user socket directory the switch may not use: refused, the
    // directory made for it removed.
    let mut vh = node.conf("1.1.0", "vhostuser");
    vh["vhost"]["socketDir"] = node.dir.join("pcap").display().to_string().into();
    std::fs::create_dir_all(node.dir.join("pcap")).unwrap();
    let b = Att {
        id: &format!("{tag}-vh"),
        netns: &p,
        ifname: "net1",
    };
    let r = cni("ADD", &b, &vh);
    assert_eq!(r.code(), 7, "{}", r.out);
    assert!(
        r.out["details"]
            .as_str()
            .unwrap()
            .contains("PermissionDenied"),
        "{}",
        r.out
    );
    let left: Vec<_> = std::fs::read_dir(node.dir.join("pcap")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    node.assert_empty("after a refused vhost-user ADD");
}

#[test]
fn bad_inputs_give_the_spec_error_codes() {
    require_cni!();
    let tag = unique_tag();
    let node = Node::start(&tag);
    let ns = Netns::new(&format!("{tag}a"));
    let p = format!("/run/netns/{}", ns.name);
    let id = format!("{tag}-ctr");
    let good = node.conf("1.0.0", "kernel");
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c.to_string()
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        c.to_string()
    };
    let add_env = |over: &[(&'static str, &str)]| -> Env {
        let mut e: Env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", id.as_str()),
            ("CNI_NETNS", p.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_BIN),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in over {
            e.retain(|(ek, _)| ek != k);
            if !v.is_empty() {
                e.push((k.to_string(), v.to_string()));
            }
        }
        e
    };
    let long_dir = format!("/{}", "d".repeat(100));
    let mut vh_long = node.conf("1.1.0", "vhostuser");
    vh_long["vhost"]["socketDir"] = long_dir.into();
    let mut no_switch = good.clone();
    no_switch["socket"] = node.dir.join("nobody.sock").display().to_string().into();
    let mut bad_ipam = good.clone();
    bad_ipam["ipam"]["type"] = "no-such-ipam".into();
    let mut evil_ipam = good.clone();
    evil_ipam["ipam"]["type"] = "../../../bin/sh".into();
    let huge = format!(
        "{{\"cniVersion\":\"1.0.0\",\"pad\":\"{}\"}}",
        "x".repeat(2 << 20)
    );

    let cases: Vec<(&str, Env, String, u64)> = vec![
        ("not JSON", add_env(&[]), "{\"cniVersion\":".into(), 6),
        ("a JSON array", add_env(&[]), "[1,2]".into(), 6),
        ("no cniVersion", add_env(&[]), without("cniVersion"), 6),
        (
            "unsupported version",
            add_env(&[]),
            with("cniVersion", "0.2.0".into()),
            1,
        ),
        (
            "a version from the future",
            add_env(&[]),
            with("cniVersion", "9.0.0".into()),
            1,
        ),
        (
            "unknown mode",
            add_env(&[]),
            with("mode", "sriov".into()),
            6,
        ),
        ("no network", add_env(&[]), without("network"), 6),
        (
            "network name with a slash",
            add_env(&[]),
            with("network", "../blue".into()),
            7,
        ),
        (
            "mtu out of range",
            add_env(&[]),
            with("mtu", 70000.into()),
            7,
        ),
        (
            "relative API socket",
            add_env(&[]),
            with("socket", "ctl.sock".into()),
            7,
        ),
        ("ipMasq", add_env(&[]), with("ipMasq", true.into()), 2),
        (
            "vhost socketDir past sun_path",
            add_env(&[]),
            vh_long.to_string(),
            7,
        ),
        (
            "vhostuser without vhost",
            add_env(&[]),
            with("mode", "vhostuser".into()),
            7,
        ),
        (
            "IPAM plugin not in CNI_PATH",
            add_env(&[]),
            bad_ipam.to_string(),
            7,
        ),
        (
            "IPAM type as a path",
            add_env(&[]),
            evil_ipam.to_string(),
            7,
        ),
        (
            "switch not running",
            add_env(&[]),
            no_switch.to_string(),
            11,
        ),
        ("oversized stdin", add_env(&[]), huge, 7),
        (
            "no CNI_COMMAND",
            add_env(&[("CNI_COMMAND", "")]),
            good.to_string(),
            4,
        ),
        (
            "unknown CNI_COMMAND",
            add_env(&[("CNI_COMMAND", "REBOOT")]),
            good.to_string(),
            4,
        ),
        (
            "no CNI_CONTAINERID",
            add_env(&[("CNI_CONTAINERID", "")]),
            good.to_string(),
            4,
        ),
        (
            "container ID with a slash",
            add_env(&[("CNI_CONTAINERID", "../x")]),
            good.to_string(),
            4,
        ),
        (
            "CNI_IFNAME too long",
            add_env(&[("CNI_IFNAME", "eth0123456789abc")]),
            good.to_string(),
            4,
        ),
        (
            "CNI_IFNAME with a slash",
            add_env(&[("CNI_IFNAME", "a/b")]),
            good.to_string(),
            4,
        ),
        (
            "no CNI_NETNS",
            add_env(&[("CNI_NETNS", "")]),
            good.to_string(),
            4,
        ),
        (
            "relative CNI_NETNS",
            add_env(&[("CNI_NETNS", "run/netns/x")]),
            good.to_string(),
            4,
        ),
        (
            "CNI_NETNS that does not exist",
            add_env(&[("CNI_NETNS", "/run/netns/no-such-ns-x")]),
            good.to_string(),
            3,
        ),
        (
            "unknown CNI_ARGS",
            add_env(&[("CNI_ARGS", "FOO=bar")]),
            good.to_string(),
            4,
        ),
        (
            "a multicast MAC in CNI_ARGS",
            add_env(&[("CNI_ARGS", "MAC=01:00:5e:00:00:01")]),
            good.to_string(),
            4,
        ),
        (
            "STATUS at 1.0.0",
            add_env(&[("CNI_COMMAND", "STATUS")]),
            good.to_string(),
            1,
        ),
    ];
    assert!(cases.len() >= 15);
    for (what, env, stdin, code) in &cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = exec(&plugin(), &env, stdin.as_bytes());
        assert_eq!(r.code(), *code, "{what}: {}", r.out);
        assert!(!r.out["msg"].as_str().unwrap().is_empty(), "{what}");
        assert!(
            r.out["details"].as_str().unwrap().len() < 1024,
            "{what}: {}",
            r.out
        );
        assert!(
            r.stderr.contains("vswitch-cni:"),
            "{what}: stderr {}",
            r.stderr
        );
    }
    node.assert_empty("after bad inputs");
    assert!(!host_link(&id, "eth0"));
    let links = text(&ns.exec(&["ip", "-br", "link"]).stdout);
    assert!(!links.contains("eth0"), "{links}");
}

#[test]
fn version_status_and_gc() {
    require_cni!();
    let tag = unique_tag();
    let node = Node::start(&tag);
    // VERSION answers in the version asked, listing every supported one.
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let r = exec(
            &plugin(),
            &[("CNI_COMMAND", "VERSION")],
            json!({"cniVersion": v}).to_string().as_bytes(),
        );
        assert!(r.ok, "{}", r.out);
        assert_eq!(r.out["cniVersion"], v);
        assert_eq!(
            r.out["supportedVersions"],
            json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
    }

    // STATUS: ready while the switch runs, 50 when it cannot be reached.
    let conf = node.conf("1.1.0", "kernel");
    let st = exec(
        &plugin(),
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", CNI_BIN)],
        conf.to_string().as_bytes(),
    );
    assert!(st.ok && st.out.is_null(), "{} {}", st.out, st.stderr);
    let mut gone = conf.clone();
    gone["socket"] = node.dir.join("nobody.sock").display().to_string().into();
    let st = exec(
        &plugin(),
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", CNI_BIN)],
        gone.to_string().as_bytes(),
    );
    assert_eq!(st.code(), 50, "{}", st.out);

    // GC: of two attachments, the one the runtime no longer lists goes.
    let ns = Netns::new(&format!("{tag}a"));
    let ns2 = Netns::new(&format!("{tag}b"));
    let p = format!("/run/netns/{}", ns.name);
    let p2 = format!("/run/netns/{}", ns2.name);
    let keep = Att {
        id: &format!("{tag}-keep"),
        netns: &p,
        ifname: "eth0",
    };
    let stale = Att {
        id: &format!("{tag}-stale"),
        netns: &p2,
        ifname: "eth0",
    };
    for a in [&keep, &stale] {
        let r = cni("ADD", a, &conf);
        assert!(r.ok, "ADD: {} {}", r.out, r.stderr);
    }
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": keep.id, "ifname": "eth0"}]);
    let r = exec(
        &plugin(),
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", CNI_BIN)],
        gc.to_string().as_bytes(),
    );
    assert!(r.ok, "GC: {} {}", r.out, r.stderr);
    let (ports, eps) = node.ports_and_endpoints();
    assert_eq!((ports.len(), eps), (1, 1), "{ports:?}");
    let links = text(&ns.exec(&["ip", "-br", "link"]).stdout);
    assert!(links.contains("eth0"), "{links}");
    let links = text(&ns2.exec(&["ip", "-br", "link"]).stdout);
    assert!(!links.contains("eth0"), "{links}");
    for a in [&keep, &stale] {
        let r = cni("DEL", a, &conf);
        assert!(r.ok, "DEL: {} {}", r.out, r.stderr);
    }
    node.assert_empty("after GC and DEL");
}

/// The runtime's side of a conflist: each plugin in order on ADD and CHECK (the
/// previous result as `prevResult`), in reverse on DEL (the final ADD result).
fn run_chain(
    cmd: &str,
    plugins: &[Value],
    a: &Att<'_>,
    prev: Option<&Value>,
) -> Result<Option<Value>, Outcome> {
    let order: Vec<&Value> = if cmd == "DEL" {
        plugins.iter().rev().collect()
    } else {
        plugins.iter().collect()
    };
    let mut result = prev.cloned();
    for p in order {
        let mut conf = p.clone();
        if let Some(r) = &result {
            conf["prevResult"] = r.clone();
        }
        let exe = if p["type"] == "vswitch-cni" {
            plugin()
        } else {
            Path::new(CNI_BIN).join(p["type"].as_str().unwrap())
        };
        let out = exec(&exe, &env_of(cmd, a), conf.to_string().as_bytes());
        if !out.ok {
            return Err(out);
        }
        if cmd == "ADD" {
            result = Some(out.out);
        }
    }
    Ok(result)
}

/// Runs its closure when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[test]
fn chained_with_tuning_and_portmap() {
    require_cni!();
    if !Path::new(CNI_BIN).join("portmap").exists()
        || Command::new("iptables").arg("-V").output().is_err()
    {
        eprintln!("SKIP: portmap or iptables missing");
        return;
    }
    let tag = unique_tag();
    let node = Node::start(&tag);
    let ns = Netns::new(&format!("{tag}a"));
    let p = format!("/run/netns/{}", ns.name);
    let a = Att {
        id: &format!("{tag}-ctr"),
        netns: &p,
        ifname: "eth0",
    };
    // The network configuration list as a runtime holds it; each plugin is given
    // its entry with the list's name and version, as the spec derives it.
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [
            node.conf("1.0.0", "kernel"),
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": false},
        ]
    });
    let plugins: Vec<Value> = conflist["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p["cniVersion"] = conflist["cniVersion"].clone();
            p["name"] = conflist["name"].clone();
            if p["type"] == "portmap" {
                p.as_object_mut().unwrap().remove("capabilities");
                p["runtimeConfig"] = json!({"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]});
            }
            p
        })
        .collect();
    let result = match run_chain("ADD", &plugins, &a, None) {
        Ok(r) => r.unwrap(),
        Err(o) => panic!("chained ADD: {} {}", o.out, o.stderr),
    };
    // portmap's iptables chains live in the host's namespace: removed by the
    // chain's DEL even when an assertion fails first (DEL is idempotent).
    let _del = OnDrop(|| {
        let _ = run_chain("DEL", &plugins, &a, Some(&result));
    });
    // The plugin's interfaces and address passed through tuning and portmap.
    assert_result_shape(&result, "1.0.0");
    assert_eq!(result["interfaces"][1]["name"], "eth0", "{result}");
    assert_eq!(result["ips"][0]["interface"], 1, "{result}");
    let rp = text(
        &ns.exec(&["sysctl", "-n", "net.ipv4.conf.eth0.rp_filter"])
            .stdout,
    );
    assert_eq!(
        rp.trim(),
        "2",
        "tuning did not run on the plugin's interface"
    );
    // portmap's own CHECK (Debian 12's 1.1.1) looks for an IPv6 chain it never
    // made for an IPv4-only pod and fails whoever runs before it: the chain's
    // CHECK stops before it.
    if let Err(o) = run_chain("CHECK", &plugins[..2], &a, Some(&result)) {
        panic!("chained CHECK: {} {}", o.out, o.stderr);
    }
    if let Err(o) = run_chain("DEL", &plugins, &a, Some(&result)) {
        panic!("chained DEL: {} {}", o.out, o.stderr);
    }
    node.assert_empty("after the chained DEL");
}

#[test]
fn vhost_user_pod_answers_a_kernel_pod() {
    require_cni!();
    let tag = unique_tag();
    let node = Node::start(&tag);
    let nsk = Netns::new(&format!("{tag}k"));
    let nsv = Netns::new(&format!("{tag}v"));
    let (pk, pv) = (
        format!("/run/netns/{}", nsk.name),
        format!("/run/netns/{}", nsv.name),
    );
    let k = Att {
        id: &format!("{tag}-kernel"),
        netns: &pk,
        ifname: "eth0",
    };
    let v = Att {
        id: &format!("{tag}-dpdk"),
        netns: &pv,
        ifname: "net1",
    };
    let kconf = node.conf("1.0.0", "kernel");
    let vconf = node.conf("1.1.0", "vhostuser");
    let rk = cni("ADD", &k, &kconf);
    assert!(rk.ok, "ADD kernel: {} {}", rk.out, rk.stderr);
    let rv = cni("ADD", &v, &vconf);
    assert!(rv.ok, "ADD vhostuser: {} {}", rv.out, rv.stderr);

    // The socket in a short per-pod directory, reported as socketPath (1.1.0),
    // 0660 for its group; the details next to it.
    let sock = PathBuf::from(
        rv.out["interfaces"][0]["socketPath"]
            .as_str()
            .expect("socketPath"),
    );
    assert!(
        sock.starts_with(node.dir.join("vhost")),
        "{}",
        sock.display()
    );
    assert!(sock.as_os_str().len() <= 107);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let dir_mode = std::fs::metadata(sock.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o750);
    let details = read_json(&sock.parent().unwrap().join("interface.json"));
    let mac = rv.out["interfaces"][0]["mac"].as_str().unwrap();
    assert_eq!(details["mac"], mac);
    assert_eq!(details["socketPath"], sock.display().to_string());
    assert_eq!(
        details["ips"],
        rv.out["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let mut i = i.clone();
                i.as_object_mut().unwrap().remove("interface");
                i
            })
            .collect::<Value>()
    );
    let chk = cni("CHECK", &v, &with_prev(&vconf, &rv.out));
    assert!(chk.ok, "CHECK vhostuser: {} {}", chk.out, chk.stderr);

    // The DPDK pod: testpmd on a virtio_user port with the endpoint's MAC,
    // answering ARP and ping (icmpecho).
    if have_testpmd() {
        let testpmd = TestPmd::start(&sock, mac, &format!("{tag}tp"), false, "icmpecho", &[]);
        let ip_v = addr_of(&rv.out);
        let ok = ping_until(&nsk, &ip_v, 20);
        drop(testpmd);
        assert!(
            ok,
            "the kernel pod cannot ping the vhost-user pod\n{}",
            node.log()
        );
    } else {
        eprintln!("NOTE: no dpdk-testpmd: the vhost-user pod's traffic is not checked");
    }

    for (att, conf) in [(&k, &kconf), (&v, &vconf)] {
        let d = cni("DEL", att, conf);
        assert!(d.ok, "DEL: {} {}", d.out, d.stderr);
    }
    assert!(!sock.exists());
    node.assert_empty("after DEL of both pods");
}

/// The number of ADD/DEL cycles of the churn test (`CNI_CHURN_CYCLES`, 200 when
/// unset).
fn churn_cycles() -> usize {
    std::env::var("CNI_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

#[test]
fn pods_come_and_go_while_two_others_stream() {
    require_cni!();
    let tag = unique_tag();
    let node = Node::start(&tag);
    let nsa = Netns::new(&format!("{tag}a"));
    let nsb = Netns::new(&format!("{tag}b"));
    let nsc = Netns::new(&format!("{tag}c"));
    let (pa, pb, pc) = (
        format!("/run/netns/{}", nsa.name),
        format!("/run/netns/{}", nsb.name),
        format!("/run/netns/{}", nsc.name),
    );
    let a = Att {
        id: &format!("{tag}-a"),
        netns: &pa,
        ifname: "eth0",
    };
    let b = Att {
        id: &format!("{tag}-b"),
        netns: &pb,
        ifname: "eth0",
    };
    let kconf = node.conf("1.0.0", "kernel");
    let vconf = node.conf("1.1.0", "vhostuser");
    let ra = cni("ADD", &a, &kconf);
    let rb = cni("ADD", &b, &kconf);
    assert!(ra.ok && rb.ok, "{} {}", ra.out, rb.out);
    let ip_b = addr_of(&rb.out);
    assert!(ping(&nsa, &ip_b));

    // A paced UDP stream from a to b for the whole churn.
    let script = repo_root().join("scripts/udp_stream.py");
    let script = script.to_str().unwrap();
    let f = |n: &str| node.dir.join(n).to_str().unwrap().to_owned();
    let mut receiver = nsb.spawn(&[
        "python3",
        script,
        "recv",
        "--port",
        "5002",
        "--ready",
        &f("recv.ready"),
        "--stop",
        &f("recv.stop"),
        "--out",
        &f("recv.json"),
        "--idle",
        "1.0",
        "--timeout",
        "900",
    ]);
    while !node.dir.join("recv.ready").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sender = nsa.spawn(&[
        "python3",
        script,
        "send",
        "--host",
        &ip_b,
        "--port",
        "5002",
        "--rate",
        "500",
        "--count",
        "100000000",
        "--stop",
        &f("send.stop"),
        "--out",
        &f("send.json"),
    ]);

    // Pods come and go: a kernel pod and a vhost-user pod per cycle, each with a
    // lease, a port and an endpoint, then both deleted.
    let cycles = churn_cycles();
    for i in 0..cycles {
        let kid = format!("{tag}-k{i}");
        let vid = format!("{tag}-v{i}");
        let k = Att {
            id: &kid,
            netns: &pc,
            ifname: "eth0",
        };
        let v = Att {
            id: &vid,
            netns: &pc,
            ifname: "net1",
        };
        let rk = cni("ADD", &k, &kconf);
        assert!(rk.ok, "cycle {i}: kernel ADD: {} {}", rk.out, rk.stderr);
        let rv = cni("ADD", &v, &vconf);
        assert!(rv.ok, "cycle {i}: vhostuser ADD: {} {}", rv.out, rv.stderr);
        for (att, conf, r) in [(&k, &kconf, &rk), (&v, &vconf, &rv)] {
            let d = cni("DEL", att, &with_prev(conf, &r.out));
            assert!(d.ok, "cycle {i}: DEL: {} {}", d.out, d.stderr);
        }
    }

    std::fs::write(node.dir.join("send.stop"), "").unwrap();
    sender
        .wait_timeout(Duration::from_secs(10))
        .expect("sender stops");
    std::fs::write(node.dir.join("recv.stop"), "").unwrap();
    receiver
        .wait_timeout(Duration::from_secs(20))
        .expect("receiver stops");
    let sent = read_json(&node.dir.join("send.json"));
    let got = read_json(&node.dir.join("recv.json"));
    let sent = sent["sent"].as_u64().unwrap();
    assert!(sent > 0);
    assert_eq!(
        got["distinct"].as_u64().unwrap(),
        sent,
        "the stream lost datagrams during {cycles} cycles: {got}"
    );
    assert_eq!(got["duplicates"].as_u64().unwrap(), 0, "{got}");

    // Nothing of the churn is left: only a and b.
    let (ports, eps) = node.ports_and_endpoints();
    assert_eq!((ports.len(), eps), (2, 2), "{ports:?}");
    assert_eq!(node.leases().len(), 2, "{:?}", node.leases());
    assert!(host_link(a.id, "eth0") && host_link(b.id, "eth0"));
    for i in 0..cycles {
        assert!(
            !host_link(&format!("{tag}-k{i}"), "eth0"),
            "cycle {i} left its veth"
        );
    }
    let vhost: Vec<_> = std::fs::read_dir(node.dir.join("vhost")).unwrap().collect();
    assert!(vhost.is_empty(), "{vhost:?}");
    let links = text(&nsc.exec(&["ip", "-br", "link"]).stdout);
    assert!(
        !links.contains("eth0") && !links.contains("net1"),
        "{links}"
    );
    for att in [&a, &b] {
        assert!(cni("DEL", att, &kconf).ok);
    }
    node.assert_empty("after the churn");
}

/// Pings until answered, at most `tries` times (each waits 1 s for an answer).
fn ping_until(ns: &Netns, to: &str, tries: u32) -> bool {
    (0..tries).any(|_| {
        ns.try_exec(&["ping", "-c", "1", "-W", "1", to])
            .status
            .success()
    })
}

#[test]
fn vhost_user_client_pod_survives_a_switch_restart() {
    require_cni!();
    if !have_testpmd() {
        eprintln!("SKIP: a virtio_user pod needs dpdk-testpmd");
        return;
    }
    let tag = unique_tag();
    let mut node = Node::start(&tag);
    let nsk = Netns::new(&format!("{tag}k"));
    let nsv = Netns::new(&format!("{tag}v"));
    let (pk, pv) = (
        format!("/run/netns/{}", nsk.name),
        format!("/run/netns/{}", nsv.name),
    );
    let k = Att {
        id: &format!("{tag}-kernel"),
        netns: &pk,
        ifname: "eth0",
    };
    let v = Att {
        id: &format!("{tag}-dpdk"),
        netns: &pv,
        ifname: "net1",
    };
    let kconf = node.conf("1.0.0", "kernel");
    let mut vconf = node.conf("1.1.0", "vhostuser");
    vconf["vhost"]["client"] = true.into();
    let rk = cni("ADD", &k, &kconf);
    assert!(rk.ok, "ADD kernel: {} {}", rk.out, rk.stderr);
    let rv = cni("ADD", &v, &vconf);
    assert!(rv.ok, "ADD vhostuser client: {} {}", rv.out, rv.stderr);
    let sock = PathBuf::from(rv.out["interfaces"][0]["socketPath"].as_str().unwrap());
    let details = read_json(&sock.parent().unwrap().join("interface.json"));
    assert_eq!(
        details["mode"], "server",
        "the pod serves the socket: {details}"
    );
    let chk = cni("CHECK", &v, &with_prev(&vconf, &rv.out));
    assert!(
        chk.ok,
        "CHECK before the pod's socket exists: {} {}",
        chk.out, chk.stderr
    );

    // The DPDK pod serves the socket; the switch's port connects to it.
    let mac = rv.out["interfaces"][0]["mac"].as_str().unwrap();
    let _testpmd = TestPmd::start(&sock, mac, &format!("{tag}tp"), true, "icmpecho", &[]);
    let ip_v = addr_of(&rv.out);
    assert!(
        ping_until(&nsk, &ip_v, 20),
        "no answer before the restart\n{}",
        node.log()
    );

    // The switch goes away and comes back on its state file: the pod did
    // nothing, its socket is still served, and traffic resumes.
    node.restart();
    let t = std::time::Instant::now();
    assert!(
        ping_until(&nsk, &ip_v, 20),
        "no answer after the restart\n{}",
        node.log()
    );
    eprintln!(
        "traffic resumed {:?} after the API answered again",
        t.elapsed()
    );
    let chk = cni("CHECK", &k, &with_prev(&kconf, &rk.out));
    assert!(
        chk.ok,
        "CHECK kernel after the restart: {} {}",
        chk.out, chk.stderr
    );

    for (att, conf) in [(&k, &kconf), (&v, &vconf)] {
        let d = cni("DEL", att, conf);
        assert!(d.ok, "DEL: {} {}", d.out, d.stderr);
    }
    node.assert_empty("after DEL");
}

#[test]
fn attaches_over_tcp_with_mutual_tls() {
    require_cni!();
    if !system_tests::tls::have_openssl() {
        eprintln!("SKIP: openssl not installed");
        return;
    }
    use system_tests::tls::{issue, make_ca};
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let d = dir.0.clone();
    make_ca(&d, "ca");
    make_ca(&d, "rogue-ca");
    issue(&d, "ca", "server", "localhost", "serverAuth");
    issue(&d, "ca", "client", "cni", "clientAuth");
    issue(&d, "rogue-ca", "rogue", "intruder", "clientAuth");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = |f: &str| d.join(f).display().to_string();
    let control = format!(
        "[control.tcp]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    );
    let node = Node::start_with(dir, &control);
    let tls_conf = |who: &str| {
        let mut c = node.conf("1.0.0", "kernel");
        c.as_object_mut().unwrap().remove("socket");
        c["tls"] = json!({
            "address": format!("127.0.0.1:{port}"),
            "serverName": "localhost",
            "cert": p(&format!("{who}.pem")),
            "key": p(&format!("{who}.key")),
            "ca": p("ca.pem"),
        });
        c
    };
    let ns = Netns::new(&format!("{tag}a"));
    let pa = format!("/run/netns/{}", ns.name);
    let a = Att {
        id: &format!("{tag}-ctr"),
        netns: &pa,
        ifname: "eth0",
    };

    // A certificate from another CA: refused as a configuration to fix (not a
    // switch to wait for), nothing made.
    let r = cni("ADD", &a, &tls_conf("rogue"));
    assert_eq!(r.code(), 7, "{}", r.out);
    assert!(
        r.out["details"].as_str().unwrap().contains("certificate"),
        "{}",
        r.out
    );
    node.assert_empty("after a refused TLS client");

    let conf = tls_conf("client");
    let r = cni("ADD", &a, &conf);
    assert!(r.ok, "ADD over TLS: {} {}", r.out, r.stderr);
    let (ports, eps) = node.ports_and_endpoints();
    assert_eq!((ports.len(), eps), (1, 1));
    let chk = cni("CHECK", &a, &with_prev(&conf, &r.out));
    assert!(chk.ok, "CHECK over TLS: {} {}", chk.out, chk.stderr);
    let d = cni("DEL", &a, &conf);
    assert!(d.ok, "DEL over TLS: {} {}", d.out, d.stderr);
    node.assert_empty("after DEL over TLS");
}

#[test]
fn two_vhost_user_pods_stream_with_counters_that_agree() {
    require_cni!();
    if !have_testpmd() {
        eprintln!("SKIP: two virtio_user pods need dpdk-testpmd");
        return;
    }
    let tag = unique_tag();
    let node = Node::start(&tag);
    let ns = Netns::new(&format!("{tag}a"));
    let p = format!("/run/netns/{}", ns.name);
    let conf = node.conf("1.1.0", "vhostuser");
    let (id1, id2) = (format!("{tag}-tx"), format!("{tag}-rx"));
    let a1 = Att {
        id: &id1,
        netns: &p,
        ifname: "net1",
    };
    let a2 = Att {
        id: &id2,
        netns: &p,
        ifname: "net2",
    };
    let r1 = cni("ADD", &a1, &conf);
    let r2 = cni("ADD", &a2, &conf);
    assert!(r1.ok && r2.ok, "{} {}", r1.out, r2.out);
    let sock = |r: &Outcome| {
        r.out["interfaces"][0]["socketPath"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mac = |r: &Outcome| r.out["interfaces"][0]["mac"].as_str().unwrap().to_owned();
    let port = |r: &Outcome| {
        r.out["interfaces"][0]["socketPath"]
            .as_str()
            .unwrap()
            .split('/')
            .rev()
            .nth(1)
            .map(|h| format!("vsw{h}"))
            .unwrap()
    };

    // Pod 2 receives; pod 1 sends UDP from its address to pod 2's MAC and
    // address for two seconds.
    let rx = TestPmd::start(
        Path::new(&sock(&r2)),
        &mac(&r2),
        &format!("{tag}rx"),
        false,
        "rxonly",
        &[],
    );
    std::thread::sleep(Duration::from_secs(2));
    let tx_ips = format!("--tx-ip={},{}", addr_of(&r1.out), addr_of(&r2.out));
    let peer = format!("--eth-peer=0,{}", mac(&r2));
    let mut tx = TestPmd::start(
        Path::new(&sock(&r1)),
        &mac(&r1),
        &format!("{tag}tx"),
        false,
        "txonly",
        &[&peer, &tx_ips],
    );
    std::thread::sleep(Duration::from_secs(3));
    // Pod 1 stops sending but stays connected: what is still in its ring reaches
    // the switch, and pod 2 keeps receiving until the switch's counters settle.
    tx.command("stop");
    let settled = |stats: &Value| {
        (
            counter(port_stats(stats, &port(&r1)), "rx_packets"),
            counter(port_stats(stats, &port(&r2)), "tx_packets"),
        )
    };
    let stats_file = node.vswitchd.as_ref().unwrap().stats_file.clone();
    let mut last = settled(&read_json(&stats_file));
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(300));
        let now = settled(&read_json(&stats_file));
        if now == last {
            break;
        }
        last = now;
    }
    let (received, _) = rx.totals();
    let (_, sent) = tx.totals();
    let stats = read_json(&node.vswitchd.as_ref().unwrap().stats_file);
    let sw_rx = counter(port_stats(&stats, &port(&r1)), "rx_packets");
    let sw_tx = counter(port_stats(&stats, &port(&r2)), "tx_packets");
    let drops: u64 = stats["drops"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .sum();
    eprintln!("pod 1 sent {sent}, the switch received {sw_rx}, sent {sw_tx}, dropped {drops}; pod 2 received {received}");
    assert!(received > 1000, "the stream did not flow: {stats}");
    assert_eq!(sw_rx, sent, "what pod 1 sent is what the switch received");
    assert_eq!(
        sw_rx,
        sw_tx + drops,
        "every packet forwarded or counted as a drop: {}",
        stats["drops"]
    );
    assert_eq!(
        received, sw_tx,
        "what the switch sent is what pod 2 received"
    );

    for a in [&a1, &a2] {
        assert!(cni("DEL", a, &conf).ok);
    }
    node.assert_empty("after DEL");
}

#[test]
fn del_waits_for_the_switch() {
    require_cni!();
    let tag = unique_tag();
    let mut node = Node::start(&tag);
    let ns = Netns::new(&format!("{tag}a"));
    let p = format!("/run/netns/{}", ns.name);
    let a = Att {
        id: &format!("{tag}-ctr"),
        netns: &p,
        ifname: "eth0",
    };
    let conf = node.conf("1.0.0", "kernel");
    let r = cni("ADD", &a, &conf);
    assert!(r.ok, "ADD: {} {}", r.out, r.stderr);

    // The switch is down: DEL says to retry and keeps what the switch's state
    // still names (so the switch can start again) and the lease its endpoint
    // still holds.
    node.stop_switch();
    let d = cni("DEL", &a, &conf);
    assert_eq!(d.code(), 11, "{}", d.out);
    assert!(
        host_link(a.id, "eth0"),
        "the veth the switch's state names is kept"
    );
    assert_eq!(node.leases().len(), 1);

    // Back up, on its state file with the port: the retried DEL finishes.
    node.start_switch();
    let d = cni("DEL", &a, &conf);
    assert!(d.ok, "DEL: {} {}", d.out, d.stderr);
    node.assert_empty("after the retried DEL");
    assert!(!host_link(a.id, "eth0"));
}

/// Issue #27: a pod deleted while the switch was down (its namespace gone, so
/// its veth too) does not keep the switch from starting; the other pods
/// forward, its port is listed as not plugged, and its DEL cleans up.
#[test]
fn a_pod_gone_while_the_switch_was_down_is_deleted_after_restart() {
    require_cni!();
    let tag = unique_tag();
    let mut node = Node::start(&tag);
    let nss: Vec<Netns> = ["a", "b", "c"]
        .iter()
        .map(|s| Netns::new(&format!("{tag}{s}")))
        .collect();
    let paths: Vec<String> = nss
        .iter()
        .map(|n| format!("/run/netns/{}", n.name))
        .collect();
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|s| format!("{tag}-ctr-{s}"))
        .collect();
    let atts: Vec<Att> = (0..3)
        .map(|i| Att {
            id: &ids[i],
            netns: &paths[i],
            ifname: "eth0",
        })
        .collect();
    let conf = node.conf("1.0.0", "kernel");
    let mut ips = Vec::new();
    for a in &atts {
        let r = cni("ADD", a, &conf);
        assert!(r.ok, "ADD {}: {} {}", a.id, r.out, r.stderr);
        ips.push(addr_of(&r.out));
    }
    assert!(ping(&nss[0], &ips[2]), "pod a cannot ping pod c");

    node.stop_switch();
    let mut nss = nss.into_iter();
    let (nsa, nsb, nsc) = (
        nss.next().unwrap(),
        nss.next().unwrap(),
        nss.next().unwrap(),
    );
    drop(nsb);
    for _ in 0..100 {
        if !host_link(atts[1].id, "eth0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !host_link(atts[1].id, "eth0"),
        "pod b's veth outlived its netns"
    );

    node.start_switch();
    assert!(
        ping(&nsa, &ips[2]),
        "pod a cannot ping pod c after the restart"
    );
    assert!(
        ping(&nsc, &ips[0]),
        "pod c cannot ping pod a after the restart"
    );
    let port_b = vswitch_cni::names::AttachmentNames::new(atts[1].id, "eth0").port;
    let ports: Value =
        serde_json::from_str(&vswitchctl_ok(&node.socket(), &["port", "list", "--json"])).unwrap();
    let b = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["not_plugged"]
                .as_str()
                .is_some_and(|w| w.contains(&port_b))
        })
        .unwrap_or_else(|| panic!("pod b's port is not listed as not plugged: {ports}"));
    assert_eq!(b["link_up"], false, "{b}");
    assert!(node.log().contains("not plugged"), "{}", node.log());

    // Its endpoint can be deleted on its own (it is in the state, not in the
    // tables); then the DEL finds only the port left.
    let state = node.state();
    let ep = state["endpoints"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["port"] == b["name"]))
        .unwrap_or_else(|| panic!("pod b's endpoint is not in the state: {state}"))
        .clone();
    vswitchctl_ok(
        &node.socket(),
        &[
            "endpoint",
            "del",
            "--network",
            ep["network"].as_str().unwrap(),
            "--mac",
            ep["mac"].as_str().unwrap(),
        ],
    );
    let d = cni("DEL", &atts[1], &conf);
    assert!(d.ok, "DEL b: {} {}", d.out, d.stderr);
    let (ports, eps) = node.ports_and_endpoints();
    assert_eq!((ports.len(), eps), (2, 2), "{ports:?}");
    assert!(ping(&nsa, &ips[2]), "pod a cannot ping pod c after b's DEL");
    for a in [&atts[0], &atts[2]] {
        let d = cni("DEL", a, &conf);
        assert!(d.ok, "DEL {}: {} {}", a.id, d.out, d.stderr);
    }
    node.assert_empty("after DEL");
}

#[test]
fn ethdevs_used_up_refuse_vhost_user_pods_but_not_kernel_pods() {
    require_cni!();
    let tag = unique_tag();
    let node = Node::start(&tag);
    let sock = node.dir.join("ctl.sock");
    // Fill the switch's DPDK port table (Debian's DPDK holds 32) with null ports.
    let mut filled = Vec::new();
    let refusal = loop {
        let name = format!("fill{}", filled.len());
        let out = vswitchctl(&sock, &["port", "add", &name, "--profile", "null"]);
        if !out.status.success() {
            break format!("{}{}", text(&out.stdout), text(&out.stderr));
        }
        filled.push(name);
        assert!(filled.len() <= 1024, "no port limit met");
    };
    let n = filled.len();
    assert!(
        refusal.contains("RTE_MAX_ETHPORTS") && refusal.contains(&format!("({n} of {n}")),
        "{refusal}"
    );
    // A vhost-user pod needs an ethdev: its ADD fails with the same reason,
    // and leaves nothing behind.
    let ns = Netns::new(&format!("{tag}a"));
    let p = format!("/run/netns/{}", ns.name);
    let v = Att {
        id: &format!("{tag}-full"),
        netns: &p,
        ifname: "net1",
    };
    let r = cni("ADD", &v, &node.conf("1.0.0", "vhostuser"));
    assert_eq!(r.code(), 7, "{}", r.out);
    let said = r.out.to_string();
    assert!(
        said.contains("RTE_MAX_ETHPORTS") && said.contains(&format!("{n} of {n}")),
        "{said}"
    );
    assert!(node.leases().is_empty(), "a lease is left");
    let left: Vec<_> = std::fs::read_dir(node.dir.join("vhost"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // A kernel pod uses none: it attaches, and its DEL leaves nothing.
    let k = Att {
        id: &format!("{tag}-kern"),
        netns: &p,
        ifname: "eth0",
    };
    let kconf = node.conf("1.0.0", "kernel");
    let r = cni("ADD", &k, &kconf);
    assert!(
        r.ok,
        "kernel ADD with every ethdev in use: {} {}",
        r.out, r.stderr
    );
    assert!(host_link(k.id, "eth0"));
    let d = cni("DEL", &k, &with_prev(&kconf, &r.out));
    assert!(d.ok, "DEL: {} {}", d.out, d.stderr);
    assert!(!host_link(k.id, "eth0"), "the veth is left");
    for name in &filled {
        vswitchctl_ok(&sock, &["port", "del", name]);
    }
    node.assert_empty("after the kernel pod's DEL");
}

/// How many kernel pods [`more_kernel_pods_than_ethdevs_ping_each_other`]
/// attaches: more than Debian's DPDK's 32 ethdevs (`KERNEL_PODS` overrides).
fn kernel_pods() -> usize {
    std::env::var("KERNEL_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

#[test]
fn more_kernel_pods_than_ethdevs_ping_each_other() {
    require_cni!();
    let tag = unique_tag();
    let node = Node::start(&tag);
    let conf = node.conf("1.0.0", "kernel");
    let n = kernel_pods();
    let nss: Vec<Netns> = (0..n).map(|i| Netns::new(&format!("{tag}{i}"))).collect();
    let paths: Vec<String> = nss
        .iter()
        .map(|ns| format!("/run/netns/{}", ns.name))
        .collect();
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-p{i}")).collect();
    let atts: Vec<Att> = (0..n)
        .map(|i| Att {
            id: &ids[i],
            netns: &paths[i],
            ifname: "eth0",
        })
        .collect();
    let mut ips = Vec::new();
    let mut results = Vec::new();
    for (i, a) in atts.iter().enumerate() {
        let r = cni("ADD", a, &conf);
        assert!(r.ok, "ADD of pod {i}: {} {}", r.out, r.stderr);
        ips.push(addr_of(&r.out));
        results.push(r.out);
    }
    let (ports, eps) = node.ports_and_endpoints();
    assert_eq!((ports.len(), eps), (n, n), "{ports:?}");
    // Every pod reaches the next, and the last the first: n ports in use, each
    // receiving and sending.
    for i in 0..n {
        let to = &ips[(i + 1) % n];
        assert!(ping(&nss[i], to), "pod {i} cannot ping {to}");
    }
    let stats: Value =
        serde_json::from_str(&vswitchctl_ok(&node.socket(), &["stats", "--json"])).unwrap();
    for p in stats["ports"].as_array().unwrap() {
        assert!(
            counter(p, "rx_packets") > 0 && counter(p, "tx_packets") > 0,
            "{p}"
        );
    }
    for (i, a) in atts.iter().enumerate() {
        let d = cni("DEL", a, &with_prev(&conf, &results[i]));
        assert!(d.ok, "DEL of pod {i}: {} {}", d.out, d.stderr);
    }
    node.assert_empty("after every DEL");
    for a in &atts {
        assert!(!host_link(a.id, "eth0"), "{} left its veth", a.id);
    }
}
