//! Every input is hostile until validated (issue #23): a table of bad requests
//! sent through the real gRPC API of one real `vswitchd`, with raw requests so
//! that what `vswitchctl` would refuse client-side gets to the server too (empty
//! ops, a `Replace` without `state`, 10 KB names, NUL bytes, 20,001 ops).
//!
//! Each case names the request, the status code it must get and words the
//! message must contain (the field or item at fault); for a `Write`, the index
//! of the op to blame (`op N (...)`). After every case: the message is one line
//! of at most `control::state::MAX_MESSAGE` bytes (plus the "… (cut)" mark)
//! that does not echo a long input, `GetState` (state and generation) is exactly
//! what it was, and the daemon still answers `Health`. Failures are collected and
//! reported together, each under its case's name.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use control::api::{
    self, op::Op as K, route::Target, vswitch_client::VswitchClient, CaptureRequest, EndpointKey,
    NextHop, Op, ReplaceRequest, RouteKey, TraceRequest, WriteRequest,
};
use system_tests::*;
use tonic::transport::Channel;
use tonic::Code;

const BLUE_GW_MAC: &str = "02:00:00:00:aa:01";
const EP_MAC: &str = "02:00:00:00:01:01";
const REMOTE_MAC: &str = "02:00:00:00:02:01";
const L2_MAC: &str = "02:00:00:00:0c:01";
const UNDERLAY_MAC: &str = "02:00:00:00:ff:01";

/// The longest message a refused request may carry: `MAX_MESSAGE` and the mark
/// `bounded` appends when it cuts.
const MESSAGE_LIMIT: usize = control::state::MAX_MESSAGE + "… (cut)".len();

/// A message that quotes this many consecutive characters of a long input echoes
/// it: quotes are cut at 40 (names), 24 (MACs) or 64 (paths) characters.
const ECHO_WINDOW: usize = 100;

/// The ports the cases refer to (`up` is the underlay's uplink), paths allowed
/// in `dir/pcap` and `dir/vhost`.
fn config(dir: &TempDir) -> String {
    let ports = r#"
[[port]]
name = "p1"
profile = "null"
[[port]]
name = "p2"
profile = "null"
[[port]]
name = "p3"
profile = "null"
[[port]]
name = "p4"
profile = "ring"
[[port]]
name = "p5"
profile = "null"
[[port]]
name = "up"
profile = "null"
"#;
    control_config(
        dir,
        &[worker_core()],
        &format!("{}{ports}", allowed_dirs(dir)),
    )
}

// ------------------------------------------------------------------ builders

