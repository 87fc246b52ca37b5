//! Interop with Linux's own tunnels: a kernel `vxlan` or `geneve` device in another
//! namespace is the remote VTEP. A pod behind `vswitchd` pings and opens TCP
//! connections to an address behind the kernel device, both directions, over an
//! IPv4 underlay (VXLAN and Geneve) and an IPv6 underlay (VXLAN). The switch
//! resolves the underlay next hop by ARP/ND itself, answers ARP for the VTEP address,
//! and answers "fragmentation needed" when a pod sends more than the overlay carries.
//!
//! Refusals, from real senders: a Geneve OAM packet (O bit) and a VXLAN packet
//! without the I flag, sent as UDP by a socket on the remote host, are counted
//! under their own names and never reach the pod; an underlay MTU above the
//! uplink interface's is refused at start and through the API; a frame longer
//! than a pod port's MTU is counted as `tx_oversize`, not as sent.

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
    let encap = match kind {
        KernelTunnel::Vxlan => "vxlan",
        KernelTunnel::Geneve => "geneve",
    };
    let p = parts(kind, u, pod_mtu);
    let config = lab_config(&p, u, &LabOptions::encap(encap));
    start(p, &config)
}

/// What a lab is made of before the switch starts.
struct Parts {
    pod: VethPod,
    remote: RemoteVtepHost,
    dir: TempDir,
}

fn parts(kind: KernelTunnel, u: &Underlay, pod_mtu: u16) -> Parts {
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
    Parts { pod, remote, dir }
}

fn start(p: Parts, config: &str) -> Lab {
    let switch = Vswitchd::start(&p.dir, config);
    Lab {
        pod: p.pod,
        remote: p.remote,
        dir: p.dir,
        switch: Some(switch),
    }
}

/// How the switch of a lab is set up.
struct LabOptions {
    /// The network's encapsulation: the kernel device's, or another for a lab
    /// whose tunnel packets a test crafts itself.
    encap: &'static str,
    underlay_mtu: u16,
    /// With the gRPC API (`[control]`, its socket in the lab's directory).
    control: bool,
}

impl LabOptions {
    fn encap(encap: &'static str) -> Self {
        LabOptions {
            encap,
            underlay_mtu: 1500,
            control: false,
        }
    }
}

