//! Writes applied as deltas (issue #23, "writes that scale"), end to end through
//! a real `vswitchd`: a CNI plugin's pod add — a port on the pod's veth and the
//! endpoint behind it, in one transaction — and a route through that pod, each
//! patched into the running snapshot and journalled; the pod reachable through
//! the overlay at once; the reverse write unplugging the port; a restart
//! replaying the journal into the same state; a bad pod write refused as the
//! whole-state path refuses it, changing nothing.

use control::api::{self, op::Op as K, route::Target, NextHop, Op, WriteRequest};
use system_tests::*;

const GW_MAC: &str = "02:00:00:00:aa:01";
const MAC_A: &str = "02:00:00:00:0a:01";
const MAC_B: &str = "02:00:00:00:0b:01";

fn op(k: K) -> Op {
    Op { op: Some(k) }
}

/// Pod A on a port of the file; network `blue` (10.88.0.0/24, gateway .1).
fn config(dir: &TempDir, a: &VethPod) -> String {
    let body = format!(
        r#"{allowed}
[[port]]
name = "poda"
profile = "af_packet"
iface = "{iface}"
[[network]]
name = "blue"
vni = 100
subnets = ["10.88.0.0/24"]
gateway_ips = ["10.88.0.1"]
gateway_mac = "{GW_MAC}"
[[endpoint]]
network = "blue"
mac = "{MAC_A}"
ips = ["10.88.0.2"]
port = "poda"
"#,
        allowed = allowed_dirs(dir),
        iface = a.host_if,
    );
    control_config(dir, &[worker_core()], &body)
}

/// The CNI's pod add: the port on the pod's host end and its endpoint.
fn pod_add(b: &VethPod) -> Vec<Op> {
    vec![
        op(K::AddPort(api::Port {
            name: "podb".into(),
            profile: "af_packet".into(),
            params: [("iface".to_owned(), b.host_if.clone())].into(),
            group: String::new(),
            mtu: 0,
        })),
        op(K::AddEndpoint(api::Endpoint {
            network: "blue".into(),
            mac: MAC_B.into(),
            ips: vec!["10.88.0.3".into()],
            port: "podb".into(),
        })),
    ]
}

fn ping(from: &VethPod, to: &str) -> bool {
    from.ns
        .try_exec(&["ping", "-c", "1", "-W", "1", to])
        .status
        .success()
}

fn wait_ping(from: &VethPod, to: &str) {
    for _ in 0..10 {
        if ping(from, to) {
            return;
        }
    }
    panic!("no reply from {to}");
}

fn journal(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.join("state.json.journal")).unwrap_or_default()
}

/// The gRPC API of one daemon, driven from a test thread.
struct Api {
    rt: tokio::runtime::Runtime,
    c: api::vswitch_client::VswitchClient<tonic::transport::Channel>,
}

impl Api {
    fn new(sock: &std::path::Path) -> Api {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = rt.block_on(connect(sock));
        Api { rt, c }
    }

    fn write(&mut self, ops: Vec<Op>) -> Result<api::WriteReply, tonic::Status> {
        let w = self.c.write(WriteRequest {
            ops,
            expected_generation: 0,
        });
        self.rt.block_on(w).map(tonic::Response::into_inner)
    }

    fn state(&mut self) -> api::State {
        let r = self.c.get_state(api::GetStateRequest {});
        self.rt.block_on(r).unwrap().into_inner()
    }

    fn ports(&mut self) -> Vec<String> {
        let r = self.c.list_ports(api::ListPortsRequest {});
        let ports = self.rt.block_on(r).unwrap().into_inner().ports;
        ports.into_iter().map(|p| p.name).collect()
    }

    /// Where a frame from pod A to the gateway for 10.89.0.9 goes.
    fn out_port(&mut self) -> String {
        let frame = udp_frame(MAC_A, GW_MAC, [10, 88, 0, 2], [10, 89, 0, 9]);
        let t = self.c.trace(api::TraceRequest {
            in_port: "poda".into(),
            frame,
        });
        let t = self.rt.block_on(t).unwrap().into_inner();
        format!("{} {}", t.verdict, t.out_port)
    }
}

fn del_pod_b() -> Vec<Op> {
    vec![
        op(K::DelEndpoint(api::EndpointKey {
            network: "blue".into(),
            mac: MAC_B.into(),
        })),
        op(K::DelPort("podb".into())),
    ]
}

