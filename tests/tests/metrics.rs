//! The metrics endpoint (issue #28, item 2), scraped while two kernel pods ping
//! each other through a real `vswitchd`: every page passes `promtool check
//! metrics` (Debian's `prometheus` package), and every counter lies between what
//! `vswitchctl stats --json` says just before and just after the scrape (the
//! same counters, read the same way; traffic moves them in between). A write
//! through the API shows up in the publish-latency histogram and the generation.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::*;

const MAC1: &str = "02:00:00:28:01:01";
const MAC2: &str = "02:00:00:28:02:01";

/// `GET path` over HTTP/1.1 with `headers` (each ending in CRLF): the whole
/// response head and the body.
fn request(addr: SocketAddr, path: &str, headers: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.to_owned(), body.to_owned())
}

/// `GET path`: the status line and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let (head, body) = request(addr, path, "");
    (head.lines().next().unwrap().to_owned(), body)
}

/// `GET /metrics` with Prometheus's own `Accept` header: the head and the body.
fn get_openmetrics(addr: SocketAddr) -> (String, String) {
    request(
        addr,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,\
         application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n",
    )
}

/// The OpenMetrics parser of the Python client library (Debian's
/// python3-prometheus-client), which refuses what the standard does: its
/// complaint, empty when the page parses.
fn openmetrics_parser(page: &str) -> String {
    // Debian's python, which the package is for (a python of the user's own may
    // come first on PATH).
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
             list(p(sys.stdin.read()))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        String::new()
    } else {
        text(&out.stderr)
    }
}

/// `promtool check metrics` on `page`: its complaints, empty when clean.
fn promtool(page: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus; scripts/install-deps.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        String::new()
    } else {
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    }
}

/// The page's samples: `name{labels}` → value.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse::<f64>().unwrap())
        })
        .collect()
}

fn ctl_stats(socket: &std::path::Path) -> Value {
    serde_json::from_str(&vswitchctl_ok(socket, &["stats", "--json"])).unwrap()
}

/// Asserts `before[key] <= metric <= after[key]`.
fn between(what: &str, metric: Option<&f64>, before: &Value, after: &Value) {
    let m = *metric.unwrap_or_else(|| panic!("{what}: no such sample"));
    let (b, a) = (before.as_u64().unwrap(), after.as_u64().unwrap());
    assert!(
        b as f64 <= m && m <= a as f64,
        "{what}: {m} outside vswitchctl's [{b}, {a}]"
    );
}

