//! Tests holding the forms of a resource together: every proto field of every
//! resource goes through the file, the API (validation and the wire), the
//! documents' JSON and the state file, and comes back the same.

use prost::Message;

use super::*;
use crate::config::VswitchConfig;
use crate::state::{from_config, to_sections, Fixed};

const PROTO: &str = include_str!("../proto/vswitch/v1/vswitch.proto");

/// Every resource, each of its fields set away from its proto3 default (in
/// canonical text, as validation writes it back).
const EVERY_FIELD: &str = r#"
[[port]]
name = "uplink"
profile = "af_packet"
iface = "vsw-up"
group = "g1"
mtu = 9000
[[port]]
name = "a"
profile = "null"
no_rx = false
size = 128
group = "g2"
[[port]]
name = "b"
profile = "pcap"
rx_pcap = "/tmp/in.pcap"
infinite_rx = true
group = "g2"
[[port]]
name = "pod1"
profile = "tap"
iface = "vsw-t1"
mac = "02:00:00:00:03:01"
[[patch]]
from = "a"
to = "b"
[[l2]]
mac = "02:00:00:00:09:01"
port = "b"
[underlay]
uplink = "uplink"
local_vtep_ip = "192.0.2.1"
local_mac = "02:00:00:00:ff:01"
mtu = 1600
on_link = "192.0.2.0/24"
gateway = "192.0.2.254"
neighbors = [{ ip = "192.0.2.9", mac = "02:00:00:00:ff:09" }]
[[network]]
name = "blue"
vni = 100
encap = "geneve"
tenant = "t1"
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "02:00:00:00:aa:01"
flood_unknown = true
vteps = ["192.0.2.2"]
conntrack = true
conntrack_window_tracking = false
policy_on_change = "keep"
[[endpoint]]
network = "blue"
mac = "02:00:00:00:01:01"
ips = ["10.1.0.2"]
port = "pod1"
[[remote_endpoint]]
network = "blue"
mac = "02:00:00:00:02:01"
ips = ["10.1.0.3"]
vtep = "192.0.2.2"
[[route]]
tenant = "t1"
prefix = "0.0.0.0/0"
next_hop = { network = "blue", ip = "10.1.0.3" }
[[route]]
tenant = "t1"
prefix = "10.99.0.0/16"
blackhole = true
[[service]]
name = "web"
network = "blue"
cluster_ip = "10.96.0.10"
external_ips = ["198.51.100.10"]
session_affinity = "ClientIP"
affinity_timeout_s = 600
table_size = 251
ports = [{ name = "dns", protocol = "UDP", port = 53, target_port = 5353, node_port = 30053 }]
backends = [{ address = "10.1.0.2", weight = 3, state = "draining" }, { address = "10.1.0.3", weight = 2, state = "active" }]
[[policy]]
name = "x/web"
subject = ["10.1.0.2"]
policy_types = ["Ingress", "Egress"]
ingress = [{ peers = [{ ip_block = { cidr = "10.0.0.0/8", except = ["10.9.0.0/16"] } }, { addresses = ["10.1.0.3"] }], ports = [{ protocol = "UDP", port = 53, end_port = 54 }, { protocol = "TCP", port_name = "http" }, { protocol = "ICMP", icmp_type = 3, icmp_code = 1 }] }]
egress = [{ peers = [{ addresses = ["10.1.0.3"] }], ports = [{ protocol = "SCTP", port = 9 }] }]
[[cluster_policy]]
name = "deny-ssh"
tier = "Admin"
priority = 5
subject = ["10.1.0.2"]
ingress = [{ name = "ssh", action = "Deny", peers = [{ addresses = ["10.1.0.3"] }], ports = [{ protocol = "TCP", port = 22 }] }]
egress = [{ name = "out", action = "Pass", peers = [{ ip_block = { cidr = "0.0.0.0/0", except = ["10.0.0.0/8"] } }], ports = [{ protocol = "UDP", port = 53 }] }]
[[policy_endpoint]]
name = "x/b"
addresses = ["10.1.0.3"]
named_ports = [{ name = "http", protocol = "TCP", port = 8080 }]
"#;

fn sample() -> (VswitchConfig, api::DesiredState) {
    let cfg = VswitchConfig::parse(EVERY_FIELD, 2).unwrap();
    let state = from_config(&cfg);
    (cfg, state)
}

/// The field names of message `name` as the proto file declares them (the
/// fields of its `oneof` included).
fn proto_fields(name: &str) -> std::collections::BTreeSet<String> {
    let start = PROTO
        .find(&format!("message {name} {{"))
        .unwrap_or_else(|| panic!("message {name}"));
    let body = &PROTO[start..];
    let body = &body[..body.find("\n}").unwrap()];
    body.lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.split("//").next()?.trim();
            let decl = l.strip_suffix(';')?.split('=').next()?;
            decl.split_whitespace().last().map(str::to_owned)
        })
        .collect()
}

