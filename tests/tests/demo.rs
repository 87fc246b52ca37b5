//! `make demo`'s script, run as `make demo` runs it but on the debug binaries:
//! two nodes over VXLAN, pods attached by `vswitch-cni`, pings and TCP across
//! nodes, a trace showing the encapsulation, and nothing of it left afterwards,
//! whether it ran to the end or was interrupted by Ctrl-C halfway.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use system_tests::*;

/// Skips (passing, with the reason) where the demo's peers are missing.
macro_rules! require_demo {
    () => {
        require_root!();
        if !Path::new("/usr/lib/cni/host-local").exists() || !have_testpmd() {
            eprintln!("SKIP: the demo needs containernetworking-plugins and dpdk-testpmd (scripts/install-deps.sh)");
            return;
        }
    };
}

/// The demo started in a process group of its own (as a shell's foreground job
/// is, so that Ctrl-C reaches all of it), its output going to `out`.
fn start_demo(out: &Path) -> ChildGuard {
    let log = File::create(out).unwrap();
    let child = Command::new("bash")
        .arg(repo_root().join("scripts/demo.sh"))
        .env("VSWITCHD", workspace_bin("vswitchd"))
        .env("VSWITCHCTL", workspace_bin("vswitchctl"))
        .env("VSWITCH_CNI", workspace_bin("vswitch-cni"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .process_group(0)
        .spawn()
        .expect("run scripts/demo.sh");
    ChildGuard(Some(child))
}

/// The name prefix and the directory the demo says it uses.
fn names_of(output: &str) -> (String, String) {
    let line = output
        .lines()
        .find(|l| l.starts_with("demo: names start with "))
        .unwrap_or_else(|| panic!("the demo did not say its names:\n{output}"));
    let rest = line.trim_start_matches("demo: names start with ");
    let (tag, dir) = rest.split_once(", files in ").expect("tag and directory");
    assert!(tag.starts_with("vswdemo"), "{line}");
    (tag.to_owned(), dir.to_owned())
}

/// Asserts that nothing the demo made is left: namespaces, links, processes
/// (by their command lines), its directory (and so its sockets), testpmd's
/// runtime directory.
fn assert_nothing_left(tag: &str, dir: &str) {
    // Its names: namespaces `TAG-x`, underlay links `TAGu1`/`TAGu2`, testpmd's
    // `TAGtp` (whole, so that another demo's longer tag does not match).
    let mine = |s: &str| {
        ["-", "u", "tp"]
            .iter()
            .any(|t| s.contains(&format!("{tag}{t}")))
    };
    let netns = text(&run("ip", &["netns", "list"]).stdout);
    assert!(!mine(&netns), "namespaces left:\n{netns}");
    let links = text(&run("ip", &["-o", "link", "show"]).stdout);
    assert!(!mine(&links), "links left:\n{links}");
    let me = std::process::id().to_string();
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = text(&cmdline).replace('\0', " ");
        if mine(&cmdline) || cmdline.contains(dir) {
            procs.push(format!("{name}: {cmdline}"));
        }
    }
    assert!(procs.is_empty(), "processes left: {procs:?}");
    assert!(!Path::new(dir).exists(), "{dir} left (sockets, IPAM state)");
    assert!(
        !Path::new(&format!("/var/run/dpdk/{tag}tp")).exists(),
        "testpmd's runtime directory left"
    );
}

/// The script parses and passes shellcheck (runs without root too).
#[test]
fn demo_script_passes_shellcheck() {
    for (cmd, args) in [("bash", ["-n"]), ("shellcheck", ["-x"])] {
        let out = Command::new(cmd)
            .args(args)
            .arg("scripts/demo.sh")
            .current_dir(repo_root())
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/install-deps.sh installs it)"));
        assert!(
            out.status.success(),
            "{cmd}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn demo_tours_two_nodes_and_leaves_nothing() {
    require_demo!();
    let tmp = TempDir::new(&unique_tag());
    let out_path = tmp.join("demo.out");
    let mut demo = start_demo(&out_path);
    // Well under two minutes is the promise; a slow shared machine gets slack.
    let done = demo.wait_timeout(Duration::from_secs(150));
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let done = done.unwrap_or_else(|| panic!("the demo did not finish in 150 s:\n{output}"));
    assert!(done.status.success(), "the demo failed:\n{output}");
    let (tag, dir) = names_of(&output);
    // The three pings (kernel pod B, then each node's vhost-user pod from the
    // other node's kernel pod) answered in full.
    assert_eq!(
        output
            .matches("3 packets transmitted, 3 received, 0% packet loss")
            .count(),
        3,
        "{output}"
    );
    for expected in [
        "checksums match",
        // The trace of pod A's packet: to the other node's VTEP in VXLAN.
        "encap: VNI 100 to VTEP 192.168.56.12: out of uplink",
        "tunnel Vxlan vni 100",
        "verdict: output uplink",
        "node a: pod ports [], 0 endpoints, 0 IPAM leases, 0 vhost sockets, 0 pod links",
        "node b: pod ports [], 0 endpoints, 0 IPAM leases, 0 vhost sockets, 0 pod links",
        "nothing left",
        // The Service VIP on node a answered by its backend on node b,
        // then a NetworkPolicy on node b stopping pod A, logged.
        "pod A -> 10.96.0.10:80: pod-b",
        "before: pod A -> pod B:8080: pod-b",
        "after:  pod A -> pod B:8080: no answer",
        "demo/pod-b",
    ] {
        assert!(output.contains(expected), "no {expected:?} in:\n{output}");
    }
    // vswitchctl's tables: ports with their drivers (the uplink's PMD, the
    // kernel pods' packet sockets, the vhost-user pods'), both pods' endpoints.
    for expected in [
        "net_af_packet",
        "packet_socket",
        "net_vhost",
        "DROP_REASON",
        "VTEP",
    ] {
        assert!(output.contains(expected), "no {expected:?} in:\n{output}");
    }
    assert_nothing_left(&tag, &dir);
}

/// Ctrl-C while the vhost-user pod runs: every process, namespace, link and
/// file the demo made so far is still removed.
#[test]
fn demo_interrupted_leaves_nothing() {
    require_demo!();
    let tmp = TempDir::new(&unique_tag());
    let out_path = tmp.join("demo.out");
    let mut demo = start_demo(&out_path);
    let deadline = Instant::now() + Duration::from_secs(120);
    let heading = "ping kernel pod A -> vhost-user pod";
    loop {
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        if output.contains(heading) {
            break;
        }
        if let Some(done) = demo.wait_timeout(Duration::from_millis(100)) {
            panic!(
                "the demo ended ({}) before {heading:?}:\n{output}",
                done.status
            );
        }
        assert!(Instant::now() < deadline, "no {heading:?} in:\n{output}");
    }
    // testpmd is starting or answering by now.
    std::thread::sleep(Duration::from_millis(500));
    // Ctrl-C: SIGINT to the whole foreground process group.
    let group = format!("-{}", demo.pid());
    run("kill", &["-INT", "--", &group]);
    let done = demo.wait_timeout(Duration::from_secs(60));
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let done = done.unwrap_or_else(|| panic!("the demo did not stop on Ctrl-C:\n{output}"));
    assert!(!done.status.success(), "an interrupted demo exits non-zero");
    let (tag, dir) = names_of(&output);
    assert_nothing_left(&tag, &dir);
}
