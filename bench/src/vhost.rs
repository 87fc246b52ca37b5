//! `vswitch-bench vhost`: a stream between two vhost-user pods through
//! vswitchd (one worker, client-mode `vhost_user` ports), through OVS-DPDK
//! (`dpdkvhostuserclient` ports, one PMD thread) and through `dpdk-testpmd`
//! io between two `net_vhost` client ports (the floor), on the same pods,
//! frames and cores, in paired rounds (issue #27); and how long client-mode
//! ports take to pass traffic again after `vswitchd` restarts.
//!
//! # The pods: one testpmd, two `virtio_user` ports, frames bouncing between them
//!
//! Each pod is a `virtio_user` port serving its vhost-user socket (the pod
//! side of a client-mode port). On a two-CPU machine the switch's forwarding
//! core needs one CPU to itself, which leaves one for the pods. Two busy-polling
//! pod processes on one CPU run in turns of the scheduler's time slice
//! (milliseconds), while a vhost ring holds 1024 frames (about 0.1 ms of
//! traffic): a `txonly` pod and an `rxonly` pod would take turns, the switch
//! would drop what arrives for the pod that is not running, and the figure
//! would measure the scheduler. So both pods' ports live in one testpmd
//! process with one forwarding lcore, in `macswap` mode with the `loop` port
//! topology: a frame from pod A to pod B crosses the switch, pod B swaps its
//! MACs and sends it back from its own port (source MAC B, destination A),
//! it crosses the switch again, and so on. `start tx_first N` puts N bursts of
//! 32 frames per port in flight (UDP, 64 bytes), enough to keep the switch's
//! core busy. Every frame the switch delivers is a pod-to-pod frame with the
//! sender's own source MAC, so vswitchd forwards it by its network's endpoint
//! table (as it forwards CNI pods) and OVS by one `dl_dst` rule per direction.
//! The rate is what the pods receive, per second, on both ports together:
//! the same counter, read the same way, for every forwarder.
//!
//! # Pinning
//!
//! Stated by [`Pinning::describe`] in every report and the same for all
//! three forwarders: the switch's forwarding core (vswitchd's worker, OVS's
//! PMD thread, the floor testpmd's forwarding lcore) on `--switch-cpu`; its
//! control threads (vswitchd's main thread, OVS's `dpdk-lcore-mask`, the floor
//! testpmd's main lcore) and both pods (their main and forwarding lcores) on
//! `--pod-cpu`. Cycles per packet are TSC Hz over the rate, as in `compare`:
//! the switch's core busy-polls, so its every cycle goes to the stream (on a
//! machine where other work shares that core, the figure includes it).
//!
//! # Restart
//!
//! With `--restarts N`, a `txonly` pod on socket A and an `rxonly` pod on
//! socket B (two processes: only the first packet matters, not the rate) and
//! vswitchd between them; N times, vswitchd is stopped (SIGTERM), the receiving
//! pod's counter is seen to stand still, and vswitchd is started again on the
//! same configuration: the time from its `exec` to the pod's counter moving
//! again, polled every 2 ms. Neither pod does anything.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::ab::AbRounds;
use crate::compare::{cycles_per_packet, median, round, OVS_NOT_INSTALLED};
use crate::runner::{tsc_hz, ChildGuard};

/// Pod A's MAC (OpenFlow port 1, vswitchd port `poda`).
pub const MAC_A: &str = "02:00:00:00:00:0a";
/// Pod B's MAC (OpenFlow port 2, vswitchd port `podb`).
pub const MAC_B: &str = "02:00:00:00:00:0b";
/// Pod A's address.
pub const IP_A: &str = "10.96.0.10";
/// Pod B's address.
pub const IP_B: &str = "10.96.0.11";

/// How long a switch or a pod gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Where every thread runs: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinning {
    /// The switch's forwarding core.
    pub switch: usize,
    /// Both pods, and the switch's control threads.
    pub pods: usize,
}

impl Pinning {
    /// The pinning, refused when the switch's core is the pods' (then the
    /// switch and the pods would take turns and nothing would be measured).
    ///
    /// # Errors
    /// If the two CPUs are the same.
    pub fn new(switch: usize, pods: usize) -> anyhow::Result<Self> {
        if switch == pods {
            bail!("--switch-cpu and --pod-cpu must differ (both {switch})");
        }
        Ok(Self { switch, pods })
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        format!(
            "switch forwarding core (vswitchd worker, OVS PMD, floor testpmd lcore) on CPU {}; \
             switch control threads and both pods (one testpmd, main and forwarding lcores) on CPU {}",
            self.switch, self.pods
        )
    }
}

/// What one measurement sets up: sockets, sizes, placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Where the sockets, configuration and logs go.
    pub dir: PathBuf,
    /// Placement.
    pub pinning: Pinning,
    /// Descriptors per virtqueue of the pods.
    pub queue_size: u16,
    /// Bursts of 32 frames put in flight per port.
    pub bursts: u32,
    /// The niceness every measured process (pods and switch) runs at: below
    /// 0 they get most of their CPUs from other work sharing the machine
    /// (see [`niced`]).
    pub nice: i32,
}

/// `program` started at `nice`, or directly at 0. With the kernel's
/// autogroups (`sched_autogroup_enabled`) a niceness only weighs against the
/// processes of the same session, so the program gets a session of its own
/// (`setsid`) and [`prioritise`] gives that session's group the niceness
/// too; `nice -n` covers kernels without autogroups. Both exec the program:
/// the child's PID is the program's.
pub fn niced(nice: i32, program: &Path) -> Command {
    if nice == 0 {
        return Command::new(program);
    }
    let mut c = Command::new("setsid");
    c.arg("nice").arg("-n").arg(nice.to_string()).arg(program);
    c
}

