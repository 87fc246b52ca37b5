//! Interop with Linux's own tunnels: a kernel `vxlan` or `geneve` device in another
//! namespace is the remote VTEP. A pod behind `vswitchd` pings and opens TCP
//! connections to an address behind the kernel device, both directions, over an
//! IPv4 underlay (VXLAN and Geneve) and an IPv6 underlay (VXLAN). The switch
//! resolves the underlay next hop by ARP/ND itself, answers ARP for the VTEP address,
//! and answers "fragmentation needed" when a pod sends more than the overlay carries.

use system_tests::*;

const POD_MAC: &str = "02:00:00:00:01:01";
const REMOTE_MAC: &str = "02:00:00:00:02:01";
const GW_MAC: &str = "02:00:00:00:aa:01";
const UPLINK_MAC: &str = "02:00:00:00:ff:01";

struct Underlay {
    switch_ip: &'static str,
    remote_cidr: &'static str,
    remote_ip: &'static str,
    on_link: &'static str,
    /// The largest inner IP packet: 1500 minus outer IP, UDP, tunnel and inner
    /// Ethernet headers.
    overlay_mtu: u16,
}

const V4: Underlay = Underlay {
    switch_ip: "192.0.2.1",
    remote_cidr: "192.0.2.2/24",
    remote_ip: "192.0.2.2",
    on_link: "192.0.2.0/24",
    overlay_mtu: 1450,
};

const V6: Underlay = Underlay {
    switch_ip: "fd00:50::1",
    remote_cidr: "fd00:50::2/64",
    remote_ip: "fd00:50::2",
    on_link: "fd00:50::/64",
    overlay_mtu: 1430,
};

struct Lab {
    pod: VethPod,
    remote: RemoteVtepHost,
    dir: TempDir,
    switch: Option<Vswitchd>,
}

fn lab(kind: KernelTunnel, u: &Underlay, pod_mtu: u16) -> Lab {
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let pod = VethPod::new(&tag, 1, POD_MAC, "10.1.0.2/24");
    pod.ns
        .exec(&["ip", "link", "set", "eth0", "mtu", &pod_mtu.to_string()]);
    let remote = RemoteVtepHost::new(
        &tag,
        kind,
        100,
        u.remote_cidr,
        u.switch_ip,
        REMOTE_MAC,
        "10.1.0.3/24",
    );
    remote.ns.exec(&[
        "ip",
        "link",
        "set",
        "tun0",
        "mtu",
        &u.overlay_mtu.to_string(),
    ]);
    let encap = match kind {
        KernelTunnel::Vxlan => "vxlan",
        KernelTunnel::Geneve => "geneve",
    };
    let config = format!(
        r#"
[eal]
memory_mb = 256
in_memory = true
[dataplane]
workers = [{core}]
stats_file = "{stats}"
stats_interval_ms = 100
[[port]]
name = "pod1"
profile = "af_packet"
iface = "{pod_if}"
[[port]]
name = "uplink"
profile = "af_packet"
iface = "{uplink_if}"
[underlay]
uplink = "uplink"
local_vtep_ip = "{switch_ip}"
local_mac = "{UPLINK_MAC}"
mtu = 1500
on_link = "{on_link}"
[[network]]
name = "blue"
vni = 100
encap = "{encap}"
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "{GW_MAC}"
vteps = ["{remote_ip}"]
[[endpoint]]
network = "blue"
mac = "{POD_MAC}"
ips = ["10.1.0.2"]
port = "pod1"
[[remote_endpoint]]
network = "blue"
mac = "{REMOTE_MAC}"
ips = ["10.1.0.3"]
vtep = "{remote_ip}"
"#,
        core = if std::thread::available_parallelism().unwrap().get() > 1 {
            1
        } else {
            0
        },
        stats = dir.join("stats.json").display(),
        pod_if = pod.host_if,
        uplink_if = remote.host_if,
        switch_ip = u.switch_ip,
        on_link = u.on_link,
        remote_ip = u.remote_ip,
    );
    let switch = Vswitchd::start(&dir, &config);
    Lab {
        pod,
        remote,
        dir,
        switch: Some(switch),
    }
}

fn ping_ok(ns: &Netns, to: &str, l: &Lab) {
    // The first packets may meet an unresolved underlay neighbour: a warm-up ping
    // lets the switch's ARP/ND request complete.
    let _ = ns.try_exec(&["ping", "-c", "2", "-i", "0.3", "-W", "1", to]);
    let out = ns.try_exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", to]);
    assert!(
        out.status.success(),
        "ping {to} from {}:\n{}{}\nswitch counters: {}\nlog: {}",
        ns.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(l.dir.join("stats.json")).unwrap_or_default(),
        l.switch.as_ref().map(|s| s.log_text()).unwrap_or_default(),
    );
}

fn both_ways(kind: KernelTunnel, u: &Underlay) {
    let mut l = lab(kind, u, u.overlay_mtu);
    ping_ok(&l.pod.ns, "10.1.0.3", &l);
    ping_ok(&l.remote.ns, "10.1.0.2", &l);
    tcp_transfer(&l.dir, &l.pod.ns, &l.remote.ns, "10.1.0.3", 4_000_000);
    tcp_transfer(&l.dir, &l.remote.ns, &l.pod.ns, "10.1.0.2", 4_000_000);
    let stats = l.switch.take().unwrap().stop();
    let pod = port_stats(&stats, "pod1");
    let uplink = port_stats(&stats, "uplink");
    assert!(counter(pod, "rx_packets") > 2500, "{stats}");
    assert!(counter(uplink, "tx_packets") > 2500, "{stats}");
    // Encapsulation adds the outer headers to every packet the pod sent.
    assert!(counter(uplink, "tx_bytes") > counter(pod, "rx_bytes"));
    assert_eq!(stats["drops"]["malformed"], 0, "{stats}");
    assert_eq!(stats["drops"]["tx_full"], 0, "{stats}");
}

#[test]
fn vxlan_ipv4_underlay_with_a_kernel_vtep() {
    require_root!();
    both_ways(KernelTunnel::Vxlan, &V4);
}

#[test]
fn geneve_ipv4_underlay_with_a_kernel_vtep() {
    require_root!();
    if !kernel_has_geneve() {
        eprintln!("SKIP: this kernel has no geneve driver (CONFIG_GENEVE); the two-switch test covers Geneve");
        return;
    }
    both_ways(KernelTunnel::Geneve, &V4);
}

#[test]
fn vxlan_ipv6_underlay_with_a_kernel_vtep() {
    require_root!();
    both_ways(KernelTunnel::Vxlan, &V6);
}

#[test]
fn too_big_for_the_overlay_gets_fragmentation_needed() {
    require_root!();
    // The pod believes its link carries 1500 bytes; the overlay carries 1450.
    let mut l = lab(KernelTunnel::Vxlan, &V4, 1500);
    ping_ok(&l.pod.ns, "10.1.0.3", &l);
    let out = l.pod.ns.try_exec(&[
        "ping", "-c", "1", "-M", "do", "-s", "1460", "-W", "2", "10.1.0.3",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mtu = 1450"),
        "no fragmentation-needed answer:\n{text}"
    );
    let stats = l.switch.take().unwrap().stop();
    assert!(
        stats["drops"]["mtu_exceeded"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(stats["generated"].as_u64().unwrap() >= 1, "{stats}");
}
