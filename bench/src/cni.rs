//! `vswitch-bench cni`: how long a pod waits, from the runtime's ADD to the
//! first packet through the switch, measured with the real plugin against a
//! real `vswitchd`.
//!
//! The switch runs one virtual network. A peer pod is attached, then
//! `--attached` vhost-user pods (the state the new pods join: ports and
//! endpoints the switch already holds), then, one at a time, `--pods` kernel
//! pods: each in a fresh namespace, timed from the start of `vswitch-cni ADD`
//! until its first ping to the peer is answered (ARP through the switch's
//! responder, the echo and its reply forwarded), then deleted. vhost-user pods
//! are timed from ADD until the socket is ready for the pod (the ADD's return):
//! a first packet needs a DPDK process on the other side, which the kernel-pod
//! figure does not pay for either. With `--vhost-first-packet N`, N more
//! vhost-user pods are timed to their first packet with that process: a
//! `dpdk-testpmd` icmpecho pod started when the ADD returns, pinged by the
//! peer. Figures with no threshold: medians and p99.
//!
//! `--attached-kernel` kernel pods are attached too, before the timed ones,
//! each in a namespace of its own: their ports are packet sockets that every
//! poll round looks at. Debian's DPDK is built with `RTE_MAX_ETHPORTS` 32,
//! and every vhost-user pod is an ethdev: `--attached` beyond 30 is refused
//! by the switch there; kernel pods use none.
//!
//! The switch's log says how long each kernel pod's port took to open
//! (`switch_port_plug`: the socket and its rings, or the `af_packet` PMD's
//! probe for a switch that predates the `kernel` profile).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::runner::{ChildGuard, WorkDir};

/// What to measure.
#[derive(Debug, Clone)]
pub struct CniOptions {
    /// The vswitchd binary.
    pub vswitchd: PathBuf,
    /// The vswitch-cni binary.
    pub plugin: PathBuf,
    /// Where host-local is (`CNI_PATH`).
    pub cni_path: PathBuf,
    /// Kernel pods (and vhost-user pods) to time.
    pub pods: u32,
    /// vhost-user pods attached before the timed ones.
    pub attached: u32,
    /// Kernel pods attached before the timed ones.
    pub attached_kernel: u32,
    /// The worker's core.
    pub core: usize,
    /// The configuration's `cniVersion` (1.1.0 to 0.3.0).
    pub cni_version: String,
    /// vhost-user pods timed from ADD to their first packet (a testpmd pod
    /// started when the ADD returns); 0: none.
    pub vhost_first_packet: u32,
    /// dpdk-testpmd, the DPDK pod of those.
    pub testpmd: PathBuf,
}

fn config(dir: &Path, core: usize) -> String {
    format!(
        r#"
[eal]
memory_mb = 512
in_memory = true
[dataplane]
workers = [{core}]
stats_file = "{d}/stats.json"
stats_interval_ms = 1000
[control]
socket = "{d}/ctl.sock"
state_file = "{d}/state.json"
socket_dirs = ["{d}/vhost"]
[[network]]
name = "pods"
vni = 100
subnets = ["10.96.0.0/16"]
gateway_ips = ["10.96.0.1"]
gateway_mac = "02:00:00:00:aa:01"
"#,
        d = dir.display()
    )
}

struct Plugin<'a> {
    opts: &'a CniOptions,
    dir: &'a Path,
}