fn op(k: K) -> Op {
    Op { op: Some(k) }
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn port(name: &str, profile: &str, params: &[(&str, &str)]) -> api::Port {
    api::Port {
        name: s(name),
        profile: s(profile),
        params: params.iter().map(|(k, v)| (s(k), s(v))).collect(),
        group: String::new(),
        mtu: 0,
    }
}

fn network(name: &str, vni: u32, subnet: &str, gw: &str, gw_mac: &str) -> api::Network {
    api::Network {
        name: s(name),
        vni,
        encap: String::new(),
        tenant: String::new(),
        subnets: if subnet.is_empty() {
            vec![]
        } else {
            vec![s(subnet)]
        },
        gateway_ips: if gw.is_empty() { vec![] } else { vec![s(gw)] },
        gateway_mac: s(gw_mac),
        flood_unknown: false,
        vteps: vec![],
        ..Default::default()
    }
}

fn blue_net() -> api::Network {
    network("blue", 100, "10.1.0.0/24", "10.1.0.1", BLUE_GW_MAC)
}

fn endpoint(net: &str, mac: &str, ip: &str, port: &str) -> api::Endpoint {
    api::Endpoint {
        network: s(net),
        mac: s(mac),
        ips: if ip.is_empty() { vec![] } else { vec![s(ip)] },
        port: s(port),
    }
}

fn remote(net: &str, mac: &str, ip: &str, vtep: &str) -> api::RemoteEndpoint {
    api::RemoteEndpoint {
        network: s(net),
        mac: s(mac),
        ips: if ip.is_empty() { vec![] } else { vec![s(ip)] },
        vtep: s(vtep),
    }
}

fn route_via(tenant: &str, prefix: &str, net: &str, ip: &str) -> api::Route {
    api::Route {
        tenant: s(tenant),
        prefix: s(prefix),
        target: Some(Target::NextHop(NextHop {
            network: s(net),
            ip: s(ip),
        })),
    }
}

fn blackhole(tenant: &str, prefix: &str) -> api::Route {
    api::Route {
        tenant: s(tenant),
        prefix: s(prefix),
        target: Some(Target::Blackhole(true)),
    }
}

fn underlay() -> api::Underlay {
    api::Underlay {
        uplink: s("up"),
        local_vtep_ip: s("192.0.2.1"),
        local_mac: s(UNDERLAY_MAC),
        mtu: 1600,
        on_link: s("192.0.2.0/24"),
        gateway: s("192.0.2.254"),
        neighbors: vec![],
    }
}

fn underlay_with(f: impl FnOnce(&mut api::Underlay)) -> K {
    let mut u = underlay();
    f(&mut u);
    K::SetUnderlay(u)
}

/// The initial desired state beyond the ports of the file, written through the
/// API (so the generation is 2 and 1 is stale).
fn initial_ops() -> Vec<Op> {
    [
        K::SetUnderlay(underlay()),
        K::AddNetwork(blue_net()),
        K::AddNetwork(api::Network {
            tenant: s("t2"),
            ..network("green", 200, "10.2.0.0/24", "10.2.0.1", "02:00:00:00:aa:02")
        }),
        K::AddEndpoint(endpoint("blue", EP_MAC, "10.1.0.2", "p1")),
        K::AddRemoteEndpoint(remote("blue", REMOTE_MAC, "10.1.0.3", "192.0.2.2")),
        K::AddRoute(route_via("", "10.9.0.0/16", "blue", "10.1.0.2")),
        K::AddPatch(api::Patch {
            from: s("p3"),
            to: s("p4"),
        }),
        K::AddL2(api::L2Entry {
            mac: s(L2_MAC),
            port: s("p2"),
        }),
        K::AddService(web_service()),
        K::AddPolicy(web_policy()),
        K::AddClusterPolicy(admin_policy()),
        K::AddPolicyEndpoint(api::PolicyEndpoint {
            name: s("x/a"),
            addresses: vec![s("10.1.0.2")],
            named_ports: vec![api::NamedPort {
                name: s("http"),
                protocol: s("TCP"),
                port: 8080,
            }],
        }),
    ]
    .into_iter()
    .map(op)
    .collect()
}

/// The service of the initial state: 10.96.0.10:80/TCP, node port 30080.
fn web_service() -> api::Service {
    api::Service {
        name: s("web"),
        network: s("blue"),
        cluster_ip: s("10.96.0.10"),
        ports: vec![api::ServicePort {
            name: s("http"),
            protocol: s("TCP"),
            port: 80,
            target_port: 8080,
            node_port: 30080,
        }],
        backends: vec![backend("10.1.0.20", Some(1), "")],
        ..Default::default()
    }
}

fn backend(address: &str, weight: Option<u32>, state: &str) -> api::Backend {
    api::Backend {
        address: s(address),
        weight,
        state: s(state),
    }
}

/// A new service (10.96.0.11:443, its own backend) with `f` applied.
fn service_with(f: impl FnOnce(&mut api::Service)) -> K {
    let mut v = api::Service {
        name: s("api"),
        cluster_ip: s("10.96.0.11"),
        backends: vec![backend("10.1.0.21", None, "")],
        ..web_service()
    };
    v.ports[0].port = 443;
    v.ports[0].node_port = 0;
    f(&mut v);
    K::AddService(v)
}

/// The NetworkPolicy of the initial state: TCP 80 to 10.1.0.2 from 10/8.
fn web_policy() -> api::NetworkPolicy {
    api::NetworkPolicy {
        name: s("x/web"),
        subject: vec![s("10.1.0.2")],
        policy_types: vec![s("Ingress")],
        ingress: vec![api::NetworkPolicyRule {
            peers: vec![ip_block("10.0.0.0/8", &[])],
            ports: vec![api::PolicyPort {
                port: 80,
                ..Default::default()
            }],
        }],
        egress: vec![],
    }
}

/// The admin cluster policy of the initial state.
fn admin_policy() -> api::ClusterPolicy {
    api::ClusterPolicy {
        name: s("admin-1"),
        tier: s("Admin"),
        priority: 10,
        subject: vec![s("10.1.0.2")],
        ingress: vec![api::ClusterPolicyRule {
            name: s("no-ssh"),
            action: s("Deny"),
            peers: vec![],
            ports: vec![api::PolicyPort {
                port: 22,
                ..Default::default()
            }],
        }],
        egress: vec![],
    }
}

fn ip_block(cidr: &str, except: &[&str]) -> api::PolicyPeer {
    api::PolicyPeer {
        addresses: vec![],
        ip_block: Some(api::IpBlock {
            cidr: s(cidr),
            except: except.iter().map(|e| s(e)).collect(),
        }),
    }
}

/// A new NetworkPolicy (`x/new`, like the initial one) with `f` applied.
fn policy_with(f: impl FnOnce(&mut api::NetworkPolicy)) -> K {
    let mut p = api::NetworkPolicy {
        name: s("x/new"),
        ..web_policy()
    };
    f(&mut p);
    K::AddPolicy(p)
}

/// `policy_with` changing the first port of the first ingress rule.
fn policy_port(f: impl FnOnce(&mut api::PolicyPort)) -> K {
    policy_with(|p| f(&mut p.ingress[0].ports[0]))
}

/// A new cluster policy (`admin-2`, like the initial one) with `f` applied.
fn cluster_with(f: impl FnOnce(&mut api::ClusterPolicy)) -> K {
    let mut p = api::ClusterPolicy {
        name: s("admin-2"),
        ..admin_policy()
    };
    f(&mut p);
    K::AddClusterPolicy(p)
}

/// A new policy endpoint (`x/b` at 10.1.0.3, port `http`) with `f` applied.
fn endpoint_ports_with(f: impl FnOnce(&mut api::PolicyEndpoint)) -> K {
    let mut e = api::PolicyEndpoint {
        name: s("x/b"),
        addresses: vec![s("10.1.0.3")],
        named_ports: vec![api::NamedPort {
            name: s("http"),
            protocol: String::new(),
            port: 80,
        }],
    };
    f(&mut e);
    K::AddPolicyEndpoint(e)
}

/// Ops that are valid on their own, to put next to a bad one: the write must
/// still be refused whole, blaming the bad one.
fn valid_op(i: usize) -> K {
    match i % 3 {
        0 => K::AddPort(port("okp", "null", &[])),
        // In a tenant of its own: blue has a service, so it is tracked and
        // must stay its tenant's only network.
        1 => K::AddNetwork(api::Network {
            tenant: s("okt"),
            ..network("okn", 901, "", "", "02:00:00:00:aa:09")
        }),
        _ => K::AddRoute(blackhole("", "10.50.0.0/16")),
    }
}

// ------------------------------------------------------------------ the table

enum Req {
    Write(WriteRequest),
    Replace(Box<ReplaceRequest>),
    Trace(TraceRequest),
    Capture(CaptureRequest),
}

struct Case {
    name: String,
    req: Req,
    code: Code,
    /// Words the message must contain (case-insensitive): the field or item.
    needles: Vec<String>,
    /// For a write: the op the message must blame (`op N (`).
    at: Option<usize>,
    /// A long input the message must not echo.
    long: Option<String>,
}

impl Case {
    fn long(mut self, input: &str) -> Case {
        self.long = Some(input.to_owned());
        self
    }
}

#[derive(Default)]
struct Table(Vec<Case>);

impl Table {
    fn push(&mut self, name: String, req: Req, code: Code, needles: &[&str], at: Option<usize>) {
        self.0.push(Case {
            name,
            req,
            code,
            needles: needles.iter().map(|n| n.to_string()).collect(),
            at,
            long: None,
        });
    }

    /// A write of `ops`, refused with INVALID_ARGUMENT blaming op `at`.
    fn ops(&mut self, name: impl Into<String>, ops: Vec<K>, at: usize, needles: &[&str]) {
        let req = Req::Write(WriteRequest {
            ops: ops.into_iter().map(op).collect(),
            expected_generation: 0,
        });
        self.push(name.into(), req, Code::InvalidArgument, needles, Some(at));
    }

    /// A request other than a write, refused with INVALID_ARGUMENT.
    fn invalid(&mut self, name: String, req: Req, needles: &[&str]) {
        self.push(name, req, Code::InvalidArgument, needles, None);
    }

    /// A write of `ops` refused with PERMISSION_DENIED (a path outside the
    /// allowed directories), blaming no op.
    fn denied(&mut self, name: &str, ops: Vec<K>, needles: &[&str]) {
        let req = Req::Write(WriteRequest {
            ops: ops.into_iter().map(op).collect(),
            expected_generation: 0,
        });
        self.push(s(name), req, Code::PermissionDenied, needles, None);
    }

    /// `bad` alone, refused with INVALID_ARGUMENT.
    fn one(&mut self, name: impl Into<String>, bad: K, needles: &[&str]) {
        self.ops(name, vec![bad], 0, needles);
    }

    /// `bad` after a valid op (`after == true`) or before one: either way the
    /// write is refused blaming `bad`, and the valid op is not applied.
    fn pair(&mut self, name: impl Into<String>, bad: K, after: bool, needles: &[&str]) {
        let name = name.into();
        let valid = valid_op(self.0.len());
        if after {
            self.ops(
                format!("{name} [after a valid op]"),
                vec![valid, bad],
                1,
                needles,
            );
        } else {
            self.ops(
                format!("{name} [before a valid op]"),
                vec![bad, valid],
                0,
                needles,
            );
        }
    }

    /// The last case's message must not echo `input`, where that is long enough
    /// to tell (more than `ECHO_WINDOW` characters).
    fn no_echo(&mut self, input: &str) {
        if input.len() > ECHO_WINDOW {
            let c = self.0.pop().expect("a case");
            self.0.push(c.long(input));
        }
    }
}

/// Names outside the grammar: `(label, name)`.
fn bad_names(long: &str) -> Vec<(&'static str, String)> {
    vec![
        ("empty", s("")),
        ("dot", s(".")),
        ("dotdot", s("..")),
        ("traversal", s("red/../x")),
        ("NUL", s("red\0x")),
        ("newline", s("red\nERROR forged")),
        ("leading dash", s("-red")),
        ("10k chars", long.to_owned()),
        ("non-ASCII", s("rød")),
    ]
}

fn cases() -> Table {
    let mut t = Table::default();
    let long = "x".repeat(10_000);

    // ---- names, every field holding one, through every kind of op
    type Holder = fn(&str) -> K;
    let holders: Vec<(&str, &[&str], Holder)> = vec![
        ("network name", &["network", "not a valid name"], |n| {
            K::AddNetwork(network(
                n,
                300,
                "10.3.0.0/24",
                "10.3.0.1",
                "02:00:00:00:aa:03",
            ))
        }),
        ("tenant", &["tenant", "not a valid name"], |n| {
            K::AddNetwork(api::Network {
                tenant: s(n),
                ..network("tnet", 301, "", "", "02:00:00:00:aa:04")
            })
        }),
        ("port name", &["port", "not a valid name"], |n| {
            K::AddPort(port(n, "null", &[]))
        }),
        ("group", &["group", "not a valid name"], |n| {
            K::AddPort(api::Port {
                group: s(n),
                ..port("gport", "null", &[])
            })
        }),
        ("endpoint.network", &["network", "not a valid name"], |n| {
            K::AddEndpoint(endpoint(n, "02:00:00:00:01:07", "", "p5"))
        }),
        ("endpoint.port", &["port", "not a valid name"], |n| {
            K::AddEndpoint(endpoint("blue", "02:00:00:00:01:08", "10.1.0.8", n))
        }),
        (
            "remote_endpoint.network",
            &["network", "not a valid name"],
            |n| K::AddRemoteEndpoint(remote(n, "02:00:00:00:02:07", "", "192.0.2.7")),
        ),
        (
            "route next_hop.network",
            &["next_hop.network", "not a valid name"],
            |n| K::AddRoute(route_via("", "10.70.0.0/16", n, "10.1.0.2")),
        ),
        ("route tenant", &["tenant", "not a valid name"], |n| {
            K::AddRoute(blackhole(n, "10.71.0.0/16"))
        }),
        ("underlay.uplink", &["uplink", "not a valid name"], |n| {
            underlay_with(|u| u.uplink = s(n))
        }),
        ("patch.from", &["from", "not a valid name"], |n| {
            K::AddPatch(api::Patch {
                from: s(n),
                to: s("p2"),
            })
        }),
        ("patch.to", &["to", "not a valid name"], |n| {
            K::AddPatch(api::Patch {
                from: s("p2"),
                to: s(n),
            })
        }),
        ("l2.port", &["port", "not a valid name"], |n| {
            K::AddL2(api::L2Entry {
                mac: s("02:00:00:00:0c:07"),
                port: s(n),
            })
        }),
    ];
    for (field, needles, make) in &holders {
        for (i, (label, name)) in bad_names(&long).into_iter().enumerate() {
            if name.is_empty() && (field.contains("tenant") || *field == "group") {
                continue; // an empty tenant or group is "default"
            }
            // Alternate where the bad op sits, so blame is checked both ways.
            t.pair(
                format!("{field}: {label}"),
                make(&name),
                i % 2 == 0,
                needles,
            );
            t.no_echo(&name);
        }
    }
    t.one(
        "port name: 33 chars",
        K::AddPort(port(&"p".repeat(33), "null", &[])),
        &["port", "1-32 characters"],
    );
    t.one(
        "network name: 64 chars",
        K::AddNetwork(network(&"n".repeat(64), 302, "", "", "02:00:00:00:aa:05")),
        &["network", "1-63 characters"],
    );
    // Deletes by a bad name: nothing by that name exists.
    for (label, name) in bad_names(&long) {
        t.one(
            format!("del_port: {label}"),
            K::DelPort(name.clone()),
            &["no such port"],
        );
        t.no_echo(&name);
    }
    t.one(
        "del_network: newline",
        K::DelNetwork(s("blue\nERROR forged")),
        &["no such network"],
    );
    t.one(
        "del_network: 10k chars",
        K::DelNetwork(long.clone()),
        &["no such network"],
    );
    t.no_echo(&long);

    // ---- MACs
    let mac_long = "02:".repeat(3_400);
    for (label, mac) in [
        ("zero", "00:00:00:00:00:00"),
        ("multicast", "01:00:5e:00:00:01"),
        ("broadcast", "ff:ff:ff:ff:ff:ff"),
    ] {
        t.pair(
            format!("endpoint mac {label}"),
            K::AddEndpoint(endpoint("blue", mac, "10.1.0.20", "p5")),
            label != "zero",
            &["station"],
        );
        t.one(
            format!("remote endpoint mac {label}"),
            K::AddRemoteEndpoint(remote("blue", mac, "10.1.0.21", "192.0.2.9")),
            &["add_remote_endpoint", "station"],
        );
        t.one(
            format!("gateway_mac {label}"),
            K::AddNetwork(network("red", 400, "10.4.0.0/24", "10.4.0.1", mac)),
            &["gateway MAC", "station"],
        );
        t.one(
            format!("underlay local_mac {label}"),
            underlay_with(|u| u.local_mac = s(mac)),
            &["underlay", "MAC", "station"],
        );
    }
    for (label, mac) in [
        ("five bytes", "02:00:00:00:01"),
        ("seven bytes", "02:00:00:00:01:02:03"),
        ("not hex", "zz:00:00:00:00:01"),
        ("dashes", "02-00-00-00-00-01"),
        ("empty", ""),
        ("NUL", "02:00:00:00:00:0\0"),
        ("10 KB", mac_long.as_str()),
    ] {
        t.one(
            format!("endpoint mac {label}"),
            K::AddEndpoint(endpoint("blue", mac, "10.1.0.22", "p5")),
            &["mac", "invalid MAC"],
        );
        t.no_echo(mac);
        t.one(
            format!("remote endpoint mac {label}"),
            K::AddRemoteEndpoint(remote("blue", mac, "", "192.0.2.9")),
            &["mac", "invalid MAC"],
        );
        t.no_echo(mac);
        t.one(
            format!("gateway_mac {label}"),
            K::AddNetwork(network("red", 400, "", "", mac)),
            &["gateway_mac", "invalid MAC"],
        );
        t.no_echo(mac);
        t.one(
            format!("l2 mac {label}"),
            K::AddL2(api::L2Entry {
                mac: s(mac),
                port: s("p2"),
            }),
            &["mac", "invalid MAC"],
        );
        t.no_echo(mac);
    }
    for (label, mac) in [("garbage", "02:00"), ("10 KB", mac_long.as_str())] {
        t.one(
            format!("underlay local_mac {label}"),
            underlay_with(|u| u.local_mac = s(mac)),
            &["local_mac", "invalid MAC"],
        );
        t.no_echo(mac);
        t.one(
            format!("underlay neighbor mac {label}"),
            underlay_with(|u| {
                u.neighbors = vec![api::StaticNeighbor {
                    ip: s("192.0.2.9"),
                    mac: s(mac),
                }]
            }),
            &["neighbors[0].mac", "invalid MAC"],
        );
        t.no_echo(mac);
        t.one(
            format!("tap port mac param {label}"),
            K::AddPort(port("tapx", "tap", &[("iface", "vsbadtap0"), ("mac", mac)])),
            &["mac"],
        );
        t.no_echo(mac);
    }
    t.one(
        "del_endpoint 10 KB mac",
        K::DelEndpoint(EndpointKey {
            network: s("blue"),
            mac: mac_long.clone(),
        }),
        &["no such endpoint"],
    );
    t.no_echo(&mac_long);
    t.one(
        "del_l2 10 KB mac",
        K::DelL2(mac_long.clone()),
        &["no such l2"],
    );
    t.no_echo(&mac_long);

    // ---- prefixes, addresses, VNIs, encapsulations
    t.pair(
        "route prefix with host bits",
        K::AddRoute(blackhole("", "10.61.1.0/16")),
        true,
        &["prefix", "host bits"],
    );
    t.pair(
        "route prefix with host bits",
        K::AddRoute(blackhole("", "10.61.1.0/16")),
        false,
        &["prefix", "host bits"],
    );
    t.one(
        "subnet with host bits",
        K::AddNetwork(network("red", 400, "10.4.1.0/16", "", "02:00:00:00:aa:04")),
        &["subnets", "host bits"],
    );
    t.one(
        "on_link with host bits",
        underlay_with(|u| u.on_link = s("192.0.2.1/24")),
        &["on_link", "host bits"],
    );
    let prefix_long = "1".repeat(10_000);
    for (label, p) in [
        ("/33", "10.0.0.0/33"),
        ("no length", "10.0.0.0"),
        ("v6 /129", "2001:db8::/129"),
        ("word", "banana"),
        ("empty", ""),
        ("10 KB", prefix_long.as_str()),
    ] {
        t.one(
            format!("route prefix {label}"),
            K::AddRoute(blackhole("", p)),
            &["prefix", "invalid prefix"],
        );
        t.no_echo(p);
        t.one(
            format!("subnet {label}"),
            K::AddNetwork(api::Network {
                subnets: vec![s(p)],
                ..network("red", 400, "", "", "02:00:00:00:aa:04")
            }),
            &["subnets", "invalid prefix"],
        );
        t.no_echo(p);
    }
    t.one(
        "on_link garbage",
        underlay_with(|u| u.on_link = s("192.0.2.0/xx")),
        &["on_link", "invalid prefix"],
    );
    t.one(
        "del_route 10 KB prefix",
        K::DelRoute(RouteKey {
            tenant: String::new(),
            prefix: prefix_long.clone(),
        }),
        &["no such route"],
    );
    t.no_echo(&prefix_long);
    let ip_long = "9".repeat(10_000);
    for (label, ip) in [
        ("octet 300", "10.1.0.300"),
        ("three octets", "10.1.0"),
        ("word", "gateway"),
        ("10 KB", ip_long.as_str()),
    ] {
        t.one(
            format!("endpoint ip {label}"),
            K::AddEndpoint(endpoint("blue", "02:00:00:00:01:30", ip, "p5")),
            &["ips", "invalid IP address"],
        );
        t.no_echo(ip);
        t.one(
            format!("remote vtep {label}"),
            K::AddRemoteEndpoint(remote("blue", "02:00:00:00:02:30", "", ip)),
            &["vtep", "invalid IP address"],
        );
        t.no_echo(ip);
    }
    t.one(
        "gateway_ips garbage",
        K::AddNetwork(network(
            "red",
            400,
            "10.4.0.0/24",
            "10.4.0.x",
            "02:00:00:00:aa:04",
        )),
        &["gateway_ips", "invalid IP address"],
    );
    t.one(
        "network vteps garbage",
        K::AddNetwork(api::Network {
            vteps: vec![s("192.0.2")],
            ..network("red", 400, "", "", "02:00:00:00:aa:04")
        }),
        &["vteps", "invalid IP address"],
    );
    t.one(
        "route next_hop.ip garbage",
        K::AddRoute(route_via("", "10.72.0.0/16", "blue", "10.1.0")),
        &["next_hop.ip", "invalid IP address"],
    );
    t.one(
        "underlay local_vtep_ip empty",
        underlay_with(|u| u.local_vtep_ip = String::new()),
        &["local_vtep_ip", "invalid IP address"],
    );
    t.one(
        "underlay gateway garbage",
        underlay_with(|u| u.gateway = s("300.1.1.1")),
        &["gateway", "invalid IP address"],
    );
    t.one(
        "underlay neighbor ip garbage",
        underlay_with(|u| {
            u.neighbors = vec![api::StaticNeighbor {
                ip: s("192.0.2"),
                mac: s("02:00:00:00:ff:09"),
            }]
        }),
        &["neighbors[0].ip", "invalid IP address"],
    );
    // Families that may not mix.
    t.one(
        "remote vtep IPv6 with an IPv4 underlay",
        K::AddRemoteEndpoint(remote("blue", "02:00:00:00:02:31", "", "2001:db8::2")),
        &["VTEP", "family"],
    );
    t.one(
        "network vtep IPv6 with an IPv4 underlay",
        K::AddNetwork(api::Network {
            vteps: vec![s("2001:db8::2")],
            ..network("red", 400, "", "", "02:00:00:00:aa:04")
        }),
        &["VTEP", "family"],
    );
    t.one(
        "underlay gateway IPv6 with an IPv4 VTEP",
        underlay_with(|u| u.gateway = s("2001:db8::1")),
        &["gateway", "family"],
    );
    t.one(
        "underlay on_link IPv6 with an IPv4 VTEP",
        underlay_with(|u| {
            u.on_link = s("2001:db8::/64");
            u.gateway = String::new();
        }),
        &["on-link", "family"],
    );
    t.one(
        "endpoint IPv6 address outside its subnets",
        K::AddEndpoint(endpoint("blue", "02:00:00:00:01:31", "2001:db8::5", "p5")),
        &["not in any of its subnets"],
    );
    t.one(
        "endpoint address outside its subnets",
        K::AddEndpoint(endpoint("blue", "02:00:00:00:01:32", "10.3.0.5", "p5")),
        &["10.3.0.5", "not in any of its subnets"],
    );
    t.one(
        "endpoint address is the gateway's",
        K::AddEndpoint(endpoint("blue", "02:00:00:00:01:33", "10.1.0.1", "p5")),
        &["gateway"],
    );
    t.one(
        "endpoint MAC is the gateway MAC",
        K::AddEndpoint(endpoint("blue", BLUE_GW_MAC, "10.1.0.34", "p5")),
        &["gateway MAC"],
    );
    t.one(
        "endpoint address taken by another endpoint",
        K::AddEndpoint(endpoint("blue", "02:00:00:00:01:35", "10.1.0.2", "p5")),
        &["10.1.0.2", "claimed"],
    );
    t.one(
        "gateway outside the subnets",
        K::AddNetwork(network(
            "red",
            400,
            "10.4.0.0/24",
            "10.5.0.1",
            "02:00:00:00:aa:04",
        )),
        &["gateway", "not in any of its subnets"],
    );
    t.one(
        "subnet overlapping another network's in the tenant",
        K::AddNetwork(network("red", 400, "10.1.0.0/16", "", "02:00:00:00:aa:04")),
        &["subnet", "overlaps"],
    );
    for vni in [16_777_216, u32::MAX] {
        t.pair(
            format!("vni {vni}"),
            K::AddNetwork(network("red", vni, "", "", "02:00:00:00:aa:04")),
            vni == u32::MAX,
            &["vni", "out of range"],
        );
    }
    t.one(
        "duplicate vni",
        K::AddNetwork(network("red", 100, "", "", "02:00:00:00:aa:04")),
        &["VNI 100", "blue"],
    );
    for encap in ["gre", "VXLAN", "vxlan\n"] {
        t.one(
            format!("encap {encap:?}"),
            K::AddNetwork(api::Network {
                encap: s(encap),
                ..network("red", 400, "", "", "02:00:00:00:aa:04")
            }),
            &["encap"],
        );
    }

    // ---- references
    t.pair(
        "endpoint in an unknown network",
        K::AddEndpoint(endpoint("nope", "02:00:00:00:01:40", "", "p5")),
        true,
        &["network \"nope\"", "does not exist"],
    );
    t.pair(
        "endpoint on an unknown port",
        K::AddEndpoint(endpoint("blue", "02:00:00:00:01:41", "10.1.0.41", "ghost")),
        false,
        &["port", "ghost"],
    );
    t.one(
        "endpoint on the uplink",
        K::AddEndpoint(endpoint("blue", "02:00:00:00:01:42", "10.1.0.42", "up")),
        &["uplink"],
    );
    t.one(
        "port in two networks",
        K::AddEndpoint(endpoint("green", "02:00:00:00:01:43", "10.2.0.43", "p1")),
        &["p1", "network"],
    );
    t.one(
        "endpoint on a patched port",
        K::AddEndpoint(endpoint("blue", "02:00:00:00:01:44", "10.1.0.44", "p3")),
        &["patch", "overlay"],
    );
    t.one(
        "endpoint on a port with an l2 entry",
        K::AddEndpoint(endpoint("blue", "02:00:00:00:01:45", "10.1.0.45", "p2")),
        &["l2", "overlay"],
    );
    t.one(
        "remote endpoint in an unknown network",
        K::AddRemoteEndpoint(remote("nope", "02:00:00:00:02:40", "", "192.0.2.40")),
        &["nope"],
    );
    t.one(
        "remote endpoint at the local VTEP",
        K::AddRemoteEndpoint(remote("blue", "02:00:00:00:02:41", "", "192.0.2.1")),
        &["local VTEP"],
    );
    t.pair(
        "route via an unknown network",
        K::AddRoute(route_via("", "10.73.0.0/16", "nope", "10.1.0.2")),
        true,
        &["network \"nope\"", "does not exist"],
    );
    t.one(
        "route via another tenant's network",
        K::AddRoute(route_via("", "10.74.0.0/16", "green", "10.2.0.2")),
        &["green", "tenant"],
    );
    t.one(
        "route via an unknown next hop",
        K::AddRoute(route_via("", "10.75.0.0/16", "blue", "10.1.0.99")),
        &["10.1.0.99", "not an endpoint"],
    );
    t.one(
        "route in a tenant without networks",
        K::AddRoute(blackhole("t9", "10.76.0.0/16")),
        &["t9", "no network"],
    );
    t.one(
        "route without a target",
        K::AddRoute(api::Route {
            tenant: String::new(),
            prefix: s("10.77.0.0/16"),
            target: None,
        }),
        &["next_hop", "blackhole"],
    );
    t.one(
        "route with blackhole = false",
        K::AddRoute(api::Route {
            tenant: String::new(),
            prefix: s("10.78.0.0/16"),
            target: Some(Target::Blackhole(false)),
        }),
        &["next_hop", "blackhole"],
    );
    t.one(
        "route over a connected subnet",
        K::AddRoute(blackhole("", "10.1.0.0/24")),
        &["10.1.0.0/24"],
    );
    t.one(
        "underlay uplink unknown",
        underlay_with(|u| u.uplink = s("ghost")),
        &["uplink", "ghost"],
    );
    t.one(
        "underlay uplink is an endpoint's port",
        underlay_with(|u| u.uplink = s("p1")),
        &["uplink"],
    );
    t.one(
        "patch from an unknown port",
        K::AddPatch(api::Patch {
            from: s("ghost"),
            to: s("p2"),
        }),
        &["patch.from", "ghost"],
    );
    t.one(
        "patch to itself",
        K::AddPatch(api::Patch {
            from: s("p2"),
            to: s("p2"),
        }),
        &["itself"],
    );
    t.one(
        "patch from the uplink",
        K::AddPatch(api::Patch {
            from: s("up"),
            to: s("p2"),
        }),
        &["patch.from", "overlay"],
    );
    t.one(
        "l2 entry on an unknown port",
        K::AddL2(api::L2Entry {
            mac: s("02:00:00:00:0c:41"),
            port: s("ghost"),
        }),
        &["port", "ghost"],
    );
    t.one(
        "l2 entry on an endpoint's port",
        K::AddL2(api::L2Entry {
            mac: s("02:00:00:00:0c:42"),
            port: s("p1"),
        }),
        &["overlay"],
    );
    // Duplicate adds.
    t.pair(
        "add_port p1 again",
        K::AddPort(port("p1", "null", &[])),
        true,
        &["port already exists"],
    );
    t.one(
        "add_network blue again",
        K::AddNetwork(blue_net()),
        &["network already exists"],
    );
    t.one(
        "add_network blue again, other content",
        K::AddNetwork(network("blue", 500, "", "", "02:00:00:00:aa:05")),
        &["network already exists"],
    );
    t.one(
        "add_endpoint again (upper-case MAC)",
        K::AddEndpoint(endpoint("blue", &EP_MAC.to_uppercase(), "10.1.0.2", "p1")),
        &["endpoint already exists"],
    );
    t.one(
        "add_remote_endpoint again",
        K::AddRemoteEndpoint(remote("blue", REMOTE_MAC, "10.1.0.3", "192.0.2.2")),
        &["remote endpoint already exists"],
    );
    t.one(
        "add_route again",
        K::AddRoute(route_via("default", "10.9.0.0/16", "blue", "10.1.0.2")),
        &["route already exists"],
    );
    t.one(
        "add_patch from p3 again",
        K::AddPatch(api::Patch {
            from: s("p3"),
            to: s("p2"),
        }),
        &["patch already exists"],
    );
    t.one(
        "add_l2 again",
        K::AddL2(api::L2Entry {
            mac: s(L2_MAC),
            port: s("p2"),
        }),
        &["l2 entry already exists"],
    );
    t.ops(
        "the same network twice in one write",
        vec![
            K::AddNetwork(network("red", 400, "", "", "02:00:00:00:aa:04")),
            K::AddNetwork(network("red", 401, "", "", "02:00:00:00:aa:06")),
        ],
        1,
        &["network already exists"],
    );
    // Deletes of missing items.
    t.pair(
        "del_port ghost",
        K::DelPort(s("ghost")),
        false,
        &["no such port"],
    );
    t.one(
        "del_network ghost",
        K::DelNetwork(s("ghost")),
        &["no such network"],
    );
    t.one(
        "del_endpoint missing",
        K::DelEndpoint(EndpointKey {
            network: s("blue"),
            mac: s("02:00:00:00:01:99"),
        }),
        &["no such endpoint"],
    );
    t.one(
        "del_remote_endpoint missing",
        K::DelRemoteEndpoint(EndpointKey {
            network: s("blue"),
            mac: s("02:00:00:00:02:99"),
        }),
        &["no such remote endpoint"],
    );
    t.one(
        "del_route missing",
        K::DelRoute(RouteKey {
            tenant: String::new(),
            prefix: s("10.99.0.0/16"),
        }),
        &["no such route"],
    );
    t.one(
        "del_patch missing",
        K::DelPatch(s("p2")),
        &["no such patch"],
    );
    t.one(
        "del_l2 missing",
        K::DelL2(s("02:00:00:00:0c:99")),
        &["no such l2 entry"],
    );
    t.ops(
        "the same port deleted twice",
        vec![K::DelPort(s("p5")), K::DelPort(s("p5"))],
        1,
        &["del_port \"p5\"", "no such port"],
    );
    // Deletes of what is still used: the message names the user.
    t.one(
        "del_port of an endpoint's port",
        K::DelPort(s("p1")),
        &["used by endpoint 02:00:00:00:01:01", "blue"],
    );
    t.one(
        "del_port of the uplink",
        K::DelPort(s("up")),
        &["used by the underlay"],
    );
    t.one(
        "del_port of an l2 entry's port",
        K::DelPort(s("p2")),
        &["used by l2 entry"],
    );
    t.one(
        "del_port of a patched port",
        K::DelPort(s("p4")),
        &["used by patch"],
    );
    t.pair(
        "del_network still used",
        K::DelNetwork(s("blue")),
        true,
        &["1 endpoint", "remote endpoint", "route"],
    );
    t.one(
        "del_endpoint a route's next hop",
        K::DelEndpoint(EndpointKey {
            network: s("blue"),
            mac: s(EP_MAC),
        }),
        &["route", "10.1.0.2"],
    );
    t.one(
        "clear_underlay with remote endpoints",
        K::ClearUnderlay(true),
        &["underlay"],
    );
    t.one(
        "clear_underlay = false",
        K::ClearUnderlay(false),
        &["clear_underlay must be true"],
    );
    // Empty and oversized writes.
    let w = |ops: Vec<Op>| {
        Req::Write(WriteRequest {
            ops,
            expected_generation: 0,
        })
    };
    t.push(
        s("empty op"),
        w(vec![Op { op: None }]),
        Code::InvalidArgument,
        &["empty op"],
        Some(0),
    );
    t.push(
        s("empty op after a valid op"),
        w(vec![op(valid_op(0)), Op { op: None }]),
        Code::InvalidArgument,
        &["empty op", "the op is empty"],
        Some(1),
    );
    t.push(
        s("zero ops"),
        w(vec![]),
        Code::InvalidArgument,
        &["at least one op"],
        None,
    );
    t.push(
        format!("{} ops", control::state::MAX_OPS + 1),
        w(vec![Op { op: None }; control::state::MAX_OPS + 1]),
        Code::InvalidArgument,
        &["ops", "20001", "at most 20000"],
        None,
    );
    t.push(
        format!("{} valid-looking ops", control::state::MAX_OPS + 1),
        w((0..=control::state::MAX_OPS)
            .map(|i| {
                op(K::AddRoute(blackhole(
                    "",
                    &format!("10.{}.{}.0/24", 100 + i / 256, i % 256),
                )))
            })
            .collect()),
        Code::InvalidArgument,
        &["at most 20000"],
        None,
    );
    // Replace.
    t.push(
        s("replace without state"),
        Req::Replace(Box::new(ReplaceRequest {
            state: None,
            expected_generation: 0,
        })),
        Code::InvalidArgument,
        &["state: missing"],
        None,
    );
    t.push(
        s("replace with a bad vni"),
        Req::Replace(Box::new(ReplaceRequest {
            state: Some(api::DesiredState {
                networks: vec![network("red", 16_777_216, "", "", "02:00:00:00:aa:04")],
                ..Default::default()
            }),
            expected_generation: 0,
        })),
        Code::InvalidArgument,
        &["vni", "out of range"],
        None,
    );
    t.push(
        s("replace with a 10k port name"),
        Req::Replace(Box::new(ReplaceRequest {
            state: Some(api::DesiredState {
                ports: vec![port(&long, "null", &[])],
                ..Default::default()
            }),
            expected_generation: 0,
        })),
        Code::InvalidArgument,
        &["port", "not a valid name"],
        None,
    );
    t.no_echo(&long);
    t.push(
        s("replace with a 10 KB endpoint MAC"),
        Req::Replace(Box::new(ReplaceRequest {
            state: Some(api::DesiredState {
                ports: vec![port("p1", "null", &[])],
                networks: vec![blue_net()],
                endpoints: vec![endpoint("blue", &mac_long, "10.1.0.2", "p1")],
                ..Default::default()
            }),
            expected_generation: 0,
        })),
        Code::InvalidArgument,
        &["mac", "invalid MAC"],
        None,
    );
    t.no_echo(&mac_long);
    t.push(
        s("replace with a 10 KB route prefix"),
        Req::Replace(Box::new(ReplaceRequest {
            state: Some(api::DesiredState {
                networks: vec![blue_net()],
                routes: vec![blackhole("", &prefix_long)],
                ..Default::default()
            }),
            expected_generation: 0,
        })),
        Code::InvalidArgument,
        &["prefix", "invalid prefix"],
        None,
    );
    t.no_echo(&prefix_long);
    t.ops(
        "del_port while an l2 entry with a 10 KB MAC is added to it",
        vec![
            K::AddL2(api::L2Entry {
                mac: mac_long.clone(),
                port: s("p5"),
            }),
            K::DelPort(s("p5")),
        ],
        // The op's own field is looked at before the state it leads to.
        0,
        &["mac", "invalid MAC address"],
    );
    t.no_echo(&mac_long);
    t.ops(
        "del_port while a patch to a 10k name is added from it",
        vec![
            K::AddPatch(api::Patch {
                from: s("p5"),
                to: long.clone(),
            }),
            K::DelPort(s("p5")),
        ],
        0,
        &["to:", "is not a valid name"],
    );
    t.no_echo(&long);
    t.push(
        s("replace with an endpoint on an unknown port"),
        Req::Replace(Box::new(ReplaceRequest {
            state: Some(api::DesiredState {
                networks: vec![blue_net()],
                endpoints: vec![endpoint("blue", EP_MAC, "10.1.0.2", "p1")],
                ..Default::default()
            }),
            expected_generation: 0,
        })),
        Code::InvalidArgument,
        &["port", "p1"],
        None,
    );

    // ---- compare-and-set
    t.push(
        s("write with a stale expected_generation"),
        Req::Write(WriteRequest {
            ops: vec![op(valid_op(0))],
            expected_generation: 1,
        }),
        Code::FailedPrecondition,
        &["generation is 2, expected 1"],
        None,
    );
    t.push(
        s("write with a future expected_generation"),
        Req::Write(WriteRequest {
            ops: vec![op(valid_op(1))],
            expected_generation: 3,
        }),
        Code::FailedPrecondition,
        &["generation is 2, expected 3"],
        None,
    );
    t.push(
        s("replace with a stale expected_generation"),
        Req::Replace(Box::new(ReplaceRequest {
            state: Some(api::DesiredState::default()),
            expected_generation: 1,
        })),
        Code::FailedPrecondition,
        &["generation"],
        None,
    );

    // ---- ports
    t.pair(
        "unknown profile",
        K::AddPort(port("bogus0", "bogus", &[])),
        true,
        &["bogus0", "bogus"],
    );
    t.one(
        "missing profile",
        K::AddPort(port("noprof", "", &[])),
        &["profile"],
    );
    t.one(
        "unknown param key",
        K::AddPort(port("unk", "null", &[("colour", "red")])),
        &["colour"],
    );
    for field in ["name", "profile", "group", "mtu"] {
        t.one(
            format!("param named like the port field {field}"),
            K::AddPort(port("pfield", "null", &[(field, "x")])),
            &[field, "field of the port"],
        );
    }
    t.one(
        "param named like a port field, on a 10k name",
        K::AddPort(port(&long, "null", &[("name", "x")])),
        &["port"],
    );
    t.no_echo(&long);
    t.one(
        "unknown param key of 10k chars",
        K::AddPort(port("unk", "null", &[(long.as_str(), "1")])),
        &["unk"],
    );
    t.no_echo(&long);
    t.one(
        "unknown profile of 10k chars",
        K::AddPort(port("unk", &long, &[])),
        &["unk"],
    );
    t.no_echo(&long);
    t.one(
        "param value of 10k chars",
        K::AddPort(port("unk", "null", &[("size", long.as_str())])),
        &["size"],
    );
    t.no_echo(&long);
    t.one(
        "null size not a number",
        K::AddPort(port("nsize", "null", &[("size", "big")])),
        &["size"],
    );
    t.one(
        "null size negative",
        K::AddPort(port("nsize", "null", &[("size", "-1")])),
        &["size"],
    );
    t.one(
        "null no_rx not a bool",
        K::AddPort(port("nrx", "null", &[("no_rx", "maybe")])),
        &["no_rx"],
    );
    t.one(
        "af_packet iface a number",
        K::AddPort(port("afn", "af_packet", &[("iface", "42")])),
        &["iface"],
    );
    t.one(
        "af_packet without iface",
        K::AddPort(port("afm", "af_packet", &[])),
        &["iface"],
    );
    t.one(
        "vhost_user queues not a number",
        K::AddPort(port(
            "vq",
            "vhost_user",
            &[("path", "/nonexistent/vq.sock"), ("queues", "many")],
        )),
        &["queues"],
    );
    // A vhost-user socket's owner, group and mode: each key named, nothing made.
    let long_user = "u".repeat(10_000);
    // (name, params, words of the message)
    type SocketCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let socket_access: [SocketCase<'_>; 6] = [
        (
            "vhost_user socket_mode world-writable",
            &[("socket_mode", "0666")],
            &["socket_mode", "\"0666\"", "every local user"],
        ),
        (
            "vhost_user socket_mode setuid",
            &[("socket_mode", "4660")],
            &["socket_mode", "setuid"],
        ),
        (
            "vhost_user socket_mode not octal",
            &[("socket_mode", "rw-rw----")],
            &["socket_mode", "octal"],
        ),
        (
            "vhost_user socket_owner unknown",
            &[("socket_owner", "no-such-user-x")],
            &["socket_owner", "no user"],
        ),
        (
            "vhost_user socket_group 10 KB",
            &[("socket_group", &long_user)],
            &["socket_group", "not a group name", "…"],
        ),
        (
            "vhost_user socket_mode in client mode",
            &[("client", "true"), ("socket_mode", "0660")],
            &["socket_mode", "client mode"],
        ),
    ];
    for (name, params, words) in socket_access {
        let mut params = params.to_vec();
        params.push(("path", "/nonexistent/sa.sock"));
        t.one(name, K::AddPort(port("sa", "vhost_user", &params)), words);
    }
    t.one(
        "worker out of range",
        K::AddPort(port("wk", "null", &[("worker", "5")])),
        &["worker 5", "does not exist"],
    );
    t.one(
        "worker negative",
        K::AddPort(port("wk", "null", &[("worker", "-1")])),
        &["worker", "non-negative"],
    );
    t.one(
        "worker not a number",
        K::AddPort(port("wk", "null", &[("worker", "first")])),
        &["worker"],
    );
    t.one(
        "mtu out of range",
        K::AddPort(api::Port {
            mtu: 70_000,
            ..port("bigmtu", "null", &[])
        }),
        &["mtu", "65535"],
    );
    // Paths outside [control]'s directories: PERMISSION_DENIED naming the parameter.
    let path_long = format!("/{}", "d".repeat(10_000));
    // (name, profile, the parameter, its value)
    let denied = [
        ("pcap tx_pcap in /etc", "pcap", "tx_pcap", "/etc/bad.pcap"),
        ("pcap rx_pcap in /root", "pcap", "rx_pcap", "/root/in.pcap"),
        ("pcap tx_pcap relative", "pcap", "tx_pcap", "out.pcap"),
        ("pcap tx_pcap 10 KB", "pcap", "tx_pcap", &path_long),
        (
            "vhost_user path in /tmp",
            "vhost_user",
            "path",
            "/tmp/evil.sock",
        ),
        (
            "virtio_user path in /run",
            "virtio_user",
            "path",
            "/run/evil.sock",
        ),
        ("vhost_user path 10 KB", "vhost_user", "path", &path_long),
    ];
    for (name, profile, param, value) in denied {
        let add = K::AddPort(port("fileport", profile, &[(param, value)]));
        t.denied(name, vec![add], &["permission denied", param]);
        t.no_echo(value);
    }
    t.denied(
        "pcap rx_pcap: .. out of pcap_dirs (added after a valid op)",
        vec![
            valid_op(1),
            K::AddPort(port(
                "fileport",
                "pcap",
                &[("rx_pcap", "@PCAP@/../../../etc/shadow")],
            )),
        ],
        &["rx_pcap", "`..`"],
    );
    t.denied(
        "vhost_user path: .. out of socket_dirs",
        vec![K::AddPort(port(
            "fileport",
            "vhost_user",
            &[("path", "@VHOST@/../escape.sock")],
        ))],
        &["path", "`..`"],
    );
    t.denied(
        "virtio_user path: socket_dirs is not pcap_dirs",
        vec![K::AddPort(port(
            "fileport",
            "virtio_user",
            &[("path", "@PCAP@/virtio.sock")],
        ))],
        &["path", "socket_dirs"],
    );

    // ---- the underlay
    t.pair(
        "underlay mtu too small",
        underlay_with(|u| u.mtu = 100),
        true,
        &["MTU", "too small"],
    );
    t.one(
        "underlay mtu out of range",
        underlay_with(|u| u.mtu = 70_000),
        &["mtu", "out of range"],
    );
    t.one(
        "local VTEP outside on_link",
        underlay_with(|u| u.local_vtep_ip = s("198.51.100.1")),
        &["local VTEP", "on-link"],
    );
    t.one(
        "underlay gateway off-link",
        underlay_with(|u| u.gateway = s("198.51.100.254")),
        &["gateway", "on-link"],
    );
    t.one(
        "underlay neighbor off-link",
        underlay_with(|u| {
            u.neighbors = vec![api::StaticNeighbor {
                ip: s("198.51.100.9"),
                mac: s("02:00:00:00:ff:09"),
            }]
        }),
        &["neighbors[0].ip", "on_link"],
    );

    // ---- services and backends: each refused naming the field, nothing changed
    let svc_cases: Vec<(&str, K, &[&str])> = vec![
        (
            "service: bad VIP",
            service_with(|v| v.cluster_ip = s("10.96.0.999")),
            &["cluster_ip", "invalid IP address", "10.96.0.999"],
        ),
        (
            "service: VIP of another family than its network",
            service_with(|v| {
                v.cluster_ip = s("fd00:96::11");
                v.backends[0].address = s("fd00:1::21");
            }),
            &["cluster_ip", "IPv6", "no IPv6 subnet"],
        ),
        (
            "service: VIP is an endpoint's address",
            service_with(|v| v.cluster_ip = s("10.1.0.2")),
            &["cluster_ip", "10.1.0.2", "endpoint"],
        ),
        (
            "service: non-prime table size",
            service_with(|v| v.table_size = 65_536),
            &["table_size", "65536 is not prime"],
        ),
        (
            "service: table size too large",
            service_with(|v| v.table_size = 2_000_003),
            &["table_size", "out of range"],
        ),
        (
            "service: table size too small",
            service_with(|v| v.table_size = 5),
            &["table_size", "out of range"],
        ),
        (
            "service: weight out of range",
            service_with(|v| v.backends[0].weight = Some(65_536)),
            &["backends[0].weight", "65536", "0-65535"],
        ),
        (
            "service: unknown backend state",
            service_with(|v| v.backends[0].state = s("asleep")),
            &["backends[0].state", "\"asleep\""],
        ),
        (
            "service: no backends",
            service_with(|v| v.backends.clear()),
            &["backends", "at least one backend"],
        ),
        (
            "service: weight 0 everywhere",
            service_with(|v| v.backends[0].weight = Some(0)),
            &["backends", "no backend is active with a non-zero weight"],
        ),
        (
            "service: every backend down",
            service_with(|v| v.backends[0].state = s("down")),
            &["backends", "no backend is active"],
        ),
        (
            "service: duplicate frontend",
            service_with(|v| {
                v.cluster_ip = s("10.96.0.10");
                v.ports[0].port = 80;
            }),
            &["frontend 10.96.0.10:80/TCP", "service \"web\"'s"],
        ),
        (
            "service: node port out of range",
            service_with(|v| v.ports[0].node_port = 8080),
            &[
                "ports[0].node_port",
                "8080 is outside the node port range 30000-32767",
            ],
        ),
        (
            "service: node port used twice",
            service_with(|v| v.ports[0].node_port = 30080),
            &["node_port", "30080/TCP", "service \"web\"'s"],
        ),
        (
            "service: too many backends",
            service_with(|v| {
                v.backends = (0..5000)
                    .map(|i| backend(&format!("10.1.{}.{}", i / 250, i % 250), None, ""))
                    .collect();
            }),
            &["backends", "5000 given, at most 4096"],
        ),
        (
            "service: too many ports",
            service_with(|v| {
                let p = v.ports[0].clone();
                v.ports = (0..1100)
                    .map(|i| api::ServicePort {
                        name: format!("p{i}"),
                        port: 1000 + i,
                        ..p.clone()
                    })
                    .collect();
            }),
            &["ports", "1100 given, at most 1024"],
        ),
        (
            "service: too many external IPs",
            service_with(|v| {
                v.external_ips = (0..20).map(|i| format!("198.51.100.{i}")).collect();
            }),
            &["external_ips", "20 given, at most 16"],
        ),
        (
            "service: unknown network",
            service_with(|v| v.network = s("red")),
            &["network", "\"red\" does not exist"],
        ),
        (
            "service: backend outside the network's family",
            service_with(|v| v.backends.push(backend("fd00:1::21", None, ""))),
            &["backends[1].address", "IPv6", "IPv4"],
        ),
        (
            "service: backend outside the network",
            service_with(|v| v.backends[0].address = s("10.7.0.21")),
            &[
                "backends[0].address",
                "not in any subnet of network \"blue\"",
            ],
        ),
        (
            "service: unknown protocol",
            service_with(|v| v.ports[0].protocol = s("ICMP")),
            &["ports[0].protocol", "\"ICMP\""],
        ),
        (
            "service: port 0",
            service_with(|v| v.ports[0].port = 0),
            &["ports[0].port", "0 is not a port"],
        ),
        (
            "service: port 70000",
            service_with(|v| v.ports[0].port = 70_000),
            &["ports[0].port", "70000 is out of range"],
        ),
        (
            "service: unknown affinity",
            service_with(|v| v.session_affinity = s("Cookie")),
            &["session_affinity", "\"Cookie\""],
        ),
        (
            "service: affinity timeout too long",
            service_with(|v| {
                v.session_affinity = s("ClientIP");
                v.affinity_timeout_s = 100_000;
            }),
            &["affinity_timeout_s", "100000"],
        ),
        (
            "service: name taken",
            K::AddService(web_service()),
            &["service already exists"],
        ),
        (
            "backend: unknown service",
            K::AddBackend(api::BackendOp {
                service: s("nope"),
                backend: Some(backend("10.1.0.30", None, "")),
            }),
            &["no such service", "nope"],
        ),
        (
            "backend: added twice",
            K::AddBackend(api::BackendOp {
                service: s("web"),
                backend: Some(backend("10.1.0.20", None, "")),
            }),
            &["backend", "10.1.0.20", "already exists"],
        ),
        (
            "backend: bad address",
            K::AddBackend(api::BackendOp {
                service: s("web"),
                backend: Some(backend("10.1.0.x", None, "")),
            }),
            &["backend.address", "invalid IP address"],
        ),
        (
            "backend: set weight out of range",
            K::SetBackend(api::SetBackend {
                service: s("web"),
                address: s("10.1.0.20"),
                weight: Some(70_000),
                state: String::new(),
            }),
            &["backend.weight", "70000"],
        ),
        (
            "backend: set unknown state",
            K::SetBackend(api::SetBackend {
                service: s("web"),
                address: s("10.1.0.20"),
                weight: None,
                state: s("sleepy"),
            }),
            &["backend.state", "sleepy"],
        ),
        (
            "backend: drain the last one",
            K::SetBackend(api::SetBackend {
                service: s("web"),
                address: s("10.1.0.20"),
                weight: None,
                state: s("draining"),
            }),
            &["no backend is active"],
        ),
        (
            "backend: set nothing",
            K::SetBackend(api::SetBackend {
                service: s("web"),
                address: s("10.1.0.20"),
                weight: None,
                state: String::new(),
            }),
            &["give a weight, a state or both"],
        ),
        (
            "backend: delete one that is not there",
            K::DelBackend(api::BackendKey {
                service: s("web"),
                address: s("10.1.0.99"),
            }),
            &["no such backend", "10.1.0.99"],
        ),
        (
            "backend: delete the last one",
            K::DelBackend(api::BackendKey {
                service: s("web"),
                address: s("10.1.0.20"),
            }),
            &["at least one backend"],
        ),
        (
            "service: delete one that is not there",
            K::DelService(s("nope")),
            &["no such service"],
        ),
    ];
    for (name, bad, needles) in svc_cases {
        t.one(name, bad.clone(), needles);
        t.pair(name, bad, t.0.len() % 2 == 0, needles);
    }
    for (label, name) in bad_names(&long) {
        t.one(
            format!("service: {label} name"),
            service_with(|v| v.name = name.clone()),
            &["name", "not a valid name"],
        );
        t.no_echo(&name);
        t.one(
            format!("backend: {label} service name"),
            K::SetBackend(api::SetBackend {
                service: name.clone(),
                address: s("10.1.0.20"),
                weight: Some(2),
                state: String::new(),
            }),
            &["service", "not a valid name"],
        );
        t.no_echo(&name);
    }

    // ---- Trace and Capture
    policy_cases(&mut t, &long);

    let trace = |port: &str, frame: Vec<u8>| {
        Req::Trace(TraceRequest {
            in_port: s(port),
            frame,
        })
    };
    let frame = {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0xaa, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    };
    let bad_ports = [
        ("unknown", s("ghost")),
        ("empty", s("")),
        ("newline", s("p1\nERROR forged")),
        ("10k chars", long.clone()),
    ];
    for (label, name) in &bad_ports {
        let req = trace(name, frame.clone());
        t.invalid(format!("trace: {label} in_port"), req, &["in_port"]);
        t.no_echo(name);
    }
    let capture = |port: &str, direction: &str| {
        Req::Capture(CaptureRequest {
            port: s(port),
            direction: s(direction),
            count: 1,
            seconds: 1,
        })
    };
    for (label, name) in &bad_ports {
        t.invalid(
            format!("capture: {label} port"),
            capture(name, "rx"),
            &["port"],
        );
        t.no_echo(name);
    }
    for (label, dir) in [
        ("sideways", s("sideways")),
        ("upper case", s("RX")),
        ("newline", s("rx\nERROR forged")),
        ("10k chars", long.clone()),
    ] {
        let req = capture("p1", &dir);
        t.invalid(format!("capture: direction {label}"), req, &["direction"]);
        t.no_echo(&dir);
    }
    t
}

/// Policies, cluster policies and policy endpoints (issue #26): each refused
/// naming the field, quoting no long input, nothing changed.
fn policy_cases(t: &mut Table, long: &str) {
    let cases: Vec<(&str, K, &[&str])> = vec![
        (
            "policy: a CIDR that does not parse",
            policy_with(|p| p.ingress[0].peers[0] = ip_block("10.0.0/33", &[])),
            &["ingress[0].peers[0].ip_block.cidr", "not a CIDR"],
        ),
        (
            "policy: a CIDR prefix past 32",
            policy_with(|p| p.ingress[0].peers[0] = ip_block("10.0.0.0/40", &[])),
            &["ip_block.cidr"],
        ),
        (
            "policy: an except outside its block",
            policy_with(|p| p.ingress[0].peers[0] = ip_block("10.0.0.0/16", &["10.1.0.0/24"])),
            &["ip_block.except[0]", "outside"],
        ),
        (
            "policy: an except wider than its block",
            policy_with(|p| p.ingress[0].peers[0] = ip_block("10.0.0.0/16", &["10.0.0.0/8"])),
            &["ip_block.except[0]", "outside"],
        ),
        (
            "policy: an except of the other family",
            policy_with(|p| p.ingress[0].peers[0] = ip_block("10.0.0.0/16", &["fd00::/64"])),
            &["ip_block.except[0]", "family"],
        ),
        (
            "policy: an except that does not parse",
            policy_with(|p| p.ingress[0].peers[0] = ip_block("10.0.0.0/16", &["10.0.x.0/24"])),
            &["ip_block.except[0]", "not a CIDR"],
        ),
        (
            "policy: /0 with 10k excepts",
            policy_with(|p| {
                let holes: Vec<String> = (0..10_000u32)
                    .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
                    .collect();
                p.ingress[0].peers[0] = api::PolicyPeer {
                    addresses: vec![],
                    ip_block: Some(api::IpBlock {
                        cidr: s("0.0.0.0/0"),
                        except: holes,
                    }),
                };
            }),
            &["ip_block.except", "limit of 1000"],
        ),
        (
            "policy: endPort below port",
            policy_port(|x| {
                x.port = 90;
                x.end_port = 80;
            }),
            &["ports[0].end_port", "below port 90"],
        ),
        (
            "policy: endPort without a port",
            policy_port(|x| {
                x.port = 0;
                x.end_port = 80;
            }),
            &["ports[0].end_port", "numeric port"],
        ),
        (
            "policy: port 65536",
            policy_port(|x| x.port = 65_536),
            &["ports[0].port", "out of range"],
        ),
        (
            "policy: port u32::MAX (a -1 read wide)",
            policy_port(|x| x.port = u32::MAX),
            &["ports[0].port", "4294967295"],
        ),
        (
            "policy: endPort 70000",
            policy_port(|x| x.end_port = 70_000),
            &["ports[0].end_port", "out of range"],
        ),
        (
            "policy: port and port_name both",
            policy_port(|x| x.port_name = s("http")),
            &["ports[0].port_name", "not both"],
        ),
        (
            "policy: a port name of digits",
            policy_port(|x| {
                x.port = 0;
                x.port_name = s("80");
            }),
            &["ports[0].port_name", "not a port name"],
        ),
        (
            "policy: a port name in upper case",
            policy_port(|x| {
                x.port = 0;
                x.port_name = s("HTTP");
            }),
            &["ports[0].port_name"],
        ),
        (
            "policy: a port name with a newline",
            policy_port(|x| {
                x.port = 0;
                x.port_name = s("http\nERROR forged");
            }),
            &["ports[0].port_name"],
        ),
        (
            "policy: an unknown protocol",
            policy_port(|x| x.protocol = s("GRE")),
            &["ports[0].protocol", "\"GRE\""],
        ),
        (
            "policy: ICMP type 256",
            policy_port(|x| {
                x.port = 0;
                x.protocol = s("ICMP");
                x.icmp_type = Some(256);
            }),
            &["ports[0].icmp_type", "0-255"],
        ),
        (
            "policy: ICMP code u32::MAX",
            policy_port(|x| {
                x.port = 0;
                x.protocol = s("ICMPv6");
                x.icmp_type = Some(128);
                x.icmp_code = Some(u32::MAX);
            }),
            &["ports[0].icmp_code", "0-255"],
        ),
        (
            "policy: an ICMP code without a type",
            policy_port(|x| {
                x.port = 0;
                x.protocol = s("ICMP");
                x.icmp_code = Some(0);
            }),
            &["ports[0].icmp_code"],
        ),
        (
            "policy: a port on ICMP",
            policy_port(|x| x.protocol = s("ICMP")),
            &["ports[0].port", "does not apply to ICMP"],
        ),
        (
            "policy: an ICMP type on TCP",
            policy_port(|x| x.icmp_type = Some(8)),
            &["ports[0].icmp_type"],
        ),
        (
            "policy: a subject that is no address",
            policy_with(|p| p.subject = vec![s("10.1.0.2"), s("10.1.0.256")]),
            &["subject[1]", "not an IP address"],
        ),
        (
            "policy: a peer IP set with a bad address",
            policy_with(|p| {
                p.ingress[0].peers[0] = api::PolicyPeer {
                    addresses: vec![s("fd00::1::2")],
                    ip_block: None,
                }
            }),
            &["peers[0].addresses[0]"],
        ),
        (
            "policy: a peer with addresses and an ip_block",
            policy_with(|p| p.ingress[0].peers[0].addresses = vec![s("10.1.0.9")]),
            &["peers[0]", "not both"],
        ),
        (
            "policy: 65,537 subject addresses",
            policy_with(|p| {
                p.subject = (0..65_537u32)
                    .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff))
                    .collect()
            }),
            &["subject", "limit of 65536"],
        ),
        (
            "policy: 1,001 peers in a rule",
            policy_with(|p| p.ingress[0].peers = vec![ip_block("10.0.0.0/8", &[]); 1001]),
            &["ingress[0].peers", "limit of 1000"],
        ),
        (
            "policy: 1,001 ingress rules",
            policy_with(|p| p.ingress = vec![p.ingress[0].clone(); 1001]),
            &["ingress", "limit of 1000"],
        ),
        (
            "policy: 101 ports in a rule",
            policy_with(|p| p.ingress[0].ports = vec![p.ingress[0].ports[0].clone(); 101]),
            &["ingress[0].ports", "limit of 100"],
        ),
        (
            "policy: a direction that is not one",
            policy_with(|p| p.policy_types = vec![s("Sideways")]),
            &["policy_types[0]", "\"Sideways\""],
        ),
        (
            "policy: a direction twice",
            policy_with(|p| p.policy_types = vec![s("Ingress"), s("Ingress")]),
            &["policy_types"],
        ),
        (
            "policy: egress rules not in policy_types",
            policy_with(|p| p.egress = p.ingress.clone()),
            &["egress", "not in policy_types"],
        ),
        (
            "policy: a name that exists",
            policy_with(|p| p.name = s("x/web")),
            &["policy already exists"],
        ),
        (
            "policy: a traversal in the name",
            policy_with(|p| p.name = s("x/../y")),
            &["name", "not a valid policy name"],
        ),
        (
            "cluster policy: a tier that is not one",
            cluster_with(|p| p.tier = s("Middle")),
            &["tier", "\"Middle\""],
        ),
        (
            "cluster policy: an action that is not one",
            cluster_with(|p| p.ingress[0].action = s("Maybe")),
            &["ingress[0].action", "\"Maybe\""],
        ),
        (
            "cluster policy: Pass in the baseline tier",
            cluster_with(|p| {
                p.tier = s("Baseline");
                p.ingress[0].action = s("Pass");
            }),
            &["ingress[0].action", "admin-tier"],
        ),
        (
            "cluster policy: a name the other tier has",
            cluster_with(|p| {
                p.name = s("admin-1");
                p.tier = s("Baseline");
            }),
            &["cluster policy already exists"],
        ),
        (
            "cluster policy: a rule name outside the grammar",
            cluster_with(|p| p.ingress[0].name = s("no ssh")),
            &["ingress[0].name"],
        ),
        (
            "cluster policy: a bad CIDR in an egress rule",
            cluster_with(|p| {
                p.egress = vec![api::ClusterPolicyRule {
                    name: String::new(),
                    action: s("Allow"),
                    peers: vec![ip_block("fd00::/129", &[])],
                    ports: vec![],
                }]
            }),
            &["egress[0].peers[0].ip_block.cidr"],
        ),
        (
            "policy endpoint: named port 0",
            endpoint_ports_with(|e| e.named_ports[0].port = 0),
            &["named_ports[0].port", "port 0"],
        ),
        (
            "policy endpoint: named port 65536",
            endpoint_ports_with(|e| e.named_ports[0].port = 65_536),
            &["named_ports[0].port", "out of range"],
        ),
        (
            "policy endpoint: a named port over ICMP",
            endpoint_ports_with(|e| e.named_ports[0].protocol = s("ICMP")),
            &["named_ports[0].protocol"],
        ),
        (
            "policy endpoint: a port name twice",
            endpoint_ports_with(|e| {
                let again = e.named_ports[0].clone();
                e.named_ports.push(again);
            }),
            &["named_ports[1].name", "twice"],
        ),
        (
            "policy endpoint: 65 named ports",
            endpoint_ports_with(|e| {
                e.named_ports = (0..65u32)
                    .map(|i| api::NamedPort {
                        name: format!("p{i}"),
                        protocol: String::new(),
                        port: 1000 + i,
                    })
                    .collect()
            }),
            &["named_ports", "limit of 64"],
        ),
        (
            "policy endpoint: an address another one has",
            endpoint_ports_with(|e| e.addresses = vec![s("10.1.0.2")]),
            &["addresses[0]", "10.1.0.2 belongs to another endpoint"],
        ),
        (
            "policy endpoint: an address that is none",
            endpoint_ports_with(|e| e.addresses = vec![s("pod-a")]),
            &["addresses[0]", "not an IP address"],
        ),
    ];
    for (name, bad, needles) in cases {
        t.one(name, bad, needles);
    }
    // Deletes: of what is not there, and with a bad name.
    t.one(
        "policy: delete of a missing one",
        K::DelPolicy(s("x/none")),
        &["no such policy"],
    );
    t.one(
        "cluster policy: delete of a missing one",
        K::DelClusterPolicy(s("x/web")),
        &["no such cluster policy"],
    );
    t.one(
        "policy endpoint: delete of a missing one",
        K::DelPolicyEndpoint(s("x/none")),
        &["no such policy endpoint"],
    );
    // A replace (delete + add) whose add is bad: the delete is not applied.
    t.ops(
        "policy: a replace whose add is bad",
        vec![
            K::DelPolicy(s("x/web")),
            K::AddPolicy(api::NetworkPolicy {
                subject: vec![s("nope")],
                ..web_policy()
            }),
        ],
        1,
        &["subject[0]"],
    );
    // Beside a valid op of another resource (the whole-state path).
    t.pair(
        "policy: a bad CIDR",
        policy_with(|p| p.ingress[0].peers[0] = ip_block("300.0.0.0/8", &[])),
        true,
        &["ip_block.cidr"],
    );
    // Names outside the grammar, of each kind, and 10k-character inputs.
    for (label, name) in bad_names(long) {
        if label == "dot" || label == "dotdot" {
            continue;
        }
        t.one(
            format!("policy: {label} name"),
            policy_with(|p| p.name = name.clone()),
            &["name"],
        );
        t.no_echo(&name);
        t.one(
            format!("cluster policy: {label} name"),
            cluster_with(|p| p.name = name.clone()),
            &["name"],
        );
        t.no_echo(&name);
        t.one(
            format!("policy endpoint: {label} name"),
            endpoint_ports_with(|e| e.name = name.clone()),
            &["name"],
        );
        t.no_echo(&name);
        t.one(
            format!("policy: delete of a {label} name"),
            K::DelPolicy(name.clone()),
            &["name"],
        );
        t.no_echo(&name);
    }
    for (label, f) in [
        (
            "CIDR",
            Box::new(|p: &mut api::NetworkPolicy, l: &str| p.ingress[0].peers[0] = ip_block(l, &[]))
                as Box<dyn Fn(&mut api::NetworkPolicy, &str)>,
        ),
        (
            "except",
            Box::new(|p: &mut api::NetworkPolicy, l: &str| {
                p.ingress[0].peers[0] = ip_block("10.0.0.0/8", &[l])
            }),
        ),
        (
            "subject",
            Box::new(|p: &mut api::NetworkPolicy, l: &str| p.subject = vec![l.to_owned()]),
        ),
        (
            "protocol",
            Box::new(|p: &mut api::NetworkPolicy, l: &str| {
                p.ingress[0].ports[0].protocol = l.to_owned()
            }),
        ),
        (
            "port name",
            Box::new(|p: &mut api::NetworkPolicy, l: &str| {
                p.ingress[0].ports[0].port = 0;
                p.ingress[0].ports[0].port_name = l.to_owned();
            }),
        ),
        (
            "policy type",
            Box::new(|p: &mut api::NetworkPolicy, l: &str| p.policy_types = vec![l.to_owned()]),
        ),
    ] {
        t.one(
            format!("policy: a 10k-character {label}"),
            policy_with(|p| f(p, long)),
            &["x/new"],
        );
        t.no_echo(long);
    }
}

