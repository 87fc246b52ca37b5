//! Network policies as resources, end to end through a real `vswitchd` and
//! `vswitchctl` (issue #26, item 4): a policy from the configuration file,
//! policies, cluster policies and named ports added from a TOML fragment with
//! `policy add`, shown, replaced with what `policy show` printed, deleted; a
//! bad fragment refused naming the field with nothing changed; the writes
//! journalled as deltas, and the same policies after a restart replays the
//! journal. (The policy stage is not wired yet: what reaches the dataplane is
//! checked by the control tests; here it is the resource.)

use serde_json::Value;
use system_tests::*;

const GW_MAC: &str = "02:00:00:00:aa:01";

fn config(dir: &TempDir) -> String {
    let body = format!(
        r#"
[[port]]
name = "sink"
profile = "null"
[[network]]
name = "blue"
vni = 100
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "{GW_MAC}"
policy_on_change = "keep"
[[policy]]
name = "x/from-file"
subject = ["10.1.0.9"]
[[policy.ingress]]
peers = [{{ addresses = ["10.1.0.10"] }}]
"#
    );
    control_config(dir, &[worker_core()], &body)
}

const FRAGMENT: &str = r#"
[[policy]]
name = "x/web"
subject = ["10.1.0.2", "10.1.0.3"]
[[policy.ingress]]
peers = [{ ip_block = { cidr = "10.0.0.0/8", except = ["10.9.0.0/16"] } }]
ports = [{ protocol = "tcp", port = 80, end_port = 81 }, { port_name = "http" }]

[[cluster_policy]]
name = "deny-ssh"
tier = "admin"
priority = 10
subject = ["10.1.0.2"]
[[cluster_policy.ingress]]
name = "ssh"
action = "deny"
ports = [{ port = 22 }]

[[policy_endpoint]]
name = "x/a"
addresses = ["10.1.0.2"]
named_ports = [{ name = "http", port = 8080 }]
"#;

fn list(sock: &std::path::Path) -> Value {
    serde_json::from_str(&vswitchctl_ok(sock, &["policy", "list", "--json"])).unwrap()
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn policies_from_vswitchctl_to_the_state_and_back_after_a_restart() {
    require_root!();
    let dir = TempDir::new(&format!("policy-{}", std::process::id()));
    let cfg = config(&dir);
    let v = Vswitchd::start(&dir, &cfg);
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);

    // The file's policy, and the network's option.
    let l = list(&sock);
    assert_eq!(names(&l, "policies"), ["x/from-file"], "{l}");
    assert_eq!(
        l["policies"][0]["policy_types"],
        serde_json::json!(["Ingress"])
    );
    let nets: Value =
        serde_json::from_str(&vswitchctl_ok(&sock, &["net", "list", "--json"])).unwrap();
    assert_eq!(nets[0]["policy_on_change"], "keep", "{nets}");

    // A fragment: three kinds in one write, in canonical text afterwards.
    let frag = dir.join("frag.toml");
    std::fs::write(&frag, FRAGMENT).unwrap();
    let out = vswitchctl_ok(&sock, &["policy", "add", frag.to_str().unwrap()]);
    assert!(out.contains("generation"), "{out}");
    let l = list(&sock);
    assert_eq!(names(&l, "policies"), ["x/from-file", "x/web"], "{l}");
    assert_eq!(names(&l, "cluster_policies"), ["deny-ssh"]);
    assert_eq!(names(&l, "policy_endpoints"), ["x/a"]);
    let web: Value = serde_json::from_str(&vswitchctl_ok(
        &sock,
        &["policy", "show", "x/web", "--json"],
    ))
    .unwrap();
    assert_eq!(web["ingress"][0]["ports"][0]["protocol"], "TCP");
    assert_eq!(web["ingress"][0]["ports"][0]["end_port"], 81);
    assert_eq!(web["ingress"][0]["ports"][1]["port_name"], "http");
    assert_eq!(
        web["ingress"][0]["peers"][0]["ip_block"]["except"][0],
        "10.9.0.0/16"
    );
    let cp: Value = serde_json::from_str(&vswitchctl_ok(
        &sock,
        &["policy", "show", "deny-ssh", "--cluster", "--json"],
    ))
    .unwrap();
    assert_eq!(
        (cp["tier"].as_str(), cp["ingress"][0]["action"].as_str()),
        (Some("Admin"), Some("Deny"))
    );
    let table = vswitchctl_ok(&sock, &["policy", "list"]);
    assert!(
        table.contains("deny-ssh") && table.contains("x/a"),
        "{table}"
    );

    // What `show` prints is a fragment `add --replace` takes back unchanged.
    let shown = vswitchctl_ok(&sock, &["policy", "show", "x/web"]);
    assert!(shown.contains("[[policy]]"), "{shown}");
    let again = dir.join("again.toml");
    std::fs::write(&again, &shown).unwrap();
    let before = list(&sock);
    vswitchctl_ok(
        &sock,
        &["policy", "add", "--replace", again.to_str().unwrap()],
    );
    let after = list(&sock);
    assert_eq!(after["policies"][1], before["policies"][1], "{shown}");
    // An add of what exists, without --replace, is refused.
    let out = vswitchctl(&sock, &["policy", "add", again.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("policy already exists"),
        "{}",
        text(&out.stderr)
    );

    // A bad fragment: refused naming the field; nothing of it applied.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        FRAGMENT
            .replace("x/web", "x/web2")
            .replace("deny-ssh", "deny-ssh2")
            .replace("\"x/a\"", "\"x/a2\"")
            .replace("10.9.0.0/16", "10.99.0.0/33"),
    )
    .unwrap();
    let out = vswitchctl(&sock, &["policy", "add", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("ingress[0].peers[0].ip_block.except[0]") && err.contains("10.99.0.0/33"),
        "{err}"
    );
    assert_eq!(list(&sock), after);
    // A number out of range is refused by vswitchctl before it sends anything.
    std::fs::write(&bad, FRAGMENT.replace("port = 22", "port = -22")).unwrap();
    let out = vswitchctl(&sock, &["policy", "add", bad.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("port -22 is out of range"),
        "{}",
        text(&out.stderr)
    );

    // A delete, of each kind; then a show of what is gone.
    vswitchctl_ok(&sock, &["policy", "del", "x/from-file"]);
    vswitchctl_ok(&sock, &["policy", "del", "x/a", "--endpoint"]);
    let out = vswitchctl(&sock, &["policy", "show", "x/from-file"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no policy named \"x/from-file\""),
        "{}",
        text(&out.stderr)
    );

    // The writes were deltas: journalled, not the whole state rewritten
    // (the first write after the start made the state file).
    let journal = std::fs::read_to_string(dir.join("state.json.journal")).unwrap_or_default();
    for op in [
        "\"add_policy\"",
        "\"del_policy\"",
        "\"del_policy_endpoint\"",
    ] {
        assert!(journal.contains(op), "{op} not in {journal}");
    }
    let kept = list(&sock);
    assert_eq!(names(&kept, "policies"), ["x/web"]);
    assert_eq!(names(&kept, "policy_endpoints"), Vec::<String>::new());

    // The restart replays the journal into the same policies.
    v.stop();
    std::fs::remove_file(dir.join("stats.json")).unwrap();
    let v = Vswitchd::start(&dir, &cfg);
    wait_for_api(&sock);
    assert_eq!(list(&sock), kept, "the policies after a restart");
    v.stop();
}
