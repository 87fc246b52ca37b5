//! The Prometheus endpoint: `GET /metrics` on `[metrics] listen`.
//!
//! Off unless `[metrics]` is in the file, on loopback by default. One thread
//! serves it over std's blocking `TcpListener`, one connection at a time, each
//! closed after its answer: a scraper asks every few seconds and the page is a
//! few kilobytes, so neither an HTTP framework nor the control runtime (which
//! exists only with `[control]`) is needed. A client that sends nothing holds
//! the thread for at most [`IO_TIMEOUT`].
//!
//! Every value is read where `vswitchctl stats` reads it: the workers' published
//! counters (no lock), DPDK's port counters under the dataplane's lock, taken
//! with `try_lock` so a scrape never waits behind a write (it shows the ports as
//! last seen instead), and the publish latency from [`publish`].

pub mod exposition;
pub mod publish;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use dataplane::{Pipeline, SnapshotCell, StatsSnapshot, StatsTotals};
use pmd_shims::Mempool;
use tracing::{info, warn};

use crate::ports::Dataplane;
use crate::systemd::WorkerBeatSource;
use exposition::{Exposition, Format, Kind};
use publish::{Histogram, PublishClock, BUCKETS_S};

/// How long a connection may take to send its request or take the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request head read.
const MAX_REQUEST: usize = 8192;

/// Binds the endpoint's address (before anything starts, so a taken port fails
/// the start with the reason).
///
/// # Errors
/// The address cannot be bound.
pub fn bind(cfg: &control::config::MetricsConfig) -> Result<TcpListener> {
    TcpListener::bind(cfg.listen).with_context(|| format!("metrics.listen {}", cfg.listen))
}

/// A port as last read under the dataplane's lock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortRow {
    /// Its index in the workers' counters.
    pub idx: usize,
    /// Its name.
    pub name: String,
    /// Link up.
    pub link_up: bool,
    /// False for a port of the desired state whose device could not be
    /// opened; such a row has no counters.
    pub plugged: bool,
    /// DPDK's `imissed`, `ierrors`, `oerrors`, `rx_nombuf`.
    pub dpdk: [u64; 4],
}

/// What the endpoint reads.
pub struct Sources {
    /// The workers' counters.
    pub workers: Vec<WorkerBeatSource>,
    /// The ports (read with `try_lock`).
    pub dataplane: Arc<Mutex<Dataplane>>,
    /// The published snapshot, for its generation.
    pub snapshot: Arc<SnapshotCell<Pipeline>>,
    /// The packet pool, for the buffers in use.
    pub pool: Arc<Mempool>,
    /// Publish latency.
    pub publish: Arc<PublishClock>,
    /// When the daemon started.
    pub started: SystemTime,
    /// The ports as last read.
    pub ports: Mutex<Vec<PortRow>>,
}

/// Everything one page shows, as plain numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// Start time, seconds since the epoch.
    pub start_time_s: f64,
    /// The published generation.
    pub generation: u64,
    /// Buffers in use.
    pub mbufs_in_use: u64,
    /// The ports.
    pub ports: Vec<PortRow>,
    /// Per worker: index, core, counters.
    pub workers: Vec<(usize, usize, StatsSnapshot)>,
    /// The workers' counters summed.
    pub totals: StatsTotals,
    /// Publish latency.
    pub publish: Histogram,
}

