//! Two kernel pods talk through a real `vswitchd`: ping both ways and a 10 MB TCP
//! transfer whose SHA-256 matches at both ends, and the switch's counters agree
//! exactly with what the pods' kernels sent and received. Once with af_packet ports
//! on veth pairs, once with tap ports the PMD creates.

use std::time::{Duration, Instant};

use system_tests::*;

const MAC1: &str = "02:00:00:00:01:01";
const MAC2: &str = "02:00:00:00:02:01";

/// Where a pod's interface is and what the switch calls its port.
struct PodEnd {
    ns: Netns,
    iface: String,
}

fn pods_config(dir: &TempDir, ports: &str) -> String {
    format!(
        r#"
[eal]
memory_mb = 256
in_memory = true
[dataplane]
workers = [{core}]
stats_file = "{stats}"
stats_interval_ms = 100
{ports}
[[l2]]
mac = "{MAC1}"
port = "pod1"
[[l2]]
mac = "{MAC2}"
port = "pod2"
"#,
        core = if num_cpus() > 1 { 1 } else { 0 },
        stats = dir.join("stats.json").display(),
    )
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Waits until two stats files in a row agree: no packet is in flight.
fn quiet_stats(v: &Vswitchd) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = read_json(&v.stats_file);
    loop {
        std::thread::sleep(Duration::from_millis(350));
        let now = read_json(&v.stats_file);
        if now["ports"] == last["ports"] || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn ping(from: &PodEnd, to_ip: &str) {
    let out = from
        .ns
        .try_exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", to_ip]);
    assert!(
        out.status.success(),
        "ping {to_ip} from {} failed:\n{}{}",
        from.ns.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Counts {
    pod_tx: [u64; 2],
    pod_rx: [u64; 2],
    sw: serde_json::Value,
}

fn counts(v: &Vswitchd, pods: &[&PodEnd; 2]) -> Counts {
    let sw = quiet_stats(v);
    Counts {
        pod_tx: [0, 1].map(|i| pods[i].ns.if_stat(&pods[i].iface, "tx_packets")),
        pod_rx: [0, 1].map(|i| pods[i].ns.if_stat(&pods[i].iface, "rx_packets")),
        sw,
    }
}

/// The switch received exactly what each pod sent — apart from what the port's own
/// receive ring missed while the worker was off its core, which DPDK counts as
/// `imissed` (on a loaded 2-core machine it happens; TCP retransmits) — and sent
/// exactly what each pod received, and dropped nothing.
fn assert_counters_agree(before: &Counts, after: &Counts) {
    for (i, port) in ["pod1", "pod2"].iter().enumerate() {
        let d = |key: &str| {
            counter(port_stats(&after.sw, port), key) - counter(port_stats(&before.sw, port), key)
        };
        let missed = counter(&port_stats(&after.sw, port)["dpdk"], "imissed")
            - counter(&port_stats(&before.sw, port)["dpdk"], "imissed");
        let pod_sent = after.pod_tx[i] - before.pod_tx[i];
        let pod_got = after.pod_rx[i] - before.pod_rx[i];
        assert!(pod_sent > 7000, "pod{} sent only {pod_sent} packets", i + 1);
        assert_eq!(
            d("rx_packets") + missed,
            pod_sent,
            "switch rx (+ {missed} missed by the ring) on {port} vs the pod's tx"
        );
        assert_eq!(
            d("tx_packets"),
            pod_got,
            "switch tx on {port} vs the pod's rx"
        );
    }
    let drops: u64 = after.sw["drops"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| v.as_u64().unwrap() - before.sw["drops"][k].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(drops, 0, "drops: {}", after.sw["drops"]);
}

fn exercise(dir: &TempDir, v: &Vswitchd, p1: &PodEnd, p2: &PodEnd) {
    // Warm the ARP caches so the measured window holds only what we send.
    ping(p1, "10.78.0.2");
    ping(p2, "10.78.0.1");
    let before = counts(v, &[p1, p2]);
    ping(p1, "10.78.0.2");
    ping(p2, "10.78.0.1");
    tcp_transfer(dir, &p1.ns, &p2.ns, "10.78.0.2", 10_000_000);
    tcp_transfer(dir, &p2.ns, &p1.ns, "10.78.0.1", 10_000_000);
    let after = counts(v, &[p1, p2]);
    assert_counters_agree(&before, &after);
}

#[test]
fn af_packet_pods_ping_and_tcp() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let pod1 = VethPod::new(&tag, 1, MAC1, "10.78.0.1/24");
    let pod2 = VethPod::new(&tag, 2, MAC2, "10.78.0.2/24");
    let ports = format!(
        "[[port]]\nname = \"pod1\"\nprofile = \"af_packet\"\niface = \"{}\"\n\
         [[port]]\nname = \"pod2\"\nprofile = \"af_packet\"\niface = \"{}\"\n",
        pod1.host_if, pod2.host_if
    );
    let v = Vswitchd::start(&dir, &pods_config(&dir, &ports));
    let p1 = PodEnd {
        ns: Netns {
            name: pod1.ns.name.clone(),
        },
        iface: "eth0".into(),
    };
    let p2 = PodEnd {
        ns: Netns {
            name: pod2.ns.name.clone(),
        },
        iface: "eth0".into(),
    };
    exercise(&dir, &v, &p1, &p2);
    let stats = v.stop();
    assert!(counter(port_stats(&stats, "pod1"), "rx_packets") > 0);
    // The PodEnds borrow the namespaces' names; the VethPods own and remove them.
    std::mem::forget(p1.ns);
    std::mem::forget(p2.ns);
}

#[test]
fn tap_pods_ping_and_tcp() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let taps = [format!("{tag}t1"), format!("{tag}t2")];
    let ports = format!(
        "[[port]]\nname = \"pod1\"\nprofile = \"tap\"\niface = \"{}\"\nmac = \"02:00:00:00:01:02\"\n\
         [[port]]\nname = \"pod2\"\nprofile = \"tap\"\niface = \"{}\"\nmac = \"02:00:00:00:02:02\"\n",
        taps[0], taps[1]
    );
    let v = Vswitchd::start(&dir, &pods_config(&dir, &ports));
    let mut pods = Vec::new();
    for (i, (tap, mac)) in taps.iter().zip([MAC1, MAC2]).enumerate() {
        let ns = Netns::new(&format!("{tag}p{}", i + 1));
        // The PMD made the tap in the root namespace; the pod takes it over and sets
        // the pod's own address (the PMD's `mac` is the switch side's).
        ip(&["link", "set", tap, "netns", &ns.name]);
        ns.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{tap}.disable_ipv6=1"),
        ]);
        ns.exec(&["ip", "link", "set", tap, "address", mac]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("10.78.0.{}/24", i + 1),
            "dev",
            tap,
        ]);
        ns.exec(&["ip", "link", "set", tap, "up"]);
        pods.push(PodEnd {
            ns,
            iface: tap.clone(),
        });
    }
    exercise(&dir, &v, &pods[0], &pods[1]);
    v.stop();
}
