//! `vswitchctl` against a real `vswitchd` (issue #23, item 7): what an operator
//! sees when things go wrong.
//!
//! - exit codes: a daemon that accepts but never answers (a bare listening socket,
//!   and a `vswitchd` stopped with SIGSTOP) is exit 3 naming the socket within
//!   `--timeout`; no socket at all is exit 3;
//! - `vswitchctl … | head` is quiet (no "Broken pipe") and exits 0;
//! - `port del` / `net del` of something in use names the user;
//! - `trace` on a classic L2 port shows the MAC-table stage and group names;
//! - `apply -f` of a stale export is refused naming both generations, `--force`
//!   applies it.
//!
//! Every port is a `net_null` sink: nothing here needs traffic.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::*;

const MAC_A: &str = "02:00:00:00:0a:01";
const MAC_B: &str = "02:00:00:00:0b:01";
const EP_MAC: &str = "02:00:00:00:0e:01";
const GW_MAC: &str = "02:00:00:00:aa:01";

/// Three classic ports in group "lan" with two MAC entries, a patched pair (in
/// group "default"), a port alone in group "solo", and an overlay port ("spare")
/// that an endpoint of network "blue" uses.
fn config(dir: &TempDir) -> String {
    let body = format!(
        r#"
[[port]]
name = "a"
profile = "null"
group = "lan"
[[port]]
name = "b"
profile = "null"
group = "lan"
[[port]]
name = "c"
profile = "null"
group = "lan"
[[port]]
name = "tx"
profile = "null"
[[port]]
name = "sink"
profile = "null"
[[port]]
name = "spare"
profile = "null"
[[port]]
name = "lone"
profile = "null"
group = "solo"
[[patch]]
from = "tx"
to = "sink"
[[l2]]
mac = "{MAC_A}"
port = "a"
[[l2]]
mac = "{MAC_B}"
port = "b"
[[network]]
name = "blue"
vni = 100
subnets = ["10.1.0.0/24"]
gateway_ips = ["10.1.0.1"]
gateway_mac = "{GW_MAC}"
[[endpoint]]
network = "blue"
mac = "{EP_MAC}"
ips = ["10.1.0.2"]
port = "spare"
"#
    );
    control_config(dir, &[worker_core()], &body)
}

/// Runs a command that must succeed; its stdout.
fn ok(socket: &Path, args: &[&str]) -> String {
    vswitchctl_ok(socket, args)
}

/// Runs a command the switch must refuse: exit 1, one line on stderr; that line.
fn refused(socket: &Path, args: &[&str]) -> String {
    let out = vswitchctl(socket, args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "vswitchctl {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty() || args[0] == "apply", "{out:?}");
    err
}

fn generation(socket: &Path) -> u64 {
    let v: Value = serde_json::from_str(&ok(socket, &["show", "--json"])).unwrap();
    v["generation"].as_u64().expect("generation")
}

/// A switch on [`config`] in a directory of its own, its API answering: the
/// directory, the switch and its socket.
fn running() -> (TempDir, Vswitchd, PathBuf) {
    let dir = TempDir::new(&unique_tag());
    let v = Vswitchd::start(&dir, &config(&dir));
    let sock = dir.join("ctl.sock");
    wait_for_api(&sock);
    (dir, v, sock)
}

/// `vswitchctl --timeout 1 show` must give up within a few seconds with exit 3
/// and the one line that names `socket`.
fn assert_no_answer(socket: &Path, why: &str) {
    let t = Instant::now();
    let out = vswitchctl(socket, &["--timeout", "1", "show"]);
    let elapsed = t.elapsed();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{why}: {err}");
    assert_eq!(
        err,
        format!(
            "vswitchctl: no answer from {} within 1 s (is vswitchd running? --timeout to wait longer)\n",
            socket.display()
        ),
        "{why}"
    );
    assert!(elapsed < Duration::from_secs(10), "{why}: {elapsed:?}");
}

/// Sends SIGCONT to a process it stopped, even when an assertion fails first.
struct Stopped(u32);

impl Stopped {
    /// Stops `pid` and waits until it is stopped (a signal is delivered
    /// asynchronously: a request sent right after kill(1) can still be answered).
    fn new(pid: u32) -> Stopped {
        run("kill", &["-STOP", &pid.to_string()]);
        let guard = Stopped(pid);
        let status = format!("/proc/{pid}/status");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = std::fs::read_to_string(&status).unwrap_or_default();
            if s.lines()
                .any(|l| l.starts_with("State:") && l.contains("T (stopped)"))
            {
                return guard;
            }
            assert!(Instant::now() < deadline, "{pid} did not stop: {s}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .output();
    }
}

// ------------------------------------------------------------------ exit codes

#[test]
fn cli_unreachable_and_hung_daemons_exit_3_naming_the_socket() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);

    // No socket at all.
    let missing = dir.join("missing.sock");
    let out = vswitchctl(&missing, &["show"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.starts_with(&format!(
            "vswitchctl: cannot connect to {}: ",
            missing.display()
        )),
        "{err}"
    );

    // A socket that listens but never accepts (the backlog takes the connection).
    let hung = dir.join("hung.sock");
    let listener = UnixListener::bind(&hung).unwrap();
    assert_no_answer(&hung, "a bare listening socket");
    drop(listener);

    // A real daemon, stopped: the same, and it answers again once continued.
    let mut v = Vswitchd::start(&dir, &config(&dir));
    let sock: PathBuf = dir.join("ctl.sock");
    wait_for_api(&sock);
    {
        let _stopped = Stopped::new(v.child.pid());
        assert_no_answer(&sock, "vswitchd under SIGSTOP");
    }
    wait_for_api(&sock);
    // A write that timed out on a stopped daemon may still be applied when it
    // continues (the request was in its socket), so only reads were sent above.
    assert!(v.child.0.as_mut().unwrap().try_wait().unwrap().is_none());
    v.stop();
    // The daemon gone: its socket is removed or refuses; exit 3 either way.
    let out = vswitchctl(&sock, &["--timeout", "2", "show"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&*sock.to_string_lossy()),
        "{}",
        text(&out.stderr)
    );
}

// ------------------------------------------------------------------ closed pipe

#[test]
fn cli_closed_stdout_is_quiet() {
    require_root!();
    let (_dir, v, sock) = running();
    let bin = workspace_bin("vswitchctl");
    // `| head -c 10` as an operator types it, and `| true`, whose reader is gone
    // before the answer arrives (so the first write meets EPIPE). pipefail: the
    // status is vswitchctl's.
    for (cmd, reader) in [
        ("show --json", "head -c 10"),
        ("get -o json", "head -c 10"),
        ("stats", "head -1"),
        ("show --json", "true"),
        ("get", "true"),
        ("port list", "true"),
    ] {
        let line = format!(
            "set -o pipefail; '{}' --socket '{}' {cmd} | {reader} >/dev/null",
            bin.display(),
            sock.display()
        );
        let out = Command::new("bash").args(["-c", &line]).output().unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("Broken pipe"), "{cmd} | {reader}: {err}");
        assert!(err.is_empty(), "{cmd} | {reader}: {err}");
        assert_eq!(out.status.code(), Some(0), "{cmd} | {reader}: {err}");
    }
    v.stop();
}

