//! Tests of the document format and the diff.

use super::*;

const SAMPLE: &str = r#"
ports:
  - name: pod3
    profile: tap
    params: {iface: vsw-tap3, mac: "02:00:00:00:03:01"}
  - name: replay
    profile: pcap
    params: {rx_pcap: /var/lib/vswitch/l2-64.pcap, infinite_rx: true, size: 64}
    group: bench
    mtu: 9000
  - {name: sink, profile: "null", group: bench}
  - {name: uplink, profile: af_packet, params: {iface: vsw-uplink}}
patches: [{from: replay, to: sink}]
l2: [{mac: "02:00:00:00:01:01", port: pod1}]
underlay:
  uplink: uplink
  local_vtep_ip: 192.0.2.1
  local_mac: "02:00:00:00:ff:01"
  mtu: 1500
  on_link: 192.0.2.0/24
  gateway: 192.0.2.254
  neighbors: [{ip: 192.0.2.2, mac: "02:00:00:00:ff:02"}]
networks:
  - name: blue
    vni: 100
    encap: vxlan
    tenant: t1
    subnets: [10.1.0.0/24, "fd00:1::/64"]
    gateway_ips: [10.1.0.1, "fd00:1::1"]
    gateway_mac: "02:00:00:00:aa:01"
    vteps: [192.0.2.2]
endpoints:
  - {network: blue, mac: "02:00:00:00:03:01", ips: [10.1.0.2, "fd00:1::2"], port: pod3}
remote_endpoints:
  - {network: blue, mac: "02:00:00:00:02:11", ips: [10.1.0.3], vtep: 192.0.2.2}
  - {network: blue, mac: "02:00:00:00:02:fe", ips: [10.1.0.254], vtep: 192.0.2.3}
routes:
  - {tenant: t1, prefix: 0.0.0.0/0, next_hop: {network: blue, ip: 10.1.0.254}}
  - {tenant: t1, prefix: 10.99.0.0/16, blackhole: true}
"#;

fn sample() -> Document {
    parse(SAMPLE, Format::Yaml).unwrap()
}

#[test]
fn parses_the_sample() {
    let d = sample();
    assert_eq!(d.ports.len(), 4);
    let replay = &d.ports[1];
    assert_eq!(
        replay.params["infinite_rx"], "true",
        "YAML scalars become text"
    );
    assert_eq!(replay.params["size"], "64");
    assert_eq!(replay.mtu, 9000);
    assert_eq!(d.ports[2].profile, "null");
    assert_eq!(d.underlay.as_ref().unwrap().neighbors.len(), 1);
    assert_eq!(
        d.routes[1].target,
        Some(api::route::Target::Blackhole(true))
    );
    assert!(matches!(
        &d.routes[0].target,
        Some(api::route::Target::NextHop(nh)) if nh.ip == "10.1.0.254"
    ));
}

#[test]
fn yaml_and_json_round_trip() {
    let d = sample();
    for f in [Format::Yaml, Format::Json] {
        let text = print(&d, f);
        assert_eq!(parse(&text, f).unwrap(), d, "{f:?}:\n{text}");
    }
}

#[test]
fn proto_round_trip_is_lossless() {
    let d = sample();
    let proto: api::DesiredState = d.clone().into();
    assert!(matches!(
        proto.routes[1].target,
        Some(api::route::Target::Blackhole(true))
    ));
    assert_eq!(proto.ports[1].params["infinite_rx"], "true");
    let mut back: Document = proto.into();
    back.ports.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(back, d);
    // An export, re-read, differs in nothing.
    let exported = print(&back, Format::Yaml);
    assert!(diff(&back, &parse(&exported, Format::Yaml).unwrap()).is_empty());
}

#[test]
fn empty_inputs_are_the_empty_state() {
    assert_eq!(parse("", Format::Yaml).unwrap(), Document::default());
    assert_eq!(
        parse("# nothing\n\n", Format::Yaml).unwrap(),
        Document::default()
    );
    assert_eq!(parse("{}", Format::Json).unwrap(), Document::default());
    let text = print(&Document::default(), Format::Yaml);
    assert_eq!(parse(&text, Format::Yaml).unwrap(), Document::default());
}