// ------------------------------------------------------------------ running

/// `@PCAP@` and `@VHOST@` in port parameters replaced by the allowed directories.
fn place_dirs(req: &mut Req, dir: &TempDir) {
    let Req::Write(w) = req else { return };
    for o in &mut w.ops {
        if let Some(K::AddPort(p)) = &mut o.op {
            for v in p.params.values_mut() {
                *v = v
                    .replace("@PCAP@", &dir.join("pcap").display().to_string())
                    .replace("@VHOST@", &dir.join("vhost").display().to_string());
            }
        }
    }
}

async fn send(c: &mut VswitchClient<Channel>, req: Req) -> Result<String, tonic::Status> {
    let deadline = Duration::from_secs(20);
    match req {
        Req::Write(r) => {
            let mut r = tonic::Request::new(r);
            r.set_timeout(deadline);
            c.write(r).await.map(|g| format!("{:?}", g.into_inner()))
        }
        Req::Replace(r) => c.replace(*r).await.map(|g| format!("{:?}", g.into_inner())),
        Req::Trace(r) => c.trace(r).await.map(|t| format!("{:?}", t.into_inner())),
        Req::Capture(r) => c.capture(r).await.map(|_| s("a capture stream")),
    }
}

/// A veth pair, deleted (both ends) on drop.
struct VethLink(String);

