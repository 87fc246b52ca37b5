//! The daemon's log output (issue #28, item 6): `--log-format json` makes every
//! line the daemon writes a JSON object (parsed here, line by line, with typed
//! fields), overriding `[log] format`; plain lines carry no colour codes when
//! stderr is not a terminal, and no timestamp when stderr is the stream
//! `JOURNAL_STREAM` names (journald stamps lines itself).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::Value;
use system_tests::*;

/// One null port, no API (SIGHUP reloads the file), DPDK's own log quiet
/// (`error`): what remains on stderr is the daemon's.
fn config(dir: &TempDir, log: &str) -> String {
    format!(
        r#"
[eal]
memory_mb = 256
in_memory = true
log_level = "error"
[dataplane]
workers = [{core}]
stats_file = "{stats}"
stats_interval_ms = 100
{log}
[[port]]
name = "a"
profile = "null"
"#,
        core = worker_core(),
        stats = dir.join("stats.json").display(),
    )
}

fn wait_for_line(switch: &Vswitchd, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !switch.log_text().contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in:\n{}",
            switch.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn json_format_writes_one_object_per_line() {
    require_root!();
    let dir = TempDir::new(&unique_tag());
    // The flag wins over the file.
    let cfg = config(&dir, "[log]\nformat = \"plain\"");
    let switch = Vswitchd::start_with(&dir, &cfg, &[], &[], &["--log-format", "json"]);
    // A reload: an event with a numeric field.
    run("kill", &["-HUP", &switch.child.pid().to_string()]);
    wait_for_line(&switch, "reloaded configuration");
    let log_path = dir.join("vswitchd.log");
    switch.stop();
    let log = std::fs::read_to_string(log_path).unwrap();
    let mut messages = Vec::new();
    for line in log.lines().filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{log}"));
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(!v[key].is_null(), "no {key}: {line}");
        }
        let ts = v["timestamp"].as_str().unwrap();
        assert!(ts.len() == 24 && ts.ends_with('Z'), "{ts}");
        messages.push((v["fields"]["message"].as_str().unwrap_or("").to_owned(), v));
    }
    let find = |m: &str| {
        messages
            .iter()
            .find(|(msg, _)| msg == m)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {m:?} event in:\n{log}"))
    };
    let fwd = find("forwarding");
    assert_eq!(fwd["level"], "INFO");
    assert_eq!(fwd["target"], "vswitchd::switch");
    assert_eq!(fwd["fields"]["workers"], 1, "numbers stay numbers: {fwd}");
    assert_eq!(fwd["fields"]["ports"], 1);
    let reload = find("reloaded configuration");
    assert_eq!(reload["fields"]["generation"], 2);
    assert!(find("port up")["fields"]["port"].is_string());
    find("stopped");
}

#[test]
fn plain_format_has_no_colours_off_a_terminal_and_no_time_under_journald() {
    require_root!();
    for journal in [false, true] {
        let dir = TempDir::new(&unique_tag());
        // start_with truncates this file, keeping its inode: stderr is this file.
        let log_path = dir.join("vswitchd.log");
        std::fs::write(&log_path, "").unwrap();
        let m = std::fs::metadata(&log_path).unwrap();
        let stream = format!("{}:{}", m.dev(), m.ino());
        let env: Vec<(&str, &Path)> = if journal {
            vec![("JOURNAL_STREAM", Path::new(&stream))]
        } else {
            vec![]
        };
        let switch = Vswitchd::start_with(&dir, &config(&dir, ""), &[], &env, &[]);
        wait_for_line(&switch, "forwarding");
        switch.stop();
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");
        let line = log
            .lines()
            .find(|l| l.contains("vswitchd::switch: forwarding"))
            .unwrap_or_else(|| panic!("{log}"));
        // "2026-12-07T14:23:44.854288Z  INFO vswitchd::switch: forwarding …"
        let stamped = line.starts_with("20") && line.as_bytes().get(10) == Some(&b'T');
        assert_eq!(stamped, !journal, "journal={journal}: {line}");
        if journal {
            assert!(line.trim_start().starts_with("INFO "), "{line}");
        }
    }
}

#[test]
fn a_start_error_is_a_json_line_when_json_is_asked_for() {
    let out = std::process::Command::new(workspace_bin("vswitchd"))
        .args([
            "--config",
            "/nonexistent/vswitchd.toml",
            "--log-format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["level"], "ERROR");
    assert!(v["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/vswitchd.toml"));
    let bad = std::process::Command::new(workspace_bin("vswitchd"))
        .args(["--log-format", "xml", "--check"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("unknown log format \"xml\""));
}