#[test]
fn delta_writes_plug_a_pod_route_through_it_and_replay() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let a = VethPod::new(&tag, 1, MAC_A, "10.88.0.2/24");
    let b = VethPod::new(&tag, 2, MAC_B, "10.88.0.3/24");
    let cfg = config(&dir, &a);
    let v = Vswitchd::start(&dir, &cfg);
    let sock = dir.join("ctl.sock");
    let mut api = Api::new(&sock);
    // The first write leaves a state file (there is none yet to journal
    // against); the journal follows it.
    api.write(vec![op(K::AddPort(api::Port {
        name: "spare".into(),
        profile: "null".into(),
        ..Default::default()
    }))])
    .unwrap();
    assert_eq!(journal(&dir), "", "no journal without a state file");
    assert!(dir.join("state.json").exists());

    // A bad pod write: a parameter af_packet does not know. Refused as the
    // whole-state path refuses it (the op and the key named), nothing changed.
    let before = api.state();
    let mut bad = pod_add(&b);
    if let Some(K::AddPort(p)) = &mut bad[0].op {
        p.params.insert("ifacee".into(), "x".into());
    }
    let e = api.write(bad).unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with("op 0 (add_port \"podb\")") && e.message().contains("ifacee"),
        "{}",
        e.message()
    );
    assert_eq!(api.state(), before, "a refused write changed the state");

    // The pod add: one delta, journalled; pod B reaches pod A through the
    // overlay as soon as the write is acknowledged.
    let r = api.write(pod_add(&b)).unwrap();
    eprintln!("pod add (port + endpoint) published in {} us", r.publish_us);
    let j = journal(&dir);
    assert!(
        j.contains("\"add_port\"") && j.contains("\"add_endpoint\""),
        "{j}"
    );
    wait_ping(&b, "10.88.0.2");
    assert!(api.ports().contains(&"podb".to_owned()));

    // A route through pod B, and its removal: deltas too, routed at once.
    let via_b = api::Route {
        tenant: String::new(),
        prefix: "10.89.0.0/16".into(),
        target: Some(Target::NextHop(NextHop {
            network: "blue".into(),
            ip: "10.88.0.3".into(),
        })),
    };
    assert!(!api.out_port().contains("podb"));
    api.write(vec![op(K::AddRoute(via_b))]).unwrap();
    assert!(journal(&dir).contains("\"add_route\""));
    assert_eq!(api.out_port(), "output podb");
    // The endpoint a route resolves through cannot go, nor its port.
    let e = api.write(del_pod_b()).unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    api.write(vec![op(K::DelRoute(api::RouteKey {
        tenant: String::new(),
        prefix: "10.89.0.0/16".into(),
    }))])
    .unwrap();
    assert!(!api.out_port().contains("podb"));

    // A new network: a delta too; a later write finds it.
    let green = api::Network {
        name: "green".into(),
        vni: 200,
        subnets: vec!["10.87.0.0/24".into()],
        gateway_ips: vec!["10.87.0.1".into()],
        gateway_mac: GW_MAC.into(),
        ..Default::default()
    };
    api.write(vec![op(K::AddNetwork(green))]).unwrap();
    assert!(journal(&dir).contains("\"add_network\""));
    let e = api
        .write(vec![op(K::AddNetwork(api::Network {
            name: "green2".into(),
            vni: 200,
            subnets: vec!["10.86.0.0/24".into()],
            gateway_mac: GW_MAC.into(),
            ..Default::default()
        }))])
        .unwrap_err();
    assert!(e.message().contains("VNI 200"), "{}", e.message());

    // The restart replays the journal into the same state.
    let before = api.state();
    v.stop();
    std::fs::remove_file(dir.join("stats.json")).unwrap();
    let v = Vswitchd::start(&dir, &cfg);
    let mut api = Api::new(&sock);
    assert_eq!(api.state(), before, "state after restart");
    wait_ping(&b, "10.88.0.2");

    // The pod's delete: endpoint and port in one delta; the port is unplugged.
    let r = api.write(del_pod_b()).unwrap();
    eprintln!(
        "pod delete (endpoint + port) published in {} us",
        r.publish_us
    );
    assert!(journal(&dir).contains("\"del_port\""));
    assert!(!api.ports().contains(&"podb".to_owned()));
    assert!(!ping(&b, "10.88.0.2"), "pod B still reaches A");
    v.stop();
}

/// An Ethernet/IPv4/UDP frame (checksums left zero: trace does not check them).
fn udp_frame(src: &str, dst: &str, from: [u8; 4], to: [u8; 4]) -> Vec<u8> {
    let mac = |s: &str| -> Vec<u8> {
        s.split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    };
    let mut f = mac(dst);
    f.extend(mac(src));
    f.extend([0x08, 0x00]);
    let payload = [0u8; 8];
    let udp_len = 8 + payload.len() as u16;
    let ip_len = 20 + udp_len;
    f.extend([
        0x45,
        0,
        (ip_len >> 8) as u8,
        ip_len as u8,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
    ]);
    f.extend(from);
    f.extend(to);
    f.extend([
        0x30,
        0x39,
        0x30,
        0x39,
        (udp_len >> 8) as u8,
        udp_len as u8,
        0,
        0,
    ]);
    f.extend(payload);
    f
}
