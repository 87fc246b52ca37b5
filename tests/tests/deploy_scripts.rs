//! The deployment files are checked where they cannot be run (issue #28): the
//! Vagrantfile parses as Ruby; every shell script of the lab, the package and
//! the BlueField check passes `bash -n`/`sh -n` and shellcheck; the lab's own
//! switch configurations carry pods over VXLAN; the BlueField example passes
//! `--check` up to its missing hardware.

use std::process::Command;

use system_tests::*;

fn check(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/install-deps.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn vagrantfile_is_ruby() {
    check("ruby", &["-c", "Vagrantfile"]);
}

#[test]
fn lab_and_package_scripts_pass_shellcheck() {
    let bash = [
        "deploy/vagrant/provision.sh",
        "deploy/vagrant/lab.sh",
        "deploy/debian/build-deb.sh",
        "deploy/bluefield/check-aarch64.sh",
    ];
    let sh = [
        "deploy/debian/postinst",
        "deploy/debian/prerm",
        "deploy/debian/postrm",
    ];
    for s in bash {
        check("bash", &["-n", s]);
    }
    for s in sh {
        check("sh", &["-n", s]);
    }
    let all: Vec<&str> = bash.iter().chain(sh.iter()).copied().collect();
    check("shellcheck", &all);
}

/// `lab.sh config N` for a node whose underlay is `uplink` and whose pod's host
/// end is `pod_if` (run inside `netns` when given, where `uplink` lives), made
/// to run here: its files in `dir`, no hugepages, no group, the test's core.
fn lab_config(
    node: u32,
    uplink: &str,
    pod_if: &str,
    netns: Option<&Netns>,
    dir: &TempDir,
) -> String {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name, "bash"]);
            c
        }
        None => Command::new("bash"),
    };
    let out = cmd
        .arg(repo_root().join("deploy/vagrant/lab.sh"))
        .args(["config", &node.to_string()])
        .env("UNDERLAY_IF", uplink)
        .env("POD_IF", pod_if)
        .output()
        .unwrap();
    assert!(out.status.success(), "lab.sh config: {}", text(&out.stderr));
    let mut cfg = text(&out.stdout);
    let d = dir.0.display().to_string();
    for (from, to) in [
        (
            "hugepages = true",
            "hugepages = false\nin_memory = true".to_owned(),
        ),
        ("socket_group = \"vswitch\"\n", String::new()),
        ("/run/vswitch", d.clone()),
        ("/var/lib/vswitch", d.clone()),
        ("workers = [1]", format!("workers = [{}]", worker_core())),
        ("[control]\n", format!("[control]\n{}", allowed_dirs(dir))),
    ] {
        assert!(
            cfg.contains(from),
            "lab.sh's configuration has no {from:?}:\n{cfg}"
        );
        cfg = cfg.replace(from, &to);
    }
    cfg
}

/// The configuration the lab installs on each VM carries its pod's traffic to the
/// other VM's pod: two switches on lab.sh's own configurations, joined by a veth
/// underlay (the private network), each node in a namespace of its own.
#[test]
fn lab_configuration_carries_pods_over_vxlan() {
    require_root!();
    let tag = unique_tag();
    let dir1 = TempDir::new(&format!("{tag}a"));
    let dir2 = TempDir::new(&format!("{tag}b"));
    let (u1, u2) = (format!("{tag}u1"), format!("{tag}u2"));
    ip(&["link", "add", &u1, "type", "veth", "peer", "name", &u2]);
    let _underlay = LinkGuard(u1.clone());
    for u in [&u1, &u2] {
        run("ethtool", &["-K", u, "gro", "off"]);
        ip(&["link", "set", u, "up"]);
    }
    // The pods as lab.sh's pod unit makes them: lab addresses, MTU 1450.
    let pod1 = VethPod::new(&tag, 1, "02:00:00:00:01:01", "10.1.0.11/24");
    let pod2 = VethPod::new(&tag, 2, "02:00:00:00:02:01", "10.1.0.12/24");
    for p in [&pod1, &pod2] {
        p.ns.exec(&["ip", "link", "set", "eth0", "mtu", "1450"]);
    }
    let node2 = Netns::new(&format!("{tag}n2"));
    for link in [&u2, &pod2.host_if] {
        ip(&["link", "set", link, "netns", &node2.name]);
        node2.exec(&["ip", "link", "set", link, "up"]);
    }
    let cfg1 = lab_config(1, &u1, &pod1.host_if, None, &dir1);
    let cfg2 = lab_config(2, &u2, &pod2.host_if, Some(&node2), &dir2);
    let sw1 = Vswitchd::start(&dir1, &cfg1);
    let _sw2 = Vswitchd::start_in(&dir2, &cfg2, Some(&node2.name));
    // The first pings may go while the switches resolve each other's VTEP.
    let _ = pod2
        .ns
        .try_exec(&["ping", "-c", "2", "-i", "0.3", "-W", "1", "10.1.0.11"]);
    let out = pod2
        .ns
        .try_exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.1.0.11"]);
    assert!(
        out.status.success(),
        "node2's pod -> node1's pod: {}\n{}",
        text(&out.stdout),
        sw1.log_text()
    );
    tcp_transfer(&dir1, &pod1.ns, &pod2.ns, "10.1.0.12", 2_000_000);
}

/// A link in the root namespace, deleted on drop (with its veth peer).
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

/// The BlueField example is valid as far as a machine without the DPU can tell:
/// with its host-specific parts made local (workers, TLS, paths), `--check`
/// passes every rule of the file and stops only at the first mlx5 device,
/// which is not here.
#[test]
fn bluefield_example_is_valid_but_for_the_hardware() {
    let dir = TempDir::new(&unique_tag());
    let d = dir.0.display().to_string();
    let mut cfg = std::fs::read_to_string(repo_root().join("deploy/bluefield/vswitchd.toml"))
        .expect("deploy/bluefield/vswitchd.toml");
    let tcp_start = cfg.find("[control.tcp]").expect("a [control.tcp] section");
    let tcp_end = cfg.find("[dataplane]").expect("a [dataplane] section");
    cfg.replace_range(tcp_start..tcp_end, "");
    for (from, to) in [
        (
            "workers = [1, 2, 3]",
            format!("workers = [{}]", worker_core()),
        ),
        ("hugepages = true", "hugepages = false".to_owned()),
        ("socket_group = \"vswitch\"\n", String::new()),
        ("/run/vswitch", d.clone()),
        ("/var/lib/vswitch", d.clone()),
        ("[control]\n", format!("[control]\n{}", allowed_dirs(&dir))),
    ] {
        assert!(cfg.contains(from), "the example has no {from:?}");
        cfg = cfg.replace(from, &to);
    }
    let path = dir.join("bluefield.toml");
    std::fs::write(&path, &cfg).unwrap();
    let out = Command::new(workspace_bin("vswitchd"))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("port \"uplink\": mlx5 needs hardware: PCI device 0000:03:00.0 not found"),
        "{err}"
    );
}
