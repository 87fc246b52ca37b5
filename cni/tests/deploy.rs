//! The deployment examples in `deploy/cni/` are what the plugin and the switch
//! accept: every conflist parses and its vswitch-cni entry validates, the
//! DaemonSet's YAML parses, its embedded conflist is the file's, its vswitchd
//! configuration validates, and each conflist's network exists there with the
//! IPAM range inside the network's subnet and its gateway the network's.

use std::path::{Path, PathBuf};

use control::config::VswitchConfig;
use serde_json::Value;
use vswitch_cni::config::{decode, Mode};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cni")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The plugin's entry of a conflist, as a runtime hands it over (the list's
/// version and name added).
fn vswitch_entry(list: &Value) -> Value {
    let mut e = list["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["type"] == "vswitch-cni")
        .expect("a vswitch-cni entry")
        .clone();
    e["cniVersion"] = list["cniVersion"].clone();
    e["name"] = list["name"].clone();
    e
}

fn daemonset_docs() -> Vec<serde_yaml::Value> {
    let text = read("daemonset.yaml");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("YAML"))
        .collect()
}

use serde::Deserialize;

fn config_map() -> serde_yaml::Value {
    daemonset_docs()
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap")
}

#[test]
fn conflists_validate() {
    for (file, mode) in [
        ("10-vswitch.conflist", Mode::Kernel),
        ("vhostuser.conflist", Mode::Vhostuser),
    ] {
        let list: Value =
            serde_json::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        vswitch_cni::version::check(list["cniVersion"].as_str().unwrap()).unwrap();
        let conf = decode(vswitch_entry(&list).to_string().as_bytes()).unwrap();
        conf.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(conf.mode, mode, "{file}");
        for p in list["plugins"].as_array().unwrap() {
            vswitch_cni::config::check_plugin_type("type", p["type"].as_str().unwrap()).unwrap();
        }
    }
}

#[test]
fn daemonset_parses_and_matches_the_files() {
    let docs = daemonset_docs();
    let kinds: Vec<_> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["ConfigMap", "DaemonSet"]);
    let ds = &docs[1];
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], serde_yaml::Value::Bool(true));
    let init = &spec["initContainers"][0];
    let script = init["command"][2].as_str().unwrap();
    assert!(script.contains("/host/opt/cni/bin/vswitch-cni"), "{script}");
    // Every volume a container mounts is declared.
    let declared: Vec<_> = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v["name"].clone())
        .collect();
    for c in spec["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(spec["containers"].as_sequence().unwrap())
    {
        for m in c["volumeMounts"].as_sequence().unwrap() {
            assert!(
                declared.contains(&m["name"]),
                "undeclared volume {:?}",
                m["name"]
            );
        }
    }

    let cm = config_map();
    let embedded: Value =
        serde_json::from_str(cm["data"]["10-vswitch.conflist"].as_str().unwrap()).unwrap();
    let file: Value = serde_json::from_str(&read("10-vswitch.conflist")).unwrap();
    assert_eq!(
        embedded, file,
        "the ConfigMap's conflist differs from 10-vswitch.conflist"
    );
}

#[test]
fn conflists_match_the_switch_networks() {
    let cm = config_map();
    let toml = cm["data"]["vswitchd.toml"].as_str().unwrap();
    let cfg = VswitchConfig::parse(toml, 2).unwrap_or_else(|e| panic!("vswitchd.toml: {e}"));
    for file in ["10-vswitch.conflist", "vhostuser.conflist"] {
        let list: Value = serde_json::from_str(&read(file)).unwrap();
        let e = vswitch_entry(&list);
        let net = cfg
            .networks
            .iter()
            .find(|n| n.name == e["network"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{file}: network {} is not in vswitchd.toml", e["network"]));
        let range = &e["ipam"]["ranges"][0][0];
        let subnet: ipnet::IpNet = range["subnet"].as_str().unwrap().parse().unwrap();
        let gw: std::net::IpAddr = range["gateway"].as_str().unwrap().parse().unwrap();
        assert!(
            net.subnets.contains(&subnet),
            "{file}: {subnet} is not a subnet of {}",
            net.name
        );
        assert!(
            net.gateway_ips.contains(&gw),
            "{file}: {gw} is not {}'s gateway",
            net.name
        );
    }
}