#[test]
fn unknown_keys_are_refused() {
    let e = parse(
        "networks: [{name: a, vni: 1, gateway_mac: x, vnii: 2}]",
        Format::Yaml,
    )
    .unwrap_err();
    assert!(e.contains("vnii"), "{e}");
    let e = parse("portz: []", Format::Yaml).unwrap_err();
    assert!(e.contains("portz"), "{e}");
    let e = parse(
        r#"{"ports":[{"name":"a","profile":"tap","params":{"x":[1]}}]}"#,
        Format::Json,
    )
    .unwrap_err();
    assert!(e.contains("param `x`"), "{e}");
}

#[test]
fn format_from_extension() {
    assert_eq!(Format::from_path("state.json"), Format::Json);
    assert_eq!(Format::from_path("STATE.JSON"), Format::Json);
    assert_eq!(Format::from_path("state.yaml"), Format::Yaml);
    assert_eq!(Format::from_path("state.yml"), Format::Yaml);
}

#[test]
fn diff_of_equal_documents_is_empty() {
    let d = sample();
    let diff = diff(&d, &d);
    assert!(diff.is_empty());
    assert_eq!(diff.summary(), "no changes\n");
}

#[test]
fn diff_ignores_order_and_defaults() {
    let cur = sample();
    let mut des = sample();
    des.ports.reverse();
    des.remote_endpoints.reverse();
    des.ports[0].group = "default".into(); // uplink: "" == "default"
    des.networks[0].encap = String::new(); // "" == "vxlan"
    des.underlay.as_mut().unwrap().mtu = 0; // 0 == 1500
    des.endpoints[0].mac = "02:00:00:00:03:01".to_uppercase();
    let d = diff(&cur, &des);
    assert!(d.is_empty(), "{}", d.summary());
}

#[test]
fn diff_reports_added_removed_changed_per_kind() {
    let cur = sample();
    let mut des = sample();
    des.ports.retain(|p| p.name != "sink");
    des.patches.clear();
    des.ports.push(api::Port {
        name: "pod4".into(),
        profile: "af_packet".into(),
        params: [("iface".to_string(), "vsw-pod4".to_string())].into(),
        ..api::Port::default()
    });
    des.ports[0]
        .params
        .insert("iface".into(), "vsw-tap9".into());
    des.networks[0].vteps.push("192.0.2.9".into());
    des.routes[1].target = Some(api::route::Target::NextHop(api::NextHop {
        network: "blue".into(),
        ip: "10.1.0.3".into(),
    }));
    des.underlay = None;
    let d = diff(&cur, &des);
    let kind = |k: &str| d.kinds.iter().find(|x| x.kind == k).unwrap().clone();
    assert_eq!(kind("ports").added, ["pod4"]);
    assert_eq!(kind("ports").removed, ["sink"]);
    assert_eq!(kind("ports").changed, ["pod3"]);
    assert_eq!(kind("patches").removed, ["replay"]);
    assert_eq!(kind("networks").changed, ["blue"]);
    assert_eq!(kind("routes").changed, ["t1 10.99.0.0/16"]);
    assert_eq!(kind("underlay").removed, ["underlay"]);
    assert!(kind("endpoints").is_empty());
    let s = d.summary();
    assert!(
        s.contains("ports: 1 added, 1 removed, 1 changed\n  + pod4\n  - sink\n  ~ pod3\n"),
        "{s}"
    );
    assert!(
        s.contains("routes: 0 added, 0 removed, 1 changed\n  ~ t1 10.99.0.0/16\n"),
        "{s}"
    );
    assert!(!s.contains("endpoints"), "{s}");
}

#[test]
fn route_tenant_default_is_the_same_route() {
    let a = parse(
        "routes: [{prefix: 10.0.0.0/8, blackhole: true}]",
        Format::Yaml,
    )
    .unwrap();
    let b = parse(
        "routes: [{tenant: default, prefix: 10.0.0.0/8, blackhole: true}]",
        Format::Yaml,
    )
    .unwrap();
    assert!(diff(&a, &b).is_empty());
    let d = diff(&Document::default(), &b);
    assert_eq!(
        d.kinds.iter().find(|k| k.kind == "routes").unwrap().added,
        ["default 10.0.0.0/8"]
    );
}

