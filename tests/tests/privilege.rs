//! Access to the API socket is not root access (issue #23): a member of
//! `socket_group`, driving the real `vswitchctl` as an unprivileged user, cannot
//! make the root daemon create, overwrite or read a file outside the directories
//! `[control]` allows, through any path-carrying port parameter, by `..` or by a
//! symbolic link; a path inside them works; a user outside the group cannot
//! connect at all.
//!
//! The test creates a throwaway system group and two system users (one in the
//! group, one not); a guard removes them when the test ends, failed or not.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use system_tests::*;

/// A system group with one member and one user outside it, removed on drop
/// (users first: a group that is someone's primary group cannot be removed).
struct ThrowawayAccounts {
    group: String,
    member: String,
    outsider: String,
}

impl ThrowawayAccounts {
    fn new(tag: &str) -> ThrowawayAccounts {
        let a = ThrowawayAccounts {
            group: format!("vswg{tag}"),
            member: format!("vswm{tag}"),
            outsider: format!("vswo{tag}"),
        };
        // `a` exists before the first command: if a later one fails, unwinding
        // drops it and Drop removes whatever was made.
        run("groupadd", &["--system", &a.group]);
        for (user, group) in [(&a.member, a.group.as_str()), (&a.outsider, "nogroup")] {
            run(
                "useradd",
                &[
                    "--system",
                    "--no-create-home",
                    "--no-user-group",
                    "--gid",
                    group,
                    "--shell",
                    "/usr/sbin/nologin",
                    user,
                ],
            );
        }
        a
    }
}

impl Drop for ThrowawayAccounts {
    fn drop(&mut self) {
        for user in [&self.member, &self.outsider] {
            let _ = Command::new("userdel").arg(user).output();
        }
        let _ = Command::new("groupdel").arg(&self.group).output();
    }
}

/// `vswitchctl --socket <sock> <args>` as `user` (runuser: no password, the
/// user's own groups).
fn ctl_as(user: &str, sock: &Path, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(workspace_bin("vswitchctl"))
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("run runuser")
}

/// A pcap with one 60-byte broadcast frame (for an `rx_pcap` inside the allowed
/// directory).
fn write_pcap(path: &Path) {
    let mut b = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65535, 1, 0, 0, 60, 60] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    frame.resize(60, 0);
    b.extend_from_slice(&frame);
    std::fs::write(path, b).unwrap();
}