impl Sources {
    /// Reads every value once.
    pub fn view(&self) -> View {
        let snaps: Vec<StatsSnapshot> = self.workers.iter().map(|(_, _, s)| s.snapshot()).collect();
        let totals = StatsTotals::sum(&snaps);
        let mut cached = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = match self.dataplane.try_lock() {
            Ok(dp) => Some(dp),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(dp) = fresh {
            *cached = dp
                .ports()
                .map(|(idx, rt)| {
                    let d = rt.port.stats();
                    PortRow {
                        idx: idx.index(),
                        name: rt.config.name.clone(),
                        link_up: rt.port.link().up,
                        plugged: true,
                        dpdk: [d.imissed, d.ierrors, d.oerrors, d.rx_nombuf],
                    }
                })
                .chain(dp.unplugged().map(|(pc, _)| PortRow {
                    idx: usize::MAX,
                    name: pc.name.clone(),
                    link_up: false,
                    plugged: false,
                    dpdk: [0; 4],
                }))
                .collect();
        }
        View {
            start_time_s: self
                .started
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            generation: self.snapshot.generation(),
            mbufs_in_use: u64::from(self.pool.in_use_count()),
            ports: cached.clone(),
            workers: self
                .workers
                .iter()
                .zip(snaps)
                .map(|((i, core, _), s)| (*i, *core, s))
                .collect(),
            totals,
            publish: self.publish.histogram(),
        }
    }
}

/// The page for `v`.
pub fn render(v: &View, format: Format) -> String {
    let mut e = Exposition::new(format);
    e.family(
        "vswitch_build_info",
        Kind::Gauge,
        "Always 1; the version in a label.",
    );
    e.sample(
        "vswitch_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    e.family(
        "vswitch_start_time_seconds",
        Kind::Gauge,
        "When vswitchd started, in seconds since the Unix epoch.",
    );
    e.sample("vswitch_start_time_seconds", &[], v.start_time_s);
    e.family(
        "vswitch_snapshot_generation",
        Kind::Gauge,
        "Generation of the published pipeline snapshot.",
    );
    e.sample("vswitch_snapshot_generation", &[], v.generation);
    e.family(
        "vswitch_mbufs_in_use",
        Kind::Gauge,
        "Packet buffers of the pool in use.",
    );
    e.sample("vswitch_mbufs_in_use", &[], v.mbufs_in_use);
    e.family(
        "vswitch_generated_packets_total",
        Kind::Counter,
        "Packets the switch made itself (ARP/ND requests, ICMP errors).",
    );
    e.sample("vswitch_generated_packets_total", &[], v.totals.generated);
    e.family(
        "vswitch_drops_total",
        Kind::Counter,
        "Packets dropped, by reason.",
    );
    for (r, n) in v.totals.drops_by_reason() {
        e.sample("vswitch_drops_total", &[("reason", r.as_str())], n);
    }

    let port = |p: &PortRow| v.totals.ports.get(p.idx).copied().unwrap_or_default();
    type PortValue = fn(&dataplane::PortStats, &PortRow) -> u64;
    let port_families: [(&str, Kind, &str, PortValue); 10] = [
        (
            "vswitch_port_rx_packets_total",
            Kind::Counter,
            "Packets received on the port.",
            |s, _| s.rx_packets,
        ),
        (
            "vswitch_port_rx_bytes_total",
            Kind::Counter,
            "Bytes received on the port.",
            |s, _| s.rx_bytes,
        ),
        (
            "vswitch_port_tx_packets_total",
            Kind::Counter,
            "Packets the port accepted for transmission.",
            |s, _| s.tx_packets,
        ),
        (
            "vswitch_port_tx_bytes_total",
            Kind::Counter,
            "Bytes the port accepted for transmission.",
            |s, _| s.tx_bytes,
        ),
        (
            "vswitch_port_dropped_packets_total",
            Kind::Counter,
            "Drops charged to the port, all reasons.",
            |s, _| s.total_drops(),
        ),
        (
            "vswitch_port_rx_missed_packets_total",
            Kind::Counter,
            "Packets the device dropped for want of rx descriptors (DPDK imissed).",
            |_, p| p.dpdk[0],
        ),
        (
            "vswitch_port_rx_errors_total",
            Kind::Counter,
            "Erroneous received packets (DPDK ierrors).",
            |_, p| p.dpdk[1],
        ),
        (
            "vswitch_port_tx_errors_total",
            Kind::Counter,
            "Failed transmissions (DPDK oerrors).",
            |_, p| p.dpdk[2],
        ),
        (
            "vswitch_port_rx_nombuf_total",
            Kind::Counter,
            "Receive buffer allocation failures (DPDK rx_nombuf).",
            |_, p| p.dpdk[3],
        ),
        (
            "vswitch_port_link_up",
            Kind::Gauge,
            "1 when the port's link is up.",
            |_, p| u64::from(p.link_up),
        ),
    ];
    for (name, kind, help, value) in port_families {
        e.family(name, kind, help);
        // A port that is not plugged has no counters: it shows in the link
        // and plugged gauges only.
        let gauge = kind == Kind::Gauge;
        for p in v.ports.iter().filter(|p| p.plugged || gauge) {
            e.sample(name, &[("port", &p.name)], value(&port(p), p));
        }
    }
    e.family(
        "vswitch_port_plugged",
        Kind::Gauge,
        "1 when the port's device is open and forwarding; 0 for a port of the desired state whose device is gone (tried again until it is back).",
    );
    for p in &v.ports {
        e.sample(
            "vswitch_port_plugged",
            &[("port", &p.name)],
            u64::from(p.plugged),
        );
    }

    e.family(
        "vswitch_worker_poll_rounds_total",
        Kind::Counter,
        "Worker poll rounds: busy (received packets) or idle (received none, then backed off).",
    );
    for (i, core, s) in &v.workers {
        let (i, core) = (i.to_string(), core.to_string());
        for (state, n) in [("busy", s.busy_polls), ("idle", s.idle_polls)] {
            e.sample(
                "vswitch_worker_poll_rounds_total",
                &[("worker", &i), ("core", &core), ("state", state)],
                n,
            );
        }
    }
    e.family(
        "vswitch_worker_seconds_total",
        Kind::Counter,
        "Worker time: busy (rounds that received packets) or idle (empty rounds and sleeps).",
    );
    for (i, core, s) in &v.workers {
        let (i, core) = (i.to_string(), core.to_string());
        for (state, ns) in [("busy", s.busy_ns), ("idle", s.idle_ns)] {
            e.sample(
                "vswitch_worker_seconds_total",
                &[("worker", &i), ("core", &core), ("state", state)],
                ns as f64 / 1e9,
            );
        }
    }
    e.family(
        "vswitch_worker_flow_table_total",
        Kind::Counter,
        "Worker flow table events: packets that hit or missed, entries installed, evicted from a full bucket, not installed while a low hit rate throttles admission, sent past the table to the stages while throttled, revalidated after a snapshot swap.",
    );
    for (i, core, s) in &v.workers {
        let (i, core) = (i.to_string(), core.to_string());
        let f = &s.flows;
        for (event, n) in [
            ("hit", f.hits),
            ("miss", f.misses),
            ("install", f.installs),
            ("eviction", f.evictions),
            ("skipped_install", f.skipped_installs),
            ("bypassed", f.bypassed),
            ("revalidation", f.revalidations),
        ] {
            e.sample(
                "vswitch_worker_flow_table_total",
                &[("worker", &i), ("core", &core), ("event", event)],
                n,
            );
        }
    }
    e.family(
        "vswitch_worker_conntrack_total",
        Kind::Counter,
        "Worker conntrack events: connections created, expired, early-dropped to make room; packets refused (invalid, out of window, table full) and handed to another worker.",
    );
    for (i, core, s) in &v.workers {
        let (i, core) = (i.to_string(), core.to_string());
        let c = &s.ct;
        for (event, n) in [
            ("created", c.created),
            ("expired", c.expired),
            ("early_drop", c.early_drops),
            ("invalid", c.invalid),
            ("handed_off", c.handed_off),
        ] {
            e.sample(
                "vswitch_worker_conntrack_total",
                &[("worker", &i), ("core", &core), ("event", event)],
                n,
            );
        }
    }
    e.family(
        "vswitch_worker_lb_new_connections_total",
        Kind::Counter,
        "New connections the LB stage sent to a service's backend (its drops are under vswitch_drops_total's lb_ reasons).",
    );
    for (i, core, s) in &v.workers {
        let (i, core) = (i.to_string(), core.to_string());
        e.sample(
            "vswitch_worker_lb_new_connections_total",
            &[("worker", &i), ("core", &core)],
            s.ct.lb_new,
        );
    }
    type WorkerValue = fn(&StatsSnapshot) -> u64;
    let worker_families: [(&str, Kind, &str, WorkerValue); 8] = [
        (
            "vswitch_worker_rx_packets_total",
            Kind::Counter,
            "Packets the worker received.",
            |s| s.rx_packets(),
        ),
        (
            "vswitch_worker_tx_packets_total",
            Kind::Counter,
            "Packets the worker sent.",
            |s| s.tx_packets(),
        ),
        (
            "vswitch_worker_snapshot_generation",
            Kind::Gauge,
            "Generation of the snapshot the worker runs.",
            |s| s.snapshot_generation,
        ),
        (
            "vswitch_worker_tx_lock_contended_total",
            Kind::Counter,
            "Tx bursts on a queue shared with other workers that found it held.",
            |s| s.tx_lock_contended,
        ),
        (
            "vswitch_worker_flow_table_entries",
            Kind::Gauge,
            "Entries in the worker's flow table.",
            |s| s.flows.entries,
        ),
        (
            "vswitch_worker_flow_table_capacity",
            Kind::Gauge,
            "Entries the worker's flow table can hold.",
            |s| s.flows.capacity,
        ),
        (
            "vswitch_worker_conntrack_entries",
            Kind::Gauge,
            "Connections in the worker's conntrack shard.",
            |s| s.ct.entries,
        ),
        (
            "vswitch_worker_conntrack_capacity",
            Kind::Gauge,
            "Connections the worker's conntrack shard can hold (0 until a network is tracked).",
            |s| s.ct.capacity,
        ),
    ];
    for (name, kind, help, value) in worker_families {
        e.family(name, kind, help);
        for (i, core, s) in &v.workers {
            e.sample(
                name,
                &[("worker", &i.to_string()), ("core", &core.to_string())],
                value(s),
            );
        }
    }

    e.family(
        "vswitch_snapshot_publish_latency_seconds",
        Kind::Histogram,
        "From a write's snapshot being published to every worker running it.",
    );
    e.histogram(
        "vswitch_snapshot_publish_latency_seconds",
        &BUCKETS_S,
        &v.publish.counts,
        v.publish.sum_s,
    );
    e.family(
        "vswitch_snapshot_publish_unsettled_total",
        Kind::Counter,
        "Publishes forgotten before every worker ran them (a stuck worker under many writes).",
    );
    e.sample(
        "vswitch_snapshot_publish_unsettled_total",
        &[],
        v.publish.forgotten,
    );
    e.finish()
}

/// The serving thread; stops it on drop.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Serves `listener` from a thread of its own.
///
/// # Errors
/// No thread could be spawned.
pub fn serve(listener: TcpListener, sources: Sources) -> Result<MetricsServer> {
    let mut addr = listener.local_addr().context("metrics listener")?;
    info!(%addr, "metrics endpoint listening (GET /metrics)");
    // To wake the accept at shutdown: a wildcard address is reached on loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("vsw-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                match conn {
                    Ok(s) => {
                        if let Err(e) = answer(s, &sources) {
                            tracing::debug!("metrics connection: {e}");
                        }
                    }
                    Err(e) => {
                        warn!("metrics accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .context("spawn metrics thread")?;
    Ok(MetricsServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread blocks in accept: one connection wakes it to see the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (or `HEAD`: `true`).
    Metrics {
        /// Headers only.
        head: bool,
        /// OpenMetrics when the client's `Accept` offers it (as Prometheus
        /// does), else the Prometheus text format.
        format: Format,
    },
    /// Another path.
    NotFound,
    /// Another method.
    BadMethod,
    /// Not HTTP.
    Bad,
    /// A head longer than [`MAX_REQUEST`] bytes.
    TooLarge,
}

/// Classifies a request head: its first line, and its `Accept` header.
pub fn classify(request: &str) -> Request {
    let line = request.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Request::Bad;
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::BadMethod,
    };
    match target.split('?').next() {
        Some("/metrics") => Request::Metrics {
            head,
            format: negotiate(request),
        },
        _ => Request::NotFound,
    }
}

/// OpenMetrics when an `Accept` header offers `application/openmetrics-text`
/// with a weight above zero (Prometheus asks for it first), else the
/// Prometheus text format, which every scraper reads.
fn negotiate(request: &str) -> Format {
    let offers_openmetrics = request
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .flat_map(|(_, value)| value.split(','))
        .any(|range| {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or("");
            let zero = params.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !zero
        });
    if offers_openmetrics {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

fn answer(mut s: TcpStream, sources: &Sources) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let complete = buf.windows(4).any(|w| w == b"\r\n\r\n");
    let request = if !complete && buf.len() >= MAX_REQUEST {
        Request::TooLarge
    } else {
        classify(&String::from_utf8_lossy(&buf))
    };
    let (status, ctype, body, head) = match request {
        Request::Metrics { head, format } => (
            "200 OK",
            format.content_type(),
            render(&sources.view(), format),
            head,
        ),
        Request::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "the counters are at /metrics\n".to_owned(),
            false,
        ),
        Request::BadMethod => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET or HEAD only\n".to_owned(),
            false,
        ),
        Request::TooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            format!("a request head is at most {MAX_REQUEST} bytes\n"),
            false,
        ),
        Request::Bad => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "not an HTTP/1 request\n".to_owned(),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head {
        out.push_str(&body);
    }
    s.write_all(out.as_bytes())?;
    s.flush()?;
    // Closing with unread bytes would reset the connection and could take the
    // answer with it: read what the client still sends (a bounded amount).
    s.shutdown(std::net::Shutdown::Write)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::DropReason;

    #[test]
    fn requests_are_classified_by_method_and_path() {
        assert_eq!(
            classify("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics {
                head: false,
                format: Format::Prometheus
            }
        );
        assert_eq!(
            classify("GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics {
                head: false,
                format: Format::Prometheus
            }
        );
        assert_eq!(
            classify("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Request::Metrics {
                head: true,
                format: Format::Prometheus
            }
        );
        // What Prometheus sends; a refusal by weight; a header spelt otherwise.
        let om = |accept: &str| match classify(&format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}\r\n\r\n"
        )) {
            Request::Metrics { format, .. } => format,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            om("Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::OpenMetrics
        );
        assert_eq!(
            om("accept: text/plain, application/openmetrics-text; q=0"),
            Format::Prometheus
        );
        assert_eq!(om("Accept: text/plain;version=0.0.4"), Format::Prometheus);
        assert_eq!(
            om("ACCEPT:application/OpenMetrics-Text"),
            Format::OpenMetrics
        );
        assert_eq!(classify("GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(
            classify("POST /metrics HTTP/1.1\r\n\r\n"),
            Request::BadMethod
        );
        for bad in [
            "",
            "GET",
            "GET /metrics",
            "GET /metrics SPDY/3",
            "\u{0}\u{1}",
        ] {
            assert_eq!(classify(bad), Request::Bad, "{bad:?}");
        }
    }

    #[test]
    fn the_page_has_every_family_once_and_ports_by_name() {
        let mut totals = StatsTotals {
            ports: vec![dataplane::PortStats {
                rx_packets: 7,
                rx_bytes: 700,
                tx_packets: 5,
                tx_bytes: 500,
                drops: [0; DropReason::COUNT],
            }],
            ..StatsTotals::default()
        };
        totals.drops[DropReason::ALL[3].index()] = 2;
        let v = View {
            start_time_s: 1.5,
            generation: 4,
            mbufs_in_use: 9,
            ports: vec![
                PortRow {
                    idx: 0,
                    name: "pod1".into(),
                    link_up: true,
                    plugged: true,
                    dpdk: [1, 2, 3, 4],
                },
                PortRow {
                    idx: usize::MAX,
                    name: "gone".into(),
                    link_up: false,
                    plugged: false,
                    dpdk: [0; 4],
                },
            ],
            workers: vec![],
            totals,
            publish: Histogram::default(),
        };
        let page = render(&v, Format::Prometheus);
        assert!(page.contains("vswitch_port_rx_packets_total{port=\"pod1\"} 7\n"));
        assert!(page.contains("vswitch_port_tx_bytes_total{port=\"pod1\"} 500\n"));
        assert!(page.contains("vswitch_port_rx_nombuf_total{port=\"pod1\"} 4\n"));
        // A port that is not plugged: in the gauges, with no counters.
        assert!(page.contains("vswitch_port_plugged{port=\"pod1\"} 1\n"));
        assert!(page.contains("vswitch_port_plugged{port=\"gone\"} 0\n"));
        assert!(page.contains("vswitch_port_link_up{port=\"gone\"} 0\n"));
        assert!(!page.contains("vswitch_port_rx_packets_total{port=\"gone\"}"));
        assert!(page.contains(&format!(
            "vswitch_drops_total{{reason=\"{}\"}} 2\n",
            DropReason::ALL[3].as_str()
        )));
        assert!(page.contains("vswitch_snapshot_publish_latency_seconds_count 0\n"));
        let mut types: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let n = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), n, "a family twice");
        for t in &types {
            assert!(t.starts_with("vswitch_"), "{t}");
        }
    }
}