impl Plugin<'_> {
    fn conf(&self, mode: &str) -> Value {
        let mut c = json!({
            "cniVersion": self.opts.cni_version,
            "name": "bench",
            "type": "vswitch-cni",
            "network": "pods",
            "socket": self.dir.join("ctl.sock"),
            "mode": mode,
            "ipam": {
                "type": "host-local",
                "subnet": "10.96.0.0/16",
                "gateway": "10.96.0.1",
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.dir.join("ipam"),
            },
        });
        if mode == "vhostuser" {
            c["vhost"] = json!({"socketDir": self.dir.join("vhost")});
        }
        c
    }

    /// Runs the plugin; its result on success.
    fn call(
        &self,
        cmd: &str,
        id: &str,
        netns: &str,
        ifname: &str,
        conf: &Value,
    ) -> anyhow::Result<Value> {
        self.call_timed(cmd, id, netns, ifname, conf)
            .map(|(v, _)| v)
    }

    /// Runs the plugin with its per-phase timings on; its result and the
    /// timings (milliseconds by phase) on success.
    fn call_timed(
        &self,
        cmd: &str,
        id: &str,
        netns: &str,
        ifname: &str,
        conf: &Value,
    ) -> anyhow::Result<(Value, Value)> {
        let mut child = Command::new(&self.opts.plugin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.opts.cni_path)
            .env("VSWITCH_CNI_TIMINGS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.opts.plugin.display()))?;
        use std::io::Write;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(conf.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if !out.status.success() {
            bail!("vswitch-cni {cmd} {id}: {v}");
        }
        let timings = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find_map(|l| l.strip_prefix("vswitch-cni: timings "))
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or(Value::Null);
        Ok((v, timings))
    }
}

/// A network namespace, removed on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> anyhow::Result<Netns> {
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()?
            .success();
        if !ok {
            bail!("ip netns add {name} failed");
        }
        Ok(Netns(name))
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn first_address(result: &Value) -> anyhow::Result<String> {
    let a = result["ips"][0]["address"].as_str().context("no address")?;
    Ok(a.split('/').next().unwrap_or(a).to_owned())
}

/// `(median, p99, max)` of `v` in milliseconds.
fn summary(v: &mut [f64]) -> Value {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    json!({"n": v.len(), "median_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)})
}

/// Runs the measurement; the report as JSON.
///
/// # Errors
/// vswitchd does not start, the plugin fails, or a pod never reaches its peer.
pub fn run(opts: &CniOptions) -> anyhow::Result<Value> {
    let work = WorkDir::temp()?;
    let dir = work.path().to_path_buf();
    // The switch takes socket paths only in directories nobody but root writes.
    Command::new("chmod").arg("755").arg(&dir).status()?;
    let cfg = dir.join("vswitchd.toml");
    std::fs::write(&cfg, config(&dir, opts.core))?;
    let log = std::fs::File::create(dir.join("vswitchd.log"))?;
    let child = Command::new(&opts.vswitchd)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", opts.vswitchd.display()))?;
    let runtime_dir = PathBuf::from(format!("/var/run/dpdk/vswitchd{}", child.id()));
    let mut guard = ChildGuard::new(child, "TERM").removing(runtime_dir);
    let p = Plugin { opts, dir: &dir };
    let mut report = measure(&p, &mut guard);
    guard.stop();
    if let Ok(r) = &mut report {
        let log = std::fs::read_to_string(dir.join("vswitchd.log")).unwrap_or_default();
        r["switch_port_plug"] = plug_phases(&log);
    }
    report.map_err(|e| {
        let tail = std::fs::read_to_string(dir.join("vswitchd.log")).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        e.context(format!("vswitchd log: {}", tail.join(" | ")))
    })
}

fn measure(p: &Plugin<'_>, guard: &mut ChildGuard) -> anyhow::Result<Value> {
    let tag = format!("vb{}", std::process::id() % 100_000);
    let kconf = p.conf("kernel");
    let vconf = p.conf("vhostuser");
    // Ready when STATUS says so (the API answers and the workers are serving).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = kconf.clone();
    status["cniVersion"] = "1.1.0".into();
    while p.call("STATUS", "-", "", "eth0", &status).is_err() {
        if guard.exited() || Instant::now() > deadline {
            bail!("vswitchd did not become ready");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let peer_ns = Netns::new(format!("{tag}peer"))?;
    let peer = p.call(
        "ADD",
        &format!("{tag}-peer"),
        &peer_ns.path(),
        "eth0",
        &kconf,
    )?;
    let peer_ip = first_address(&peer)?;
    let mut attached = Vec::new();
    for i in 0..p.opts.attached {
        let id = format!("{tag}-bg{i}");
        p.call("ADD", &id, "/proc/self/ns/net", "vhu0", &vconf)?;
        attached.push(id);
    }
    let t_attach = Instant::now();
    let mut attached_kernel = Vec::new();
    for i in 0..p.opts.attached_kernel {
        let ns = Netns::new(format!("{tag}bk{i}"))?;
        let id = format!("{tag}-bk{i}");
        let r = p.call("ADD", &id, &ns.path(), "eth0", &kconf)?;
        attached_kernel.push((ns, id, r));
    }
    let attach_s = t_attach.elapsed().as_secs_f64();

    let mut kernel_add = Vec::new();
    let mut kernel_first = Vec::new();
    let mut kernel_after_add = Vec::new();
    let mut phases: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for i in 0..p.opts.pods {
        let ns = Netns::new(format!("{tag}k{i}"))?;
        let id = format!("{tag}-k{i}");
        let t0 = Instant::now();
        let (r, timings) = p.call_timed("ADD", &id, &ns.path(), "eth0", &kconf)?;
        let added = t0.elapsed();
        for (k, v) in timings.as_object().into_iter().flatten() {
            if let Some(ms) = v.as_f64() {
                phases.entry(k.clone()).or_default().push(ms);
            }
        }
        let mut answered = false;
        for _ in 0..50 {
            let ok = Command::new("ip")
                .args([
                    "netns", "exec", &ns.0, "ping", "-c", "1", "-W", "1", &peer_ip,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            if ok {
                answered = true;
                break;
            }
        }
        let first = t0.elapsed();
        p.call("DEL", &id, &ns.path(), "eth0", &with_prev(&kconf, &r))?;
        if !answered {
            bail!("pod {i} never reached its peer");
        }
        kernel_add.push(added.as_secs_f64() * 1e3);
        kernel_first.push(first.as_secs_f64() * 1e3);
        kernel_after_add.push((first - added).as_secs_f64() * 1e3);
    }

    let mut vhost_add = Vec::new();
    for i in 0..p.opts.pods {
        let id = format!("{tag}-v{i}");
        let t0 = Instant::now();
        let r = p.call("ADD", &id, "/proc/self/ns/net", "vhu1", &vconf)?;
        vhost_add.push(t0.elapsed().as_secs_f64() * 1e3);
        p.call(
            "DEL",
            &id,
            "/proc/self/ns/net",
            "vhu1",
            &with_prev(&vconf, &r),
        )?;
    }

    let (vhost_first, vhost_after_add, vhost_after_ready) =
        vhost_first_packets(p, &vconf, &peer_ns, &tag)?;

    for id in &attached {
        p.call("DEL", id, "/proc/self/ns/net", "vhu0", &vconf)?;
    }
    let switch_rss_kib = switch_rss_kib(guard.id());
    for (ns, id, r) in &attached_kernel {
        p.call("DEL", id, &ns.path(), "eth0", &with_prev(&kconf, r))?;
    }
    drop(attached_kernel);
    p.call(
        "DEL",
        &format!("{tag}-peer"),
        &peer_ns.path(),
        "eth0",
        &kconf,
    )?;
    Ok(json!({
        "cni_version": p.opts.cni_version,
        "pods": p.opts.pods,
        "attached": p.opts.attached,
        "attached_kernel": p.opts.attached_kernel,
        "attached_kernel_seconds": attach_s,
        "switch_rss_kib": switch_rss_kib,
        "kernel_add": summary(&mut kernel_add),
        "kernel_add_to_first_packet": summary(&mut kernel_first),
        "kernel_add_return_to_first_packet": summary(&mut kernel_after_add),
        "kernel_add_phases": phases
            .iter_mut()
            .map(|(k, v)| (k.clone(), summary(v)))
            .collect::<serde_json::Map<_, _>>(),
        "vhostuser_add_to_socket_ready": summary(&mut vhost_add),
        "vhostuser_add_to_first_packet": opt_summary(vhost_first),
        "vhostuser_add_return_to_first_packet": opt_summary(vhost_after_add),
        "vhostuser_pod_ready_to_first_packet": opt_summary(vhost_after_ready),
    }))
}

/// [`summary`], or null for no figures.
fn opt_summary(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        summary(&mut v)
    }
}

/// `opts.vhost_first_packet` vhost-user pods, one at a time: each ADDed, then
/// a DPDK pod (`dpdk-testpmd` icmpecho on a `virtio_user` port of the ADD's
/// socket, on the CPU the worker does not use) started as a runtime would
/// start the pod once the ADD returns, and the peer pings the pod's address
/// every few milliseconds until it answers (the switch answers the peer's
/// ARP for it). Milliseconds to the first answer from the start of ADD, from
/// its return (the pod's own start-up, EAL and all, is most of that) and from
/// the pod's ports being up (testpmd's link check done: connected to the
/// switch).
fn vhost_first_packets(
    p: &Plugin<'_>,
    vconf: &Value,
    peer: &Netns,
    tag: &str,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (mut first, mut after_add, mut after_ready) = (Vec::new(), Vec::new(), Vec::new());
    let cpu = usize::from(p.opts.core == 0);
    for i in 0..p.opts.vhost_first_packet {
        let id = format!("{tag}-f{i}");
        let t0 = Instant::now();
        let r = p.call("ADD", &id, "/proc/self/ns/net", "vhu2", vconf)?;
        let added = t0.elapsed();
        let sock = r["interfaces"][0]["socketPath"]
            .as_str()
            .context("no socketPath in the ADD's result")?
            .to_owned();
        let mac = r["interfaces"][0]["mac"]
            .as_str()
            .context("no mac in the ADD's result")?
            .to_owned();
        let ip = first_address(&r)?;
        let prefix = format!("{tag}f{i}");
        let args: Vec<String> = vec![
            format!("--lcores=0@{cpu},1@{cpu}"),
            "--no-huge".into(),
            "--no-shconf".into(),
            "--no-telemetry".into(),
            "-m".into(),
            "256".into(),
            "--no-pci".into(),
            format!("--file-prefix={prefix}"),
            format!("--vdev=net_virtio_user0,path={sock},mac={mac}"),
            "--".into(),
            "-i".into(),
            "--forward-mode=icmpecho".into(),
            "--nb-cores=1".into(),
            "--total-num-mbufs=4096".into(),
        ];
        let mut pod = crate::vhost::Pod::start(&p.opts.testpmd, &args, &prefix, 1, 0)?;
        pod.wait_ready(Duration::from_secs(30))?;
        let ready = t0.elapsed();
        pod.command("start")?;
        let mut answered = false;
        while t0.elapsed() < Duration::from_secs(30) {
            let ok = Command::new("ip")
                .args([
                    "netns", "exec", &peer.0, "ping", "-c", "1", "-W", "0.02", "-q", &ip,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            if ok {
                answered = true;
                break;
            }
        }
        let t = t0.elapsed();
        drop(pod);
        p.call(
            "DEL",
            &id,
            "/proc/self/ns/net",
            "vhu2",
            &with_prev(vconf, &r),
        )?;
        if !answered {
            bail!("vhost-user pod {i} never answered its peer");
        }
        first.push(t.as_secs_f64() * 1e3);
        after_add.push((t - added).as_secs_f64() * 1e3);
        after_ready.push((t - ready).as_secs_f64() * 1e3);
    }
    Ok((first, after_add, after_ready))
}

/// The switch's resident memory (`VmRSS`), KiB; 0 if unknown.
fn switch_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// What the switch's log says of each kernel pod's port it plugged: the
/// socket's opening (or the `af_packet` device probe) and the rest of its
/// set-up, in milliseconds.
fn plug_phases(log: &str) -> Value {
    let field = |line: &str, key: &str| -> Option<f64> {
        let v = line.split(&format!(" {key}=")).nth(1)?;
        v.split_whitespace().next()?.parse::<f64>().ok()
    };
    let (mut probe, mut setup) = (Vec::new(), Vec::new());
    for l in log.lines().filter(|l| {
        l.contains("port up") && (l.contains("net_af_packet") || l.contains("packet_socket"))
    }) {
        if let (Some(p), Some(s)) = (field(l, "probe_us"), field(l, "setup_us")) {
            probe.push(p / 1e3);
            setup.push(s / 1e3);
        }
    }
    if probe.is_empty() {
        return Value::Null;
    }
    json!({"probe": summary(&mut probe), "configure_start": summary(&mut setup)})
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}