fn lab_config(p: &Parts, u: &Underlay, o: &LabOptions) -> String {
    let control = if o.control {
        format!(
            "[control]\nsocket = \"{}\"\nstate_file = \"{}\"\n",
            p.dir.join("ctl.sock").display(),
            p.dir.join("state.json").display()
        )
    } else {
        String::new()
    };
    format!(
        r#"
[eal]
memory_mb = 256
in_memory = true
[dataplane]
workers = [{core}]
stats_file = "{stats}"
stats_interval_ms = 100
{control}
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
mtu = {underlay_mtu}
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
        stats = p.dir.join("stats.json").display(),
        pod_if = p.pod.host_if,
        uplink_if = p.remote.host_if,
        switch_ip = u.switch_ip,
        on_link = u.on_link,
        remote_ip = u.remote_ip,
        encap = o.encap,
        underlay_mtu = o.underlay_mtu,
    )
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

// ------------------------------------------------------------------ refusals

/// An Ethernet frame from the remote endpoint to the pod: UDP 10.1.0.3:40000 >
/// 10.1.0.2:9 (discard), what a tunnel packet of these tests carries.
fn inner_frame() -> Vec<u8> {
    let mac = |s: &str| -> Vec<u8> {
        s.split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    };
    let payload = [0x5au8; 18];
    let udp_len = 8 + payload.len();
    let total = (20 + udp_len) as u16;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 3, 10, 1, 0, 2,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = mac(POD_MAC);
    f.extend(mac(REMOTE_MAC));
    f.extend([0x08, 0x00]);
    f.extend(ip);
    f.extend(40000u16.to_be_bytes());
    f.extend(9u16.to_be_bytes());
    f.extend((udp_len as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(payload);
    f
}

/// A whole Geneve OAM frame as the remote host would put it on the underlay:
/// Ethernet to the switch, IPv4 192.0.2.2 > 192.0.2.1, UDP to 6081, Geneve with
/// the O bit and VNI 100, then [`inner_frame`]. (Checksums are not read.)
fn geneve_oam_frame() -> Vec<u8> {
    let mut geneve = vec![0x00, 0x80, 0x65, 0x58, 0, 0, 100, 0];
    geneve.extend(inner_frame());
    let udp_len = 8 + geneve.len();
    let mut f = vec![
        0x02, 0, 0, 0, 0xff, 0x01, 0x02, 0, 0, 0, 0xff, 0x02, 0x08, 0x00,
    ];
    f.extend([
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 2, 192, 0, 2, 1,
    ]);
    f[16..18].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    f.extend(50000u16.to_be_bytes());
    f.extend(6081u16.to_be_bytes());
    f.extend((udp_len as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(geneve);
    f
}

/// Sends `payload` `count` times from the remote host to the switch's VTEP
/// address, UDP port `port`, through an ordinary socket: the kernel adds the outer
/// IP and UDP headers (and resolves the switch's MAC by ARP) as for any sender.
fn send_udp(l: &Lab, port: u16, payload: &[u8], count: usize) {
    const SENDER: &str = "import socket, sys, time\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        for _ in range(int(sys.argv[4])):\n    \
            s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], int(sys.argv[3])))\n    \
            time.sleep(0.02)\n";
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    l.remote.ns.exec(&[
        "python3",
        "-c",
        SENDER,
        &hex,
        V4.switch_ip,
        &port.to_string(),
        &count.to_string(),
    ]);
}

/// The pod answers the crafted packets (ICMP port unreachable): a permanent
/// neighbour entry keeps its ARP request, and the switch's answer, from
/// adding to what it receives.
fn pin_remote_neighbour(l: &Lab) {
    l.pod.ns.exec(&[
        "ip",
        "neigh",
        "replace",
        "10.1.0.3",
        "lladdr",
        REMOTE_MAC,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
}

/// Frames the pod's interface has received.
fn pod_rx(l: &Lab) -> u64 {
    l.pod.ns.if_stat("eth0", "rx_packets")
}

/// Waits up to 3 s for the pod to have received `want` frames; returns the count.
fn pod_rx_reaches(l: &Lab, want: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let n = pod_rx(l);
        if n >= want || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// RFC 8926 §3.4: the payload of a Geneve packet with the O bit is a control
/// message. The same packet reaches the pod without the bit and not with it,
/// and is counted as `geneve_oam`. (The network is Geneve; the remote host's
/// kernel device, VXLAN, only carries the underlay: this kernel may lack geneve.)
#[test]
fn geneve_oam_from_a_real_sender_is_counted_not_delivered() {
    require_root!();
    let p = parts(KernelTunnel::Vxlan, &V4, V4.overlay_mtu);
    let config = lab_config(&p, &V4, &LabOptions::encap("geneve"));
    let mut l = start(p, &config);
    pin_remote_neighbour(&l);
    let inner = inner_frame();
    // Version 0, no options, flags, Ethernet inside, VNI 100.
    let geneve = |flags: u8| {
        let mut h = vec![0x00, flags, 0x65, 0x58, 0, 0, 100, 0];
        h.extend_from_slice(&inner);
        h
    };
    let before = pod_rx(&l);
    send_udp(&l, 6081, &geneve(0x00), 5);
    let got = pod_rx_reaches(&l, before + 5);
    assert_eq!(got, before + 5, "data packets reach the pod");
    send_udp(&l, 6081, &geneve(0x80), 7);
    // O and C together (no option present to refuse): still OAM.
    send_udp(&l, 6081, &geneve(0xc0), 2);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(pod_rx(&l), got, "no OAM payload reaches the pod");
    let stats = l.switch.take().unwrap().stop();
    assert_eq!(stats["drops"]["geneve_oam"], 9, "{stats}");
    assert_eq!(stats["drops"]["malformed"], 0, "{stats}");
}

/// RFC 7348 §5: without the I flag the VNI is not valid. Such a packet is counted
/// as `vxlan_no_vni_flag`, not `malformed`, and never reaches the pod.
#[test]
fn vxlan_without_the_i_flag_is_counted_under_its_own_name() {
    require_root!();
    let mut l = lab(KernelTunnel::Vxlan, &V4, V4.overlay_mtu);
    pin_remote_neighbour(&l);
    let inner = inner_frame();
    let vxlan = |flags: u8| {
        let mut h = vec![flags, 0, 0, 0, 0, 0, 100, 0];
        h.extend_from_slice(&inner);
        h
    };
    let before = pod_rx(&l);
    send_udp(&l, 4789, &vxlan(0x08), 4);
    let got = pod_rx_reaches(&l, before + 4);
    assert_eq!(got, before + 4, "with the I flag the packets reach the pod");
    send_udp(&l, 4789, &vxlan(0x00), 6);
    // VXLAN-GBP's G bit alone: still no I.
    send_udp(&l, 4789, &vxlan(0x80), 1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        pod_rx(&l),
        got,
        "nothing without the I flag reaches the pod"
    );
    let stats = l.switch.take().unwrap().stop();
    assert_eq!(stats["drops"]["vxlan_no_vni_flag"], 7, "{stats}");
    assert_eq!(stats["drops"]["malformed"], 0, "{stats}");
}

/// Sets the MTU of the uplink's link (both ends of the veth) to `mtu`.
fn uplink_link_mtu(p: &Parts, mtu: u16) {
    let mtu = mtu.to_string();
    ip(&["link", "set", &p.remote.host_if, "mtu", &mtu]);
    p.remote
        .ns
        .exec(&["ip", "link", "set", "eth0", "mtu", &mtu]);
}

/// `[underlay] mtu = 1500` on an uplink whose interface has 1400: vswitchd does
/// not start, and says why in one line naming the field, before DPDK starts.
#[test]
fn an_underlay_mtu_above_the_uplinks_is_refused_at_start() {
    require_root!();
    let p = parts(KernelTunnel::Vxlan, &V4, V4.overlay_mtu);
    uplink_link_mtu(&p, 1400);
    let config = lab_config(&p, &V4, &LabOptions::encap("vxlan"));
    let path = p.dir.join("vswitchd.toml");
    std::fs::write(&path, config).unwrap();
    let want = "underlay.mtu 1500 exceeds uplink \"uplink\" MTU 1400";
    for check in [true, false] {
        let mut cmd = std::process::Command::new(workspace_bin("vswitchd"));
        cmd.arg("--config").arg(&path).env("RUST_LOG", "error");
        if check {
            cmd.arg("--check");
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(out.status.code(), Some(2), "--check {check}: {stderr}");
        assert_eq!(lines.len(), 1, "--check {check}: one line, got:\n{stderr}");
        assert!(lines[0].contains(want), "--check {check}: {}", lines[0]);
    }
}

/// Through the API: an underlay MTU the uplink does not carry is refused as
/// INVALID_ARGUMENT naming the field, one it carries is accepted, and after the
/// interface's MTU shrinks under the running switch the same value is refused.
#[test]
fn an_underlay_mtu_above_the_uplinks_is_refused_through_the_api() {
    use control::api;
    require_root!();
    let p = parts(KernelTunnel::Vxlan, &V4, 1350);
    uplink_link_mtu(&p, 1400);
    let o = LabOptions {
        encap: "vxlan",
        underlay_mtu: 1400,
        control: true,
    };
    let config = lab_config(&p, &V4, &o);
    let mut l = start(p, &config);
    let socket = l.dir.join("ctl.sock");
    let set_underlay = |mtu: u32| api::WriteRequest {
        ops: vec![api::Op {
            op: Some(api::op::Op::SetUnderlay(api::Underlay {
                uplink: "uplink".into(),
                local_vtep_ip: V4.switch_ip.into(),
                local_mac: UPLINK_MAC.into(),
                mtu,
                on_link: V4.on_link.into(),
                ..Default::default()
            })),
        }],
        expected_generation: 0,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = connect(&socket).await;
        let e = c.write(set_underlay(1500)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert_eq!(
            e.message(),
            "underlay.mtu 1500 exceeds uplink \"uplink\" MTU 1400"
        );
        let g = c.write(set_underlay(1380)).await.unwrap().into_inner();
        assert!(g.generation > 1, "{g:?}");
        // The interface changes under the switch: the next write is checked
        // against what it has now.
        ip(&["link", "set", &l.remote.host_if, "mtu", "1300"]);
        let e = c.write(set_underlay(1380)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert_eq!(
            e.message(),
            "underlay.mtu 1380 exceeds uplink \"uplink\" MTU 1300"
        );
        // A trace of a Geneve OAM packet says why it goes nowhere.
        let t = c
            .trace(api::TraceRequest {
                in_port: "uplink".into(),
                frame: geneve_oam_frame(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (&*t.verdict, &*t.drop_reason),
            ("drop", "geneve_oam"),
            "{t:?}"
        );
        assert!(
            t.stages
                .iter()
                .any(|s| s.stage == "decap" && s.detail.contains("OAM")),
            "{t:?}"
        );
    });
    l.switch.take().unwrap().stop();
}

/// A frame longer than its output port's MTU allows is dropped by the port
/// without a word (net_af_packet reports it sent; the kernel discards it). The
/// switch counts it as `tx_oversize` instead of sent: what the switch says it sent
/// to the pod is exactly what the pod's interface received.
#[test]
fn oversize_frames_to_a_smaller_mtu_port_are_drops_not_tx() {
    require_root!();
    let p = parts(KernelTunnel::Vxlan, &V4, V4.overlay_mtu);
    // The pod port's interface carries 1400; the overlay brings up to 1450.
    ip(&["link", "set", &p.pod.host_if, "mtu", "1400"]);
    let config = lab_config(&p, &V4, &LabOptions::encap("vxlan"));
    let mut l = start(p, &config);
    ping_ok(&l.remote.ns, "10.1.0.2", &l);
    // 1400 bytes of ICMP data: a 1428-byte packet, a 1442-byte frame.
    let out = l.remote.ns.try_exec(&[
        "ping", "-c", "3", "-i", "0.2", "-M", "do", "-s", "1400", "-W", "1", "10.1.0.2",
    ]);
    assert!(!out.status.success(), "the big pings cannot arrive");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let stats = l.switch.take().unwrap().stop();
    assert_eq!(stats["drops"]["tx_oversize"], 3, "{stats}");
    let pod = port_stats(&stats, "pod1");
    assert_eq!(counter(pod, "dropped"), 3, "{stats}");
    assert_eq!(
        counter(pod, "tx_packets"),
        pod_rx(&l),
        "what the switch counts as sent to the pod is what the pod received: {stats}"
    );
}

/// An uplink whose MTU is known only once DPDK has it (a tap interface the PMD
/// creates, 1500): the start is refused after the ports come up, naming the
/// field, and the switch exits non-zero, leaving no interface behind.
#[test]
fn an_underlay_mtu_above_a_tap_uplinks_is_refused_once_it_runs() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let iface = format!("{tag}t");
    let config = format!(
        r#"
[eal]
memory_mb = 256
in_memory = true
[dataplane]
workers = [0]
[[port]]
name = "uplink"
profile = "tap"
iface = "{iface}"
[underlay]
uplink = "uplink"
local_vtep_ip = "192.0.2.1"
local_mac = "{UPLINK_MAC}"
mtu = 1600
on_link = "192.0.2.0/24"
"#
    );
    let path = dir.join("vswitchd.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(workspace_bin("vswitchd"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    assert_eq!(
        last, "vswitchd: underlay.mtu 1600 exceeds uplink \"uplink\" MTU 1500",
        "{stderr}"
    );
    assert!(
        !std::path::Path::new("/sys/class/net").join(&iface).exists(),
        "the tap interface is gone"
    );
}