// ------------------------------------------------------------------ messages

#[test]
fn cli_delete_of_a_used_port_or_network_names_the_user() {
    require_root!();
    let (_dir, v, sock) = running();
    let gen = generation(&sock);
    let err = refused(&sock, &["port", "del", "spare"]);
    assert_eq!(
        err,
        format!(
            "vswitchctl: op 0 (del_port \"spare\"): port \"spare\" is used by endpoint {EP_MAC} in network \"blue\": delete that first\n"
        )
    );
    let err = refused(&sock, &["port", "del", "b"]);
    assert!(
        err.contains(&format!("port \"b\" is used by l2 entry {MAC_B}")),
        "{err}"
    );
    let err = refused(&sock, &["port", "del", "sink"]);
    assert!(
        err.contains("port \"sink\" is used by patch \"tx\" -> \"sink\""),
        "{err}"
    );
    let err = refused(&sock, &["net", "del", "blue"]);
    assert!(
        err.contains("network \"blue\" has 1 endpoint: delete it first"),
        "{err}"
    );
    assert_eq!(generation(&sock), gen, "nothing changed");
    // In that order, both go.
    ok(
        &sock,
        &["endpoint", "del", "--network", "blue", "--mac", EP_MAC],
    );
    ok(&sock, &["port", "del", "spare"]);
    ok(&sock, &["net", "del", "blue"]);
    assert_eq!(generation(&sock), gen + 3);
    v.stop();
}

// ------------------------------------------------------------------ trace