/// What must not change: content and modification time.
fn fingerprint(p: &Path) -> (Vec<u8>, SystemTime, u32) {
    let m = std::fs::metadata(p).unwrap();
    (
        std::fs::read(p).unwrap(),
        m.modified().unwrap(),
        m.mode() & 0o7777,
    )
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_socket_group_member_cannot_reach_outside_the_allowed_dirs() {
    require_root!();
    for tool in ["groupadd", "useradd", "userdel", "groupdel", "runuser"] {
        let found = Command::new("which")
            .arg(tool)
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("SKIP: {tool} is not installed");
            return;
        }
    }
    let tag = unique_tag();
    let accounts = ThrowawayAccounts::new(&tag);
    let dir = TempDir::new(&tag);
    // The test directory is root's, 0755, under sticky /tmp: safe to allow.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = |s: &str| dir.join(s);
    for sub in ["pcap", "vhost", "outside", "trusted"] {
        std::fs::create_dir(d(sub)).unwrap();
    }
    write_pcap(&d("pcap/in.pcap"));
    let victim = d("outside/victim");
    std::fs::write(&victim, "root's secret\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Links a careless root left inside the allowed directories.
    std::os::unix::fs::symlink(&victim, d("pcap/link.pcap")).unwrap();
    std::os::unix::fs::symlink(d("outside"), d("pcap/sub")).unwrap();
    std::os::unix::fs::symlink(d("outside/new-by-link.sock"), d("vhost/link.sock")).unwrap();
    std::os::unix::fs::symlink(d("outside"), d("vhost/sub")).unwrap();
    let before = fingerprint(&victim);
    let outside_before = listing(&d("outside"));

    let sock = d("ctl.sock");
    let body = format!(
        r#"socket_group = "{group}"
{dirs}
# The file is root's: its ports may name any path.
[[port]]
name = "filecap"
profile = "pcap"
rx_pcap = "{pcap}/in.pcap"
tx_pcap = "{trusted}/out.pcap"
"#,
        group = accounts.group,
        dirs = allowed_dirs(&dir),
        pcap = d("pcap").display(),
        trusted = d("trusted").display(),
    );
    let config = control_config(&dir, &[worker_core()], &body);
    let mut sw = Vswitchd::start(&dir, &config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ctl_as(&accounts.member, &sock, &["show"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "the API never answered the member:\n{}",
            sw.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::metadata(&sock).unwrap().mode() & 0o777,
        0o660,
        "the socket is 0660"
    );
    assert!(
        d("trusted/out.pcap").exists(),
        "the file's own port writes where root told it"
    );

    // A user outside the group cannot connect at all.
    let out = ctl_as(&accounts.outsider, &sock, &["show"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "outsider: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
    let out = ctl_as(
        &accounts.outsider,
        &sock,
        &["port", "add", "x", "--profile", "null"],
    );
    assert_eq!(out.status.code(), Some(3));

    let p = |s: &str| d(s).display().to_string();
    let rx_ok = format!("rx_pcap={}", p("pcap/in.pcap"));
    let long = format!("{}/{}", p("outside"), "a".repeat(3000));
    // (profile, params, the refused parameter, what the message says)
    let attempts: Vec<(&str, Vec<String>, &str, &str)> = vec![
        // Overwrite an existing root file.
        (
            "pcap",
            vec![rx_ok.clone(), format!("tx_pcap={}", p("outside/victim"))],
            "tx_pcap",
            "is outside the allowed directories",
        ),
        // Create a new file.
        (
            "pcap",
            vec![rx_ok.clone(), format!("tx_pcap={}", p("outside/new.pcap"))],
            "tx_pcap",
            "is outside the allowed directories",
        ),
        // `..` out of the allowed directory.
        (
            "pcap",
            vec![
                rx_ok.clone(),
                format!("tx_pcap={}", p("pcap/../outside/victim")),
            ],
            "tx_pcap",
            "`..` is not allowed",
        ),
        (
            "pcap",
            vec![
                rx_ok.clone(),
                format!("tx_pcap={}", p("pcap/../outside/new.pcap")),
            ],
            "tx_pcap",
            "`..` is not allowed",
        ),
        // A symbolic link inside pointing outside: as the file, as a directory.
        (
            "pcap",
            vec![rx_ok.clone(), format!("tx_pcap={}", p("pcap/link.pcap"))],
            "tx_pcap",
            "is a symbolic link",
        ),
        (
            "pcap",
            vec![rx_ok.clone(), format!("tx_pcap={}", p("pcap/sub/new.pcap"))],
            "tx_pcap",
            "outside the allowed directories",
        ),
        (
            "pcap",
            vec![rx_ok.clone(), format!("tx_pcap={}", p("pcap/sub/victim"))],
            "tx_pcap",
            "outside the allowed directories",
        ),
        // A relative path (the daemon's working directory is not the caller's).
        (
            "pcap",
            vec![rx_ok.clone(), "tx_pcap=victim".into()],
            "tx_pcap",
            "is not an absolute path",
        ),
        // The socket directory is not for captures.
        (
            "pcap",
            vec![rx_ok.clone(), format!("tx_pcap={}", p("vhost/x.pcap"))],
            "tx_pcap",
            "is outside the allowed directories",
        ),
        // Reading: a file outside, through `..`, through a link.
        (
            "pcap",
            vec![format!("rx_pcap={}", p("outside/victim"))],
            "rx_pcap",
            "is outside the allowed directories",
        ),
        (
            "pcap",
            vec![format!("rx_pcap={}", p("pcap/../outside/victim"))],
            "rx_pcap",
            "`..` is not allowed",
        ),
        (
            "pcap",
            vec![format!("rx_pcap={}", p("pcap/link.pcap"))],
            "rx_pcap",
            "is a symbolic link",
        ),
        // vhost-user: the server creates its socket, the client connects.
        (
            "vhost_user",
            vec![format!("path={}", p("outside/new.sock"))],
            "path",
            "is outside the allowed directories",
        ),
        (
            "vhost_user",
            vec![
                format!("path={}", p("outside/victim")),
                "client=true".into(),
            ],
            "path",
            "is outside the allowed directories",
        ),
        (
            "vhost_user",
            vec![format!("path={}", p("vhost/../outside/new.sock"))],
            "path",
            "`..` is not allowed",
        ),
        (
            "vhost_user",
            vec![format!("path={}", p("vhost/link.sock"))],
            "path",
            "is a symbolic link",
        ),
        (
            "vhost_user",
            vec![format!("path={}", p("vhost/sub/new.sock"))],
            "path",
            "outside the allowed directories",
        ),
        (
            "vhost_user",
            vec![format!("path={}", p("pcap/new.sock"))],
            "path",
            "is outside the allowed directories",
        ),
        // virtio-user: as a server it creates the socket, as a client it connects.
        (
            "virtio_user",
            vec![
                format!("path={}", p("outside/new2.sock")),
                "server=true".into(),
            ],
            "path",
            "is outside the allowed directories",
        ),
        (
            "virtio_user",
            vec![format!("path={}", p("outside/victim"))],
            "path",
            "is outside the allowed directories",
        ),
        (
            "virtio_user",
            vec![
                format!("path={}", p("vhost/../outside/new2.sock")),
                "server=true".into(),
            ],
            "path",
            "`..` is not allowed",
        ),
        (
            "virtio_user",
            vec![
                format!("path={}", p("vhost/link.sock")),
                "server=true".into(),
            ],
            "path",
            "is a symbolic link",
        ),
        (
            "virtio_user",
            vec![
                format!("path={}", p("vhost/sub/new2.sock")),
                "server=true".into(),
            ],
            "path",
            "outside the allowed directories",
        ),
        // A long hostile path is refused with a short message.
        (
            "pcap",
            vec![rx_ok.clone(), format!("tx_pcap={long}")],
            "tx_pcap",
            "is outside the allowed directories",
        ),
    ];
    for (i, (profile, params, param, want)) in attempts.iter().enumerate() {
        let name = format!("bad{i}");
        let mut args = vec!["port", "add", name.as_str(), "--profile", profile];
        for kv in params {
            args.extend(["--param", kv.as_str()]);
        }
        let out = ctl_as(&accounts.member, &sock, &args);
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "attempt {i} {params:?} was not refused: {}{err}",
            text(&out.stdout)
        );
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "attempt {i}: one line, got {err}");
        let head = format!("permission denied: port \"{name}\": {param}: ");
        assert!(
            lines[0].contains(&head) && lines[0].contains(want),
            "attempt {i} {params:?}:\n  got  {}\n  want {head}…{want}",
            lines[0]
        );
        assert!(
            lines[0].len() < 400,
            "attempt {i}: the path is quoted short: {}",
            lines[0]
        );
    }
    // Nothing outside changed or appeared, and the state is as it was.
    assert_eq!(fingerprint(&victim), before, "the victim file is unchanged");
    assert_eq!(
        listing(&d("outside")),
        outside_before,
        "nothing created outside"
    );
    let state = text(&ctl_as(&accounts.member, &sock, &["get", "-o", "json"]).stdout);
    assert!(
        !state.contains("bad"),
        "no refused port in the state: {state}"
    );

    // Inside the allowed directories it works: a capture written, a vhost socket.
    for (name, profile, params) in [
        (
            "okcap",
            "pcap",
            vec![rx_ok.clone(), format!("tx_pcap={}", p("pcap/out.pcap"))],
        ),
        (
            "okvhost",
            "vhost_user",
            vec![format!("path={}", p("vhost/ok.sock"))],
        ),
    ] {
        let mut args = vec!["port", "add", name, "--profile", profile];
        for kv in &params {
            args.extend(["--param", kv.as_str()]);
        }
        let out = ctl_as(&accounts.member, &sock, &args);
        assert!(
            out.status.success(),
            "{name}: {}{}\n{}",
            text(&out.stdout),
            text(&out.stderr),
            sw.log_text()
        );
    }
    for f in ["pcap/out.pcap", "vhost/ok.sock"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d(f).exists() {
            assert!(
                Instant::now() < deadline,
                "{f} was not created:\n{}",
                sw.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // A port the member added, changed to a path outside, is checked again.
    let out = ctl_as(&accounts.member, &sock, &["port", "del", "okcap"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ctl_as(
        &accounts.member,
        &sock,
        &[
            "port",
            "add",
            "okcap",
            "--profile",
            "pcap",
            "--param",
            &rx_ok,
            "--param",
            &format!("tx_pcap={}", p("outside/victim")),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(fingerprint(&victim), before);

    // The refusals did not harm the switch.
    if let Some(st) = sw
        .child
        .0
        .as_mut()
        .and_then(|c| c.try_wait().ok().flatten())
    {
        panic!("vswitchd exited ({st:?}):\n{}", sw.log_text());
    }
    sw.stop();
    assert_eq!(fingerprint(&victim), before);
}