/// The session ID in a `/proc/<pid>/stat` line (the fourth field after the
/// command's closing parenthesis).
pub fn session_of(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Gives the autogroup of process `pid` the niceness `nice` once the process
/// leads a session of its own (`setsid` has run: before that its group is
/// this program's); nothing at 0 or without autogroups.
pub fn prioritise(pid: u32, nice: i32) {
    if nice == 0 {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if session_of(&stat) == Some(pid) {
            let _ = std::fs::write(format!("/proc/{pid}/autogroup"), nice.to_string());
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Layout {
    /// Pod A's socket.
    pub fn sock_a(&self) -> PathBuf {
        self.dir.join("a.sock")
    }

    /// Pod B's socket.
    pub fn sock_b(&self) -> PathBuf {
        self.dir.join("b.sock")
    }

    fn virtio_user(&self, index: u32, sock: &Path, mac: &str) -> String {
        format!(
            "--vdev=net_virtio_user{index},path={},server=1,mac={mac},queue_size={}",
            sock.display(),
            self.queue_size
        )
    }

    fn eal(&self, prefix: &str, main: usize, fwd: usize, memory_mb: u32) -> Vec<String> {
        vec![
            format!("--lcores=0@{main},1@{fwd}"),
            "--no-huge".into(),
            "--no-shconf".into(),
            "--no-telemetry".into(),
            "-m".into(),
            memory_mb.to_string(),
            "--no-pci".into(),
            format!("--file-prefix={prefix}"),
        ]
    }

    /// The pods' testpmd: both ports in one process, `macswap` in a `loop`
    /// topology, interactive (driven on its prompt).
    pub fn pods_args(&self, prefix: &str) -> Vec<String> {
        let p = self.pinning.pods;
        let mut a = self.eal(prefix, p, p, 512);
        a.push(self.virtio_user(0, &self.sock_a(), MAC_A));
        a.push(self.virtio_user(1, &self.sock_b(), MAC_B));
        a.extend(
            [
                "--",
                "-i",
                "--forward-mode=macswap",
                "--port-topology=loop",
                "--nb-cores=1",
                "--total-num-mbufs=16384",
            ]
            .map(String::from),
        );
        a.push(format!("--eth-peer=0,{MAC_B}"));
        a.push(format!("--eth-peer=1,{MAC_A}"));
        a.push(format!("--tx-ip={IP_A},{IP_B}"));
        a
    }

    /// One pod of the restart measurement: pod A sends (`txonly`, to B), pod
    /// B receives (`rxonly`).
    pub fn restart_pod_args(&self, prefix: &str, sender: bool) -> Vec<String> {
        let p = self.pinning.pods;
        let mut a = self.eal(prefix, p, p, 256);
        let (sock, mac) = if sender {
            (self.sock_a(), MAC_A)
        } else {
            (self.sock_b(), MAC_B)
        };
        a.push(self.virtio_user(0, &sock, mac));
        a.extend(["--", "-i", "--nb-cores=1", "--total-num-mbufs=8192"].map(String::from));
        if sender {
            a.push("--forward-mode=txonly".into());
            a.push(format!("--eth-peer=0,{MAC_B}"));
            a.push(format!("--tx-ip={IP_A},{IP_B}"));
        } else {
            a.push("--forward-mode=rxonly".into());
        }
        a
    }

    /// The floor: testpmd io between two `net_vhost` client ports, port 0 on
    /// pod A's socket and port 1 on pod B's (`paired`: what arrives on one
    /// leaves on the other).
    pub fn floor_args(&self, prefix: &str) -> Vec<String> {
        let mut a = self.eal(prefix, self.pinning.pods, self.pinning.switch, 1024);
        for (i, sock) in [self.sock_a(), self.sock_b()].iter().enumerate() {
            a.push(format!(
                "--vdev=net_vhost{i},iface={},client=1,queues=1",
                sock.display()
            ));
        }
        a.extend(
            [
                "--",
                "--forward-mode=io",
                "--nb-cores=1",
                "--stats-period=1",
                "--record-core-cycles",
                "--total-num-mbufs=16384",
            ]
            .map(String::from),
        );
        a
    }

    /// vswitchd's configuration: one busy-polling worker, both pods as
    /// client-mode `vhost_user` ports and endpoints of one network (the way
    /// `vswitch-cni` attaches pods).
    pub fn vswitchd_config(&self, stats_file: &Path) -> String {
        self.vswitchd_config_idle(stats_file, 0)
    }

    /// [`Layout::vswitchd_config`] with the worker's idle back-off bound
    /// (`idle_sleep_max_us`): under callgrind its idle polls would count.
    pub fn vswitchd_config_idle(&self, stats_file: &Path, idle_sleep_max_us: u32) -> String {
        format!(
            "[eal]\nin_memory = true\nhugepages = false\nmemory_mb = 512\nmain_core = {main}\n\n\
             [dataplane]\nworkers = [{worker}]\nidle_sleep_max_us = {idle_sleep_max_us}\nmbufs = 16383\n\
             stats_file = \"{stats}\"\nstats_interval_ms = 1000\n\n\
             [[network]]\nname = \"pods\"\nvni = 100\nsubnets = [\"10.96.0.0/16\"]\n\
             gateway_ips = [\"10.96.0.1\"]\ngateway_mac = \"02:00:00:00:aa:01\"\n\n\
             [[port]]\nname = \"poda\"\nprofile = \"vhost_user\"\npath = \"{a}\"\nclient = true\n\n\
             [[port]]\nname = \"podb\"\nprofile = \"vhost_user\"\npath = \"{b}\"\nclient = true\n\n\
             [[endpoint]]\nnetwork = \"pods\"\nmac = \"{MAC_A}\"\nips = [\"{IP_A}\"]\nport = \"poda\"\n\n\
             [[endpoint]]\nnetwork = \"pods\"\nmac = \"{MAC_B}\"\nips = [\"{IP_B}\"]\nport = \"podb\"\n",
            main = self.pinning.pods,
            worker = self.pinning.switch,
            stats = stats_file.display(),
            a = self.sock_a().display(),
            b = self.sock_b().display(),
        )
    }
}

/// OVS's rules: each pod's MAC out of its port, from the other pod's port
/// only; nothing else (no NORMAL action, `fail-mode=secure`).
pub fn ovs_flows() -> String {
    format!(
        "table=0,priority=100,in_port=1,dl_dst={MAC_B},actions=output:2\n\
         table=0,priority=100,in_port=2,dl_dst={MAC_A},actions=output:1\n\
         table=0,priority=0,actions=drop\n"
    )
}

/// One port's counters as testpmd's `show port stats` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodPort {
    /// `RX-packets`.
    pub rx: u64,
    /// `TX-packets`.
    pub tx: u64,
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    line.split(key)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reads the answer to `show port stats all` line by line: every port's
/// block ends with its `Tx-pps` line.
#[derive(Debug, Default)]
pub struct StatsParser {
    ports: Vec<PodPort>,
    current: PodPort,
}

impl StatsParser {
    /// Takes one line; true once `ports` blocks are complete.
    pub fn feed(&mut self, line: &str, ports: usize) -> bool {
        if let Some(n) = number_after(line, "RX-packets:") {
            self.current.rx = n;
        }
        if let Some(n) = number_after(line, "TX-packets:") {
            self.current.tx = n;
        }
        if line.contains("Tx-pps:") {
            self.ports.push(std::mem::take(&mut self.current));
        }
        self.ports.len() >= ports
    }

    /// The ports read.
    pub fn ports(self) -> Vec<PodPort> {
        self.ports
    }
}

/// A testpmd pod driven on its interactive prompt. Its stdout is line
/// buffered (`stdbuf -oL`: testpmd's stdio would otherwise hold the answers
/// in a pipe's block buffer) and read by a thread. Stopped on drop: `quit`,
/// stdin closed, SIGKILL by PID after 10 s; its EAL runtime directory removed.
pub struct Pod {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    prefix: String,
    ports: usize,
}

impl Pod {
    /// Starts `testpmd` with `args` (its EAL prefix `prefix`, `ports` ports)
    /// at niceness `nice`.
    ///
    /// # Errors
    /// If it cannot be started.
    pub fn start(
        testpmd: &Path,
        args: &[String],
        prefix: &str,
        ports: usize,
        nice: i32,
    ) -> anyhow::Result<Pod> {
        let mut child = niced(nice, Path::new("stdbuf"))
            .arg("-oL")
            .arg(testpmd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", testpmd.display()))?;
        prioritise(child.id(), nice);
        let stdout = child.stdout.take().context("testpmd's stdout")?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Pod {
            child: Some(child),
            stdin,
            lines: rx,
            prefix: prefix.to_owned(),
            ports,
        })
    }

    /// Types `line` at the prompt.
    ///
    /// # Errors
    /// If testpmd is gone.
    pub fn command(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("testpmd's stdin is closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .context("testpmd quit")
    }

    /// Waits until the ports are up: testpmd prints `Done` after checking
    /// link statuses, which in server mode follows the switch's connection to
    /// every socket (the probe waits for it).
    ///
    /// # Errors
    /// If testpmd exits or says nothing in `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut checking = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    checking |= line.contains("Checking link statuses");
                    if checking && line.trim() == "Done" {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "the pods' testpmd was not ready in {timeout:?} (did the switch connect?)"
                    )
                }
                Err(RecvTimeoutError::Disconnected) => bail!("the pods' testpmd exited"),
            }
        }
    }

    /// Every port's counters, now.
    ///
    /// # Errors
    /// If testpmd does not answer in 5 s.
    pub fn counters(&mut self) -> anyhow::Result<Vec<PodPort>> {
        while self.lines.try_recv().is_ok() {}
        self.command("show port stats all")?;
        let mut parser = StatsParser::default();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if parser.feed(&line, self.ports) {
                        return Ok(parser.ports());
                    }
                }
                Err(_) => bail!("testpmd did not show its port statistics"),
            }
        }
    }

    /// Packets received on all ports together.
    ///
    /// # Errors
    /// As [`Pod::counters`].
    pub fn received(&mut self) -> anyhow::Result<u64> {
        Ok(self.counters()?.iter().map(|p| p.rx).sum())
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.command("stop");
        let _ = self.command("quit");
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

/// The three forwarders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarder {
    /// vswitchd, one worker.
    Vswitchd,
    /// OVS-DPDK, one PMD thread.
    Ovs,
    /// testpmd io between two `net_vhost` ports.
    Floor,
}