impl Drop for VethLink {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

/// Two af_packet ports on one interface (each would see every frame of the
/// pod's; the newer took its traffic): refused whole, naming the interface and
/// the port that has it, and nothing changes.
fn two_af_packet_ports_on_one_interface(
    rt: &tokio::runtime::Runtime,
    c: &mut VswitchClient<Channel>,
) {
    let link = VethLink(format!("vsbi{}", std::process::id() % 100_000));
    let peer = format!("{}p", link.0);
    let made = std::process::Command::new("ip")
        .args([
            "link", "add", &link.0, "type", "veth", "peer", "name", &peer,
        ])
        .output();
    assert!(
        made.is_ok_and(|o| o.status.success()),
        "cannot make a veth pair"
    );
    ip(&["link", "set", &link.0, "up"]);
    ip(&["link", "set", &peer, "up"]);
    let before = rt
        .block_on(c.get_state(api::GetStateRequest {}))
        .unwrap()
        .into_inner();
    let add = |name: &str| op(K::AddPort(port(name, "af_packet", &[("iface", &link.0)])));
    let e = rt
        .block_on(c.write(WriteRequest {
            ops: vec![add("afa"), add("afb")],
            expected_generation: 0,
        }))
        .expect_err("two af_packet ports on one interface were accepted");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().contains(&format!(
            "iface: interface \"{}\" is already port \"afa\"'s",
            link.0
        )),
        "{}",
        e.message()
    );
    let after = rt
        .block_on(c.get_state(api::GetStateRequest {}))
        .unwrap()
        .into_inner();
    assert_eq!(before, after);
}