/// Whether the proto declares `message`'s `field` `optional` (explicit
/// presence: any value set, `false` and `0` included, is not the default).
fn proto_optional(message: &str, field: &str) -> bool {
    let start = PROTO.find(&format!("message {message} {{")).unwrap();
    let body = &PROTO[start..];
    let body = &body[..body.find("\n}").unwrap()];
    body.lines()
        .any(|l| l.trim().starts_with("optional ") && l.contains(&format!(" {field} = ")))
}

/// The keys of `items`' serde forms, after checking that no value is a default
/// (a key left at its default would not show whether the field survives).
fn keys<T: Serialize>(what: &str, items: &[T]) -> std::collections::BTreeSet<String> {
    let mut keys = std::collections::BTreeSet::new();
    for item in items {
        let serde_json::Value::Object(m) = serde_json::to_value(item).unwrap() else {
            panic!("{what}: not an object")
        };
        for (k, v) in m {
            let default = match &v {
                _ if proto_optional(what, &k) => v.is_null(),
                serde_json::Value::String(s) => s.is_empty(),
                serde_json::Value::Number(n) => n.as_u64() == Some(0),
                serde_json::Value::Bool(b) => !b,
                serde_json::Value::Array(a) => a.is_empty(),
                serde_json::Value::Object(o) => o.is_empty(),
                serde_json::Value::Null => true,
            };
            assert!(!default, "{what}.{k} is at its default in the sample: {v}");
            keys.insert(k);
        }
    }
    keys
}