impl Forwarder {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vswitchd => "vswitchd",
            Self::Ovs => "ovs",
            Self::Floor => "testpmd-io",
        }
    }
}

/// The programs measured.
#[derive(Debug, Clone)]
pub struct Programs {
    /// vswitchd.
    pub vswitchd: PathBuf,
    /// dpdk-testpmd (the pods and the floor).
    pub testpmd: PathBuf,
    /// bench/scripts/ovs_dpdk.py.
    pub ovs_script: PathBuf,
}

/// What a measurement runs.
#[derive(Debug, Clone)]
pub struct VhostOptions {
    /// The programs.
    pub programs: Programs,
    /// Placement and sizes (its `dir` is the work directory).
    pub layout: Layout,
    /// Paired rounds.
    pub rounds: u32,
    /// Measured one-second samples per forwarder and round.
    pub seconds: u32,
    /// Seconds after the stream starts before sampling.
    pub warmup: u32,
    /// Leave OVS out.
    pub no_ovs: bool,
    /// Leave the floor out.
    pub no_floor: bool,
    /// vswitchd restarts to time (0: none).
    pub restarts: u32,
    /// Seconds of stream under valgrind's callgrind for vswitchd and OVS-DPDK,
    /// for instructions per packet of the switch's core (0: none).
    pub instructions: u32,
}

/// A running switch under test.
enum Running {
    Child(ChildGuard),
    Ovs(OvsProcess),
}

/// `ovs_dpdk.py vhost`, forwarding until its stdin closes.
struct OvsProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl OvsProcess {
    /// Ends it: stdin closed (it tears OVS down and exits), SIGTERM by PID
    /// after 60 s, SIGKILL after 20 more. Returns its last JSON line.
    fn finish(mut self) -> Option<Value> {
        drop(self.stdin.take());
        let pid = self.child.id().to_string();
        for (grace, signal) in [(60, Some("-TERM")), (20, None)] {
            let deadline = Instant::now() + Duration::from_secs(grace);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            match signal {
                Some(s) => {
                    let _ = Command::new("kill").args([s, &pid]).status();
                }
                None => {
                    let _ = self.child.kill();
                }
            }
        }
        let _ = self.child.wait();
        let mut last = None;
        while let Ok(line) = self.lines.try_recv() {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                last = Some(v);
            }
        }
        last
    }
}