/// What is wrong with the answer to `case` (nothing: empty).
fn judge(case: &Case, answer: &Result<String, tonic::Status>) -> Vec<String> {
    let mut wrong = Vec::new();
    let status = match answer {
        Ok(reply) => {
            wrong.push(format!("accepted: {reply}"));
            return wrong;
        }
        Err(status) => status,
    };
    let msg = status.message();
    if status.code() != case.code {
        wrong.push(format!(
            "code {:?}, expected {:?}",
            status.code(),
            case.code
        ));
    }
    let lower = msg.to_lowercase();
    for n in &case.needles {
        if !lower.contains(&n.to_lowercase()) {
            wrong.push(format!("the message does not contain {n:?}"));
        }
    }
    if let Some(i) = case.at {
        if !msg.starts_with(&format!("op {i} (")) {
            wrong.push(format!("the message does not blame op {i}"));
        }
    }
    if msg.len() > MESSAGE_LIMIT {
        wrong.push(format!(
            "the message is {} bytes, more than {MESSAGE_LIMIT}",
            msg.len()
        ));
    }
    if msg.contains(['\n', '\r']) {
        wrong.push(s("the message has a raw line break"));
    }
    // `endpoint #3`, `route #0 (…)`: positions in a generated document mean
    // nothing to an API client.
    if msg.contains(" #") {
        wrong.push(s("the message names an item by its position"));
    }
    if let Some(long) = &case.long {
        let window: String = long.chars().take(ECHO_WINDOW).collect();
        if msg.contains(&window) {
            wrong.push(format!(
                "the message echoes the {}-byte input ({ECHO_WINDOW}+ characters of it)",
                long.len()
            ));
        }
    }
    wrong
}

