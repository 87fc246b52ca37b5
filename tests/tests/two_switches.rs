//! Two `vswitchd` processes, one worker each, joined by a veth underlay. Pods on both
//! switches in the same virtual network talk over VXLAN and over Geneve; a second
//! network with the very same pod MACs and IPs stays isolated from the first.

use system_tests::*;

const POD1_MAC: &str = "02:00:00:00:01:01";
const POD2_MAC: &str = "02:00:00:00:02:01";

struct Node {
    ip: &'static str,
    mac: &'static str,
}

const N1: Node = Node {
    ip: "192.0.2.1",
    mac: "02:00:00:00:ff:01",
};
const N2: Node = Node {
    ip: "192.0.2.2",
    mac: "02:00:00:00:ff:02",
};

/// One switch's configuration: its pods `blue` and `red` on af_packet ports, the
/// other node's pods as remote endpoints behind `peer`.
/// The interfaces and pod MACs of one node.
struct NodeSide<'a> {
    uplink: &'a str,
    blue_if: &'a str,
    red_if: &'a str,
    local_mac: &'a str,
    remote_mac: &'a str,
}

fn config(dir: &TempDir, me: &Node, peer: &Node, side: &NodeSide<'_>, encap: &str) -> String {
    let (local_ip, remote_ip) = if me.ip == N1.ip {
        ("10.1.0.2", "10.1.0.3")
    } else {
        ("10.1.0.3", "10.1.0.2")
    };
    let NodeSide {
        uplink,
        blue_if,
        red_if,
        local_mac,
        remote_mac,
    } = side;
    let mut c = format!(
        r#"
[eal]
memory_mb = 256
in_memory = true
[dataplane]
workers = [{core}]
stats_file = "{stats}"
stats_interval_ms = 100
[[port]]
name = "uplink"
profile = "af_packet"
iface = "{uplink}"
[[port]]
name = "blue"
profile = "af_packet"
iface = "{blue_if}"
[[port]]
name = "red"
profile = "af_packet"
iface = "{red_if}"
[underlay]
uplink = "uplink"
local_vtep_ip = "{me_ip}"
local_mac = "{me_mac}"
mtu = 1500
on_link = "192.0.2.0/24"
"#,
        core = if std::thread::available_parallelism().unwrap().get() > 1 {
            1
        } else {
            0
        },
        stats = dir.join("stats.json").display(),
        me_ip = me.ip,
        me_mac = me.mac,
    );
    for (name, vni) in [("blue", 100), ("red", 200)] {
        c.push_str(&format!(
            r#"
[[network]]
name = "{name}"
vni = {vni}
encap = "{encap}"
tenant = "{name}"
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "02:00:00:00:aa:01"
vteps = ["{peer_ip}"]
[[endpoint]]
network = "{name}"
mac = "{local_mac}"
ips = ["{local_ip}"]
port = "{name}"
[[remote_endpoint]]
network = "{name}"
mac = "{remote_mac}"
ips = ["{remote_ip}"]
vtep = "{peer_ip}"
"#,
            peer_ip = peer.ip,
        ));
    }
    c
}

fn ping(ns: &Netns, to: &str) -> bool {
    let _ = ns.try_exec(&["ping", "-c", "2", "-i", "0.3", "-W", "1", to]);
    ns.try_exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", to])
        .status
        .success()
}

fn two_switches(encap: &str) {
    let tag = unique_tag();
    let dir1 = TempDir::new(&format!("{tag}a"));
    let dir2 = TempDir::new(&format!("{tag}b"));
    // The underlay: a veth pair whose two ends are the switches' uplinks.
    let (u1, u2) = (format!("{tag}u1"), format!("{tag}u2"));
    ip(&["link", "add", &u1, "type", "veth", "peer", "name", &u2]);
    let _underlay = LinkGuard(u1.clone());
    for u in [&u1, &u2] {
        run(
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{u}.disable_ipv6=1")],
        );
        run("ethtool", &["-K", u, "gro", "off"]);
        ip(&["link", "set", u, "up"]);
    }
    // Same MACs and addresses in both networks: only the VNI tells them apart.
    let blue1 = VethPod::new(&tag, 1, POD1_MAC, "10.1.0.2/24");
    let red1 = VethPod::new(&tag, 2, POD1_MAC, "10.1.0.2/24");
    let blue2 = VethPod::new(&tag, 3, POD2_MAC, "10.1.0.3/24");
    let red2 = VethPod::new(&tag, 4, POD2_MAC, "10.1.0.3/24");
    for p in [&blue1, &red1, &blue2, &red2] {
        p.ns.exec(&["ip", "link", "set", "eth0", "mtu", "1450"]);
    }
    // Node 2 runs in a namespace of its own, as a second machine would (and as the
    // af_packet PMD needs: see `Vswitchd::start_in`).
    let node2 = Netns::new(&format!("{tag}n2"));
    for link in [&u2, &blue2.host_if, &red2.host_if] {
        ip(&["link", "set", link, "netns", &node2.name]);
        node2.exec(&["ip", "link", "set", link, "up"]);
    }
    let sw1 = Vswitchd::start(
        &dir1,
        &config(
            &dir1,
            &N1,
            &N2,
            &NodeSide {
                uplink: &u1,
                blue_if: &blue1.host_if,
                red_if: &red1.host_if,
                local_mac: POD1_MAC,
                remote_mac: POD2_MAC,
            },
            encap,
        ),
    );
    let sw2 = Vswitchd::start_in(
        &dir2,
        &config(
            &dir2,
            &N2,
            &N1,
            &NodeSide {
                uplink: &u2,
                blue_if: &blue2.host_if,
                red_if: &red2.host_if,
                local_mac: POD2_MAC,
                remote_mac: POD1_MAC,
            },
            encap,
        ),
        Some(&node2.name),
    );
    assert!(
        ping(&blue1.ns, "10.1.0.3"),
        "blue: node 1 -> node 2\n{}",
        sw1.log_text()
    );
    assert!(ping(&blue2.ns, "10.1.0.2"), "blue: node 2 -> node 1");
    assert!(ping(&red1.ns, "10.1.0.3"), "red: node 1 -> node 2");
    let red2_before = red2.ns.if_stat("eth0", "rx_packets");
    let red1_before = red1.ns.if_stat("eth0", "rx_packets");
    tcp_transfer(&dir1, &blue1.ns, &blue2.ns, "10.1.0.3", 4_000_000);
    tcp_transfer(&dir1, &blue2.ns, &blue1.ns, "10.1.0.2", 4_000_000);
    assert_eq!(
        red2.ns.if_stat("eth0", "rx_packets"),
        red2_before,
        "blue traffic leaked into red"
    );
    assert_eq!(red1.ns.if_stat("eth0", "rx_packets"), red1_before);
    // And red still works after all that.
    tcp_transfer(&dir2, &red1.ns, &red2.ns, "10.1.0.3", 1_000_000);
    let s1 = sw1.stop();
    let s2 = sw2.stop();
    for s in [&s1, &s2] {
        assert_eq!(s["drops"]["malformed"], 0, "{s}");
        assert_eq!(s["drops"]["unknown_vni"], 0, "{s}");
        assert_eq!(s["drops"]["encap_mismatch"], 0, "{s}");
        assert!(counter(port_stats(s, "uplink"), "tx_packets") > 2500);
    }
}

/// Removes a link on drop.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

#[test]
fn two_switches_over_vxlan() {
    require_root!();
    two_switches("vxlan");
}

#[test]
fn two_switches_over_geneve() {
    require_root!();
    two_switches("geneve");
}