/// Why a forwarder has no figure: `Skipped` (OVS not installed) or a failure.
#[derive(Debug)]
pub enum NotMeasured {
    /// Deliberately left out.
    Skipped(String),
    /// The measurement failed.
    Failed(anyhow::Error),
}

fn start_switch(
    fwd: Forwarder,
    opts: &VhostOptions,
    tag: &str,
    wrapper: &[String],
) -> Result<Running, NotMeasured> {
    let l = &opts.layout;
    let fail = |e: anyhow::Error| NotMeasured::Failed(e);
    match fwd {
        Forwarder::Vswitchd => {
            let cfg = l.dir.join("vswitchd.toml");
            let idle = if wrapper.is_empty() { 0 } else { 1000 };
            std::fs::write(
                &cfg,
                l.vswitchd_config_idle(&l.dir.join("stats.json"), idle),
            )
            .map_err(|e| fail(e.into()))?;
            spawn_vswitchd(
                &opts.programs.vswitchd,
                &cfg,
                &l.dir.join(format!("vswitchd-{tag}.log")),
                l.nice,
                wrapper,
            )
            .map(Running::Child)
            .map_err(fail)
        }
        Forwarder::Floor => {
            let prefix = format!("vhfloor{}{tag}", std::process::id());
            let log = std::fs::File::create(l.dir.join(format!("floor-{tag}.log")))
                .map_err(|e| fail(e.into()))?;
            let child = niced(l.nice, &opts.programs.testpmd)
                .args(l.floor_args(&prefix))
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| fail(e.into()))?)
                .stderr(log)
                .spawn()
                .map_err(|e| fail(anyhow::anyhow!("cannot start testpmd: {e}")))?;
            prioritise(child.id(), l.nice);
            Ok(Running::Child(
                ChildGuard::new(child, "INT").removing(PathBuf::from("/var/run/dpdk").join(prefix)),
            ))
        }
        Forwarder::Ovs => {
            if !opts.programs.ovs_script.exists() {
                return Err(NotMeasured::Skipped(format!(
                    "{} not found (--ovs-script)",
                    opts.programs.ovs_script.display()
                )));
            }
            let flows = l.dir.join("ovs-flows.txt");
            std::fs::write(&flows, ovs_flows()).map_err(|e| fail(e.into()))?;
            let err = std::fs::File::create(l.dir.join(format!("ovs-{tag}.log")))
                .map_err(|e| fail(e.into()))?;
            let mut child = niced(l.nice, Path::new("python3"))
                .arg(&opts.programs.ovs_script)
                .arg("vhost")
                .arg("--sock-a")
                .arg(l.sock_a())
                .arg("--sock-b")
                .arg(l.sock_b())
                .arg("--flows")
                .arg(&flows)
                .args([
                    "--core",
                    &l.pinning.switch.to_string(),
                    "--control-core",
                    &l.pinning.pods.to_string(),
                    "--memory",
                    "no-huge",
                    // OVS sizes its shared pool itself (262144 mbufs for MTU
                    // 1500): 1024 MiB without hugepages is too little for it.
                    "--memory-mb",
                    "2048",
                ])
                .args(if wrapper.is_empty() {
                    Vec::new()
                } else {
                    vec!["--wrapper".to_owned(), json!(wrapper).to_string()]
                })
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(err)
                .spawn()
                .map_err(|e| NotMeasured::Skipped(format!("cannot run python3: {e}")))?;
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let stdin = child.stdin.take();
            let mut ovs = OvsProcess {
                child,
                stdin,
                lines: rx,
            };
            // The script prints `{"ready": true}` once both ports exist.
            let deadline = Instant::now() + START_TIMEOUT * if wrapper.is_empty() { 1 } else { 10 };
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match ovs.lines.recv_timeout(left) {
                    Ok(line) if line.contains("\"ready\"") => {
                        // OVS's daemons run in sessions of their own.
                        let ready: Value = serde_json::from_str(&line).unwrap_or_default();
                        for pid in ready["pids"].as_object().into_iter().flatten() {
                            if let Some(pid) = pid.1.as_u64() {
                                prioritise(pid as u32, l.nice);
                            }
                        }
                        return Ok(Running::Ovs(ovs));
                    }
                    Ok(line) if line.contains("not installed") => {
                        let _ = ovs.finish();
                        return Err(NotMeasured::Skipped(line));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let code = ovs.child.try_wait().ok().flatten().and_then(|s| s.code());
                        let _ = ovs.finish();
                        if code == Some(OVS_NOT_INSTALLED) {
                            return Err(NotMeasured::Skipped(
                                "OVS-DPDK not installed: make bench-deps".into(),
                            ));
                        }
                        let tail = std::fs::read_to_string(l.dir.join(format!("ovs-{tag}.log")))
                            .unwrap_or_default();
                        let line = tail
                            .lines()
                            .find(|l| l.starts_with("ovs_dpdk.py:"))
                            .unwrap_or("no message");
                        return Err(fail(anyhow::anyhow!("OVS-DPDK did not start: {line}")));
                    }
                }
            }
        }
    }
}

fn spawn_vswitchd(
    vswitchd: &Path,
    cfg: &Path,
    log: &Path,
    nice: i32,
    wrapper: &[String],
) -> anyhow::Result<ChildGuard> {
    let log = std::fs::File::create(log)?;
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(vswitchd);
            c
        }
        None => niced(nice, vswitchd),
    };
    let child = cmd
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", vswitchd.display()))?;
    prioritise(child.id(), nice);
    let dir = PathBuf::from(format!("/var/run/dpdk/vswitchd{}", child.id()));
    Ok(ChildGuard::new(child, "TERM").removing(dir))
}

fn remove_sockets(l: &Layout) {
    let _ = std::fs::remove_file(l.sock_a());
    let _ = std::fs::remove_file(l.sock_b());
}