#[test]
fn the_sample_sets_every_field_of_every_resource() {
    let (_, s) = sample();
    let u = s.underlay.clone().unwrap();
    let cases = [
        ("Port", keys("Port", &s.ports)),
        ("Patch", keys("Patch", &s.patches)),
        ("L2Entry", keys("L2Entry", &s.l2)),
        ("Underlay", keys("Underlay", std::slice::from_ref(&u))),
        ("StaticNeighbor", keys("StaticNeighbor", &u.neighbors)),
        ("Network", keys("Network", &s.networks)),
        ("Endpoint", keys("Endpoint", &s.endpoints)),
        (
            "RemoteEndpoint",
            keys("RemoteEndpoint", &s.remote_endpoints),
        ),
        ("Route", keys("Route", &s.routes)),
        ("Service", keys("Service", &s.services)),
        ("ServicePort", keys("ServicePort", &s.services[0].ports)),
        ("Backend", keys("Backend", &s.services[0].backends)),
        ("NetworkPolicy", keys("NetworkPolicy", &s.policies)),
        (
            "NetworkPolicyRule",
            keys("NetworkPolicyRule", &s.policies[0].ingress),
        ),
        (
            "PolicyPeer",
            keys("PolicyPeer", &s.policies[0].ingress[0].peers),
        ),
        (
            "IpBlock",
            keys(
                "IpBlock",
                &[s.policies[0].ingress[0].peers[0].ip_block.clone().unwrap()],
            ),
        ),
        (
            "PolicyPort",
            keys("PolicyPort", &s.policies[0].ingress[0].ports),
        ),
        ("ClusterPolicy", keys("ClusterPolicy", &s.cluster_policies)),
        (
            "ClusterPolicyRule",
            keys("ClusterPolicyRule", &s.cluster_policies[0].ingress),
        ),
        (
            "PolicyEndpoint",
            keys("PolicyEndpoint", &s.policy_endpoints),
        ),
        (
            "NamedPort",
            keys("NamedPort", &s.policy_endpoints[0].named_ports),
        ),
    ];
    for (message, keys) in cases {
        assert_eq!(
            keys,
            proto_fields(message),
            "{message}: serde keys vs proto"
        );
    }
    let hops: Vec<_> = s
        .routes
        .iter()
        .filter_map(|r| match &r.target {
            Some(api::route::Target::NextHop(h)) => Some(h.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(keys("NextHop", &hops), proto_fields("NextHop"));
    // The profiles' parameters: each profile's keys of the sample.
    let params: std::collections::BTreeSet<_> = s
        .ports
        .iter()
        .flat_map(|p| p.params.keys().cloned())
        .collect();
    for k in ["iface", "no_rx", "size", "rx_pcap", "infinite_rx", "mac"] {
        assert!(params.contains(k), "{k} missing from {params:?}");
    }
}

#[test]
fn every_field_round_trips_through_the_file_the_api_and_the_documents() {
    let (cfg, s) = sample();
    let fixed = Fixed::from_config(&cfg, 2);
    // The API: validation gives back exactly what it was given (canonical text
    // is a fixed point), and so does the wire.
    let v = fixed.validate(&s).unwrap();
    assert_eq!(v.state, s);
    assert_eq!(v.config.ports, cfg.ports);
    let wire = api::DesiredState::decode(s.encode_to_vec().as_slice()).unwrap();
    assert_eq!(wire, s);
    // The file: the state's sections printed as TOML text and read back as a
    // configuration file are the same resources.
    let text = toml::to_string(&to_sections(&s).unwrap()).unwrap();
    let reread = VswitchConfig::parse(&text, 2).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(from_config(&reread), s, "{text}");
    // The documents' JSON, resource by resource.
    fn json<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(items: &[T]) {
        for i in items {
            let text = serde_json::to_string(i).unwrap();
            let back: T = serde_json::from_str(&text).unwrap();
            assert_eq!(&back, i, "{text}");
        }
    }
    json(&s.ports);
    json(&s.patches);
    json(&s.l2);
    json(std::slice::from_ref(s.underlay.as_ref().unwrap()));
    json(&s.networks);
    json(&s.endpoints);
    json(&s.remote_endpoints);
    json(&s.routes);
    json(&s.services);
    json(&s.policies);
    json(&s.cluster_policies);
    json(&s.policy_endpoints);
}

#[test]
fn every_field_round_trips_through_the_state_file() {
    let (cfg, s) = sample();
    let fixed = Fixed::from_config(&cfg, 2);
    let dir = crate::testutil::TempDir::new("model");
    let path = dir.path().join("state.json");
    crate::persist::store(&path, 5, &to_sections(&s).unwrap()).unwrap();
    let booted = crate::state::Desired::boot(&cfg, &fixed, Some(&path)).unwrap();
    assert_eq!((booted.generation, &booted.state), (5, &s));
}

#[test]
fn a_route_with_both_targets_is_refused_in_every_form() {
    let both = "prefix = \"10.0.0.0/8\"\nblackhole = true\nnext_hop = { network = \"n\", ip = \"10.0.0.1\" }\n";
    let e = toml::from_str::<api::Route>(both).unwrap_err().to_string();
    assert!(e.contains(ROUTE_TARGET), "{e}");
    let e = serde_json::from_str::<api::Route>(
        r#"{"prefix":"10.0.0.0/8","blackhole":true,"next_hop":{"network":"n","ip":"10.0.0.1"}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains(ROUTE_TARGET), "{e}");
}

#[test]
fn wide_integers_are_refused_naming_the_key() {
    let e = serde_json::from_str::<api::Network>(
        r#"{"name":"n","vni":-1,"gateway_mac":"02:00:00:00:00:01"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("vni -1 is out of range (0-16777215)"), "{e}");
    let e = serde_json::from_str::<api::Port>(r#"{"name":"p","mtu":-5}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mtu: -5 is out of range (0-65535)"), "{e}");
    // A service's numbers, in the file and in a document alike.
    for (doc, want) in [
        (
            r#"{"address":"10.0.0.2","weight":-1}"#,
            "weight -1 is out of range (0-65535)",
        ),
        (r#"{"address":"10.0.0.2"}"#, ""),
    ] {
        let r = serde_json::from_str::<api::Backend>(doc);
        match want {
            "" => assert_eq!(r.unwrap().weight, None),
            want => assert!(r.unwrap_err().to_string().contains(want)),
        }
    }
    for (doc, want) in [
        (r#"{"port":-80}"#, "port -80 is out of range (0-65535)"),
        (
            r#"{"port":80,"target_port":-80}"#,
            "target_port -80 is out of range (0-65535)",
        ),
        (
            r#"{"port":80,"node_port":-80}"#,
            "node_port -80 is out of range (0-65535)",
        ),
    ] {
        let e = serde_json::from_str::<api::ServicePort>(doc)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{doc}: {e}");
    }
    let toml_service = |key: &str| {
        format!(
            "name = \"s\"\nnetwork = \"n\"\ncluster_ip = \"10.96.0.1\"\n{key} = -3\n\
             ports = [{{ port = 80 }}]\nbackends = [{{ address = \"10.0.0.2\" }}]\n"
        )
    };
    for (key, want) in [
        ("table_size", "table_size -3 is out of range (0-1048573)"),
        (
            "affinity_timeout_s",
            "affinity_timeout_s -3 is out of range (0-86400)",
        ),
    ] {
        let e = toml::from_str::<api::Service>(&toml_service(key))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{key}: {e}");
    }
    let e = serde_json::from_str::<api::SetBackend>(
        r#"{"service":"s","address":"10.0.0.2","weight":-7}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("weight -7 is out of range (0-65535)"), "{e}");
    // A policy's numbers: read wide, refused naming the key before narrowing.
    for (doc, want) in [
        (r#"{"port":-1}"#, "port -1 is out of range (1-65535)"),
        (r#"{"port":65536}"#, "port 65536 is out of range (1-65535)"),
        (r#"{"port":"http"}"#, "a named port goes in `port_name`"),
        (
            r#"{"port":1,"end_port":-2}"#,
            "end_port -2 is out of range (0-65535)",
        ),
        (
            r#"{"icmp_type":-1}"#,
            "icmp_type -1 is out of range (0-255)",
        ),
        (
            r#"{"icmp_type":3,"icmp_code":256}"#,
            "icmp_code 256 is out of range (0-255)",
        ),
        (r#"{"port":4294967376}"#, "port 4294967376 is out of range"),
    ] {
        let e = serde_json::from_str::<api::PolicyPort>(doc)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{doc}: {e}");
    }
    let e = serde_json::from_str::<api::ClusterPolicy>(
        r#"{"name":"c","tier":"Admin","priority":-1,"subject":[]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("priority -1 is out of range"), "{e}");
    let e = serde_json::from_str::<api::NamedPort>(r#"{"name":"h","port":-8080}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("port -8080 is out of range"), "{e}");
}

/// The configuration files users have still load: the shipped ones and the
/// README's examples. Their `[[network]]`, `[[route]]`, … items are read as the
/// proto messages now.
#[test]
fn shipped_and_documented_configurations_still_load() {
    for (name, text) in [
        (
            "deploy/vswitchd.toml",
            include_str!("../../deploy/vswitchd.toml"),
        ),
        (
            "deploy/debian/vswitchd.toml",
            include_str!("../../deploy/debian/vswitchd.toml"),
        ),
        (
            "deploy/bluefield/vswitchd.toml",
            include_str!("../../deploy/bluefield/vswitchd.toml"),
        ),
    ] {
        VswitchConfig::parse(text, 64).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let readme = include_str!("../../README.md");
    let mut checked = 0;
    for block in readme.split("```toml\n").skip(1) {
        let block = &block[..block.find("```").unwrap()];
        VswitchConfig::parse(block, 64).unwrap_or_else(|e| panic!("README: {e}\n{block}"));
        checked += 1;
    }
    assert!(checked >= 3, "{checked} README examples");
}

/// Journal lines as the previous release wrote them (its own structs for the
/// added items, every key printed) read as the same ops.
#[test]
fn journal_lines_of_the_previous_format_still_load() {
    use crate::persist::{JournalEntry, JournalOp};
    let line = r#"{"generation":8,"ops":[
        {"add_port":{"name":"p","profile":"null","params":{}}},
        {"add_port":{"name":"q","profile":"tap","params":{"iface":"t"},"group":"g","mtu":1400}},
        {"add_network":{"name":"n","vni":7,"encap":"vxlan","tenant":"default","subnets":["10.0.0.0/24"],"gateway_ips":[],"gateway_mac":"02:00:00:00:00:01","flood_unknown":false,"vteps":[]}},
        {"add_endpoint":{"network":"n","mac":"02:00:00:00:00:02","ips":["10.0.0.2"],"port":"p"}},
        {"add_remote_endpoint":{"network":"n","mac":"02:00:00:00:00:03","ips":[],"vtep":"192.0.2.2"}},
        {"add_route":{"tenant":"default","prefix":"10.9.0.0/16"}}
    ]}"#;
    let e: JournalEntry = serde_json::from_str(line).unwrap();
    let JournalOp::AddPort(q) = &e.ops[1] else {
        panic!("{:?}", e.ops[1])
    };
    assert_eq!(
        (q.params["iface"].as_str(), q.group.as_str(), q.mtu),
        ("t", "g", 1400)
    );
    let JournalOp::AddNetwork(n) = &e.ops[2] else {
        panic!("{:?}", e.ops[2])
    };
    assert_eq!((n.vni, n.subnets.len(), n.flood_unknown), (7, 1, false));
    assert!(matches!(&e.ops[3], JournalOp::AddEndpoint(ep) if ep.port == "p"));
    assert!(matches!(&e.ops[4], JournalOp::AddRemoteEndpoint(r) if r.vtep == "192.0.2.2"));
    // A route without a next hop was journalled as a blackhole.
    let op = crate::delta::op_of(&e.ops[5]);
    assert!(matches!(
        op.op,
        Some(api::op::Op::AddRoute(api::Route {
            target: Some(api::route::Target::Blackhole(true)),
            ..
        }))
    ));
    // And what is journalled now reads back the same.
    let again: JournalEntry = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(again, e);
}