#[test]
fn cli_trace_on_classic_ports_shows_the_mac_table_and_group_names() {
    require_root!();
    let (_dir, v, sock) = running();
    let trace = |port: &str, dst: &str| -> Value {
        let spec = format!(
            "eth(src={MAC_A},dst={dst})/ipv4(src=10.9.0.1,dst=10.9.0.2)/udp(sport=1,dport=2)"
        );
        let s = ok(
            &sock,
            &["trace", "--in-port", port, "--packet", &spec, "--json"],
        );
        serde_json::from_str(&s).unwrap()
    };
    let stage = |t: &Value, name: &str| -> String {
        t["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .map(|s| s["detail"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no stage {name}: {t}"))
    };

    // A known MAC of the group: its port.
    let t = trace("a", MAC_B);
    assert_eq!(
        stage(&t, "ingress"),
        "classic L2 port in group \"lan\"",
        "{t}"
    );
    assert_eq!(stage(&t, "l2"), format!("{MAC_B} -> port \"b\""), "{t}");
    assert_eq!(
        (&t["verdict"], &t["out_port"]),
        (&"output".into(), &"b".into())
    );
    // Unknown unicast and broadcast: flooded to the group, by name.
    let t = trace("a", "02:00:00:00:09:09");
    assert_eq!(
        stage(&t, "l2"),
        "02:00:00:00:09:09 unknown: flood to group \"lan\" [b, c]",
        "{t}"
    );
    assert_eq!(t["verdict"], "flood", "{t}");
    let t = trace("c", "ff:ff:ff:ff:ff:ff");
    assert_eq!(
        stage(&t, "l2"),
        "ff:ff:ff:ff:ff:ff broadcast: flood to group \"lan\" [a, b]",
        "{t}"
    );
    // Back to the port it came from.
    let t = trace("a", MAC_A);
    assert!(stage(&t, "l2").contains("the port it came in on"), "{t}");
    assert_eq!(t["drop_reason"], "hairpin", "{t}");
    // A patched port: the patch, whatever the MAC.
    let t = trace("tx", MAC_B);
    assert_eq!(
        stage(&t, "l2"),
        "patched: every frame to port \"sink\"",
        "{t}"
    );
    assert_eq!(t["out_port"], "sink", "{t}");
    // The patch's destination is an ordinary port of group "default".
    let t = trace("sink", "02:00:00:00:09:09");
    assert_eq!(
        stage(&t, "l2"),
        "02:00:00:00:09:09 unknown: flood to group \"default\" [tx]",
        "{t}"
    );
    // A port alone in its group: nowhere to flood.
    let t = trace("lone", "02:00:00:00:09:09");
    assert_eq!(
        stage(&t, "l2"),
        "02:00:00:00:09:09 unknown: flood to group \"solo\", which has no other port",
        "{t}"
    );
    assert_eq!(t["drop_reason"], "no_output", "{t}");
    // The human form has the stage on a line of its own.
    let spec = format!("eth(src={MAC_A},dst={MAC_B})");
    let human = ok(&sock, &["trace", "--in-port", "a", "--packet", &spec]);
    assert!(
        human.contains(&format!("\nl2: {MAC_B} -> port \"b\"\nverdict: output b\n")),
        "{human}"
    );
    v.stop();
}

// ------------------------------------------------------------------ apply -f

#[test]
fn cli_stale_apply_is_refused_and_force_applies_it() {
    require_root!();
    let (dir, v, sock) = running();

    // Operator 1 exports and edits (a MAC entry more).
    let exported = ok(&sock, &["get", "-o", "yaml"]);
    let g1 = generation(&sock);
    assert!(
        exported.starts_with(&format!("# vswitchd desired state, generation {g1}\n")),
        "{exported}"
    );
    let mine = dir.join("mine.yaml");
    let edited = exported.replacen("l2:\n", "l2:\n- mac: 02:00:00:00:0c:01\n  port: c\n", 1);
    assert_ne!(edited, exported, "{exported}");
    std::fs::write(&mine, &edited).unwrap();
    let json = dir.join("mine.json");
    std::fs::write(&json, ok(&sock, &["get", "-o", "json"])).unwrap();

    // Operator 2 writes meanwhile.
    ok(&sock, &["port", "add", "theirs", "--profile", "null"]);
    let g2 = generation(&sock);
    assert_eq!(g2, g1 + 1);

    // Operator 1's apply would remove "theirs" unseen: refused, naming both
    // generations and the way out; nothing changes.
    let mine_s = mine.to_str().unwrap();
    let dry = ok(&sock, &["apply", "-f", mine_s, "--dry-run"]);
    assert!(dry.contains("  - theirs\n"), "{dry}");
    assert!(
        dry.contains(&format!("is at generation {g1}, the switch at {g2}")),
        "{dry}"
    );
    for f in [mine_s, json.to_str().unwrap()] {
        let err = refused(&sock, &["apply", "-f", f]);
        assert!(
            err.contains(&format!(
                "{f} is at generation {g1} but the switch is at {g2}"
            )) && err.contains("--force"),
            "{err}"
        );
    }
    assert_eq!(generation(&sock), g2);
    assert!(ok(&sock, &["port", "list"]).contains("theirs"));

    // A document without a generation needs --force: exit 2, before any write.
    let bare = dir.join("bare.yaml");
    std::fs::write(&bare, edited.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
    let out = vswitchctl(&sock, &["apply", "-f", bare.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--force"));

    // --force: operator 1's document wins, as asked.
    let out = ok(&sock, &["apply", "-f", mine_s, "--force"]);
    assert!(out.contains(&format!("generation {} ", g2 + 1)), "{out}");
    assert!(!ok(&sock, &["port", "list"]).contains("theirs"));
    let state: Value = serde_json::from_str(&ok(&sock, &["get", "-o", "json"])).unwrap();
    assert_eq!(state["generation"], g2 + 1);
    assert!(
        state["l2"].to_string().contains("02:00:00:00:0c:01"),
        "{state}"
    );

    // A fresh export, edited, applies without --force.
    let mut fresh = state;
    fresh["l2"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["mac"] != "02:00:00:00:0c:01");
    let f = dir.join("fresh.json");
    std::fs::write(&f, fresh.to_string()).unwrap();
    let out = ok(&sock, &["apply", "-f", f.to_str().unwrap()]);
    assert!(out.contains(&format!("generation {} ", g2 + 2)), "{out}");
    v.stop();
}