/// One forwarder's figures in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRate {
    /// Median of the one-second samples, Mpps.
    pub mpps: f64,
    /// The samples, Mpps.
    pub samples: Vec<f64>,
    /// Cycles the switch's core spent per packet while it had packets (idle
    /// polls left out), by the forwarder's own accounting: vswitchd's worker
    /// `busy_ns` over its packets in the sampled window, OVS's `avg processing
    /// cycles per packet` (pmd-stats-show, the whole run), testpmd's `CPU
    /// cycles/packet` (`--record-core-cycles`, the whole run).
    pub busy_cycles_per_packet: Option<f64>,
}

/// vswitchd's worker 0: (busy ns, packets received) from its stats file.
fn worker_busy(stats: &Path) -> Option<(f64, f64)> {
    let doc: Value = serde_json::from_slice(&std::fs::read(stats).ok()?).ok()?;
    let w = doc["workers"].get(0)?;
    Some((w["busy_ns"].as_f64()?, w["rx_packets"].as_f64()?))
}

/// testpmd's `CPU cycles/packet=N` (`--record-core-cycles`) in `text`.
pub fn testpmd_cycles_per_packet(text: &str) -> Option<f64> {
    let rest = text.rsplit("CPU cycles/packet=").next()?;
    if !text.contains("CPU cycles/packet=") {
        return None;
    }
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?
        .parse()
        .ok()
}

/// Measures `fwd` once: fresh pods, the switch, the stream, the samples,
/// everything stopped.
///
/// # Errors
/// [`NotMeasured`].
pub fn measure(fwd: Forwarder, opts: &VhostOptions, tag: &str) -> Result<RoundRate, NotMeasured> {
    let l = &opts.layout;
    remove_sockets(l);
    let prefix = format!("vhpods{}{tag}", std::process::id());
    let mut pod = Pod::start(
        &opts.programs.testpmd,
        &l.pods_args(&prefix),
        &prefix,
        2,
        l.nice,
    )
    .map_err(NotMeasured::Failed)?;
    // The pods' sockets exist once testpmd's probe listens; a client-mode
    // switch retries until then anyway.
    let running = start_switch(fwd, opts, tag, &[])?;
    let result = (|| -> anyhow::Result<RoundRate> {
        pod.wait_ready(START_TIMEOUT)?;
        // The switch connected; give it a second to finish its side (OVS
        // reconfigures its datapath, vswitchd's link-state poll).
        std::thread::sleep(Duration::from_secs(1));
        let mut flowing = false;
        for _ in 0..10 {
            pod.command(&format!("start tx_first {}", l.bursts))?;
            let before = pod.received()?;
            std::thread::sleep(Duration::from_millis(500));
            if pod.received()? > before + u64::from(l.bursts) * 32 {
                flowing = true;
                break;
            }
            pod.command("stop")?;
            std::thread::sleep(Duration::from_millis(500));
        }
        if !flowing {
            bail!("no frames came back through {}", fwd.name());
        }
        std::thread::sleep(Duration::from_secs(u64::from(opts.warmup)));
        let stats = l.dir.join("stats.json");
        let busy0 = worker_busy(&stats);
        let mut samples = Vec::new();
        let (mut t0, mut n0) = (Instant::now(), pod.received()?);
        for _ in 0..opts.seconds {
            let next = t0 + Duration::from_secs(1);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let (t, n) = (Instant::now(), pod.received()?);
            samples.push(n.saturating_sub(n0) as f64 / t.duration_since(t0).as_secs_f64() / 1e6);
            (t0, n0) = (t, n);
        }
        // vswitchd writes its stats file every second: the window between two
        // documents is within a second of the sampled one.
        let busy = match (fwd, busy0, worker_busy(&stats)) {
            (Forwarder::Vswitchd, Some((b0, p0)), Some((b1, p1))) if p1 > p0 => {
                Some((b1 - b0) * 1e-9 * tsc_hz() / (p1 - p0))
            }
            _ => None,
        };
        Ok(RoundRate {
            mpps: median(&samples).unwrap_or(0.0),
            samples,
            busy_cycles_per_packet: busy,
        })
    })();
    drop(pod);
    let ovs_done = match running {
        Running::Child(mut g) => {
            g.stop();
            None
        }
        Running::Ovs(o) => o.finish(),
    };
    remove_sockets(l);
    let mut r = result.map_err(NotMeasured::Failed)?;
    match fwd {
        Forwarder::Ovs => {
            r.busy_cycles_per_packet =
                ovs_done.and_then(|v| v["processing_cycles_per_packet"].as_f64());
        }
        Forwarder::Floor => {
            let log =
                std::fs::read_to_string(l.dir.join(format!("floor-{tag}.log"))).unwrap_or_default();
            r.busy_cycles_per_packet = testpmd_cycles_per_packet(&log);
        }
        Forwarder::Vswitchd => {}
    }
    Ok(r)
}

/// Packets vswitchd's worker received, from the `final counters` lines it
/// logs as it stops (exact, where its stats file is up to a second old).
pub fn final_rx(log: &str) -> Option<u64> {
    let mut total = None;
    for line in log.lines().filter(|l| l.contains("final counters")) {
        let rx = line.split(" rx=").nth(1)?.split_whitespace().next()?;
        *total.get_or_insert(0) += rx.parse::<u64>().ok()?;
    }
    total
}

