//! Services as resources, end to end through a real `vswitchd` and
//! `vswitchctl` (issue #25, item 4): a service added with `svc add`, a
//! backend's weight and state changed with `svc backend set`, and the Maglev
//! table the published snapshot holds read back with `svc show --table
//! --json`: slot counts follow the weights, a drained backend has none, the
//! writes are journalled as deltas, and the table is the same after a restart
//! replays the journal.

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
"#
    );
    control_config(dir, &[worker_core()], &body)
}

/// `svc show web --table --json`.
fn table(sock: &std::path::Path) -> Value {
    serde_json::from_str(&vswitchctl_ok(
        sock,
        &["svc", "show", "web", "--table", "--json"],
    ))
    .unwrap()
}

/// Slots per backend address, from the table's summary, checked against its
/// per-slot list.
fn slots(t: &Value) -> Vec<(String, u64)> {
    let per_slot = t["slots"].as_array().unwrap();
    assert_eq!(per_slot.len() as u64, t["size"].as_u64().unwrap());
    t["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let a = b["address"].as_str().unwrap().to_owned();
            let n = b["slots"].as_u64().unwrap();
            let listed = per_slot.iter().filter(|s| s.as_str() == Some(&a)).count();
            assert_eq!(listed as u64, n, "{a}: summary vs slot list");
            (a, n)
        })
        .collect()
}

/// `count` is within 2 % of `share` of `size` slots.
fn near(count: u64, share: f64, size: u64) -> bool {
    let want = share * size as f64;
    (count as f64 - want).abs() <= 0.02 * want + 1.0
}

#[test]
fn a_service_from_vswitchctl_to_the_published_table_and_back_after_a_restart() {
    require_root!();
    let dir = TempDir::new(&format!("svc-{}", std::process::id()));
    let cfg = config(&dir);
    let v = Vswitchd::start(&dir, &cfg);
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);

    vswitchctl_ok(
        &sock,
        &[
            "svc",
            "add",
            "web",
            "--network",
            "blue",
            "--cluster-ip",
            "10.96.0.10",
            "--port",
            "http=80:8080@30080",
            "--port",
            "dns=53/UDP",
            "--table-size",
            "1009",
            "--backend",
            "10.1.0.20=1",
            "--backend",
            "10.1.0.21=2",
            "--backend",
            "10.1.0.22=1",
        ],
    );
    let list: Value =
        serde_json::from_str(&vswitchctl_ok(&sock, &["svc", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["ports"][1]["protocol"], "UDP");
    assert_eq!(list[0]["ports"][0]["node_port"], 30080);
    let show: Value =
        serde_json::from_str(&vswitchctl_ok(&sock, &["svc", "show", "web", "--json"])).unwrap();
    assert_eq!(show["cluster_ip"], "10.96.0.10");
    assert_eq!(show["table_size"], 1009);
    let shown = vswitchctl_ok(&sock, &["svc", "show", "web", "--table"]);
    assert!(shown.contains("maglev table of 1009 slots"), "{shown}");

    // Weights 1:2:1.
    let t = table(&sock);
    assert_eq!(t["size"], 1009);
    let s = slots(&t);
    assert_eq!(s.iter().map(|(_, n)| n).sum::<u64>(), 1009);
    assert!(
        near(s[0].1, 0.25, 1009) && near(s[1].1, 0.5, 1009) && near(s[2].1, 0.25, 1009),
        "{s:?}"
    );
    let first_gen = t["generation"].as_u64().unwrap();

    // Equal weights: equal shares.
    vswitchctl_ok(
        &sock,
        &["svc", "backend", "set", "web", "10.1.0.21", "--weight", "1"],
    );
    let s = slots(&table(&sock));
    assert!(s.iter().all(|(_, n)| near(*n, 1.0 / 3.0, 1009)), "{s:?}");

    // Draining: no slot, the others share them.
    vswitchctl_ok(
        &sock,
        &[
            "svc",
            "backend",
            "set",
            "web",
            "10.1.0.22",
            "--state",
            "draining",
        ],
    );
    let t = table(&sock);
    let s = slots(&t);
    assert_eq!(s[2], ("10.1.0.22".to_owned(), 0), "{s:?}");
    assert!(near(s[0].1, 0.5, 1009) && near(s[1].1, 0.5, 1009), "{s:?}");
    assert_eq!(t["backends"][2]["state"], "draining");
    assert!(t["generation"].as_u64().unwrap() > first_gen);
    // Weight 0 drains too; a backend added takes its share.
    vswitchctl_ok(
        &sock,
        &["svc", "backend", "add", "web", "10.1.0.23", "--weight", "2"],
    );
    vswitchctl_ok(
        &sock,
        &["svc", "backend", "set", "web", "10.1.0.20", "--weight", "0"],
    );
    let t = table(&sock);
    let s = slots(&t);
    assert_eq!(s[0].1, 0, "{s:?}");
    assert!(
        near(s[1].1, 1.0 / 3.0, 1009) && near(s[3].1, 2.0 / 3.0, 1009),
        "{s:?}"
    );

    // The writes were deltas: journalled, not the whole state rewritten.
    let journal = std::fs::read_to_string(dir.join("state.json.journal")).unwrap_or_default();
    assert!(journal.contains("\"set_backend\""), "{journal}");
    assert!(journal.contains("\"add_backend\""), "{journal}");

    // A refusal changes nothing and exits 1 with the field named.
    let out = vswitchctl(
        &sock,
        &[
            "svc",
            "backend",
            "set",
            "web",
            "10.1.0.21",
            "--weight",
            "70000",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("backend.weight: 70000 is out of range"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(table(&sock), t);

    // The restart replays the journal into the same table.
    v.stop();
    std::fs::remove_file(dir.join("stats.json")).unwrap();
    let v = Vswitchd::start(&dir, &cfg);
    wait_for_api(&sock);
    let after = table(&sock);
    assert_eq!(after["slots"], t["slots"], "the table after a restart");
    assert_eq!(after["backends"], t["backends"]);

    // Gone: listed nowhere, its table not found.
    vswitchctl_ok(&sock, &["svc", "del", "web"]);
    let list: Value =
        serde_json::from_str(&vswitchctl_ok(&sock, &["svc", "list", "--json"])).unwrap();
    assert_eq!(list, serde_json::json!([]));
    let out = vswitchctl(&sock, &["svc", "show", "web", "--table", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no service named \"web\""),
        "{}",
        text(&out.stderr)
    );
    v.stop();
}