/// A message as a report shows it: escaped, cut.
fn shown(msg: &str) -> String {
    let cut: String = msg.chars().take(300).collect();
    let more = if cut.len() < msg.len() {
        format!("… ({} bytes)", msg.len())
    } else {
        String::new()
    };
    format!("{cut:?}{more}")
}

#[test]
fn bad_input_is_refused_whole_with_a_short_message() {
    require_root!();
    let started = Instant::now();
    let dir = TempDir::new(&format!("bad-input-{}", std::process::id()));
    for d in ["pcap", "vhost"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let mut sw = Vswitchd::start(&dir, &config(&dir));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sock = dir.join("ctl.sock");

    let mut c = rt.block_on(connect(&sock));
    let reply = rt
        .block_on(c.write(WriteRequest {
            ops: initial_ops(),
            expected_generation: 1,
        }))
        .unwrap_or_else(|e| panic!("the initial state was refused: {e:?}\n{}", sw.log_text()))
        .into_inner();
    assert_eq!(reply.generation, 2);
    let mut before = rt
        .block_on(c.get_state(api::GetStateRequest {}))
        .unwrap()
        .into_inner();
    assert_eq!(before.generation, 2);

    let table = cases();
    let count = table.0.len();
    assert!(count >= 80, "only {count} cases");
    let mut names = HashMap::new();
    for (i, c) in table.0.iter().enumerate() {
        if let Some(j) = names.insert(c.name.clone(), i) {
            panic!("cases {j} and {i} are both named {:?}", c.name);
        }
    }
    // BAD_INPUT_SHOW=1 prints every answer, to review the messages.
    let show = std::env::var_os("BAD_INPUT_SHOW").is_some();
    let mut failures = Vec::new();
    for mut case in table.0 {
        let mut req = std::mem::replace(&mut case.req, Req::Write(WriteRequest::default()));
        place_dirs(&mut req, &dir);
        let answer = rt.block_on(send(&mut c, req));
        let mut wrong = judge(&case, &answer);
        if show {
            match &answer {
                Ok(r) => eprintln!("{}: OK {}", case.name, shown(r)),
                Err(st) => eprintln!("{}: {:?} {}", case.name, st.code(), shown(st.message())),
            }
        }
        if let Some(Ok(Some(status))) = sw.child.0.as_mut().map(|ch| ch.try_wait()) {
            failures.push(format!(
                "{}: the daemon exited ({status}):\n{}",
                case.name,
                sw.log_text()
            ));
            break;
        }
        match rt.block_on(c.get_state(api::GetStateRequest {})) {
            Ok(after) => {
                let after = after.into_inner();
                if after != before {
                    wrong.push(format!(
                        "the state changed: generation {} -> {}",
                        before.generation, after.generation
                    ));
                    // Judge the next cases against what is there now.
                    before = after;
                }
            }
            Err(e) => wrong.push(format!("GetState failed afterwards: {e:?}")),
        }
        if rt.block_on(c.health(api::HealthRequest {})).is_err() {
            wrong.push(s("Health failed afterwards"));
        }
        if !wrong.is_empty() {
            let answer = match &answer {
                Ok(r) => format!("OK {}", shown(r)),
                Err(st) => format!("{:?} {}", st.code(), shown(st.message())),
            };
            failures.push(format!(
                "{}:\n    {}\n    answer: {answer}",
                case.name,
                wrong.join("\n    ")
            ));
        }
    }
    // An empty or truncated frame on a real port is not a bad request: the trace
    // says it is dropped as malformed (or refuses it), and nothing else happens.
    for (label, frame) in [("zero-byte", vec![]), ("13-byte", vec![0xffu8; 13])] {
        let answer = rt.block_on(c.trace(TraceRequest {
            in_port: s("p1"),
            frame,
        }));
        if show {
            eprintln!("trace of a {label} frame: {answer:?}");
        }
        match answer {
            Ok(r) if r.get_ref().verdict == "drop" => {}
            Err(st) if st.code() == Code::InvalidArgument && !st.message().contains('\n') => {}
            other => failures.push(format!("trace of a {label} frame: {other:?}")),
        }
    }
    let after = rt.block_on(c.get_state(api::GetStateRequest {}));
    if !after.as_ref().is_ok_and(|a| *a.get_ref() == before) {
        failures.push(s("trace of a malformed frame: the state changed"));
    }
    let took = started.elapsed();
    eprintln!("{count} bad-input cases in {took:?}");
    two_af_packet_ports_on_one_interface(&rt, &mut c);
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(took < Duration::from_secs(30), "the suite took {took:?}");
}
