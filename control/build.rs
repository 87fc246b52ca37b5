//! Generates the gRPC API (messages, client and server) from `proto/` with protoc
//! (Debian's `protobuf-compiler`, installed by `scripts/install-deps.sh`).
//!
//! The resource messages are also the one schema of the configuration file and of
//! `vswitchctl`'s documents (see `src/model.rs`): they get serde derives here, with
//! the keys the file has always used, so a field added to the proto is a field of
//! the file and of the CLI without a second hand-written copy.

/// The resources (and their parts) that the file, the API and the CLI share.
const RESOURCES: [&str; 25] = [
    "Port",
    "Patch",
    "L2Entry",
    "StaticNeighbor",
    "Underlay",
    "Network",
    "Endpoint",
    "RemoteEndpoint",
    "Route",
    "NextHop",
    "ServicePort",
    "Backend",
    "Service",
    "BackendOp",
    "BackendKey",
    "SetBackend",
    "PolicyPeer",
    "IpBlock",
    "PolicyPort",
    "NetworkPolicyRule",
    "NetworkPolicy",
    "ClusterPolicyRule",
    "ClusterPolicy",
    "NamedPort",
    "PolicyEndpoint",
];

/// Keys that may be left out (their proto3 default is what the file defaults to
/// or is filled in by validation); the others are required, as in the file.
const OPTIONAL: [&str; 51] = [
    "Port.profile",
    "Port.group",
    "Port.mtu",
    "Port.params",
    "Underlay.mtu",
    "Underlay.gateway",
    "Underlay.neighbors",
    "Network.encap",
    "Network.tenant",
    "Network.subnets",
    "Network.gateway_ips",
    "Network.flood_unknown",
    "Network.vteps",
    "Network.conntrack",
    "Network.conntrack_window_tracking",
    "Endpoint.ips",
    "RemoteEndpoint.ips",
    "ServicePort.name",
    "ServicePort.protocol",
    "ServicePort.target_port",
    "ServicePort.node_port",
    "Backend.weight",
    "Backend.state",
    "Service.external_ips",
    "Service.session_affinity",
    "Service.affinity_timeout_s",
    "Service.table_size",
    "SetBackend.weight",
    "SetBackend.state",
    "Network.policy_on_change",
    "PolicyPeer.addresses",
    "PolicyPeer.ip_block",
    "IpBlock.except",
    "PolicyPort.protocol",
    "PolicyPort.port",
    "PolicyPort.end_port",
    "PolicyPort.port_name",
    "PolicyPort.icmp_type",
    "PolicyPort.icmp_code",
    "NetworkPolicyRule.peers",
    "NetworkPolicyRule.ports",
    "NetworkPolicy.policy_types",
    "NetworkPolicy.ingress",
    "NetworkPolicy.egress",
    "ClusterPolicyRule.name",
    "ClusterPolicyRule.peers",
    "ClusterPolicyRule.ports",
    "ClusterPolicy.ingress",
    "ClusterPolicy.egress",
    "NamedPort.protocol",
    "PolicyEndpoint.named_ports",
];