#[test]
fn a_duplicated_item_is_a_change_for_the_switch_to_refuse() {
    let one: Document =
        serde_json::from_str(r#"{"ports":[{"name":"a","profile":"null"}]}"#).unwrap();
    let two: Document = serde_json::from_str(
        r#"{"ports":[{"name":"a","profile":"null"},{"name":"a","profile":"null"}]}"#,
    )
    .unwrap();
    let d = diff(&one, &two);
    assert!(
        !d.is_empty(),
        "a duplicate must reach the switch, which refuses it"
    );
    assert!(diff(&one, &one).is_empty());
}

#[test]
fn generation_from_the_yaml_header_comment() {
    let text = format!("# vswitchd desired state, generation 7\n{SAMPLE}");
    let d = parse(&text, Format::Yaml).unwrap();
    assert_eq!(d.generation, Some(7));
    assert_eq!(
        Document {
            generation: None,
            ..d.clone()
        },
        sample(),
        "the generation is not part of the state"
    );
    assert!(diff(&sample(), &d).is_empty());
    // Other wordings of the header; blank lines and `---` before it.
    for header in [
        "# generation 12\n",
        "\n---\n# exported by bob\n#   Generation: 12 (after the blue change)\n",
        "#generation 12\n",
    ] {
        let d = parse(&format!("{header}ports: []\n"), Format::Yaml).unwrap();
        assert_eq!(d.generation, Some(12), "{header:?}");
    }
    // None: no header, a comment below the content, words that are not it.
    for text in [
        SAMPLE.to_string(),
        "ports: []\n# generation 3\n".into(),
        "# regenerated 3 times\nports: []\n".into(),
        "# generation: unknown\nports: []\n".into(),
        String::new(),
    ] {
        assert_eq!(
            parse(&text, Format::Yaml).unwrap().generation,
            None,
            "{text:?}"
        );
    }
    // A comment-only document is the empty state at that generation.
    let d = parse("# vswitchd desired state, generation 4\n", Format::Yaml).unwrap();
    assert_eq!(
        d,
        Document {
            generation: Some(4),
            ..Document::default()
        }
    );
    // Contradictions are refused.
    let e = parse("# generation 4\n# generation 5\nports: []\n", Format::Yaml).unwrap_err();
    assert!(e.contains("4") && e.contains("5"), "{e}");
    let e = parse("# generation 4\ngeneration: 5\nports: []\n", Format::Yaml).unwrap_err();
    assert!(e.contains("generation 4") && e.contains("5"), "{e}");
    // The key alone, and the key agreeing with the comment.
    assert_eq!(
        parse("generation: 9\n", Format::Yaml).unwrap().generation,
        Some(9)
    );
    assert_eq!(
        parse("# generation 9\ngeneration: 9\n", Format::Yaml)
            .unwrap()
            .generation,
        Some(9)
    );
    assert!(parse("generation: -1\n", Format::Yaml).is_err());
}

#[test]
fn generation_in_json_is_a_key() {
    let d = parse(r#"{"generation": 3, "ports": []}"#, Format::Json).unwrap();
    assert_eq!(d.generation, Some(3));
    assert_eq!(
        parse(r#"{"ports": []}"#, Format::Json).unwrap().generation,
        None
    );
    assert!(parse(r#"{"generation": "3"}"#, Format::Json).is_err());
}

#[test]
fn print_writes_the_generation_parse_reads_it() {
    let d = Document {
        generation: Some(42),
        ..sample()
    };
    let yaml = print(&d, Format::Yaml);
    assert!(
        yaml.starts_with("# vswitchd desired state, generation 42\n"),
        "{yaml}"
    );
    assert!(
        !yaml.contains("\ngeneration:"),
        "a comment, not a key: {yaml}"
    );
    let json = print(&d, Format::Json);
    assert!(json.starts_with("{\n  \"generation\": 42,"), "{json}");
    for (text, format) in [(yaml, Format::Yaml), (json, Format::Json)] {
        assert_eq!(parse(&text, format).unwrap(), d, "{format:?}");
    }
    // Without one, neither is written.
    assert!(!print(&sample(), Format::Yaml).contains("generation"));
    assert!(!print(&sample(), Format::Json).contains("generation"));
}

/// Every resource, each of its keys set away from its default: as a file's
/// items, and as the `vswitchctl` commands that write the same resources.
const EVERY_KEY_FILE: &str = r#"
[[port]]
name = "uplink"
profile = "af_packet"
iface = "vsw-up"
group = "g1"
mtu = 9000
[[port]]
name = "pod1"
profile = "tap"
iface = "vsw-t1"
mac = "02:00:00:00:03:01"
[[port]]
name = "a"
profile = "null"
no_rx = false
size = 128
group = "g2"
[[port]]
name = "b"
profile = "null"
group = "g2"
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
"#;

const EVERY_KEY_COMMANDS: &[&str] = &[
    "port add uplink --profile af_packet --param iface=vsw-up --group g1 --mtu 9000",
    "port add pod1 --profile tap --param iface=vsw-t1 --param mac=02:00:00:00:03:01",
    "port add a --profile null --param no_rx=false --param size=128 --group g2",
    "port add b --profile null --group g2",
    "underlay set --uplink uplink --local-ip 192.0.2.1 --local-mac 02:00:00:00:ff:01 \
     --mtu 1600 --on-link 192.0.2.0/24 --gateway 192.0.2.254 --neighbor 192.0.2.9=02:00:00:00:ff:09",
    "net add blue --vni 100 --encap geneve --tenant t1 --subnet 10.1.0.0/24 \
     --gateway-ip 10.1.0.1 --gateway-mac 02:00:00:00:aa:01 --flood-unknown --vtep 192.0.2.2",
    "endpoint add --network blue --mac 02:00:00:00:01:01 --ip 10.1.0.2 --port pod1",
    "remote add --network blue --mac 02:00:00:00:02:01 --ip 10.1.0.3 --vtep 192.0.2.2",
    "route add 0.0.0.0/0 --tenant t1 --via-network blue --via 10.1.0.3",
    "route add 10.99.0.0/16 --tenant t1 --blackhole",
];

/// A resource written by `vswitchctl … add` is the resource the file's item
/// makes, and so is the same resource in an `apply` document: the three forms
/// are one schema, checked by one validation.
#[test]
fn cli_writes_and_documents_equal_the_files_items() {
    use control::config::VswitchConfig;
    use control::state::{from_config, Fixed};
    let file = VswitchConfig::parse(EVERY_KEY_FILE, 2).unwrap();
    let from_file = from_config(&file);
    let fixed = Fixed::from_config(&file, 2);
    let mut ops = Vec::new();
    for line in EVERY_KEY_COMMANDS {
        let args = std::iter::once("vswitchctl").chain(line.split_whitespace());
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(args)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let op = crate::commands::write_op(&cli.command)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .unwrap_or_else(|| panic!("{line}: no op"));
        ops.push(api::Op { op: Some(op) });
    }
    // The patch and L2 entry have no command: a document carries them.
    let doc = parse(
        "patches: [{from: a, to: b}]\nl2: [{mac: \"02:00:00:00:09:01\", port: b}]\n",
        Format::Yaml,
    )
    .unwrap();
    let rest: api::DesiredState = doc.into();
    ops.push(api::Op {
        op: Some(api::op::Op::AddPatch(rest.patches[0].clone())),
    });
    ops.push(api::Op {
        op: Some(api::op::Op::AddL2(rest.l2[0].clone())),
    });
    let written = fixed
        .apply_ops(&api::DesiredState::default(), &ops)
        .unwrap_or_else(|e| panic!("{e}"));
    let sorted = |mut s: api::DesiredState| {
        s.ports.sort_by(|a, b| a.name.cmp(&b.name));
        s
    };
    assert_eq!(sorted(written.state.clone()), sorted(from_file.clone()));
    // The whole state as a document (what `get` prints, what `apply` reads)
    // is the same state again, in both formats.
    for f in [Format::Yaml, Format::Json] {
        let text = print(&Document::from(from_file.clone()), f);
        let back: api::DesiredState = parse(&text, f).unwrap().into();
        assert_eq!(sorted(back), sorted(from_file.clone()), "{f:?}:\n{text}");
    }
}

#[test]
fn services_round_trip_and_diff_by_name_with_defaults_made_explicit() {
    let text = r#"
services:
  - name: web
    network: blue
    cluster_ip: 10.96.0.10
    ports: [{name: http, port: 80, target_port: 8080, node_port: 30080}]
    backends: [{address: 10.1.0.2, weight: 2}, {address: 10.1.0.3}]
"#;
    let d = parse(text, Format::Yaml).unwrap();
    assert_eq!(d.services[0].backends[1].weight, None);
    for format in [Format::Yaml, Format::Json] {
        assert_eq!(parse(&print(&d, format), format).unwrap(), d);
    }
    // The server's canonical form (defaults filled in) is no change.
    let mut canonical = d.clone();
    let v = &mut canonical.services[0];
    v.session_affinity = "None".into();
    v.table_size = 65_537;
    v.ports[0].protocol = "TCP".into();
    for b in &mut v.backends {
        b.weight = Some(b.weight.unwrap_or(1));
        b.state = "active".into();
    }
    assert!(
        diff(&canonical, &d).is_empty(),
        "{}",
        diff(&canonical, &d).summary()
    );
    // A backend's weight is a change of its service.
    let mut heavier = d.clone();
    heavier.services[0].backends[1].weight = Some(5);
    let k = diff(&d, &heavier);
    let kind = k.kinds.iter().find(|k| k.kind == "services").unwrap();
    assert_eq!(kind.changed, ["web"]);
    // Unknown keys are refused, as for every resource.
    assert!(parse("services: [{name: a, weigth: 1}]", Format::Yaml).is_err());
}

#[test]
fn policies_round_trip_and_diff_by_name_with_defaults_made_explicit() {
    let text = r#"
policies:
  - name: x/web
    subject: [10.1.0.2]
    ingress:
      - peers: [{ip_block: {cidr: 10.0.0.0/8, except: [10.9.0.0/16]}}, {addresses: [10.1.0.3]}]
        ports: [{port: 80, end_port: 81}, {protocol: udp, port_name: dns}, {protocol: icmp, icmp_type: 8}]
cluster_policies:
  - {name: deny-ssh, tier: admin, priority: 10, subject: [10.1.0.2],
     ingress: [{name: ssh, action: deny, ports: [{port: 22}]}]}
policy_endpoints:
  - {name: x/a, addresses: [10.1.0.2], named_ports: [{name: http, port: 8080}]}
"#;
    let d = parse(text, Format::Yaml).unwrap();
    assert_eq!(d.policies[0].ingress[0].ports[2].icmp_type, Some(8));
    for format in [Format::Yaml, Format::Json] {
        assert_eq!(parse(&print(&d, format), format).unwrap(), d);
    }
    let wire: api::DesiredState = d.clone().into();
    assert_eq!(Document::from(wire), d);
    // The server's canonical form (spellings and defaults filled in) is no change.
    let mut canonical = d.clone();
    let p = &mut canonical.policies[0];
    p.policy_types = vec!["Ingress".into()];
    p.ingress[0].ports[0].protocol = "TCP".into();
    p.ingress[0].ports[1].protocol = "UDP".into();
    p.ingress[0].ports[2].protocol = "ICMP".into();
    let c = &mut canonical.cluster_policies[0];
    c.tier = "Admin".into();
    c.ingress[0].action = "Deny".into();
    c.ingress[0].ports[0].protocol = "TCP".into();
    canonical.policy_endpoints[0].named_ports[0].protocol = "TCP".into();
    assert!(
        diff(&canonical, &d).is_empty(),
        "{}",
        diff(&canonical, &d).summary()
    );
    // A rule changed is a change of its policy, by name.
    let mut wider = d.clone();
    wider.policies[0].ingress[0].ports[0].end_port = 90;
    let k = diff(&d, &wider);
    let kind = k.kinds.iter().find(|k| k.kind == "policies").unwrap();
    assert_eq!(kind.changed, ["x/web"]);
    // Unknown keys are refused, as for every resource; numbers read wide.
    assert!(parse(
        "policies: [{name: a, subject: [], ingres: []}]",
        Format::Yaml
    )
    .is_err());
    let e = parse(
        "policies: [{name: a, subject: [], ingress: [{ports: [{port: -1}]}]}]",
        Format::Yaml,
    )
    .unwrap_err();
    assert!(e.contains("port -1 is out of range"), "{e}");
}