/// The first `packets received: N` of OVS's `pmd-stats-show` (the PMD thread's,
/// listed before the main thread's).
pub fn pmd_packets(pmd_stats: &str) -> Option<u64> {
    let rest = pmd_stats.split("packets received:").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Instructions per packet of `fwd`'s forwarding thread under callgrind:
/// fresh pods, the switch under valgrind (vswitchd's worker and OVS's PMD
/// sleep when idle, so that the polls before the stream starts hardly count),
/// `seconds` of the stream, the switch stopped; the busiest thread but the
/// main one over the packets it received.
///
/// # Errors
/// [`NotMeasured`].
pub fn measure_instructions(
    fwd: Forwarder,
    opts: &VhostOptions,
    seconds: u32,
) -> Result<Value, NotMeasured> {
    let l = &opts.layout;
    let cg = crate::callgrind::Callgrind::new(false, Some(1))
        .map_err(|e| NotMeasured::Skipped(format!("{e:#}")))?;
    let out = l.dir.join(format!("callgrind-{}.out", fwd.name()));
    let tag = format!("cg{}", fwd.name());
    remove_sockets(l);
    let prefix = format!("vhpods{}{tag}", std::process::id());
    let mut pod = Pod::start(
        &opts.programs.testpmd,
        &l.pods_args(&prefix),
        &prefix,
        2,
        l.nice,
    )
    .map_err(NotMeasured::Failed)?;
    let running = start_switch(fwd, opts, &tag, &cg.wrapper(&out))?;
    let result = (|| -> anyhow::Result<()> {
        pod.wait_ready(START_TIMEOUT * 5)?;
        std::thread::sleep(Duration::from_secs(5));
        pod.command(&format!("start tx_first {}", l.bursts))?;
        std::thread::sleep(Duration::from_secs(u64::from(seconds)));
        if pod.received()? == 0 {
            bail!("no frames came back through {} under callgrind", fwd.name());
        }
        Ok(())
    })();
    drop(pod);
    let packets = match running {
        Running::Child(mut g) => {
            g.stop();
            let log = std::fs::read_to_string(l.dir.join(format!("vswitchd-{tag}.log")))
                .unwrap_or_default();
            final_rx(&log)
        }
        Running::Ovs(o) => o
            .finish()
            .and_then(|v| v["pmd_stats"].as_str().and_then(pmd_packets)),
    };
    remove_sockets(l);
    result.map_err(NotMeasured::Failed)?;
    let packets = packets
        .filter(|&p| p > 0)
        .ok_or_else(|| NotMeasured::Failed(anyhow::anyhow!("{}: no packet count", fwd.name())))?;
    let thread = crate::callgrind::busiest_thread(&out).map_err(NotMeasured::Failed)?;
    let ir = thread.total("Ir");
    let functions = crate::callgrind::functions(&thread.file).unwrap_or_default();
    let per = |n: u64| round(n as f64 / packets as f64, 1);
    let top: Vec<Value> = functions
        .iter()
        .take(12)
        .map(|(f, n)| json!({"function": f, "per_packet": per(*n)}))
        .collect();
    Ok(json!({
        "packets": packets,
        "instructions_per_packet": per(ir),
        "top_functions": top,
    }))
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn summary(xs: &[f64]) -> Value {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        Some(round(v[i], 1))
    };
    json!({"n": v.len(), "median": median(&v).map(|m| round(m, 1)), "p99": pct(0.99), "max": v.last().map(|m| round(*m, 1))})
}

/// Times `opts.restarts` restarts of vswitchd under a stream between two
/// pods: milliseconds from each `exec` to the receiving pod's counter moving.
///
/// # Errors
/// If the pods or vswitchd do not start, or traffic does not resume in 30 s.
pub fn measure_restarts(opts: &VhostOptions) -> anyhow::Result<Value> {
    let l = &opts.layout;
    remove_sockets(l);
    let pid = std::process::id();
    let (pa, pb) = (format!("vhrsa{pid}"), format!("vhrsb{pid}"));
    let mut rx = Pod::start(
        &opts.programs.testpmd,
        &l.restart_pod_args(&pb, false),
        &pb,
        1,
        l.nice,
    )?;
    let mut tx = Pod::start(
        &opts.programs.testpmd,
        &l.restart_pod_args(&pa, true),
        &pa,
        1,
        l.nice,
    )?;
    let cfg = l.dir.join("vswitchd-restart.toml");
    std::fs::write(&cfg, l.vswitchd_config(&l.dir.join("stats-restart.json")))?;
    let log = |i: u32| l.dir.join(format!("vswitchd-restart-{i}.log"));
    let mut switch = spawn_vswitchd(&opts.programs.vswitchd, &cfg, &log(0), l.nice, &[])?;
    rx.wait_ready(START_TIMEOUT)?;
    tx.wait_ready(START_TIMEOUT)?;
    rx.command("start")?;
    tx.command("start")?;
    let flowing = |rx: &mut Pod, wait: Duration| -> anyhow::Result<Option<Duration>> {
        let t0 = Instant::now();
        let n0 = rx.received()?;
        while t0.elapsed() < wait {
            if rx.received()? > n0 {
                return Ok(Some(t0.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(None)
    };
    if flowing(&mut rx, Duration::from_secs(30))?.is_none() {
        bail!("the stream between the restart pods never started");
    }
    let mut resume_ms = Vec::new();
    for i in 1..=opts.restarts {
        switch.stop();
        // Nothing arrives while the switch is away.
        if let Some(after) = flowing(&mut rx, Duration::from_millis(300))? {
            bail!("the receiving pod still counted packets {after:?} after vswitchd stopped");
        }
        let before = rx.received()?;
        let t0 = Instant::now();
        switch = spawn_vswitchd(&opts.programs.vswitchd, &cfg, &log(i), l.nice, &[])?;
        loop {
            if rx.received()? > before {
                break;
            }
            if switch.exited() {
                bail!("vswitchd exited after restart {i}");
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("traffic did not resume within 30 s of restart {i}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        resume_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let _ = std::fs::remove_file(log(i - 1));
    }
    switch.stop();
    drop(tx);
    drop(rx);
    remove_sockets(l);
    Ok(json!({
        "restarts": opts.restarts,
        "exec_to_first_packet_ms": summary(&resume_ms),
        "each_ms": resume_ms.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
    }))
}

/// Runs the rounds (and the restarts) and reports them as JSON.
///
/// # Errors
/// If vswitchd cannot be measured in some round, or the restart measurement
/// fails.
pub fn run(opts: &VhostOptions) -> anyhow::Result<Value> {
    let tsc = tsc_hz();
    let mut vsw = Vec::new();
    let mut ovs = Vec::new();
    let mut floor = Vec::new();
    let mut ovs_note: Option<String> = None;
    let mut floor_note: Option<String> = None;
    let mut loads = Vec::new();
    for r in 1..=opts.rounds {
        loads.push(load_average());
        let mut order = if crate::ab::baseline_first(r) {
            vec![Forwarder::Ovs, Forwarder::Vswitchd]
        } else {
            vec![Forwarder::Vswitchd, Forwarder::Ovs]
        };
        order.push(Forwarder::Floor);
        for fwd in order {
            let skip = match fwd {
                Forwarder::Ovs => opts.no_ovs || ovs_note.is_some(),
                Forwarder::Floor => opts.no_floor || floor_note.is_some(),
                Forwarder::Vswitchd => false,
            };
            if skip {
                continue;
            }
            let tag = format!("r{r}{}", fwd.name());
            match (fwd, measure(fwd, opts, &tag)) {
                (Forwarder::Vswitchd, Ok(m)) => vsw.push((r, m)),
                (Forwarder::Ovs, Ok(m)) => ovs.push((r, m)),
                (Forwarder::Floor, Ok(m)) => floor.push((r, m)),
                (Forwarder::Vswitchd, Err(NotMeasured::Failed(e))) => {
                    return Err(e.context(format!("vswitchd, round {r}")))
                }
                (Forwarder::Vswitchd, Err(NotMeasured::Skipped(s))) => bail!("vswitchd: {s}"),
                (Forwarder::Ovs, Err(e)) => ovs_note = Some(not_measured_text(e)),
                (Forwarder::Floor, Err(e)) => floor_note = Some(not_measured_text(e)),
            }
            eprintln!("vhost: round {r} {} done", fwd.name());
        }
    }
    let rates = |v: &[(u32, RoundRate)]| v.iter().map(|(_, m)| m.mpps).collect::<Vec<_>>();
    let (v_rates, o_rates, f_rates) = (rates(&vsw), rates(&ovs), rates(&floor));
    let paired = AbRounds {
        baseline: if o_rates.len() == v_rates.len() {
            o_rates.clone()
        } else {
            Vec::new()
        },
        candidate: if o_rates.len() == v_rates.len() {
            v_rates.clone()
        } else {
            Vec::new()
        },
    };
    let (wins, losses, ties) = paired.tally();
    let cyc = |rates: &[f64]| {
        median(rates)
            .and_then(|m| cycles_per_packet(tsc, m))
            .map(|c| round(c, 1))
    };
    let med = |rates: &[f64]| median(rates).map(|m| round(m, 3));
    let busy = |v: &[(u32, RoundRate)]| {
        let c: Vec<f64> = v
            .iter()
            .filter_map(|(_, m)| m.busy_cycles_per_packet)
            .collect();
        median(&c).map(|c| round(c, 1))
    };
    let each = |v: &[(u32, RoundRate)]| {
        v.iter()
            .map(|(r, m)| json!({"round": r, "mpps": round(m.mpps, 3), "busy_cycles_per_packet": m.busy_cycles_per_packet.map(|c| round(c, 1)), "samples": m.samples.iter().map(|s| round(*s, 3)).collect::<Vec<_>>()}))
            .collect::<Vec<_>>()
    };
    let mut doc = json!({
        "scenario": "vhost-pods",
        "frame_size": 64,
        "pinning": opts.layout.pinning.describe(),
        "memory": "no-huge",
        "queue_size": opts.layout.queue_size,
        "nice": opts.layout.nice,
        "frames_in_flight": 2 * 32 * opts.layout.bursts,
        "rounds": opts.rounds,
        "load_average_before_each_round": loads,
        "mpps": {"vswitch": med(&v_rates), "ovs": med(&o_rates), "testpmd_io": med(&f_rates)},
        "cycles_per_packet": {"vswitch": cyc(&v_rates), "ovs": cyc(&o_rates), "testpmd_io": cyc(&f_rates)},
        "busy_cycles_per_packet": {"vswitch": busy(&vsw), "ovs": busy(&ovs), "testpmd_io": busy(&floor)},
        "ratio_vs_ovs": paired.change().map(|c| round(c + 1.0, 3)),
        "ratio_of_medians_vs_ovs": match (median(&v_rates), median(&o_rates)) {
            (Some(v), Some(o)) if o > 0.0 => Some(round(v / o, 3)),
            _ => None,
        },
        "ratio_vs_floor": match (median(&v_rates), median(&f_rates)) {
            (Some(v), Some(f)) if f > 0.0 => Some(round(v / f, 3)),
            _ => None,
        },
        "vswitch_faster_rounds": wins,
        "vswitch_slower_rounds": losses,
        "tied_rounds": ties,
        "sign_test_p": round(paired.p_value(), 4),
        "verdict": paired.verdict().as_str(),
        "per_round": {"vswitch": each(&vsw), "ovs": each(&ovs), "testpmd_io": each(&floor)},
    });
    if let Some(n) = ovs_note {
        doc["ovs_not_measured"] = json!(n);
    }
    if let Some(n) = floor_note {
        doc["testpmd_io_not_measured"] = json!(n);
    }
    if opts.instructions > 0 {
        let mut ins = serde_json::Map::new();
        for fwd in [Forwarder::Vswitchd, Forwarder::Ovs] {
            if fwd == Forwarder::Ovs && opts.no_ovs {
                continue;
            }
            let v = match measure_instructions(fwd, opts, opts.instructions) {
                Ok(v) => v,
                Err(e) => json!({"not_measured": not_measured_text(e)}),
            };
            eprintln!("vhost: instructions {} done", fwd.name());
            ins.insert(fwd.name().to_owned(), v);
        }
        let ipp = |k: &str| {
            ins.get(k)
                .and_then(|v| v["instructions_per_packet"].as_f64())
        };
        if let (Some(v), Some(o)) = (ipp("vswitchd"), ipp("ovs")) {
            ins.insert("ovs_over_vswitch".into(), json!(round(o / v, 3)));
        }
        doc["instructions"] = Value::Object(ins);
    }
    if opts.restarts > 0 {
        doc["restart"] = measure_restarts(opts)?;
    }
    Ok(doc)
}

fn not_measured_text(e: NotMeasured) -> String {
    match e {
        NotMeasured::Skipped(s) => format!("skipped: {s}"),
        NotMeasured::Failed(e) => format!("failed: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            dir: PathBuf::from("/tmp/vb"),
            pinning: Pinning::new(1, 0).unwrap(),
            queue_size: 1024,
            bursts: 16,
            nice: 0,
        }
    }

    #[test]
    fn the_switch_never_shares_the_pods_cpu() {
        let err = Pinning::new(1, 1).unwrap_err().to_string();
        assert!(err.contains("must differ"), "{err}");
        let d = Pinning::new(1, 0).unwrap().describe();
        assert!(d.contains("on CPU 1") && d.contains("on CPU 0"), "{d}");
    }

    #[test]
    fn every_forwarder_is_pinned_alike() {
        let l = layout();
        // The pods: both lcores on the pods' CPU, both sockets served.
        let pods = l.pods_args("p");
        assert!(pods.contains(&"--lcores=0@0,1@0".to_owned()), "{pods:?}");
        let a = "--vdev=net_virtio_user0,path=/tmp/vb/a.sock,server=1,mac=02:00:00:00:00:0a,queue_size=1024";
        assert!(pods.contains(&a.to_owned()), "{pods:?}");
        for want in [
            "--forward-mode=macswap",
            "--port-topology=loop",
            "--eth-peer=0,02:00:00:00:00:0b",
        ] {
            assert!(pods.contains(&want.to_owned()), "{want}: {pods:?}");
        }
        // The floor: its forwarding lcore on the switch's CPU, main on the pods'.
        let floor = l.floor_args("f");
        assert!(floor.contains(&"--lcores=0@0,1@1".to_owned()), "{floor:?}");
        assert!(
            floor.contains(&"--vdev=net_vhost1,iface=/tmp/vb/b.sock,client=1,queues=1".to_owned())
        );
        // vswitchd: its worker on the switch's CPU, main on the pods'.
        let cfg = l.vswitchd_config(Path::new("/tmp/vb/stats.json"));
        assert!(
            cfg.contains("workers = [1]") && cfg.contains("main_core = 0"),
            "{cfg}"
        );
        assert!(cfg.contains("idle_sleep_max_us = 0"), "{cfg}");
        let cfg = l.vswitchd_config_idle(Path::new("/tmp/vb/stats.json"), 1000);
        assert!(cfg.contains("idle_sleep_max_us = 1000"), "{cfg}");
        // The restart pods: one sends to B, one receives.
        let tx = l.restart_pod_args("t", true);
        assert!(tx.contains(&"--forward-mode=txonly".to_owned()), "{tx:?}");
        assert!(tx.iter().any(|a| a.contains("a.sock")), "{tx:?}");
        let rx = l.restart_pod_args("r", false);
        assert!(rx.contains(&"--forward-mode=rxonly".to_owned()), "{rx:?}");
        assert!(rx.iter().any(|a| a.contains("b.sock")), "{rx:?}");
    }

    #[test]
    fn ovs_rules_forward_each_pod_to_the_other_only() {
        let f = ovs_flows();
        assert!(f.contains(&format!("in_port=1,dl_dst={MAC_B},actions=output:2")));
        assert!(f.contains(&format!("in_port=2,dl_dst={MAC_A},actions=output:1")));
        assert!(f.trim_end().ends_with("priority=0,actions=drop"));
        assert!(!f.contains("NORMAL"));
    }

    #[test]
    fn stats_are_read_port_by_port() {
        let text = "testpmd> \n\
  ######################## NIC statistics for port 0  ########################\n\
  RX-packets: 1200       RX-missed: 0          RX-bytes:  76800\n\
  RX-errors: 0\n\
  RX-nombuf:  0\n\
  TX-packets: 1300       TX-errors: 0          TX-bytes:  83200\n\
\n\
  Throughput (since last show)\n\
  Rx-pps:          100          Rx-bps:        51200\n\
  Tx-pps:          100          Tx-bps:        51200\n\
  ############################################################################\n\
  ######################## NIC statistics for port 1  ########################\n\
  RX-packets: 77         RX-missed: 0          RX-bytes:  4928\n\
  TX-packets: 5          TX-errors: 0          TX-bytes:  320\n\
  Rx-pps:            1          Rx-bps:          512\n\
  Tx-pps:            0          Tx-bps:            0\n";
        let mut p = StatsParser::default();
        let mut done = false;
        for line in text.lines() {
            done = p.feed(line, 2);
            if done {
                break;
            }
        }
        assert!(done);
        assert_eq!(
            p.ports(),
            vec![PodPort { rx: 1200, tx: 1300 }, PodPort { rx: 77, tx: 5 }]
        );
        // One port's block is complete at its own Tx-pps line.
        let mut p = StatsParser::default();
        assert!(!p.feed("  RX-packets: 3  RX-missed: 0", 1));
        assert!(p.feed("  Tx-pps: 0  Tx-bps: 0", 1));
    }

    #[test]
    fn a_session_id_is_read_past_the_command_name() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100";
        assert_eq!(session_of(stat), Some(4242));
        assert_eq!(session_of("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(session_of(&own).is_some(), "{own}");
    }

    #[test]
    fn testpmd_core_cycles_are_read() {
        let text =
            "  CPU cycles/packet=412.35 (busy cycles=1 / total io packets=2) at 2445 MHz Clock\n";
        assert_eq!(testpmd_cycles_per_packet(text), Some(412.35));
        assert_eq!(testpmd_cycles_per_packet("nothing"), None);
    }

    #[test]
    fn packet_counts_come_from_the_switches_own_words() {
        let log = "x INFO vswitchd::switch: final counters port=poda rx=1088096 tx=1088000 dropped=32\n\
                   x INFO vswitchd::switch: final counters port=podb rx=1088032 tx=1088064 dropped=32\n";
        assert_eq!(final_rx(log), Some(2_176_128));
        assert_eq!(final_rx("nothing"), None);
        let pmd = "pmd thread numa_id 0 core_id 1:\n  packets received: 123\nmain thread:\n  packets received: 0\n";
        assert_eq!(pmd_packets(pmd), Some(123));
        assert_eq!(pmd_packets(""), None);
    }

    #[test]
    fn restart_summaries_have_median_and_p99() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summary(&xs);
        assert_eq!(s["n"], 100);
        assert_eq!(s["median"], 50.5);
        assert_eq!(s["p99"], 99.0);
        assert_eq!(s["max"], 100.0);
        assert_eq!(summary(&[])["median"], Value::Null);
    }
}