/// How an optional key is left out of what is printed: only when it holds its
/// default, so every key a user set is shown.
const SKIP: [(&str, &str); 44] = [
    ("Port.group", "String::is_empty"),
    ("Port.mtu", "crate::model::is_zero"),
    ("Port.params", "::std::collections::BTreeMap::is_empty"),
    ("Underlay.mtu", "crate::model::is_zero"),
    ("Underlay.gateway", "String::is_empty"),
    ("Underlay.neighbors", "Vec::is_empty"),
    ("Network.encap", "String::is_empty"),
    ("Network.tenant", "String::is_empty"),
    ("Network.flood_unknown", "crate::model::is_false"),
    ("Network.vteps", "Vec::is_empty"),
    ("Network.conntrack", "crate::model::is_false"),
    ("Network.conntrack_window_tracking", "Option::is_none"),
    ("Route.tenant", "String::is_empty"),
    ("ServicePort.name", "String::is_empty"),
    ("ServicePort.target_port", "crate::model::is_zero"),
    ("ServicePort.node_port", "crate::model::is_zero"),
    ("Backend.weight", "Option::is_none"),
    ("Backend.state", "String::is_empty"),
    ("Service.external_ips", "Vec::is_empty"),
    ("Service.session_affinity", "String::is_empty"),
    ("Service.affinity_timeout_s", "crate::model::is_zero"),
    ("Service.table_size", "crate::model::is_zero"),
    ("SetBackend.weight", "Option::is_none"),
    ("SetBackend.state", "String::is_empty"),
    ("Network.policy_on_change", "String::is_empty"),
    ("PolicyPeer.addresses", "Vec::is_empty"),
    ("PolicyPeer.ip_block", "Option::is_none"),
    ("IpBlock.except", "Vec::is_empty"),
    ("PolicyPort.port", "crate::model::is_zero"),
    ("PolicyPort.end_port", "crate::model::is_zero"),
    ("PolicyPort.port_name", "String::is_empty"),
    ("PolicyPort.icmp_type", "Option::is_none"),
    ("PolicyPort.icmp_code", "Option::is_none"),
    ("NetworkPolicyRule.peers", "Vec::is_empty"),
    ("NetworkPolicyRule.ports", "Vec::is_empty"),
    ("NetworkPolicy.ingress", "Vec::is_empty"),
    ("NetworkPolicy.egress", "Vec::is_empty"),
    ("ClusterPolicyRule.name", "String::is_empty"),
    ("ClusterPolicyRule.peers", "Vec::is_empty"),
    ("ClusterPolicyRule.ports", "Vec::is_empty"),
    ("ClusterPolicy.ingress", "Vec::is_empty"),
    ("ClusterPolicy.egress", "Vec::is_empty"),
    ("NamedPort.protocol", "String::is_empty"),
    ("PolicyEndpoint.named_ports", "Vec::is_empty"),
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let mut b = tonic_prost_build::configure()
        // Ordered parameters: a printed document or state file is stable.
        .btree_map(".vswitch.v1.Port.params");
    for r in RESOURCES {
        let path = format!(".vswitch.v1.{r}");
        b = b.message_attribute(&path, "#[derive(::serde::Serialize, ::serde::Deserialize)]");
        // A route's `oneof target` is spelled `next_hop = {…}` or `blackhole = true`
        // in the file: serde goes through that form (`model::RouteForm`).
        if r == "Route" {
            b = b.message_attribute(
                &path,
                "#[serde(try_from = \"crate::model::RouteForm\", into = \"crate::model::RouteForm\")]",
            );
        } else {
            b = b.message_attribute(&path, "#[serde(deny_unknown_fields)]");
        }
    }
    for f in OPTIONAL {
        b = b.field_attribute(format!(".vswitch.v1.{f}"), "#[serde(default)]");
    }
    for (f, skip) in SKIP {
        b = b.field_attribute(
            format!(".vswitch.v1.{f}"),
            format!("#[serde(skip_serializing_if = \"{skip}\")]"),
        );
    }
    b = b
        .field_attribute(
            ".vswitch.v1.Port.params",
            "#[serde(deserialize_with = \"crate::model::params_from_scalars\")]",
        )
        // Integers read wide, so that `vni = -1` or `mtu = 70000` is refused
        // naming the key and the value, not as a type mismatch.
        .field_attribute(
            ".vswitch.v1.Network.vni",
            "#[serde(deserialize_with = \"crate::model::vni\")]",
        )
        .field_attribute(
            ".vswitch.v1.Underlay.mtu",
            "#[serde(deserialize_with = \"crate::model::mtu\")]",
        )
        .field_attribute(
            ".vswitch.v1.Port.mtu",
            "#[serde(deserialize_with = \"crate::model::mtu\")]",
        );
    for (field, reader) in [
        ("ServicePort.port", "port"),
        ("ServicePort.target_port", "target_port"),
        ("ServicePort.node_port", "node_port"),
        ("Service.table_size", "table_size"),
        ("Service.affinity_timeout_s", "affinity_timeout_s"),
        ("Backend.weight", "weight"),
        ("SetBackend.weight", "weight"),
        ("PolicyPort.port", "policy_port"),
        ("PolicyPort.end_port", "end_port"),
        ("PolicyPort.icmp_type", "icmp_type"),
        ("PolicyPort.icmp_code", "icmp_code"),
        ("NamedPort.port", "policy_port"),
        ("ClusterPolicy.priority", "priority"),
    ] {
        b = b.field_attribute(
            format!(".vswitch.v1.{field}"),
            format!("#[serde(deserialize_with = \"crate::model::{reader}\")]"),
        );
    }
    b.compile_protos(&["proto/vswitch/v1/vswitch.proto"], &["proto"])
        .unwrap_or_else(|e| panic!("compiling the gRPC API (is protoc installed?): {e}"));
}