#[test]
fn metrics_scraped_during_traffic_pass_promtool_and_match_vswitchctl() {
    require_root!();
    let tag = unique_tag();
    let dir = TempDir::new(&tag);
    let p1 = VethPod::new(&tag, 1, MAC1, "10.28.1.1/24");
    let p2 = VethPod::new(&tag, 2, MAC2, "10.28.1.2/24");
    // Port 0: the kernel picks a free one, the log says which.
    let body = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [[port]]\nname = \"pod1\"\nprofile = \"af_packet\"\niface = \"{}\"\n\
         [[port]]\nname = \"pod2\"\nprofile = \"af_packet\"\niface = \"{}\"\n",
        allowed_dirs(&dir),
        p1.host_if,
        p2.host_if
    );
    let switch = Vswitchd::start(&dir, &control_config(&dir, &[worker_core()], &body));
    let socket = dir.join("ctl.sock");
    wait_for_api(&socket);
    let log = switch.log_text();
    let addr: SocketAddr = log
        .lines()
        .find(|l| l.contains("metrics endpoint listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback());

    let (status, _) = get(addr, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    // Bad requests get their status and change nothing; the endpoint serves on.
    for (raw, want) in [
        (
            b"\x00\x01garbage\r\n\r\n".to_vec(),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            b"POST /metrics HTTP/1.1\r\n\r\n".to_vec(),
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (
            [b"GET /".as_slice(), &[b'a'; 20_000], b" HTTP/1.1\r\n\r\n"].concat(),
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The endpoint may answer and close before reading a long request.
        let _ = s.write_all(&raw);
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let resp = String::from_utf8_lossy(&resp);
        assert!(resp.starts_with(want), "{want}: {resp}");
    }

    // Traffic for the whole scraping: 0.5 ms apart, both ways (echo and reply).
    let mut ping = p1
        .ns
        .spawn(&["ping", "-q", "-i", "0.002", "-c", "2500", "10.28.1.2"]);
    std::thread::sleep(Duration::from_millis(500));
    let mut rx_seen = Vec::new();
    for round in 0..3 {
        let before = ctl_stats(&socket);
        let (status, page) = get(addr, "/metrics");
        let after = ctl_stats(&socket);
        assert_eq!(status, "HTTP/1.1 200 OK");
        let lint = promtool(&page);
        assert!(lint.is_empty(), "round {round}: promtool: {lint}\n{page}");
        let m = samples(&page);
        for port in ["pod1", "pod2"] {
            let (b, a) = (port_stats(&before, port), port_stats(&after, port));
            for (metric, key) in [
                ("vswitch_port_rx_packets_total", "rx_packets"),
                ("vswitch_port_rx_bytes_total", "rx_bytes"),
                ("vswitch_port_tx_packets_total", "tx_packets"),
                ("vswitch_port_tx_bytes_total", "tx_bytes"),
                ("vswitch_port_dropped_packets_total", "dropped"),
                ("vswitch_port_rx_missed_packets_total", "imissed"),
                ("vswitch_port_rx_errors_total", "ierrors"),
                ("vswitch_port_tx_errors_total", "oerrors"),
                ("vswitch_port_rx_nombuf_total", "rx_nombuf"),
            ] {
                let k = format!("{metric}{{port=\"{port}\"}}");
                between(&k, m.get(&k), &b[key], &a[key]);
            }
            assert_eq!(m[&format!("vswitch_port_link_up{{port=\"{port}\"}}")], 1.0);
        }
        rx_seen.push(m["vswitch_port_rx_packets_total{port=\"pod1\"}"]);
        for (i, w) in after["workers"].as_array().unwrap().iter().enumerate() {
            let wb = &before["workers"][i];
            let labels = format!("worker=\"{}\",core=\"{}\"", w["index"], w["core"]);
            for (state, key) in [("busy", "busy_rounds"), ("idle", "idle_rounds")] {
                let k = format!("vswitch_worker_poll_rounds_total{{{labels},state=\"{state}\"}}");
                between(&k, m.get(&k), &wb[key], &w[key]);
            }
            // Time, in seconds here and in nanoseconds there (a microsecond of slack
            // for the conversion's rounding).
            for (state, key) in [("busy", "busy_ns"), ("idle", "idle_ns")] {
                let k = format!("vswitch_worker_seconds_total{{{labels},state=\"{state}\"}}");
                let ns = m.get(&k).unwrap_or_else(|| panic!("{k}: no such sample")) * 1e9;
                let (b, a) = (wb[key].as_u64().unwrap(), w[key].as_u64().unwrap());
                assert!(
                    b as f64 - 1e3 <= ns && ns <= a as f64 + 1e3,
                    "{k}: {ns} ns outside vswitchctl's [{b}, {a}]"
                );
            }
            for (metric, key) in [
                ("vswitch_worker_rx_packets_total", "rx_packets"),
                ("vswitch_worker_tx_packets_total", "tx_packets"),
            ] {
                let k = format!("{metric}{{{labels}}}");
                between(&k, m.get(&k), &wb[key], &w[key]);
            }
            // The flow table's events (classic ports: the table stays unused,
            // and both sides say so) and its capacity, vswitchd's default.
            let (fb, fa) = (&wb["flow_table"], &w["flow_table"]);
            for (event, key) in [
                ("hit", "hits"),
                ("miss", "misses"),
                ("install", "installs"),
                ("eviction", "evictions"),
                ("skipped_install", "skipped_installs"),
                ("bypassed", "bypassed"),
                ("revalidation", "revalidations"),
            ] {
                let k = format!("vswitch_worker_flow_table_total{{{labels},event=\"{event}\"}}");
                between(&k, m.get(&k), &fb[key], &fa[key]);
            }
            let k = format!("vswitch_worker_flow_table_capacity{{{labels}}}");
            between(&k, m.get(&k), &fb["capacity"], &fa["capacity"]);
            assert_eq!(fa["capacity"], 65536, "the default capacity");
            let k = format!("vswitch_worker_flow_table_entries{{{labels}}}");
            between(&k, m.get(&k), &fb["entries"], &fa["entries"]);
        }
        // vswitchctl lists the reasons that counted something.
        let empty = serde_json::Map::new();
        let drops = after["drops"].as_object().unwrap_or(&empty);
        for (reason, n) in drops {
            let k = format!("vswitch_drops_total{{reason=\"{reason}\"}}");
            // A reason vswitchctl did not list before had counted nothing.
            let b = before["drops"]
                .get(reason)
                .cloned()
                .unwrap_or(Value::from(0u64));
            between(&k, m.get(&k), &b, n);
        }
        let reasons = m
            .keys()
            .filter(|k| k.starts_with("vswitch_drops_total{"))
            .count();
        assert_eq!(
            reasons,
            dataplane::DropReason::COUNT,
            "every drop reason has its series"
        );
        between(
            "vswitch_generated_packets_total",
            m.get("vswitch_generated_packets_total"),
            &before["generated"],
            &after["generated"],
        );
        assert_eq!(
            m["vswitch_snapshot_generation"],
            after["generation"].as_u64().unwrap() as f64
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        rx_seen.windows(2).all(|w| w[0] < w[1]),
        "the scrapes saw traffic: {rx_seen:?}"
    );
    let out = ping
        .wait_timeout(Duration::from_secs(30))
        .expect("ping ends");
    assert!(out.status.success(), "ping: {}", text(&out.stdout));

    // A write: its publish reaches the worker and is measured.
    let gen_before = ctl_stats(&socket)["generation"].as_u64().unwrap();
    vswitchctl_ok(&socket, &["port", "add", "spare", "--profile", "null"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let (_, page) = get(addr, "/metrics");
        let m = samples(&page);
        if m["vswitch_snapshot_publish_latency_seconds_count"] >= 1.0 {
            assert!(promtool(&page).is_empty());
            break m;
        }
        assert!(Instant::now() < deadline, "no publish measured:\n{page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(m["vswitch_snapshot_generation"], (gen_before + 1) as f64);
    assert!(m["vswitch_snapshot_publish_latency_seconds_sum"] > 0.0);
    // The worker idles at most idle_sleep_max_us (1 ms by default) between
    // rounds: a publish reaches it well within the 1 s bucket.
    assert_eq!(
        m["vswitch_snapshot_publish_latency_seconds_bucket{le=\"1\"}"],
        m["vswitch_snapshot_publish_latency_seconds_count"]
    );
    assert!(m.contains_key("vswitch_port_rx_packets_total{port=\"spare\"}"));

    // Prometheus asks for OpenMetrics first: it gets it, and the page is valid
    // OpenMetrics with the same samples.
    let (head, page) = get_openmetrics(addr);
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(page.ends_with("# EOF\n"), "{page}");
    assert!(page.contains("# TYPE vswitch_drops counter\n"), "{page}");
    let complaint = openmetrics_parser(&page);
    assert!(complaint.is_empty(), "{complaint}\n{page}");
    let om = samples(&page);
    assert!(om.contains_key("vswitch_port_rx_packets_total{port=\"spare\"}"));
    assert_eq!(
        om["vswitch_snapshot_generation"],
        m["vswitch_snapshot_generation"]
    );
    switch.stop();
}
