//! The Debian package (issue #28): built by the same script as `make deb` (here
//! from the test build's binaries), installed with `dpkg -i`, its `vswitchd`
//! started with the packaged unit's own command line and the packaged default
//! configuration, driven by the packaged `vswitchctl` on its default socket, and
//! purged again — leaving the machine as it was.
//!
//! The test installs into the system: it skips, changing nothing, where a
//! vswitch package is already installed or a switch already runs or has state.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use system_tests::*;

const UNIT: &str = "/lib/systemd/system/vswitchd.service";
const SOCKET: &str = "/run/vswitch/vswitchd.sock";

/// Purges the package on drop (and `/run/vswitch`, when the test made it), so a
/// failing assertion still leaves the machine clean.
struct Installed {
    run_dir_was_there: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "vswitch"]).output();
        if !self.run_dir_was_there {
            let _ = std::fs::remove_dir_all("/run/vswitch");
        }
    }
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| text(&o.stdout).contains("ok installed"))
        .unwrap_or(false)
}

/// Why this machine cannot host the test without touching what is not ours.
fn reason_to_skip() -> Option<&'static str> {
    if installed("vswitch") {
        return Some("a vswitch package is already installed");
    }
    if Path::new(SOCKET).exists() || Path::new("/var/lib/vswitch/state.json").exists() {
        return Some("a switch runs here or left its state in /var/lib/vswitch");
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return Some("the packaged configuration pins its worker to CPU 1");
    }
    None
}

#[test]
fn package_installs_starts_and_purges() {
    require_root!();
    if let Some(why) = reason_to_skip() {
        eprintln!("SKIP: {why}");
        return;
    }
    let dir = TempDir::new(&unique_tag());
    let bin_dir = workspace_bin("vswitchd").parent().unwrap().to_path_buf();
    let script = repo_root().join("deploy/debian/build-deb.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--bin-dir")
        .arg(&bin_dir)
        // Relative to where the caller stands, as a user would give it.
        .current_dir(&dir.0)
        .args(["--out", "deb"])
        .output()
        .unwrap();
    assert!(out.status.success(), "build-deb: {}", text(&out.stderr));
    let deb = text(&out.stdout).trim().to_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        Path::new(&deb),
        dir.join(&format!("deb/vswitch_{version}_{}.deb", arch()))
    );

    // Control fields: dependencies found from the binaries, not written by hand.
    let depends = text(&run("dpkg-deb", &["-f", &deb, "Depends"]).stdout);
    assert!(depends.contains("libc6"), "Depends: {depends}");

    let guard = Installed {
        run_dir_was_there: Path::new("/run/vswitch").exists(),
    };
    run("dpkg", &["-i", &deb]);
    assert!(installed("vswitch"));
    let conffiles = text(&run("dpkg-query", &["-W", "-f=${Conffiles}", "vswitch"]).stdout);
    assert!(
        conffiles.contains("/etc/vswitch/vswitchd.toml"),
        "{conffiles}"
    );
    let files = text(&run("dpkg", &["-L", "vswitch"]).stdout);
    for f in [
        "/usr/bin/vswitchd",
        "/usr/bin/vswitchctl",
        "/usr/lib/cni/vswitch-cni",
        UNIT,
    ] {
        assert!(files.lines().any(|l| l == f), "{f} not in the package");
    }
    let v = text(&run("/usr/bin/vswitchd", &["--version"]).stdout);
    assert_eq!(v.trim(), format!("vswitchd {version}"));
    // The CNI plugin answers VERSION as a runtime asks it.
    let out = Command::new("/usr/lib/cni/vswitch-cni")
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("supportedVersions"),
        "{}",
        text(&out.stdout)
    );

    // The unit's own command lines, as systemd would run them (without systemd).
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let pre = unit_line(&unit, "ExecStartPre=");
    let out = Command::new(pre[0]).args(&pre[1..]).output().unwrap();
    assert!(out.status.success(), "{pre:?}: {}", text(&out.stderr));
    let start = unit_line(&unit, "ExecStart=");
    let log = std::fs::File::create(dir.join("vswitchd.log")).unwrap();
    let mut daemon = ChildGuard(Some(
        Command::new(start[0])
            .args(&start[1..])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    ));

    // The packaged vswitchctl finds the packaged daemon on its default socket.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("/usr/bin/vswitchctl")
            .env_remove("VSWITCH_SOCKET")
            .arg("health")
            .output()
            .unwrap();
        if out.status.success() {
            assert!(
                text(&out.stdout).contains("serving"),
                "{}",
                text(&out.stdout)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the packaged vswitchd never answered: {}",
            std::fs::read_to_string(dir.join("vswitchd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its socket belongs to the group the package created.
    let group = text(&run("getent", &["group", "vswitch"]).stdout);
    let gid: u32 = group.split(':').nth(2).unwrap().parse().unwrap();
    assert_eq!(std::fs::metadata(SOCKET).unwrap().gid(), gid);

    Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    let exit = daemon
        .wait_timeout(Duration::from_secs(20))
        .expect("vswitchd did not stop on SIGTERM");
    assert!(exit.status.success(), "{:?}", exit.status);

    drop(guard);
    assert!(!installed("vswitch"));
    assert!(!Path::new("/usr/bin/vswitchd").exists());
    assert!(!Path::new("/etc/vswitch/vswitchd.toml").exists());
}

fn arch() -> String {
    text(&run("dpkg", &["--print-architecture"]).stdout)
        .trim()
        .to_owned()
}

/// The words of the unit's `key` line (the unit quotes nothing), without the
/// prefixes systemd allows before the program (`-`, `+`, `!`, `:`).
fn unit_line<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in the unit"));
    line.trim_start_matches(['-', '+', '!', ':'])
        .split_whitespace()
        .collect()
}
